// What a protocol handler (line, binary) works with: the connection's state in the
// shard, its node slots, the shard operations it may call, and the result codes it
// returns. The shard implements the operations and calls the handlers; both import
// this file, so neither imports the other.
import type { PlainError } from '../protocol/errors.js';
import type { Protocol, ShardLimits } from '../protocol/thread-messages.js';
import type { CloseReason } from '../telemetry/counters.js';
import type { RingWriter } from '../ring/ring-writer.js';
import type { LineFramer } from './line/line-framer.js';
import type { BinaryFramer } from './binary/binary-framer.js';
import type { TokenCheck } from './token.js';
import type { AckWindow } from './ack-window.js';

/** Handler results. */
export const R_CONTINUE = 0;
export const R_BLOCKED = 1; // waiting for a ring grant or ring space; retry the same message
export const R_CLOSE = 2; // the connection is closing; stop reading it

export const NODE_PENDING = 0;
export const NODE_GRANTED = 1;
export const NODE_REFUSED = 2;
export const NODE_REVOKED = 3;

export interface NodeTrace {
  id: string;
  untilMs: number;
  left: number;
}

export interface NodeSlot {
  node: string;
  state: number;
  writer: RingWriter | null;
  ringId: number;
  /** Set while a deep-trace command is active for the node (checked per frame). */
  trace: NodeTrace | null;
  /** NODE_REFUSED on a line connection: when its next frame may claim it again (ms epoch). */
  retryAt?: number;
}

export class Conn {
  proto: Protocol | null = null;
  framer: LineFramer | BinaryFramer | null = null;
  authed = false;
  /**
   * Authenticated by the shared token (or with none configured): further nodes without
   * a token of their own may then be carried without repeating it (gateways).
   */
  sharedAuthed = false;
  /** Line: nodes refused on this connection (bounded by MAX_REFUSED_NODES). */
  refusedNodes = 0;
  readonly nodes = new Map<string, NodeSlot>();
  /** Last slot used, with the node id bytes that selected it (line fast path). */
  lastSlot: NodeSlot | null = null;
  lastNodeBytes: Buffer = Buffer.alloc(0);
  /** Binary: the node of this connection and whether an ack is owed. */
  binNode: NodeSlot | null = null;
  ackOwed = false;
  /** Ack `delivered`: an ack is owed as a reply (heartbeat, duplicate) even if it did not move. */
  ackReply = false;
  /** Ack `delivered`: the node's settled seqs waiting for the sink, and whether a wait for it is armed. */
  ackWindow: AckWindow | null = null;
  ackWaiting = false;
  /** When the last ack went (performance.now()), and the ack held back until ACK_MIN_INTERVAL_MS after it (ack-pacing.ts). */
  lastAckAt = -Infinity;
  ackHeld: number | null = null;
  ackTimer: ReturnType<typeof setTimeout> | null = null;
  welcomed = false;
  /** Binary: non-fatal errors since the last frame written (see MAX_ERROR_STREAK). */
  errorStreak = 0;
  /** A framed message that could not be handled yet (blocked). */
  pending = false;
  /** The pending message is a frame (counted as dropped if never written). */
  pendingFrame = false;
  blocked = false;
  closing = false;
  ended = false;
  released = false;
  /** TLS client-certificate CN: the only node id this connection may use (null: any, by token). */
  constructor(readonly id: number, readonly remote: string, readonly identity: string | null = null) {}
}

/** The shard as its protocol handlers see it. */
export interface ShardContext {
  readonly opts: { readonly limits: ShardLimits };
  /** This shard's counters (layout: telemetry/counters.ts). */
  readonly counters: Float64Array;
  readonly token: TokenCheck;
  /** Counts frames drop-oldest removed from a ring to make room. */
  readonly onOverflowDrop: (n: number) => void;
  /** Claims a node for the connection; the answer (grant/refuse) resumes it. */
  claim(c: Conn, node: string, first: 'frame' | 'heartbeat' | 'hello', group?: string): NodeSlot;
  authenticated(c: Conn): void;
  wrote(w: RingWriter): void;
  /** Blocks the connection until the ring has room. */
  waitForSpace(c: Conn, w: RingWriter): void;
  /** Counts a frame received and dropped for `reason` (a D_* index). */
  /** `node`: the frame's node when known (binary: the connection's); named in the drop warning. */
  drop(c: Conn, reason: number, detail: string, node?: string): void;
  traceFrame(slot: NodeSlot, timestamp: number, detections: number, bytes: number, outcome: string, seq?: number): void;
  sawHeartbeat(node: string): void;
  write(c: Conn, buf: Uint8Array): void;
  /** An ack is owed (sent with the batch); `reply`: even if it did not move (heartbeat, duplicate). */
  oweAck(c: Conn, reply?: boolean): void;
  /** Asks the main thread to close the connection (after queued writes). */
  close(c: Conn, reason: CloseReason, error?: PlainError): void;
}
