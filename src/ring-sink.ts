// What consumes the per-node rings. The engine rings a sink's doorbell when a ring
// it had drained receives data (and sweeps periodically as a safety net); the sink
// takes records out in batches with RingReader.read() or discard(), then re-arms
// the doorbell with RingReader.arm() once it has emptied the ring.
import type { NodeEntry } from './node-table.js';

export interface RingSink {
  /** Data may be waiting in the node's ring. Must not throw. */
  onData(node: NodeEntry): void;
  close?(): Promise<void> | void;
}

/**
 * Drains rings in batches and counts the frames as consumed: for benchmarks and
 * ingest-only deployments whose trackers run elsewhere.
 */
export class DiscardSink implements RingSink {
  onData(node: NodeEntry): void {
    const r = node.reader;
    for (;;) {
      r.discard();
      if (r.arm()) return;
    }
  }
}
