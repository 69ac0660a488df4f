// Moves one node's ring into one tracker process: batches out of the ring, one
// buffer of retina JSON lines per batch, one write per batch, and back-pressure
// all the way back: while the tracker's input is full the feeder stops reading the
// ring, so the ring fills and (under the ring's `block` policy) the node's socket
// is paused by its shard.
//
// Usage (the tracker supervisor): call pump() from the ring sink's onData(node)
// and after a tracker becomes connected (start() resolved). The feeder resumes by
// itself after back-pressure and after yielding; it re-arms the ring's doorbell
// only when it has emptied the ring.
//
// Ordering: the retina tracker expects frames in timestamp order, so a frame is fed
// only when its timestamp is strictly after the last one fed to the current
// tracker process (equal: `duplicate`, lower: `outOfOrder`; both skipped). A new
// tracker process has seen nothing: attach() (or resetOrdering()) starts over.
// Recovery: one frame stamped far in the future would otherwise make every later
// frame out of order for as long as the process lives. After RESYNC_AFTER
// consecutive out-of-order frames, the next out-of-order frame is preceded by a
// {"type":"RESET"} line (the tracker drops its state) and becomes the new base
// (counted in `resets`).
// A node's own RESET (a KIND_RESET record) is passed on at its place and also
// starts the ordering afresh (counted in `nodeResets`, and as a frame fed).
//
// Accounting. Every frame taken out of the ring ends up in exactly one of
//   framesFed + inFlight + lostInFlight + duplicate + outOfOrder + badRecords
// (`taken` is their sum):
// - framesFed: its batch's bytes were handed to the OS (the write callback
//   succeeded) for the tracker's input.
// - inFlight: its batch was accepted by write() and is still queued in this
//   process (e.g. behind a tracker that stopped reading).
// - lostInFlight: taken from the ring but never handed to the OS, because the
//   tracker died, its input closed or it was stopped with the batch still queued
//   here (the write callback failed), or because write() threw.
// Bytes that reached the OS but were still unread in the kernel's socket buffer when
// the tracker died are counted as fed: nothing on this side can know about them.
// The feeder never reads the ring while no tracker input is open (`detached`), so a
// tracker that is down or restarting leaves the frames in the ring, not lost.
//
// Delivery. The feeder publishes in the ring header how far (in ring frame
// positions) the tracker's input has taken the frames: a batch's end once its write
// callback succeeded, a batch of skipped frames once the writes before it did. The
// shard acks a binary node's frames up to there (tcp_server.ack: delivered). A
// failed write publishes nothing; its frames (lostInFlight) are covered by the next
// success.
import type { RingReader, RingBatch } from '../ring/ring-reader.js';
import {
  KIND_JSON_LINE, KIND_PACKED, KIND_RESET, PAD_MARK, REC_DETECTIONS, REC_HEADER_BYTES, REC_KIND, REC_LEN, REC_PAYLOAD_LEN, REC_SKIP, REC_TIMESTAMP,
} from '../ring/ring-layout.js';
import { packedRecordToJson } from '../ring/record-codec.js';
import type { TrackerProcess } from './tracker-process.js';

/**
 * What pump() left behind:
 * idle: the ring is empty and its doorbell armed;
 * blocked: waiting for the tracker's input to drain (resumes by itself);
 * yielded: stopped after maxBatchesPerPump batches to let the event loop run (resumes by itself);
 * detached: no open tracker input: the ring is left as is (call pump() after attach() or a reconnect);
 * closed: close() was called.
 */
export type FeederState = 'idle' | 'blocked' | 'yielded' | 'detached' | 'closed';

/** The part of TrackerProcess the feeder uses (a test double may stand in). */
export type FeederTarget = Pick<TrackerProcess, 'writable' | 'write' | 'whenWritable'>;

export interface RingFeederOptions {
  reader: RingReader;
  /** The tracker to feed; may be attached later. */
  tracker?: FeederTarget;
  /** Batches per pump() before yielding to the event loop (setImmediate). Default 16. */
  maxBatchesPerPump?: number;
  now?: () => number;
  /** Sees each batch just before it is written to the tracker (EngineProbe.onTrackerWrite). */
  onWrite?: (buf: Buffer) => void;
}

const NL = 0x0a;
const NL_BUF = Buffer.from('\n');
const RESET_LINE = Buffer.from('{"type":"RESET"}\n');

/**
 * Consecutive out-of-order frames after which the feeder resets the tracker and
 * follows the node's clock again. A node's genuine reordering is a frame or two;
 * twenty in a row (seconds of a node's frames) means the last frame fed was bogus.
 */
export const RESYNC_AFTER = 20;

