// Bugs the fuzzer (fuzz-shard.test.ts) found, each kept as a fixed case on the real shard
// harness (test/fuzz/harness.ts).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { HEADER_BYTES, LAST_SEQ_F64 } from '../src/ring/ring-layout.js';
import { RingWriter } from '../src/ring/ring-writer.js';
import { C_FRAMES_RECEIVED, C_FRAMES_WRITTEN, dropIndex } from '../src/telemetry/counters.js';
import { M_DATA } from '../src/protocol/thread-messages.js';
import { encodeHello, packDetections } from '../src/protocol/binary-protocol.js';
import { TOKEN, NODE, B, HConn, Harness } from './fuzz/harness.js';
import { packr, prefixed, mpStr, BinFrameExp } from './fuzz/binary-streams.js';
import { parseOut } from './fuzz/oracles.js';

// Bugs found by this file and fixed since (the text says what it was).
const fixedBug = (_was: string): { skip: false } => ({ skip: false });

describe('regressions: bugs the fuzzer found (fixed)', () => {
  /** Feeds one binary session (hello + the given bodies) to a fresh shard; returns what escaped. */
  function session(bodies: Buffer[]): { escaped: unknown; h: Harness; c: HConn } {
    const h = new Harness();
    const c = h.open();
    let escaped: unknown = null;
    try {
      h.data(c, encodeHello(NODE, TOKEN));
      for (const b of bodies) h.data(c, prefixed(b));
    } catch (err) {
      escaped = err;
    }
    return { escaped, h, c };
  }
  const det1 = packDetections([1], [2], [3]);
  /** A frame {t, seq, ts, det, adsb: [{alt_baro: <int64>}]}, the int as msgpack int64/uint64 (what e.g. Go and C clients send). */
  function frameWithInt64Adsb(code: 0xcf | 0xd3): Buffer {
    const m = packr.pack({ t: 'f', seq: 1, ts: 1000, det: det1, adsb: [{ alt_baro: 1 }] });
    const i = m.lastIndexOf(Buffer.from([0xa8, ...Buffer.from('alt_baro'), 0x01]));
    const v = Buffer.alloc(9);
    v[0] = code;
    v.writeUInt32BE(0, 1);
    v.writeUInt32BE(35000, 5);
    return Buffer.concat([m.subarray(0, i + 9), v, m.subarray(i + 10)]);
  }

  test('an int64/uint64 value inside adsb does not throw out of the shard', fixedBug(
    'src/shard/binary-handler.ts:133 JSON.stringify(adsb) throws on the BigInt msgpackr returns for 0xcf/0xd3 -> the shard worker dies ' +
    '(shards: 0: the process); wrap it in try/catch -> invalid_frame, and decode with int64AsType "auto" (src/shared/binary-protocol.ts:24)'), () => {
    for (const code of [0xcf, 0xd3] as const) {
      const { escaped, h } = session([frameWithInt64Adsb(code)]);
      assert.equal(escaped, null, `escaped: ${String(escaped)}`);
      assert.equal(h.counters[C_FRAMES_RECEIVED], 1, 'the frame is counted (written or dropped with a reason)');
    }
  });

  test('a cyclic adsb entry (msgpackr structured-clone ext 0x69/0x70) does not throw out of the shard', fixedBug(
    'src/shard/binary-handler.ts:133 JSON.stringify throws on a cycle built by msgpackr\'s structured-clone extension; ' +
    'decode with structuredClone: false (src/shared/binary-protocol.ts:24) and catch stringify errors'), () => {
    const p = new Packr({ structuredClone: true, useRecords: false });
    const a: unknown[] = [];
    a.push(a);
    const { escaped, h } = session([p.pack({ t: 'f', seq: 1, ts: 1000, det: det1, adsb: [{ x: a }] })]);
    assert.equal(escaped, null, `escaped: ${String(escaped)}`);
    assert.equal(h.counters[C_FRAMES_RECEIVED], 1);
  });

  test('an adsb entry nested a few thousand levels deep does not throw out of the shard', fixedBug(
    'src/shard/binary-handler.ts:133 msgpackr decodes ~3000 levels but JSON.stringify overflows the stack on them; ' +
    'catch it, or bound the depth of adsb entries'), () => {
    const depth = 3500;
    const deep = Buffer.concat([Buffer.alloc(depth, 0x91), Buffer.from([0xc0])]);
    const head = packr.pack({ t: 'f', seq: 1, ts: 1000, det: det1 });
    // {...head, adsb: [{d: <deep>}]}
    const body = Buffer.concat([Buffer.from([head[0]! + 1]), head.subarray(1), mpStr('adsb'), Buffer.from([0x91, 0x81]), mpStr('d'), deep]);
    const { escaped } = session([body]);
    assert.equal(escaped, null, `escaped: ${String(escaped)}`);
  });

  test('a hello whose v (or a message whose t) is a map with a toString key does not throw out of the shard', fixedBug(
    'src/shard/binary-handler.ts:176 String(m.v) (and :101 String(m.t)) throws "Cannot convert object to primitive value" for {toString: 1}: ' +
    'an unauthenticated 40-byte hello kills the shard worker (shards: 0: the process); use a safe formatter (typeof checks / JSON.stringify in try)'), () => {
    const h = new Harness();
    const c = h.open();
    assert.doesNotThrow(() => h.data(c, prefixed(packr.pack({ t: 'hello', v: { toString: 1 }, node: NODE, token: TOKEN }))));
    assert.equal(c.closeReason, 'unsupported_version');
    const h2 = new Harness();
    const c2 = h2.open();
    h2.data(c2, encodeHello(NODE, TOKEN));
    assert.doesNotThrow(() => h2.data(c2, prefixed(packr.pack({ t: { valueOf: 1, toString: 1 } }))));
  });

  test('a Python-style frame (ts packed as uint64, as msgpack.packb packs an int) with adsb is accepted like one without', fixedBug(
    'src/shared/binary-protocol.ts:24 Unpackr without int64AsType decodes 0xcf/0xd3 as BigInt, so seq/ts sent as 64-bit ints are rejected ' +
    '(invalid_frame) whenever the frame leaves the fast path (adsb present), while src/shard/frame-fast-path.ts accepts them; use int64AsType: "auto"'), () => {
    const f: BinFrameExp = { seq: 1, ts: 1757400000000, n: 1, det: det1, adsb: [null], cols: [[1], [2], [3]] };
    const ts = Buffer.alloc(9);
    ts[0] = 0xcf;
    ts.writeUInt32BE(Math.floor(f.ts / 2 ** 32), 1);
    ts.writeUInt32BE(f.ts >>> 0, 5);
    const body = Buffer.concat([Buffer.from([0x85]), mpStr('t'), mpStr('f'), mpStr('seq'), Buffer.from([1]), mpStr('ts'), ts,
      mpStr('det'), Buffer.from([0xc4, 24]), det1, mpStr('adsb'), Buffer.from([0x91, 0xc0])]);
    const { escaped, h, c } = session([body]);
    assert.equal(escaped, null);
    assert.equal(parseOut(c).filter((m) => m.t === 'error').length, 0, JSON.stringify(parseOut(c)));
    assert.equal(h.counters[C_FRAMES_WRITTEN], 1);
  });

  // Was a bug (fixed): src/ring-writer.ts:75 reserve() returns -1 ("full") for a record that can never fit: adsb JSON
  // (nil -> "null,") and JSON rendering (trackers sink) expand a frame within max_frame_bytes beyond ring capacity /
  // 2; the connection blocks forever (block policy) and src/ring-writer.ts:137 dropUntil() spins forever
  // (drop-oldest: the shard thread hangs). Reject such frames in binary-handler frame() (frame_too_large, settled)
  // and guard need > capacity in reserve()
  test('a binary frame whose ring record exceeds half the ring is refused, not stalled forever', () => {
    const h = new Harness();
    const c = h.open();
    h.data(c, encodeHello(NODE, TOKEN));
    // 16 KiB on the wire, 80 KiB as adsb JSON: more than the 64 KiB ring (minimum legal size for this frame limit).
    try {
      h.data(c, prefixed(packr.pack({ t: 'f', seq: 1, ts: 1000, det: det1, adsb: [{ a: new Array(16000).fill(null) }] })));
      assert.equal(h.shard.conns.get(c.id)?.blocked, false, 'the connection is not blocked on a ring that is empty');
      assert.equal(h.counters[C_FRAMES_RECEIVED], 1, 'the frame is counted');
      assert.ok(parseOut(c).some((m) => m.t === 'error' && m.seq === 1), 'the node is told why');
      h.end(c);
      assert.ok(c.released, 'the socket closed: the shard releases the connection and its node');
    } finally {
      // Should the bug return: close the connection so the shard's retry timer stops and the test process exits.
      const sc = h.shard.conns.get(c.id);
      if (sc) h.shard.close(sc, 'shutdown');
      h.end(c);
    }
  });

  // Was a bug (fixed): src/shard/json-scan.ts:390 escaped keys are never matched (K_OTHER) and kept verbatim, but
  // every JSON parser downstream reads "time\\u0073tamp" as "timestamp": the tracker gets a second timestamp (last
  // wins: here a string, which kills retina-tracker) or non-numeric delay/doppler/snr; decode escaped keys before
  // matchKey (duplicate -> invalid_frame), or reject escaped keys
  test('a line frame whose key is spelled with escapes ("time\\u0073tamp") cannot smuggle a field past validation', () => {
    const h = new Harness();
    const c = h.open();
    h.data(c, B(`{"node_id":"${NODE}","token":"${TOKEN}","timestamp":1,"delay":[1],"doppler":[1],"snr":[1],"time\\u0073tamp":"x"}\n`));
    const recs = c.rings.get(NODE)?.records ?? [];
    for (const rec of recs) assert.equal((JSON.parse(rec.payload.toString('utf8')) as { timestamp: unknown }).timestamp, rec.timestamp);
    assert.equal(h.counters[C_FRAMES_WRITTEN], 0);
    assert.equal(h.counters[dropIndex('invalid_frame')], 1, 'a second timestamp (spelled with escapes) is a duplicate key');
    // The only timestamp, spelled with escapes, is the frame's timestamp.
    h.data(c, B(`{"node_id":"${NODE}","token":"${TOKEN}","time\\u0073tamp":7,"delay":[1],"doppler":[1],"snr":[1]}\n`));
    assert.equal(h.counters[C_FRAMES_WRITTEN], 1);
    const rec = c.rings.get(NODE)!.records.at(-1)!;
    assert.equal(rec.timestamp, 7);
    assert.equal((JSON.parse(rec.payload.toString('utf8')) as { timestamp: unknown }).timestamp, 7);
  });

  // Was a bug (fixed): src/shard/line-handler.ts:135 (uniform numbers check) lets "1e999" (Infinity once parsed) into
  // the ring; the binary path rejects non-finite detections (docs/protocol.md). Reject number tokens that overflow
  // (invalid_frame) for consistency
  test('a line frame with 1e999 in its columns is rejected like a binary non-finite value', () => {
    const h = new Harness();
    const c = h.open();
    h.data(c, B(`{"node_id":"${NODE}","token":"${TOKEN}","timestamp":1,"delay":[1e999],"doppler":[1],"snr":[1]}\n`));
    assert.equal(h.counters[C_FRAMES_WRITTEN], 0);
    assert.equal(h.counters[dropIndex('invalid_frame')], 1);
  });

  // Was a bug (found reviewing the failure modes): frames are counted when staged and published at the end of a
  // message; a shard that threw in between lost the staged frames, while the counters (shared memory, they survive
  // the thread) and the ring's last_seq (what welcome tells a binary node) said they were stored.
  test('a shard that throws in the middle of a message has published every frame it counted', () => {
    const h = new Harness();
    const c = h.open();
    h.data(c, encodeHello(NODE, TOKEN));
    const frame = (seq: number): Buffer => prefixed(packr.pack({ t: 'f', seq, ts: 1000 + seq, det: det1 }));
    const proto = RingWriter.prototype as unknown as { reserve: (...a: unknown[]) => number };
    const reserve = proto.reserve;
    let calls = 0;
    proto.reserve = function (this: RingWriter, ...a: unknown[]): number {
      if (++calls === 3) throw new Error('shard dies mid-message');
      return reserve.apply(this, a);
    };
    try {
      assert.throws(() => h.shard.handle({ t: M_DATA, conn: c.id, buf: Buffer.concat([frame(1), frame(2), frame(3)]) }), /mid-message/);
    } finally {
      proto.reserve = reserve;
    }
    h.settle(); // reads the ring as the main thread would
    const recs = c.rings.get(NODE)!.records;
    assert.equal(h.counters[C_FRAMES_WRITTEN], 2);
    assert.equal(h.counters[C_FRAMES_RECEIVED], 2);
    assert.deepEqual(recs.map((r) => r.timestamp), [1001, 1002], 'the two counted frames are in the ring');
    const hf = new Float64Array(c.rings.get(NODE)!.sab, 0, HEADER_BYTES / 8);
    assert.equal(hf[LAST_SEQ_F64], 2, 'last_seq covers exactly the stored frames');
  });
});
