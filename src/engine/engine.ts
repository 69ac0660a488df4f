// Wires the ingest data path: TCP accept -> shard (decode, auth, route) -> per-node
// ring -> sink, plus the HTTP listener and metrics. One Engine per process in
// production; tests run several side by side on port 0.
import type { Server, AddressInfo } from 'node:net';
import type { Config } from '../config.js';
import { ShardPool } from '../shard/shard-pool.js';
import { ConnectionHandoff } from '../ingress/connection-handoff.js';
import { NodeListener } from '../ingress/node-listener.js';
import { NodeTable, type NodeHooks, type NodeEntry, type NodeInfo, type Owner } from '../nodes/node-table.js';
import { DiscardSink, type EngineProbe, type RingSink, type SinkAccounting } from '../nodes/ring-sink.js';
import { Metrics, type Totals } from './metrics.js';
import { HttpServer } from '../http/server.js';
import { createLogger, RateLimit, type Logger } from '../telemetry/logger.js';
import { checkDescriptors } from './fd-budget.js';
import { RefusalLog } from '../telemetry/refusal-log.js';
import { COUNTER_SLOTS } from '../telemetry/counters.js';
import { RadarError } from '../protocol/errors.js';
import { AgentService } from '../agents/agent-service.js';
import { TokenCheck } from '../shard/token.js';
import { TrackerSupervisor } from '../tracker/supervisor.js';
import type { ProcReader } from '../tracker/memory-watchdog.js';
import { mountTrackerApi } from '../tracker/tracker-api.js';
import { trackerCommandProblem } from '../tracker/tracker-command.js';
import { mountNodeApi } from '../nodes/node-api.js';
import { mountStatusPage } from '../http/status-page.js';
import { FORMAT_ANY, FORMAT_JSONL } from '../ring/ring-layout.js';
import { M_GRANT, M_REFUSE, M_REVOKE, M_CRASH } from '../protocol/thread-messages.js';
import { nodeLimits, shardLimits, handoffLimits, reconnectGuard } from './component-limits.js';
import { reloadedConfig } from './reload.js';
import { readinessChecks, mountHealth, ingestSources, NO_SOURCE, type Check } from './health.js';
import { drain } from './shutdown.js';
import { onShardMessage, onShardCrash, type ShardEventContext } from './shard-events.js';
import { DeepTraces } from './deep-trace.js';
import { RingOffer } from './ring-sweep.js';
import { RingRenewal } from './ring-renewal.js';
import { WriteHeartbeats } from './agent-liveness.js';
import { ClusterAgents } from './cluster-agents.js';
import { statusFields } from './status-log.js';
import { nodeHooks } from './node-hooks.js';
import { tokenWarnings } from './token-warnings.js';
import { readAccess } from '../http/auth.js';
import { listenAs } from './listen-error.js';
import { PushRegistry } from '../server-mode/push-registry.js';
import { mountPushApi, type PushCounts } from '../server-mode/push-api.js';
import { ClusterView } from './cluster-view.js';
import { ClusterOwnership } from './cluster-ownership.js';
import { withGivenUp } from './cluster-discard.js';
import type { PlacementPolicy } from '../ingress/placement.js';
import { placementMetrics, mountNodeViews } from './placement-view.js';

export interface EngineOptions {
  config: Config;
  /** Consumes the rings; default from config.sink ('discard'). */
  sink?: RingSink;
  hooks?: NodeHooks;
  logger?: Logger;
  /** Enables test-only controls (crashing a shard). */
  testHooks?: boolean;
  /** Internal: placement thresholds for `shards: auto` (tests and benchmarks; see ingress/placement.ts). */
  placement?: Partial<PlacementPolicy>;
  /** Period of the safety sweep that offers non-empty rings to the sink. */
  sweepMs?: number;
  /** Clock for the agent registry and commands (tests inject a fake one). */
  now?: () => number;
  /** Period of the agent sweep (state changes, command expiry, TCP liveness). */
  agentSweepMs?: number;
  /** Test-only fault injection into the tracker supervisor. */
  supervisorFaults?: { probe?(nodeId: string): void; pass?(): void; build?(nodeId: string): void };
  /** Test-only: replaces /proc for the tracker memory ceiling (null = no /proc). */
  procReader?: ProcReader | null;
  /** Observation points for benchmarks (see EngineProbe); none by default. */
  probe?: EngineProbe;
}