export class RingFeeder {
  readonly reader: RingReader;
  private tracker: FeederTarget | null;
  private readonly maxBatches: number;
  private readonly now: () => number;
  private _state: FeederState = 'detached';
  /** Bumped by attach()/detach()/close(): a stale drain or yield must not resume. */
  private generation = 0;
  private waiting = false;
  private yieldPending = false;
  private pumping = false;
  private lastTs = -Infinity;
  /** Out-of-order frames in a row since the last frame fed. */
  private behind = 0;
  /** Batches written whose callback has not run yet. */
  private writesOut = 0;
  /** End of a batch with nothing to write, taken while writes were outstanding. */
  private skippedEnd: number | null = null;

  // ---- counters ----
  /** Frames whose bytes reached the tracker's input (see the accounting rule above). */
  framesFed = 0;
  /** Frames accepted by write() and not yet handed to the OS. */
  inFlight = 0;
  /** Frames taken from the ring that never reached the tracker's input. */
  lostInFlight = 0;
  /** Frames skipped: same timestamp as the last one fed. */
  duplicate = 0;
  /** Frames skipped: timestamp before the last one fed. */
  outOfOrder = 0;
  /** Times the tracker was sent a RESET to follow the node's clock again (RESYNC_AFTER). */
  resets = 0;
  /** RESETs the node sent, passed on to the tracker (each also counted as a frame in the accounting). */
  nodeResets = 0;
  /** Records of an unknown kind, empty JSON-line records, packed records too short for their detections (skipped). */
  badRecords = 0;
  /** Batches written (one tracker write each). */
  batches = 0;
  /** Bytes written to the tracker. */
  bytes = 0;
  /** Times the feeder stopped reading the ring because the tracker's input was full. */
  stalls = 0;
  /** Wall clock (now()) of the last write of frames to the tracker; 0 = never. */
  lastFrameAt = 0;

  private readonly onWrite: ((buf: Buffer) => void) | undefined;

  constructor(opts: RingFeederOptions) {
    this.reader = opts.reader;
    this.tracker = opts.tracker ?? null;
    this.maxBatches = Math.max(1, opts.maxBatchesPerPump ?? 16);
    this.now = opts.now ?? Date.now;
    this.onWrite = opts.onWrite;
  }

  get state(): FeederState {
    return this._state;
  }
  /** now() when the tracker's input last filled up and has not drained since; null when it is not blocked. */
  get blockedSince(): number | null {
    return this._blockedSince;
  }
  private _blockedSince: number | null = null;
  /** Frames taken out of the ring by this feeder. */
  get taken(): number {
    return this.framesFed + this.inFlight + this.lostInFlight + this.duplicate + this.outOfOrder + this.badRecords;
  }
  /** Timestamp of the last frame fed to the current tracker (-Infinity: none yet). */
  get lastTimestamp(): number {
    return this.lastTs;
  }

  /** The next frame fed may have any timestamp (a fresh tracker process has seen none). */
  resetOrdering(): void {
    this.lastTs = -Infinity;
    this.behind = 0;
  }

  /** Feeds a (new) tracker process from now on; resets the ordering. Call pump() once it is connected. */
  attach(tracker: FeederTarget): void {
    this.generation++;
    this.tracker = tracker;
    this.waiting = false;
    this.yieldPending = false;
    this._blockedSince = null;
    this.resetOrdering();
    if (this._state !== 'closed') this._state = 'detached';
  }

  /** Stops feeding (the ring is left as is). */
  detach(): void {
    this.generation++;
    this.tracker = null;
    this.waiting = false;
    this.yieldPending = false;
    this._blockedSince = null;
    if (this._state !== 'closed') this._state = 'detached';
  }

  close(): void {
    this.detach();
    this._state = 'closed';
  }

  /**
   * Moves batches from the ring to the tracker until the ring is empty (then arms
   * the doorbell), the tracker's input is full, or maxBatchesPerPump batches went.
   * Never throws; cheap to call when blocked or detached.
   */
  pump(): FeederState {
    if (this._state === 'closed') return 'closed';
    if (this.waiting || this.yieldPending || this.pumping) return this._state;
    this.pumping = true;
    try {
      this._state = this.run();
    } finally {
      this.pumping = false;
    }
    return this._state;
  }

