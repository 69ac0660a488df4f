// Acks that mean delivered: the seqs a shard has settled for a node but not yet
// acked, each with the ring's frame position it must wait for. The sink publishes
// how far it has taken the ring's frames (ring-layout DELIVERED_I32); a seq may be
// acked once the position after its frame is at or before that. Pure: no I/O.
//
// Entries are added in settle order, so positions and seqs never decrease. A
// rejected or duplicate seq adds nothing to the ring and settles at the current
// position. The window is bounded: when it is full the newest entry takes the
// next one's (higher) position and seq, which only delays the acks it covered.
import { framesAtOrBefore } from '../ring/ring-layout.js';

/** Entries per node: one is added per batch, so this covers many batches behind a slow sink. */
export const ACK_WINDOW_ENTRIES = 64;

export class AckWindow {
  private readonly pos: number[] = [];
  private readonly seq: number[] = [];
  private head = 0;
  /** The highest seq acked to the node so far. */
  acked: number;
  /** The highest seq settled (added) so far. */
  settled: number;

  constructor(acked: number, private readonly cap = ACK_WINDOW_ENTRIES) {
    this.acked = acked;
    this.settled = acked;
  }

  get size(): number {
    return this.pos.length - this.head;
  }

  /** Seq `seq` (and everything before it) is settled once frame position `pos` is delivered. */
  settle(pos: number, seq: number): void {
    if (seq <= this.settled) return;
    this.settled = seq;
    const n = this.pos.length;
    if (n > this.head && (this.pos[n - 1] === pos || this.size >= this.cap)) {
      this.pos[n - 1] = pos;
      this.seq[n - 1] = seq;
      return;
    }
    if (this.head > 0 && this.head * 2 >= n) {
      this.pos.splice(0, this.head);
      this.seq.splice(0, this.head);
      this.head = 0;
    }
    this.pos.push(pos >>> 0);
    this.seq.push(seq);
  }

  /**
   * Takes every entry at or before `delivered` and returns the new highest acked
   * seq, or -1 when the ack did not move.
   */
  advance(delivered: number): number {
    let best = -1;
    while (this.head < this.pos.length && framesAtOrBefore(this.pos[this.head]!, delivered)) {
      best = this.seq[this.head]!;
      this.head++;
    }
    if (this.head === this.pos.length) {
      this.pos.length = 0;
      this.seq.length = 0;
      this.head = 0;
    }
    if (best <= this.acked) return -1;
    this.acked = best;
    return best;
  }
}
