// RingFeeder: a real ring (RingWriter -> RingReader) into a real tracker
// subprocess (test/fixtures/fake-tracker.js).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { RingWriter } from '../src/ring/ring-writer.js';
import { RingReader, createRingBuffer } from '../src/ring/ring-reader.js';
import { KIND_JSON_LINE, KIND_PACKED } from '../src/ring/ring-layout.js';
import { packedToJson } from '../src/ring/record-codec.js';
import { TrackerProcess } from '../src/tracker/tracker-process.js';
import { RingFeeder } from '../src/tracker/ring-feeder.js';
import { until, freePort, FAKE_TRACKER } from './helpers.js';

const T0 = 1757400000000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


const trackers: TrackerProcess[] = [];
const feeders: RingFeeder[] = [];
after(async () => {
  for (const f of feeders) f.close();
  await Promise.all(trackers.map((t) => t.stop(100)));
});

interface Fake {
  t: TrackerProcess;
  /** Echoed lines (what the tracker received), without the {"echo":...} wrapper. */
  got: string[];
}

async function startFake(flags: string[]): Promise<Fake> {
  const got: string[] = [];
  const t = new TrackerProcess({
    command: [process.execPath, FAKE_TRACKER, '--tcp-port', '{port}', ...flags],
    nodeId: 'node-1',
    port: await freePort(),
    input: 'tcp',
    startupDelayMs: 20,
    retryDelayMs: 25,
    connectRetries: 80,
    trackLine: (l) => {
      if (l.startsWith('{"echo":')) got.push(l.slice(8, -1));
    },
    stderrLine: (l) => {
      if (l.startsWith('fake-tracker:') || err.length < 20) err.push(l);
    },
  });
  const err: string[] = [];
  trackers.push(t);
  await t.start().catch((e: Error) => {
    throw new Error(`${e.message}; its stderr: ${JSON.stringify(err)}`);
  });
  return { t, got };
}

function ring(capacity = 1 << 16): { w: RingWriter; r: RingReader } {
  const sab = createRingBuffer(capacity);
  return { w: new RingWriter(sab, 'block'), r: new RingReader(sab) };
}

function feeder(r: RingReader, t?: TrackerProcess): RingFeeder {
  const f = new RingFeeder(t ? { reader: r, tracker: t } : { reader: r });
  feeders.push(f);
  return f;
}

/** The retina line a node would send (token removed), '\n'-terminated. */
function retinaLine(ts: number, n = 2): string {
  const col = (base: number): string => Array.from({ length: n }, (_, i) => base + i * 0.25).join(',');
  return `{"timestamp":${ts},"delay":[${col(40.5)}],"doppler":[${col(-27.75)}],"snr":[${col(12)}],"adsb":[${Array(n).fill('null').join(',')}]}\n`;
}

/** Stages one JSON-line record; false when the ring is full. */
function putLine(w: RingWriter, ts: number, n = 2): boolean {
  const b = Buffer.from(retinaLine(ts, n));
  const off = w.reserve(b.length, ts, KIND_JSON_LINE, n);
  if (off < 0) return false;
  w.bytes.set(b, off);
  w.commit();
  return true;
}

/** Stages one packed record: n f64 delay, doppler, snr, then the adsb JSON (if any). */
function putPacked(w: RingWriter, ts: number, cols: number[][], adsb: string | null): { det: Buffer; adsb: Buffer | null } {
  const n = cols[0]!.length;
  const f = new Float64Array(n * 3);
  cols.forEach((c, k) => c.forEach((v, i) => { f[k * n + i] = v; }));
  const det = Buffer.from(f.buffer);
  const a = adsb === null ? null : Buffer.from(adsb);
  const off = w.reserve(det.length + (a ? a.length : 0), ts, KIND_PACKED, n);
  assert.ok(off >= 0);
  w.bytes.set(det, off);
  if (a) w.bytes.set(a, off + det.length);
  w.commit();
  return { det, adsb: a };
}

const strip = (line: string): string => line.replace(/\n$/, '');

