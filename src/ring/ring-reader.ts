// Consumer side of a per-node ring (main thread). Moves records out in bulk: one
// copy per batch, no per-frame work unless the caller iterates records.
import {
  HEAD64, TAIL64, CONSUMER_IDLE_I32, PRODUCER_WAITING_I32, TAIL_SEQ_I32, FORMAT_I32, DELIVERED_I32, ACK_WAITING_I32,
  LAST_WRITE_MS_F64, LAST_TIMESTAMP_F64, LAST_SEQ_F64, OVERFLOW_DROPS_F64, HEADER_BYTES,
  REC_LEN, REC_PAYLOAD_LEN, REC_TIMESTAMP, REC_KIND, REC_SKIP, REC_DETECTIONS, REC_HEADER_BYTES, PAD_MARK,
  HIGH_WATER_I32, KIND_JSON_LINE, KIND_PACKED, MIN_RING_BYTES, MAX_RING_BYTES, packPos, posBytes, posFrames, framesAtOrBefore,
} from './ring-layout.js';

export interface RingRecord {
  kind: number;
  timestamp: number;
  detections: number;
  /** View of the payload inside the batch buffer. */
  payload: Buffer;
}

/** A batch of records copied out of a ring. */
export class RingBatch {
  /** `end`: the ring's frame position just after the batch's last frame (see DELIVERED_I32). */
  constructor(readonly buffer: Buffer, readonly frames: number, readonly end = 0) {}

  *records(): IterableIterator<RingRecord> {
    const b = this.buffer;
    let p = 0;
    while (p < b.length) {
      const len = b.readUInt32LE(p + REC_LEN);
      const plen = b.readUInt32LE(p + REC_PAYLOAD_LEN);
      if (plen !== PAD_MARK) {
        yield {
          kind: b[p + REC_KIND]!,
          timestamp: b.readDoubleLE(p + REC_TIMESTAMP),
          detections: b.readUInt32LE(p + REC_DETECTIONS),
          payload: b.subarray(p + REC_HEADER_BYTES + b[p + REC_SKIP]!, p + REC_HEADER_BYTES + b[p + REC_SKIP]! + plen),
        };
      }
      p += len;
    }
  }
}

export function createRingBuffer(capacity: number): SharedArrayBuffer {
  if (!Number.isInteger(capacity) || capacity < MIN_RING_BYTES || capacity > MAX_RING_BYTES || (capacity & (capacity - 1)) !== 0) {
    throw new RangeError(`ring capacity must be a power of two between ${MIN_RING_BYTES} and ${MAX_RING_BYTES}`);
  }
  return new SharedArrayBuffer(HEADER_BYTES + capacity);
}

export class RingReader {
  /** The ring's memory; replaced by renew() (the reader object, held by the sink, stays). */
  sab: SharedArrayBuffer;
  readonly capacity: number;
  private readonly mask: number;
  private h64: BigUint64Array;
  private h32: Int32Array;
  private hf: Float64Array;
  private data: Buffer;
  /** Frames this reader has taken out (read or discarded). */
  consumedFrames = 0;

  constructor(sab: SharedArrayBuffer) {
    this.sab = sab;
    this.capacity = sab.byteLength - HEADER_BYTES;
    this.mask = this.capacity - 1;
    this.h64 = new BigUint64Array(sab, 0, HEADER_BYTES / 8);
    this.h32 = new Int32Array(sab, 0, HEADER_BYTES / 4);
    this.hf = new Float64Array(sab, 0, HEADER_BYTES / 8);
    this.data = Buffer.from(sab, HEADER_BYTES, this.capacity);
  }

  /**
   * Moves the ring to fresh memory of the same capacity, so the pages an earlier
   * backlog made resident go back to the system once the old buffer is collected.
   * Only with no producer holding the ring and nothing in it (the caller checks
   * both): the header (positions, resume point, acks, delivered, counters) is
   * copied, the byte position is moved on to the next offset 0 (byte positions only
   * count modulo the capacity; frame positions, which acks and the sink use, stay).
   * Returns the new buffer, for the next producer.
   */
  renew(): SharedArrayBuffer {
    if (this.usedBytes !== 0) throw new Error('renew() of a ring that holds frames');
    const next = new SharedArrayBuffer(this.sab.byteLength);
    new Uint8Array(next, 0, HEADER_BYTES).set(new Uint8Array(this.sab, 0, HEADER_BYTES));
    const h64 = new BigUint64Array(next, 0, HEADER_BYTES / 8);
    const head = Atomics.load(h64, HEAD64);
    const b = posBytes(head);
    const pos = packPos(posFrames(head), (b & this.mask) === 0 ? b : (b - (b & this.mask) + this.capacity) >>> 0);
    Atomics.store(h64, HEAD64, pos);
    Atomics.store(h64, TAIL64, pos);
    const h32 = new Int32Array(next, 0, HEADER_BYTES / 4);
    Atomics.store(h32, HIGH_WATER_I32, 0);
    Atomics.store(h32, PRODUCER_WAITING_I32, 0);
    Atomics.store(h32, ACK_WAITING_I32, 0);
    this.sab = next;
    this.h64 = h64;
    this.h32 = h32;
    this.hf = new Float64Array(next, 0, HEADER_BYTES / 8);
    this.data = Buffer.from(next, HEADER_BYTES, this.capacity);
    return next;
  }

