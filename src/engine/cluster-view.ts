// The fleet as this host sees it, when a `cluster` section is configured: its heartbeat
// in the host registry, its tracker snapshot for the others, the PING that says
// whether Redis answers (cluster_up, degraded, /readyz), GET /api/v1/cluster and
// GET /api/v1/trackers?scope=cluster.
//
// The fleet's trackers are read from snapshots every host publishes to Redis each
// second, not by asking the other hosts over HTTP: the answer then costs one Redis
// round trip whatever the fleet's size, a slow or dead host cannot hold it up (its
// snapshot simply expires), and hosts need neither reach each other's HTTP port nor
// share the API token. The price is up to a second of staleness.
import type { AddressInfo } from 'node:net';
import type { ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { ClusterConfig } from '../config.js';
import { sendJson, type HttpServer } from '../http/server.js';
import { readAccess } from '../http/auth.js';
import { HostRegistry, type HostList } from '../cluster/host-registry.js';
import {
  defaultAddress, encodeSnapshot, mergeTrackers, type FleetTracker, type HostEntry, type HostRecord,
} from '../cluster/host-record.js';
import { registerFleetMetrics, type FleetMetrics } from '../cluster/fleet-metrics.js';
import type { NodeEntry } from '../nodes/node-table.js';
import type { TrackerSupervisor } from '../tracker/supervisor.js';
import type { InstanceView } from '../tracker/tracker-instance.js';
import type { Logger } from '../telemetry/logger.js';
import type { Check } from './health.js';

/** Redis's PING and the tracker snapshot run on this period. */
export const PING_MS = 1000;
/** A snapshot outlives its host's last publish by this much. */
const SNAPSHOT_TTL_MS = 3 * PING_MS;
/** A dead host stays listed (up: false) for this many of its ttls, then is forgotten. */
const FORGET_TTLS = 6;

export interface ClusterViewOptions {
  cluster: ClusterConfig;
  http: HttpServer;
  apiToken: string;
  openReads: boolean;
  /** This host's node entries. */
  nodes: () => Iterable<NodeEntry>;
  trackers: TrackerSupervisor | null;
  registry: Registry;
  /** The engine's stop (drain) has begun. */
  draining: () => boolean;
  /** Other cluster parts that lost their own Redis connections (agents, leases): degraded too. */
  partsDegraded?: () => boolean;
  log: Logger;
}

/**
 * The nodes this host serves now: those with a connected owner. What other hosts see
 * as its `nodes_owned`.
 */
export function ownedNodes(nodes: Iterable<NodeEntry>): number {
  let n = 0;
  for (const e of nodes) if (e.healthy) n++;
  return n;
}

/** The fleet-facing part of one tracker view. */
export function fleetTracker(v: InstanceView): FleetTracker {
  return {
    node_id: v.node_id, name: v.name, state: v.state, node_connected: v.node_connected, pid: v.pid, port: v.port,
    restarts: v.restarts, frames_fed: v.frames_fed, tracks_written: v.tracks_written, active_tracks: v.active_tracks,
    since: v.since, last_frame_at: v.last_frame_at,
  };
}

const iso = (ms: number): string => new Date(ms).toISOString();

function hostView(h: HostEntry, now: number) {
  return {
    id: h.id, address: h.address, started: iso(h.started), last_seen: iso(h.last_seen), last_seen_ms_ago: Math.max(0, now - h.last_seen),
    nodes_owned: h.nodes_owned, draining: h.draining, up: h.up,
  };
}

export class ClusterView {
  private readonly registry: HostRegistry;
  private readonly metrics: FleetMetrics;
  private readonly started = Date.now();
  private readonly ttlMs: number;
  private address = '';
  private pingOk = false;
  private rttMs: number | null = null;
  private hostsUp = 0;
  private lastList: HostList | null = null;
  private timers: NodeJS.Timeout[] = [];
  private closed = false;
  private lastRedisLog = 0;

  constructor(private readonly opts: ClusterViewOptions) {
    const c = opts.cluster;
    this.ttlMs = c.lease_ms;
    this.registry = new HostRegistry({
      redisUrl: c.redis_url, keyPrefix: c.key_prefix, forgetMs: FORGET_TTLS * this.ttlMs, commandTimeoutMs: PING_MS,
      onRedisError: (err) => this.redisError(err),
      // Checked at once when the connection is (back) up, not at the next period.
      onReady: () => { this.tick().catch(() => {}); },
    });
    this.metrics = registerFleetMetrics(opts.registry, {
      up: () => this.up(), degraded: () => this.degraded(), hostsUp: () => (this.up() ? this.hostsUp : 0),
    });
    const reads = readAccess(opts.apiToken, opts.openReads);
    opts.http.addRoute('GET', '/api/v1/cluster', (_req, res) => this.answerCluster(res), reads);
  }

  get hostId(): string {
    return this.opts.cluster.host_id;
  }

  /** Redis answered the last PING and the connection is up. */
  up(): boolean {
    return this.pingOk && this.registry.connected;
  }

  /** Registry and commands run locally: Redis is unreachable. */
  degraded(): boolean {
    return !this.up() || (this.opts.partsDegraded?.() ?? false);
  }

  /** /readyz: degraded stays ready unless new nodes are refused meanwhile (on_redis_down: refuse). */
  check(): Check {
    if (this.up()) return { ok: true };
    if (this.opts.cluster.on_redis_down === 'refuse') {
      return { ok: false, detail: 'degraded: redis unreachable; new nodes are refused (cluster.on_redis_down: refuse)' };
    }
    return { ok: true, detail: 'degraded: redis unreachable' };
  }

  /** Connects and starts the heartbeat, the PING and the snapshots; the address needs the bound HTTP port. */
  start(http: AddressInfo): void {
    this.address = this.opts.cluster.address ?? defaultAddress(http.address, http.port);
    this.registry.connect();
    const every = (ms: number, f: () => Promise<void>) => {
      const t = setInterval(() => { f().catch(() => {}); }, ms);
      t.unref();
      this.timers.push(t);
    };
    every(PING_MS, () => this.tick());
    every(Math.max(100, Math.floor(this.ttlMs / 3)), () => this.beat());
  }

  /** At the start of a stop: tell the fleet at once that this host drains. */
  drainBegan(): void {
    this.beat().catch(() => {});
  }

  private record(): HostRecord {
    return {
      id: this.hostId, address: this.address, started: this.started, nodes_owned: ownedNodes(this.opts.nodes()),
      draining: this.opts.draining(), ttl_ms: this.ttlMs,
    };
  }

  private async beat(): Promise<void> {
    if (this.closed || !this.registry.connected) return;
    const r = await this.registry.beat(this.record());
    this.hostsUp = r.hostsUp;
  }

  private async tick(): Promise<void> {
    if (this.closed) return;
    try {
      const s = await this.registry.ping();
      this.metrics.rtt(s);
      this.rttMs = s * 1000;
      if (!this.pingOk) {
        this.pingOk = true;
        this.opts.log.info({ host_id: this.hostId }, 'cluster: redis reachable; registry and commands are shared with the fleet');
        await this.beat();
      }
    } catch {
      if (this.pingOk || this.rttMs === null) {
        this.opts.log.warn({ host_id: this.hostId }, 'cluster: redis unreachable; degraded: registry and commands run locally');
        this.rttMs = -1;
      }
      this.pingOk = false;
      return;
    }
    if (this.opts.trackers) {
      const snap = encodeSnapshot(this.hostId, Date.now(), this.opts.trackers.views().map(fleetTracker));
      await this.registry.publishTrackers(this.hostId, snap, SNAPSHOT_TTL_MS);
    }
  }

  private redisError(err: Error): void {
    // ioredis reports every failed reconnect: one line per 10 s is enough to see it.
    const now = Date.now();
    if (now - this.lastRedisLog < 10000) return;
    this.lastRedisLog = now;
    this.opts.log.warn({ err: err.message }, 'cluster: redis connection error');
  }

  /** The hosts now; the last list read when Redis does not answer. */
  private async hosts(): Promise<{ list: HostList | null; fresh: boolean }> {
    try {
      const list = await this.registry.list();
      this.metrics.invalid('host', list.invalid);
      this.lastList = list;
      return { list, fresh: true };
    } catch {
      return { list: this.lastList, fresh: false };
    }
  }

  private selfView() {
    const r = this.record();
    return { id: r.id, address: r.address, started: iso(r.started), nodes_owned: r.nodes_owned, draining: r.draining };
  }

  private async answerCluster(res: ServerResponse): Promise<void> {
    const { list, fresh } = await this.hosts();
    sendJson(res, 200, {
      self: this.selfView(),
      hosts: list ? list.hosts.map((h) => hostView(h, list.now)) : [],
      // Without Redis the list is the last one read (or none): as_of says when.
      hosts_as_of: list ? iso(list.now) : null,
      redis: { up: fresh && this.up(), rtt_ms: this.rttMs !== null && this.rttMs >= 0 ? Math.round(this.rttMs * 1000) / 1000 : null },
      degraded: this.degraded(),
    });
  }

  /** GET /api/v1/trackers?scope=cluster: every host's trackers, with the host holding each and the node's owner. */
  async answerTrackers(res: ServerResponse): Promise<void> {
    const own = this.opts.trackers ? this.opts.trackers.views().map(fleetTracker) : [];
    const byHost = new Map<string, readonly FleetTracker[]>([[this.hostId, own]]);
    const hosts: { id: string; snapshot_at: string | null; truncated: boolean }[] = [{ id: this.hostId, snapshot_at: null, truncated: false }];
    let complete = false;
    try {
      const list = await this.registry.list();
      this.metrics.invalid('host', list.invalid);
      const others = list.hosts.filter((h) => h.up && h.id !== this.hostId).map((h) => h.id);
      const r = await this.registry.readTrackers(others);
      this.metrics.invalid('trackers', r.invalid);
      for (const id of others) {
        const s = r.snapshots.get(id);
        if (s) byHost.set(id, s.trackers);
        hosts.push({ id, snapshot_at: s ? iso(s.at) : null, truncated: s?.truncated ?? false });
      }
      complete = true;
    } catch {
      // Redis unreachable: this host's own trackers, said to be incomplete.
    }
    sendJson(res, 200, { scope: 'cluster', self: this.hostId, complete, hosts, trackers: mergeTrackers(byHost) });
  }

  /** A clean stop: out of the registry at once, connection closed. */
  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    if (this.registry.connected) await this.registry.deregister(this.hostId).catch(() => {});
    await this.registry.close();
  }

  /** Stops as a crashed host would: no deregistration; the fleet sees it go down after its ttl. */
  abandon(): void {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.registry.abandon();
  }
}