test('in-order frames reach the tracker as retina lines, one write per batch; the doorbell is re-armed', async () => {
  const { t, got } = await startFake(['--echo']);
  const { w, r } = ring();
  const f = feeder(r, t);
  const sent: string[] = [];
  for (let i = 0; i < 50; i++) {
    assert.ok(putLine(w, T0 + i * 500, 1 + (i % 5)));
    sent.push(strip(retinaLine(T0 + i * 500, 1 + (i % 5))));
  }
  w.flush();
  assert.equal(f.pump(), 'idle');
  assert.equal(t.writes, 1, 'one write for the batch');
  assert.equal(f.batches, 1);
  await until(() => got.length === 50, '50 echoes');
  assert.deepEqual(got, sent);
  await until(() => f.framesFed === 50, 'framesFed');
  assert.equal(f.inFlight, 0);
  assert.ok(f.lastFrameAt > 0);
  assert.equal(f.lastTimestamp, T0 + 49 * 500);

  // The ring is empty and armed: the next flush asks for a doorbell.
  for (let i = 50; i < 60; i++) putLine(w, T0 + i * 500);
  assert.equal(w.flush(), true, 'producer sees an idle consumer');
  assert.equal(f.pump(), 'idle');
  assert.equal(t.writes, 2);
  await until(() => got.length === 60, '60 echoes');
  assert.equal(f.taken, r.consumedFrames);
  assert.equal(f.pump(), 'idle', 'pump on an empty ring is harmless');
  assert.equal(t.writes, 2);
});

test('duplicate and out-of-order frames are skipped and counted, within and across batches', async () => {
  const { t, got } = await startFake(['--echo']);
  const { w, r } = ring();
  const f = feeder(r, t);
  for (const d of [0, 1, 1, 2, -1, 3]) putLine(w, T0 + d);
  w.flush();
  f.pump();
  for (const d of [3, 2, 4]) putLine(w, T0 + d);
  w.flush();
  f.pump();
  await until(() => f.framesFed === 5 && got.length === 5, 'five frames fed and echoed');
  assert.deepEqual(got.map((l) => JSON.parse(l).timestamp - T0), [0, 1, 2, 3, 4]);
  assert.equal(f.duplicate, 2);
  assert.equal(f.outOfOrder, 2);
  assert.equal(f.taken, 9);
  assert.equal(r.consumedFrames, 9);

  // A batch with nothing new is not written at all.
  putLine(w, T0 + 4);
  w.flush();
  f.pump();
  assert.equal(t.writes, 2);
  assert.equal(f.duplicate, 3);

  // resetOrdering(): the next frame may go back in time (a fresh tracker has seen nothing).
  f.resetOrdering();
  putLine(w, T0 - 100);
  w.flush();
  f.pump();
  await until(() => got.length === 6, 'frame after reset');
  assert.equal(JSON.parse(got[5]!).timestamp, T0 - 100);
});

test('packed records are rendered as retina JSON lines', async () => {
  const { t, got } = await startFake(['--echo']);
  const { w, r } = ring();
  const f = feeder(r, t);
  const a = putPacked(w, T0 + 1, [[40.46, 120.3], [-27.99, 88.1], [12.08, 7.2]],
    '[null,{"hex":"4ca1fa","lat":52.1,"lon":-1.5,"alt_baro":3000}]');
  putLine(w, T0 + 2);
  const b = putPacked(w, T0 + 3, [[1.5], [2.5], [3.5]], null);
  putPacked(w, T0 + 4, [[], [], []], null);
  w.flush();
  assert.equal(f.pump(), 'idle');
  assert.equal(t.writes, 1);
  await until(() => got.length === 4, 'four echoes');
  assert.equal(got[0], strip(packedToJson(a.det, 2, a.adsb, T0 + 1)));
  assert.deepEqual(JSON.parse(got[0]!), {
    timestamp: T0 + 1, delay: [40.46, 120.3], doppler: [-27.99, 88.1], snr: [12.08, 7.2],
    adsb: [null, { hex: '4ca1fa', lat: 52.1, lon: -1.5, alt_baro: 3000 }],
  });
  assert.equal(got[1], strip(retinaLine(T0 + 2)));
  assert.equal(got[2], strip(packedToJson(b.det, 1, null, T0 + 3)));
  assert.deepEqual(JSON.parse(got[2]!), { timestamp: T0 + 3, delay: [1.5], doppler: [2.5], snr: [3.5] });
  assert.deepEqual(JSON.parse(got[3]!), { timestamp: T0 + 4, delay: [], doppler: [], snr: [] });
});

