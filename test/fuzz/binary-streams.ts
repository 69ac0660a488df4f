// Binary protocol sessions: valid ones (hello, then frames and heartbeats in several
// encodings) and structural mutations (wrong types, odd numbers, deep nesting, oversize).
import { Packr } from 'msgpackr';
import { encodeHello, encodeMessage, packDetections } from '../../src/protocol/binary-protocol.js';
import { TOKEN, MAX_FRAME, SENTINEL_SEQ, Rand } from './harness.js';
import { detValue, adsbEntry } from './line-streams.js';

export const packr = new Packr({ useRecords: false, variableMapSize: true });
const cloner = new Packr({ useRecords: false, structuredClone: true });

export function prefixed(body: Buffer): Buffer {
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32BE(body.length >>> 0, 0);
  return Buffer.concat([h, body]);
}

export function mpStr(s: string): Buffer {
  const b = Buffer.from(s);
  return b.length < 32 ? Buffer.concat([Buffer.from([0xa0 | b.length]), b]) : Buffer.concat([Buffer.from([0xd9, b.length]), b]);
}

/** An unsigned integer in any width that holds it (uint64 only when allowed), or as the float64 msgpackr sends. */
function mpUint(r: Rand, v: number, allow64: boolean): Buffer {
  const opts: Buffer[] = [mpF64(v)];
  if (v < 128) opts.push(Buffer.from([v]));
  if (v < 256) opts.push(Buffer.from([0xcc, v]));
  if (v < 65536) { const b = Buffer.alloc(3); b[0] = 0xcd; b.writeUInt16BE(v, 1); opts.push(b); }
  if (v < 2 ** 32) { const b = Buffer.alloc(5); b[0] = 0xce; b.writeUInt32BE(v, 1); opts.push(b); }
  if (allow64) {
    const b = Buffer.alloc(9); b[0] = 0xcf; b.writeUInt32BE(Math.floor(v / 2 ** 32), 1); b.writeUInt32BE(v >>> 0, 5); opts.push(b);
  }
  return r.pick(opts);
}

function mpF64(v: number): Buffer {
  const b = Buffer.alloc(9);
  b[0] = 0xcb;
  b.writeDoubleBE(v, 1);
  return b;
}

function mpBin(r: Rand, d: Buffer): Buffer {
  const n = d.length;
  const opts: Buffer[] = [];
  if (n < 256) opts.push(Buffer.from([0xc4, n]));
  if (n < 65536) { const h = Buffer.alloc(3); h[0] = 0xc5; h.writeUInt16BE(n, 1); opts.push(h); }
  const h = Buffer.alloc(5); h[0] = 0xc6; h.writeUInt32BE(n, 1); opts.push(h);
  return Buffer.concat([r.pick(opts), d]);
}

export interface BinFrameExp { seq: number; ts: number; n: number; det: Buffer; adsb: unknown[] | undefined; cols: number[][] }

function binFrameBody(r: Rand, f: BinFrameExp): Buffer {
  if (r.chance(0.3)) {
    const m: Record<string, unknown> = { t: 'f', seq: f.seq, ts: f.ts, det: f.det };
    if (f.adsb) m.adsb = f.adsb;
    return packr.pack(m);
  }
  // Hand-rolled: shuffled keys, map16 or fixmap, every integer/bin width the fast path knows
  // (uint64 too: what Python's msgpack sends for an int ms timestamp).
  const allow64 = true;
  const entries: Buffer[] = [
    Buffer.concat([mpStr('t'), mpStr('f')]),
    Buffer.concat([mpStr('seq'), mpUint(r, f.seq, allow64)]),
    Buffer.concat([mpStr('ts'), Number.isInteger(f.ts) && f.ts >= 0 && r.chance(0.5) ? mpUint(r, f.ts, allow64) : mpF64(f.ts)]),
    Buffer.concat([mpStr('det'), mpBin(r, f.det)]),
  ];
  if (f.adsb) entries.push(Buffer.concat([mpStr('adsb'), packr.pack(f.adsb)]));
  r.shuffle(entries);
  const n = entries.length;
  const head = r.chance(0.3) ? Buffer.from([0xde, 0, n]) : Buffer.from([0x80 | n]);
  return Buffer.concat([head, ...entries]);
}

