// Nodes known to the host: one ring each, at most one writing connection each.
// Claims for a node are serialised; a claim from a new connection first revokes
// the old writer and waits until its shard confirms it stopped, so a ring never
// has two producers.
import { createRingBuffer, RingReader } from '../ring/ring-reader.js';
import { Lru } from '../util/lru.js';
import { FORMAT_ANY } from '../ring/ring-layout.js';
import { adoptResumePoint, readResumePoint, writeResumePoint } from '../ring/resume-point.js';
import type { PlainError } from '../protocol/errors.js';
import { closeError } from '../protocol/close-reasons.js';
import type { Protocol } from '../protocol/thread-messages.js';
import type { CloseReason, ClaimRefusal } from '../telemetry/counters.js';

export interface NodeInfo {
  node: string;
  remote: string;
  protocol: Protocol;
  first: 'frame' | 'heartbeat' | 'hello';
  group?: string;
}

export type NodeDecision = { accept: true } | { accept: false; reason: string; message: string };

/**
 * Whether this host may feed the node (several hosts: it holds the node's lease). `fence`:
 * the lease's fence (0: unfenced); `resumeSeq`: the fleet's resume point for the node, written
 * to its ring before the grant.
 */
export type OwnershipDecision =
  | { ok: true; fence: number; resumeSeq?: number }
  | { ok: false; reason: 'node_owned_elsewhere' | 'cluster_unavailable'; message: string };

export interface NodeHooks {
  /**
   * A node the host has never seen sent its first message (the provisioning hook).
   * Refusing closes the connection with the message; the node may try again later.
   */
  onUnknownNode?(info: NodeInfo): NodeDecision | Promise<NodeDecision>;
  /**
   * Several hosts: awaited before provisioning and the grant, so no ring is granted and no
   * tracker starts before this host owns the node. Absent: a single host, fence 0.
   */
  onOwnership?(info: NodeInfo, owner: Owner): Promise<OwnershipDecision>;
  onNodeConnected?(node: NodeEntry, info: NodeInfo): void;
  onNodeDisconnected?(node: NodeEntry): void;
  /** Heartbeats (frames are visible as ring writes). */
  onNodeSeen?(node: NodeEntry): void;
  /** The node's ring was released (gone for limits.node_release_ms): forget per-node state. */
  onNodeReleased?(node: NodeEntry): void;
}

export interface Owner {
  shard: number;
  conn: number;
}

export class NodeEntry {
  readonly reader: RingReader;
  owner: Owner | null = null;
  /** The owner's socket is open (false as soon as it closes, before the shard releases it). */
  connected = false;
  connectedAt = 0;
  disconnectedAt = 0;
  lastHeartbeatAt = 0;
  protocol: Protocol | null = null;
  remote = '';
  group: string | undefined;
  /** Cluster: the fence of this host's lease on the node (0: single host, or served unfenced while Redis was down). */
  fence = 0;
  constructor(readonly id: string, readonly ringId: number, ring: SharedArrayBuffer) {
    this.reader = new RingReader(ring);
  }
  /** The ring's memory now (ring-renewal.ts may move it to a fresh buffer). */
  get ring(): SharedArrayBuffer {
    return this.reader.sab;
  }
  /** Passed provisioning (onUnknownNode accepted it), or known from the config. Cleared when its tracker instance is removed. */
  admitted = false;
  /** Frames come from the main thread (an HTTP-polled node): TCP claims are refused. */
  local = false;
  /** The flapping guard banned the node until this time (0: never). */
  bannedUntil = 0;
  /** Connections refused while banned. */
  flapRefusals = 0;
  /** The ring was released: nothing may read or write it any more. */
  released = false;
  /** A node is healthy while an open connection is attached to it. */
  get healthy(): boolean {
    return this.owner !== null && this.connected;
  }
}

