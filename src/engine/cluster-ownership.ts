// Node ownership across hosts: the engine's use of the node lease. A node is granted
// (and its tracker started) only after this host holds its lease; a host asked to hand a
// node over closes its connection, delivers what is in its ring, stops its tracker, writes
// the fleet's resume point and only then releases. A lost lease stops the node at once.
// Two hosts therefore never feed trackers for one node at the same time.
import type { Registry } from 'prom-client';
import type { ClusterConfig } from '../config.js';
import type { NodeTable, NodeEntry, NodeInfo, OwnershipDecision } from '../nodes/node-table.js';
import type { TrackerSupervisor } from '../tracker/supervisor.js';
import { RateLimit, type Logger } from '../telemetry/logger.js';
import { LeaseKeeper } from '../cluster/lease-keeper.js';
import { registerLeaseMetrics } from '../cluster/lease-metrics.js';
import type { LossReason } from '../cluster/lease-table.js';
import { ResumeStore, type ResumeWrite } from '../cluster/resume-store.js';
import { registerOwnershipMetrics, type GiveUpReason, type OwnershipMetrics, type TakeoverReason } from '../cluster/ownership-metrics.js';
import { readAckedSeq, readResumePoint } from '../ring/resume-point.js';
import { HEAD64, posFrames } from '../ring/ring-layout.js';
import { discardGivenUp } from './cluster-discard.js';

/**
 * The seq a node's fleet resume point is set to. While the node streams: the last
 * seq acked to it (the node has forgotten those frames; a host crash must not make
 * the next host wait for them, and nothing above it is promised). Once everything
 * in the node's ring was delivered (a handover after the drain): the last seq the
 * host settled, so frames delivered but not yet acked are not fed twice by the next
 * owner. A ring with frames left keeps the acked seq: the node still has them.
 */
export function resumeSeqOf(node: NodeEntry): number {
  const head = posFrames(Atomics.load(new BigUint64Array(node.ring, 0, 2), HEAD64));
  const allDelivered = node.reader.frames === 0 && node.reader.deliveredFrames === (head >>> 0);
  return allDelivered ? readResumePoint(node.ring) : readAckedSeq(node.ring);
}

/** The period of the ownership pass (re-asserting unfenced nodes, releasing leases of released nodes). */
export const RESUME_FLUSH_MS = 150;

/**
 * How often the periodic pass writes the resume points of nodes that progressed (one
 * script call for all of them): once per lease renew period. Only a graceful handover
 * needs the point exact, and it writes its own final one; after a crash the point may
 * lag the acks by up to this much, which costs nothing but resent frames the node
 * still holds (a point never runs ahead of what was settled).
 */
export function resumeWriteEveryMs(leaseMs: number): number {
  return Math.max(RESUME_FLUSH_MS, Math.floor(leaseMs / 3));
}
/** Unfenced nodes re-asserted per pass once Redis is back (bounded work per pass). */
const REASSERT_PER_PASS = 500;
/** Above this many unfenced ids, those whose claim did not end with a node here are forgotten. */
const UNFENCED_PRUNE_AT = 1024;

export interface ClusterOwnershipOptions {
  cluster: ClusterConfig;
  /** How long a claim waits for another host to hand the node over (at least one lease, so a dead holder's expires). */
  firstMessageTimeoutMs: number;
  nodes: NodeTable;
  trackers: TrackerSupervisor | null;
  registry: Registry;
  log: Logger;
  /** Whether the claiming connection is still open (a claim stops waiting for a node whose connection left). */
  connOpen?(conn: number): boolean;
  now?: () => number;
}

