// One handler per binary-protocol message type. The first message must be a hello;
// frames carry per-node sequence numbers; the host acks cumulatively once per
// batch, after the frames are published in the ring (ack `ring`) or once the sink
// has taken them (ack `delivered`: the shard's AckWindow).
import type { PlainError } from '../../protocol/errors.js';
import { ErrorCodes } from '../../protocol/errors.js';
import { closeError } from '../../protocol/close-reasons.js';
import {
  C_FRAMES_RECEIVED, C_FRAMES_WRITTEN, C_DETECTIONS_RECEIVED, C_HEARTBEATS, dropIndex,
  D_MALFORMED, D_INVALID_FRAME, D_FRAME_TOO_LARGE, D_DUPLICATE, D_CONNECTION_CLOSED, D_SEQ_JUMP,
} from '../../telemetry/counters.js';
import {
  decodeBody, encodeMessage, PROTOCOL_VERSION, T_HELLO, T_WELCOME, T_FRAME, T_HEARTBEAT, T_RESET, T_ERROR,
  DET_STRIDE, HEARTBEAT_MS,
} from '../../protocol/binary-protocol.js';
import { isValidNodeId, NODE_ID_RULE } from '../../protocol/node-id.js';
import { helloProblem } from '../../protocol/agent-fields.js';
import { checkFrameLimits, type FrameRefusal } from '../../protocol/frame-limits.js';
import { writePackedFrame, writeResetRecord, WRITE_FULL, WRITE_TOO_LARGE } from '../../ring/record-codec.js';
import { identityAllows } from '../token.js';
import { FastFrame, readFastFrame } from './frame-fast-path.js';
import { MAX_DEPTH } from '../line/json-scan.js';
import { type ShardContext, type Conn, type NodeSlot, R_CONTINUE, R_BLOCKED, R_CLOSE, NODE_PENDING, NODE_GRANTED } from '../handler-context.js';

export function sendBinaryError(sh: ShardContext, c: Conn, e: PlainError, fatal: boolean, seq?: number): void {
  const m: Record<string, unknown> = { t: T_ERROR, code: e.code, message: e.message, fatal };
  if (seq !== undefined) m.seq = seq;
  sh.write(c, encodeMessage(m));
}

/**
 * Non-fatal errors in a row (no frame written in between) after which the
 * connection is closed: a node that only produces errors is broken or hostile,
 * and every error costs a reply.
 */
export const MAX_ERROR_STREAK = 100;

/** A non-fatal error reply, or the fatal one that ends a streak of them. */
function nonFatal(sh: ShardContext, c: Conn, e: PlainError, seq?: number): number {
  if (++c.errorStreak > MAX_ERROR_STREAK) {
    sh.close(c, 'protocol_error', closeError('protocol_error',
      `${MAX_ERROR_STREAK} errors in a row without an accepted frame; last: ${e.code}: ${e.message}`));
    return R_CLOSE;
  }
  sendBinaryError(sh, c, e, false, seq);
  return R_CONTINUE;
}

function reject(sh: ShardContext, c: Conn, reason: number, code: PlainError['code'], message: string, seq?: number): number {
  sh.drop(c, reason, message);
  return nonFatal(sh, c, { code, message }, seq);
}

export function handleBinaryOversize(sh: ShardContext, c: Conn, length: number, fatal: boolean): number {
  const message = `message of ${length} bytes exceeds the limit of ${sh.opts.limits.maxFrameBytes} bytes`;
  sh.drop(c, D_FRAME_TOO_LARGE, message);
  if (fatal || !c.welcomed) {
    // Before the hello nothing is trusted: the first message must be a hello of sane size.
    sh.close(c, 'frame_too_large', closeError('frame_too_large', `${message}; stream cannot be resynchronised`));
    return R_CLOSE;
  }
  return nonFatal(sh, c, { code: ErrorCodes.FRAME_TOO_LARGE, message });
}

// Scratch for checking detection values (the blob may be unaligned in the message).
let scratch = new Float64Array(256 * 3);
let scratchBytes = new Uint8Array(scratch.buffer);

