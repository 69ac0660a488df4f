// A shard: owns the protocol state of its connections (framing, auth, decode,
// replies) and writes their frames into the per-node rings. It talks to the main
// thread only through messages (see protocol/thread-messages.ts), so the same class runs in
// a worker thread or, with `shards: 0`, on the main thread.
import type { TransferListItem } from 'node:worker_threads';
import type { PlainError } from '../protocol/errors.js';
import { closeError } from '../protocol/close-reasons.js';
import {
  M_OPEN, M_DATA, M_DATA_BATCH, M_END, M_GRANT, M_REFUSE, M_REVOKE, M_SHUTDOWN, M_CRASH, M_TRACE, M_CONFIG,
  S_BATCH, S_CLAIM, S_REVOKED, S_CLOSE, S_CLOSED, S_AUTH, S_LOG,
  M_DETACH, M_ATTACH, S_DETACHED,
  type MainToShard, type ShardToMain, type BatchMsg, type TraceEvent, type ShardSettings, type AttachMsg,
} from '../protocol/thread-messages.js';
import type { CloseReason } from '../telemetry/counters.js';
import { C_ACKS_SENT, C_FRAMES_RECEIVED, C_DROPPED_BASE, DROP_REASONS, D_CONNECTION_CLOSED, D_NODE_REFUSED, D_RING_OVERFLOW } from '../telemetry/counters.js';
import { RateLimit } from '../telemetry/rate-limit.js';
import { encodeMessage, T_ACK } from '../protocol/binary-protocol.js';
import { RingWriter } from '../ring/ring-writer.js';
import { AckWindow } from './ack-window.js';
import { ackDelay } from './ack-pacing.js';
import { LineFramer, F_NONE, F_MESSAGE, F_OVERSIZE } from './line/line-framer.js';
import { BinaryFramer } from './binary/binary-framer.js';
import { TokenCheck } from './token.js';
import {
  Conn, R_BLOCKED, NODE_GRANTED, NODE_PENDING, NODE_REFUSED, NODE_REVOKED,
  type NodeSlot, type NodeTrace, type ShardContext,
} from './handler-context.js';
import { handleLine, handleLineOversize } from './line/line-handler.js';
import { handleBinary, handleBinaryOversize, sendBinaryError } from './binary/binary-handler.js';
import { movable, restoreConn, takeConnState } from './conn-transfer.js';

export interface ShardOptions extends ShardSettings {
  shardId: number;
  /** This shard's counters (layout: telemetry/counters.ts). */
  counters: Float64Array;
  post: (msg: ShardToMain, transfer?: TransferListItem[]) => void;
  /** Allow M_CRASH (tests only). */
  testHooks?: boolean;
}

/**
 * A node refused on a line connection (which stays open for its other nodes) is
 * claimed again by its first frame after this long: a port may have been freed.
 */
export const REFUSED_RETRY_MS = 10000;
/** Refused nodes a line connection may hold; one more closes it (node_refused). */
export const MAX_REFUSED_NODES = 64;

/**
 * Ack `delivered`: a wait for the sink re-checks after this long even without a
 * notify (a backstop; the consumer notifies on every advance a producer waits for).
 */
export const ACK_WAIT_MS = 1000;

export class Shard implements ShardContext {
  readonly opts: ShardOptions;
  readonly counters: Float64Array;
  /** Replaced on a config reload (M_CONFIG). */
  token: TokenCheck;
  readonly conns = new Map<number, Conn>();
  /** Writers with staged records (each listed once: RingWriter.listed). */
  private dirtyWriters: RingWriter[] = [];
  private readonly ringIds = new Map<RingWriter, number>();
  private credits: number[] = [];
  private writes: (number | Uint8Array)[] = [];
  /** Ring ids whose consumer wants a doorbell, sent with the next batch. */
  private pendingWake: number[] = [];
  private seen = new Set<string>();
  private readonly ackConns = new Set<Conn>();
  /** Active deep traces by node. */
  private readonly traces = new Map<string, NodeTrace>();
  private traceEvents: TraceEvent[] = [];
  /** Rejections are logged (on the main thread) at most 5 per reason per 10 s. */
  private readonly logLimit = new RateLimit(5, 10000);

