// One handler per line-protocol message: auth on the first parsable message,
// heartbeats, frames routed by node_id into that node's ring.
import {
  LineScan, scanLine, SCAN_OK, SCAN_INVALID_UTF8, T_STRING, T_NUMBER, T_ARRAY, T_NONE,
  K_NODE_ID, K_TOKEN, K_TYPE, K_TIMESTAMP, K_DELAY, K_DOPPLER, K_SNR, K_ADSB,
} from './json-scan.js';
import {
  C_FRAMES_RECEIVED, C_FRAMES_WRITTEN, C_DETECTIONS_RECEIVED, C_HEARTBEATS, dropIndex,
  D_MALFORMED, D_INVALID_UTF8, D_INVALID_FRAME, D_FRAME_TOO_LARGE, D_AUTH_FAILED, D_CONNECTION_CLOSED, D_NODE_REFUSED,
} from '../../telemetry/counters.js';
import { isValidNodeIdBytes, NODE_ID_RULE } from '../../protocol/node-id.js';
import { checkFrameLimits } from '../../protocol/frame-limits.js';
import { writeLineFrame, writeResetRecord, WRITE_FULL, WRITE_TOO_LARGE } from '../../ring/record-codec.js';
import { identityAllows } from '../token.js';
import { integerText } from './integer-text.js';
import { type ShardContext, type Conn, type NodeSlot, R_CONTINUE, R_BLOCKED, R_CLOSE, NODE_PENDING, NODE_GRANTED, NODE_REFUSED } from '../handler-context.js';

const scan = new LineScan();
const HEARTBEAT = Buffer.from('heartbeat');
const RESET = Buffer.from('RESET');

/** `"type":"RESET"` (as a JSON parser reads it: escapes decoded), retina-tracker's reset message. */
function isResetType(buf: Buffer): boolean {
  if (scan.type[K_TYPE] !== T_STRING) return false;
  if (!scan.escaped[K_TYPE]) return bytesEqual(buf, scan.start[K_TYPE]!, scan.end[K_TYPE]!, RESET);
  return stringValue(buf, K_TYPE) === 'RESET';
}

function drop(sh: ShardContext, c: Conn, reason: number, detail: string, node?: string): number {
  sh.drop(c, reason, detail, node);
  return R_CONTINUE;
}

function bytesEqual(a: Uint8Array, as: number, ae: number, b: Uint8Array): boolean {
  if (ae - as !== b.length) return false;
  for (let i = 0; i < b.length; i++) if (a[as + i] !== b[i]) return false;
  return true;
}

function stringValue(buf: Buffer, key: number): string {
  const s = scan.start[key]!;
  const e = scan.end[key]!;
  // Escaped strings are rare: let JSON.parse decode the exact quoted text.
  return scan.escaped[key] ? (JSON.parse(buf.toString('utf8', s - 1, e + 1)) as string) : buf.toString('utf8', s, e);
}

/** Integer timestamps are read straight from the digits; anything else via Number(). */
function numberValue(buf: Buffer, key: number): number {
  const s = scan.start[key]!;
  const e = scan.end[key]!;
  if (scan.count[key] === 1 && e - s <= 15) return integerText(buf, s, e);
  return Number(buf.toString('latin1', s, e));
}

/** The message's node id when it is a valid one (the token to check depends on it), else null. */
function nodeOf(buf: Buffer): string | null {
  if (scan.type[K_NODE_ID] !== T_STRING || scan.escaped[K_NODE_ID]) return null;
  const s = scan.start[K_NODE_ID]!;
  const e = scan.end[K_NODE_ID]!;
  return isValidNodeIdBytes(buf, s, e) ? buf.toString('latin1', s, e) : null;
}

/**
 * May this message claim `node` for the connection? A node with a token of its own
 * only with that token, on this very message, whatever authenticated the connection.
 * Any other node with the shared token, which a connection that showed it need not
 * repeat (a gateway's further nodes).
 */