function detectionsFinite(det: Uint8Array): boolean {
  const n = det.length / 8;
  if (scratch.length < n) {
    scratch = new Float64Array(n);
    scratchBytes = new Uint8Array(scratch.buffer);
  }
  scratchBytes.set(det);
  for (let i = 0; i < n; i++) {
    const v = scratch[i]!;
    if (v !== v || v === Infinity || v === -Infinity) return false;
  }
  return true;
}

/** A peer's value in an error message, safely (String() of a map with a toString key throws). */
function show(x: unknown): string {
  if (typeof x === 'string') return JSON.stringify(x.length > 64 ? `${x.slice(0, 64)}...` : x);
  if (typeof x === 'number' || typeof x === 'boolean' || typeof x === 'bigint' || x === null || x === undefined) return String(x);
  return Array.isArray(x) ? 'a list' : `a ${typeof x}`;
}

function isAdsbEntry(x: unknown): boolean {
  return x === null || (typeof x === 'object' && !Array.isArray(x) && !(x instanceof Uint8Array)
    && withinDepth(x, ADSB_MAX_DEPTH));
}

/**
 * Containers an adsb entry may nest, itself included: what the line protocol allows
 * (json-scan MAX_DEPTH counts the frame and the adsb array too). Deeper entries
 * would reach the tracker, whose JSON parser has its own recursion limit.
 */
const ADSB_MAX_DEPTH = MAX_DEPTH - 2;

/** False when `x` nests more than `left` containers (or is cyclic); stops at the limit. */
function withinDepth(x: unknown, left: number): boolean {
  if (x === null || typeof x !== 'object') return true;
  if (left === 0) return false;
  if (Array.isArray(x)) {
    for (const v of x) if (!withinDepth(v, left - 1)) return false;
    return true;
  }
  for (const k in x) if (!withinDepth((x as Record<string, unknown>)[k], left - 1)) return false;
  return true;
}

const fast = new FastFrame();

export function handleBinary(sh: ShardContext, c: Conn, buf: Buffer, s: number, e: number): number {
  // Frames from a welcomed node: try the canonical layout before a full decode.
  if (c.welcomed && readFastFrame(buf, s, e, fast)) {
    const slot = c.binNode!;
    if (slot.state !== NODE_GRANTED) return closingFrame(sh);
    return frame(sh, c, slot, fast.seq, fast.ts, buf.subarray(fast.detStart, fast.detEnd), undefined);
  }
  let msg: unknown;
  let problem: string | null = null;
  try {
    msg = decodeBody(buf, s, e);
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) problem = 'a message must be a msgpack map';
  } catch (err) {
    problem = `undecodable msgpack: ${(err as Error).message}`;
  }
  if (problem !== null) {
    if (!c.welcomed) {
      // Before the hello every reply would go to an unauthenticated peer: one error, then the close.
      sh.drop(c, D_MALFORMED, problem);
      sh.close(c, 'protocol_error', closeError('protocol_error', `the first message must be a hello; ${problem}`));
      return R_CLOSE;
    }
    return reject(sh, c, D_MALFORMED, ErrorCodes.MALFORMED, problem);
  }
  const m = msg as Record<string, unknown>;

  if (!c.welcomed) return hello(sh, c, m);

  const slot = c.binNode!;
  if (slot.state !== NODE_GRANTED) return m.t === T_FRAME || m.t === T_RESET ? closingFrame(sh) : R_CLOSE;
  switch (m.t) {
    case T_FRAME:
      return frame(sh, c, slot, m.seq, m.ts, m.det, m.adsb);
    case T_RESET:
      return reset(sh, c, slot, m.seq);
    case T_HEARTBEAT:
      sh.counters[C_HEARTBEATS]! += 1;
      sh.sawHeartbeat(slot.node);
      sh.oweAck(c, true);
      return R_CONTINUE;
    case T_HELLO:
      sh.close(c, 'protocol_error', closeError('protocol_error', 'hello sent twice'));
      return R_CLOSE;
    default:
      return reject(sh, c, D_MALFORMED, ErrorCodes.PROTOCOL, `unknown message type ${show(m.t)}`);
  }
}

/** A frame arriving after the node moved to another connection: counted, never written. */
function closingFrame(sh: ShardContext): number {
  sh.counters[C_FRAMES_RECEIVED]! += 1;
  sh.counters[D_CONNECTION_CLOSED]! += 1;
  return R_CLOSE;
}

