// Per-node SPSC rings: RingWriter (producer) and RingReader (consumer).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { setImmediate as tick } from 'node:timers/promises';
import { RingWriter, RESERVE_TOO_LARGE, type OverflowPolicy } from '../src/ring/ring-writer.js';
import { RingReader, createRingBuffer, type RingBatch } from '../src/ring/ring-reader.js';
import {
  HEADER_BYTES, MIN_RING_BYTES, REWIND_BYTES, PAD_MARK, REC_LEN, REC_PAYLOAD_LEN, KIND_JSON_LINE, KIND_PACKED, recordSize,
} from '../src/ring/ring-layout.js';
import { checkPayload, payloadLen, PRODUCER_KIND, type ProducerResult } from './fixtures/ring-producer.js';
import { mulberry32 } from './prng.js';

const CAP = MIN_RING_BYTES; // 64 KiB


/** Payload for a sequence number with a given length (>= 4): u32 seq then derived bytes. */
function payloadFor(seq: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (seq * 13 + i * 7) & 0xff;
  if (len >= 4) b.writeUInt32LE(seq, 0);
  return b;
}

/** reserve + copy + commit; false when reserve() said full. */
function put(w: RingWriter, seq: number, len: number, onDrop?: (n: number) => void, kind = KIND_JSON_LINE): boolean {
  const off = w.reserve(len, 1757400000000 + seq, kind, seq % 100, onDrop);
  if (off < 0) return false;
  assert.ok(off >= 0 && off + len <= w.capacity, `payload [${off}, ${off + len}) inside the ring`);
  assert.equal(off % 8, 0, 'payload offset is 8-byte aligned');
  w.bytes.set(payloadFor(seq, len), off);
  w.commit();
  return true;
}

interface Got { seq: number; len: number }

/** Verifies every record of a batch against payloadFor(); returns them. */
function check(batch: RingBatch, kind = KIND_JSON_LINE): Got[] {
  const out: Got[] = [];
  for (const rec of batch.records()) {
    const seq = rec.payload.length >= 4 ? rec.payload.readUInt32LE(0) : -1;
    assert.ok(seq >= 0, 'payload carries a sequence number');
    assert.equal(rec.kind, kind);
    assert.equal(rec.timestamp, 1757400000000 + seq);
    assert.equal(rec.detections, seq % 100);
    assert.ok(rec.payload.equals(payloadFor(seq, rec.payload.length)), `payload bytes of seq ${seq}`);
    out.push({ seq, len: rec.payload.length });
  }
  assert.equal(out.length, batch.frames, 'records() yields batch.frames records');
  return out;
}

/** Pads in a batch's raw buffer. */
function countPads(batch: RingBatch): number {
  let pads = 0;
  for (let p = 0; p < batch.buffer.length;) {
    const len = batch.buffer.readUInt32LE(p + REC_LEN);
    assert.ok(len > 0 && len % 8 === 0, `record length ${len}`);
    if (batch.buffer.readUInt32LE(p + REC_PAYLOAD_LEN) === PAD_MARK) pads++;
    p += len;
  }
  return pads;
}

function ring(policy: OverflowPolicy, capacity = CAP): { w: RingWriter; r: RingReader; sab: SharedArrayBuffer } {
  const sab = createRingBuffer(capacity);
  return { sab, w: new RingWriter(sab, policy), r: new RingReader(sab) };
}

test('createRingBuffer validates the capacity', () => {
  assert.equal(createRingBuffer(CAP).byteLength, HEADER_BYTES + CAP);
  assert.throws(() => createRingBuffer(CAP - 8), RangeError);
  assert.throws(() => createRingBuffer(CAP + CAP / 2), RangeError);
  assert.throws(() => createRingBuffer(CAP / 2), RangeError);
});

