// What a host does with a node's ring when it gives the node up (handed over past its
// deadline, drained, lease lost, or admitted but never given a tracker here): the frames
// still in it are thrown away and counted, and the ring header's seq state is set to what
// the host told the fleet. Kept, those frames would be fed to the node's next tracker on
// this host, before and out of order with what another host delivered meanwhile.
import type { NodeEntry } from '../nodes/node-table.js';
import type { SinkAccounting } from '../nodes/ring-sink.js';
import { adoptResumePoint } from '../ring/resume-point.js';

/**
 * Empties the ring of a node nothing reads or writes any more and starts its seq state
 * over at `seq` (the resume point the host gave the fleet). The ring's positions read as
 * fully delivered afterwards, so the next connection's acks do not wait for frames that
 * are gone. Returns the frames thrown away.
 */
export function discardGivenUp(node: NodeEntry, seq: number): number {
  const frames = node.reader.discard(true);
  adoptResumePoint(node.ring, seq);
  return frames;
}

/**
 * The sink's accounting with the frames thrown away at give-up added as dropped
 * (`given_up`). `fromConsumed`: the sink has no accounting of its own, so everything
 * consumed was counted delivered: those frames were not.
 */
export function withGivenUp(a: SinkAccounting, givenUp: number, fromConsumed: boolean): SinkAccounting {
  if (givenUp === 0) return a;
  return {
    delivered: fromConsumed ? a.delivered - givenUp : a.delivered,
    inFlight: a.inFlight,
    dropped: { ...a.dropped, given_up: (a.dropped.given_up ?? 0) + givenUp },
  };
}