function frame(sh: ShardContext, c: Conn, slot: NodeSlot, seq: unknown, ts: unknown, det: unknown, adsb: unknown): number {
  const w = slot.writer!;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) {
    return reject(sh, c, D_INVALID_FRAME, ErrorCodes.INVALID_FRAME, 'seq must be a positive integer');
  }
  if (seq <= w.lastSeq) {
    // A resend of something already settled: ack again, store nothing (expected after a reconnect: not logged).
    sh.counters[C_FRAMES_RECEIVED]! += 1;
    sh.counters[D_DUPLICATE]! += 1;
    sh.oweAck(c, true);
    return R_CONTINUE;
  }
  if (seq - w.lastSeq > sh.opts.limits.maxSeqJump) return seqJump(sh, c, seq, w.lastSeq);
  let problem: string | null = null;
  let refusal: FrameRefusal | null = null;
  if (typeof ts !== 'number' || !Number.isFinite(ts) || ts < 0) problem = 'ts must be a non-negative number (ms since the epoch)';
  else if (!(det instanceof Uint8Array) || det.length % DET_STRIDE !== 0) problem = 'det must be binary of 24*n bytes (delay, doppler, snr as f64 LE)';
  else if ((refusal = checkFrameLimits(ts, det.length / DET_STRIDE, sh.opts.limits)) !== null) problem = refusal.message;
  else if (!detectionsFinite(det)) problem = 'det contains a non-finite value';
  let adsbJson: Buffer | null = null;
  if (problem === null && adsb !== undefined) {
    if (!Array.isArray(adsb) || adsb.length !== (det as Uint8Array).length / DET_STRIDE || !adsb.every(isAdsbEntry)) {
      problem = `adsb must be an array with one null-or-map entry per detection, each nested at most ${ADSB_MAX_DEPTH} levels`;
    } else {
      try {
        adsbJson = Buffer.from(JSON.stringify(adsb));
      } catch {
        // 64-bit integers (BigInt), cycles, absurd nesting: not JSON the tracker could read.
        problem = 'adsb entries must be plain JSON values';
      }
    }
  }
  if (problem !== null) {
    w.lastSeq = seq; // settled (rejected): the node must not resend it
    sh.oweAck(c);
    if (refusal !== null) return reject(sh, c, dropIndex(refusal.reason), refusal.code, problem, seq);
    return reject(sh, c, D_INVALID_FRAME, ErrorCodes.INVALID_FRAME, problem, seq);
  }
  const d = det as Uint8Array;
  const n = d.length / DET_STRIDE;
  const r = writePackedFrame(w, d, n, adsbJson, ts as number, sh.onOverflowDrop);
  if (r === WRITE_FULL) {
    c.pendingFrame = true;
    sh.waitForSpace(c, w);
    return R_BLOCKED;
  }
  if (r === WRITE_TOO_LARGE) {
    // Within max_frame_bytes on the wire, but its ring record (adsb JSON, or the JSON
    // rendering for trackers) exceeds half the ring: it could never be stored.
    w.lastSeq = seq;
    sh.oweAck(c);
    return reject(sh, c, D_FRAME_TOO_LARGE, ErrorCodes.FRAME_TOO_LARGE,
      `frame ${seq} renders to a ring record over ${w.maxRecord} bytes (half the node's ring); send fewer detections or adsb entries per frame`, seq);
  }
  w.lastSeq = seq;
  c.errorStreak = 0;
  sh.wrote(w);
  sh.oweAck(c);
  sh.counters[C_FRAMES_RECEIVED]! += 1;
  sh.counters[C_FRAMES_WRITTEN]! += 1;
  sh.counters[C_DETECTIONS_RECEIVED]! += n;
  if (slot.trace !== null) sh.traceFrame(slot, ts as number, n, d.length, 'written', seq);
  return R_CONTINUE;
}

/**
 * A node's reset of its tracker: a ring record in the frames' sequence, so it is
 * acked, resumed and deduplicated like a frame and reaches the tracker at its
 * place. Counted as a frame received and written (no detections).
 */
