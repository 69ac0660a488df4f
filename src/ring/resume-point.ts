// A binary node's resume point: the last seq the host settled for it (sent as
// welcome.last_seq; frames at or below it are duplicates). It lives in the node's
// ring header. The shard that owns the node's connection is its only writer while
// it owns it; the main thread may write it only while no connection owns the node.
import { HEADER_BYTES, LAST_SEQ_F64 } from './ring-layout.js';

export function readResumePoint(ring: SharedArrayBuffer): number {
  return new Float64Array(ring, 0, HEADER_BYTES / 8)[LAST_SEQ_F64]!;
}

export function writeResumePoint(ring: SharedArrayBuffer, seq: number): void {
  new Float64Array(ring, 0, HEADER_BYTES / 8)[LAST_SEQ_F64] = seq;
}