  constructor(opts: ShardOptions) {
    this.opts = opts;
    this.counters = opts.counters;
    this.token = new TokenCheck(opts.token, opts.tokens);
  }

  handle(msg: MainToShard): void {
    try {
      this.dispatch(msg);
    } catch (err) {
      // The thread is about to die (piscina replaces it). Publish the records already
      // staged: they are counted as received and written, and a binary node's
      // last_seq in the ring header already covers them, so they must be in the ring.
      this.flushWriters();
      throw err;
    }
    this.flush();
  }

  private dispatch(msg: MainToShard): void {
    switch (msg.t) {
      case M_DATA:
        this.data(msg.conn, msg.buf);
        break;
      case M_DATA_BATCH:
        for (let i = 0; i < msg.conns.length; i++) this.data(msg.conns[i]!, msg.bufs[i]!);
        break;
      case M_OPEN:
        this.conns.set(msg.conn, new Conn(msg.conn, msg.remote, msg.identity ?? null));
        break;
      case M_END: {
        const c = this.conns.get(msg.conn);
        if (!c) break;
        c.ended = true;
        this.pump(c);
        break;
      }
      case M_GRANT: {
        const c = this.conns.get(msg.conn);
        const slot = c?.nodes.get(msg.node);
        if (!c || !slot || slot.state !== NODE_PENDING) {
          // The connection went away while the claim was in flight: give it back.
          this.opts.post({ t: S_REVOKED, conn: msg.conn, node: msg.node });
          break;
        }
        slot.state = NODE_GRANTED;
        slot.writer = new RingWriter(msg.ring, this.opts.overflow);
        slot.ringId = msg.ringId;
        this.ringIds.set(slot.writer, msg.ringId);
        if (c.binNode === slot) this.startAcks(c, slot.writer);
        c.blocked = false;
        this.pump(c);
        break;
      }
      case M_REFUSE: {
        const c = this.conns.get(msg.conn);
        const slot = c?.nodes.get(msg.node);
        if (!c || !slot) break;
        slot.state = NODE_REFUSED;
        slot.retryAt = Date.now() + REFUSED_RETRY_MS;
        if (c.pending) {
          // The message that claimed the node: a frame is dropped with the reason.
          c.pending = false;
          this.dropPendingFrame(c, D_NODE_REFUSED);
        }
        c.blocked = false;
        // A gateway's other nodes carry on: only this node's frames are refused. Many
        // refused ids on one connection is an id flood, not a gateway: it is closed.
        // A node owned by another host (or no Redis to ask) must reconnect through the balancer: closed.
        const elsewhere = msg.reason === 'node_owned_elsewhere' || msg.reason === 'cluster_unavailable';
        if (c.proto === 'line' && !elsewhere && ++c.refusedNodes <= MAX_REFUSED_NODES) {
          this.pump(c);
          break;
        }
        this.close(c, msg.reason ?? 'node_refused', msg.error);
        break;
      }
      case M_REVOKE: {
        const c = this.conns.get(msg.conn);
        const slot = c?.nodes.get(msg.node);
        if (c && slot && (slot.state === NODE_GRANTED || slot.state === NODE_PENDING)) {
          this.releaseSlot(slot);
          const reason = msg.reason ?? 'superseded';
          this.close(c, reason, closeError(reason, msg.message ?? `node ${msg.node} connected again on a newer connection`));
        }
        this.opts.post({ t: S_REVOKED, conn: msg.conn, node: msg.node });
        break;
      }
      case M_SHUTDOWN:
        for (const c of this.conns.values()) this.close(c, 'shutdown', closeError('shutdown', 'host is shutting down'));
        break;
      case M_CONFIG:
        // New tokens apply to messages from now on (connections stay open); the
        // frame limit applies to connections opened from now on.
        this.token = new TokenCheck(msg.token, msg.tokens);
        this.opts.limits = msg.limits;
        break;
      case M_TRACE: {
        const t: NodeTrace = { id: msg.id, untilMs: msg.untilMs, left: msg.maxEvents };
        // Traces of nodes that sent nothing until they expired are forgotten here.
        const now = Date.now();
        for (const [node, old] of this.traces) if (now > old.untilMs) this.traces.delete(node);
        this.traces.set(msg.node, t);
        for (const c of this.conns.values()) {
          const slot = c.nodes.get(msg.node);
          if (slot) slot.trace = t;
        }
        break;
      }
      case M_DETACH:
        this.detach(msg.conn);
        break;
      case M_ATTACH:
        this.attach(msg);
        break;
      case M_CRASH:
        if (this.opts.testHooks) setImmediate(() => { throw new Error('shard crash requested by a test'); });
        break;
    }
  }

