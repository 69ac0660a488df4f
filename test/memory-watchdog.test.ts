// The tracker memory ceiling's pure parts (the /proc status parser, the decision,
// the walk over a tracker's descendants) fed exact /proc text, and the real /proc
// reader checked against this process and a child it spawns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  MAX_PROCESSES, MIB, memoryVerdict, parseChildren, parseVmRss, procReader, sampleResident, type ProcReader,
} from '../src/tracker/memory-watchdog.js';

const status = (rssKb: number | null): string => [
  'Name:\tnode', 'Umask:\t0022', 'State:\tS (sleeping)', 'Tgid:\t4242', 'Pid:\t4242', 'PPid:\t1',
  'VmPeak:\t 1234567 kB', 'VmSize:\t 1200000 kB', 'VmLck:\t       0 kB', 'VmHWM:\t  900000 kB',
  ...(rssKb === null ? [] : [`VmRSS:\t  ${rssKb} kB`]),
  'RssAnon:\t   30000 kB', 'RssFile:\t   20000 kB', 'VmData:\t  700000 kB', 'Threads:\t11', '',
].join('\n');

/** A fake /proc: status VmRSS (kB) and main-thread children per pid. */
function fakeProc(procs: Record<number, { rssKb: number | null; children?: number[] }>): ProcReader & { reads: string[] } {
  const reads: string[] = [];
  return {
    reads,
    read: (path) => {
      reads.push(path);
      const m = /^\/proc\/(\d+)\/(status|task\/(\d+)\/children)$/.exec(path);
      const p = m ? procs[Number(m[1])] : undefined;
      if (!m || !p) return null;
      if (m[2] === 'status') return status(p.rssKb);
      return (p.children ?? []).map((c) => `${c} `).join('');
    },
  };
}

test('parseVmRss reads VmRSS in bytes (not VmSize, VmPeak or VmHWM); none (a zombie) is null', () => {
  assert.equal(parseVmRss(status(51234)), 51234 * 1024);
  assert.equal(parseVmRss(status(0)), 0);
  assert.equal(parseVmRss(status(null)), null);
  assert.equal(parseVmRss(''), null);
  assert.equal(parseVmRss('VmRSS:\tgarbage kB\n'), null);
  assert.deepEqual(parseChildren('101 102 \n'), [101, 102]);
  assert.deepEqual(parseChildren(''), []);
});

test('memoryVerdict: a tracker at or under tracker.max_memory_mb is kept, one over it is killed with the reason, 0 = no ceiling', () => {
  assert.equal(memoryVerdict(0, 1024), null);
  assert.equal(memoryVerdict(1024 * MIB, 1024), null);
  assert.equal(memoryVerdict(1024 * MIB + 1, 1024), 'killed: resident memory 1024 MiB over tracker.max_memory_mb 1024');
  assert.equal(memoryVerdict(1100 * MIB, 1024), 'killed: resident memory 1100 MiB over tracker.max_memory_mb 1024');
  assert.equal(memoryVerdict(1e15, 0), null);
});

test('sampleResident sums the tracker and its descendants, skips the vanished, is bounded, and is null for a gone tracker', () => {
  const proc = fakeProc({
    100: { rssKb: 50_000, children: [101, 102, 104] },
    101: { rssKb: 20_000, children: [103] },
    103: { rssKb: 5_000 },
    104: { rssKb: null }, // a zombie: no VmRSS
    // 102 vanished between the children read and its status read
  });
  const s = sampleResident(100, proc);
  assert.deepEqual(s, { bytes: 75_000 * 1024, descendants: [101, 103] });
  assert.equal(sampleResident(999, proc), null);
  // A process listing itself or an ancestor as a child is not counted twice.
  assert.deepEqual(sampleResident(7, fakeProc({ 7: { rssKb: 10, children: [7, 8] }, 8: { rssKb: 1, children: [7] } })),
    { bytes: 11 * 1024, descendants: [8] });
  // A fork bomb: a long chain is cut at MAX_PROCESSES processes.
  const chain: Record<number, { rssKb: number; children: number[] }> = {};
  for (let i = 1; i <= 500; i++) chain[i] = { rssKb: 1, children: [i + 1] };
  const bomb = fakeProc(chain);
  const b = sampleResident(1, bomb);
  assert.equal(b!.bytes, MAX_PROCESSES * 1024);
  assert.ok(bomb.reads.length <= 2 * MAX_PROCESSES + 1, `${bomb.reads.length} reads`);
});

test('the real /proc: this process resident memory, and a child counted as a descendant', { skip: procReader() === null }, async () => {
  const reader = procReader()!;
  const own = sampleResident(process.pid, reader);
  const rss = process.memoryUsage().rss;
  assert.ok(own && Math.abs(own.bytes - rss) < 64 * MIB, `${own?.bytes} vs ${rss}`);
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)'], { stdio: 'ignore' });
  try {
    await new Promise((r) => child.once('spawn', r));
    const withChild = sampleResident(process.pid, reader);
    assert.ok(withChild!.descendants.includes(child.pid!), JSON.stringify(withChild));
  } finally {
    child.kill('SIGKILL');
  }
});
