// Fuzz of the node decode path, as a shard runs it: line framer + JSON scanner +
// line handler, binary framer + fast path + msgpack decode + binary handler. A real
// Shard (src/shard/shard.ts, the class a worker or `shards: 0` runs) is driven by an
// in-test "main thread" that answers claims with real rings, drains the rings with
// the real RingReader, and records every byte and close the shard asks for.
//
// Cases: valid streams (line frames with 0-50 detections and adsb null/objects,
// heartbeats, blank lines; binary hello then frames/heartbeats, several encodings),
// then structural mutations (wrong types per field, NaN/Infinity/huge numbers,
// unicode and invalid UTF-8, deep nesting, duplicate keys, bad tokens and node ids,
// oversize messages) and raw byte mutations (bit flips, insert/delete, truncation,
// duplicated chunks, random bytes), delivered in random chunk splits, sometimes
// interleaved with an honest connection on the same shard.
//
// Per case: no exception escapes the shard, received = written + dropped by reason
// (counter deltas), every ring record is something a tracker can read, valid
// unmutated frames are all written with their timestamps (and bytes), a sentinel
// frame sent after the mutations still gets through unless the connection was
// closed, closes only for documented fatal reasons (with the binary error message
// first), credits balance, no connection state leaks. Per batch: a deadline (the
// cases run in a worker thread; a hang is reported with the case it hung in).
//
// Replay: FUZZ_SEED=<seed> [FUZZ_FROM=<case>] [FUZZ_CASES=<n>] node --test dist/test/fuzz.test.js
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { Packr } from 'msgpackr';
import { Shard } from '../src/shard/shard.js';
import { RingReader, createRingBuffer } from '../src/ring/ring-reader.js';
import { HEADER_BYTES, KIND_JSON_LINE, KIND_PACKED, FORMAT_ANY, FORMAT_JSONL, LAST_SEQ_F64 } from '../src/ring/ring-layout.js';
import { RingWriter } from '../src/ring/ring-writer.js';
import {
  COUNTER_SLOTS, C_FRAMES_RECEIVED, C_FRAMES_WRITTEN, C_DETECTIONS_RECEIVED, DROP_REASONS, dropIndex, type CloseReason,
} from '../src/telemetry/counters.js';
import { ErrorCodes, type PlainError } from '../src/protocol/errors.js';
import {
  M_OPEN, M_DATA, M_END, M_GRANT, M_REFUSE, S_BATCH, S_CLAIM, S_CLOSE, S_CLOSED, S_AUTH, type ShardToMain,
} from '../src/protocol/thread-messages.js';
import { encodeHello, encodeMessage, decodeBody, packDetections } from '../src/protocol/binary-protocol.js';
import { packedToJson } from '../src/ring/record-codec.js';
import { mulberry32 } from './prng.js';

const TOKEN = 'fuzz-secret';
/** Small limits so oversize paths and ring sizing are hit often: the smallest legal ring for this frame limit. */
const MAX_FRAME = 16384;
const RING_BYTES = 65536; // >= 2 * MAX_FRAME + 64, a power of two (config rule)
const NODE = 'fuzz-node';
const HONEST = 'HONEST9'; // differs from NODE in many bits: a bit flip cannot turn one into the other
const SENTINEL_SEQ = 2 ** 40;
const DEFAULT_SEED = 0x5eed2024;
const DEFAULT_CASES = 100_000;
const BATCH = 2500;
const BATCH_DEADLINE_MS = 30_000;
/** Worker threads running batches side by side (2 busy cores: at most 2). */
const WORKERS = Math.max(1, Math.min(2, availableParallelism()));

// ---------------------------------------------------------------------------
// Random helpers

class Rand {
  readonly f: () => number;
  constructor(seed: number) {
    this.f = mulberry32(seed);
  }
  int(n: number): number {
    return Math.floor(this.f() * n);
  }
  range(a: number, b: number): number {
    return a + this.int(b - a + 1);
  }
  chance(p: number): boolean {
    return this.f() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4) {
      const x = (this.f() * 4294967296) >>> 0;
      b[i] = x;
      if (i + 1 < n) b[i + 1] = x >>> 8;
      if (i + 2 < n) b[i + 2] = x >>> 16;
      if (i + 3 < n) b[i + 3] = x >>> 24;
    }
    return b;
  }
  /** Skewed detection count: mostly small, sometimes the 50 of a busy frame. */
  detections(): number {
    const x = this.f();
    return x < 0.15 ? 0 : x < 0.8 ? this.range(1, 5) : x < 0.94 ? this.range(6, 20) : this.range(21, 50);
  }
}

