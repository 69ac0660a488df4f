// The main thread's half of a node connection: accept, limits, and moving the
// socket's bytes to the owning shard without copying (the chunk's ArrayBuffer is
// transferred). Credit-based back-pressure: the socket is paused while more than
// maxInflightBytes are handed over but not yet framed by the shard.
//
// Node 20 cannot hand a socket to a worker (and passing the fd leaves a main-thread handle
// that can never be released); with Node >= 22.12 `reusePort` per worker could replace this
// module.
import type { Socket } from 'node:net';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { M_OPEN, M_END, M_DETACH, M_ATTACH, type MainToShard, type DetachedMsg, type ConnState } from '../protocol/thread-messages.js';
import { C_BYTES_RECEIVED, C_CONNECTIONS_ACCEPTED, closeIndex, type CloseReason } from '../telemetry/counters.js';
import { PlacementState, placementPolicy, type Placement, type PlacementPolicy } from './placement.js';
import { ReadTurns, TURN_READ_BYTES } from './read-turns.js';

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

/** A placement move under way: the shard it goes to, and reads and messages held until it arrives, in order. */
interface ConnMove {
  to: number;
  held: (Buffer | (MainToShard & { conn: number }))[];
  /** Back to the same shard (a pause at a frame boundary, see pause()): not a placement move. */
  same?: boolean;
}

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
  /** `shards: auto`: where the connection is decoded and how its rate looks (null: pinned). */
  placement: PlacementState | null = null;
  /** Bytes read since the last placement tick. */
  tickBytes = 0;
  /** A move under way: what arrives meanwhile is held for the new shard. */
  move: ConnMove | null = null;
  /** Bytes read in this event-loop turn (read-turns.ts). */
  turnBytes = 0;
  /** Paused until the next turn: it read its budget in this one. */
  yielded = false;
  constructor(readonly id: number, readonly socket: Socket, public shard: number, readonly remote: string,
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
  /** `shards: auto`: connections start on the main-thread shard and move by their rate. */
  readonly adaptive: boolean;
  /** The main-thread shard (-1: none). */
  readonly inlineShard: number;
  /** A shard on this thread gets bytes as they are, not transferred. */
  isInline(shard: number): boolean;
  isReady(shard: number): boolean;
  /** Starts the worker threads if they are not yet (`shards: auto` starts them on first need). */
  startWorkers?(): Promise<void>;
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
  /**
   * A detached connection's state, before it is attached again: no shard writes its
   * rings now, so their buffers may be replaced (ring renewal).
   */
  onDetached?(state: ConnState): void;
}

export class ConnectionHandoff {
  readonly conns = new Map<number, ConnHandle>();
  private nextId = 1;
  private readonly perShard: number[];
  private resumeBelow: number;
  refusing: CloseReason | null = null;
  /** The listener in front (set by it). */
  upstream: HandoffUpstream | null = null;
  /** Completed placement moves, by destination (radar_ingest_connection_moves_total{to}). */
  readonly moves = { main: 0, shard: 0 };
  private readonly policy: PlacementPolicy;
  private placementTimer: NodeJS.Timeout | null = null;
  private readonly now: () => number;
  /** Main-thread event-loop utilisation at the last placement tick. */
  private elu: EventLoopUtilization | null = null;
  /** Per-turn read budgets: an unpaced connection cannot fill a turn the slow ones wait behind. */
  readonly turns = new ReadTurns<ConnHandle>(TURN_READ_BYTES, (h) => {
    if (!h.paused && !h.socketClosed) h.socket.resume();
  });

  constructor(
    private readonly pool: ShardChannel,
    private limits: HandoffLimits,
    private readonly counters: Float64Array,
    private readonly events: HandoffEvents = {},
    placement: { policy?: Partial<PlacementPolicy>; now?: () => number } = {},
  ) {
    this.perShard = new Array(pool.size).fill(0);
    this.resumeBelow = Math.floor(limits.maxInflightBytes / 2);
    this.policy = placementPolicy(placement.policy);
    this.now = placement.now ?? Date.now;
  }

