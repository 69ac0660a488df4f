// A binary node's resume point: the last seq the host settled for it (sent as
// welcome.last_seq; frames at or below it are duplicates). It lives in the node's
// ring header. The shard that owns the node's connection is its only writer while
// it owns it; the main thread may write it only while no connection owns the node.
//
// Settled means written into the node's ring, or refused for good (invalid, too
// large: the node must not resend it). welcome.last_seq is the settled seq in both
// ack modes (tcp_server.ack), because on this host the frames in the ring are
// still the host's own: a reconnect to the same host neither loses nor repeats
// them. What survives what, for a frame the host has settled:
//   - the node's connection dropping: survives (ring and resume point stay here);
//   - the tracker process dying: a frame still in the ring survives (a new process
//     is fed from the ring); a frame whose batch was handed to the dead process's
//     input is gone with it;
//   - the host process dying (kill -9, power): everything in the ring is lost, and
//     so is this resume point (it is memory).
// So what a node may forget depends on the ack mode:
//   - ack `ring`: an ack of seq N means frames up to N are in the ring. N equals
//     welcome.last_seq. A host crash loses acked frames still in the ring.
//   - ack `delivered`: an ack of seq N means frames up to N were taken by the sink
//     (for a tracker: the bytes were handed to the OS for its input, which a host
//     crash does not undo: the tracker runs in its own process group and reads
//     what is in its pipe). A host crash loses no acked frame. After a reconnect
//     welcome.last_seq (settled) may be ahead of the last ack; the frames between
//     are in the ring and are acked once delivered. A node that keeps its buffer
//     until acked (not until welcomed) loses nothing when the host dies.
//   In both modes, frames the ring dropped under `ring.overflow: drop-oldest`
//   (counted as ring_overflow), rejected frames and frames a dead tracker's input
//   took with it are acked once later frames are delivered: they are accounted
//   for as dropped with a reason, never resent.
// ACKED_SEQ (readAckedSeq) is the highest seq acked to the node so far, in either
// mode: the point a fleet-wide resume may trust after this host is gone.
import { HEADER_BYTES, LAST_SEQ_F64, ACKED_SEQ_F64 } from './ring-layout.js';

export function readResumePoint(ring: SharedArrayBuffer): number {
  return new Float64Array(ring, 0, HEADER_BYTES / 8)[LAST_SEQ_F64]!;
}

export function writeResumePoint(ring: SharedArrayBuffer, seq: number): void {
  const h = new Float64Array(ring, 0, HEADER_BYTES / 8);
  h[LAST_SEQ_F64] = seq;
  // Nothing above the resume point counts as acked any more (an operator moved it back).
  if (h[ACKED_SEQ_F64]! > seq) h[ACKED_SEQ_F64] = seq;
}

/**
 * Starts the header's seq state over at `seq` (resume point and acked seq both): a host
 * taking a node over adopts the fleet's resume point, and a host giving a node up keeps
 * only what it told the fleet. Either way nothing of an earlier ownership on this host
 * (an acked seq below the new point, a settled seq above it) is carried into the next.
 * Only while no connection owns the node.
 */
export function adoptResumePoint(ring: SharedArrayBuffer, seq: number): void {
  const h = new Float64Array(ring, 0, HEADER_BYTES / 8);
  h[LAST_SEQ_F64] = seq;
  h[ACKED_SEQ_F64] = seq;
}

/**
 * The highest seq acked to the node so far (0: none). Written by the shard that
 * owns the node's connection, when it sends an ack; never above the resume point.
 */
export function readAckedSeq(ring: SharedArrayBuffer): number {
  return new Float64Array(ring, 0, HEADER_BYTES / 8)[ACKED_SEQ_F64]!;
}
