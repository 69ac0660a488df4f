// Track output: TrackFileWriter (one JSONL file per UTC day) on real files in a
// temporary directory, fed by LineSplitter (stdout chunks to whole lines).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TrackFileWriter, trackFileName } from '../src/tracker/track-output.js';
import { LineSplitter } from '../src/tracker/line-splitter.js';

const root = mkdtempSync(join(tmpdir(), 'radar-track-output-'));
after(() => rmSync(root, { recursive: true, force: true }));

let dirSeq = 0;
/** A fresh, not yet existing directory under the temp root. */
function freshDir(): string {
  return join(root, `d${++dirSeq}`, 'out');
}

function readLines(path: string): string[] {
  const text = readFileSync(path, 'utf8');
  assert.ok(text === '' || text.endsWith('\n'), 'file ends with a newline');
  return text === '' ? [] : text.slice(0, -1).split('\n');
}

const event = (i: number): string => JSON.stringify({ track_id: `t${i}`, timestamp: 1757400000000 + i, length: i });

describe('TrackFileWriter', () => {
  test('file name is {name}_{YYYY-MM-DD}.jsonl with the UTC date', () => {
    assert.equal(trackFileName('node-1', Date.UTC(2025, 8, 9, 23, 59, 59, 999)), 'node-1_2025-09-09.jsonl');
    assert.equal(trackFileName('node-1', Date.UTC(2025, 8, 10, 0, 0, 0, 0)), 'node-1_2025-09-10.jsonl');
    assert.throws(() => new TrackFileWriter({ outputDir: root, name: '../x' }), TypeError);
    assert.throws(() => new TrackFileWriter({ outputDir: root, name: '' }), TypeError);
  });

  test('creates the output directory and appends whole lines; close() flushes everything', async () => {
    const dir = freshDir();
    const t = Date.UTC(2025, 8, 9, 12, 0, 0);
    const errors: Error[] = [];
    const w = new TrackFileWriter({ outputDir: dir, name: 'node-1', now: () => t, onError: (e) => errors.push(e), highWaterMark: 1024 });
    const n = 5000;
    let bytes = 0;
    let sawBackPressure = false;
    for (let i = 0; i < n; i++) {
      const line = event(i);
      bytes += Buffer.byteLength(line) + 1;
      if (!w.write(line)) sawBackPressure = true;
    }
    assert.ok(sawBackPressure, 'a small high-water mark reports back-pressure');
    assert.equal(w.currentPath, join(dir, 'node-1_2025-09-09.jsonl'));
    await w.close();
    assert.deepEqual(errors, []);
    assert.deepEqual(readdirSync(dir), ['node-1_2025-09-09.jsonl']);
    const lines = readLines(join(dir, 'node-1_2025-09-09.jsonl'));
    assert.equal(lines.length, n);
    for (let i = 0; i < n; i++) assert.equal(lines[i], event(i));
    assert.deepEqual(w.stats(), { linesWritten: n, bytesWritten: bytes, linesFailed: 0, rotations: 0, errors: 0 });

    // Appends to an existing file (a restart on the same day); write after close is counted, not thrown.
    const w2 = new TrackFileWriter({ outputDir: dir, name: 'node-1', now: () => t });
    w2.write('{"again":true}\n');
    await w2.close();
    assert.equal(w2.write('{"late":1}'), true);
    assert.equal(w2.stats().linesFailed, 1);
    const all = readLines(join(dir, 'node-1_2025-09-09.jsonl'));
    assert.equal(all.length, n + 1);
    assert.equal(all[n], '{"again":true}', 'a trailing newline is not doubled');
  });

  test('drained() resolves once the buffer is written', async () => {
    const dir = freshDir();
    const w = new TrackFileWriter({ outputDir: dir, name: 'bp', highWaterMark: 64 });
    const line = 'x'.repeat(100);
    assert.equal(w.write(line), false);
    assert.equal(w.needsDrain, true);
    await w.drained();
    assert.equal(w.needsDrain, false);
    assert.equal(w.write('{}'), true);
    await w.close();
    assert.equal(w.stats().linesWritten, 2);
  });

  test('rotates exactly at UTC midnight', async () => {
    const dir = freshDir();
    let t = Date.UTC(2025, 8, 9, 23, 59, 59, 998);
    const w = new TrackFileWriter({ outputDir: dir, name: 'n', now: () => t });
    w.write('{"i":1}');
    t = Date.UTC(2025, 8, 9, 23, 59, 59, 999);
    w.write('{"i":2}');
    assert.equal(w.currentPath, join(dir, 'n_2025-09-09.jsonl'));
    t = Date.UTC(2025, 8, 10, 0, 0, 0, 0);
    w.write('{"i":3}');
    assert.equal(w.currentPath, join(dir, 'n_2025-09-10.jsonl'));
    t += 1;
    w.write('{"i":4}');
    // A jump of several days opens that day's file (no empty files for the days between).
    t = Date.UTC(2025, 8, 13, 6);
    w.write('{"i":5}');
    await w.close();
    assert.deepEqual(readdirSync(dir).sort(), ['n_2025-09-09.jsonl', 'n_2025-09-10.jsonl', 'n_2025-09-13.jsonl']);
    assert.deepEqual(readLines(join(dir, 'n_2025-09-09.jsonl')), ['{"i":1}', '{"i":2}']);
    assert.deepEqual(readLines(join(dir, 'n_2025-09-10.jsonl')), ['{"i":3}', '{"i":4}']);
    assert.deepEqual(readLines(join(dir, 'n_2025-09-13.jsonl')), ['{"i":5}']);
    assert.deepEqual(w.stats(), { linesWritten: 5, bytesWritten: 40, linesFailed: 0, rotations: 2, errors: 0 });
  });

  test('stdout chunks through LineSplitter into the file: split lines reassembled, oversize dropped', async () => {
    const dir = freshDir();
    const w = new TrackFileWriter({ outputDir: dir, name: 'pipe', now: () => Date.UTC(2025, 0, 1) });
    const s = new LineSplitter({ maxLineBytes: 64 });
    const big = JSON.stringify({ track_id: 'big', pad: 'p'.repeat(100) });
    const stream = `${event(1)}\n${big}\n${event(2)}\n${event(3)}\n`;
    // Feed in 7-byte chunks so that lines (and the oversize one) span chunks.
    for (let i = 0; i < stream.length; i += 7) {
      for (const line of s.push(stream.slice(i, i + 7))) w.write(line);
    }
    await w.close();
    assert.deepEqual(readLines(join(dir, 'pipe_2025-01-01.jsonl')), [event(1), event(2), event(3)]);
    assert.equal(s.oversizeLines, 1);
    assert.equal(w.stats().linesWritten, 3);
  });

  test('file-system errors go to onError, never throw, and the file is reopened later', async () => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    // The day's file name is taken by a directory: opening it fails (EISDIR), even as root.
    mkdirSync(join(dir, 'e_2025-01-01.jsonl'));
    let t = Date.UTC(2025, 0, 1, 10);
    const errors: Error[] = [];
    const w = new TrackFileWriter({ outputDir: dir, name: 'e', now: () => t, reopenDelayMs: 1000, onError: (e) => errors.push(e) });
    assert.equal(w.write('{"a":1}'), true);
    w.write('{"a":2}');
    await until(() => errors.length === 1, 'the open error');
    assert.equal((errors[0] as NodeJS.ErrnoException).code, 'EISDIR');
    assert.equal(w.write('{"a":3}'), true, 'within reopenDelayMs: dropped and counted');
    await until(() => w.stats().linesFailed === 3, 'failed lines counted');
    assert.equal(errors.length, 1, 'no retry before reopenDelayMs');
    // The operator fixes it; after the delay the next write reopens the file.
    rmSync(join(dir, 'e_2025-01-01.jsonl'), { recursive: true });
    t += 1000;
    w.write('{"a":4}');
    await w.close();
    assert.deepEqual(readLines(join(dir, 'e_2025-01-01.jsonl')), ['{"a":4}']);
    assert.deepEqual(w.stats(), { linesWritten: 1, bytesWritten: 8, linesFailed: 3, rotations: 0, errors: 1 });

    // An output directory that cannot be created (a path through a regular file).
    writeFileSync(join(dir, 'plain'), '');
    const errs2: Error[] = [];
    const w2 = new TrackFileWriter({ outputDir: join(dir, 'plain', 'sub'), name: 'e', onError: (e) => errs2.push(e) });
    assert.doesNotThrow(() => w2.write('{}'));
    await w2.close();
    assert.equal(errs2.length, 1);
    assert.equal(w2.stats().linesFailed, 1);
  });
});

async function until(fn: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