export class Engine {
  /** The config in force (replaced by a successful reload). */
  config: Config;
  private nodeToken: TokenCheck;
  private readonly reloads = { ok: 0, error: 0 };
  readonly log: Logger;
  readonly counters = new Float64Array(COUNTER_SLOTS);
  readonly pool: ShardPool;
  readonly handoff: ConnectionHandoff;
  readonly nodes: NodeTable;
  readonly metrics: Metrics;
  readonly http: HttpServer;
  readonly sink: RingSink;
  readonly agents: AgentService;
  /** The fleet's registry and commands in Redis (only with a `cluster` section). */
  readonly clusterAgents: ClusterAgents | null;
  /** Server mode: nodes that run their own tracker and push its output. */
  readonly push: PushRegistry;
  private readonly pushCounts: PushCounts;
  /** The tracker supervisor (sink "trackers"), else null. */
  readonly trackers: TrackerSupervisor | null = null;
  /** The fleet view and Redis health (a `cluster` section), else null. */
  readonly cluster: ClusterView | null = null;
  /** Several hosts (config `cluster`): node leases and the fleet's resume points; null for a single host. */
  readonly ownership: ClusterOwnership | null = null;
  /** Active deep traces (main-thread side: delivery logging). */
  private readonly traces = new DeepTraces();
  private readonly heartbeats = new WriteHeartbeats();
  private readonly rings: RingOffer;
  private renewal: RingRenewal | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private readonly shardEvents: ShardEventContext;
  private agentTimer: NodeJS.Timeout | null = null;
  private statusTimer: NodeJS.Timeout | null = null;
  private tcp: Server | null = null;
  private sweep: NodeJS.Timeout | null = null;
  private readonly errLimit = new RateLimit(10, 10000);
  /** Every node refusal, whatever the id, shares one log rate limit. */
  private readonly refusals: RefusalLog;
  private started = false;
  private stopping: Promise<void> | null = null;
  tcpAddress: AddressInfo | null = null;
  httpAddress: AddressInfo | null = null;
  /** Caught by the process guard (process-guard.ts): radar_ingest_unhandled_errors_total{kind}. */
  readonly unhandled = { rejection: 0, exception: 0 };