function mayClaim(sh: ShardContext, c: Conn, buf: Buffer, node: string): boolean {
  const hasToken = scan.type[K_TOKEN] === T_STRING;
  if (sh.token.hasOwn(node)) return hasToken && sh.token.matches(node, stringValue(buf, K_TOKEN));
  if (c.sharedAuthed) return true;
  return hasToken && sh.token.matches(node, stringValue(buf, K_TOKEN));
}

export function handleLineOversize(sh: ShardContext, c: Conn): number {
  return drop(sh, c, D_FRAME_TOO_LARGE, `line longer than ${sh.opts.limits.maxFrameBytes} bytes`);
}

export function handleLine(sh: ShardContext, c: Conn, buf: Buffer, s: number, e: number): number {
  if (s === e) return R_CONTINUE; // blank line: nothing to count
  const err = scanLine(buf, s, e, scan);
  if (err !== SCAN_OK) return drop(sh, c, err === SCAN_INVALID_UTF8 ? D_INVALID_UTF8 : D_MALFORMED, scan.errorMessage);

  const isHeartbeat = scan.type[K_TYPE] === T_STRING && !scan.escaped[K_TYPE]
    && bytesEqual(buf, scan.start[K_TYPE]!, scan.end[K_TYPE]!, HEARTBEAT);

  // The first parsable message must authenticate the connection.
  // A client certificate (TLS) limits the connection to the node it names.
  if (!c.authed) {
    const node = nodeOf(buf);
    if (scan.type[K_TOKEN] !== T_STRING || !sh.token.matches(node, stringValue(buf, K_TOKEN)) || !identityAllows(c.identity, node)) {
      if (!isHeartbeat) drop(sh, c, D_AUTH_FAILED, 'wrong or missing token');
      sh.close(c, 'auth_failed');
      return R_CLOSE;
    }
    // A node with its own token was checked against it; anything else against the shared one.
    c.sharedAuthed = node === null || !sh.token.hasOwn(node);
    sh.authenticated(c);
  }

  if (scan.type[K_NODE_ID] !== T_STRING || scan.escaped[K_NODE_ID]) {
    return isHeartbeat ? R_CONTINUE : drop(sh, c, D_INVALID_FRAME, NODE_ID_RULE);
  }

  let slot: NodeSlot | null = c.lastSlot;
  // Same node as the previous line (the usual case): already validated and routed.
  if (slot === null || !bytesEqual(buf, scan.start[K_NODE_ID]!, scan.end[K_NODE_ID]!, c.lastNodeBytes)) {
    if (!isValidNodeIdBytes(buf, scan.start[K_NODE_ID]!, scan.end[K_NODE_ID]!)) {
      return isHeartbeat ? R_CONTINUE : drop(sh, c, D_INVALID_FRAME, NODE_ID_RULE);
    }
    const node = buf.toString('latin1', scan.start[K_NODE_ID]!, scan.end[K_NODE_ID]!);
    slot = c.nodes.get(node) ?? null;
    if (slot === null) {
      // A new node on this connection (and the certificate's node, if the connection has one).
      if (!identityAllows(c.identity, node) || !mayClaim(sh, c, buf, node)) {
        if (!isHeartbeat) drop(sh, c, D_AUTH_FAILED, 'wrong or missing token', node);
        sh.close(c, 'auth_failed');
        return R_CLOSE;
      }
      slot = sh.claim(c, node, isHeartbeat ? 'heartbeat' : 'frame');
    }
    c.lastSlot = slot;
    c.lastNodeBytes = Buffer.from(node, 'latin1');
  }
  if (slot.state === NODE_REFUSED) {
    if (Date.now() < slot.retryAt!) {
      // Counted, not logged: the refusal itself was logged once.
      if (!isHeartbeat) {
        sh.counters[C_FRAMES_RECEIVED]! += 1;
        sh.counters[D_NODE_REFUSED]! += 1;
      }
      return R_CONTINUE;
    }
    // Already authorised on this connection: ask again without a token.
    c.refusedNodes--;
    slot = sh.claim(c, slot.node, isHeartbeat ? 'heartbeat' : 'frame');
    c.lastSlot = slot;
  }
  if (slot.state === NODE_PENDING) {
    c.pendingFrame = !isHeartbeat;
    return R_BLOCKED;
  }
  if (slot.state !== NODE_GRANTED) {
    if (!isHeartbeat) drop(sh, c, D_CONNECTION_CLOSED, 'connection closing', slot.node);
    return R_CLOSE;
  }

  if (isHeartbeat) {
    sh.counters[C_HEARTBEATS]! += 1;
    sh.sawHeartbeat(slot.node);
    return R_CONTINUE;
  }

  // A node's RESET: passed to its tracker as {"type":"RESET"} at its place among
  // the frames (its other members are of no use to the tracker). Counted as a
  // frame received and written; it carries no detections.
  if (isResetType(buf)) {
    const w = slot.writer!;
    if (writeResetRecord(w, sh.onOverflowDrop) === WRITE_FULL) {
      c.pendingFrame = true;
      sh.waitForSpace(c, w);
      return R_BLOCKED;
    }
    sh.wrote(w);
    sh.counters[C_FRAMES_RECEIVED]! += 1;
    sh.counters[C_FRAMES_WRITTEN]! += 1;
    if (slot.trace !== null) sh.traceFrame(slot, w.lastTimestamp, 0, e - s, 'reset');
    return R_CONTINUE;
  }

  // Frame checks: what would kill or confuse the tracker is rejected here.
  if (scan.duplicateKey) return drop(sh, c, D_INVALID_FRAME, 'duplicate key', slot.node);
  if (scan.type[K_TIMESTAMP] !== T_NUMBER) return drop(sh, c, D_INVALID_FRAME, 'timestamp missing or not a number', slot.node);
  const ts = numberValue(buf, K_TIMESTAMP);
  if (!Number.isFinite(ts) || ts < 0) return drop(sh, c, D_INVALID_FRAME, 'timestamp out of range', slot.node);
  if (scan.type[K_DELAY] !== T_ARRAY || scan.type[K_DOPPLER] !== T_ARRAY || scan.type[K_SNR] !== T_ARRAY) {
    return drop(sh, c, D_INVALID_FRAME, 'delay, doppler and snr must be arrays', slot.node);
  }
  const n = scan.count[K_DELAY]!;
  if (scan.count[K_DOPPLER] !== n || scan.count[K_SNR] !== n) return drop(sh, c, D_INVALID_FRAME, 'delay, doppler and snr differ in length', slot.node);
  if (!scan.uniform[K_DELAY] || !scan.uniform[K_DOPPLER] || !scan.uniform[K_SNR]) return drop(sh, c, D_INVALID_FRAME, 'delay, doppler and snr must hold finite numbers only', slot.node);
  const adsb = scan.type[K_ADSB];
  if (adsb !== T_NONE && (adsb !== T_ARRAY || scan.count[K_ADSB] !== n || !scan.uniform[K_ADSB])) {
    return drop(sh, c, D_INVALID_FRAME, 'adsb must be an array of null-or-object, one per detection', slot.node);
  }
  const refusal = checkFrameLimits(ts, n, sh.opts.limits);
  if (refusal !== null) return drop(sh, c, dropIndex(refusal.reason), refusal.message, slot.node);

  const w = slot.writer!;
  const r = writeLineFrame(w, buf, scan, ts, n, sh.onOverflowDrop);
  // Config keeps ring_bytes >= 2 * max_frame_bytes + 64, so a line always fits; kept for safety.
  if (r === WRITE_TOO_LARGE) return drop(sh, c, D_FRAME_TOO_LARGE, `frame renders to a ring record over ${w.maxRecord} bytes`, slot.node);
  if (r === WRITE_FULL) {
    c.pendingFrame = true;
    sh.waitForSpace(c, w);
    return R_BLOCKED;
  }
  sh.wrote(w);
  sh.counters[C_FRAMES_RECEIVED]! += 1;
  sh.counters[C_FRAMES_WRITTEN]! += 1;
  sh.counters[C_DETECTIONS_RECEIVED]! += n;
  if (slot.trace !== null) sh.traceFrame(slot, ts, n, e - s, 'written');
  return R_CONTINUE;
}
