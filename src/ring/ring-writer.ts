// Producer side of a per-node ring (runs in the shard that owns the node's
// connection). Records are staged at a private head and published in one atomic
// store per batch (flush), so the consumer sees whole batches.
import {
  HEAD64, TAIL64, CONSUMER_IDLE_I32, PRODUCER_WAITING_I32, TAIL_SEQ_I32, FORMAT_I32, FORMAT_JSONL,
  LAST_WRITE_MS_F64, LAST_TIMESTAMP_F64, LAST_SEQ_F64, OVERFLOW_DROPS_F64, HEADER_BYTES, REWIND_BYTES,
  DELIVERED_I32, ACK_WAITING_I32, ACKED_SEQ_F64, HIGH_WATER_I32,
  REC_LEN, REC_PAYLOAD_LEN, REC_TIMESTAMP, REC_KIND, REC_SKIP, REC_DETECTIONS, REC_HEADER_BYTES, PAD_MARK,
  recordSize, packPos, posBytes, posFrames,
} from './ring-layout.js';
import type { OverflowPolicy } from '../protocol/thread-messages.js';

export type { OverflowPolicy };

/** reserve(): the ring is full under the block policy (retry when the consumer frees space). */
export const RESERVE_FULL = -1;
/** reserve(): the record is larger than half the ring and can never be stored. */
export const RESERVE_TOO_LARGE = -2;

export class RingWriter {
  readonly sab: SharedArrayBuffer;
  readonly capacity: number;
  /** The largest record (header + payload) reserve() accepts. */
  readonly maxRecord: number;
  readonly bytes: Uint8Array;
  /** The same bytes as 32-bit words, for word-wise copies of aligned spans (record-codec.ts). */
  readonly words: Int32Array;
  private readonly mask: number;
  private readonly h64: BigUint64Array;
  private readonly h32: Int32Array;
  private readonly hf: Float64Array;
  private readonly dv: DataView;
  private headBytes: number;
  private frames: number;
  private dirty = false;
  /** The owning shard has this writer on its flush list. */
  listed = false;
  private readonly dropOldest: boolean;

  constructor(sab: SharedArrayBuffer, policy: OverflowPolicy) {
    this.sab = sab;
    this.capacity = sab.byteLength - HEADER_BYTES;
    this.mask = this.capacity - 1;
    this.maxRecord = this.capacity / 2;
    this.h64 = new BigUint64Array(sab, 0, HEADER_BYTES / 8);
    this.h32 = new Int32Array(sab, 0, HEADER_BYTES / 4);
    this.hf = new Float64Array(sab, 0, HEADER_BYTES / 8);
    this.bytes = new Uint8Array(sab, HEADER_BYTES, this.capacity);
    this.words = new Int32Array(sab, HEADER_BYTES, this.capacity >>> 2);
    this.dv = new DataView(sab, HEADER_BYTES, this.capacity);
    const head = Atomics.load(this.h64, HEAD64);
    this.headBytes = posBytes(head);
    this.frames = posFrames(head);
    this.cachedTail = posBytes(Atomics.load(this.h64, TAIL64));
    this.dropOldest = policy === 'drop-oldest';
    this.highWater = Atomics.load(this.h32, HIGH_WATER_I32);
  }

  /** The furthest offset written so far (ring-layout HIGH_WATER_I32); one compare per record. */
  private highWater: number;
  private touched(end: number): void {
    if (end <= this.highWater) return;
    this.highWater = end;
    Atomics.store(this.h32, HIGH_WATER_I32, end);
  }

  /** True when the consumer wants JSON lines only (packed frames must be encoded). */
  get wantsJson(): boolean {
    return Atomics.load(this.h32, FORMAT_I32) === FORMAT_JSONL;
  }
  get lastSeq(): number {
    return this.hf[LAST_SEQ_F64]!;
  }
  set lastSeq(v: number) {
    this.hf[LAST_SEQ_F64] = v;
  }
  get lastTimestamp(): number {
    return this.hf[LAST_TIMESTAMP_F64]!;
  }
  /** The highest seq acked to the node (the shard that owns the node writes it). */
  get ackedSeq(): number {
    return this.hf[ACKED_SEQ_F64]!;
  }
  set ackedSeq(v: number) {
    this.hf[ACKED_SEQ_F64] = v;
  }
  /** Frame position after the last committed record (published or still staged). */
  get headFrames(): number {
    return this.frames;
  }
  /** Frame position up to which the sink has taken the frames (ring-layout DELIVERED_I32). */
  get deliveredFrames(): number {
    return Atomics.load(this.h32, DELIVERED_I32) >>> 0;
  }

