// What a case must observe: per-protocol oracles for what the shard accounts for, the
// checks on ring records, and the run's statistics.
import assert from 'node:assert/strict';
import { KIND_JSON_LINE, KIND_PACKED } from '../../src/ring/ring-layout.js';
import { type CloseReason } from '../../src/telemetry/counters.js';
import { ErrorCodes } from '../../src/protocol/errors.js';
import { decodeBody } from '../../src/protocol/binary-protocol.js';
import { packedToJson } from '../../src/ring/record-codec.js';
import { MAX_FRAME, Rec, HConn } from './harness.js';
import { LineFrameExp } from './line-streams.js';
import { BinFrameExp } from './binary-streams.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The line framer's contract, independently: returns how many framed lines must be
 * counted (min) and may be counted (max: heartbeats are not counted, and whether a
 * line is a heartbeat depends on the scanner's stricter view).
 */
export function lineOracle(bytes: Buffer): { min: number; max: number } {
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
export function binOracle(wire: Buffer[]): number {
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

export function parseOut(c: HConn): Record<string, any>[] {
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

export const CODES = new Set<string>(Object.values(ErrorCodes));
/** The codes a fatal close may be announced with (a hello with a bad field: INVALID_HELLO; seq_jump never, its limit is off here). */
export const FATAL_CODE: Partial<Record<CloseReason, string[]>> = {
  protocol_error: [ErrorCodes.PROTOCOL, ErrorCodes.INVALID_HELLO], unsupported_version: [ErrorCodes.UNSUPPORTED_VERSION],
  auth_failed: [ErrorCodes.AUTH_FAILED], frame_too_large: [ErrorCodes.FRAME_TOO_LARGE], node_refused: [ErrorCodes.NODE_REFUSED],
};

export interface Stats {
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

export function newStats(): Stats {
  return {
    cases: 0, line: 0, binary: 0, valid: 0, structural: 0, raw: 0, companions: 0, sentinelsChecked: 0, framesWritten: 0,
    drops: {}, closes: {}, knownBugEscapes: {}, firstKnownBugCase: -1, bytesFed: 0, chunksFed: 0,
  };
}

/** Escapes already reported as src bugs (KNOWN BUGS below): counted, not failed, so the fuzz keeps finding new ones. */
export function knownBug(err: unknown): string | null {
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
export function checkRecord(rec: Rec, st: Stats): void {
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

export function checkLineFrames(recs: Rec[], exp: LineFrameExp[], what: string): void {
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

export function checkBinFrames(recs: Rec[], exp: BinFrameExp[], jsonl: boolean, what: string): void {
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