  constructor(private readonly opts: EngineOptions) {
    const config = (this.config = opts.config);
    this.log = opts.logger ?? createLogger(config.log.level, config.log.format);
    this.refusals = new RefusalLog(this.log);
    let nodes: NodeTable | null = null;
    if (!opts.sink && config.sink === 'trackers') {
      const problem = trackerCommandProblem(config);
      if (problem) throw problem;
      this.trackers = new TrackerSupervisor({
        config,
        // The node table is created below; the supervisor only uses it after start().
        get nodes() { return nodes!; },
        log: this.log,
        ...(opts.now ? { now: opts.now } : {}),
        ...(opts.supervisorFaults ? { faults: opts.supervisorFaults } : {}),
        ...(opts.procReader !== undefined ? { procReader: opts.procReader } : {}),
        ...(opts.probe ? { probe: opts.probe } : {}),
      });
    }
    this.sink = opts.sink ?? this.trackers ?? new DiscardSink(opts.probe);
    this.rings = new RingOffer(this.sink, this.traces, this.log, (err) => this.logError('sink', err));
    this.pool = new ShardPool({
      shards: config.shards,
      token: config.tcp_server.token,
      tokens: config.tcp_server.tokens,
      limits: shardLimits(config),
      overflow: config.ring.overflow,
      ack: config.tcp_server.ack,
      testHooks: opts.testHooks ?? false,
      onMessage: (shard, msg) => onShardMessage(this.shardEvents, shard, msg),
      onCrash: (shard, err) => onShardCrash(this.shardEvents, shard, err),
    });
    this.handoff = new ConnectionHandoff(this.pool, handoffLimits(config), this.counters, {
      onSocketClosed: (h) => this.nodes.socketClosed(h.id),
      onGone: (h) => this.log.debug({ conn: h.id, remote: h.remote, reason: h.closeReason ?? 'peer_closed' }, 'connection closed'),
      ...(opts.probe?.onSocketRead ? { onRead: opts.probe.onSocketRead.bind(opts.probe) } : {}),
      onDetached: (state) => this.renewal?.onDetached(state),
    }, { ...(opts.placement ? { policy: opts.placement } : {}) });
    this.nodeToken = new TokenCheck(config.tcp_server.token, config.tcp_server.tokens);
    this.agents = new AgentService({
      config,
      ...(opts.now ? { now: opts.now } : {}),
      // Registration always needs a token: a node with none configured cannot register.
      checkNodeToken: (id, token) => !this.nodeToken.disabledFor(id) && this.nodeToken.matches(id, token),
      traceNode: (node, id, durationMs) => this.traceNode(node, id, durationMs),
      nodeStatus: (id) => {
        const n = this.nodes.get(id);
        return {
          bannedUntil: n && n.bannedUntil > Date.now() ? new Date(n.bannedUntil).toISOString() : null,
          remote: n && n.remote !== '' ? n.remote : null,
        };
      },
      log: (level, obj, msg) => this.log[level](obj, msg),
    });
    this.nodes = nodes = new NodeTable({
      ringBytes: config.ring.size_bytes,
      // Trackers read JSON lines: shards encode binary frames as JSON, where per-frame work is cheapest.
      ringFormat: this.trackers ? FORMAT_JSONL : FORMAT_ANY,
      hooks: {
        ...nodeHooks(this.trackers?.hooks ?? {}, opts.hooks, {
          log: this.log,
          agents: this.agents,
          forget: (id) => { this.heartbeats.forget(id); this.traces.delete(id); },
        }),
        ...(config.cluster ? { onOwnership: (info: NodeInfo, owner: Owner) => this.ownership!.decide(info, owner.conn) } : {}),
      },
      limits: nodeLimits(config),
      // Per-id state (flapping guard, resume points) for a few times the nodes the host may have.
      idCapacity: Math.max(1024, 4 * config.limits.max_nodes),
      ...(this.trackers ? { inUse: (n: NodeEntry) => this.trackers!.usesRing(n.id) } : {}),
      grant: (owner, node) => {
        this.handoff.sendConn(owner.shard, { t: M_GRANT, conn: owner.conn, node: node.id, ring: node.ring, ringId: node.ringId });
      },
      refuse: (owner, node, error, reason) => {
        this.refusals.warn({ node, code: error.code, ...(reason ? { reason } : {}) }, error.message);
        this.handoff.sendConn(owner.shard, { t: M_REFUSE, conn: owner.conn, node, error, ...(reason ? { reason } : {}) });
      },
      reconnect: reconnectGuard(config),
      revoke: (owner, node, why) => this.handoff.sendConn(owner.shard, { t: M_REVOKE, conn: owner.conn, node, ...why }),
    });
    this.shardEvents = { handoff: this.handoff, nodes: this.nodes, log: this.log, errLimit: this.errLimit, offer: (n) => this.rings.offer(n) };
    this.metrics = new Metrics({
      counterArrays: () => [this.counters, ...(this.trackers ? [this.trackers.counters] : []), ...this.pool.slots.map((s) => s.counters)],
      sink: () => this.sinkAccounting(),
      reloads: () => this.reloads,
      ...(this.trackers ? { trackers: () => this.trackers!.metrics() } : {}),
      connectionsOpen: () => this.handoff.open,
      rings: () => Array.from(this.nodes.byRing, (n) => ({
        frames: n.reader.frames, consumed: n.reader.consumedFrames, used: n.reader.usedBytes,
        capacity: n.reader.capacity, touched: n.reader.touchedBytes, connected: n.healthy,
      })),
      released: () => this.nodes.releasedTotals,
      ringRenewals: () => this.renewal?.renewed ?? 0,
      claimsRefused: () => this.nodes.claimsRefused,
      idMaps: () => ({ ...this.nodes.mapSizes(), log_limit: this.errLimit.size }),
      shards: () => ({ count: this.pool.size, restarts: this.pool.slots.reduce((s, x) => s + x.restarts, 0) }),
      agents: () => ({
        states: this.agents.registry.counts(), streams: this.agents.hub.size, commands: this.agents.commandCounts,
        refused: this.agents.refused, takeovers: this.agents.takeovers, streamsClosed: this.agents.hub.closedBy,
      }),
      http: () => ({ open: this.http.gate.open, rejected: this.http.rejected() }),
      unhandled: () => this.unhandled,
      push: () => ({ requests: this.pushCounts, lines: this.push.lines, nodes: this.push.size }),
    });
    if (config.cluster) {
      this.ownership = new ClusterOwnership({
        cluster: config.cluster, firstMessageTimeoutMs: config.limits.first_message_timeout_ms,
        nodes: this.nodes, trackers: this.trackers, registry: this.metrics.registry, log: this.log,
        connOpen: (conn) => { const h = this.handoff.conns.get(conn); return h !== undefined && h.closeReason === null && !h.socketClosed; },
      });
    }
    this.clusterAgents = config.cluster ? new ClusterAgents(config.cluster, config, this.agents, this.metrics.registry, this.log) : null;
    const h = config.http;
    this.http = new HttpServer((err) => this.logError('http', err), {
      maxConnections: h.max_connections, maxConnectionsPerSource: h.max_connections_per_source,
      headersTimeoutMs: h.headers_timeout_ms, requestTimeoutMs: h.request_timeout_ms,
    });
    this.http.addRoute('GET', '/metrics', async (_req, res) => {
      const body = await this.metrics.text();
      res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
      res.end(body);
    });
    mountHealth(this.http, () => this.readiness());
    this.agents.mount(this.http);
    mountNodeApi(this.http, this.nodes, config.http.api_token, config.http.max_body_bytes, (msg, obj) => this.log.info(obj, msg));
    mountStatusPage(this.http);
    placementMetrics(this.metrics.registry, this.handoff);
    mountNodeViews(this.http, this.nodes, this.handoff, config.shards === 'auto' ? null : config.shards === 0 ? 'main' : 'shard',
      config.http.api_token, config.http.open_reads);
    if (config.cluster) {
      this.cluster = new ClusterView({
        cluster: config.cluster, http: this.http, apiToken: config.http.api_token, openReads: config.http.open_reads,
        nodes: () => this.nodes.nodes.values(), trackers: this.trackers, registry: this.metrics.registry,
        draining: () => this.stopping !== null, log: this.log,
        partsDegraded: () => (this.clusterAgents?.degraded ?? false) || (this.ownership !== null && !this.ownership.keeper.isUp()),
      });
    }
    if (this.trackers) {
      mountTrackerApi(this.http, this.trackers, config.http.api_token, config.http.open_reads,
        this.cluster ? (res) => this.cluster!.answerTrackers(res) : null);
    }
    this.push = new PushRegistry({ outputDir: config.output_dir, outputDate: config.output_date, apiForward: () => this.config.api_forward, log: this.log, host: config.cluster?.host_id });
    this.pushCounts = mountPushApi(this.http, {
      registry: this.push,
      authenticates: (name, token) => (!this.nodeToken.disabledFor(name) && this.nodeToken.matches(name, token))
        || this.agents.holdsAccessToken(name, token),
      nameTaken: (name) => this.trackers !== null
        && (this.config.trackers.some((t) => t.name === name) || [...this.trackers.instances.values()].some((i) => i.spec.name === name)),
      maxConfigBytes: () => this.config.http.max_body_bytes,
      maxTracksBytes: () => this.config.http.max_track_body_bytes,
      reads: readAccess(config.http.api_token, config.http.open_reads),
    });
  }

