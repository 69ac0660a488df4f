// Ring renewal: a ring that a backlog once filled stays resident (the pages of a
// SharedArrayBuffer are never given back), so a node that had a burst or a slow
// tracker would cost ring.size_bytes for ever. Once such a ring has been empty, with
// every frame delivered, for ring.renew_after_ms, it is moved to a fresh buffer
// (RingReader.renew) at a moment no thread writes it:
//   - no connection owns the node: at once, on the main thread (the ring's consumer);
//   - a connection owns it: the connection is detached at a frame boundary and attached
//     again to the same shard (ConnectionHandoff.pause, the placement moves' hand-over);
//     the swap happens while the detached state is on the main thread, and the shard
//     makes its new writer over the new buffer. Reads that arrive meanwhile are held
//     and passed on in order, as in a move.
// Frame positions, resume point, acks and counters travel in the header, so no frame
// is lost, repeated or reordered and the books do not change.
import type { NodeEntry, NodeTable } from '../nodes/node-table.js';
import type { ConnState } from '../protocol/thread-messages.js';
import { REWIND_BYTES } from '../ring/ring-layout.js';

/**
 * Rings that have touched at most this much are left alone: a ring its sink keeps up
 * with stays within REWIND_BYTES plus one record, and renewing it would gain nothing.
 */
export const RENEW_ABOVE_BYTES = 2 * REWIND_BYTES;

export interface RenewalTarget {
  /** Detach and re-attach the connection on its shard (false: not now). */
  pause(conn: number): boolean;
}

export class RingRenewal {
  /** Rings moved to fresh memory (radar_ingest_ring_renewals_total). */
  renewed = 0;
  /** Since when each candidate ring has been seen empty and delivered. */
  private readonly emptySince = new WeakMap<NodeEntry, number>();

  constructor(
    private readonly nodes: NodeTable,
    private readonly handoff: RenewalTarget,
    private readonly afterMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** A ring worth renewing right now: touched beyond the mark, nothing in it, everything delivered. */
  private idle(n: NodeEntry): boolean {
    const r = n.reader;
    return !n.released && !n.local && r.touchedBytes > RENEW_ABOVE_BYTES && r.usedBytes === 0 && r.deliveredFrames === r.headFrames;
  }

  /** Called on a timer: renews idle unowned rings, pauses the connections of idle owned ones. */
  tick(): void {
    if (this.afterMs <= 0) return;
    const now = this.now();
    for (const n of this.nodes.byRing) {
      if (!this.idle(n)) {
        this.emptySince.delete(n);
        continue;
      }
      const since = this.emptySince.get(n);
      if (since === undefined) {
        this.emptySince.set(n, now);
        continue;
      }
      if (now - since < this.afterMs) continue;
      if (n.owner === null) {
        if (this.nodes.claiming(n.id)) continue;
        this.renew(n);
      } else {
        this.handoff.pause(n.owner.conn);
      }
    }
  }

  /** A detached connection's rings: each idle one that waited long enough is renewed in the state. */
  onDetached(state: ConnState): void {
    if (this.afterMs <= 0) return;
    const now = this.now();
    for (const slot of state.slots) {
      if (slot.ring === null) continue;
      const n = this.nodes.get(slot.node);
      // A buffer that came back from a worker is another object over the same memory: match by ring id.
      if (!n || n.ringId !== slot.ringId || !this.idle(n)) continue;
      const since = this.emptySince.get(n);
      if (since === undefined || now - since < this.afterMs) continue;
      slot.ring = this.renew(n);
    }
  }

  private renew(n: NodeEntry): SharedArrayBuffer {
    const ring = n.reader.renew();
    this.emptySince.delete(n);
    this.renewed++;
    return ring;
  }
}
