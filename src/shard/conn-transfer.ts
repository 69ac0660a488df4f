// A connection's protocol state leaving one shard and entering another (placement
// moves between the main thread's shard and a worker). Only a connection at a
// frame boundary moves: no message half handled, no claim in flight, no wait for
// ring space. Its rings travel as the same SharedArrayBuffers: the old shard
// publishes and drops its writers before the state is posted, the new one makes
// writers only after it arrives, so each ring keeps a single writer.
import type { ConnState, SlotState } from '../protocol/thread-messages.js';
import { RingWriter } from '../ring/ring-writer.js';
import type { OverflowPolicy } from '../protocol/thread-messages.js';
import { LineFramer } from './line/line-framer.js';
import { BinaryFramer } from './binary/binary-framer.js';
import { Conn, NODE_GRANTED, NODE_PENDING, type NodeSlot, type NodeTrace } from './handler-context.js';

/**
 * Conn fields that are not plain protocol state: identity (sent with the move),
 * object references rebuilt from the slots, and the processing flags a movable
 * connection has at rest. Every other scalar field moves as it is, so protocol
 * state added to Conn later moves without a change here.
 */
const NOT_COPIED = new Set(['id', 'remote', 'identity', 'proto', 'framer', 'nodes', 'lastSlot', 'lastNodeBytes', 'binNode',
  'pending', 'pendingFrame', 'blocked', 'closing', 'ended', 'released']);

/** Why a connection cannot move now (null: it can). */
export function movable(c: Conn): string | null {
  if (c.closing || c.ended || c.released) return 'closing';
  if (c.pending || c.blocked) return 'blocked';
  for (const s of c.nodes.values()) if (s.state === NODE_PENDING) return 'claiming';
  return null;
}

/**
 * Takes the connection's state. The caller has published its rings; the writers are
 * dropped here. Null (nothing changed) when the framer is mid-skip.
 */
export function takeConnState(c: Conn): ConnState | null {
  const leftover = c.framer ? c.framer.leftover() : Buffer.alloc(0);
  if (leftover === null) return null;
  const fields: ConnState['fields'] = {};
  for (const [k, v] of Object.entries(c)) {
    if (NOT_COPIED.has(k)) continue;
    if (v === null || typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string') fields[k] = v;
  }
  const slots: SlotState[] = [];
  for (const s of c.nodes.values()) {
    const st: SlotState = { node: s.node, state: s.state, ring: s.state === NODE_GRANTED && s.writer ? s.writer.sab : null, ringId: s.ringId };
    if (s.retryAt !== undefined) st.retryAt = s.retryAt;
    slots.push(st);
    s.writer = null;
  }
  return {
    proto: c.proto,
    maxFrameBytes: c.framer ? (c.framer instanceof LineFramer ? c.framer.maxLineBytes : c.framer.maxMessageBytes) : 0,
    fields,
    slots,
    binNode: c.binNode?.node ?? null,
    leftover: leftover.length > 0 ? leftover : null,
  };
}

/** Rebuilds a moved connection; its leftover bytes are pushed by the caller. */
export function restoreConn(id: number, remote: string, identity: string | null, s: ConnState, overflow: OverflowPolicy,
  traceOf: (node: string) => NodeTrace | null): { conn: Conn; writers: [RingWriter, number][] } {
  const c = new Conn(id, remote, identity);
  const rec = c as unknown as Record<string, unknown>;
  for (const [k, v] of Object.entries(s.fields)) if (!NOT_COPIED.has(k) && k in c) rec[k] = v;
  c.proto = s.proto;
  if (s.proto === 'line') c.framer = new LineFramer(s.maxFrameBytes);
  else if (s.proto === 'binary') c.framer = new BinaryFramer(s.maxFrameBytes);
  const writers: [RingWriter, number][] = [];
  for (const st of s.slots) {
    const slot: NodeSlot = { node: st.node, state: st.state, writer: null, ringId: st.ringId, trace: traceOf(st.node) };
    if (st.retryAt !== undefined) slot.retryAt = st.retryAt;
    if (st.ring !== null) {
      slot.writer = new RingWriter(st.ring, overflow);
      writers.push([slot.writer, st.ringId]);
    }
    c.nodes.set(st.node, slot);
  }
  c.binNode = s.binNode !== null ? c.nodes.get(s.binNode) ?? null : null;
  return { conn: c, writers };
}