  /** The sink's accounting; a sink without one delivered everything it consumed. */
  private sinkAccounting(): SinkAccounting {
    const givenUp = this.ownership?.framesDiscarded ?? 0;
    const a = this.sink.accounting?.();
    if (a) return withGivenUp(a, givenUp, false);
    let consumed = this.nodes.releasedTotals.consumed;
    for (const n of this.nodes.byRing) consumed += n.reader.consumedFrames;
    return withGivenUp({ delivered: consumed, inFlight: 0, dropped: {} }, givenUp, true);
  }

  /**
   * Applies a reloaded config (SIGHUP) without dropping connections: node tokens,
   * limits, the flapping guard, trackers and tracker settings, the log level.
   * Keys that need a restart (reload.ts) keep their old values; they are returned
   * and logged.
   */
  reload(next: Config): { restartRequired: string[] } {
    const { applied, restartRequired } = reloadedConfig(this.config, next);
    // A tracker program that cannot run is refused like any invalid file: the old config stays.
    const problem = this.trackers ? trackerCommandProblem(applied) : null;
    if (problem) {
      this.reloadFailed(problem);
      return { restartRequired: [] };
    }
    this.config = applied;
    this.nodeToken = new TokenCheck(applied.tcp_server.token, applied.tcp_server.tokens);
    this.pool.reconfigure({ token: applied.tcp_server.token, tokens: applied.tcp_server.tokens, limits: shardLimits(applied) });
    this.handoff.setLimits(handoffLimits(applied));
    this.nodes.setReconnectGuard(reconnectGuard(applied));
    this.nodes.setLimits(nodeLimits(applied));
    // The listener's own cap sits above the handoff's limit (the handoff counts refusals itself).
    if (this.tcp) this.tcp.maxConnections = applied.limits.max_connections + 64;
    this.log.level = applied.log.level;
    this.trackers?.reconfigure(applied);
    this.reloads.ok++;
    this.log.info({ ...(restartRequired.length > 0 ? { restart_required: restartRequired } : {}) },
      restartRequired.length > 0 ? 'config reloaded; some changes need a restart and were not applied' : 'config reloaded');
    return { restartRequired };
  }