test('records round-trip in order with exact payload bytes', () => {
  const { w, r } = ring('block');
  const sizes = [0, 1, 7, 8, 9, 100, 1000, 4096];
  const payloads: Buffer[] = [];
  for (let i = 0; i < sizes.length; i++) {
    const p = Buffer.alloc(sizes[i]!);
    for (let j = 0; j < p.length; j++) p[j] = (i * 17 + j) & 0xff;
    payloads.push(p);
    const off = w.reserve(p.length, 1000.5 + i, i % 2 ? KIND_PACKED : KIND_JSON_LINE, i * 3);
    assert.ok(off >= 0);
    w.bytes.set(p, off);
    w.commit();
  }
  w.flush();
  assert.equal(r.frames, sizes.length);
  assert.equal(r.usedBytes, sizes.reduce((a, s) => a + recordSize(s), 0));
  const batch = r.read();
  assert.ok(batch);
  assert.equal(batch.frames, sizes.length);
  const recs = [...batch.records()];
  assert.equal(recs.length, sizes.length);
  recs.forEach((rec, i) => {
    assert.equal(rec.kind, i % 2 ? KIND_PACKED : KIND_JSON_LINE);
    assert.equal(rec.timestamp, 1000.5 + i);
    assert.equal(rec.detections, i * 3);
    assert.ok(rec.payload.equals(payloads[i]!), `payload ${i}`);
  });
  assert.equal(r.read(), null);
  assert.equal(r.frames, 0);
  assert.equal(r.usedBytes, 0);
  assert.equal(r.consumedFrames, sizes.length);
});

test('nothing is visible before flush()', () => {
  const { w, r } = ring('block');
  assert.equal(w.flush(), false, 'flush with nothing staged');
  assert.ok(put(w, 0, 20));
  assert.ok(put(w, 1, 20));
  assert.equal(r.read(), null);
  assert.equal(r.frames, 0);
  assert.equal(r.usedBytes, 0);
  assert.equal(r.discard(), 0);
  w.flush();
  assert.equal(r.frames, 2);
  assert.ok(put(w, 2, 20)); // staged after the flush: not part of this batch
  const b = r.read();
  assert.ok(b);
  assert.deepEqual(check(b).map((g) => g.seq), [0, 1]);
  assert.equal(r.read(), null);
  w.flush();
  assert.deepEqual(check(r.read()!).map((g) => g.seq), [2]);
});

test('discard() frees published frames and returns their count', () => {
  const { w, r } = ring('block');
  for (let i = 0; i < 5; i++) assert.ok(put(w, i, 30));
  w.flush();
  assert.equal(r.discard(), 5);
  assert.equal(r.consumedFrames, 5);
  assert.equal(r.usedBytes, 0);
  assert.equal(r.read(), null);
  assert.equal(r.discard(), 0);
  assert.ok(put(w, 5, 30));
  w.flush();
  assert.deepEqual(check(r.read()!).map((g) => g.seq), [5]);
});

test('wrap-around many times with varied record sizes: nothing split, pads skipped', () => {
  const seed = 0xbeef;
  const rnd = mulberry32(seed);
  const { w, r } = ring('block');
  let next = 0;
  let expect = 0;
  let bytesWritten = 0;
  let pads = 0;
  const drainAll = (): void => {
    for (let b = r.read(); b; b = r.read()) {
      pads += countPads(b);
      for (const g of check(b)) {
        assert.equal(g.seq, expect, `seed ${seed}: sequence`);
        expect++;
      }
    }
  };
  while (bytesWritten < 60 * CAP) {
    const len = rnd() < 0.05 ? Math.floor(rnd() * (CAP / 2 - 24)) : 4 + Math.floor(rnd() * 3000);
    if (!put(w, next, len)) {
      w.flush();
      drainAll();
      assert.ok(put(w, next, len), `seed ${seed}: room after draining`);
    }
    next++;
    bytesWritten += recordSize(len);
    if (rnd() < 0.2) w.flush();
    if (rnd() < 0.1) drainAll();
  }
  w.flush();
  drainAll();
  assert.equal(expect, next, `seed ${seed}: every record read`);
  assert.equal(r.consumedFrames, next);
  assert.ok(pads > 10, `pads exercised (${pads})`);
});

