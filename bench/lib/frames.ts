// Frame templates shared by the load generators: retina line frames (whole, or
// patchable in place with increasing timestamps and a send-time marker), binary
// frames that can be renumbered in place, heartbeats, and the binary reply reader.
import { decodeBody, encodeFrame } from './engine-api.js';

export const TS0 = 1757400000000;
const TS_DIGITS = 13;
const T_DIGITS = 19;

const round2 = (x: number): number => Math.round(x * 100) / 100;

/** Deterministic detections (two decimals, like retina nodes: 40.46, -27.99, 12.08) for frame variant v. */
function detectionValues(n: number, v: number, a = 7, b = 11): { delay: number[]; doppler: number[]; snr: number[]; adsb: null[] } {
  const out = { delay: [] as number[], doppler: [] as number[], snr: [] as number[], adsb: [] as null[] };
  for (let k = 0; k < n; k++) {
    out.delay.push(round2(20 + ((v * a + k * 13) % 400) * 0.37));
    out.doppler.push(round2(-200 + ((v * b + k * 29) % 4000) * 0.1));
    out.snr.push(round2(6 + ((v * 3 + k * 5) % 200) * 0.09));
    out.adsb.push(null);
  }
  return out;
}

/** A line frame with the send-time marker field: `{"node_id",..,"timestamp":TS0,"t":"000..",<detections>}`. */
function markedLine(node: string, token: string, n: number, v: number, marker: boolean): string {
  const head = { node_id: node, token, timestamp: TS0, ...(marker ? { t: '0'.repeat(T_DIGITS) } : {}) };
  return `${JSON.stringify(head).slice(0, -1)},${JSON.stringify(detectionValues(n, v)).slice(1)}\n`;
}

/** Writes v (a non-negative integer below 2^53) as `width` ASCII digits, zero-padded. */
function writeDigits(buf: Buffer, off: number, width: number, v: number): void {
  for (let i = off + width - 1; i >= off; i--) {
    const q = Math.floor(v / 10);
    buf[i] = 0x30 + (v - q * 10);
    v = q;
  }
}

/**
 * Whole line frames of one node (1-5 detections cycling), patched in place before
 * each write: frame j of a write gets timestamp TS0 + seq0 + j, and the first frame
 * carries the send-time marker `"t":"<19 digits>"` (process.hrtime.bigint() at the
 * write). A write of k frames is the first k frames of a patched copy.
 */
export class LineBatch {
  readonly frames: number;
  readonly template: Buffer;
  readonly tsOff: Int32Array;
  /** End of each frame (after its '\n'). */
  readonly end: Int32Array;
  /** Detections in the first k frames (index k). */
  readonly detUpTo: Int32Array;
  readonly tOff: number;

  constructor(node: string, token: string, chunkBytes: number) {
    const lines: string[] = [];
    let size = 0;
    const detOf = (j: number): number => 1 + (j % 5);
    while (size < chunkBytes || lines.length % 5 !== 0) {
      const j = lines.length;
      const line = markedLine(node, token, detOf(j), j, j === 0);
      lines.push(line);
      size += Buffer.byteLength(line);
    }
    this.frames = lines.length;
    this.template = Buffer.from(lines.join(''));
    this.tsOff = new Int32Array(this.frames);
    this.end = new Int32Array(this.frames);
    this.detUpTo = new Int32Array(this.frames + 1);
    let p = 0;
    const key = Buffer.from('"timestamp":');
    for (let j = 0; j < this.frames; j++) {
      this.tsOff[j] = this.template.indexOf(key, p) + key.length;
      p += Buffer.byteLength(lines[j]!);
      this.end[j] = p;
      this.detUpTo[j + 1] = this.detUpTo[j]! + detOf(j);
    }
    this.tOff = this.template.indexOf('"t":"') + 5;
  }

  /** A private copy of the template, to be patched and written. */
  copy(): Buffer {
    return Buffer.from(this.template);
  }

  /** Patches the first k frames of `buf` (timestamps from seq0, marker tNs); returns their byte length. */
  patch(buf: Buffer, seq0: number, k: number, tNs: number): number {
    for (let j = 0; j < k; j++) writeDigits(buf, this.tsOff[j]!, TS_DIGITS, TS0 + seq0 + j);
    writeDigits(buf, this.tOff, T_DIGITS, tNs);
    return this.end[k - 1]!;
  }
}

/** One node's frame, every copy patchable in place: timestamp TS0 + 500 ms x seq, and the marker. */
export class FrameTemplate {
  readonly line: Buffer;
  readonly tsOff: number;
  readonly tOff: number;