  private run(): FeederState {
    const t = this.tracker;
    const r = this.reader;
    for (let n = 0; ; ) {
      if (!t || !t.writable) return 'detached';
      const batch = r.take();
      if (!batch) {
        if (r.arm()) return 'idle';
        continue;
      }
      const { buf, frames } = this.render(batch);
      const end = batch.end;
      if (frames === 0) {
        // Nothing to write (every frame skipped): settled once the writes before it are.
        if (this.writesOut === 0) r.publishDelivered(end);
        else this.skippedEnd = end;
      } else {
        this.inFlight += frames;
        let ok: boolean;
        this.onWrite?.(buf);
        this.writesOut++;
        try {
          ok = t.write(buf, (err) => {
            this.inFlight -= frames;
            this.writesOut--;
            if (err) {
              this.lostInFlight += frames;
              return;
            }
            this.framesFed += frames;
            // The bytes are the OS's: a crash of this process no longer loses them.
            r.publishDelivered(end);
            if (this.writesOut === 0 && this.skippedEnd !== null) {
              r.publishDelivered(this.skippedEnd);
              this.skippedEnd = null;
            }
          }, frames);
        } catch {
          // Not writable after all (checked above; only a misbehaving target gets here).
          this.writesOut--;
          this.inFlight -= frames;
          this.lostInFlight += frames;
          return 'detached';
        }
        this.batches++;
        this.bytes += buf.length;
        this.lastFrameAt = this.now();
        if (!ok) {
          this.stalls++;
          this.waitWritable(t);
          return 'blocked';
        }
      }
      if (++n >= this.maxBatches) {
        this.yieldPending = true;
        const gen = this.generation;
        setImmediate(() => {
          if (gen !== this.generation) return;
          this.yieldPending = false;
          this.pump();
        });
        return 'yielded';
      }
    }
  }

  private waitWritable(t: FeederTarget): void {
    this.waiting = true;
    this._blockedSince = this.now();
    const gen = this.generation;
    t.whenWritable().then(() => {
      if (gen !== this.generation) return;
      this.waiting = false;
      this._blockedSince = null;
      this.pump();
    }, () => {
      if (gen !== this.generation) return;
      this.waiting = false;
      this.pump();
    });
  }

  /**
   * One buffer of retina lines for the in-order frames of a batch. The batch is
   * this feeder's private copy, so JSON records are compacted in place (each record
   * gives up its header: the lines never overtake the bytes still to be read); a
   * packed record is rendered to JSON, and from then on the lines are gathered and
   * concatenated. No per-record objects on the common path.
   */
  private render(batch: RingBatch): { buf: Buffer; frames: number } {
    const b = batch.buffer;
    let parts: Buffer[] | null = null;
    let len = 0;
    let w = 0;
    let frames = 0;
    for (let p = 0; p < b.length;) {
      const rec = p;
      p += b.readUInt32LE(rec + REC_LEN);
      const plen = b.readUInt32LE(rec + REC_PAYLOAD_LEN);
      if (plen === PAD_MARK) continue;
      const ts = b.readDoubleLE(rec + REC_TIMESTAMP);
      if (b[rec + REC_KIND] === KIND_RESET) {
        // The node's own reset: passed on at its place; the tracker starts afresh,
        // so the ordering does too. Delivered like a frame.
        if (parts === null) {
          parts = w > 0 ? [b.subarray(0, w)] : [];
          len = w;
        }
        parts.push(RESET_LINE);
        len += RESET_LINE.length;
        this.nodeResets++;
        this.resetOrdering();
        frames++;
        continue;
      }
      let reset = false;
      if (!(ts > this.lastTs)) {
        if (ts === this.lastTs) {
          this.duplicate++;
          continue;
        }
        if (this.behind < RESYNC_AFTER) {
          this.behind++;
          this.outOfOrder++;
          continue;
        }
        reset = true;
      }
      const kind = b[rec + REC_KIND];
      const ps = rec + REC_HEADER_BYTES + b[rec + REC_SKIP]!;
      if (reset && (kind === KIND_JSON_LINE || kind === KIND_PACKED)) {
        // The RESET line may be longer than the record header it would replace in
        // place: gather from here on.
        if (parts === null) {
          parts = w > 0 ? [b.subarray(0, w)] : [];
          len = w;
        }
        parts.push(RESET_LINE);
        len += RESET_LINE.length;
        this.resets++;
      }
      if (kind === KIND_JSON_LINE) {
        if (plen === 0) {
          this.badRecords++;
          continue;
        }
        if (parts === null) {
          b.copyWithin(w, ps, ps + plen);
          w += plen;
          // The layout promises '\n'-terminated lines; never glue two frames together.
          if (b[w - 1] !== NL) b[w++] = NL;
        } else {
          parts.push(b.subarray(ps, ps + plen));
          len += plen;
          if (b[ps + plen - 1] !== NL) {
            parts.push(NL_BUF);
            len++;
          }
        }
      } else if (kind === KIND_PACKED) {
        const n = b.readUInt32LE(rec + REC_DETECTIONS);
        if (plen < n * 24) {
          this.badRecords++;
          continue;
        }
        const line = Buffer.from(packedRecordToJson(b.subarray(ps, ps + plen), n, ts), 'utf8');
        if (parts === null) {
          parts = w > 0 ? [b.subarray(0, w)] : [];
          len = w;
        }
        parts.push(line);
        len += line.length;
      } else {
        this.badRecords++;
        continue;
      }
      this.lastTs = ts;
      this.behind = 0;
      frames++;
    }
    if (parts === null) return { buf: b.subarray(0, w), frames };
    return { buf: parts.length === 1 ? parts[0]! : Buffer.concat(parts, len), frames };
  }
}