  /** Starts the placement timer (`shards: auto` only). */
  startPlacement(): void {
    if (!this.pool.adaptive || this.placementTimer) return;
    this.placementTimer = setInterval(() => this.placementTick(), this.policy.tickMs);
    this.placementTimer.unref();
  }

  stopPlacement(): void {
    if (this.placementTimer) clearInterval(this.placementTimer);
    this.placementTimer = null;
  }

  /** Each connection's rate since the last tick decides whether it moves. */
  placementTick(): void {
    const now = this.now();
    const elu = performance.eventLoopUtilization();
    const busy = this.elu !== null && performance.eventLoopUtilization(elu, this.elu).utilization > 0.9;
    this.elu = elu;
    for (const h of this.conns.values()) {
      const p = h.placement;
      if (!p) continue;
      const bytes = h.tickBytes;
      h.tickBytes = 0;
      const to = p.tick(now, bytes, busy);
      if (to === null || h.move !== null || h.closeReason !== null || h.socketClosed || !h.shardHolds) continue;
      const target = this.targetShard(to);
      if (target < 0 || target === h.shard) continue;
      if (!this.pool.send(h.shard, { t: M_DETACH, conn: h.id })) continue;
      p.begin();
      this.perShard[target]!++; // reserved, so moves in one tick spread over the workers
      h.move = { to: target, held: [] };
    }
  }

  /**
   * Detaches the connection at its next frame boundary and attaches it again to the same
   * shard: for that moment no thread writes its rings (events.onDetached). False when it
   * cannot start now (moving, closing, gone).
   */
  pause(conn: number): boolean {
    const h = this.conns.get(conn);
    if (!h || h.move || h.closeReason !== null || h.socketClosed || !h.shardHolds) return false;
    if (!this.pool.send(h.shard, { t: M_DETACH, conn: h.id })) return false;
    this.perShard[h.shard]!++; // given back in detached(), like a move's reservation
    h.move = { to: h.shard, held: [], same: true };
    return true;
  }

  private targetShard(to: Placement): number {
    if (to === 'main') return this.pool.isReady(this.pool.inlineShard) ? this.pool.inlineShard : -1;
    let best = -1;
    for (let i = 0; i < this.perShard.length; i++) {
      if (i === this.pool.inlineShard || !this.pool.isReady(i)) continue;
      if (best < 0 || this.perShard[i]! < this.perShard[best]!) best = i;
    }
    // No worker yet: start them; the connection moves at a tick once one is ready.
    if (best < 0) void this.pool.startWorkers?.();
    return best;
  }

  /** The old shard answered a move: the connection goes on at the new one, or stays. */
  detached(msg: DetachedMsg): void {
    const h = this.conns.get(msg.conn);
    if (!h || !h.move) return;
    const move = h.move;
    h.move = null;
    const from = h.shard;
    if (msg.state !== null) {
      // A closed socket already gave its count back (for `from`); the reservation goes too.
      this.perShard[h.socketClosed ? move.to : from]!--;
      h.shard = move.to;
      const to: Placement = move.to === this.pool.inlineShard ? 'main' : 'shard';
      if (!move.same) {
        this.moves[to]++;
        h.placement?.end(this.now(), to);
      }
      // The partial message is framed again by the new shard, which credits it again.
      if (msg.state.leftover !== null) h.inflight += msg.state.leftover.byteLength;
    } else {
      this.perShard[move.to]!--;
      if (!move.same) h.placement?.end(this.now(), null);
    }
    if (msg.state !== null) {
      this.events.onDetached?.(msg.state);
      const attach: MainToShard = { t: M_ATTACH, conn: h.id, remote: h.remote, state: msg.state };
      if (h.identity !== null) attach.identity = h.identity;
      if (!this.pool.send(h.shard, attach)) {
        // The new shard died in between: the connection's state is gone with the move.
        this.destroy(h.id, 'shard_crashed');
        this.released(h.id);
        return;
      }
    }
    // What arrived during the move, in the order it arrived.
    for (const x of move.held) {
      if (Buffer.isBuffer(x)) this.forward(h, x);
      else this.pool.send(h.shard, x);
    }
  }

