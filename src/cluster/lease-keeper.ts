// Keeps this host's node leases alive: the I/O shell around LeaseTable. Two Redis
// connections: commands (acquire, renew, release, publish) and a subscriber that
// hears handover requests for the nodes this host holds. Commands fail fast while
// Redis is unreachable (no offline queue), so the table's clock, not a queue, decides
// when a grant is given up.
import { Redis } from 'ioredis';
import { failFastOptions } from './redis-options.js';
import { NodeLeases, decodeHandover, type AcquireResult } from './node-lease.js';
import { LeaseTable, type LossReason } from './lease-table.js';
import { NO_LEASE_METRICS, type LeaseMetrics } from './lease-metrics.js';
import { RENEW_BATCH_MAX } from './lease-scripts.js';

export interface LeaseKeeperOptions {
  redisUrl: string;
  hostId: string;
  leaseMs: number;
  keyPrefix: string;
  /** The grant is gone (or can no longer be trusted): stop feeding the node now. */
  onLost: (node: string, fence: number, reason: LossReason) => void;
  /** Another host asks for a node this host holds: hand it over, then release(). */
  onHandoverRequest?: (node: string, fence: number, from: string) => void;
  metrics?: LeaseMetrics;
  now?: () => number;
  /** Redis connection trouble, for the log (rate limiting is the caller's). */
  onRedisError?: (err: Error) => void;
}

export type KeeperAcquireResult = AcquireResult | { acquired: false; error: Error };

export class LeaseKeeper {
  private readonly table: LeaseTable;
  private readonly cmd: Redis;
  private readonly sub: Redis;
  private readonly leases: NodeLeases;
  private readonly metrics: LeaseMetrics;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private wakeAt = Infinity;
  private stopped = false;
  private readonly pending = new Map<string, Promise<KeeperAcquireResult>>();

  constructor(private readonly opts: LeaseKeeperOptions) {
    this.table = new LeaseTable(opts.leaseMs);
    this.metrics = opts.metrics ?? NO_LEASE_METRICS;
    this.now = opts.now ?? Date.now;
    const timings = {
      // A hung Redis must fail the renew well inside the lease, so the retry can run.
      commandTimeoutMs: Math.max(50, Math.floor(opts.leaseMs / 6)),
      connectTimeoutMs: Math.max(100, Math.floor(opts.leaseMs / 3)),
      retryMs: Math.max(20, Math.min(1000, Math.floor(opts.leaseMs / 12))),
    };
    this.cmd = new Redis(opts.redisUrl, failFastOptions(timings));
    this.sub = new Redis(opts.redisUrl, failFastOptions({ ...timings, commandTimeoutMs: undefined }));
    const onError = (err: Error) => opts.onRedisError?.(err);
    this.cmd.on('error', onError);
    this.sub.on('error', onError);
    this.leases = new NodeLeases(this.cmd, opts.hostId, opts.leaseMs, opts.keyPrefix);
    this.sub.on('message', (channel: string, message: string) => this.onMessage(channel, message));
    // Subscriptions made while the connection was down are made again when it is back.
    this.sub.on('ready', () => {
      const channels = this.table.owned().map(({ node }) => this.leases.handoverChannel(node));
      if (channels.length > 0) this.sub.subscribe(...channels).catch(() => {});
    });
  }

  get hostId(): string {
    return this.opts.hostId;
  }

  /** The command connection, for other fenced scripts (resume points). */
  get redis(): Redis {
    return this.cmd;
  }

  /** Connects both connections; false when Redis did not answer (they keep trying). */
  async start(): Promise<boolean> {
    const results = await Promise.allSettled([this.cmd.connect(), this.sub.connect()]);
    return results.every((r) => r.status === 'fulfilled');
  }

  /** Whether the command connection is up now. */
  isUp(): boolean {
    return this.cmd.status === 'ready';
  }

  fenceOf(node: string): number | undefined {
    return this.table.fenceOf(node);
  }

  owned(): { node: string; fence: number }[] {
    return this.table.owned();
  }

  /**
   * Takes the node for this host. Held by this host already: its grant. Held by
   * another: that holder and its fence (ask it with requestHandover, or wait for expiry).
   */
  acquire(node: string): Promise<KeeperAcquireResult> {
    const mine = this.table.fenceOf(node);
    if (mine !== undefined) return Promise.resolve({ acquired: true, fence: mine });
    // One attempt per node at a time: a second one would unsubscribe the winner's channel.
    const pending = this.pending.get(node);
    if (pending) return pending;
    const p = this.tryAcquire(node).finally(() => this.pending.delete(node));
    this.pending.set(node, p);
    return p;
  }

  private async tryAcquire(node: string): Promise<KeeperAcquireResult> {
    const channel = this.leases.handoverChannel(node);
    const sentAt = this.now();
    try {
      // Listening before the grant exists: a request can never reach a holder that is deaf to it.
      await this.sub.subscribe(channel);
      const r = await this.leases.acquire(node, this.table.floor(node));
      this.table.seen(node, r.fence);
      if (r.acquired) {
        this.table.acquired(node, r.fence, sentAt);
        this.schedule();
      } else {
        await this.sub.unsubscribe(channel).catch(() => {});
      }
      this.metrics.acquisition(r.acquired ? 'acquired' : 'held');
      return r;
    } catch (err) {
      this.sub.unsubscribe(channel).catch(() => {});
      this.metrics.acquisition('error');
      return { acquired: false, error: err as Error };
    }
  }

