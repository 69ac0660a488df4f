// Writes validated frames into a node's ring. Line frames are copied as raw byte
// spans (the original JSON minus node_id/token/type); binary frames are copied as
// their packed f64 columns, or encoded as a JSON line when the consumer asked for
// JSON only. A node's RESET is a payload-less control record.
import { RESERVE_FULL, RESERVE_TOO_LARGE, type RingWriter } from './ring-writer.js';
import { KIND_JSON_LINE, KIND_PACKED, KIND_RESET } from './ring-layout.js';
import { formatNumber } from '../protocol/number-format.js';

/** The members of a line frame kept for the tracker: byte spans [start, end) of the line (the line scanner fills them). */
export interface KeptSpans {
  readonly keptStart: Int32Array;
  readonly keptEnd: Int32Array;
  readonly keptCount: number;
}

const LBRACE = 0x7b;
const RBRACE = 0x7d;
const COMMA = 0x2c;
const NL = 0x0a;

/**
 * The source of the last word-wise copy, with byte and 32-bit views over all
 * of it: a shard copies hundreds of frames out of one socket read in a row, so the
 * views are made once per read, not per frame.
 */
let srcView: Uint8Array | null = null;
let srcBytes: Uint8Array = new Uint8Array(0);
let srcWords: Int32Array = new Int32Array(0);

/**
 * Copies line[s, e) to the ring at byte `at`. A span of a few dozen bytes or more whose
 * source and destination are equally aligned (the record's skip makes the first span
 * so) is copied as 32-bit words: TypedArray#set into shared memory needs a fresh view
 * per call and copies with relaxed atomics, which costs more than the copy itself here.
 */
function copyBytes(w: RingWriter, at: number, src: Uint8Array, s: number, e: number): void {
  const dst = w.bytes;
  let n = e - s;
  let i = src.byteOffset + s;
  if (n < 24 || ((i ^ at) & 3) !== 0) {
    for (let k = 0; k < n; k++) dst[at + k] = src[s + k]!;
    return;
  }
  if (src !== srcView) {
    // Keyed by the view (reading .buffer per frame is not free), views made over its whole buffer.
    srcView = src;
    const buf = src.buffer;
    srcBytes = new Uint8Array(buf);
    srcWords = new Int32Array(buf, 0, buf.byteLength >>> 2);
  }
  const sb = srcBytes;
  const sw = srcWords;
  const dw = w.words;
  let j = at;
  for (; (i & 3) !== 0; n--) dst[j++] = sb[i++]!;
  const words = n >>> 2;
  const si = i >>> 2;
  const di = j >>> 2;
  for (let k = 0; k < words; k++) dw[di + k] = sw[si + k]!;
  i += words << 2;
  j += words << 2;
  for (n -= words << 2; n > 0; n--) dst[j++] = sb[i++]!;
}

/** A frame write's outcome: written, ring full (block policy; retry later), or never storable. */
const WRITTEN = 0;
export const WRITE_FULL = RESERVE_FULL;
export const WRITE_TOO_LARGE = RESERVE_TOO_LARGE;
export type WriteResult = typeof WRITTEN | typeof WRITE_FULL | typeof WRITE_TOO_LARGE;

const failed = (off: number): WriteResult => (off === RESERVE_TOO_LARGE ? WRITE_TOO_LARGE : WRITE_FULL);

/**
 * Writes a line frame. On WRITE_FULL / WRITE_TOO_LARGE nothing was written.
 * `onDrop` receives frames dropped by drop-oldest to make room.
 */
export function writeLineFrame(w: RingWriter, line: Uint8Array, scan: KeptSpans, timestamp: number,
  detections: number, onDrop: (n: number) => void): WriteResult {
  let len = 3 + scan.keptCount - 1; // '{' '}' '\n' and the commas between spans
  for (let i = 0; i < scan.keptCount; i++) len += scan.keptEnd[i]! - scan.keptStart[i]!;
  // Align the first (largest) span's copy: payloads start 8-aligned, '{' comes first.
  const skip = scan.keptCount > 0 ? (line.byteOffset + scan.keptStart[0]! - 1) & 7 : 0;
  const off = w.reserve(len, timestamp, KIND_JSON_LINE, detections, onDrop, skip);
  if (off < 0) return failed(off);
  const d = w.bytes;
  let p = off;
  d[p++] = LBRACE;
  for (let i = 0; i < scan.keptCount; i++) {
    if (i > 0) d[p++] = COMMA;
    const s = scan.keptStart[i]!;
    const e = scan.keptEnd[i]!;
    copyBytes(w, p, line, s, e);
    p += e - s;
  }
  d[p++] = RBRACE;
  d[p] = NL;
  w.commit();
  return WRITTEN;
}

/**
 * Writes a RESET control record (no payload): the consumer passes it to the
 * tracker at its place among the frames. Counted by the caller like a frame.
 */
export function writeResetRecord(w: RingWriter, onDrop: (n: number) => void): WriteResult {
  const off = w.reserve(0, w.lastTimestamp, KIND_RESET, 0, onDrop);
  if (off < 0) return failed(off);
  w.commit();
  return WRITTEN;
}

/**
 * Writes a binary frame: its packed columns, or its retina JSON line when the
 * consumer wants JSON (which can be several times the frame's size on the wire).
 */
export function writePackedFrame(w: RingWriter, det: Uint8Array, n: number, adsbJson: Buffer | null,
  timestamp: number, onDrop: (n: number) => void): WriteResult {
  if (w.wantsJson) return writePackedAsJson(w, det, n, adsbJson, timestamp, onDrop);
  const alen = adsbJson ? adsbJson.length : 0;
  const off = w.reserve(det.length + alen, timestamp, KIND_PACKED, n, onDrop, det.byteOffset & 7);
  if (off < 0) return failed(off);
  w.bytes.set(det, off);
  if (adsbJson) w.bytes.set(adsbJson, off + det.length);
  w.commit();
  return WRITTEN;
}

const enc = new TextEncoder();

/** The retina line for a packed frame (only when the consumer wants JSON). */
export function packedToJson(det: Uint8Array, n: number, adsbJson: Buffer | null, timestamp: number): string {
  const f = new Float64Array(n * 3);
  new Uint8Array(f.buffer).set(det.subarray(0, n * 24));
  const col = (k: number): string => {
    let s = '';
    for (let i = 0; i < n; i++) s += (i ? ',' : '') + formatNumber(f[k * n + i]!);
    return s;
  };
  let s = `{"timestamp":${timestamp},"delay":[${col(0)}],"doppler":[${col(1)}],"snr":[${col(2)}]`;
  if (adsbJson) s += `,"adsb":${adsbJson.toString('utf8')}`;
  return s + '}\n';
}

/** The retina line for a KIND_PACKED ring record: its payload is the columns, then the adsb JSON if any. */
export function packedRecordToJson(payload: Buffer, n: number, timestamp: number): string {
  const cols = n * 24;
  return packedToJson(payload, n, payload.length > cols ? payload.subarray(cols) : null, timestamp);
}

function writePackedAsJson(w: RingWriter, det: Uint8Array, n: number, adsbJson: Buffer | null,
  timestamp: number, onDrop: (n: number) => void): WriteResult {
  const bytes = enc.encode(packedToJson(det, n, adsbJson, timestamp));
  const off = w.reserve(bytes.length, timestamp, KIND_JSON_LINE, n, onDrop);
  if (off < 0) return failed(off);
  w.bytes.set(bytes, off);
  w.commit();
  return WRITTEN;
}