  /**
   * A message for a connection's shard (grant, refuse, revoke): held while the
   * connection moves, so it reaches the shard that owns it then. `shard` is used
   * when the connection is already gone.
   */
  sendConn(shard: number, msg: MainToShard & { conn: number }): boolean {
    const h = this.conns.get(msg.conn);
    if (!h) return this.pool.send(shard, msg);
    if (h.move) {
      h.move.held.push(msg);
      return true;
    }
    return this.pool.send(h.shard, msg);
  }

  /** Where a connection is decoded now (null: unknown connection or pinned placement). */
  placementOf(conn: number): { placement: Placement; moves: number; rate_bytes_per_s: number } | null {
    const p = this.conns.get(conn)?.placement;
    if (!p) return null;
    return { placement: p.placement, moves: p.moves.main + p.moves.shard, rate_bytes_per_s: Math.round(p.rate) };
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
    const shard = this.pool.adaptive && this.pool.isReady(this.pool.inlineShard) ? this.pool.inlineShard : this.pickShard();
    if (shard < 0) {
      this.counters[closeIndex('shard_crashed')]! += 1;
      socket.destroy();
      return;
    }
    this.counters[C_CONNECTIONS_ACCEPTED]! += 1;
    const h = new ConnHandle(this.nextId++, socket, shard, remote, info?.identity ?? null);
    this.conns.set(h.id, h);
    this.perShard[shard]!++;
    if (this.pool.adaptive) h.placement = new PlacementState(this.policy, this.now(), shard === this.pool.inlineShard ? 'main' : 'shard');
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
      // Pinned connections go to the workers; the main-thread shard takes them only with `shards: 0`.
      if (!this.pool.isReady(i) || (i === this.pool.inlineShard && this.perShard.length > 1)) continue;
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
    h.tickBytes += n;
    let ok: boolean;
    if (h.move) {
      h.move.held.push(chunk);
      ok = true;
    } else ok = this.forward(h, chunk);
    if (!ok) return;
    // Only where fast and slow connections meet: one moved to a worker for its rate
    // shares the main thread's reads with the slow ones. Pinned placements read as before.
    if (h.placement?.placement === 'shard' && this.turns.read(h, n)) h.socket.pause();
    if (!h.paused && h.inflight > this.limits.maxInflightBytes) {
      h.paused = true;
      h.socket.pause();
      // Back-pressure (its ring is full) is not idleness: the node is not read, so
      // the idle timer would close a node that is only waiting for its tracker.
      if (this.limits.idleTimeoutMs > 0) h.socket.setTimeout(0);
    }
  }

  /** Passes one read to the connection's shard. */
  private forward(h: ConnHandle, chunk: Buffer): boolean {
    const n = chunk.length;
    let ok: boolean;
    if (this.pool.isInline(h.shard)) {
      ok = this.pool.sendData(h.shard, h.id, chunk);
    } else {
      // Each read normally owns its ArrayBuffer: transfer it. Copy only when the
      // chunk is a slice of a larger (pooled) buffer.
      const own = chunk.byteOffset === 0 && chunk.buffer.byteLength === n ? chunk : new Uint8Array(chunk);
      const view = new Uint8Array(own.buffer, own.byteOffset, n);
      ok = this.pool.sendData(h.shard, h.id, view, own.buffer as ArrayBuffer);
    }
    return ok;
  }

  credit(conn: number, bytes: number): void {
    const h = this.conns.get(conn);
    if (!h) return;
    h.inflight -= bytes;
    if (h.paused && h.inflight <= this.resumeBelow) {
      h.paused = false;
      if (!h.yielded) h.socket.resume();
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
    if (h.move) {
      // A move from the dead shard never completes: its reservation and held input go.
      this.perShard[h.move.to]!--;
      if (!h.move.same) h.placement?.end(this.now(), null);
      h.move = null;
    }
    h.socket.destroy();
  }

  private onSocketClose(h: ConnHandle): void {
    h.socketClosed = true;
    if (h.firstTimer) clearTimeout(h.firstTimer);
    if (h.killTimer) clearTimeout(h.killTimer);
    this.counters[closeIndex(h.closeReason ?? 'peer_closed')]! += 1;
    this.perShard[h.shard]!--;
    if (h.shardHolds) this.sendConn(h.shard, { t: M_END, conn: h.id });
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
