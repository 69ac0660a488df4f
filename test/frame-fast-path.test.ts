// The binary frame fast path must agree with the general msgpack decoder whenever
// it accepts a message, and accept what clients normally send.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { FastFrame, readFastFrame } from '../src/shard/binary/frame-fast-path.js';
import { encodeFrame, decodeBody } from '../src/protocol/binary-protocol.js';
import { mulberry32 } from './prng.js';


test('frames from encodeFrame take the fast path with the same values', () => {
  const out = new FastFrame();
  for (const seq of [1, 127, 128, 255, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1]) {
    for (const n of [0, 1, 50, 2000]) {
      const d = Array.from({ length: n }, (_, i) => i * 1.5);
      const msg = encodeFrame({ seq, timestamp: 1757400000000 + seq, delay: d, doppler: d, snr: d });
      const body = msg.subarray(4);
      assert.equal(readFastFrame(body, 0, body.length, out), true, `seq ${seq} n ${n}`);
      const ref = decodeBody(body, 0, body.length) as Record<string, any>;
      assert.equal(out.seq, ref.seq);
      assert.equal(out.ts, ref.ts);
      assert.deepEqual(body.subarray(out.detStart, out.detEnd), Buffer.from(ref.det));
    }
  }
});

test('anything outside the canonical shape falls back (adsb, other types, trailing bytes)', () => {
  const out = new FastFrame();
  const p = new Packr({ useRecords: false });
  const cases = [
    { t: 'f', seq: 1, ts: 2, det: Buffer.alloc(24), adsb: [null] },
    { t: 'hb' },
    { t: 'f', seq: '1', ts: 2, det: Buffer.alloc(24) },
    { t: 'f', seq: 1, ts: 2 },
    { t: 'f', seq: -1, ts: 2, det: Buffer.alloc(24) },
    { t: 'f', seq: 1, ts: 2, det: [1, 2, 3] },
  ];
  for (const c of cases) {
    const b = p.pack(c);
    assert.equal(readFastFrame(b, 0, b.length, out), false, JSON.stringify(c));
  }
  const ok = p.pack({ t: 'f', seq: 1, ts: 2, det: Buffer.alloc(24) });
  assert.equal(readFastFrame(ok, 0, ok.length, out), true);
  const trailing = Buffer.concat([ok, Buffer.from([0])]);
  assert.equal(readFastFrame(trailing, 0, trailing.length, out), false);
});

test('differential: mutated frames accepted by the fast path decode identically in msgpackr', () => {
  const seed = Number(process.env.FAST_FRAME_SEED ?? 424242);
  const r = mulberry32(seed);
  const out = new FastFrame();
  let accepted = 0;
  for (let i = 0; i < 20000; i++) {
    const n = Math.floor(r() * 5);
    const d = Array.from({ length: n }, () => r() * 100);
    const b = Buffer.from(encodeFrame({ seq: 1 + Math.floor(r() * 1e6), timestamp: r() * 1e12, delay: d, doppler: d, snr: d }).subarray(4));
    const muts = Math.floor(r() * 3);
    for (let m = 0; m < muts; m++) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
    const end = r() < 0.1 ? Math.floor(r() * b.length) : b.length;
    if (!readFastFrame(b, 0, end, out)) continue;
    accepted++;
    let ref: Record<string, any>;
    try {
      ref = decodeBody(b, 0, end) as Record<string, any>;
    } catch (err) {
      assert.fail(`seed ${seed} case ${i}: fast path accepted what msgpackr rejects (${(err as Error).message}): ${b.subarray(0, end).toString('hex')}`);
    }
    assert.equal(ref.t, 'f', `seed ${seed} case ${i}`);
    assert.equal(out.seq, ref.seq, `seed ${seed} case ${i}`);
    assert.equal(Object.is(out.ts, ref.ts), true, `seed ${seed} case ${i}`);
    assert.deepEqual(b.subarray(out.detStart, out.detEnd), Buffer.from(ref.det), `seed ${seed} case ${i}`);
  }
  assert.ok(accepted > 5000, `fast path accepted only ${accepted}`);
});