function caseSeed(seed: number, i: number): number {
  let h = (seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** JS string of latin1 "bytes" <-> Buffer: lets line text carry raw (also invalid) UTF-8. */
const B = (s: string): Buffer => Buffer.from(s, 'latin1');
const U = (s: string): string => Buffer.from(s, 'utf8').toString('latin1'); // UTF-8 bytes as a byte string

// ---------------------------------------------------------------------------
// The in-test main thread

interface Rec { kind: number; timestamp: number; detections: number; payload: Buffer }

interface RingUse { node: string; sab: SharedArrayBuffer; reader: RingReader; records: Rec[] }

interface HConn {
  id: number;
  out: Buffer[];
  credits: number;
  pushed: number;
  closeReason: CloseReason | null;
  closeError: PlainError | undefined;
  closes: number;
  released: boolean;
  authed: boolean;
  rings: Map<string, RingUse>;
  refused: boolean;
}

class Harness {
  shard!: Shard;
  counters!: Float64Array;
  private outbox: ShardToMain[] = [];
  readonly conns = new Map<number, HConn>();
  private readonly owners = new Map<string, number>();
  private readonly pool: SharedArrayBuffer[] = [];
  private nextConn = 1;
  private nextRingId = 0;
  jsonl = false;
  /** Rings handed out in the current case. */
  used: RingUse[] = [];

  constructor() {
    this.newShard();
  }

  /** A fresh shard (as piscina would start after a crash) with fresh counters. */
  newShard(): void {
    this.counters = new Float64Array(COUNTER_SLOTS);
    this.outbox = [];
    this.conns.clear();
    this.owners.clear();
    this.used = [];
    this.shard = new Shard({
      shardId: 0, counters: this.counters, token: TOKEN, tokens: {}, limits: { maxFrameBytes: MAX_FRAME, maxDetections: 1_000_000, maxClockSkewMs: 0, maxSeqJump: Number.MAX_SAFE_INTEGER }, overflow: 'block',
      post: (m) => { this.outbox.push(m); },
    });
  }

  open(): HConn {
    const c: HConn = {
      id: this.nextConn++, out: [], credits: 0, pushed: 0, closeReason: null, closeError: undefined, closes: 0,
      released: false, authed: false, rings: new Map(), refused: false,
    };
    this.conns.set(c.id, c);
    this.shard.handle({ t: M_OPEN, conn: c.id, remote: 'fuzz' });
    this.settle();
    return c;
  }

  data(c: HConn, buf: Uint8Array): void {
    c.pushed += buf.byteLength;
    this.shard.handle({ t: M_DATA, conn: c.id, buf });
    this.settle();
  }

  end(c: HConn): void {
    this.shard.handle({ t: M_END, conn: c.id });
    this.settle();
  }

  /** Answers everything the shard posted (like the engine's onShardMessage), then drains the rings. */
  settle(): void {
    for (;;) {
      const m = this.outbox.shift();
      if (m === undefined) break;
      switch (m.t) {
        case S_BATCH: {
          for (let i = 0; i < m.credits.length; i += 2) {
            const c = this.conns.get(m.credits[i] as number);
            if (c) c.credits += m.credits[i + 1] as number;
          }
          for (let i = 0; i < m.writes.length; i += 2) {
            const c = this.conns.get(m.writes[i] as number);
            if (c) c.out.push(Buffer.from(m.writes[i + 1] as Uint8Array));
          }
          break;
        }
        case S_CLAIM: {
          const c = this.conns.get(m.conn)!;
          const owner = this.owners.get(m.node);
          if (owner !== undefined && owner !== m.conn) {
            // Never two writers on one ring: refuse (the engine would supersede; not what is fuzzed here).
            c.refused = true;
            this.shard.handle({ t: M_REFUSE, conn: m.conn, node: m.node, reason: 'node_refused', error: { code: ErrorCodes.NODE_REFUSED, message: 'owned' } });
            break;
          }
          this.owners.set(m.node, m.conn);
          const sab = this.pool.pop() ?? createRingBuffer(RING_BYTES);
          new Uint8Array(sab, 0, HEADER_BYTES).fill(0);
          const reader = new RingReader(sab);
          reader.format = this.jsonl ? FORMAT_JSONL : FORMAT_ANY;
          const use: RingUse = { node: m.node, sab, reader, records: [] };
          c.rings.set(m.node, use);
          this.used.push(use);
          this.shard.handle({ t: M_GRANT, conn: m.conn, node: m.node, ring: sab, ringId: this.nextRingId++ });
          break;
        }
        case S_CLOSE: {
          const c = this.conns.get(m.conn)!;
          c.closes++;
          if (c.closeReason === null) {
            c.closeReason = m.reason;
            c.closeError = m.error;
          }
          break;
        }
        case S_CLOSED: {
          const c = this.conns.get(m.conn)!;
          c.released = true;
          for (const n of m.nodes) if (this.owners.get(n) === m.conn) this.owners.delete(n);
          break;
        }
        case S_AUTH:
          this.conns.get(m.conn)!.authed = true;
          break;
        default:
          break;
      }
    }
    for (const u of this.used) {
      for (;;) {
        const b = u.reader.read();
        if (b === null) break;
        for (const r of b.records()) u.records.push({ kind: r.kind, timestamp: r.timestamp, detections: r.detections, payload: Buffer.from(r.payload) });
      }
    }
  }

  /** After a case: rings back to the pool, connections forgotten. */
  finishCase(): void {
    for (const u of this.used) this.pool.push(u.sab);
    this.used = [];
    this.conns.clear();
    this.owners.clear();
  }
}

// ---------------------------------------------------------------------------
// Line streams

type Member = [key: string, value: string]; // raw JSON texts (byte strings)

interface LineFrameExp { ts: number; n: number; obj: Record<string, unknown> }

const WEIRD_JSON: readonly string[] = [
  'NaN', 'Infinity', '-Infinity', 'nan', 'inf', '1e999', '-1e999', '1e-999', '123456789012345678901234567890', '-0', '0.0',
  '1.0e+2', '"1757400000000"', 'null', 'true', 'false', '{}', '[]', '[1,2', '"\\u0000"', '"\\ud800"', '"\\uDFFF\\uD800"',
  `"${U('ü€𝄞 ✈')}"`, '[1,"2",3]', '[null]', '[[1],[2]]', '[{}]', '-', '01', '1.', '.5', '+1', '0x10', "'s'", '"unterminated',
  '"\xff\xfe"', '"\xc0\xaf"', '"\xed\xa0\x80"', '"\xf4\x90\x80\x80"', '"\xe2\x82"', '1e309', '4.9e-324', '1.7976931348623157e308',
  '9007199254740993', '-1', '"\t"', '"a\\x"', '[1,]', '[,1]', '{"a"}', '{"a":1,}', '[1 2]', '{"a":1 "b":2}', '""', '"\\"',
  `"${'x'.repeat(3000)}"`, `${'9'.repeat(400)}`, `0.${'0'.repeat(400)}1`, '[1e999,2,3]', '[NaN]', '[Infinity,-Infinity]',
  '[-0,0,-0.0]', '{"hex":null}', '[{"a":[1,{"b":[]}]}]', '"\\u00e9"', 'tru', 'nul', '[]]', '{}}', '1 2',
];

function deepText(r: Rand, depth: number): string {
  if (r.chance(0.5)) return '['.repeat(depth) + '1' + ']'.repeat(depth);
  return '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
}

function jsonNum(r: Rand, v: number): string {
  // Several spellings of one value; all must round-trip through the scanner byte for byte.
  const s = JSON.stringify(v);
  if (!Number.isInteger(v) || Math.abs(v) >= 1e15 || r.chance(0.7)) return s;
  return r.pick([s, `${v}.0`, `${v}e0`, `${v}E+0`, v === 0 ? '0e5' : `${v / 10}e1`]);
}

function detValue(r: Rand): number {
  return detValueRaw(r) + 0; // no -0: JSON prints it as 0
}

function detValueRaw(r: Rand): number {
  const x = r.f();
  if (x < 0.6) return Math.round((r.f() * 400 - 100) * 1000) / 1000;
  if (x < 0.8) return r.int(1000) - 500;
  if (x < 0.9) return (r.f() - 0.5) * 10 ** r.range(-30, 30);
  return r.pick([0, 1e-300, 1e300, 123456.789012345, -0.5, 5e-324, 1.7976931348623157e308]);
}

function adsbEntry(r: Rand): Record<string, unknown> | null {
  if (r.chance(0.5)) return null;
  const e: Record<string, unknown> = {};
  if (r.chance(0.9)) e.hex = r.int(0xffffff).toString(16).padStart(6, '0');
  if (r.chance(0.8)) e.lat = Math.round((r.f() * 180 - 90) * 1e5) / 1e5;
  if (r.chance(0.8)) e.lon = Math.round((r.f() * 360 - 180) * 1e5) / 1e5;
  if (r.chance(0.7)) e.alt_baro = r.int(45000);
  if (r.chance(0.6)) e.gs = Math.round(r.f() * 6000) / 10;
  if (r.chance(0.6)) e.track = r.int(360);
  if (r.chance(0.3)) e.flight = r.pick(['BAW123  ', 'DLH4AB', 'Ü✈𝄞', '', 'A"B\\C']);
  return e;
}

interface LineFrameSpec { members: Member[]; exp: LineFrameExp | null }

function lineFrame(r: Rand, node: string, ts: number, withToken: boolean): LineFrameSpec {
  const n = r.detections();
  const cols = [0, 1, 2].map(() => Array.from({ length: n }, () => detValue(r)));
  const members: Member[] = [['"node_id"', JSON.stringify(node)]];
  if (withToken) members.push(['"token"', JSON.stringify(TOKEN)]);
  // Values as the scanner keeps them, and as a JSON parser reads them (for the expected ring payload).
  const values = new Map<string, unknown>([['timestamp', ts], ['delay', cols[0]], ['doppler', cols[1]], ['snr', cols[2]]]);
  const body: Member[] = [
    ['"timestamp"', jsonNum(r, ts)],
    ['"delay"', `[${cols[0]!.map((v) => jsonNum(r, v)).join(',')}]`],
    ['"doppler"', `[${cols[1]!.map((v) => jsonNum(r, v)).join(',')}]`],
    ['"snr"', `[${cols[2]!.map((v) => jsonNum(r, v)).join(',')}]`],
  ];
  if (r.chance(0.5)) {
    const adsb = Array.from({ length: n }, () => adsbEntry(r));
    values.set('adsb', adsb);
    body.push(['"adsb"', U(JSON.stringify(adsb))]);
  }
  if (r.chance(0.1)) body.push(['"type"', '"detection"']);
  if (r.chance(0.1)) {
    const meta = { v: 2, src: 'rx-Ω', list: [1, null, 'x'] };
    values.set('meta', meta);
    body.push(['"meta"', U(JSON.stringify(meta))]);
  }
  const all = [...members, ...body];
  if (r.chance(0.3)) r.shuffle(all);
  const obj: Record<string, unknown> = {};
  for (const [k] of all) {
    const key = k.slice(1, -1);
    if (values.has(key)) obj[key] = values.get(key);
  }
  return { members: all, exp: { ts, n, obj } };
}

function heartbeatLine(node: string, withToken: boolean): LineFrameSpec {
  const m: Member[] = [['"node_id"', JSON.stringify(node)]];
  if (withToken) m.push(['"token"', JSON.stringify(TOKEN)]);
  m.push(['"type"', '"heartbeat"']);
  return { members: m, exp: null };
}

function serializeLine(r: Rand, members: Member[]): string {
  const ws = r.chance(0.15);
  const sp = (): string => (ws ? r.pick(['', ' ', '\t', '  ']) : '');
  return `${sp()}{${sp()}${members.map(([k, v]) => `${k}${sp()}:${sp()}${v}`).join(`${sp()},${sp()}`)}${sp()}}${sp()}`;
}

interface LineStream { text: string; frames: LineFrameExp[] }

/** A valid line stream: authenticates on the first line; frames, heartbeats, blank lines. */
function validLineStream(r: Rand, node: string, tsBase: number): LineStream {
  const k = r.range(1, 5);
  const lines: string[] = [];
  const frames: LineFrameExp[] = [];
  let ts = tsBase;
  for (let i = 0; i < k; i++) {
    const x = r.f();
    const withToken = i === 0 || r.chance(0.5);
    if (x < 0.12) {
      lines.push(serializeLine(r, heartbeatLine(node, withToken).members));
    } else if (x < 0.17 && i > 0) {
      lines.push(''); // a blank line (or a bare CRLF): nothing to count
    } else {
      ts += r.range(1, 200) + (r.chance(0.2) ? 0.25 : 0);
      const f = lineFrame(r, node, ts, withToken);
      let text = serializeLine(r, f.members);
      if (r.chance(0.02)) {
        // Padded to exactly the limit: still a valid frame.
        const plain = (): string => `{${f.members.map(([a, b]) => `${a}:${b}`).join(',')}}`;
        const pad = MAX_FRAME - plain().length - ',"pad":""'.length;
        if (pad > 0) {
          f.members.push(['"pad"', `"${'p'.repeat(pad)}"`]);
          f.exp!.obj.pad = 'p'.repeat(pad);
          text = plain();
          assert.equal(text.length, MAX_FRAME);
        }
      }
      if (Buffer.byteLength(text, 'latin1') > MAX_FRAME) continue;
      lines.push(text);
      frames.push(f.exp!);
    }
  }
  // (A line of exactly the limit ends in LF: whether the CR of a CRLF counts against the limit is not specified.)
  const eol = (l: string): string => (l.length < MAX_FRAME && r.chance(0.2) ? '\r\n' : '\n');
  return { text: lines.map((l) => l + eol(l)).join(''), frames };
}

/** Structural mutations of a line stream (line-level, then serialized). */
function mutatedLineStream(r: Rand, node: string, tsBase: number): string {
  const k = r.range(1, 4);
  const lines: string[] = [];
  let ts = tsBase;
  for (let i = 0; i < k; i++) {
    const spec = r.chance(0.15) ? heartbeatLine(node, i === 0 || r.chance(0.5)) : lineFrame(r, node, (ts += r.range(1, 100)), i === 0 || r.chance(0.5));
    const m = spec.members;
    const ops = r.range(0, 3);
    let whole: string | null = null;
    for (let o = 0; o < ops; o++) {
      // Mutations that need kilobytes (over the limit, thousands of levels) are drawn less often: they dominate the cost.
      let op = r.int(14);
      if ((op === 12 || op === 7) && r.chance(0.7)) op = r.int(12);
      const idx = m.length > 0 ? r.int(m.length) : 0;
      switch (op) {
        case 0: // a field's value replaced by something weird
          if (m.length) m[idx]![1] = r.chance(0.8) ? r.pick(WEIRD_JSON) : deepText(r, r.pick([31, 32, 33, 64, 1000]));
          break;
        case 1: { // one element of an array replaced
          const which = r.pick(['"delay"', '"doppler"', '"snr"', '"adsb"']);
          const arr = m.find(([key]) => key === which);
          if (arr && arr[1].startsWith('[') && arr[1].length > 2) {
            const inner = arr[1].slice(1, -1).split(',');
            inner[r.int(inner.length)] = r.pick(WEIRD_JSON);
            arr[1] = `[${inner.join(',')}]`;
          }
          break;
        }
        case 2: { // arrays of unequal length
          const which = r.pick(['"delay"', '"doppler"', '"snr"', '"adsb"']);
          const arr = m.find(([key]) => key === which);
          if (arr) arr[1] = arr[1] === '[]' ? '[1]' : `[${arr[1].slice(1, -1).split(',').slice(1).join(',')}]`;
          break;
        }
        case 3: // duplicate key
          if (m.length) m.splice(r.int(m.length + 1), 0, [m[idx]![0], r.chance(0.5) ? m[idx]![1] : r.pick(WEIRD_JSON)]);
          break;
        case 4: // missing member
          if (m.length) m.splice(idx, 1);
          break;
        case 5: // extra member, odd keys
          m.splice(r.int(m.length + 1), 0, [r.pick(['"x"', '"time\\u0073tamp"', '"node\\u005fid"', `"${U('ключ')}"`, '""', '"\\ud83d\\ude00"', '"tok\\u0065n"']), r.pick(WEIRD_JSON)]);
          break;
        case 6: // too many members
          for (let j = 0; j < 70; j++) m.push([`"k${j}"`, String(j)]);
          break;
        case 7: // deep nesting in an extra member
          m.push(['"deep"', deepText(r, r.chance(0.8) ? r.pick([30, 31, 32, 33, 100]) : r.pick([2000, 3000]))]);
          break;
        case 8: { // token: wrong, missing, or the right one spelled with escapes (must still authenticate)
          const t = m.find(([key]) => key === '"token"');
          const v = r.pick([JSON.stringify('nope'), '""', '123', 'null', `"${TOKEN.slice(0, 4)}\\u002d${TOKEN.slice(5)}"`, `"${TOKEN}x"`]);
          if (t) t[1] = v;
          else m.push(['"token"', v]);
          break;
        }
        case 9: { // bad node ids
          const n = m.find(([key]) => key === '"node_id"');
          if (n) n[1] = r.pick(['""', `"${'a'.repeat(65)}"`, `"${'a'.repeat(64)}"`, '"-x"', '"a b"', `"${U('ü')}"`, '"fuzz\\u002dnode"', '1', 'null', '"x/../y"']);
          break;
        }
        case 10: { // raw invalid UTF-8 inside a string
          const s = m.find(([, v]) => v.startsWith('"'));
          if (s) s[1] = `"${r.pick(['\xff', '\xc3', '\xe2\x28\xa1', '\xf0\x9f\x98', '\xed\xb0\x80', '\xc1\xbf'])}${s[1].slice(1)}`;
          break;
        }
        case 11: // not an object at all
          whole = r.pick(['[1,2]', '"str"', '123', 'null', '{', '}', '{}', '{"a":1}{"b":2}', '  ', '{"node_id":"x"', '\xef\xbb\xbf{}', '\x00', 'x'.repeat(50)]);
          break;
        case 12: // over the limit (or exactly at it: then it is an ordinary line)
          m.push(['"pad"', `"${'p'.repeat(MAX_FRAME - 20 + r.int(60))}"`]);
          break;
        default: // type field games
          m.push(['"type"', r.pick(['"heartbeat"', '"heartbe\\u0061t"', '"HEARTBEAT"', '1', 'null', '["heartbeat"]'])]);
          break;
      }
    }
    lines.push(whole ?? serializeLine(r, m));
  }
  return lines.map((l) => l + (r.chance(0.2) ? '\r\n' : '\n')).join('');
}

function sentinelLine(node: string, ts: number): string {
  return `{"node_id":"${node}","token":"${TOKEN}","timestamp":${ts},"delay":[1.5],"doppler":[-2.5],"snr":[3.5]}\n`;
}

// ---------------------------------------------------------------------------
// Binary streams

const packr = new Packr({ useRecords: false, variableMapSize: true });
const cloner = new Packr({ useRecords: false, structuredClone: true });

function prefixed(body: Buffer): Buffer {
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32BE(body.length >>> 0, 0);
  return Buffer.concat([h, body]);
}

function mpStr(s: string): Buffer {
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

interface BinFrameExp { seq: number; ts: number; n: number; det: Buffer; adsb: unknown[] | undefined; cols: number[][] }

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

function validBinStream(r: Rand, node: string, tsBase: number): BinStream {
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
function mutatedBinStream(r: Rand, s: BinStream): Buffer[] {
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

function sentinelFrame(ts: number): Buffer {
  return prefixed(packr.pack({ t: 'f', seq: SENTINEL_SEQ, ts, det: packDetections([1.5], [-2.5], [3.5]) }));
}

// ---------------------------------------------------------------------------
// Raw byte mutations and chunking

const INTERESTING = [0x0a, 0x0d, 0x7b, 0x7d, 0x22, 0x2c, 0x3a, 0x5b, 0x5d, 0x5c, 0x00, 0xff, 0x80, 0xc0, 0xcf, 0xdd, 0xdf, 0x91];

function rawMutate(r: Rand, b: Buffer): Buffer {
  let s = Buffer.from(b);
  const ops = r.range(1, 4);
  for (let o = 0; o < ops; o++) {
    const at = r.int(s.length + 1);
    switch (r.int(7)) {
      case 0: // bit flips
        for (let j = r.range(1, 8); j > 0 && s.length > 0; j--) s[r.int(s.length)]! ^= 1 << r.int(8);
        break;
      case 1: { // insert
        const ins = Buffer.from(Array.from({ length: r.range(1, 8) }, () => (r.chance(0.6) ? r.pick(INTERESTING) : r.int(256))));
        s = Buffer.concat([s.subarray(0, at), ins, s.subarray(at)]);
        break;
      }
      case 2: // delete
        s = Buffer.concat([s.subarray(0, at), s.subarray(Math.min(s.length, at + r.range(1, 16)))]);
        break;
      case 3: // truncate
        s = s.subarray(0, at);
        break;
      case 4: { // duplicate a chunk elsewhere
        const a = r.int(s.length + 1);
        const e = Math.min(s.length, a + r.range(1, 512));
        const dst = r.int(s.length + 1);
        s = Buffer.concat([s.subarray(0, dst), s.subarray(a, e), s.subarray(dst)]);
        break;
      }
      case 5: { // overwrite with random bytes
        const n = Math.min(s.length - at, r.range(1, 32));
        if (n > 0) r.bytes(n).copy(s, at);
        break;
      }
      default: { // swap two ranges
        if (s.length > 8) {
          const a = r.int(s.length - 4);
          const c = r.int(s.length - 4);
          const n = Math.min(4, s.length - Math.max(a, c));
          const tmp = Buffer.from(s.subarray(a, a + n));
          s.copy(s, a, c, c + n);
          tmp.copy(s, c);
        }
        break;
      }
    }
  }
  return s;
}

/** Splits a stream as sockets would (one piece, random sizes, single bytes); some pieces are plain Uint8Arrays. */
function chunk(r: Rand, b: Buffer): Uint8Array[] {
  if (b.length === 0) return [];
  const mode = r.f();
  const out: Uint8Array[] = [];
  const piece = (s: number, e: number): Uint8Array => {
    const v = b.subarray(s, e);
    // A transferred chunk arrives as its own ArrayBuffer, possibly not a Buffer.
    return r.chance(0.3) ? new Uint8Array(v) : v;
  };
  if (mode < 0.3) return [piece(0, b.length)];
  if (mode < 0.4 && b.length <= 400) {
    for (let i = 0; i < b.length; i++) out.push(b.subarray(i, i + 1));
    return out;
  }
  if (mode < 0.75) {
    let p = 0;
    while (p < b.length) {
      const n = r.chance(0.5) && b.length <= 1024 ? r.range(1, 16) : r.chance(0.3) ? r.range(1, 64) : r.range(1, 4096);
      out.push(piece(p, Math.min(b.length, p + n)));
      p += n;
    }
    return out;
  }
  const cuts = Array.from({ length: r.range(1, 8) }, () => r.int(b.length)).sort((x, y) => x - y);
  let p = 0;
  for (const c of [...cuts, b.length]) {
    if (c > p) out.push(piece(p, c));
    p = Math.max(p, c);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Oracles

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The line framer's contract, independently: returns how many framed lines must be
 * counted (min) and may be counted (max: heartbeats are not counted, and whether a
 * line is a heartbeat depends on the scanner's stricter view).
 */
function lineOracle(bytes: Buffer): { min: number; max: number } {
  let min = 0;
  let amb = 0;
  let p = 0;
  while (p < bytes.length) {
    let nl = bytes.indexOf(10, p);
    const complete = nl >= 0;
    if (!complete) nl = bytes.length;
    const len = nl - p;
    if (len > MAX_FRAME) {
      min++; // frame_too_large, whether or not its newline came
    } else if (complete) {
      let e = nl;
      if (e > p && bytes[e - 1] === 13) e--;
      if (e > p) {
        let hb = false;
        // type === "heartbeat" needs those letters, or escapes spelling them.
        const line = bytes.subarray(p, e);
        if (line.includes('heartbeat') || line.includes(92)) {
          try {
            const v = JSON.parse(utf8.decode(line)) as unknown;
            hb = typeof v === 'object' && v !== null && !Array.isArray(v) && (v as Record<string, unknown>).type === 'heartbeat';
          } catch {
            hb = false;
          }
        }
        if (hb) amb++;
        else min++;
      }
    }
    p = nl + 1;
  }
  return { min, max: min + amb };
}

/**
 * Binary: messages that must be counted, when framing is intact and nothing closed: every
 * framed message but the hello that was welcomed and heartbeats after it. (Before the
 * welcome a decodable map either is that hello or closes the connection; undecodable
 * ones and oversize ones are counted: RADAR_ERR_MALFORMED / FRAME_TOO_LARGE, not fatal.)
 */
function binOracle(wire: Buffer[]): number {
  let n = 0;
  let welcomed = false;
  for (const w of wire) {
    const len = w.readUInt32BE(0);
    if (len > MAX_FRAME) {
      n++;
      continue;
    }
    let v: unknown;
    try {
      v = decodeBody(w, 4, 4 + len);
    } catch {
      n++;
      continue;
    }
    const isMap = typeof v === 'object' && v !== null && !Array.isArray(v);
    if (!isMap) n++;
    else if (!welcomed) welcomed = true;
    else if ((v as Record<string, unknown>).t !== 'hb') n++;
  }
  return n;
}

function parseOut(c: HConn): Record<string, any>[] {
  const b = Buffer.concat(c.out);
  const msgs: Record<string, any>[] = [];
  let p = 0;
  while (p < b.length) {
    if (p + 4 > b.length) throw new Error(`host output ends inside a length prefix (${b.length - p} bytes left)`);
    const n = b.readUInt32BE(p);
    if (p + 4 + n > b.length) throw new Error('host output ends inside a message');
    const m = decodeBody(b, p + 4, p + 4 + n);
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new Error('host sent a message that is not a map');
    msgs.push(m as Record<string, any>);
    p += 4 + n;
  }
  return msgs;
}

const CODES = new Set<string>(Object.values(ErrorCodes));
/** The codes a fatal close may be announced with (a hello with a bad field: INVALID_HELLO; seq_jump never, its limit is off here). */
const FATAL_CODE: Partial<Record<CloseReason, string[]>> = {
  protocol_error: [ErrorCodes.PROTOCOL, ErrorCodes.INVALID_HELLO], unsupported_version: [ErrorCodes.UNSUPPORTED_VERSION],
  auth_failed: [ErrorCodes.AUTH_FAILED], frame_too_large: [ErrorCodes.FRAME_TOO_LARGE], node_refused: [ErrorCodes.NODE_REFUSED],
};

interface Stats {
  cases: number;
  line: number;
  binary: number;
  valid: number;
  structural: number;
  raw: number;
  companions: number;
  sentinelsChecked: number;
  framesWritten: number;
  drops: Record<string, number>;
  closes: Record<string, number>;
  knownBugEscapes: Record<string, number>;
  firstKnownBugCase: number;
  bytesFed: number;
  chunksFed: number;
}

function newStats(): Stats {
  return {
    cases: 0, line: 0, binary: 0, valid: 0, structural: 0, raw: 0, companions: 0, sentinelsChecked: 0, framesWritten: 0,
    drops: {}, closes: {}, knownBugEscapes: {}, firstKnownBugCase: -1, bytesFed: 0, chunksFed: 0,
  };
}

/** Escapes already reported as src bugs (KNOWN BUGS below): counted, not failed, so the fuzz keeps finding new ones. */
function knownBug(err: unknown): string | null {
  // None open: BigInt / cycles / deep adsb / String() of hostile maps were fixed (00f23af) and now fail the run.
  void err;
  return null;
}

/** Deepest bracket nesting of JSON text (strings skipped). */
function jsonDepth(t: string): number {
  let d = 0;
  let max = 0;
  let inStr = false;
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (inStr) {
      if (c === 92) i++;
      else if (c === 34) inStr = false;
    } else if (c === 34) inStr = true;
    else if (c === 91 || c === 123) max = Math.max(max, ++d);
    else if (c === 93 || c === 125) d--;
  }
  return max;
}

/** The line protocol's nesting limit (json-scan.ts MAX_DEPTH, counting the frame object): deeper breaks Python's json (KNOWN BUGS). */
const TRACKER_DEPTH = 32;

/** A record no tracker could read safely reached a ring (these were bugs, fixed; now a failure). */
function knownRecordBug(st: Stats, what: string): never {
  void st;
  assert.fail(`a record a tracker cannot read reached the ring: ${what}`);
}

/** Every record a tracker would read: parsable, finite timestamp, equal columns of numbers, sane adsb. */
function checkRecord(rec: Rec, st: Stats): void {
  assert.ok(Number.isFinite(rec.timestamp) && rec.timestamp >= 0, `record timestamp ${rec.timestamp}`);
  const n = rec.detections;
  if (rec.kind === KIND_JSON_LINE) {
    assert.equal(rec.payload[rec.payload.length - 1], 10, 'a JSON record ends with a newline');
    const text = utf8.decode(rec.payload);
    if (jsonDepth(text) > TRACKER_DEPTH) knownRecordBug(st, 'deep-adsb-in-ring');
    const o = JSON.parse(text) as Record<string, unknown>;
    assert.ok(typeof o === 'object' && o !== null && !Array.isArray(o), 'record is an object');
    assert.equal(o.timestamp, rec.timestamp, 'record timestamp = its JSON timestamp');
    for (const k of ['delay', 'doppler', 'snr']) {
      const a = o[k];
      assert.ok(Array.isArray(a) && a.length === n, `${k} has ${n} entries`);
      for (const x of a as unknown[]) {
        assert.equal(typeof x, 'number', `${k} holds numbers`);
        assert.ok(Number.isFinite(x), `${k} holds finite numbers (was a bug: 1e999 passed the line path)`);
      }
    }
    if (o.adsb !== undefined) {
      assert.ok(Array.isArray(o.adsb) && o.adsb.length === n, 'adsb has one entry per detection');
      for (const x of o.adsb as unknown[]) assert.ok(x === null || (typeof x === 'object' && !Array.isArray(x)), 'adsb entries are null or objects');
    }
  } else {
    assert.equal(rec.kind, KIND_PACKED, `record kind ${rec.kind}`);
    assert.ok(rec.payload.length >= n * 24, 'packed payload holds the columns');
    const f = new Float64Array(n * 3);
    new Uint8Array(f.buffer).set(rec.payload.subarray(0, n * 24));
    for (const x of f) assert.ok(Number.isFinite(x), 'packed detections are finite');
    if (rec.payload.length > n * 24) {
      const t = utf8.decode(rec.payload.subarray(n * 24));
      if (jsonDepth(t) + 1 > TRACKER_DEPTH) knownRecordBug(st, 'deep-adsb-in-ring'); // + 1: the frame object around it
      const a = JSON.parse(t) as unknown[];
      assert.ok(Array.isArray(a) && a.length === n, 'packed adsb has one entry per detection');
    }
  }
}

function sameNum(a: unknown, b: number): boolean {
  return typeof a === 'number' && a === b; // -0 and 0 print alike in JSON
}

function checkLineFrames(recs: Rec[], exp: LineFrameExp[], what: string): void {
  assert.equal(recs.length, exp.length, `${what}: ${exp.length} frames written, got ${recs.length}`);
  for (let i = 0; i < exp.length; i++) {
    const r = recs[i]!;
    const e = exp[i]!;
    assert.equal(r.kind, KIND_JSON_LINE, `${what}: kind`);
    assert.equal(r.timestamp, e.ts, `${what}: frame ${i} timestamp`);
    assert.equal(r.detections, e.n, `${what}: frame ${i} detections`);
    assert.deepEqual(JSON.parse(r.payload.toString('utf8')), e.obj, `${what}: frame ${i} payload`);
  }
}

function checkBinFrames(recs: Rec[], exp: BinFrameExp[], jsonl: boolean, what: string): void {
  assert.equal(recs.length, exp.length, `${what}: ${exp.length} frames written, got ${recs.length}`);
  for (let i = 0; i < exp.length; i++) {
    const r = recs[i]!;
    const e = exp[i]!;
    assert.equal(r.timestamp, e.ts, `${what}: frame ${i} timestamp`);
    assert.equal(r.detections, e.n, `${what}: frame ${i} detections`);
    const adsbJson = e.adsb ? JSON.stringify(e.adsb) : null;
    if (jsonl) {
      assert.equal(r.kind, KIND_JSON_LINE);
      const o = JSON.parse(r.payload.toString('utf8')) as Record<string, any>;
      assert.ok(sameNum(o.timestamp, e.ts));
      ['delay', 'doppler', 'snr'].forEach((k, c) => {
        assert.equal(o[k].length, e.n);
        for (let j = 0; j < e.n; j++) assert.ok(sameNum(o[k][j], e.cols[c]![j]!), `${what}: ${k}[${j}]`);
      });
      assert.equal(r.payload.toString('utf8'), packedToJson(e.det, e.n, adsbJson === null ? null : Buffer.from(adsbJson), e.ts));
    } else {
      assert.equal(r.kind, KIND_PACKED);
      assert.ok(r.payload.subarray(0, e.n * 24).equals(e.det), `${what}: frame ${i} det bytes`);
      assert.equal(r.payload.subarray(e.n * 24).toString('utf8'), adsbJson ?? '', `${what}: frame ${i} adsb`);
    }
  }
}

// ---------------------------------------------------------------------------
// One case

/** What the running case feeds, for the failure report. */
let CURRENT = '';

interface ConnPlan {
  conn: HConn;
  chunks: Uint8Array[];
  check: () => void;
}

function runCase(h: Harness, seed: number, index: number, st: Stats): void {
  const r = new Rand(caseSeed(seed, index));
  h.jsonl = r.chance(0.25);
  const before = h.counters.slice();
  const plans: ConnPlan[] = [];
  const tsBase = 1757400000000 + index * 1000;
  const sentinelTs = 4e12 + index;
  const binary = r.chance(0.5);
  /** Frames of the honest neighbour (all valid, all counted): not the main connection's. */
  let neighbourFrames = 0;
  const kind = r.f() < 0.3 ? 'valid' : r.chance(0.55) ? 'structural' : 'raw';
  st.cases++;
  st[binary ? 'binary' : 'line']++;
  st[kind]++;

  // The connection under test.
  const main = h.open();
  let bytes: Buffer;
  let checkMain: () => void;
  if (!binary) {
    const v = kind === 'valid' ? validLineStream(r, NODE, tsBase) : null;
    const text = v ? v.text : kind === 'structural' ? mutatedLineStream(r, NODE, tsBase) : validLineStream(r, NODE, tsBase).text;
    let stream = B(text);
    if (kind === 'raw') stream = rawMutate(r, stream);
    // After anything: a newline, then a valid frame, which must get through unless the connection was closed.
    const withSentinel = kind !== 'valid';
    if (withSentinel) stream = Buffer.concat([stream, B('\n'), B(sentinelLine(NODE, sentinelTs))]);
    bytes = stream;
    checkMain = () => {
      const isBinary = bytes.length > 0 && bytes[0] === 0x00; // a raw mutation may have made it look binary
      const recv = h.counters[C_FRAMES_RECEIVED]! - before[C_FRAMES_RECEIVED]! - neighbourFrames;
      if (isBinary) {
        checkBinaryOutput(main, false);
        return;
      }
      assert.equal(main.out.length, 0, 'the line protocol never writes to the node');
      if (main.closeReason !== null) {
        assert.ok(main.closeReason === 'auth_failed' || (main.closeReason === 'node_refused' && main.refused), `line close reason ${main.closeReason}`);
        assert.ok(recv <= lineOracle(bytes).max, `received ${recv} > lines framed ${lineOracle(bytes).max}`);
      } else {
        const o = lineOracle(bytes);
        assert.ok(recv >= o.min && recv <= o.max, `received ${recv} not in [${o.min}, ${o.max}] (lines framed, heartbeats uncounted): a line vanished without a reason`);
      }
      if (v) {
        assert.equal(main.closeReason, null, 'a valid stream is never closed');
        checkLineFrames(main.rings.get(NODE)?.records ?? [], v.frames, 'valid line stream');
      }
      if (withSentinel && main.closeReason === null) {
        st.sentinelsChecked++;
        const recs = main.rings.get(NODE)?.records ?? [];
        assert.equal(recs[recs.length - 1]?.timestamp, sentinelTs, 'the frame after the mutations is written (the connection stayed usable)');
      }
    };
  } else {
    const v = validBinStream(r, NODE, tsBase);
    let wire: Buffer[];
    let framingIntact = true;
    if (kind === 'valid') wire = v.msgs.map((b) => prefixed(b));
    else if (kind === 'structural') wire = mutatedBinStream(r, v);
    else {
      wire = [rawMutate(r, Buffer.concat(v.msgs.map((b) => prefixed(b))))];
      framingIntact = false;
    }
    if (framingIntact && kind !== 'valid') wire.push(sentinelFrame(sentinelTs));
    bytes = Buffer.concat(wire);
    const fatalInWire = framingIntact && wire.some((w, i) => i > 0 && w.readUInt32BE(0) > MAX_FRAME * 16);
    checkMain = () => {
      const isLine = bytes.length > 0 && bytes[0] !== 0x00;
      if (isLine) {
        assert.equal(main.out.length, 0, 'detected as line protocol: nothing is written back');
        assert.ok(main.closeReason === null || main.closeReason === 'auth_failed', `close reason ${main.closeReason}`);
        return;
      }
      const msgs = checkBinaryOutput(main, true);
      const ring = [...main.rings.values()][0];
      const recs = ring?.records ?? [];
      if (kind === 'valid') {
        assert.equal(main.closeReason, null, 'a valid stream is never closed');
        assert.equal(msgs[0]?.t, 'welcome');
        assert.equal(msgs[0]?.last_seq, 0);
        assert.equal(msgs[0]?.node, NODE);
        assert.equal(msgs.filter((m) => m.t === 'error').length, 0, 'no errors for a valid stream');
        checkBinFrames(recs, v.frames, h.jsonl, 'valid binary stream');
        const acks = msgs.filter((m) => m.t === 'ack');
        const last = v.frames.length ? v.frames[v.frames.length - 1]!.seq : 0;
        if (v.msgs.length > 1) assert.equal(acks[acks.length - 1]?.seq, last, 'the last ack covers the last frame');
      }
      if (framingIntact && kind !== 'valid') {
        const recv = h.counters[C_FRAMES_RECEIVED]! - before[C_FRAMES_RECEIVED]! - neighbourFrames;
        if (main.closeReason === null) {
          assert.ok(!fatalInWire, 'an untrusted length must close the connection');
          assert.equal(recv, binOracle(wire), 'every framed message after the hello that is not a heartbeat is counted once');
          st.sentinelsChecked++;
          const lastSeq = ring ? ring.reader.lastSeq : 0;
          const got = recs[recs.length - 1]?.timestamp === sentinelTs;
          assert.ok(got || lastSeq >= SENTINEL_SEQ, `the frame after the mutations is written (last seq ${lastSeq})`);
        }
      }
    };
  }
  plans.push({ conn: main, chunks: chunk(r, bytes), check: checkMain });

  // Sometimes an honest connection on the same shard, its chunks interleaved.
  if (r.chance(0.2)) {
    st.companions++;
    const c = h.open();
    if (r.chance(0.5)) {
      const v = validLineStream(r, HONEST, tsBase + 500);
      neighbourFrames = v.frames.length;
      plans.push({
        conn: c, chunks: chunk(r, B(v.text)), check: () => {
          assert.equal(c.closeReason, null, 'honest line connection not closed');
          checkLineFrames(c.rings.get(HONEST)?.records ?? [], v.frames, 'honest line neighbour');
        },
      });
    } else {
      const v = validBinStream(r, HONEST, tsBase + 500);
      neighbourFrames = v.frames.length;
      plans.push({
        conn: c, chunks: chunk(r, Buffer.concat(v.msgs.map((b) => prefixed(b)))), check: () => {
          assert.equal(c.closeReason, null, 'honest binary connection not closed');
          const msgs = checkBinaryOutput(c, true);
          assert.equal(msgs.filter((m) => m.t === 'error').length, 0);
          checkBinFrames(c.rings.get(HONEST)?.records ?? [], v.frames, h.jsonl, 'honest binary neighbour');
        },
      });
    }
  }

  CURRENT = plans.map((p, i) => `conn ${i} (${i === 0 ? `${binary ? 'binary' : 'line'} ${kind}` : 'neighbour'}), chunks ` +
    `[${p.chunks.map((c) => c.byteLength).join(',')}]: ${Buffer.concat(p.chunks).subarray(0, 3000).toString('hex')}`).join('\n');
  for (const p of plans) {
    st.chunksFed += p.chunks.length;
    for (const c of p.chunks) st.bytesFed += c.byteLength;
  }
  // Deliver, interleaved.
  const cursors = plans.map(() => 0);
  for (;;) {
    const live = plans.map((_, i) => i).filter((i) => cursors[i]! < plans[i]!.chunks.length);
    if (live.length === 0) break;
    const i = r.pick(live);
    h.data(plans[i]!.conn, plans[i]!.chunks[cursors[i]!++]!);
  }

  // Before the sockets go: nothing stuck, every framed byte credited back.
  for (const p of plans) {
    const sc = h.shard.conns.get(p.conn.id);
    assert.ok(!sc?.blocked, 'a connection is blocked after its bytes were handled (ring never drains or a claim was never answered)');
    assert.ok(p.conn.credits <= p.conn.pushed, 'never more credit than bytes');
    if (p.conn.closeReason === null && sc) {
      // Bytes copied into the framer's line/message assembly are credited already (bounded by the frame limit).
      const buffered = sc.framer?.buffered ?? 0;
      assert.ok(p.conn.pushed - p.conn.credits <= buffered, `credit leak: ${p.conn.pushed - p.conn.credits} bytes neither credited nor buffered (${buffered})`);
      if (buffered === 0) assert.equal(p.conn.credits, p.conn.pushed, 'everything framed is credited back');
    }
    assert.ok(p.conn.closes <= 1, 'one close request per connection');
  }
  for (const p of plans) h.end(p.conn);
  for (const p of plans) assert.ok(p.conn.released, 'the shard released the connection after the socket closed');
  assert.equal(h.shard.conns.size, 0, 'no connection state left in the shard');

  // Accounting for the case.
  const d = (i: number): number => h.counters[i]! - before[i]!;
  let dropped = 0;
  for (const reason of DROP_REASONS) {
    const n = d(dropIndex(reason));
    if (n > 0) st.drops[reason] = (st.drops[reason] ?? 0) + n;
    dropped += n;
  }
  let written = 0;
  let dets = 0;
  for (const u of h.used) {
    for (const rec of u.records) {
      checkRecord(rec, st);
      dets += rec.detections;
    }
    written += u.records.length;
  }
  assert.equal(d(C_FRAMES_RECEIVED), d(C_FRAMES_WRITTEN) + dropped, `received ${d(C_FRAMES_RECEIVED)} != written ${d(C_FRAMES_WRITTEN)} + dropped ${dropped}`);
  assert.equal(d(C_FRAMES_WRITTEN), written, 'frames_written = records in the rings');
  assert.equal(d(C_DETECTIONS_RECEIVED), dets, 'detections counted = detections in the rings');
  st.framesWritten += written;
  for (const p of plans) {
    if (p.conn.closeReason) st.closes[p.conn.closeReason] = (st.closes[p.conn.closeReason] ?? 0) + 1;
    p.check();
  }
}

/** Parses what the host sent on a binary connection and checks its grammar. */
function checkBinaryOutput(c: HConn, expectBinary: boolean): Record<string, any>[] {
  const msgs = parseOut(c);
  let lastAck = -1;
  let fatal = 0;
  let welcomes = 0;
  msgs.forEach((m) => {
    assert.ok(['welcome', 'ack', 'error'].includes(m.t), `host message type ${m.t}`);
    if (m.t === 'welcome') welcomes++;
    if (m.t === 'ack') {
      assert.equal(welcomes, 1, 'acks only after the welcome');
      assert.ok(typeof m.seq === 'number' && m.seq >= lastAck, `acks never go back (${lastAck} -> ${m.seq})`);
      lastAck = m.seq;
    }
    if (m.t === 'error') {
      assert.ok(CODES.has(m.code), `error code ${m.code}`);
      assert.equal(typeof m.message, 'string');
      if (m.fatal) fatal++;
    }
  });
  if (c.closeReason !== null) {
    assert.ok(c.closeReason in FATAL_CODE && (c.closeReason !== 'node_refused' || c.refused), `binary close reason ${c.closeReason}: not a documented fatal reason`);
    if (expectBinary) {
      const e = msgs.find((m) => m.t === 'error' && m.fatal);
      assert.ok(FATAL_CODE[c.closeReason]!.includes(e?.code), `the close is announced with one of ${FATAL_CODE[c.closeReason]!.join(', ')}, not ${e?.code}`);
    }
  }
  assert.ok(fatal <= (c.closeReason !== null ? 1 : 0), 'fatal errors only before a close, at most one');
  assert.ok(welcomes <= 1, 'one welcome');
  return msgs;
}

// ---------------------------------------------------------------------------
// Worker side: runs batches, reports progress through shared memory

interface BatchReq { from: number; to: number }
type WorkerReply = { t: 'done'; stats: Stats } | { t: 'fail'; index: number; message: string; stream?: string };

function workerMain(): void {
  const { seed, progress } = workerData as { seed: number; progress: SharedArrayBuffer };
  const prog = new Int32Array(progress);
  const h = new Harness();
  parentPort!.on('message', (req: BatchReq) => {
    const st = newStats();
    for (let i = req.from; i < req.to; i++) {
      Atomics.store(prog, 0, i);
      try {
        runCase(h, seed, i, st);
      } catch (err) {
        const kb = knownBug(err);
        if (kb !== null) {
          st.knownBugEscapes[kb] = (st.knownBugEscapes[kb] ?? 0) + 1;
          if (st.firstKnownBugCase < 0) st.firstKnownBugCase = i;
          h.newShard(); // the thread would have died: start over, as piscina does
          h.finishCase();
          continue;
        }
        const e = err as Error;
        parentPort!.postMessage({ t: 'fail', index: i, message: `${e.message}\n${e.stack ?? ''}`, stream: CURRENT } satisfies WorkerReply);
        return;
      }
      h.finishCase();
    }
    parentPort!.postMessage({ t: 'done', stats: st } satisfies WorkerReply);
  });
}

function merge(a: Stats, b: Stats): void {
  for (const k of ['cases', 'line', 'binary', 'valid', 'structural', 'raw', 'companions', 'sentinelsChecked', 'framesWritten', 'bytesFed', 'chunksFed'] as const) a[k] += b[k];
  for (const k of ['drops', 'closes', 'knownBugEscapes'] as const) for (const [x, n] of Object.entries(b[k])) a[k][x] = (a[k][x] ?? 0) + n;
  if (a.firstKnownBugCase < 0) a.firstKnownBugCase = b.firstKnownBugCase;
}

// ---------------------------------------------------------------------------
// Tests (main thread)

if (!isMainThread && (workerData as { fuzz?: boolean } | null)?.fuzz) {
  workerMain();
} else if (isMainThread) {
  const envNum = (k: string, d: number): number => (process.env[k] !== undefined && process.env[k] !== '' ? Number(process.env[k]) : d);
  const SEED = envNum('FUZZ_SEED', DEFAULT_SEED) >>> 0;
  const FROM = envNum('FUZZ_FROM', 0);
  const CASES = envNum('FUZZ_CASES', DEFAULT_CASES);
  // Bugs found by this file and fixed since (the text says what it was).
  const fixedBug = (_was: string): { skip: false } => ({ skip: false });

  describe('fuzz: framers and decoders through a real shard', () => {
    test(`${CASES} cases (seed=${SEED}${FROM ? ` from=${FROM}` : ''}): no escape, no hang, every rejection counted`, async () => {
      // Batches go to WORKERS threads (each its own shard, like shard workers); every batch has a deadline.
      const workers = Array.from({ length: WORKERS }, () => {
        const progress = new SharedArrayBuffer(4);
        return { w: new Worker(new URL(import.meta.url), { workerData: { fuzz: true, seed: SEED, progress } }), progress: new Int32Array(progress) };
      });
      const total = newStats();
      const t0 = Date.now();
      let next = FROM;
      const runBatches = async (wk: (typeof workers)[number]): Promise<void> => {
        while (next < FROM + CASES) {
          const from = next;
          const to = Math.min(FROM + CASES, from + BATCH);
          next = to;
          const reply = await new Promise<WorkerReply | 'timeout' | Error>((resolve) => {
            const timer = setTimeout(() => resolve('timeout'), BATCH_DEADLINE_MS);
            const done = (v: WorkerReply | Error): void => {
              clearTimeout(timer);
              wk.w.off('message', done);
              wk.w.off('error', done);
              resolve(v);
            };
            wk.w.on('message', done);
            wk.w.on('error', done);
            wk.w.postMessage({ from, to } satisfies BatchReq);
          });
          const at = Atomics.load(wk.progress, 0);
          const replay = `replay: FUZZ_SEED=${SEED} FUZZ_FROM=${at} FUZZ_CASES=1 (or FUZZ_FROM=${from} FUZZ_CASES=${to - from} for the whole batch)`;
          if (reply === 'timeout') throw new Error(`seed=${SEED} case=${at}: batch ${from}-${to} did not finish within ${BATCH_DEADLINE_MS} ms (hang)\n${replay}`);
          if (reply instanceof Error) throw new Error(`seed=${SEED} case=${at}: the fuzz worker died: ${reply.message}\n${replay}`);
          if (reply.t === 'fail') throw new Error(`seed=${SEED} case=${reply.index}: ${reply.message}\n${replay}\n${reply.stream ?? ''}`);
          merge(total, reply.stats);
        }
      };
      try {
        await Promise.all(workers.map((wk) => runBatches(wk)));
      } finally {
        next = Infinity; // the other workers stop after their batch
        await Promise.all(workers.map((wk) => wk.w.terminate()));
      }
      const s = (Date.now() - t0) / 1000;
      console.log(`fuzz seed=${SEED}: ${total.cases} cases in ${s.toFixed(1)} s = ${Math.round(total.cases / s)} cases/s; ` +
        `line ${total.line}, binary ${total.binary}; valid ${total.valid}, structural ${total.structural}, raw ${total.raw}; ` +
        `with a neighbour ${total.companions}; sentinels checked ${total.sentinelsChecked}; frames written ${total.framesWritten}`);
      console.log(`  fed ${(total.bytesFed / 1e6).toFixed(1)} MB in ${total.chunksFed} chunks; drops ${JSON.stringify(total.drops)}; closes ${JSON.stringify(total.closes)}`);
      if (Object.keys(total.knownBugEscapes).length > 0) {
        console.log(`  KNOWN BUGS hit: escapes ${JSON.stringify(total.knownBugEscapes)} ${total.firstKnownBugCase >= 0 ? `(first escape at case ${total.firstKnownBugCase}) ` : ''}`);
      }
      assert.equal(total.cases, CASES);
      // The run exercised what it claims to (a generator regression would make it vacuous).
      if (CASES >= 10000) {
        for (const r of ['malformed', 'invalid_utf8', 'invalid_frame', 'frame_too_large', 'auth_failed', 'duplicate']) {
          assert.ok((total.drops[r] ?? 0) > 0, `no case was dropped as ${r}`);
        }
        for (const r of ['auth_failed', 'protocol_error', 'unsupported_version', 'frame_too_large']) {
          assert.ok((total.closes[r] ?? 0) > 0, `no case was closed for ${r}`);
        }
        assert.ok(total.sentinelsChecked > CASES / 4, 'sentinels checked');
        assert.ok(total.companions > CASES / 10, 'neighbour connections ran');
      }
    });

    test('the oracles and checks can fail (a silently skipped line, a lost frame)', () => {
      // lineOracle counts a line the handler must account for.
      assert.deepEqual(lineOracle(B('{"a":1}\n\n{"type":"heartbeat"}\r\n')), { min: 1, max: 2 });
      assert.deepEqual(lineOracle(B(`${'x'.repeat(MAX_FRAME + 1)}`)), { min: 1, max: 1 });
      // A record a tracker cannot read is caught.
      assert.throws(() => checkRecord({ kind: KIND_JSON_LINE, timestamp: 5, detections: 1, payload: B('{"timestamp":5,"delay":[1],"doppler":[],"snr":[1]}\n') }, newStats()));
      // A frame missing from a ring is caught.
      assert.throws(() => checkLineFrames([], [{ ts: 1, n: 0, obj: {} }], 'x'));
    });
  });

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
}