function binFrame(r: Rand, seq: number, ts: number): BinFrameExp {
  const n = r.detections();
  const cols = [0, 1, 2].map(() => Array.from({ length: n }, () => detValue(r)));
  const det = packDetections(cols[0]!, cols[1]!, cols[2]!);
  const adsb = r.chance(0.4) ? Array.from({ length: n }, () => adsbEntry(r)) : undefined;
  return { seq, ts, n, det, adsb, cols };
}

interface BinStream { msgs: Buffer[]; frames: BinFrameExp[]; node: string }

export function validBinStream(r: Rand, node: string, tsBase: number): BinStream {
  const extra: Record<string, unknown> = {};
  if (r.chance(0.3)) extra.group = r.pick(['north', 'g-1']);
  if (r.chance(0.2)) extra.name = 'Ω rx';
  const msgs = [encodeHello(node, TOKEN, extra).subarray(4)];
  const frames: BinFrameExp[] = [];
  const k = r.range(1, 5);
  let seq = 0;
  let ts = tsBase;
  for (let i = 0; i < k; i++) {
    if (r.chance(0.12)) {
      msgs.push(encodeMessage({ t: 'hb' }).subarray(4));
      continue;
    }
    seq += r.chance(0.2) ? r.range(2, 1000) : 1;
    ts += r.range(1, 200) + (r.chance(0.2) ? 0.5 : 0);
    const f = binFrame(r, seq, ts);
    msgs.push(binFrameBody(r, f));
    frames.push(f);
  }
  return { msgs, frames, node };
}

/** msgpack values of the wrong kind. */
function weirdValue(r: Rand): unknown {
  return r.pick<() => unknown>([
    () => '1', () => -1, () => 0, () => 1.5, () => NaN, () => Infinity, () => -Infinity, () => null, () => true,
    () => [], () => ({}), () => Buffer.alloc(7), () => Buffer.alloc(24, 0xff), () => 2 ** 53, () => 2 ** 60, () => -0,
    () => 'f', () => new Date(0), () => [1, 2, 3], () => ({ a: 1 }), () => 'x'.repeat(300), () => [null], () => [[null]],
    () => Array.from({ length: 3 }, () => ({ hex: 'abc' })), () => ['hello'], () => new Uint8Array(0),
    () => 2n ** 62n, () => -(2n ** 40n), () => ({ toString: 1, valueOf: 1 }), () => [{ toString: 1 }],
  ])();
}

function deepMsgpack(r: Rand, depth: number): Buffer {
  if (r.chance(0.5)) return Buffer.concat([Buffer.alloc(depth, 0x91), Buffer.from([0xc0])]);
  const unit = Buffer.from([0x81, 0xa1, 0x61]);
  return Buffer.concat([...Array.from({ length: depth }, () => unit), Buffer.from([0xc0])]);
}

/**
 * Structural mutations with the framing kept intact: bodies changed (length fixed up),
 * messages added (oversize ones with their bodies). Returns the wire messages.
 */
