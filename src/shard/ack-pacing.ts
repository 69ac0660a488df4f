// How often a binary node is acked. Acks are cumulative, so one every few
// milliseconds says as much as one per batch: an unpaced node is otherwise acked
// after every batch its shard processes (about a thousand times a second), and
// each ack is a write syscall on the main thread, which reads every node's
// socket, and a wake-up of the node. A reply (heartbeat, resend) still goes at
// once; an ack held back carries the latest seq when it goes.

/** The least time between two acks to one connection that are not replies. */
export const ACK_MIN_INTERVAL_MS = 5;

/** How long an ack must wait at `now` when the last went at `lastAt` (0: it may go now). */
export function ackDelay(now: number, lastAt: number, interval = ACK_MIN_INTERVAL_MS): number {
  const d = lastAt + interval - now;
  return d > 0 ? d : 0;
}
