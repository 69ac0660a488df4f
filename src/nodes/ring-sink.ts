// What consumes the per-node rings. The engine rings a sink's doorbell when a ring
// it had drained receives data (and sweeps periodically as a safety net); the sink
// takes records out in batches with RingReader.read() or discard(), then re-arms
// the doorbell with RingReader.arm() once it has emptied the ring.
import type { NodeEntry } from './node-table.js';
import type { SinkDropReason } from '../telemetry/counters.js';

/**
 * What became of the frames a sink took out of the rings:
 * consumed = delivered + inFlight + sum(dropped).
 */
export interface SinkAccounting {
  /** Handed to their destination (a tracker's input). */
  delivered: number;
  /** Taken from a ring, not yet delivered. */
  inFlight: number;
  dropped: Partial<Record<SinkDropReason, number>>;
}

export interface RingSink {
  /** Data may be waiting in the node's ring. Must not throw. */
  onData(node: NodeEntry): void;
  /** Frame accounting; a sink without it counts every consumed frame as delivered. */
  accounting?(): SinkAccounting;
  close?(): Promise<void> | void;
}

/**
 * Observation points for benchmarks and diagnostics (EngineOptions.probe). Both are
 * called synchronously on the main thread with bytes the engine is handing on, so a
 * probe sees a frame at the instant it leaves the ring stage; unset, they cost nothing.
 */
export interface EngineProbe {
  /** Bytes were read from a node's socket (the first stage, before the shard). */
  onSocketRead?(bytes: Buffer): void;
  /** A batch of frames (JSON lines) is being written into a tracker's input. */
  onTrackerWrite?(nodeId: string, bytes: Buffer): void;
  /** The drain-only sink is freeing these ring records (headers and payloads, as stored). */
  onSinkDrain?(nodeId: string, records: Buffer): void;
  /**
   * Whether onSinkDrain wants this node's bytes (unset: every node's). A node it
   * does not watch is discarded without the copy, so a probe on a few nodes does
   * not cost a copy of every other node's traffic.
   */
  drainsNode?(nodeId: string): boolean;
  /** A tracker reconcile pass ran from startNs to endNs (process.hrtime). */
  onReconcilePass?(startNs: number, endNs: number): void;
}

/**
 * Drains rings in batches and drops the frames (counted as `discarded`): for
 * benchmarks and ingest-only deployments whose trackers run elsewhere.
 */
export class DiscardSink implements RingSink {
  private discarded = 0;
  constructor(private readonly probe?: EngineProbe) {}
  onData(node: NodeEntry): void {
    const r = node.reader;
    const probe = this.probe;
    const drained = probe?.onSinkDrain && (probe.drainsNode?.(node.id) ?? true) ? probe.onSinkDrain : undefined;
    for (;;) {
      if (drained) {
        // A probe needs the bytes: copy them out instead of only moving the tail.
        const b = r.read();
        if (b) {
          this.discarded += b.frames;
          drained.call(probe, node.id, b.buffer);
        }
      } else {
        this.discarded += r.discard();
      }
      if (r.arm()) return;
    }
  }
  accounting(): SinkAccounting {
    return { delivered: 0, inFlight: 0, dropped: { discarded: this.discarded } };
  }
}