export interface NodeTableOptions {
  ringBytes: number;
  /** What the sink accepts in new rings (FORMAT_JSONL: shards encode packed frames as JSON lines). Default FORMAT_ANY. */
  ringFormat?: number;
  hooks: NodeHooks;
  grant(owner: Owner, node: NodeEntry): void;
  refuse(owner: Owner, node: string, error: PlainError, reason?: CloseReason): void;
  /** Ask the owner's shard to stop writing; false when the shard is gone. */
  revoke(owner: Owner, node: string, why?: { reason: 'superseded' | 'shutdown'; message: string }): boolean;
  now?: () => number;
  /** The flapping guard: more than `max` connections of one node within `windowMs` ban it for `banMs` (max 0: off). */
  reconnect?: { max: number; windowMs: number; banMs: number };
  /** Node ids with a ring (limits.max_nodes) and how long a node is gone before its ring is released (limits.node_release_ms, 0: never). */
  limits?: NodeLimits;
  /** Capacity of the per-id LRUs (flapping guard, resume points); default ID_STATE_CAPACITY. */
  idCapacity?: number;
  /** Whether the sink still uses a node's ring (a tracker instance reads it): such a ring is not released. */
  inUse?(node: NodeEntry): boolean;
}

export interface NodeLimits {
  maxNodes: number;
  releaseMs: number;
}

/** Default size of the LRUs that keep per-id state peers can create (ids beyond it are forgotten, oldest first). */
const ID_STATE_CAPACITY = 16384;

export class NodeTable {
  readonly nodes = new Map<string, NodeEntry>();
  /** Entries by ring id; a released ring's id is reused by the next new node. */
  private readonly rings: (NodeEntry | undefined)[] = [];
  private readonly freeRingIds: number[] = [];
  /** Binary nodes' resume points (last_seq) of released rings, restored when the node returns. */
  readonly resumePoints: Lru<string, number>;
  /** Rings released, and the frames taken out of them (totals must not go down when a ring goes). */
  readonly releasedTotals = { nodes: 0, consumed: 0 };
  /** Claims refused, by reason. */
  readonly claimsRefused: Record<ClaimRefusal, number> = { max_nodes: 0, flapping: 0, node_refused: 0, node_owned_elsewhere: 0, cluster_unavailable: 0 };
  /**
   * The flapping guard's history per node id, bounded: a flood of distinct ids forgets
   * the oldest ids' reconnect history first (a node banned long ago may then be let in early).
   */
  private readonly flaps: Lru<string, { times: number[]; lastConn: number; bannedUntil: number }>;
  private readonly revokeWaiters = new Map<string, () => void>();
  /** Claims for one node id run one after another (also before the node exists). */
  private readonly chains = new Map<string, Promise<void>>();
  private readonly opts: NodeTableOptions;
  private readonly now: () => number;

  constructor(opts: NodeTableOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.resumePoints = new Lru(opts.idCapacity ?? ID_STATE_CAPACITY);
    this.flaps = new Lru(opts.idCapacity ?? ID_STATE_CAPACITY);
  }

  /** Every node with a ring. */
  get byRing(): IterableIterator<NodeEntry> {
    return this.nodes.values();
  }

  /** The node that owns ring `ringId` now (a late message may name a released, reused id). */
  ring(ringId: number): NodeEntry | undefined {
    return this.rings[ringId];
  }

  /** Reloaded node limits (a lower max_nodes refuses new nodes only; nodes it already has stay). */
  setLimits(l: NodeLimits): void {
    this.opts.limits = l;
  }

  /** Sizes of the per-id maps (for /metrics: each must stay bounded). */
  mapSizes(): { nodes: number; resume_points: number; flap_guard: number; claims: number } {
    return { nodes: this.nodes.size, resume_points: this.resumePoints.size, flap_guard: this.flaps.size, claims: this.chains.size };
  }

  /** Reloaded flapping-guard settings (bans in force keep their end time). */
  setReconnectGuard(g: { max: number; windowMs: number; banMs: number }): void {
    this.opts.reconnect = g;
  }

  get(id: string): NodeEntry | undefined {
    return this.nodes.get(id);
  }

