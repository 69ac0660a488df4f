// The binary node protocol: u32 big-endian length, then one msgpack map. Message
// types, field names and the codec live here, shared by the shard and by clients
// (tests, the load generator). See docs/protocol.md.
import { Packr, Unpackr } from 'msgpackr';

export const PROTOCOL_VERSION = 1;

/** Message types (the `t` field). */
export const T_HELLO = 'hello'; // node -> host: {t, v, node, token, caps?, group?, name?}
export const T_WELCOME = 'welcome'; // host -> node: {t, v, node, last_seq, max_frame, hb_ms}
export const T_FRAME = 'f'; // node -> host: {t, seq, ts, det, adsb?}
export const T_HEARTBEAT = 'hb'; // node -> host: {t}
export const T_RESET = 'reset'; // node -> host: {t, seq} reset the node's tracker, in order with the frames
export const T_ACK = 'ack'; // host -> node: {t, seq} every seq <= this is settled
export const T_ERROR = 'error'; // host -> node: {t, code, message, fatal, seq?}

/** Every message type, both directions (the hostile-input tests cover each one by construction). */
export const MESSAGE_TYPES = [T_HELLO, T_WELCOME, T_FRAME, T_HEARTBEAT, T_RESET, T_ACK, T_ERROR] as const;

/** Bytes per detection in a frame's `det` blob: delay, doppler, snr as f64. */
export const DET_STRIDE = 24;

/** Suggested heartbeat interval for idle nodes (host replies with an ack). */
export const HEARTBEAT_MS = 15000;

// Plain maps both ways so any msgpack library can speak the protocol.
const packr = new Packr({ useRecords: false, variableMapSize: true });
// int64AsType 'number': a 64-bit integer (Python's msgpack packs large ints so) decodes as a number, not a BigInt.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export function encodeMessage(msg: Record<string, unknown>): Buffer {
  const body = packr.pack(msg);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/** Decodes one message body (without the length prefix). Throws on bad msgpack. */
export function decodeBody(buf: Uint8Array, start: number, end: number): unknown {
  return unpackr.unpack(buf.subarray(start, end));
}

/**
 * Packs detections into a frame's `det` blob: all delays, then all dopplers, then
 * all SNRs, each a little-endian f64.
 */
export function packDetections(delay: ArrayLike<number>, doppler: ArrayLike<number>, snr: ArrayLike<number>): Buffer {
  const n = delay.length;
  if (doppler.length !== n || snr.length !== n) throw new RangeError('delay, doppler and snr must have the same length');
  const b = Buffer.allocUnsafe(n * DET_STRIDE);
  for (let i = 0; i < n; i++) {
    b.writeDoubleLE(delay[i]!, i * 8);
    b.writeDoubleLE(doppler[i]!, (n + i) * 8);
    b.writeDoubleLE(snr[i]!, (2 * n + i) * 8);
  }
  return b;
}

export interface FrameInput {
  seq: number;
  timestamp: number;
  delay: ArrayLike<number>;
  doppler: ArrayLike<number>;
  snr: ArrayLike<number>;
  adsb?: unknown[];
}

export function encodeFrame(f: FrameInput): Buffer {
  const m: Record<string, unknown> = { t: T_FRAME, seq: f.seq, ts: f.timestamp, det: packDetections(f.delay, f.doppler, f.snr) };
  if (f.adsb) m.adsb = f.adsb;
  return encodeMessage(m);
}

/** A reset of the node's tracker; `seq` shares the frames' sequence (acked, resumed and deduplicated alike). */
export function encodeReset(seq: number): Buffer {
  return encodeMessage({ t: T_RESET, seq });
}

export function encodeHello(node: string, token: string, extra: Record<string, unknown> = {}): Buffer {
  return encodeMessage({ t: T_HELLO, v: PROTOCOL_VERSION, node, token, caps: ['det-f64'], ...extra });
}