  /**
   * Resolves when the delivered position moves past `seen` (or after `timeoutMs`);
   * null when it already has. Never blocks the thread. The flag is stored before
   * the position is read again (see RingReader.publishDelivered).
   */
  waitForDelivered(seen: number, timeoutMs: number): Promise<unknown> | null {
    Atomics.store(this.h32, ACK_WAITING_I32, 1);
    if ((Atomics.load(this.h32, DELIVERED_I32) >>> 0) !== seen) return null;
    const r = Atomics.waitAsync(this.h32, DELIVERED_I32, seen | 0, timeoutMs);
    return r.async ? r.value : null;
  }

  /** Tail as last read: the tail only moves forward, so space computed from it is a lower bound. */
  private cachedTail = 0;

  private freeBytes(): number {
    this.cachedTail = posBytes(Atomics.load(this.h64, TAIL64));
    return this.capacity - ((this.headBytes - this.cachedTail) >>> 0);
  }

  /**
   * Reserves room for a record with `payloadLen` payload bytes and writes its
   * header. Returns the offset (into `bytes`) of the payload, RESERVE_FULL when the
   * ring is full under the block policy, or RESERVE_TOO_LARGE for a record over
   * capacity/2: such a record could need the whole ring after a pad, so waiting (or
   * dropping older records) would never make room. Under drop-oldest the oldest
   * records are dropped to make room (counted in `onDrop`). The caller fills the
   * payload, then calls commit(). `skip` (0-7) places the payload so that a bulk
   * copy into it can be aligned with its source.
   */
  reserve(payloadLen: number, timestamp: number, kind: number, detections: number,
    onDrop?: (frames: number) => void, skip = 0): number {
    const size = recordSize(payloadLen, skip);
    if (size > this.maxRecord) return RESERVE_TOO_LARGE;
    // First record of a batch past the rewind mark: once per batch, not per record.
    if (!this.dirty && (this.headBytes & this.mask) >= REWIND_BYTES) this.rewindIfEmpty();
    let off = this.headBytes & this.mask;
    const toEnd = this.capacity - off;
    const need = size <= toEnd ? size : toEnd + size;
    // Re-read the shared tail (a BigInt load) only when the cached one says no room.
    if (this.capacity - ((this.headBytes - this.cachedTail) >>> 0) < need && this.freeBytes() < need) {
      if (!this.dropOldest) {
        this.lastNeed = need;
        return RESERVE_FULL;
      }
      // drop-oldest only ever drops published records: publish, but leave `dirty`
      // so the caller's flush() still rings the consumer's doorbell.
      Atomics.store(this.h64, HEAD64, packPos(this.frames, this.headBytes));
      const dropped = this.dropUntil(need);
      if (onDrop && dropped > 0) onDrop(dropped);
    }
    if (size > toEnd) {
      // Pad to the end so no record is split; pads are not frames.
      this.dv.setUint32(off + REC_LEN, toEnd, true);
      this.dv.setUint32(off + REC_PAYLOAD_LEN, PAD_MARK, true);
      this.touched(off + REC_PAYLOAD_LEN + 4); // a pad writes its two length words only
      this.headBytes = (this.headBytes + toEnd) >>> 0;
      off = 0;
    }
    this.touched(off + size);
    const dv = this.dv;
    dv.setUint32(off + REC_LEN, size, true);
    dv.setUint32(off + REC_PAYLOAD_LEN, payloadLen, true);
    dv.setFloat64(off + REC_TIMESTAMP, timestamp, true);
    dv.setUint8(off + REC_KIND, kind);
    dv.setUint8(off + REC_SKIP, skip);
    dv.setUint16(off + REC_SKIP + 1, 0, true);
    dv.setUint32(off + REC_DETECTIONS, detections, true);
    this.pendingSize = size;
    this.pendingTs = timestamp;
    return off + REC_HEADER_BYTES + skip;
  }
  private pendingSize = 0;
  private pendingTs = 0;
  private lastNeed = 0;