  /** Whether a claim of the node is queued or running (a first claim has no entry until provisioning admitted it). */
  claimInFlight(id: string): boolean {
    return this.chains.has(id);
  }

  /**
   * The node's entry, created (with its ring) when missing. Entries created here
   * are not admitted: the first claim still goes through onUnknownNode, unless
   * the caller sets `admitted` (a configured tracker's node is known in advance).
   */
  ensure(id: string): NodeEntry {
    let node = this.nodes.get(id);
    if (!node) {
      const ringId = this.freeRingIds.pop() ?? this.rings.length;
      node = new NodeEntry(id, ringId, createRingBuffer(this.opts.ringBytes));
      node.reader.format = this.opts.ringFormat ?? FORMAT_ANY;
      const seq = this.resumePoints.peek(id);
      if (seq !== undefined) {
        node.reader.lastSeq = seq;
        this.resumePoints.delete(id);
      }
      this.rings[ringId] = node;
      this.nodes.set(id, node);
    }
    return node;
  }

  /** A claim (or eviction) of the node is under way: its ring may be granted any moment. */
  claiming(id: string): boolean {
    return this.chains.has(id);
  }

  /** Whether a new node would exceed limits.max_nodes. */
  private full(id: string): boolean {
    const max = this.opts.limits?.maxNodes;
    return max !== undefined && !this.nodes.has(id) && this.nodes.size >= max;
  }

  private refuseClaim(owner: Owner, node: string, reason: ClaimRefusal, message: string): void {
    this.claimsRefused[reason]++;
    this.opts.refuse(owner, node, closeError(reason, message), reason === 'node_refused' ? undefined : reason);
  }

  private refuseFull(owner: Owner, id: string): void {
    this.refuseClaim(owner, id, 'max_nodes', `node ${id} refused: the host already has limits.max_nodes (${this.opts.limits!.maxNodes}) nodes`);
  }

  /**
   * Releases the rings of nodes gone for limits.node_release_ms whose frames have
   * all been taken by the sink (a ring with frames left is kept until they are) and
   * that the sink no longer uses. A binary node's resume point is kept (bounded) and
   * restored when it comes back. Returns how many were released.
   */
  releaseIdle(): number {
    const ms = this.opts.limits?.releaseMs ?? 0;
    if (ms <= 0) return 0;
    const now = this.now();
    let n = 0;
    for (const node of this.nodes.values()) {
      if (node.owner !== null || node.connected || node.local || node.disconnectedAt === 0) continue;
      if (now - node.disconnectedAt < ms || this.chains.has(node.id)) continue;
      if (node.reader.usedBytes !== 0 || this.opts.inUse?.(node)) continue;
      this.release(node);
      n++;
    }
    return n;
  }

  private release(node: NodeEntry): void {
    const seq = node.reader.lastSeq;
    if (seq > 0) this.resumePoints.set(node.id, seq);
    this.releasedTotals.nodes++;
    this.releasedTotals.consumed += node.reader.consumedFrames;
    node.released = true;
    this.nodes.delete(node.id);
    this.rings[node.ringId] = undefined;
    this.freeRingIds.push(node.ringId);
    this.opts.hooks.onNodeReleased?.(node);
  }

