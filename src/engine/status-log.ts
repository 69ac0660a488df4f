// The periodic summary (status_interval_sec): one line, never per frame.
import type { Totals } from './metrics.js';
import type { TrackerMetrics } from '../tracker/supervisor.js';

/** The fields of one status line. */
export function statusFields(t: Totals, connections: number, nodes: number, trackers: TrackerMetrics | undefined): Record<string, unknown> {
  return {
    connections, nodes,
    received: t.received, delivered: t.delivered, in_rings: t.inRings, dropped: t.droppedTotal,
    ...(trackers ? { trackers: Object.fromEntries(Object.entries(trackers.states).filter(([, n]) => n > 0)) } : {}),
  };
}