  /** Makes the record from the last reserve() part of the staged batch. */
  commit(): void {
    this.headBytes = (this.headBytes + this.pendingSize) >>> 0;
    this.frames = (this.frames + 1) >>> 0;
    this.hf[LAST_TIMESTAMP_F64] = this.pendingTs;
    this.dirty = true;
  }

  /**
   * Publishes staged records. Returns true when the consumer was idle and must be
   * woken (the caller sends one doorbell message per batch of rings).
   */
  flush(): boolean {
    if (!this.dirty) return false;
    this.dirty = false;
    this.hf[LAST_WRITE_MS_F64] = Date.now();
    Atomics.store(this.h64, HEAD64, packPos(this.frames, this.headBytes));
    return Atomics.load(this.h32, CONSUMER_IDLE_I32) === 1 && Atomics.exchange(this.h32, CONSUMER_IDLE_I32, 0) === 1;
  }

  /**
   * When the consumer has taken everything, starts the next record at the
   * beginning of the ring instead of further on. A ring's pages become resident
   * when first written and stay so; without this, a node that sends a few frames
   * a second would walk through (and commit) the whole ring within minutes, and
   * every quiet node would cost ring.size_bytes. With it, a ring that the sink
   * keeps up with stays within its first REWIND_BYTES plus one record; only a
   * backlog reaches further. The skipped space becomes a published pad record,
   * and TAIL is moved past it with compare-and-swap: the consumer may have read
   * the pad itself meanwhile, which moves TAIL to the same place.
   */
  private rewindIfEmpty(): void {
    const tail = Atomics.load(this.h64, TAIL64);
    const tb = posBytes(tail);
    this.cachedTail = tb;
    if (tb !== this.headBytes) return;
    const off = this.headBytes & this.mask;
    const toEnd = this.capacity - off;
    this.dv.setUint32(off + REC_LEN, toEnd, true);
    this.dv.setUint32(off + REC_PAYLOAD_LEN, PAD_MARK, true);
    this.touched(off + REC_PAYLOAD_LEN + 4); // a pad writes its two length words only
    this.headBytes = (this.headBytes + toEnd) >>> 0;
    const next = packPos(this.frames, this.headBytes);
    Atomics.store(this.h64, HEAD64, next);
    Atomics.compareExchange(this.h64, TAIL64, tail, next);
    this.cachedTail = this.headBytes;
  }

  /** Drop-oldest: advance TAIL (CAS, racing the consumer) until `need` bytes are free. */
  private dropUntil(need: number): number {
    let dropped = 0;
    for (;;) {
      const tail = Atomics.load(this.h64, TAIL64);
      const tb = posBytes(tail);
      if (this.capacity - ((this.headBytes - tb) >>> 0) >= need) return dropped;
      const off = tb & this.mask;
      const len = this.dv.getUint32(off + 0, true);
      const isPad = this.dv.getUint32(off + REC_PAYLOAD_LEN, true) === PAD_MARK;
      const tf = posFrames(tail);
      const next = packPos(isPad ? tf : tf + 1, tb + len);
      if (Atomics.compareExchange(this.h64, TAIL64, tail, next) === tail) {
        if (!isPad) {
          dropped++;
          this.hf[OVERFLOW_DROPS_F64] = this.hf[OVERFLOW_DROPS_F64]! + 1;
        }
      }
    }
  }

  /**
   * Resolves when the consumer has advanced the tail (or after `timeoutMs`).
   * Never blocks the thread: shard workers own sockets and must keep serving them.
   */
  waitForSpace(timeoutMs: number): Promise<void> {
    const seq = Atomics.load(this.h32, TAIL_SEQ_I32);
    Atomics.store(this.h32, PRODUCER_WAITING_I32, 1);
    // The consumer bumps TAIL_SEQ before it looks at PRODUCER_WAITING: space freed
    // before our load is seen here, space freed after it changes the sequence.
    if (this.freeBytes() >= this.lastNeed) return Promise.resolve();
    const r = Atomics.waitAsync(this.h32, TAIL_SEQ_I32, seq, timeoutMs);
    if (!r.async) return Promise.resolve();
    // A pending waitAsync does not keep the event loop alive in Node 20: race it
    // against a real timer so the timeout always fires.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); });
    return Promise.race([r.value, timeout]).then(() => clearTimeout(timer));
  }
}