  claim(owner: Owner, info: NodeInfo): void {
    const run = async (): Promise<void> => {
      let node = this.nodes.get(info.node);
      const banned = this.flapping(info.node, owner.conn);
      if (banned) {
        if (node) node.flapRefusals++;
        this.refuseClaim(owner, info.node, 'flapping', banned);
        return;
      }
      if (node?.local) {
        this.refuseClaim(owner, info.node, 'node_refused', `node ${info.node} is polled over HTTP (tracker mode "http"); it cannot also push over TCP`);
        return;
      }
      if (!node && this.full(info.node)) {
        this.refuseFull(owner, info.node);
        return;
      }
      let owned: OwnershipDecision = { ok: true, fence: 0 };
      if (this.opts.hooks.onOwnership) {
        try {
          owned = await this.opts.hooks.onOwnership(info, owner);
        } catch (err) {
          owned = { ok: false, reason: 'cluster_unavailable', message: `node ${info.node}: ownership check failed: ${(err as Error).message}` };
        }
        if (!owned.ok) {
          this.refuseClaim(owner, info.node, owned.reason, owned.message);
          return;
        }
        node = this.nodes.get(info.node);
      }
      if (!node || !node.admitted) {
        let decision: NodeDecision = { accept: true };
        try {
          if (this.opts.hooks.onUnknownNode) decision = await this.opts.hooks.onUnknownNode(info);
        } catch (err) {
          decision = { accept: false, reason: 'hook_error', message: `provisioning failed: ${(err as Error).message}` };
        }
        if (!decision.accept) {
          this.refuseClaim(owner, info.node, 'node_refused', decision.message);
          return;
        }
        // Other new nodes may have taken the last places while the hook ran.
        if (this.full(info.node)) {
          this.refuseFull(owner, info.node);
          return;
        }
        node = this.ensure(info.node);
        node.admitted = true;
      }
      node.fence = owned.fence;
      // The fleet's resume point, while no connection of this host writes the ring header.
      if (owned.resumeSeq !== undefined && node.owner === null) adoptResumePoint(node.ring, owned.resumeSeq);
      const old = node.owner;
      if (old && old.conn !== owner.conn) await this.revokeOwner(node, old);
      this.setOwner(node, owner);
      node.connected = true;
      node.connectedAt = this.now();
      node.protocol = info.protocol;
      node.remote = info.remote;
      if (info.group !== undefined) node.group = info.group;
      this.opts.grant(owner, node);
      this.opts.hooks.onNodeConnected?.(node, info);
    };
    const id = info.node;
    const next = (this.chains.get(id) ?? Promise.resolve()).then(run).catch(() => undefined);
    this.chains.set(id, next);
    void next.then(() => {
      if (this.chains.get(id) === next) this.chains.delete(id);
    });
  }

  /**
   * Closes the node's connection (its lease moves to another host, or the host drains).
   * `now`: the current owner stopped writing the ring. `all`: also the owner granted by a
   * claim that was already in flight (it is closed after its grant). No connection: nothing to do.
   */
  evict(id: string, reason: 'superseded' | 'shutdown', message: string): { now: Promise<void>; all: Promise<void> } {
    const run = async (): Promise<void> => {
      const node = this.nodes.get(id);
      if (node?.owner) await this.revokeOwner(node, node.owner, { reason, message });
    };
    // At once (the connection must stop now), and again after the claims in flight.
    const now = run().catch(() => undefined);
    const next = (this.chains.get(id) ?? Promise.resolve()).then(run).catch(() => undefined);
    this.chains.set(id, next);
    void next.then(() => {
      if (this.chains.get(id) === next) this.chains.delete(id);
    });
    return { now, all: Promise.all([now, next]).then(() => undefined) };
  }

  /** Asks the owner's shard to stop writing the node and waits until it confirms (or its shard is gone). */
  private async revokeOwner(node: NodeEntry, old: Owner, why?: { reason: 'superseded' | 'shutdown'; message: string }): Promise<void> {
    const key = `${old.conn}/${node.id}`;
    // Two waits for one revoke (a claim and an eviction) are both woken.
    const prev = this.revokeWaiters.get(key);
    const stopped = new Promise<void>((resolve) => this.revokeWaiters.set(key, prev ? () => { prev(); resolve(); } : resolve));
    if (this.opts.revoke(old, node.id, why)) await stopped;
    else this.revokeWaiters.get(key)?.();
    this.revokeWaiters.delete(key);
    if (node.owner === old) this.detach(node);
  }

