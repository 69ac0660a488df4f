// The fuzz harness: a real Shard driven by an in-test "main thread" that answers claims
// with real rings, drains them with the real RingReader, and records every byte and close
// the shard asks for; plus the seeded random source and the run's constants.
import { availableParallelism } from 'node:os';
import { Shard } from '../../src/shard/shard.js';
import { RingReader, createRingBuffer } from '../../src/ring/ring-reader.js';
import { HEADER_BYTES, FORMAT_ANY, FORMAT_JSONL } from '../../src/ring/ring-layout.js';
import { COUNTER_SLOTS, type CloseReason } from '../../src/telemetry/counters.js';
import { ErrorCodes, type PlainError } from '../../src/protocol/errors.js';
import { M_OPEN, M_DATA, M_END, M_GRANT, M_REFUSE, S_BATCH, S_CLAIM, S_CLOSE, S_CLOSED, S_AUTH, type ShardToMain } from '../../src/protocol/thread-messages.js';
import { mulberry32 } from '../prng.js';

export const TOKEN = 'fuzz-secret';
/** Small limits so oversize paths and ring sizing are hit often: the smallest legal ring for this frame limit. */
export const MAX_FRAME = 16384;
const RING_BYTES = 65536; // >= 2 * MAX_FRAME + 64, a power of two (config rule)
export const NODE = 'fuzz-node';
export const HONEST = 'HONEST9'; // differs from NODE in many bits: a bit flip cannot turn one into the other
export const SENTINEL_SEQ = 2 ** 40;
export const DEFAULT_SEED = 0x5eed2024;
export const DEFAULT_CASES = 100_000;
export const BATCH = 2500;
export const BATCH_DEADLINE_MS = 30_000;
/** Worker threads running batches side by side (2 busy cores: at most 2). */
export const WORKERS = Math.max(1, Math.min(2, availableParallelism()));

// ---------------------------------------------------------------------------
// Random helpers

export class Rand {
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

export function caseSeed(seed: number, i: number): number {
  let h = (seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** JS string of latin1 "bytes" <-> Buffer: lets line text carry raw (also invalid) UTF-8. */
export const B = (s: string): Buffer => Buffer.from(s, 'latin1');
export const U = (s: string): string => Buffer.from(s, 'utf8').toString('latin1'); // UTF-8 bytes as a byte string

// ---------------------------------------------------------------------------
// The in-test main thread

export interface Rec { kind: number; timestamp: number; detections: number; payload: Buffer }

interface RingUse { node: string; sab: SharedArrayBuffer; reader: RingReader; records: Rec[] }

export interface HConn {
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

export class Harness {
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
      shardId: 0, counters: this.counters, token: TOKEN, tokens: {}, limits: { maxFrameBytes: MAX_FRAME, maxDetections: 1_000_000, maxClockSkewMs: 0, maxSeqJump: Number.MAX_SAFE_INTEGER }, overflow: 'block', ack: 'ring',
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