test('one batch mixing JSON lines (one without its newline, one duplicate, one empty, one with a skip), then packed, then JSON: every line whole, in order', async () => {
  const { t, got } = await startFake(['--echo']);
  const { w, r } = ring();
  const f = feeder(r, t);
  const raw = (ts: number, text: string, skip = 0): void => {
    const b = Buffer.from(text);
    const off = w.reserve(b.length, ts, KIND_JSON_LINE, 2, undefined, skip);
    assert.ok(off >= 0);
    w.bytes.set(b, off);
    w.commit();
  };
  putLine(w, T0 + 1);
  raw(T0 + 2, strip(retinaLine(T0 + 2))); // no trailing newline: one is added
  putLine(w, T0 + 2); // duplicate: skipped
  raw(T0 + 3, ''); // empty payload: a bad record
  raw(T0 + 3, retinaLine(T0 + 3), 5); // payload placed after a 5-byte skip
  const p = putPacked(w, T0 + 4, [[1.25], [2.5], [3.75]], null);
  putLine(w, T0 + 5);
  raw(T0 + 6, strip(retinaLine(T0 + 6)));
  putLine(w, T0 + 7);
  w.flush();
  assert.equal(f.pump(), 'idle');
  assert.equal(t.writes, 1, 'one write for the batch');
  await until(() => got.length === 7, 'seven echoes');
  assert.deepEqual(got, [
    strip(retinaLine(T0 + 1)), strip(retinaLine(T0 + 2)), strip(retinaLine(T0 + 3)),
    strip(packedToJson(p.det, 1, null, T0 + 4)), strip(retinaLine(T0 + 5)), strip(retinaLine(T0 + 6)), strip(retinaLine(T0 + 7)),
  ]);
  assert.equal(f.duplicate, 1);
  assert.equal(f.badRecords, 1);
  assert.equal(f.framesFed + f.inFlight, 7);
});

test('a tracker that stops reading: the feeder stops draining the ring; frames queued when it dies are lostInFlight; the rest wait in the ring', async () => {
  const { t } = await startFake(['--no-read']);
  const { w, r } = ring(1 << 20);
  const f = feeder(r, t);
  let ts = T0;
  // Fill, pump, repeat: kernel socket buffers absorb several MB before write() stays back-pressured.
  let blocked = false;
  for (let i = 0; i < 200 && !blocked; i++) {
    while (putLine(w, ts, 150)) ts++;
    w.flush();
    f.pump();
    await sleep(20);
    if (f.state !== 'blocked') continue;
    if (putLine(w, ts, 150)) ts++; // room again: not stuck yet
    else blocked = true;
  }
  assert.ok(blocked, 'the feeder ended up blocked with a full ring');
  assert.ok(f.stalls >= 1);
  assert.ok(f.inFlight > 0, 'a batch is queued behind the tracker');

  // The ring stops draining: nothing more is taken while the tracker does not read.
  const consumed = r.consumedFrames;
  const used = r.usedBytes;
  await sleep(300);
  assert.equal(f.pump(), 'blocked', 'pump() while blocked does nothing');
  assert.equal(r.consumedFrames, consumed);
  assert.equal(r.usedBytes, used);
  assert.equal(putLine(w, ts, 150), false, 'producer still sees a full ring');
  assert.equal(f.taken, r.consumedFrames, 'every frame taken is accounted for');

  // The tracker dies with a batch still queued here: those frames are lost in flight.
  const inFlight = f.inFlight;
  const fedBefore = f.framesFed;
  await t.stop(1000);
  await until(() => f.inFlight === 0, 'queued writes settle');
  assert.equal(f.lostInFlight, inFlight, 'exactly the queued frames are lost');
  assert.equal(f.framesFed, fedBefore);
  assert.equal(f.taken, r.consumedFrames);

  // No tracker input: the ring is left alone (nothing more is lost).
  assert.equal(f.pump(), 'detached');
  assert.equal(r.consumedFrames, consumed);
  const waiting = r.frames;
  assert.ok(waiting > 0);

  // A new tracker gets what waited in the ring, in order.
  const next = await startFake(['--echo']);
  f.attach(next.t);
  assert.equal(f.lastTimestamp, -Infinity);
  f.pump();
  await until(() => next.got.length === waiting, `${waiting} frames delivered to the new tracker`);
  const stamps = next.got.map((l) => JSON.parse(l).timestamp as number);
  assert.equal(stamps[stamps.length - 1], ts - 1);
  assert.ok(stamps.every((s, i) => i === 0 || s === stamps[i - 1]! + 1), 'consecutive, none skipped');
  await until(() => f.state === 'idle', 'ring drained and armed');
  assert.equal(r.frames, 0);
  assert.equal(f.duplicate + f.outOfOrder, 0);
  assert.equal(f.taken, r.consumedFrames);
});