  set format(f: number) {
    Atomics.store(this.h32, FORMAT_I32, f);
  }
  /** Frames currently in the ring. */
  get frames(): number {
    return (posFrames(Atomics.load(this.h64, HEAD64)) - posFrames(Atomics.load(this.h64, TAIL64))) >>> 0;
  }
  /** The frame position after the last published frame. */
  get headFrames(): number {
    return posFrames(Atomics.load(this.h64, HEAD64));
  }
  /** Bytes currently in the ring (records incl. headers and pads). */
  get usedBytes(): number {
    return (posBytes(Atomics.load(this.h64, HEAD64)) - posBytes(Atomics.load(this.h64, TAIL64))) >>> 0;
  }
  get lastWriteMs(): number { return this.hf[LAST_WRITE_MS_F64]!; }
  get lastTimestamp(): number { return this.hf[LAST_TIMESTAMP_F64]!; }
  get lastSeq(): number { return this.hf[LAST_SEQ_F64]!; }
  /** Restores a binary node's resume point into a new ring (before any producer has it). */
  set lastSeq(v: number) { this.hf[LAST_SEQ_F64] = v; }
  get overflowDrops(): number { return this.hf[OVERFLOW_DROPS_F64]!; }
  /** Bytes of the record area ever written (HIGH_WATER_I32): the part of the ring that is resident memory. */
  get touchedBytes(): number { return Atomics.load(this.h32, HIGH_WATER_I32); }

  /**
   * Copies every published record out, frees the space and counts the frames as
   * delivered (the sink has them). Returns null when empty.
   */
  read(): RingBatch | null {
    const b = this.take();
    if (b) this.publishDelivered(b.end);
    return b;
  }

  /**
   * Like read(), but the frames count as delivered only when the caller says so
   * (publishDelivered(batch.end)): a sink that hands them on asynchronously. Safe
   * against a concurrent drop-oldest producer: only records that were still ours
   * when the tail was swapped are returned.
   */
  take(): RingBatch | null {
    for (;;) {
      const tail = Atomics.load(this.h64, TAIL64);
      const head = Atomics.load(this.h64, HEAD64);
      const tb = posBytes(tail);
      const n = (posBytes(head) - tb) >>> 0;
      if (n === 0) return null;
      // Under drop-oldest the producer may have dropped and refilled between the
      // two loads: never copy more than a ring's worth, take a fresh pair.
      if (n > this.capacity) continue;
      const out = Buffer.allocUnsafe(n);
      const off = tb & this.mask;
      const first = Math.min(n, this.capacity - off);
      this.data.copy(out, 0, off, off + first);
      if (first < n) this.data.copy(out, first, 0, n - first);
      // The copy is valid for every record the producer had not dropped when we
      // swap the tail; retry from a newer tail if it moved under us.
      let cur = tail;
      for (;;) {
        const prev = Atomics.compareExchange(this.h64, TAIL64, cur, head);
        if (prev === cur) {
          const skip = (posBytes(cur) - tb) >>> 0;
          const frames = (posFrames(head) - posFrames(cur)) >>> 0;
          this.advanced(frames);
          return new RingBatch(skip === 0 ? out : out.subarray(skip), frames, posFrames(head));
        }
        cur = prev;
        if (((posBytes(cur) - tb) >>> 0) >= n) break; // everything we copied was dropped
      }
    }
  }

  /**
   * Frees every published record without copying (the discard sink). The frames
   * count as delivered (the sink took them) unless `delivered` is false (frames
   * thrown away because the host stops: not delivered anywhere).
   */
  discard(delivered = true): number {
    for (;;) {
      const tail = Atomics.load(this.h64, TAIL64);
      const head = Atomics.load(this.h64, HEAD64);
      if (posBytes(head) === posBytes(tail)) return 0;
      if (Atomics.compareExchange(this.h64, TAIL64, tail, head) === tail) {
        const frames = (posFrames(head) - posFrames(tail)) >>> 0;
        this.advanced(frames);
        if (delivered) this.publishDelivered(posFrames(head));
        return frames;
      }
    }
  }

  /** The frame position up to which frames count as delivered. */
  get deliveredFrames(): number {
    return Atomics.load(this.h32, DELIVERED_I32) >>> 0;
  }

  /**
   * Frames up to frame position `end` are delivered (only ever forward). Wakes a
   * producer waiting to ack them: it stores ACK_WAITING before it reads the
   * position, and this reads ACK_WAITING after storing it, so one side sees the other.
   */
  publishDelivered(end: number): void {
    const prev = Atomics.load(this.h32, DELIVERED_I32) >>> 0;
    if (prev === end >>> 0 || framesAtOrBefore(end, prev)) return;
    Atomics.store(this.h32, DELIVERED_I32, end | 0);
    if (Atomics.load(this.h32, ACK_WAITING_I32) === 1) {
      Atomics.store(this.h32, ACK_WAITING_I32, 0);
      Atomics.notify(this.h32, DELIVERED_I32);
    }
  }

  private advanced(frames: number): void {
    this.consumedFrames += frames;
    Atomics.add(this.h32, TAIL_SEQ_I32, 1);
    if (Atomics.load(this.h32, PRODUCER_WAITING_I32) === 1) {
      Atomics.store(this.h32, PRODUCER_WAITING_I32, 0);
      Atomics.notify(this.h32, TAIL_SEQ_I32);
    }
  }

  /**
   * Marks the consumer idle so the producer rings the doorbell on its next flush.
   * Returns false (and stays busy) when data arrived meanwhile: read again.
   */
  arm(): boolean {
    Atomics.store(this.h32, CONSUMER_IDLE_I32, 1);
    if (this.usedBytes !== 0) {
      Atomics.store(this.h32, CONSUMER_IDLE_I32, 0);
      return false;
    }
    return true;
  }
}

export { KIND_JSON_LINE, KIND_PACKED };
