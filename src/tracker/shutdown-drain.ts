// At shutdown the producers have stopped; what is left in the rings goes to the
// trackers that are up (or about to be) until the deadline.
import type { TrackerInstance } from './tracker-instance.js';

/** Pumps rings into trackers until none has frames pending or `until` (a now() time) passes; true when drained. */
export async function drainRings(instances: () => Iterable<TrackerInstance>, now: () => number, until: number): Promise<boolean> {
  for (;;) {
    let busy = false;
    for (const i of instances()) {
      const pending = i.node.reader.usedBytes > 0 || i.feeder.inFlight > 0;
      if (i.up) {
        i.pump();
        if (pending) busy = true;
      } else if (pending && (i.state.phase === 'starting' || i.state.phase === 'backoff')) {
        // A tracker on its way up (the loop still runs): worth waiting for until the deadline.
        busy = true;
      }
    }
    if (!busy) return true;
    if (now() >= until) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
}
