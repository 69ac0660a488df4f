// Why a connection was closed, described once: the error code a node is told (binary
// ERROR message, log line), whether the close is a refusal by a limit or check
// (connections_rejected_total) and how loudly it is logged. The key order is the
// counters' slot order and the label order of the metrics: append, never reorder.
import { ErrorCodes, type ErrorCode, type PlainError } from './errors.js';

interface CloseKind {
  /** The code sent to the node and logged; null: the host has nothing to tell (the peer left, a socket failed). */
  code: ErrorCode | null;
  /** Counted in connections_rejected_total. */
  rejection: boolean;
  /** info: the host asked for it or the peer left (not a problem); warn: something to look at. */
  level: 'info' | 'warn';
}

const rejected = (code: ErrorCode | null): CloseKind => ({ code, rejection: true, level: 'warn' });

export const CLOSES = {
  peer_closed: { code: null, rejection: false, level: 'info' },
  socket_error: { code: null, rejection: false, level: 'warn' },
  superseded: { code: ErrorCodes.SUPERSEDED, rejection: false, level: 'info' }, // the node connected again
  max_connections: rejected(ErrorCodes.MAX_CONNECTIONS),
  auth_failed: rejected(ErrorCodes.AUTH_FAILED),
  first_message_timeout: rejected(ErrorCodes.FIRST_MESSAGE_TIMEOUT),
  idle_timeout: rejected(ErrorCodes.IDLE_TIMEOUT),
  protocol_error: rejected(ErrorCodes.PROTOCOL),
  frame_too_large: rejected(ErrorCodes.FRAME_TOO_LARGE),
  unsupported_version: rejected(ErrorCodes.UNSUPPORTED_VERSION),
  node_refused: rejected(ErrorCodes.NODE_REFUSED),
  shard_crashed: { code: ErrorCodes.SHARD_CRASHED, rejection: false, level: 'warn' },
  shutdown: { code: ErrorCodes.SHUTTING_DOWN, rejection: false, level: 'info' },
  proxy_malformed: rejected(null), // PROXY protocol header missing, malformed or of the wrong version
  proxy_untrusted: rejected(null), // PROXY header from an address not in tcp_server.proxy_trusted
  flapping: rejected(ErrorCodes.FLAPPING), // reconnected too often (limits.reconnect_max): banned for a while
  tls_failed: rejected(null), // TLS handshake failed (or no valid client certificate when one is required)
  output_overflow: rejected(ErrorCodes.OUTPUT_OVERFLOW), // did not read its replies: over limits.max_output_bytes queued
  seq_jump: rejected(ErrorCodes.SEQ_JUMP), // binary protocol: a seq too far ahead (limits.max_seq_jump)
  max_nodes: rejected(ErrorCodes.MAX_NODES), // a new node id while the host has limits.max_nodes nodes
  // cluster: another host holds the node's lease and did not hand it over in time (the node retries through the balancer)
  node_owned_elsewhere: { code: ErrorCodes.NODE_OWNED, rejection: true, level: 'info' },
  // cluster: Redis unreachable and cluster.on_redis_down is "refuse": a new node is not served unfenced
  cluster_unavailable: rejected(ErrorCodes.CLUSTER_UNAVAILABLE),
} as const satisfies Record<string, CloseKind>;

export type CloseReason = keyof typeof CLOSES;

/** Every close reason, in counter-slot order. The first reason recorded for a connection wins. */
export const CLOSE_REASONS = Object.keys(CLOSES) as CloseReason[];

/** Close reasons that are refusals by a limit or check (connections_rejected_total), in slot order. */
export const REJECT_REASONS: readonly CloseReason[] = CLOSE_REASONS.filter((r) => CLOSES[r].rejection);

/**
 * Why a node claim was refused: also the close reason of a binary connection (a line
 * connection stays open). Listed by hand: this order is the metric's label order.
 */
export const CLAIM_REFUSALS = ['max_nodes', 'flapping', 'node_refused', 'node_owned_elsewhere', 'cluster_unavailable'] as const satisfies readonly CloseReason[];
export type ClaimRefusal = (typeof CLAIM_REFUSALS)[number];

/** Close reasons that carry an error code. */
export type CodedCloseReason = { [R in CloseReason]: (typeof CLOSES)[R]['code'] extends null ? never : R }[CloseReason];

/** The error a close sends and logs: the reason's code with this message. */
export function closeError(reason: CodedCloseReason, message: string): PlainError {
  return { code: CLOSES[reason].code as ErrorCode, message };
}

/** Whether a close is worth a warning (else it is routine: info or not logged). */
export function closeIsProblem(reason: CloseReason): boolean {
  return CLOSES[reason].level === 'warn';
}