  /** A reload that failed validation: counted and logged; the config in force stays. */
  reloadFailed(err: Error): void {
    this.reloads.error++;
    this.log.error({ err: err.message }, 'config reload rejected; the previous config stays in force');
  }

  /** Readiness checks (a load balancer should send nodes here only when all pass). */
  readiness(): Record<string, Check> {
    const checks = readinessChecks({
      tcpEnabled: this.config.tcp_server.enabled,
      tcpListening: this.tcp?.listening === true,
      shardsDown: this.pool.shardsDown(),
      draining: this.stopping !== null,
      ...(this.trackers ? { trackers: this.trackers.health() } : {}),
      sources: ingestSources(this.config, this.trackers !== null),
    });
    return this.cluster ? { ...checks, cluster: this.cluster.check() } : checks;
  }

  /** Starts shards, then the TCP and HTTP listeners. */
  async start(): Promise<void> {
    if (this.started) throw new Error('engine already started');
    this.started = true;
    const c = this.config;
    for (const w of tokenWarnings(c.tcp_server)) this.log.warn({ key: 'tcp_server.token' }, w);
    if (ingestSources(c, this.trackers !== null).length === 0) this.log.warn({ key: 'tcp_server.enabled' }, `${NO_SOURCE}; /readyz answers 503`);
    checkDescriptors(c, this.log);
    await this.pool.start();
    await this.ownership?.start();
    await this.clusterAgents?.start();
    this.handoff.startPlacement();
    this.trackers?.start();
    this.httpAddress = await listenAs('http.port', 'http.host', c.http.host, c.http.port, () => this.http.listen(c.http.port, c.http.host));
    this.cluster?.start(this.httpAddress);
    if (c.tcp_server.enabled) {
      // The node port: PROXY header and TLS (if configured), then the handoff.
      const listener = new NodeListener({
        proxyProtocol: c.tcp_server.proxy_protocol, proxyTrusted: c.tcp_server.proxy_trusted, tls: c.tcp_server.tls,
        handoff: this.handoff, counters: this.counters, log: this.log,
      });
      this.tcp = listener.server;
      this.tcpAddress = await listenAs('tcp_server.port', 'tcp_server.host', c.tcp_server.host, c.tcp_server.port,
        () => listener.listen(c.tcp_server.port, c.tcp_server.host, c.limits.max_connections));
    }
    const sweepMs = this.opts.sweepMs ?? 200;
    this.sweep = setInterval(() => this.rings.sweep(this.nodes), sweepMs);
    this.sweep.unref();
    this.renewal = new RingRenewal(this.nodes, this.handoff, c.ring.renew_after_ms);
    if (c.ring.renew_after_ms > 0) {
      this.renewTimer = setInterval(() => this.renewal!.tick(), Math.min(1000, Math.max(50, c.ring.renew_after_ms / 4)));
      this.renewTimer.unref();
    }
    this.agentTimer = setInterval(() => this.sweepAgents(), this.opts.agentSweepMs ?? 1000);
    this.agentTimer.unref();
    if (c.status_interval_sec > 0) {
      this.statusTimer = setInterval(() => this.logStatus(), c.status_interval_sec * 1000);
      this.statusTimer.unref();
    }
    if (this.agents.signer.created) this.log.info({ key_file: c.agents.key_file }, 'generated the command-signing key');
    this.log.info({
      tcp: this.tcpAddress ? `${this.tcpAddress.address}:${this.tcpAddress.port}` : 'disabled',
      http: `${this.httpAddress.address}:${this.httpAddress.port}`,
      shards: c.shards, sink: c.sink, ring_bytes: c.ring.size_bytes, overflow: c.ring.overflow,
      proxy_protocol: c.tcp_server.proxy_protocol, tls: c.tcp_server.tls.enabled ? `on (client_cert: ${c.tcp_server.tls.client_cert})` : 'off',
    }, 'radar-ingest started');
  }