function reset(sh: ShardContext, c: Conn, slot: NodeSlot, seq: unknown): number {
  const w = slot.writer!;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) {
    return reject(sh, c, D_INVALID_FRAME, ErrorCodes.INVALID_FRAME, 'seq must be a positive integer');
  }
  if (seq <= w.lastSeq) {
    sh.counters[C_FRAMES_RECEIVED]! += 1;
    sh.counters[D_DUPLICATE]! += 1;
    sh.oweAck(c, true);
    return R_CONTINUE;
  }
  if (seq - w.lastSeq > sh.opts.limits.maxSeqJump) return seqJump(sh, c, seq, w.lastSeq);
  if (writeResetRecord(w, sh.onOverflowDrop) === WRITE_FULL) {
    c.pendingFrame = true;
    sh.waitForSpace(c, w);
    return R_BLOCKED;
  }
  w.lastSeq = seq;
  c.errorStreak = 0;
  sh.wrote(w);
  sh.oweAck(c);
  sh.counters[C_FRAMES_RECEIVED]! += 1;
  sh.counters[C_FRAMES_WRITTEN]! += 1;
  if (slot.trace !== null) sh.traceFrame(slot, w.lastTimestamp, 0, 0, 'reset', seq);
  return R_CONTINUE;
}

/**
 * A seq too far ahead of the resume point: storing it would make every honest
 * later frame a duplicate. Fatal, so the node learns at once (a non-fatal refusal
 * would leave it resending the same seq forever); it reconnects and resumes after
 * welcome.last_seq.
 */
function seqJump(sh: ShardContext, c: Conn, seq: number, last: number): number {
  const message = `seq ${seq} is more than ${sh.opts.limits.maxSeqJump} ahead of the last accepted ${last}; ` +
    'resume after welcome.last_seq (an operator can move the resume point: POST /api/v1/nodes/{id}/resume-point)';
  sh.drop(c, D_SEQ_JUMP, message);
  sh.close(c, 'seq_jump', closeError('seq_jump', message));
  return R_CLOSE;
}

function hello(sh: ShardContext, c: Conn, m: Record<string, unknown>): number {
  const slot = c.binNode;
  if (slot !== null) {
    // Resumed after the claim was answered.
    if (slot.state === NODE_PENDING) return R_BLOCKED;
    if (slot.state !== NODE_GRANTED) return R_CLOSE;
    c.welcomed = true;
    sh.write(c, encodeMessage({
      t: T_WELCOME, v: PROTOCOL_VERSION, node: slot.node, last_seq: slot.writer!.lastSeq,
      max_frame: sh.opts.limits.maxFrameBytes, hb_ms: HEARTBEAT_MS,
    }));
    return R_CONTINUE;
  }
  if (m.t !== T_HELLO) {
    sh.close(c, 'protocol_error', closeError('protocol_error', 'the first message must be a hello'));
    return R_CLOSE;
  }
  if (m.v !== PROTOCOL_VERSION) {
    sh.close(c, 'unsupported_version', closeError('unsupported_version', `protocol version ${show(m.v)} is not supported; this host speaks ${PROTOCOL_VERSION}`));
    return R_CLOSE;
  }
  if (!isValidNodeId(m.node)) {
    sh.close(c, 'protocol_error', closeError('protocol_error', NODE_ID_RULE));
    return R_CLOSE;
  }
  const bad = helloProblem(m);
  if (bad !== null) {
    // A more precise code than the reason's own: the hello's fields are named in it.
    sh.close(c, 'protocol_error', { code: ErrorCodes.INVALID_HELLO, message: bad });
    return R_CLOSE;
  }
  if (typeof m.token !== 'string' || !sh.token.matches(m.node, m.token)) {
    sh.close(c, 'auth_failed', closeError('auth_failed', 'invalid token'));
    return R_CLOSE;
  }
  if (!identityAllows(c.identity, m.node)) {
    sh.close(c, 'auth_failed', closeError('auth_failed', `node ${m.node} does not match the client certificate (CN=${c.identity})`));
    return R_CLOSE;
  }
  sh.authenticated(c);
  c.binNode = sh.claim(c, m.node, 'hello', typeof m.group === 'string' ? m.group : undefined);
  c.pendingFrame = false;
  return R_BLOCKED;
}
