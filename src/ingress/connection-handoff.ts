// The main thread's half of a node connection: accept, limits, and moving the
// socket's bytes to the owning shard without copying (the chunk's ArrayBuffer is
// transferred). Credit-based back-pressure: the socket is paused while more than
// maxInflightBytes are handed over but not yet framed by the shard.
//
// Node 20 cannot hand a socket to a worker (and passing the fd leaves a main-thread handle
// that can never be released); with Node >= 22.12 `reusePort` per worker could replace this
// module.
import type { Socket } from 'node:net';
import { M_OPEN, M_END, type MainToShard } from '../protocol/thread-messages.js';
import { C_BYTES_RECEIVED, C_CONNECTIONS_ACCEPTED, closeIndex, type CloseReason } from '../telemetry/counters.js';

export interface HandoffLimits {
  maxConnections: number;
  firstMessageTimeoutMs: number;
  idleTimeoutMs: number;
  maxInflightBytes: number;
  /** Replies queued for a peer that does not read them, beyond which it is closed (output_overflow). */
  maxOutputBytes: number;
}

/**
 * A closing connection is read (and dropped) so the peer's FIN arrives and the
 * close completes; a peer that keeps sending past this many bytes is not closing
 * but pumping, and is dropped at once instead of being read at line rate until
 * the kill timer.
 */
const MAX_DRAIN_AFTER_CLOSE = 64 * 1024;

export class ConnHandle {
  inflight = 0;
  paused = false;
  authed = false;
  closeReason: CloseReason | null = null;
  firstTimer: NodeJS.Timeout | null = null;
  killTimer: NodeJS.Timeout | null = null;
  /** Bytes read and dropped after the close began (a closing peer is drained, not decoded). */
  drainedAfterClose = 0;
  /** The shard still holds state for this connection (until S_CLOSED). */
  shardHolds = true;
  socketClosed = false;
  constructor(readonly id: number, readonly socket: Socket, readonly shard: number, readonly remote: string,
    /** The verified client certificate's CN (TLS): the only node id the connection may use. */
    readonly identity: string | null = null) {}
}

/** What the listener learnt before handing the connection over (node-listener.ts). */
export interface AcceptInfo {
  /** The node's address: from the PROXY header, else the socket's. */
  remote: string;
  /** Verified client-certificate CN, if any. */
  identity?: string;
  /** When the TCP connection was accepted (ms epoch): the first-message deadline counts from it. */
  acceptedAt?: number;
}

/** Connections still in the listener (PROXY header, TLS handshake): they count against the limit and close with the rest. */
export interface HandoffUpstream {
  readonly pendingCount: number;
  closePending(reason: CloseReason): void;
}

/** The shards as the handoff uses them (the shard pool is one): the handoff comes before them on the data path. */
export interface ShardChannel {
  readonly size: number;
  /** `shards: 0`: the shard runs on this thread, so bytes are passed as they are, not transferred. */
  readonly inline: boolean;
  isReady(shard: number): boolean;
  send(shard: number, msg: MainToShard): boolean;
  sendData(shard: number, conn: number, buf: Uint8Array, transfer?: ArrayBuffer): boolean;
}

export interface HandoffEvents {
  /** The socket closed (the shard may still be finishing its bytes). */
  onSocketClosed?(h: ConnHandle): void;
  /** The connection is gone on both sides (socket closed and shard released it). */
  onGone?(h: ConnHandle): void;
  /** Bytes read from a node's socket, before they go to the shard (EngineProbe.onSocketRead). */
  onRead?(chunk: Buffer): void;
}

export class ConnectionHandoff {
  readonly conns = new Map<number, ConnHandle>();
  private nextId = 1;
  private readonly perShard: number[];
  private resumeBelow: number;
  refusing: CloseReason | null = null;
  /** The listener in front (set by it). */
  upstream: HandoffUpstream | null = null;