  private logStatus(): void {
    this.log.info(statusFields(this.totals(), this.handoff.open, this.nodes.nodes.size, this.trackers?.metrics(), this.trackers?.trackSummaries()), 'status');
  }

  /** Rings of nodes gone long enough are released; traces end; frames count as heartbeats; agent/command states move on. */
  private sweepAgents(): void {
    this.nodes.releaseIdle();
    this.traces.expire(Date.now());
    this.heartbeats.sweep(this.nodes, this.agents);
    this.agents.sweep();
  }

  /** deep-trace: every shard logs the node's frames with the command's id, bounded in time and count. */
  traceNode(node: string, id: string, durationMs: number): void {
    this.traces.start(this.pool, this.log, node, id, durationMs, this.config.agents.deep_trace_max_ms);
  }

  private logError(where: string, err: Error): void {
    const n = this.errLimit.take(where);
    if (n >= 0) this.log.error({ where, err: err.message, code: err instanceof RadarError ? err.code : undefined, suppressed: n }, 'error');
  }

  /** Test hook: make a shard thread throw an uncaught exception. */
  crashShard(shard: number): void {
    if (!this.opts.testHooks) throw new Error('crashShard needs testHooks');
    this.pool.send(shard, { t: M_CRASH });
  }

  totals(): Totals {
    return this.metrics.totals();
  }

  /** Stops listeners, closes node connections and shards (shutdown.ts). Idempotent. */
  stop(): Promise<void> {
    if (!this.stopping) {
      const engine = this;
      this.stopping = drain({
        // Read when used: a reload or the end of start() during the grace period still counts.
        get config() { return engine.config; },
        get tcp() { return engine.tcp; },
        log: this.log, started: this.started, handoff: this.handoff, pool: this.pool,
        trackers: this.trackers, sink: this.sink, http: this.http, push: this.push, totals: () => this.totals(),
        ...(this.ownership ? { handOver: (d: number) => this.ownership!.drain(d), leaveCluster: () => this.ownership!.stop() } : {}),
        stopBackground: () => {
          if (this.agentTimer) clearInterval(this.agentTimer);
          if (this.statusTimer) clearInterval(this.statusTimer);
          this.handoff.stopPlacement();
          this.refusals.close();
          this.agents.close();
          this.clusterAgents?.close();
        },
        finalSweep: () => {
          if (this.sweep) clearInterval(this.sweep);
          if (this.renewTimer) clearInterval(this.renewTimer);
          this.rings.sweep(this.nodes);
        },
      }).finally(() => this.cluster?.stop());
      this.cluster?.drainBegan();
    }
    return this.stopping;
  }
}