test('a record over half the ring is refused as too large under both policies, and the ring is untouched', () => {
  for (const policy of ['block', 'drop-oldest'] as const) {
    const { w, r } = ring(policy);
    assert.equal(w.maxRecord, CAP / 2);
    assert.ok(put(w, 0, 40));
    // The largest payload whose record fits in half the ring is accepted; one more byte of record is not.
    const fits = CAP / 2 - recordSize(0);
    assert.equal(recordSize(fits), CAP / 2);
    assert.equal(w.reserve(fits + 1, 0, KIND_JSON_LINE, 0), RESERVE_TOO_LARGE, policy);
    assert.equal(w.reserve(CAP * 4, 0, KIND_JSON_LINE, 0), RESERVE_TOO_LARGE, policy);
    w.flush();
    assert.deepEqual(check(r.read()!).map((g) => g.seq), [0], `${policy}: nothing dropped or written`);
    assert.equal(r.overflowDrops, 0);
    assert.ok(w.reserve(fits, 0, KIND_JSON_LINE, 0) >= 0, `${policy}: half the ring fits`);
  }
});

test('block: fill until -1, read, then room again, nothing lost', () => {
  const { w, r } = ring('block');
  // 40-byte payloads make 64-byte records: exactly CAP / 64 fit.
  let seq = 0;
  let n = 0;
  while (put(w, seq, 40)) {
    seq++;
    n++;
  }
  assert.equal(n, CAP / 64);
  assert.equal(w.reserve(40, 0, KIND_JSON_LINE, 0), -1, 'still full');
  assert.equal(r.read(), null, 'not flushed yet');
  w.flush();
  assert.equal(r.usedBytes, CAP);
  assert.equal(r.frames, n);
  const got = check(r.read()!).map((g) => g.seq);
  assert.deepEqual(got, Array.from({ length: n }, (_, i) => i));
  // Room again; a record that does not fit before the end is padded to offset 0.
  let m = 0;
  while (put(w, seq, 1001)) {
    seq++;
    m++;
  }
  assert.equal(m, Math.floor(CAP / recordSize(1001)));
  w.flush();
  assert.deepEqual(check(r.read()!).map((g) => g.seq), Array.from({ length: m }, (_, i) => n + i));
  assert.ok(put(w, seq, 1001));
  w.flush();
  assert.equal(r.usedBytes, CAP - m * recordSize(1001) + recordSize(1001), 'pad + record');
  const b = r.read()!;
  assert.equal(countPads(b), 1);
  assert.deepEqual(check(b).map((g) => g.seq), [seq]);
  assert.equal(r.consumedFrames, n + m + 1);
  assert.equal(r.overflowDrops, 0);
});

test('drop-oldest: writing 3x capacity keeps the newest records, drops counted exactly', () => {
  const seed = 0xd209;
  const rnd = mulberry32(seed);
  const { w, r } = ring('drop-oldest');
  let dropped = 0;
  const onDrop = (k: number): void => {
    assert.ok(k > 0);
    dropped += k;
  };
  let written = 0;
  let bytes = 0;
  while (bytes < 3 * CAP) {
    const len = 4 + Math.floor(rnd() * 2000);
    assert.ok(put(w, written, len, onDrop), 'drop-oldest never refuses');
    written++;
    bytes += recordSize(len);
    if (rnd() < 0.1) w.flush();
  }
  w.flush();
  assert.ok(dropped > 0);
  assert.equal(r.overflowDrops, dropped);
  assert.equal(r.frames, written - dropped);
  const got: number[] = [];
  for (let b = r.read(); b; b = r.read()) got.push(...check(b).map((g) => g.seq));
  assert.equal(got.length + dropped, written, `seed ${seed}`);
  assert.deepEqual(got, Array.from({ length: got.length }, (_, i) => written - got.length + i), 'the newest, in order');
  assert.equal(r.consumedFrames, got.length);
  assert.ok(r.usedBytes === 0);
});

