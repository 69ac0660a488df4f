// The periodic summary (status_interval_sec): one line, never per frame.
import type { Totals } from './metrics.js';
import type { InstanceTracks, TrackerMetrics } from '../tracker/supervisor.js';

/** Instances listed with their tracks in one status line at most (the busiest first), so the line stays bounded. */
export const STATUS_MAX_INSTANCES = 100;

/** The fields of one status line. */
export function statusFields(t: Totals, connections: number, nodes: number, trackers: TrackerMetrics | undefined,
  tracks?: InstanceTracks[]): Record<string, unknown> {
  return {
    connections, nodes,
    received: t.received, delivered: t.delivered, in_rings: t.inRings, dropped: t.droppedTotal,
    ...(trackers ? { trackers: Object.fromEntries(Object.entries(trackers.states).filter(([, n]) => n > 0)) } : {}),
    ...(tracks ? trackFields(tracks) : {}),
  };
}

/**
 * Per instance, as tracker-host's status report: its state, its active tracks
 * and their lengths (longest first, at most 10).
 */
function trackFields(all: InstanceTracks[]): Record<string, unknown> {
  const shown = [...all].sort((a, b) => b.active - a.active || a.name.localeCompare(b.name)).slice(0, STATUS_MAX_INSTANCES);
  shown.sort((a, b) => a.name.localeCompare(b.name));
  return {
    // Keyed by tracker name, which is the node id unless a configured tracker says otherwise: then `node` says it.
    tracks: Object.fromEntries(shown.map((i) => [i.name, {
      ...(i.node !== i.name ? { node: i.node } : {}), state: i.state, active: i.active, lengths: i.longest.map((l) => l.length),
    }])),
    ...(all.length > shown.length ? { tracks_omitted: all.length - shown.length } : {}),
  };
}
