// Shared-memory layout of a per-node ring: the one place both threads read it from.
//
// A ring is one SharedArrayBuffer: a HEADER_BYTES header, then `capacity` bytes of
// records (capacity is a power of two). Positions are free-running 32-bit byte
// counters paired with 32-bit frame counters, packed into one 64-bit word
// (frames << 32 | bytes) so the consumer always sees a byte position and the frame
// count that matches it, in a single atomic load.
//
// Single producer (the shard owning the node's connection) / single consumer (the
// main thread). The only cross-writers are drop-oldest and the rewind of an
// empty ring (ring-writer.ts): the producer may advance TAIL, always with
// compare-and-swap, never with a plain store.

/** BigUint64 slots (index into a BigUint64Array over the header). */
export const HEAD64 = 0; // producer: published write position
export const TAIL64 = 1; // consumer (CAS by producer for drop-oldest): read position

/** Int32 slots (index into an Int32Array over the header). */
export const CONSUMER_IDLE_I32 = 4; // 1 = consumer found the ring empty and wants a doorbell
export const PRODUCER_WAITING_I32 = 5; // 1 = producer is blocked on space and wants a notify
export const TAIL_SEQ_I32 = 6; // bumped by the consumer after every advance; the producer waits on it
export const FORMAT_I32 = 7; // what the consumer accepts: FORMAT_ANY or FORMAT_JSONL
/**
 * Consumer: the frame position (the free-running frame counter of packPos, as u32)
 * up to which the sink has taken the ring's frames: for a tracker, the write of
 * their batch to its input succeeded; for any other sink, it took them out. Only
 * moves forward (modulo 2^32). Producers wait on it (Atomics.waitAsync) to ack.
 */
export const DELIVERED_I32 = 16;
export const ACK_WAITING_I32 = 17; // 1 = a producer waits on DELIVERED_I32 and wants a notify
/**
 * Producer: the furthest offset into the record area ever written (bytes). Pages of a
 * SharedArrayBuffer become resident when first written and stay so: this is how much
 * of the ring costs memory (ring-writer.ts rewindIfEmpty keeps it low).
 */
export const HIGH_WATER_I32 = 18;

/** Float64 slots (index into a Float64Array over the header). Single writer each. */
export const LAST_WRITE_MS_F64 = 4; // producer: wall clock of the last record written (liveness)
export const LAST_TIMESTAMP_F64 = 5; // producer: frame timestamp of the last record written
export const LAST_SEQ_F64 = 6; // producer: last binary-protocol sequence number accepted (0 = none)
export const OVERFLOW_DROPS_F64 = 7; // producer: frames dropped by drop-oldest on this ring
export const ACKED_SEQ_F64 = 10; // producer: the highest seq acked to the node so far (resume-point.ts)

export const HEADER_BYTES = 128;

/** Ring consumer formats. */
export const FORMAT_ANY = 0; // JSON-line and packed records both accepted
export const FORMAT_JSONL = 1; // the consumer wants JSON lines only: producers encode packed frames

// Records. Little-endian, 8-byte aligned, never split across the end of the ring:
// when a record does not fit before the end, the producer writes a PAD record that
// fills the rest and starts the record at offset 0.
//
//   0  u32 record length (bytes, header + payload + padding, multiple of 8)
//   4  u32 payload length (PAD_MARK for a pad record)
//   8  f64 frame timestamp (ms since the epoch)
//  16  u8  kind (KIND_*)
//  17  u8  payload skip: 0-7 bytes between the header and the payload, chosen so
//          the producer's bulk copy has source and destination equally aligned
//          (copies into shared memory are several times slower otherwise)
//  18  u16 reserved
//  20  u32 detections in the frame
//  24  skip bytes, then payload
export const REC_LEN = 0;
export const REC_PAYLOAD_LEN = 4;
export const REC_TIMESTAMP = 8;
export const REC_KIND = 16;
export const REC_SKIP = 17;
export const REC_DETECTIONS = 20;
export const REC_HEADER_BYTES = 24;
const REC_ALIGN = 8;
export const PAD_MARK = 0xffffffff;

/** Payload: one retina JSON line, '\n'-terminated, node token removed. */
export const KIND_JSON_LINE = 1;
/**
 * Payload: n f64 delay, n f64 doppler, n f64 snr (n = detections), then the adsb
 * array as UTF-8 JSON (possibly empty = no adsb).
 */
export const KIND_PACKED = 2;
/**
 * Payload: none. The node asked for its tracker's state to be reset: a control
 * record that travels in order with the frames (the consumer sends the tracker
 * {"type":"RESET"} at its place). Its timestamp is the last one the producer
 * wrote, so LAST_TIMESTAMP_F64 is unchanged; detections 0.
 */
export const KIND_RESET = 3;

export const MIN_RING_BYTES = 1 << 16;
/**
 * A producer that finds its ring empty at this offset or beyond starts again at
 * offset 0, so a ring the consumer keeps up with only ever touches its first pages.
 */
export const REWIND_BYTES = 1 << 16;
export const MAX_RING_BYTES = 1 << 30;

export function recordSize(payloadLen: number, skip = 0): number {
  return (REC_HEADER_BYTES + skip + payloadLen + REC_ALIGN - 1) & ~(REC_ALIGN - 1);
}

export function packPos(frames: number, bytes: number): bigint {
  return (BigInt(frames >>> 0) << 32n) | BigInt(bytes >>> 0);
}
export function posBytes(p: bigint): number {
  return Number(p & 0xffffffffn);
}
export function posFrames(p: bigint): number {
  return Number(p >> 32n);
}
/** Whether frame position `a` is at or before `b` (u32 counters, modulo 2^32). */
export function framesAtOrBefore(a: number, b: number): boolean {
  return ((b - a) >>> 0) < 0x80000000;
}