test('drop-oldest with interleaved reads: strictly increasing, received + dropped == written', () => {
  const seed = 0x1e4f;
  const rnd = mulberry32(seed);
  const { w, r } = ring('drop-oldest');
  let dropped = 0;
  const got: number[] = [];
  let written = 0;
  for (; written < 20000; written++) {
    assert.ok(put(w, written, 4 + Math.floor(rnd() * 600), (k) => { dropped += k; }));
    if (rnd() < 0.05) w.flush();
    if (rnd() < 0.002) for (let b = r.read(); b; b = r.read()) got.push(...check(b).map((g) => g.seq));
  }
  w.flush();
  for (let b = r.read(); b; b = r.read()) got.push(...check(b).map((g) => g.seq));
  for (let i = 1; i < got.length; i++) assert.ok(got[i]! > got[i - 1]!, `seed ${seed}: increasing at ${i}`);
  assert.ok(dropped > 0);
  assert.equal(got.length + dropped, written, `seed ${seed}`);
  assert.equal(r.overflowDrops, dropped);
  assert.equal(got[got.length - 1], written - 1, 'the newest record survives');
});

test('doorbell: after arm() returns true, the next flush() returns true exactly once', () => {
  const { w, r } = ring('block');
  assert.equal(r.arm(), true, 'empty ring arms');
  assert.equal(w.flush(), false, 'nothing staged: no doorbell');
  assert.ok(put(w, 0, 10));
  assert.equal(w.flush(), true);
  assert.ok(put(w, 1, 10));
  assert.equal(w.flush(), false, 'only once');
  assert.equal(r.arm(), false, 'data waiting: stays busy');
  assert.ok(put(w, 2, 10));
  assert.equal(w.flush(), false, 'not armed');
  assert.deepEqual(check(r.read()!).map((g) => g.seq), [0, 1, 2]);
  assert.equal(r.arm(), true);
  assert.ok(put(w, 3, 10));
  assert.ok(put(w, 4, 10));
  assert.equal(w.flush(), true, 'one doorbell for a batch');
  assert.equal(w.flush(), false);
});

test('doorbell under drop-oldest: a batch that overflows the ring still rings once', () => {
  // The consumer drained the ring and armed; the producer then stages more than
  // the ring holds before its next flush (one large socket read). Drop-oldest
  // publishes internally to drop; the caller's flush must still ring the
  // doorbell, or the consumer never learns there is data.
  const { w, r } = ring('drop-oldest');
  assert.equal(r.arm(), true);
  let dropped = 0;
  let seq = 0;
  for (let bytes = 0; bytes < 2 * CAP; bytes += recordSize(1000)) assert.ok(put(w, seq++, 1000, (k) => { dropped += k; }));
  assert.ok(dropped > 0, 'the batch overflowed');
  assert.equal(w.flush(), true, 'the caller gets the doorbell');
  assert.equal(w.flush(), false);
  const got = check(r.read()!).map((g) => g.seq);
  assert.equal(got.length + dropped, seq);
});

test('waitForSpace resolves when the consumer frees space', { timeout: 4000 }, async () => {
  const { w, r } = ring('block');
  let seq = 0;
  while (put(w, seq, 500)) seq++;
  w.flush();
  let resolved = false;
  const t0 = Date.now();
  const p = w.waitForSpace(3000).then(() => { resolved = true; });
  await tick();
  await tick();
  assert.equal(resolved, false, 'still full: keeps waiting');
  assert.equal(check(r.read()!).length, seq);
  await p;
  assert.ok(Date.now() - t0 < 1000, `woken by the consumer, not the timeout (${Date.now() - t0} ms)`);
  assert.ok(put(w, seq, 500));
});