  /**
   * Moves a node's resume point (operator action, e.g. after a node renumbered or
   * the host lost its state). Only while no connection owns the node or is claiming
   * it: the owning shard is the ring header's writer then.
   */
  setResumePoint(id: string, seq: number): { previous: number } | 'unknown' | 'connected' {
    const node = this.nodes.get(id);
    if (!node) return 'unknown';
    if (node.owner !== null || this.chains.has(id)) return 'connected';
    const previous = readResumePoint(node.ring);
    writeResumePoint(node.ring, seq);
    return { previous };
  }

  /**
   * Counts a new connection of the node; returns why it is refused while the node
   * is banned for reconnecting too often, else null. Claims from the same
   * connection (a node claimed again) are not reconnects.
   */
  private flapping(id: string, conn: number): string | null {
    const g = this.opts.reconnect;
    if (!g || g.max <= 0) return null;
    const now = this.now();
    let f = this.flaps.get(id);
    if (!f) {
      f = { times: [], lastConn: -1, bannedUntil: 0 };
      this.flaps.set(id, f);
    }
    if (now < f.bannedUntil) {
      return `node ${id} is banned for reconnecting too often (more than ${g.max} connections within ${g.windowMs / 1000} s); try again in ${Math.ceil((f.bannedUntil - now) / 1000)} s`;
    }
    if (f.lastConn === conn) return null;
    f.lastConn = conn;
    f.times = f.times.filter((t) => now - t < g.windowMs);
    f.times.push(now);
    if (f.times.length > g.max) {
      f.bannedUntil = now + g.banMs;
      f.times = [];
      const node = this.nodes.get(id);
      if (node) node.bannedUntil = f.bannedUntil;
      return `node ${id} reconnected more than ${g.max} times within ${g.windowMs / 1000} s: refused for ${g.banMs / 1000} s`;
    }
    return null;
  }

  /** The shard confirmed the connection stopped writing for the node. */
  revoked(conn: number, nodeId: string): void {
    const key = `${conn}/${nodeId}`;
    const w = this.revokeWaiters.get(key);
    if (w) {
      w();
      return;
    }
    const node = this.nodes.get(nodeId);
    if (node && node.owner?.conn === conn) this.detach(node);
  }

  /** A connection is fully released by its shard (or its shard died). */
  connClosed(conn: number, nodeIds: Iterable<string>): void {
    for (const id of nodeIds) this.revoked(conn, id);
  }

  /** The ids of the nodes `conn` owns (for the logs about that connection). */
  nodesOf(conn: number): string[] {
    const owned = this.byConn.get(conn);
    return owned ? [...owned].map((n) => n.id) : [];
  }

  /** The socket of `conn` closed: its nodes are unhealthy now, even if frames are still being written. */
  socketClosed(conn: number): void {
    const owned = this.byConn.get(conn);
    if (!owned) return;
    for (const n of owned) {
      if (n.owner?.conn === conn && n.connected) this.disconnected(n);
    }
  }

  /** Nodes by owning connection: a close touches its own nodes, not all of them (10,000 nodes: 100 us a close). */
  private readonly byConn = new Map<number, Set<NodeEntry>>();

  private setOwner(node: NodeEntry, owner: Owner | null): void {
    const old = node.owner;
    if (old) {
      const set = this.byConn.get(old.conn);
      if (set) {
        set.delete(node);
        if (set.size === 0) this.byConn.delete(old.conn);
      }
    }
    node.owner = owner;
    if (owner) {
      let set = this.byConn.get(owner.conn);
      if (!set) this.byConn.set(owner.conn, (set = new Set()));
      set.add(node);
    }
  }

  seen(nodeId: string): void {
    const node = this.nodes.get(nodeId);
    if (!node) return;
    node.lastHeartbeatAt = this.now();
    this.opts.hooks.onNodeSeen?.(node);
  }

  private detach(node: NodeEntry): void {
    this.setOwner(node, null);
    if (node.connected) this.disconnected(node);
  }

  private disconnected(node: NodeEntry): void {
    node.connected = false;
    node.disconnectedAt = this.now();
    this.opts.hooks.onNodeDisconnected?.(node);
  }
}
