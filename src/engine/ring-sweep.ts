// Offering rings to the sink: on a shard's wake-up and, as a safety net, on a timer for
// every non-empty ring (a missed wake-up must not strand frames).
import type { NodeEntry, NodeTable } from '../nodes/node-table.js';
import type { RingSink } from '../nodes/ring-sink.js';
import type { Logger } from '../telemetry/logger.js';
import type { DeepTraces } from './deep-trace.js';

export class RingOffer {
  constructor(
    private readonly sink: RingSink,
    private readonly traces: DeepTraces,
    private readonly log: Logger,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Hands one node's ring to the sink; a traced node's delivered frames are logged. */
  offer(node: NodeEntry): void {
    const trace = this.traces.size > 0 ? this.traces.get(node.id) : undefined;
    const before = trace ? node.reader.consumedFrames : 0;
    try {
      this.sink.onData(node);
    } catch (err) {
      this.onError(err as Error);
    }
    if (trace) {
      const n = node.reader.consumedFrames - before;
      if (n > 0) this.log.info({ node: node.id, correlation_id: trace.id, frames: n }, 'deep-trace: delivered');
      if (Date.now() > trace.untilMs) this.traces.delete(node.id);
    }
  }

  /** Offers every non-empty ring. */
  sweep(nodes: NodeTable): void {
    for (const n of nodes.byRing) {
      if (n.reader.usedBytes > 0) this.offer(n);
    }
  }
}