test('waitForSpace resolves at once when space was freed before the call, and on timeout', { timeout: 4000 }, async () => {
  const { w, r } = ring('block');
  let seq = 0;
  while (put(w, seq, 500)) seq++;
  w.flush();
  assert.equal(r.discard(), seq);
  const t0 = Date.now();
  await w.waitForSpace(3000);
  assert.ok(Date.now() - t0 < 500, 'space already free');
  while (put(w, seq, 500)) seq++;
  w.flush();
  // A ref'd guard timer keeps this thread's event loop alive during the wait (see
  // the next test for what happens without one).
  const guard = setTimeout(() => undefined, 3000);
  try {
    const t1 = Date.now();
    await w.waitForSpace(30);
    const waited = Date.now() - t1;
    assert.ok(waited >= 20 && waited < 2000, `timed out after ~30 ms (${waited})`);
  } finally {
    clearTimeout(guard);
  }
});

test('waitForSpace(timeout) settles on its own when nothing else keeps the thread alive', { timeout: 4000 }, async () => {
  // Run in a worker so an event loop that empties ends the worker, not this file.
  const sab = createRingBuffer(CAP);
  const worker = new Worker(new URL('./fixtures/ring-producer.js', import.meta.url), {
    workerData: { sab, policy: 'block', count: 0, batch: 1, mode: 'wait-timeout' },
  });
  let reply: { waited: number } | null = null;
  worker.on('message', (m: { waited: number }) => { reply = m; });
  const code = await new Promise<number>((res, rej) => {
    worker.once('exit', res);
    worker.once('error', rej);
  });
  assert.equal(code, 0);
  assert.ok(reply, 'the worker exited while awaiting waitForSpace(30): the promise never settled '
    + '(Atomics.waitAsync timeouts do not keep the Node event loop alive)');
  const waited = (reply as { waited: number }).waited;
  assert.ok(waited >= 20 && waited < 2000, `waited ${waited} ms`);
});

interface Run { seqs: number[]; result: ProducerResult; reader: RingReader; ms: number }

async function runProducer(policy: OverflowPolicy, count: number, keepAlive = false): Promise<Run> {
  const sab = createRingBuffer(CAP);
  const reader = new RingReader(sab);
  const t0 = Date.now();
  const worker = new Worker(new URL('./fixtures/ring-producer.js', import.meta.url), {
    workerData: { sab, policy, count, batch: 16, keepAlive },
  });
  let result: ProducerResult | null = null;
  let error: unknown = null;
  let exitCode: number | null = null;
  worker.on('message', (m: ProducerResult) => { result = m; });
  worker.on('error', (e) => { error = e; });
  const exited = new Promise<number>((res) => worker.once('exit', (c) => {
    exitCode = c;
    res(c);
  }));
  const seqs: number[] = [];
  try {
    for (;;) {
      const b = reader.read();
      if (b) {
        let n = 0;
        for (const rec of b.records()) {
          const seq = checkPayload(rec.payload);
          assert.equal(rec.kind, PRODUCER_KIND);
          assert.equal(rec.timestamp, seq);
          assert.equal(rec.detections, seq % 1000);
          assert.equal(rec.payload.length, payloadLen(seq));
          seqs.push(seq);
          n++;
        }
        assert.equal(n, b.frames, 'records per batch == frames');
        continue;
      }
      if (error) throw error;
      if (result) break; // flushed before it posted: a read after this sees everything
      if (exitCode !== null) {
        throw new Error(`producer thread exited (code ${exitCode}) without finishing after ${seqs.length} records `
          + `(${reader.usedBytes} bytes still in the ring)`);
      }
      if (Date.now() - t0 > 4500) throw new Error(`producer did not finish (${seqs.length} received)`);
      await tick();
    }
    assert.equal(reader.read(), null);
  } finally {
    await worker.terminate();
    await exited;
  }
  return { seqs, result: result!, reader, ms: Date.now() - t0 };
}

