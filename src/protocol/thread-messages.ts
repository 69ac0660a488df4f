// Messages between the main thread and the shard workers (over one MessagePort per
// shard). Plain objects with a numeric tag; errors travel as {code, message}.
import type { PlainError } from './errors.js';
import type { CloseReason } from './close-reasons.js';

export const M_OPEN = 1; // main -> shard: new connection
export const M_DATA = 2; // main -> shard: bytes read from the connection
export const M_END = 3; // main -> shard: the socket is gone (peer closed / error)
export const M_GRANT = 4; // main -> shard: ring for a node the connection claimed
export const M_REFUSE = 5; // main -> shard: the node may not write (provisioning refused)
export const M_REVOKE = 6; // main -> shard: the node moved to a newer connection
export const M_SHUTDOWN = 7; // main -> shard: stop
export const M_CRASH = 8; // main -> shard: test hook, throw from the event loop
export const M_TRACE = 9; // main -> shard: log a node's frames (deep-trace command) until a deadline
export const M_DATA_BATCH = 11; // main -> shard: several reads (any connections) in one message, in order
export const M_CONFIG = 10; // main -> shard: reloaded settings (tokens, frame limit for new connections)

export const S_BATCH = 101; // shard -> main: credits, socket writes, doorbells, sightings
export const S_CLAIM = 102; // shard -> main: a connection wants to write for a node
export const S_REVOKED = 103; // shard -> main: the connection no longer writes for the node
export const S_CLOSE = 104; // shard -> main: close the connection (after pending writes)
export const S_CLOSED = 105; // shard -> main: connection state released; its claims are free
export const S_AUTH = 106; // shard -> main: first valid message seen (clears the deadline)
export const S_READY = 107; // shard -> main: the shard task is running
export const S_LOG = 108; // shard -> main: a rate-limited warning about a rejected message

export type Protocol = 'line' | 'binary';

export interface OpenMsg {
  t: typeof M_OPEN; conn: number; remote: string;
  /** The verified TLS client certificate's CN: the only node id this connection may use. */
  identity?: string;
}
export interface DataMsg { t: typeof M_DATA; conn: number; buf: Uint8Array }
export interface DataBatchMsg { t: typeof M_DATA_BATCH; conns: number[]; bufs: Uint8Array[] }
export interface EndMsg { t: typeof M_END; conn: number }
export interface GrantMsg {
  t: typeof M_GRANT; conn: number; node: string; ring: SharedArrayBuffer; ringId: number;
}
export interface RefuseMsg { t: typeof M_REFUSE; conn: number; node: string; error: PlainError; reason?: CloseReason }
export interface RevokeMsg {
  t: typeof M_REVOKE; conn: number; node: string;
  /** Why the connection closes (default superseded by a newer connection): a cluster handover or drain says so. */
  reason?: 'superseded' | 'shutdown'; message?: string;
}
export interface ShutdownMsg { t: typeof M_SHUTDOWN }
export interface CrashMsg { t: typeof M_CRASH }
export interface TraceMsg { t: typeof M_TRACE; node: string; id: string; untilMs: number; maxEvents: number }
/** Per-frame and per-connection limits the shards apply (from config `limits`; replaced on reload). */
export interface ShardLimits {
  /** limits.max_frame_bytes: applies to connections opened after a change. */
  maxFrameBytes: number;
  /** limits.max_detections_per_frame. */
  maxDetections: number;
  /** limits.max_clock_skew_ms (0: no check). */
  maxClockSkewMs: number;
  /** limits.max_seq_jump. */
  maxSeqJump: number;
}

/** What happens when a ring is full: the writer waits, or the oldest frames make room. */
export type OverflowPolicy = 'block' | 'drop-oldest';

/**
 * When a binary frame is acked: once its sink has taken it (`delivered`: for a
 * tracker, once the batch was handed to the OS for its input), or once it is in
 * the node's ring (`ring`). See ring/resume-point.ts for what survives what.
 */
export type AckMode = 'delivered' | 'ring';

/** What a shard takes from the config: given at its start, and again (less overflow and ack) on reload. */
export interface ShardSettings {
  token: string;
  /** Per-node tokens (node_id -> token); others use `token`. */
  tokens: Record<string, string>;
  limits: ShardLimits;
  /** ring.overflow: a change needs a restart. */
  overflow: OverflowPolicy;
  /** tcp_server.ack: a change needs a restart. */
  ack: AckMode;
}
/** The settings a reload changes in running shards. */
export type ShardReload = Omit<ShardSettings, 'overflow' | 'ack'>;

export interface ConfigMsg extends ShardReload { t: typeof M_CONFIG }
export type MainToShard = OpenMsg | DataMsg | DataBatchMsg | EndMsg | GrantMsg | RefuseMsg | RevokeMsg | ShutdownMsg | CrashMsg | TraceMsg | ConfigMsg;

/** One traced frame (deep-trace), as decoded by the shard. */
export interface TraceEvent { node: string; id: string; timestamp: number; detections: number; bytes: number; seq?: number; outcome: string }

export interface BatchMsg {
  t: typeof S_BATCH;
  /** Flattened [conn, bytes, conn, bytes, ...]: bytes fully processed (returns credit). */
  credits: number[];
  /** Flattened [conn, buf, ...]: bytes to write to the connection's socket. */
  writes: (number | Uint8Array)[];
  /** Ring ids whose consumer asked for a doorbell. */
  wake: number[];
  /** Nodes that sent a heartbeat (liveness for the registry). */
  seen: string[];
  /** Deep-trace events (bounded per trace). */
  traces: TraceEvent[];
}
export interface ClaimMsg {
  t: typeof S_CLAIM; conn: number; node: string; protocol: Protocol;
  /** What the node sent first: a frame, a heartbeat or a binary hello. */
  first: 'frame' | 'heartbeat' | 'hello';
  group?: string;
}
export interface RevokedMsg { t: typeof S_REVOKED; conn: number; node: string }
export interface CloseMsg { t: typeof S_CLOSE; conn: number; reason: CloseReason; error?: PlainError }
export interface ClosedMsg { t: typeof S_CLOSED; conn: number; nodes: string[] }
export interface AuthMsg { t: typeof S_AUTH; conn: number; protocol: Protocol }
export interface ReadyMsg { t: typeof S_READY; shard: number }
export interface LogMsg { t: typeof S_LOG; conn: number; reason: string; detail: string; suppressed: number; node?: string }
export type ShardToMain = BatchMsg | ClaimMsg | RevokedMsg | CloseMsg | ClosedMsg | AuthMsg | ReadyMsg | LogMsg;