  /**
   * A placement move: hands the connection's state to the main thread at a frame
   * boundary (rings published, writers dropped), or answers null when it is busy
   * (waiting for a claim or ring space, closing) and stays here.
   */
  private detach(conn: number): void {
    const c = this.conns.get(conn);
    if (!c || movable(c) !== null) {
      this.opts.post({ t: S_DETACHED, conn, state: null });
      return;
    }
    this.sendHeldAck(c);
    this.flush(); // rings published and acks written before the state leaves
    const state = takeConnState(c);
    if (state === null) {
      this.opts.post({ t: S_DETACHED, conn, state: null });
      return;
    }
    for (const slot of c.nodes.values()) {
      for (const [w, id] of this.ringIds) if (id === slot.ringId) this.ringIds.delete(w);
    }
    c.released = true; // a pending waitForSpace callback must not touch it
    this.conns.delete(conn);
    this.ackConns.delete(c);
    const n = c.framer ? c.framer.takeConsumed() : 0;
    if (n > 0) this.credits.push(conn, n);
    this.flush();
    this.opts.post({ t: S_DETACHED, conn, state });
  }

  /** A connection moved here from another shard: its state, then its partial message. */
  private attach(msg: AttachMsg): void {
    const { conn: c, writers } = restoreConn(msg.conn, msg.remote, msg.identity ?? null, msg.state, this.opts.overflow,
      (node) => this.traces.get(node) ?? null);
    for (const [w, id] of writers) this.ringIds.set(w, id);
    this.conns.set(c.id, c);
    // Acks `delivered`: the window of seqs waiting for the sink starts again here (the
    // old shard's entries collapse into one at the ring's head: acks can only come later).
    c.ackWaiting = false;
    const bw = c.binNode?.writer;
    if (bw) this.startAcks(c, bw);
    if (msg.state.leftover !== null && c.framer !== null) {
      const b = msg.state.leftover;
      c.framer.push(Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));
      this.pump(c);
    }
  }

  /** Protocol detection on the first byte: 0x00 starts a binary length prefix. */
  private detect(c: Conn, first: Buffer): void {
    if (first[0] === 0x00) {
      c.proto = 'binary';
      c.framer = new BinaryFramer(this.opts.limits.maxFrameBytes);
    } else {
      c.proto = 'line';
      c.framer = new LineFramer(this.opts.limits.maxFrameBytes);
    }
  }

  /** Frames and handles everything buffered for the connection, until blocked. */
  pump(c: Conn): void {
    const f = c.framer;
    while (f !== null && !c.blocked && !c.closing) {
      // A blocked message is retried as it stands in the framer (msgBuf stays valid).
      const ev = c.pending ? F_MESSAGE : f.next();
      if (ev === F_NONE) break;
      let r: number;
      if (ev === F_MESSAGE) {
        r = c.proto === 'line' ? handleLine(this, c, f.msgBuf, f.msgStart, f.msgEnd)
          : handleBinary(this, c, f.msgBuf, f.msgStart, f.msgEnd);
      } else if (ev === F_OVERSIZE) {
        r = c.proto === 'line' ? handleLineOversize(this, c) : handleBinaryOversize(this, c, (f as BinaryFramer).badLength, false);
      } else {
        r = handleBinaryOversize(this, c, (f as BinaryFramer).badLength, true); // F_FATAL
      }
      if (r === R_BLOCKED) {
        c.pending = true;
        c.blocked = true;
        break;
      }
      c.pending = false;
    }
    if (f !== null) {
      const n = f.takeConsumed();
      if (n > 0) this.credits.push(c.id, n);
    }
    if (c.ended && !c.blocked) this.release(c);
  }

  // ---- used by the protocol handlers -------------------------------------

  /** Claims a node for the connection; the answer (grant/refuse) resumes it. */
  claim(c: Conn, node: string, first: 'frame' | 'heartbeat' | 'hello', group?: string): NodeSlot {
    const slot: NodeSlot = { node, state: NODE_PENDING, writer: null, ringId: -1, trace: this.traces.get(node) ?? null };
    c.nodes.set(node, slot);
    const msg: ShardToMain = { t: S_CLAIM, conn: c.id, node, protocol: c.proto!, first };
    if (group !== undefined) msg.group = group;
    this.opts.post(msg);
    return slot;
  }

  authenticated(c: Conn): void {
    c.authed = true;
    this.opts.post({ t: S_AUTH, conn: c.id, protocol: c.proto! });
  }

  wrote(w: RingWriter): void {
    if (!w.listed) {
      w.listed = true;
      this.dirtyWriters.push(w);
    }
  }

  readonly onOverflowDrop = (n: number): void => {
    this.counters[D_RING_OVERFLOW]! += n;
  };

  /**
   * Blocks the connection until the ring has room. Keeps serving every other
   * connection meanwhile (the wait is asynchronous, never Atomics.wait).
   */
  waitForSpace(c: Conn, w: RingWriter): void {
    this.flushWriters(); // let the consumer see what is already there
    void w.waitForSpace(100).then(() => {
      if (!c.blocked || c.released) return;
      c.blocked = false;
      this.pump(c);
      this.flush();
    });
  }

  /** Counts a frame received and dropped for `reason` (a D_* index), with a rate-limited log. */
  drop(c: Conn, reason: number, detail: string, node?: string): void {
    this.counters[C_FRAMES_RECEIVED]! += 1;
    this.counters[reason]! += 1;
    const name = DROP_REASONS[reason - C_DROPPED_BASE]!;
    const suppressed = this.logLimit.take(name);
    const who = node ?? c.binNode?.node;
    if (suppressed >= 0) this.opts.post({ t: S_LOG, conn: c.id, reason: name, detail, suppressed, ...(who !== undefined ? { node: who } : {}) });
  }

  /** Records a traced frame; ends the trace when its time or event budget is spent. */
  traceFrame(slot: NodeSlot, timestamp: number, detections: number, bytes: number, outcome: string, seq?: number): void {
    const t = slot.trace!;
    if (t.left <= 0 || Date.now() > t.untilMs) {
      slot.trace = null;
      if (this.traces.get(slot.node) === t) this.traces.delete(slot.node);
      return;
    }
    t.left--;
    const ev: TraceEvent = { node: slot.node, id: t.id, timestamp, detections, bytes, outcome };
    if (seq !== undefined) ev.seq = seq;
    this.traceEvents.push(ev);
  }

  sawHeartbeat(node: string): void {
    this.seen.add(node);
  }

  write(c: Conn, buf: Uint8Array): void {
    this.writes.push(c.id, buf);
  }

  oweAck(c: Conn, reply = false): void {
    c.ackOwed = true;
    if (reply) c.ackReply = true;
    this.ackConns.add(c);
  }

  /**
   * A binary node's ring was granted. Nothing above the resume point counts as
   * acked. With acks `delivered`, frames an earlier connection left in the ring
   * are acked to this one once the sink takes them.
   */
  private startAcks(c: Conn, w: RingWriter): void {
    if (w.ackedSeq > w.lastSeq) w.ackedSeq = w.lastSeq;
    if (this.opts.ack !== 'delivered') return;
    c.ackWindow = new AckWindow(w.ackedSeq);
    c.ackWindow.settle(w.headFrames, w.lastSeq);
    // Sent with the batch, after the welcome the grant lets the hello write.
    if (c.ackWindow.size > 0) this.oweAck(c);
  }

  /** Asks the main thread to close the connection (after queued writes). */
  /** Bytes read from a connection. */
  private data(conn: number, bytes: Uint8Array): void {
    const c = this.conns.get(conn);
    if (!c || c.closing) {
      // Bytes for a closing connection are not framed; hand the credit back.
      this.credits.push(conn, bytes.byteLength);
      return;
    }
    const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (c.framer === null) this.detect(c, buf);
    c.framer!.push(buf);
    this.pump(c);
  }

  close(c: Conn, reason: CloseReason, error?: PlainError): void {
    if (c.closing) return;
    c.closing = true;
    c.blocked = false; // nothing more is processed for a closing connection
    if (c.pending) {
      c.pending = false;
      this.dropPendingFrame(c, D_CONNECTION_CLOSED);
    }
    if (error && c.proto === 'binary') sendBinaryError(this, c, error, true);
    const msg: ShardToMain = { t: S_CLOSE, conn: c.id, reason };
    if (error) msg.error = error;
    // Writes queued so far go out before the close request.
    this.flush();
    this.opts.post(msg);
    if (c.ended) this.release(c);
  }

  /** A framed frame that will never be written: count it received and dropped. */
  private dropPendingFrame(c: Conn, reason: number): void {
    if (!c.pendingFrame) return;
    c.pendingFrame = false;
    this.counters[C_FRAMES_RECEIVED]! += 1;
    this.counters[reason]! += 1;
  }

  private releaseSlot(slot: NodeSlot): void {
    if (slot.writer) {
      if (slot.writer.flush()) this.wakeRing(slot.writer);
      this.ringIds.delete(slot.writer);
    }
    slot.state = NODE_REVOKED;
    slot.writer = null;
  }

  private wakeRing(w: RingWriter): void {
    const id = this.ringIds.get(w);
    if (id !== undefined) this.pendingWake.push(id);
  }

  /** The socket is gone and nothing more will be processed: free its claims. */
  private release(c: Conn): void {
    if (c.released) return;
    c.released = true;
    this.sendHeldAck(c);
    if (c.pending) {
      c.pending = false;
      this.dropPendingFrame(c, D_CONNECTION_CLOSED);
    }
    const nodes: string[] = [];
    for (const slot of c.nodes.values()) {
      if (slot.state === NODE_GRANTED || slot.state === NODE_PENDING) nodes.push(slot.node);
      this.releaseSlot(slot);
    }
    if (c.ackOwed) this.sendAck(c); // harmless if the socket is gone
    this.ackConns.delete(c);
    this.conns.delete(c.id);
    this.flush();
    this.opts.post({ t: S_CLOSED, conn: c.id, nodes });
  }

  private flushWriters(): void {
    const list = this.dirtyWriters;
    if (list.length === 0) return;
    this.dirtyWriters = [];
    for (const w of list) {
      w.listed = false;
      if (w.flush()) this.wakeRing(w);
    }
  }

  private sendAck(c: Conn): void {
    const reply = c.ackReply;
    c.ackOwed = false;
    c.ackReply = false;
    const slot = c.binNode;
    if (slot === null) return;
    const w = slot.writer;
    if (c.ackWindow !== null) {
      if (w !== null) {
        c.ackWindow.settle(w.headFrames, w.lastSeq);
        this.ackDelivered(c, w, reply);
      } else if (reply) {
        this.ackSeq(c, c.ackWindow.acked, true);
      }
      return;
    }
    const seq = w ? w.lastSeq : 0;
    if (w) w.ackedSeq = seq;
    this.ackSeq(c, seq, reply);
  }

  /**
   * Acks `seq`: at once when it is a reply or the last ack is ACK_MIN_INTERVAL_MS
   * old, else held back until then (the latest seq only: acks are cumulative).
   */
  private ackSeq(c: Conn, seq: number, now = false): void {
    const t = performance.now();
    const wait = now ? 0 : ackDelay(t, c.lastAckAt);
    if (wait > 0) {
      c.ackHeld = seq;
      // Timers count whole milliseconds from the loop's cached clock: up to 1 ms early.
      c.ackTimer ??= setTimeout(() => this.heldAckDue(c), Math.ceil(wait) + 1);
      return;
    }
    if (c.ackTimer !== null) clearTimeout(c.ackTimer);
    c.ackTimer = null;
    c.ackHeld = null;
    c.lastAckAt = t;
    this.write(c, ackMessage(seq));
    this.counters[C_ACKS_SENT]! += 1;
  }

  /** A held ack goes now (the connection leaves this shard or closes). */
  private sendHeldAck(c: Conn): void {
    if (c.ackHeld !== null) this.ackSeq(c, c.ackHeld, true);
  }

  /** The interval after the last ack has passed: the held ack goes, and with acks `delivered` the sink is watched again. */
  private heldAckDue(c: Conn): void {
    c.ackTimer = null;
    if (c.released) return;
    const w = c.binNode?.writer;
    if (c.ackWindow !== null && w && c.ackHeld !== null) {
      // As far as the sink has taken the frames now.
      c.ackHeld = null;
      this.ackDelivered(c, w, false, true);
    } else this.sendHeldAck(c);
    this.flushSoon();
  }

  /**
   * Ack `delivered`: acks the settled seqs the sink has taken (one ack at most),
   * and while some are left waits (asynchronously) for the sink to take more.
   * `reply`: send an ack even when it did not move; `due`: a held ack's time came.
   */
  private ackDelivered(c: Conn, w: RingWriter, reply: boolean, due = false): void {
    const win = c.ackWindow!;
    const before = win.acked;
    for (;;) {
      const seen = w.deliveredFrames;
      win.advance(seen);
      // While an ack stays held back its timer looks again: no wake-up per delivery meanwhile.
      if (win.size === 0 || c.ackWaiting || (c.ackTimer !== null && !reply && !due)) break;
      const wait = w.waitForDelivered(seen, ACK_WAIT_MS);
      if (wait === null) continue; // it moved meanwhile: look again
      c.ackWaiting = true;
      void wait.then(() => {
        c.ackWaiting = false;
        if (c.released || c.binNode?.writer !== w) return;
        this.ackDelivered(c, w, false);
        this.flushSoon();
      });
      break;
    }
    if (win.acked > before) w.ackedSeq = win.acked;
    if (win.acked > before || reply || due) this.ackSeq(c, win.acked, reply || due);
    // The loop above left the sink unwatched for a held ack's timer, but that ack went
    // at once (its interval had passed before the timer ran) and took the timer with it:
    // with frames still unacked and nothing to look again, watch the sink now.
    if (win.size > 0 && !c.ackWaiting && c.ackTimer === null) this.ackDelivered(c, w, false);
  }

  private flushQueued = false;
  /**
   * A sink pass drains many rings at once, so the acks it releases arrive here
   * together: they leave in one message at the end of the turn, not one each.
   */
  private flushSoon(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => {
      this.flushQueued = false;
      this.flush();
    });
  }

  /** Publishes rings, then acks (an ack never precedes its frames), in one message. */
  flush(): void {
    this.flushWriters();
    for (const c of this.ackConns) {
      if (c.ackOwed && !c.released) this.sendAck(c);
    }
    this.ackConns.clear();
    if (this.credits.length === 0 && this.writes.length === 0 && this.pendingWake.length === 0 && this.seen.size === 0
      && this.traceEvents.length === 0) return;
    const msg: BatchMsg = { t: S_BATCH, credits: this.credits, writes: this.writes, wake: this.pendingWake, seen: [...this.seen], traces: this.traceEvents };
    this.traceEvents = [];
    this.credits = [];
    this.writes = [];
    this.pendingWake = [];
    this.seen.clear();
    this.opts.post(msg);
  }
}

function ackMessage(seq: number): Buffer {
  return encodeMessage({ t: T_ACK, seq });
}