function assertBlockRun({ seqs, result, reader, ms }: Run, N: number): void {
  assert.equal(seqs.length, N);
  for (let i = 0; i < N; i++) if (seqs[i] !== i) assert.fail(`position ${i}: got ${seqs[i]}`);
  assert.equal(result.dropped, 0);
  assert.equal(reader.overflowDrops, 0);
  assert.equal(reader.consumedFrames, N);
  assert.ok(ms < 5000, `took ${ms} ms`);
}

test('concurrent worker producer, block policy: every sequence exactly once, in order', { timeout: 10000 }, async () => {
  // The producer is exactly the documented pattern: reserve, and on -1 flush and
  // `await w.waitForSpace(50)`. Nothing else keeps its thread alive.
  const N = 200_000;
  assertBlockRun(await runProducer('block', N), N);
});

test('concurrent worker producer, block policy, producer thread kept alive: every sequence exactly once', { timeout: 10000 }, async () => {
  // Same, with a ref'd timer in the producer (as a shard's sockets and ports do):
  // isolates the ring protocol from the waitForSpace liveness issue.
  const N = 200_000;
  const run = await runProducer('block', N, true);
  assertBlockRun(run, N);
  assert.ok(run.result.waits > 0, 'the producer did block on a full ring');
});

test('concurrent worker producer, drop-oldest: strictly increasing, received + dropped == sent', { timeout: 10000 }, async () => {
  const N = 200_000;
  const { seqs, result, reader, ms } = await runProducer('drop-oldest', N);
  for (let i = 1; i < seqs.length; i++) if (!(seqs[i]! > seqs[i - 1]!)) assert.fail(`not increasing at ${i}: ${seqs[i - 1]} then ${seqs[i]}`);
  assert.equal(seqs.length + result.dropped, N, `received ${seqs.length} + dropped ${result.dropped}`);
  assert.equal(reader.overflowDrops, result.dropped);
  assert.equal(reader.consumedFrames, seqs.length);
  assert.equal(seqs[seqs.length - 1], N - 1, 'the newest record arrives');
  assert.ok(ms < 5000, `took ${ms} ms`);
});

test('a ring its consumer keeps up with is only ever written in its first REWIND_BYTES plus one record (touchedBytes), however much passes through; a backlog touches more', () => {
  const cap = 1 << 20;
  const sab = createRingBuffer(cap);
  const w = new RingWriter(sab, 'block');
  const r = new RingReader(sab);
  assert.equal(r.touchedBytes, 0, 'a new ring has touched nothing');
  let seq = 0;
  let passed = 0;
  // A 2 Hz node: one ~600-byte frame per batch, read before the next arrives; 8 ring sizes pass through.
  while (passed < 8 * cap) {
    assert.ok(put(w, seq, 600));
    w.flush();
    const b = r.read()!;
    assert.deepEqual(check(b).map((g) => g.seq), [seq]);
    passed += recordSize(600);
    seq++;
  }
  assert.ok(r.touchedBytes > 0 && r.touchedBytes <= REWIND_BYTES + recordSize(600), `touched ${r.touchedBytes} after ${passed} bytes passed`);
  // A writer made later (a reconnect, a placement move) goes on from the ring's mark.
  const w2 = new RingWriter(sab, 'block');
  const before = r.touchedBytes;
  // A backlog: the consumer does not read while half the ring fills.
  for (let i = 0; i < (cap / 2) / recordSize(600); i++) assert.ok(put(w2, seq++, 600));
  w2.flush();
  assert.ok(r.touchedBytes >= before + cap / 2 - REWIND_BYTES - recordSize(600), `a backlog of half the ring touched ${r.touchedBytes}`);
  assert.ok(r.touchedBytes <= cap);
});