  /** Gives the node up (close/drain/handover done). False: it was not ours in Redis any more. */
  async release(node: string): Promise<boolean> {
    const fence = this.table.fenceOf(node);
    if (fence === undefined) return false;
    this.table.released(node, fence);
    this.schedule();
    this.sub.unsubscribe(this.leases.handoverChannel(node)).catch(() => {});
    try {
      return await this.leases.release(node, fence);
    } catch {
      return false; // Redis unreachable: the grant expires by itself.
    }
  }

  /**
   * Frees a grant declared lost (not renewed in time) that Redis may still have, once its
   * node stopped here, so the next host need not wait for it to expire. False: not ours.
   */
  async releaseLost(node: string, fence: number): Promise<boolean> {
    try {
      return await this.leases.release(node, fence);
    } catch {
      return false;
    }
  }

  /** Before a write that matters: whether this host's grant of the node still holds in Redis. */
  async check(node: string): Promise<boolean> {
    const fence = this.table.fenceOf(node);
    if (fence === undefined) return false;
    try {
      return (await this.leases.check(node, fence)) > 0;
    } catch {
      return false;
    }
  }

  /** Asks the node's holder to hand it over: how many hosts received the request (0: none holds it live). */
  async requestHandover(node: string): Promise<number> {
    try {
      const n = await this.leases.requestHandover(node);
      this.metrics.handoverRequested(n > 0 ? 'received' : 'no_listener');
      return n;
    } catch (err) {
      this.metrics.handoverRequested('error');
      throw err;
    }
  }

  /** Releases every lease this host holds (best effort), then closes the connections. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    for (const { node } of this.table.owned()) await this.release(node);
    this.shutdown();
    await Promise.allSettled([this.cmd.quit(), this.sub.quit()]);
    // quit() cannot run while Redis is unreachable; this also cancels the reconnects.
    this.cmd.disconnect();
    this.sub.disconnect();
  }

  /** Stops as a crashed host would: no release, connections dropped; other hosts wait for expiry. */
  abandon(): void {
    this.shutdown();
    this.cmd.disconnect();
    this.sub.disconnect();
  }

  private shutdown(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private onMessage(channel: string, message: string): void {
    const prefix = this.leases.handoverChannel('');
    if (!channel.startsWith(prefix)) return;
    const node = channel.slice(prefix.length);
    const fence = this.table.fenceOf(node);
    const from = decodeHandover(message);
    if (fence === undefined || from === null || from === this.opts.hostId) return;
    this.metrics.handoverReceived();
    this.opts.onHandoverRequest?.(node, fence, from);
  }

  private schedule(): void {
    if (this.stopped) return;
    const at = this.table.nextWakeAt();
    if (at === this.wakeAt && this.timer) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.wakeAt = at;
    if (at === Infinity) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.wakeAt = Infinity;
      this.wake();
    }, Math.max(0, at - this.now()));
    this.timer.unref();
  }

  private wake(): void {
    if (this.stopped) return;
    const renews: { node: string; fence: number }[] = [];
    // Renews due within a third of the period go with this batch: the grants' renews gather
    // into a few Redis calls per period instead of one call per grant.
    for (const a of this.table.due(this.now(), Math.floor(this.table.renewEveryMs / 3))) {
      if (a.kind === 'lost') this.lost(a.node, a.fence, a.reason);
      else renews.push({ node: a.node, fence: a.fence });
    }
    for (let i = 0; i < renews.length; i += RENEW_BATCH_MAX) this.renew(renews.slice(i, i + RENEW_BATCH_MAX));
    this.schedule();
  }

  /** One Redis call renewing a batch of grants; each one's outcome as a single renew's. */
  private renew(batch: { node: string; fence: number }[]): void {
    const sentAt = this.now();
    this.leases.renewMany(batch).then(
      (ok) => {
        batch.forEach((a, i) => {
          if (ok[i]) {
            this.metrics.renewal('ok');
            this.table.renewed(a.node, a.fence, sentAt);
          } else {
            this.metrics.renewal('rejected');
            const lost = this.table.renewRejected(a.node, a.fence);
            if (lost?.kind === 'lost') this.lost(lost.node, lost.fence, lost.reason);
          }
        });
        this.schedule();
      },
      () => {
        const now = this.now();
        for (const a of batch) {
          this.metrics.renewal('error');
          this.table.renewFailed(a.node, a.fence, now);
        }
        this.schedule();
      },
    );
  }

  private lost(node: string, fence: number, reason: LossReason): void {
    this.metrics.loss(reason);
    this.sub.unsubscribe(this.leases.handoverChannel(node)).catch(() => {});
    // A grant Redis may still have (a renew that landed late) is not freed here: the node
    // still feeds a tracker on this host until onLost stopped it (then releaseLost).
    this.opts.onLost(node, fence, reason);
  }
}