  constructor(node: string, token: string, detections: number, variant: number) {
    this.line = Buffer.from(markedLine(node, token, detections, variant, true));
    this.tsOff = this.line.indexOf('"timestamp":') + 12;
    this.tOff = this.line.indexOf('"t":"') + 5;
  }

  /** Patches frame `seq`'s timestamp and the marker into the copy of the line at `at` in `buf`. */
  patch(buf: Buffer, at: number, seq: number, tNs: number): void {
    writeDigits(buf, at + this.tsOff, TS_DIGITS, TS0 + seq * 500);
    writeDigits(buf, at + this.tOff, T_DIGITS, tNs);
  }
}

/**
 * A batch of binary frames that can be renumbered in place: every frame has the
 * same length, its seq is a msgpack uint32 (0xce) and its ts a float64 (0xcb) or
 * uint64 (0xcf) at known offsets.
 */
export class BinaryBatch {
  readonly frameLen: number;
  readonly seqOff: number;
  readonly tsOff: number;
  readonly tsKind: number;
  readonly frames: number;
  readonly template: Buffer;

  constructor(readonly detections: number, chunkBytes: number, variants = 8) {
    const probe = binaryFrame(0x10000, detections, 0);
    this.frameLen = probe.length;
    this.seqOff = valueOffset(probe, 'seq', 0xce);
    const ts = findKey(probe, 'ts');
    this.tsKind = probe[ts]!;
    if (this.tsKind !== 0xcb && this.tsKind !== 0xcf) throw new Error(`unexpected msgpack type 0x${this.tsKind.toString(16)} for ts`);
    this.tsOff = ts + 1;
    this.frames = Math.max(1, Math.floor(chunkBytes / this.frameLen));
    this.template = Buffer.allocUnsafe(this.frames * this.frameLen);
    for (let j = 0; j < this.frames; j++) {
      const f = binaryFrame(0x10000, detections, j % variants);
      if (f.length !== this.frameLen) throw new Error('binary frame length varies between variants');
      f.copy(this.template, j * this.frameLen);
    }
  }

  copy(): Buffer {
    return Buffer.from(this.template);
  }

  /** Numbers the frames of `buf` seq0, seq0+1, ...; timestamps 500 ms apart. */
  patch(buf: Buffer, seq0: number): void {
    const L = this.frameLen;
    const cb = this.tsKind === 0xcb;
    for (let j = 0, p = 0; j < this.frames; j++, p += L) {
      const seq = seq0 + j;
      buf.writeUInt32BE(seq, p + this.seqOff);
      const ts = TS0 + seq * 500;
      if (cb) buf.writeDoubleBE(ts, p + this.tsOff);
      else buf.writeBigUInt64BE(BigInt(ts), p + this.tsOff);
    }
  }
}

/** One binary frame (length-prefixed) with n detections of variant v. */
export function binaryFrame(seq: number, n: number, v: number, ts = TS0): Buffer {
  const d = detectionValues(n, v, 37, 53);
  return encodeFrame({ seq, timestamp: ts, delay: Float64Array.from(d.delay), doppler: Float64Array.from(d.doppler), snr: Float64Array.from(d.snr) });
}

/** Offset of the msgpack type byte of the value of fixstr key `key`. */
function findKey(msg: Buffer, key: string): number {
  const k = Buffer.concat([Buffer.from([0xa0 | key.length]), Buffer.from(key)]);
  const at = msg.indexOf(k, 4);
  if (at < 0) throw new Error(`key ${key} not found in encoded frame`);
  return at + k.length;
}

function valueOffset(msg: Buffer, key: string, type: number): number {
  const at = findKey(msg, key);
  if (msg[at] !== type) throw new Error(`unexpected msgpack type 0x${msg[at]!.toString(16)} for ${key}`);
  return at + 1;
}

/** The line-protocol heartbeat of a node (also its first, authenticating, message). */
export function heartbeatLine(node: string, token: string): Buffer {
  return Buffer.from(`${JSON.stringify({ node_id: node, token, type: 'heartbeat' })}\n`);
}

export { forEachSendTime } from './send-marker.js';

/** Splits a binary-protocol byte stream into message bodies (u32 BE length prefix). */
export class MessageReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer, fn: (msg: Record<string, unknown>) => void): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let at = 0;
    while (this.buf.length - at >= 4) {
      const len = this.buf.readUInt32BE(at);
      if (this.buf.length - at - 4 < len) break;
      let m: unknown;
      try {
        m = decodeBody(this.buf, at + 4, at + 4 + len);
      } catch {
        m = null;
      }
      at += 4 + len;
      if (m !== null && typeof m === 'object') fn(m as Record<string, unknown>);
    }
    this.buf = at === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(at);
  }
}