test('a tracker that exits: frames stay in the ring until a new tracker is attached', async () => {
  const { t, got } = await startFake(['--echo', '--exit-after', '3']);
  const { w, r } = ring();
  const f = feeder(r, t);
  for (let i = 0; i < 3; i++) putLine(w, T0 + i);
  w.flush();
  f.pump();
  await until(() => t.state === 'exited', 'tracker exit');
  assert.equal(got.length, 3);
  assert.deepEqual(t.exitStatus, { code: 3, signal: null });

  for (let i = 3; i < 8; i++) putLine(w, T0 + i);
  w.flush();
  assert.equal(f.pump(), 'detached');
  assert.equal(r.frames, 5, 'nothing taken while no tracker listens');
  assert.equal(f.lostInFlight, 0);

  const next = await startFake(['--echo']);
  f.attach(next.t);
  assert.equal(f.pump(), 'idle');
  await until(() => next.got.length === 5, 'the five waiting frames');
  assert.deepEqual(next.got.map((l) => JSON.parse(l).timestamp - T0), [3, 4, 5, 6, 7]);
  await until(() => f.framesFed === 8, 'framesFed');
  assert.equal(f.taken, r.consumedFrames);
});

test('a stderr flood does not stall feeding', async () => {
  const { t, got } = await startFake(['--stderr-flood', '4096', '--stderr-per-line', '3000', '--echo']);
  const { w, r } = ring();
  const f = feeder(r, t);
  let ts = T0;
  for (let batch = 0; batch < 20; batch++) {
    for (let i = 0; i < 25; i++) putLine(w, ts++);
    w.flush();
    f.pump();
    await sleep(1);
  }
  await until(() => got.length === 500, '500 echoes', 10000);
  // stderr is a pipe of its own: its last lines may be read after the last echo on stdout.
  await until(() => t.stderrLines >= 4096 + 500, 'every stderr line read', 10000);
  assert.equal(f.framesFed, 500);
});

test('a ring refilled during pump(): the feeder yields after maxBatchesPerPump and resumes by itself', async () => {
  const { w, r } = ring();
  const writes: number[] = [];
  let ts = T0;
  // A target whose every write sees the producer publish more (as a busy node would).
  const target = {
    writable: true,
    write(buf: Buffer, done?: (err: Error | null) => void): boolean {
      writes.push(buf.toString().split('\n').length - 1);
      if (writes.length < 7) {
        putLine(w, ts++);
        w.flush();
      }
      setImmediate(() => done?.(null));
      return true;
    },
    whenWritable: (): Promise<void> => Promise.resolve(),
  };
  const f = new RingFeeder({ reader: r, tracker: target, maxBatchesPerPump: 3 });
  feeders.push(f);
  putLine(w, ts++);
  w.flush();
  assert.equal(f.pump(), 'yielded');
  assert.equal(writes.length, 3);
  assert.equal(f.pump(), 'yielded', 'a doorbell while a resume is pending does nothing');
  assert.equal(writes.length, 3);
  await until(() => f.state === 'idle', 'resumed until the ring is empty');
  assert.deepEqual(writes, [1, 1, 1, 1, 1, 1, 1]);
  await until(() => f.framesFed === 7, 'all confirmed');
  assert.equal(f.taken, r.consumedFrames);
});