  constructor(
    private readonly pool: ShardChannel,
    private limits: HandoffLimits,
    private readonly counters: Float64Array,
    private readonly events: HandoffEvents = {},
  ) {
    this.perShard = new Array(pool.size).fill(0);
    this.resumeBelow = Math.floor(limits.maxInflightBytes / 2);
  }

  /** The first-message deadline (the listener's PROXY/TLS steps count against it). */
  get firstMessageTimeoutMs(): number {
    return this.limits.firstMessageTimeoutMs;
  }

  /** Reloaded limits: they apply to connections accepted from now on (and to back-pressure at once). */
  setLimits(limits: HandoffLimits): void {
    this.limits = { ...limits };
    this.resumeBelow = Math.floor(limits.maxInflightBytes / 2);
  }

  get open(): number {
    return this.conns.size;
  }

  /** Why a new connection would be refused now (null: it would be accepted). */
  refusal(): CloseReason | null {
    if (this.refusing !== null) return this.refusing;
    return this.conns.size + (this.upstream?.pendingCount ?? 0) >= this.limits.maxConnections ? 'max_connections' : null;
  }

  accept(socket: Socket, info?: AcceptInfo): void {
    const remote = info?.remote ?? `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    const refused = this.refusal();
    if (refused !== null) {
      this.counters[closeIndex(refused)]! += 1;
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    const shard = this.pickShard();
    if (shard < 0) {
      this.counters[closeIndex('shard_crashed')]! += 1;
      socket.destroy();
      return;
    }
    this.counters[C_CONNECTIONS_ACCEPTED]! += 1;
    const h = new ConnHandle(this.nextId++, socket, shard, remote, info?.identity ?? null);
    this.conns.set(h.id, h);
    this.perShard[shard]!++;
    socket.setNoDelay(true);
    this.pool.send(shard, info?.identity !== undefined ? { t: M_OPEN, conn: h.id, remote, identity: info.identity } : { t: M_OPEN, conn: h.id, remote });

    // Time spent in the listener (PROXY header, TLS handshake) counts against the deadline.
    const spent = info?.acceptedAt !== undefined ? Math.max(0, Date.now() - info.acceptedAt) : 0;
    h.firstTimer = setTimeout(() => this.close(h.id, 'first_message_timeout'), Math.max(0, this.limits.firstMessageTimeoutMs - spent));
    h.firstTimer.unref();
    if (this.limits.idleTimeoutMs > 0) {
      socket.setTimeout(this.limits.idleTimeoutMs);
      socket.on('timeout', () => this.close(h.id, 'idle_timeout'));
    }
    socket.on('data', (chunk: Buffer) => this.onData(h, chunk));
    socket.on('error', () => {
      if (h.closeReason === null) h.closeReason = 'socket_error';
    });
    socket.on('close', () => this.onSocketClose(h));
    // The listener pauses a socket it read a PROXY header from.
    if (socket.isPaused()) socket.resume();
  }

  private pickShard(): number {
    let best = -1;
    for (let i = 0; i < this.perShard.length; i++) {
      if (!this.pool.isReady(i)) continue;
      if (best < 0 || this.perShard[i]! < this.perShard[best]!) best = i;
    }
    return best;
  }

  private onData(h: ConnHandle, chunk: Buffer): void {
    this.events.onRead?.(chunk);
    const n = chunk.length;
    this.counters[C_BYTES_RECEIVED]! += n;
    if (h.closeReason !== null) {
      h.drainedAfterClose += n;
      if (h.drainedAfterClose > MAX_DRAIN_AFTER_CLOSE) h.socket.destroy();
      return;
    }
    h.inflight += n;
    let ok: boolean;
    if (this.pool.inline) {
      ok = this.pool.sendData(h.shard, h.id, chunk);
    } else {
      // Each read normally owns its ArrayBuffer: transfer it. Copy only when the
      // chunk is a slice of a larger (pooled) buffer.
      const own = chunk.byteOffset === 0 && chunk.buffer.byteLength === n ? chunk : new Uint8Array(chunk);
      const view = new Uint8Array(own.buffer, own.byteOffset, n);
      ok = this.pool.sendData(h.shard, h.id, view, own.buffer as ArrayBuffer);
    }
    if (!ok) return;
    if (!h.paused && h.inflight > this.limits.maxInflightBytes) {
      h.paused = true;
      h.socket.pause();
      // Back-pressure (its ring is full) is not idleness: the node is not read, so
      // the idle timer would close a node that is only waiting for its tracker.
      if (this.limits.idleTimeoutMs > 0) h.socket.setTimeout(0);
    }
  }

  credit(conn: number, bytes: number): void {
    const h = this.conns.get(conn);
    if (!h) return;
    h.inflight -= bytes;
    if (h.paused && h.inflight <= this.resumeBelow) {
      h.paused = false;
      h.socket.resume();
      if (this.limits.idleTimeoutMs > 0 && h.closeReason === null) h.socket.setTimeout(this.limits.idleTimeoutMs);
    }
  }

  write(conn: number, buf: Uint8Array): void {
    const h = this.conns.get(conn);
    if (!h || h.socketClosed || h.socket.destroyed || h.socket.writableEnded) return;
    if (h.socket.writableLength + buf.byteLength > this.limits.maxOutputBytes) {
      // A peer that does not read its replies cannot be told either: close at once,
      // dropping what is queued, so its replies never grow the host's memory.
      if (h.closeReason === null || h.closeReason === 'socket_error') h.closeReason = 'output_overflow';
      h.socket.destroy();
      return;
    }
    h.socket.write(buf);
  }

  authed(conn: number): void {
    const h = this.conns.get(conn);
    if (!h) return;
    h.authed = true;
    if (h.firstTimer) {
      clearTimeout(h.firstTimer);
      h.firstTimer = null;
    }
  }

  /** Closes after pending writes (an error message, say); forced after a grace period. */
  close(conn: number, reason: CloseReason): void {
    const h = this.conns.get(conn);
    if (!h || h.socketClosed) return;
    if (h.closeReason === null) h.closeReason = reason;
    if (h.firstTimer) {
      clearTimeout(h.firstTimer);
      h.firstTimer = null;
    }
    h.socket.end();
    h.socket.resume(); // drain whatever the peer still sends so 'close' comes
    if (!h.killTimer) {
      h.killTimer = setTimeout(() => h.socket.destroy(), 2000);
      h.killTimer.unref();
    }
  }

  /** Drop the connection at once (its shard died). */
  destroy(conn: number, reason: CloseReason): void {
    const h = this.conns.get(conn);
    if (!h) return;
    if (h.closeReason === null) h.closeReason = reason;
    h.shardHolds = false;
    h.socket.destroy();
  }

  private onSocketClose(h: ConnHandle): void {
    h.socketClosed = true;
    if (h.firstTimer) clearTimeout(h.firstTimer);
    if (h.killTimer) clearTimeout(h.killTimer);
    this.counters[closeIndex(h.closeReason ?? 'peer_closed')]! += 1;
    this.perShard[h.shard]!--;
    if (h.shardHolds) this.pool.send(h.shard, { t: M_END, conn: h.id });
    this.events.onSocketClosed?.(h);
    this.maybeGone(h);
  }

  /** The shard released its state for the connection. */
  released(conn: number): void {
    const h = this.conns.get(conn);
    if (!h) return;
    h.shardHolds = false;
    this.maybeGone(h);
  }

  private maybeGone(h: ConnHandle): void {
    if (!h.socketClosed || h.shardHolds) return;
    this.conns.delete(h.id);
    this.events.onGone?.(h);
  }

  /** Connections of a shard that died. */
  ofShard(shard: number): ConnHandle[] {
    return [...this.conns.values()].filter((h) => h.shard === shard);
  }

  closeAll(reason: CloseReason): void {
    this.upstream?.closePending(reason);
    for (const h of this.conns.values()) this.close(h.id, reason);
  }
}