export function mutatedBinStream(r: Rand, s: BinStream): Buffer[] {
  const wire: Buffer[] = s.msgs.map((b) => prefixed(b));
  const frameAt = (i: number): BinFrameExp | undefined => s.frames[i - 1];
  const ops = r.range(1, 3);
  for (let o = 0; o < ops; o++) {
    const i = r.chance(0.1) ? 0 : wire.length > 1 ? 1 + r.int(wire.length - 1) : 0;
    let op = r.int(13);
    if ((op === 9 || op === 6) && r.chance(0.7)) op = r.int(6);
    const f = frameAt(i);
    switch (op) {
      case 0: { // a frame field of the wrong kind, or missing
        const m: Record<string, unknown> = { t: 'f', seq: f?.seq ?? 1, ts: f?.ts ?? 1, det: f?.det ?? Buffer.alloc(0) };
        if (f?.adsb) m.adsb = f.adsb;
        const key = r.pick(['seq', 'ts', 'det', 'adsb', 't']);
        if (r.chance(0.2)) delete m[key];
        else m[key] = weirdValue(r);
        wire[i] = prefixed(packr.pack(m));
        break;
      }
      case 1: { // non-finite or mis-sized detections
        let det = Buffer.from(f?.det ?? Buffer.alloc(24));
        if (det.length >= 8 && r.chance(0.7)) det.writeDoubleLE(r.pick([NaN, Infinity, -Infinity]), 8 * r.int(det.length / 8));
        else {
          const d2 = Buffer.alloc(Math.max(0, det.length + r.pick([-1, -8, 1, 8, 23])));
          det.copy(d2);
          det = d2;
        }
        const m: Record<string, unknown> = { t: 'f', seq: f?.seq ?? 7, ts: f?.ts ?? 7, det };
        wire[i] = prefixed(packr.pack(m));
        break;
      }
      case 2: { // adsb of the wrong shape
        const n = f?.n ?? 1;
        const m: Record<string, unknown> = { t: 'f', seq: f?.seq ?? 3, ts: f?.ts ?? 3, det: f?.det ?? Buffer.alloc(24) };
        m.adsb = r.pick<() => unknown>([
          () => Array.from({ length: n + 1 }, () => null), () => Array.from({ length: n }, () => 1), () => Array.from({ length: n }, () => 'x'),
          () => Array.from({ length: n }, () => [null]), () => ({}), () => 'adsb', () => Array.from({ length: n }, () => Buffer.alloc(2)),
          () => Array.from({ length: n }, () => ({ nested: { deep: [1, { x: null }] }, when: new Date(5) })),
          () => Array.from({ length: n }, () => ({ alt_baro: 35000n, big: 2n ** 63n, neg: -(2n ** 62n) })),
          () => Array.from({ length: n }, () => ({ toString: 1, valueOf: 'x' })),
        ])();
        if (r.chance(0.1)) {
          // A cycle (msgpackr's structured-clone extension) or an entry nested thousands deep.
          const a: unknown[] = [];
          a.push(a);
          const odd = r.chance(0.5) ? a : JSON.parse('['.repeat(3000) + ']'.repeat(3000)) as unknown;
          m.adsb = Array.from({ length: n }, (_, j) => (j === 0 ? { x: odd } : null));
          wire[i] = prefixed(cloner.pack(m));
          break;
        }
        wire[i] = prefixed(packr.pack(m));
        break;
      }
      case 3: // message types
        wire.splice(1 + r.int(wire.length), 0, prefixed(packr.pack(r.pick<Record<string, unknown>>([
          { t: 'F' }, { t: 'hb', extra: 1 }, { t: 'hello', v: 1, node: s.node, token: TOKEN }, { t: 'ack', seq: 1 }, { t: 1 }, { t: null }, {},
          { t: 'welcome' }, { t: 'error', code: 'x' }, { t: ['f'] }, { t: 'f' }, { t: { toString: 1 } }, { t: 5n },
        ]))));
        break;
      case 4: // resend / reorder / zero seq
        if (f && wire.length > 1) {
          const dup = wire[i]!;
          wire.splice(1 + r.int(wire.length), 0, r.chance(0.7) ? dup : prefixed(packr.pack({ t: 'f', seq: r.pick([0, -1, 0.5]), ts: 1, det: Buffer.alloc(0) })));
        }
        break;
      case 5: // body replaced: random bytes, empty, not a map
        wire[i] = prefixed(r.pick<() => Buffer>([
          () => r.bytes(r.int(64)), () => Buffer.alloc(0), () => packr.pack([1, 2, 3]), () => packr.pack('f'), () => packr.pack(42),
          () => Buffer.from([0xc1]), () => Buffer.from([0xdf, 0xff, 0xff, 0xff, 0xff]), () => Buffer.from([0xdd, 0x7f, 0xff, 0xff, 0xff]),
          () => Buffer.from([0xc6, 0x7f, 0xff, 0xff, 0xff]), () => Buffer.from([0x82, 0xa1, 0x74]),
        ])());
        break;
      case 6: // deep nesting (a stack overflow in a recursive decoder is caught)
        wire.splice(1 + r.int(wire.length), 0, prefixed(deepMsgpack(r, r.pick([10, 100, 1000, 5000, 5400]))));
        break;
      case 7: { // bit flips in a body
        const b = Buffer.from(wire[i]!.subarray(4));
        for (let j = r.range(1, 4); j > 0 && b.length > 0; j--) b[r.int(b.length)]! ^= 1 << r.int(8);
        wire[i] = prefixed(b);
        break;
      }
      case 8: { // truncated or extended body
        const b = wire[i]!.subarray(4);
        wire[i] = prefixed(r.chance(0.5) ? b.subarray(0, r.int(b.length + 1)) : Buffer.concat([b, r.bytes(r.range(1, 8))]));
        break;
      }
      case 9: { // oversize but skippable: the body follows and must be skipped unread
        const len = MAX_FRAME + r.range(1, r.chance(0.9) ? 200 : 3 * MAX_FRAME);
        const h = Buffer.alloc(4);
        h.writeUInt32BE(len, 0);
        wire.splice(1 + r.int(wire.length), 0, Buffer.concat([h, r.chance(0.5) ? Buffer.alloc(len, 0x91) : r.bytes(len)]));
        break;
      }
      case 10: { // oversize beyond trust: fatal
        const h = Buffer.alloc(4);
        h.writeUInt32BE(r.pick([0xffffffff, MAX_FRAME * 16 + 1, 0x7fffffff]), 0);
        wire.splice(1 + r.int(wire.length), 0, h);
        break;
      }
      case 11: { // hello games
        wire[0] = prefixed(packr.pack(r.pick<Record<string, unknown>>([
          { t: 'hello', v: 1, node: s.node, token: 'wrong' }, { t: 'hello', v: 2, node: s.node, token: TOKEN },
          { t: 'hello', v: '1', node: s.node, token: TOKEN }, { t: 'hello', v: 1, node: '', token: TOKEN },
          { t: 'hello', v: 1, node: 'a b', token: TOKEN }, { t: 'hello', v: 1, node: 'x'.repeat(65), token: TOKEN },
          { t: 'hello', v: 1, node: s.node }, { t: 'f', seq: 1, ts: 1, det: Buffer.alloc(0) },
          { t: 'hello', v: 1, node: s.node, token: TOKEN, caps: 5, group: ['x'] }, { t: 'hello', v: 1, node: 7, token: TOKEN },
          { t: 'hello', v: 1, node: s.node, token: Buffer.from(TOKEN) }, { t: 'hello', v: { toString: 1 }, node: s.node, token: TOKEN },
          { t: 'hello', v: 1n, node: s.node, token: TOKEN }, { t: 'hello', v: 1, node: { toString: 1 }, token: TOKEN },
        ])));
        break;
      }
      default: // a zero-length message
        wire.splice(1 + r.int(wire.length), 0, Buffer.alloc(4));
        break;
    }
  }
  return wire;
}

export function sentinelFrame(ts: number): Buffer {
  return prefixed(packr.pack({ t: 'f', seq: SENTINEL_SEQ, ts, det: packDetections([1.5], [-2.5], [3.5]) }));
}
