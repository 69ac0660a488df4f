// Counter layout shared by the main thread and the shards. Each thread owns one
// Float64Array with this layout (the shards' live in SharedArrayBuffers) and is its
// only writer; the main thread sums them at scrape time. Float64 holds exact
// integers up to 2^53.
import { CLOSE_REASONS, type CloseReason } from '../protocol/close-reasons.js';

/** Why a frame that was received did not reach a ring (or left it unconsumed). */
export const DROP_REASONS = [
  'malformed', // not valid JSON / msgpack
  'invalid_utf8', // line protocol: bytes are not UTF-8
  'invalid_frame', // well-formed but would break the tracker (no timestamp, unequal arrays, ...)
  'frame_too_large', // over limits.max_frame_bytes, discarded before buffering
  'auth_failed', // sent before / with a failed authentication
  'ring_overflow', // drop-oldest policy made room for newer frames
  'duplicate', // binary protocol: sequence number already accepted (a resend)
  'node_refused', // the node may not deliver (provisioning refused)
  'connection_closed', // framed but the connection was closed/superseded before it could be written
  'too_many_detections', // more detections than limits.max_detections_per_frame
  'clock_skew', // timestamp further ahead of the host clock than limits.max_clock_skew_ms
  'seq_jump', // binary protocol: seq further ahead of the last accepted than limits.max_seq_jump
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/**
 * Why a frame taken out of a ring did not reach a tracker (counted by the sink on
 * the main thread; `duplicate` is shared with DROP_REASONS: the same frame again).
 */
export const SINK_DROP_REASONS = [
  'duplicate', // its timestamp equals the last one fed to the tracker
  'out_of_order', // its timestamp is before the last one fed to the tracker
  'tracker_lost', // written towards a tracker that died or was stopped before taking it
  'bad_record', // a ring record the sink could not decode (never expected)
  'shutdown', // still in a ring when the shutdown deadline passed
  'discarded', // sink "discard": dropped on purpose
  'given_up', // several hosts: still in the ring of a node this host gave up (moved, drained, lease lost)
] as const;
export type SinkDropReason = (typeof SINK_DROP_REASONS)[number];

/** Every label of frames_dropped_total. */
export const ALL_DROP_REASONS: readonly string[] = [...new Set<string>([...DROP_REASONS, ...SINK_DROP_REASONS])];

// The close vocabulary (code, rejection, log level per reason) lives with the wire errors.
export { CLOSE_REASONS, REJECT_REASONS, CLAIM_REFUSALS, type CloseReason, type ClaimRefusal } from '../protocol/close-reasons.js';

export const C_FRAMES_RECEIVED = 0; // shards: frames framed (line or binary), whatever their fate
export const C_DETECTIONS_RECEIVED = 1; // shards: detections in frames written to rings
export const C_FRAMES_WRITTEN = 2; // shards: frames written into rings
export const C_HEARTBEATS = 3; // shards: heartbeat messages
export const C_BYTES_RECEIVED = 4; // main: bytes read from node sockets
export const C_CONNECTIONS_ACCEPTED = 5; // main
export const C_FRAMES_CONSUMED = 6; // main: frames taken out of rings by the sink
export const C_ACKS_SENT = 7; // shards: binary-protocol ack messages
const FIXED = 8;
export const C_DROPPED_BASE = FIXED;
export const C_CLOSED_BASE = C_DROPPED_BASE + DROP_REASONS.length;
export const COUNTER_SLOTS = C_CLOSED_BASE + CLOSE_REASONS.length;
export const COUNTER_BYTES = COUNTER_SLOTS * 8;

export function dropIndex(r: DropReason): number {
  return C_DROPPED_BASE + DROP_REASONS.indexOf(r);
}
export function closeIndex(r: CloseReason): number {
  return C_CLOSED_BASE + CLOSE_REASONS.indexOf(r);
}

// Precomputed indices for the hot path.
export const D_MALFORMED = dropIndex('malformed');
export const D_INVALID_UTF8 = dropIndex('invalid_utf8');
export const D_INVALID_FRAME = dropIndex('invalid_frame');
export const D_FRAME_TOO_LARGE = dropIndex('frame_too_large');
export const D_AUTH_FAILED = dropIndex('auth_failed');
export const D_RING_OVERFLOW = dropIndex('ring_overflow');
export const D_DUPLICATE = dropIndex('duplicate');
export const D_NODE_REFUSED = dropIndex('node_refused');
export const D_CONNECTION_CLOSED = dropIndex('connection_closed');
export const D_TOO_MANY_DETECTIONS = dropIndex('too_many_detections');
export const D_CLOCK_SKEW = dropIndex('clock_skew');
export const D_SEQ_JUMP = dropIndex('seq_jump');