interface GivingUp {
  done: Promise<void>;
  /** The lease was lost meanwhile: stop waiting for the ring, stop the tracker now. */
  lost: boolean;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export class ClusterOwnership {
  readonly keeper: LeaseKeeper;
  readonly hostId: string;
  private readonly resume: ResumeStore;
  private readonly metrics: OwnershipMetrics;
  private readonly giving = new Map<string, GivingUp>();
  /** Nodes served while Redis was unreachable (fence 0), re-asserted when it is back. */
  private readonly unfenced = new Set<string>();
  /** The resume seq last written per owned node. */
  private readonly written = new Map<string, number>();
  private readonly now: () => number;
  private readonly logLimit = new RateLimit(10, 10000);
  private timer: NodeJS.Timeout | null = null;
  /** Frames thrown away from the rings of nodes given up (frames_dropped_total{reason="given_up"}). */
  framesDiscarded = 0;
  private ticking = false;
  /** now() of the last periodic resume write. */
  private lastResumeWrite = -Infinity;
  private draining = false;

  constructor(private readonly o: ClusterOwnershipOptions) {
    const c = o.cluster;
    this.hostId = c.host_id;
    this.now = o.now ?? Date.now;
    this.keeper = new LeaseKeeper({
      redisUrl: c.redis_url, hostId: c.host_id, leaseMs: c.lease_ms, keyPrefix: c.key_prefix,
      metrics: registerLeaseMetrics(o.registry),
      onLost: (node, fence, reason) => this.lost(node, fence, reason),
      onHandoverRequest: (node, fence, from) => this.handoverRequested(node, fence, from),
      onRedisError: (err) => this.warn('redis', { err: err.message }, 'cluster: Redis connection trouble'),
      ...(o.now ? { now: o.now } : {}),
    });
    this.resume = new ResumeStore(this.keeper.redis, c.host_id, c.key_prefix);
    this.metrics = registerOwnershipMetrics(o.registry, () => this.unfenced.size);
  }

  private warn(key: string, obj: Record<string, unknown>, msg: string): void {
    const n = this.logLimit.take(key);
    if (n >= 0) this.o.log.warn({ ...obj, suppressed: n }, msg);
  }

  async start(): Promise<void> {
    const up = await this.keeper.start();
    const c = this.o.cluster;
    this.o.log[up ? 'info' : 'warn']({ host_id: c.host_id, lease_ms: c.lease_ms, on_redis_down: c.on_redis_down, redis_up: up },
      up ? 'cluster: connected to Redis' : 'cluster: Redis unreachable at start; retrying');
    this.timer = setInterval(() => void this.tick(), RESUME_FLUSH_MS);
    this.timer.unref();
  }

  /** Nodes this host holds a lease on, with their fences. */
  owned(): { node: string; fence: number }[] {
    return this.keeper.owned();
  }

  /** Whether the node is served unfenced (Redis was unreachable when it connected). */
  isUnfenced(node: string): boolean {
    return this.unfenced.has(node);
  }

  // ---- the claim gate ----

  /** NodeHooks.onOwnership: holds the node's lease before it is granted, or says why not. */
  async decide(info: NodeInfo, conn = -1): Promise<OwnershipDecision> {
    const id = info.node;
    const elsewhere = (message: string): OwnershipDecision => ({ ok: false, reason: 'node_owned_elsewhere', message });
    if (this.draining) return elsewhere(`node ${id}: this host is draining; connect to another host`);
    if (this.giving.has(id)) return elsewhere(`node ${id} is being handed over to another host; reconnect`);
    const mine = this.keeper.fenceOf(id);
    if (mine !== undefined) {
      // Held, but no claim adopted this lease's resume point yet (the one that acquired it was refused): read it now.
      const adopted = this.o.nodes.get(id)?.fence === mine;
      return { ok: true, fence: mine, ...(adopted ? {} : await this.readResume(id)) };
    }
    if (this.unfenced.has(id)) return { ok: true, fence: 0 };
    const lease = this.o.cluster.lease_ms;
    const t0 = this.now();
    // A dead holder's grant expires within one lease of its last renew: wait at least that long.
    const deadline = t0 + Math.min(60000, Math.max(this.o.firstMessageTimeoutMs, Math.ceil((lease * 7) / 6)));
    const step = Math.max(10, Math.floor(lease / 12));
    let holder: string | null = null;
    let heard = false;
    let tries = 0;
    for (;;) {
      const r = await this.keeper.acquire(id);
      if ('error' in r) return this.redisDown(id, r.error);
      if (r.acquired) {
        if (this.draining) {
          void this.keeper.release(id);
          return elsewhere(`node ${id}: this host is draining; connect to another host`);
        }
        if (holder !== null) {
          const reason: TakeoverReason = heard ? 'handover' : 'expired';
          this.metrics.takeover(reason);
          this.o.log.info({ node: id, fence: r.fence, from: holder, reason, waited_ms: this.now() - t0 }, 'cluster: node taken over');
        }
        return { ok: true, fence: r.fence, ...await this.readResume(id) };
      }
      holder ??= r.holder;
      if (conn >= 0 && this.o.connOpen && !this.o.connOpen(conn)) {
        return elsewhere(`node ${id}: the connection closed while host ${r.holder} still owned the node`);
      }
      if (this.now() >= deadline) {
        return elsewhere(`node ${id} is owned by host ${r.holder}, which did not hand it over in time; reconnect`);
      }
      // Asked every step: a holder that was busy (or a request that raced its subscription) hears the next one.
      let n = 0;
      if (r.holder !== this.hostId) {
        n = await this.keeper.requestHandover(id).catch(() => 0);
        if (n > 0) heard = true;
      }
      // A holder that heard us releases within milliseconds to seconds (its ring is delivered
      // first): ask again soon, backing off to the step. A dead holder's lease only expires.
      await sleep(n > 0 ? Math.min(step, 10 * 2 ** tries++) : step);
    }
  }

  /** The fleet's resume point for a node just acquired (absent: Redis has none, or did not answer). */
  private async readResume(id: string): Promise<{ resumeSeq?: number }> {
    // A busy Redis may miss one command timeout; a node resumed from a stale point resends (duplicates).
    for (let attempt = 1; ; attempt++) {
      const r = await this.readResumeOnce(id);
      if (r !== 'retry') return r;
      if (attempt >= 3) {
        this.warn('resume', { node: id }, 'cluster: resume point could not be read from Redis; the node resumes from this host\'s own');
        return {};
      }
    }
  }

  private async readResumeOnce(id: string): Promise<{ resumeSeq?: number } | 'retry'> {
    try {
      const r = await this.resume.read(id);
      if (r === 'none' || r === 'invalid') {
        this.metrics.resumeRead(r);
        if (r === 'invalid') this.warn('resume', { node: id }, 'cluster: malformed resume point in Redis ignored');
        return {};
      }
      this.metrics.resumeRead('found');
      this.written.set(id, r.seq);
      return { resumeSeq: r.seq };
    } catch {
      this.metrics.resumeRead('error');
      return 'retry';
    }
  }

  private redisDown(id: string, err: Error): OwnershipDecision {
    if (this.o.cluster.on_redis_down === 'refuse') {
      return { ok: false, reason: 'cluster_unavailable', message: `node ${id}: Redis is unreachable and cluster.on_redis_down is "refuse"; reconnect later` };
    }
    // Claims refused after this gate (provisioning, max_nodes) leave ids without a node: a flood of ids stays bounded.
    if (this.unfenced.size >= UNFENCED_PRUNE_AT) for (const u of this.unfenced) if (!this.o.nodes.get(u)) this.unfenced.delete(u);
    this.unfenced.add(id);
    this.warn('unfenced', { node: id, err: err.message }, 'cluster: Redis unreachable; node served unfenced (fence 0) until it is back');
    return { ok: true, fence: 0 };
  }

  // ---- giving nodes up ----

  private handoverRequested(node: string, fence: number, from: string): void {
    if (this.giving.has(node)) return;
    this.o.log.info({ node, fence, to: from }, 'cluster: handing node over');
    this.giveUp(node, fence, 'handover', this.handoverBudgetMs());
  }

  /** How long a handover may wait for the ring to reach the tracker and the tracker to stop. */
  private handoverBudgetMs(): number {
    return Math.max(1000, Math.floor(this.o.cluster.lease_ms / 2));
  }

  private lost(node: string, fence: number, reason: LossReason): void {
    const g = this.giving.get(node);
    if (g) {
      g.lost = true;
      return;
    }
    if (reason === 'superseded' && !this.draining) {
      void this.reacquire(node, fence);
      return;
    }
    this.warn('lost', { node, fence, reason }, 'cluster: node lease lost; the node is closed and its tracker stopped');
    this.giveUp(node, fence, 'lost', 0);
  }

  /**
   * Redis said the grant is no longer ours: either another host holds the node now (give
   * it up at once) or the lease is simply gone (Redis restarted empty): then it is
   * re-asserted by compare-and-set and the node keeps flowing under a new fence.
   */
  private async reacquire(node: string, fence: number): Promise<void> {
    const r = await this.keeper.acquire(node);
    const entry = this.o.nodes.get(node);
    if (r.acquired && entry) {
      entry.fence = r.fence;
      this.written.delete(node);
      this.o.log.info({ node, fence: r.fence, previous: fence }, 'cluster: node lease re-asserted after Redis lost it');
      return;
    }
    if (r.acquired) void this.keeper.release(node);
    this.warn('lost', { node, fence, reason: 'superseded' }, 'cluster: node lease lost; the node is closed and its tracker stopped');
    this.giveUp(node, fence, 'lost', 0);
  }

  /**
   * Stops feeding a node: close its connection, (unless lost) wait until its ring is
   * delivered, stop its tracker, write the final resume point, release the lease.
   * `budgetMs` 0: at once, nothing released (the grant is gone already).
   */
  private giveUp(node: string, fence: number, reason: GiveUpReason, budgetMs: number): Promise<void> {
    const state: GivingUp = { done: Promise.resolve(), lost: budgetMs === 0 };
    const until = this.now() + budgetMs;
    const closeReason = reason === 'drain' ? 'shutdown' : 'superseded';
    const message = reason === 'drain' ? 'host is draining: reconnect to another host'
      : reason === 'handover' ? `node ${node} moved to another host: reconnect`
        : `node ${node}: this host no longer owns it: reconnect`;
    state.done = (async () => {
      const evicted = this.o.nodes.evict(node, closeReason, message);
      await evicted.now;
      // A lease lost unrenewed may still be ours in Redis for a while: tell the fleet at once how
      // far the node got (fenced, so refused once another host holds it; never waits for Redis).
      const early = this.o.nodes.get(node);
      if (state.lost && fence > 0 && early) void this.writeFinal(early, fence, resumeSeqOf(early));
      // Claims that passed the gate before are closed too (bounded: a lost lease waits for nothing).
      await Promise.race([evicted.all, sleep(state.lost ? 0 : Math.max(0, until - this.now()))]);
      if (!state.lost) await this.waitFor(() => state.lost || (this.o.nodes.get(node)?.reader.usedBytes ?? 0) === 0, until);
      let stopped = await this.stopTracker(node, state.lost ? this.now() + 2000 : Math.max(until, this.now() + 2000));
      if (!stopped) {
        // A connection still feeds the node here: close it and try once more.
        await this.o.nodes.evict(node, closeReason, message).now;
        stopped = await this.stopTracker(node, this.now() + 2000);
      }
      if (!stopped) {
        // Releasing now could let two hosts feed the node: keep the lease; the next request or loss tries again.
        this.o.log.error({ node, fence, reason }, 'cluster: node could not be stopped; its lease is kept');
        return;
      }
      const entry = this.o.nodes.get(node);
      if (entry) {
        // What the fleet may trust of this host's work, taken before the ring is emptied.
        const seq = resumeSeqOf(entry);
        const frames = discardGivenUp(entry, seq);
        this.framesDiscarded += frames;
        if (frames > 0) this.o.log.info({ node, fence, reason, frames, resume_seq: seq }, 'cluster: frames left in a given-up node\'s ring discarded');
        // Lost: still written, fenced (refused once another host holds the lease).
        if (fence > 0) await this.writeFinal(entry, fence, seq);
      }
      if (fence > 0) await (state.lost ? this.keeper.releaseLost(node, fence) : this.keeper.release(node));
      this.written.delete(node);
      this.unfenced.delete(node);
      this.metrics.givenUp(reason);
      this.o.log.info({ node, fence, reason, lease_lost: state.lost }, 'cluster: node given up');
    })().catch((err: Error) => {
      this.o.log.error({ node, err: err.message }, 'cluster: giving a node up failed');
    }).finally(() => {
      if (this.giving.get(node) === state) this.giving.delete(node);
    });
    this.giving.set(node, state);
    return state.done;
  }

  private async waitFor(cond: () => boolean, until: number): Promise<void> {
    while (!cond() && this.now() < until) await sleep(5);
  }

  /** Stops the node's provisioned tracker and waits until it no longer reads the ring (bounded); false: a connection still owns the node. */
  private async stopTracker(node: string, until: number): Promise<boolean> {
    if (this.o.nodes.get(node)?.healthy) return false;
    const sup = this.o.trackers;
    if (!sup) return true;
    const r = sup.remove(node);
    if (r === 'connected') return false;
    // A configured tracker stays (every host has it); it is fed by no one while the node is elsewhere.
    if (r === 'configured') return true;
    // Removed now, or by an earlier attempt whose tracker is still stopping: until it has
    // stopped it may still be fed from the ring, so the lease must not go yet.
    await this.waitFor(() => !sup.usesRing(node), until);
    return !sup.usesRing(node);
  }

  /** The resume point at give-up; none when no claim adopted this lease yet (the header is an earlier ownership's). */
  private async writeFinal(entry: NodeEntry, fence: number, seq: number): Promise<void> {
    if (entry.fence !== fence) return;
    // The next owner reads it once the lease is released: a missed write would have it resume from an older flush.
    for (let attempt = 1; ; attempt++) {
      const [r = 'error'] = await this.resume.write([{ node: entry.id, fence, seq }]);
      this.metrics.resumeWrites(r, 1);
      if (r !== 'error' || attempt >= 3) return;
    }
  }

  // ---- periodic work ----

  private async tick(): Promise<void> {
    if (this.ticking || !this.keeper.isUp()) return;
    this.ticking = true;
    try {
      await this.flushResume();
      await this.reassert();
    } catch (err) {
      this.warn('tick', { err: (err as Error).message }, 'cluster: periodic pass failed');
    } finally {
      this.ticking = false;
    }
  }

  /** Writes the resume points that moved; releases the leases of nodes whose ring was released. */
  private async flushResume(): Promise<void> {
    const writeNow = this.now() - this.lastResumeWrite >= resumeWriteEveryMs(this.o.cluster.lease_ms);
    const batch: ResumeWrite[] = [];
    for (const { node, fence } of this.keeper.owned()) {
      if (this.giving.has(node)) continue;
      const entry = this.o.nodes.get(node);
      if (!entry) {
        // A first claim has no entry until provisioning admitted the node: its lease is in use.
        if (this.o.nodes.claimInFlight(node)) continue;
        // Gone for limits.node_release_ms: the lease is not kept for it any longer.
        this.written.delete(node);
        void this.keeper.release(node);
        continue;
      }
      // The claim has not adopted this lease's resume point yet: the header is an earlier ownership's.
      if (entry.fence !== fence) continue;
      if (!writeNow) continue;
      const seq = resumeSeqOf(entry);
      if (seq !== this.written.get(node) && seq > 0) batch.push({ node, fence, seq });
    }
    if (writeNow) this.lastResumeWrite = this.now();
    if (batch.length === 0) return;
    const results = await this.resume.write(batch);
    const counts = { ok: 0, fenced: 0, error: 0 };
    results.forEach((r, i) => {
      counts[r]++;
      if (r === 'ok') this.written.set(batch[i]!.node, batch[i]!.seq);
    });
    for (const k of ['ok', 'fenced', 'error'] as const) this.metrics.resumeWrites(k, counts[k]);
  }

  /** Redis is back: unfenced nodes are acquired (compare-and-set); one held elsewhere is given up here. */
  private async reassert(): Promise<void> {
    let n = 0;
    for (const id of [...this.unfenced]) {
      if (n++ >= REASSERT_PER_PASS) break;
      const entry = this.o.nodes.get(id);
      if (!entry || entry.owner === null) {
        this.unfenced.delete(id);
        continue;
      }
      const r = await this.keeper.acquire(id);
      if ('error' in r) return;
      if (!this.unfenced.delete(id)) continue;
      if (r.acquired) {
        entry.fence = r.fence;
        this.o.log.info({ node: id, fence: r.fence }, 'cluster: unfenced node re-asserted');
      } else {
        this.o.log.warn({ node: id, holder: r.holder }, 'cluster: node served unfenced is owned by another host; handing it over');
        this.giveUp(id, 0, 'conflict', 0);
      }
    }
  }

  // ---- drain and stop ----

  /**
   * Drain: hands every node over at cluster.drain_nodes_per_s (close, deliver the ring,
   * stop the tracker, write the resume point, release), until `deadline`. New claims are
   * refused from now on; nodes reconnect through the balancer to other hosts.
   */
  async drain(deadline: number): Promise<{ handedOver: number; left: number }> {
    this.draining = true;
    const nodes = [...this.keeper.owned(), ...[...this.unfenced].map((node) => ({ node, fence: 0 }))];
    const gap = 1000 / this.o.cluster.drain_nodes_per_s;
    const started: Promise<void>[] = [];
    const t0 = this.now();
    let i = 0;
    for (const { node, fence } of nodes) {
      if (this.now() >= deadline) break;
      const at = t0 + i++ * gap;
      if (at > this.now()) await sleep(at - this.now());
      const g = this.giving.get(node);
      started.push(g ? g.done : this.giveUp(node, fence, 'drain', Math.max(0, deadline - this.now())));
    }
    await Promise.race([Promise.all(started), sleep(Math.max(0, deadline - this.now()))]);
    const left = this.keeper.owned().length;
    this.o.log.info({ handed_over: nodes.length - left, left }, 'cluster: drain handed nodes over');
    return { handedOver: nodes.length - left, left };
  }

  /** At the end of shutdown: final resume points of the nodes still held, then every lease released. */
  async stop(): Promise<void> {
    this.draining = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.keeper.isUp()) {
      const batch: ResumeWrite[] = [];
      for (const { node, fence } of this.keeper.owned()) {
        const entry = this.o.nodes.get(node);
        if (entry && entry.fence === fence) batch.push({ node, fence, seq: resumeSeqOf(entry) });
      }
      const results = await this.resume.write(batch).catch(() => []);
      for (const r of results) this.metrics.resumeWrites(r, 1);
    }
    await this.keeper.stop();
  }
}
