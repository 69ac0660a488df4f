// Wires the ingest data path: TCP accept -> shard (decode, auth, route) -> per-node
// ring -> sink, plus the HTTP listener and metrics. One Engine per process in
// production; tests run several side by side on port 0.
import type { Server, AddressInfo } from 'node:net';
import type { Config } from './config.js';
import { ShardPool } from './shard-pool.js';
import { ConnectionHandoff } from './connection-handoff.js';
import { NodeListener } from './node-listener.js';
import { NodeTable, type NodeHooks, type NodeEntry } from './node-table.js';
import { DiscardSink, type EngineProbe, type RingSink, type SinkAccounting } from './ring-sink.js';
import { Metrics, type Totals } from './metrics.js';
import { HttpServer, sendJson } from './http-server.js';
import { createLogger, RateLimit, type Logger } from './logger.js';
import { fdBudget, readNofile, FD_MARGIN, FDS_PER_TRACKER } from './fd-budget.js';
import { RefusalLog } from './refusal-log.js';
import { COUNTER_SLOTS } from './shared/counters.js';
import { RadarError } from './shared/errors.js';
import { AgentService } from './agents/agent-service.js';
import { TokenCheck } from './shard/token.js';
import { TrackerSupervisor } from './tracker/supervisor.js';
import type { ProcReader } from './tracker/memory-watchdog.js';
import { mountTrackerApi } from './tracker/tracker-api.js';
import { mountNodeApi } from './node-api.js';
import { FORMAT_ANY, FORMAT_JSONL } from './shared/ring-layout.js';
import {
  S_BATCH, S_CLAIM, S_REVOKED, S_CLOSE, S_CLOSED, S_AUTH, S_LOG, M_GRANT, M_REFUSE, M_REVOKE, M_SHUTDOWN, M_CRASH, M_TRACE,
  type ShardToMain, type ShardLimits,
} from './shared/messages.js';

export interface EngineOptions {
  config: Config;
  /** Consumes the rings; default from config.sink ('discard'). */
  sink?: RingSink;
  hooks?: NodeHooks;
  logger?: Logger;
  /** Enables test-only controls (crashing a shard). */
  testHooks?: boolean;
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

/** Top-level config keys a reload cannot change (listeners, threads, rings, files): a restart applies them. */
const RESTART_KEYS = ['shards', 'sink', 'http', 'ring', 'agents', 'output_dir', 'status_interval_sec'] as const satisfies ReadonlyArray<keyof Config>;
/** tcp_server keys a reload cannot change (the listener and the provisioning range). */
const RESTART_TCP_KEYS = [
  'enabled', 'host', 'port', 'tls', 'proxy_protocol', 'proxy_trusted', 'auto_provision_port_start', 'auto_provision_port_end',
] as const satisfies ReadonlyArray<keyof Config['tcp_server']>;

/** The node table's limits, from the config. */
function nodeLimits(c: Config): { maxNodes: number; releaseMs: number } {
  return { maxNodes: c.limits.max_nodes, releaseMs: c.limits.node_release_ms };
}

/** The limits the shards apply, from the config. */
function shardLimits(c: Config): ShardLimits {
  const l = c.limits;
  return { maxFrameBytes: l.max_frame_bytes, maxDetections: l.max_detections_per_frame, maxClockSkewMs: l.max_clock_skew_ms, maxSeqJump: l.max_seq_jump };
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
  /** The tracker supervisor (sink "trackers"), else null. */
  readonly trackers: TrackerSupervisor | null = null;
  /** Active deep traces (main-thread side: delivery logging). */
  private readonly traces = new Map<string, { id: string; untilMs: number }>();
  /** Ring write clock seen at the last agent sweep, per node (frames count as heartbeats). */
  private readonly lastWrites = new Map<string, number>();
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
  /** Caught by the process guard (src/process-guard.ts): radar_ingest_unhandled_errors_total{kind}. */
  readonly unhandled = { rejection: 0, exception: 0 };

  constructor(private readonly opts: EngineOptions) {
    const config = (this.config = opts.config);
    this.log = opts.logger ?? createLogger(config.log.level);
    this.refusals = new RefusalLog(this.log);
    let nodes: NodeTable | null = null;
    if (!opts.sink && config.sink === 'trackers') {
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
    this.pool = new ShardPool({
      shards: config.shards,
      token: config.tcp_server.token,
      tokens: config.tcp_server.tokens,
      limits: shardLimits(config),
      overflow: config.ring.overflow,
      testHooks: opts.testHooks ?? false,
      onMessage: (shard, msg) => this.onShardMessage(shard, msg),
      onCrash: (shard, err) => this.onShardCrash(shard, err),
    });
    this.handoff = new ConnectionHandoff(this.pool, {
      maxConnections: config.limits.max_connections,
      firstMessageTimeoutMs: config.limits.first_message_timeout_ms,
      idleTimeoutMs: config.limits.idle_timeout_ms,
      maxInflightBytes: config.limits.max_inflight_bytes,
      maxOutputBytes: config.limits.max_output_bytes,
    }, this.counters, {
      onSocketClosed: (h) => this.nodes.socketClosed(h.id),
      onGone: (h) => this.log.debug({ conn: h.id, remote: h.remote, reason: h.closeReason ?? 'peer_closed' }, 'connection closed'),
      ...(opts.probe?.onSocketRead ? { onRead: opts.probe.onSocketRead.bind(opts.probe) } : {}),
    });
    const th = this.trackers?.hooks ?? {};
    const hooks: NodeHooks = {
      onUnknownNode: opts.hooks?.onUnknownNode ?? th.onUnknownNode,
      onNodeConnected: (n, i) => { th.onNodeConnected?.(n, i); opts.hooks?.onNodeConnected?.(n, i); },
      onNodeDisconnected: (n) => { th.onNodeDisconnected?.(n); opts.hooks?.onNodeDisconnected?.(n); },
      onNodeSeen: (n) => { th.onNodeSeen?.(n); opts.hooks?.onNodeSeen?.(n); },
    };
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
      // Trackers read JSON lines: shards encode binary frames as JSON (DESIGN decision 6).
      ringFormat: this.trackers ? FORMAT_JSONL : FORMAT_ANY,
      hooks: {
        ...hooks,
        onNodeConnected: (node, info) => {
          this.log.info({ node: node.id, remote: info.remote, protocol: info.protocol }, 'node connected');
          this.agents.touchNode(node.id, this.agents.registry.now(), info.group, true);
          hooks.onNodeConnected?.(node, info);
        },
        onNodeSeen: (node) => {
          this.agents.touchNode(node.id, this.agents.registry.now(), undefined, false);
          hooks.onNodeSeen?.(node);
        },
        onNodeDisconnected: (node) => {
          this.log.info({ node: node.id }, 'node disconnected');
          hooks.onNodeDisconnected?.(node);
        },
        onNodeReleased: (node) => {
          this.lastWrites.delete(node.id);
          this.traces.delete(node.id);
          this.log.info({ node: node.id, last_seq: node.reader.lastSeq }, 'node ring released');
          opts.hooks?.onNodeReleased?.(node);
        },
      },
      limits: nodeLimits(config),
      // Per-id state (flapping guard, resume points) for a few times the nodes the host may have.
      idCapacity: Math.max(1024, 4 * config.limits.max_nodes),
      ...(this.trackers ? { inUse: (n: NodeEntry) => this.trackers!.usesRing(n.id) } : {}),
      grant: (owner, node) => {
        this.pool.send(owner.shard, { t: M_GRANT, conn: owner.conn, node: node.id, ring: node.ring, ringId: node.ringId });
      },
      refuse: (owner, node, error, reason) => {
        this.refusals.warn({ node, code: error.code, ...(reason ? { reason } : {}) }, error.message);
        this.pool.send(owner.shard, { t: M_REFUSE, conn: owner.conn, node, error, ...(reason ? { reason } : {}) });
      },
      reconnect: { max: config.limits.reconnect_max, windowMs: config.limits.reconnect_window_ms, banMs: config.limits.reconnect_ban_ms },
      revoke: (owner, node) => this.pool.send(owner.shard, { t: M_REVOKE, conn: owner.conn, node }),
    });
    this.metrics = new Metrics({
      counterArrays: () => [this.counters, ...(this.trackers ? [this.trackers.counters] : []), ...this.pool.slots.map((s) => s.counters)],
      sink: () => this.sinkAccounting(),
      reloads: () => this.reloads,
      ...(this.trackers ? { trackers: () => this.trackers!.metrics() } : {}),
      connectionsOpen: () => this.handoff.open,
      rings: () => Array.from(this.nodes.byRing, (n) => ({
        frames: n.reader.frames, consumed: n.reader.consumedFrames, used: n.reader.usedBytes,
        capacity: n.reader.capacity, connected: n.healthy,
      })),
      released: () => this.nodes.releasedTotals,
      claimsRefused: () => this.nodes.claimsRefused,
      idMaps: () => ({ ...this.nodes.mapSizes(), log_limit: this.errLimit.size }),
      shards: () => ({ count: this.pool.size, restarts: this.pool.slots.reduce((s, x) => s + x.restarts, 0) }),
      agents: () => ({
        states: this.agents.registry.counts(), streams: this.agents.hub.size, commands: this.agents.commandCounts,
        refused: this.agents.refused, takeovers: this.agents.takeovers, streamsClosed: this.agents.hub.closedBy,
      }),
      http: () => ({ open: this.http.gate.open, rejected: this.http.rejected() }),
      unhandled: () => this.unhandled,
    });
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
    // Liveness: the process answers and its event loop turns. Never fails for draining.
    this.http.addRoute('GET', '/healthz', (_req, res) => sendJson(res, 200, { status: 'ok', uptime_s: Math.round(process.uptime()) }));
    this.http.addRoute('GET', '/readyz', (_req, res) => {
      const checks = this.readiness();
      const ok = Object.values(checks).every((c) => c.ok);
      sendJson(res, ok ? 200 : 503, { status: ok ? 'ready' : 'not ready', checks });
    });
    this.agents.mount(this.http);
    mountNodeApi(this.http, this.nodes, config.http.api_token, config.http.max_body_bytes, (msg, obj) => this.log.info(obj, msg));
    if (this.trackers) mountTrackerApi(this.http, this.trackers, config.http.api_token);
  }

  /** The sink's accounting; a sink without one delivered everything it consumed. */
  private sinkAccounting(): SinkAccounting {
    const a = this.sink.accounting?.();
    if (a) return a;
    let consumed = this.nodes.releasedTotals.consumed;
    for (const n of this.nodes.byRing) consumed += n.reader.consumedFrames;
    return { delivered: consumed, inFlight: 0, dropped: {} };
  }

  /**
   * Applies a reloaded config (SIGHUP) without dropping connections: node tokens,
   * limits, the flapping guard, trackers and tracker settings, the log level.
   * Keys that need a restart (listeners, shards, rings, sink, agents, TLS, PROXY,
   * the provisioning range, output_dir) keep their old values; they are returned
   * and logged.
   */
  reload(next: Config): { restartRequired: string[] } {
    const prev = this.config;
    const restartRequired: string[] = [];
    const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
    // Keep the fixed parts as they are; take everything else from the new file.
    const applied: Config = { ...next, tcp_server: { ...next.tcp_server } };
    const keep = <T extends object>(path: string, from: T, into: T, keys: ReadonlyArray<keyof T>): void => {
      for (const k of keys) {
        if (!same(from[k], into[k])) restartRequired.push(`${path}${String(k)}`);
        into[k] = from[k];
      }
    };
    keep('', prev, applied, RESTART_KEYS);
    keep('tcp_server.', prev.tcp_server, applied.tcp_server, RESTART_TCP_KEYS);
    // The rings keep their size until a restart: a frame limit they cannot hold
    // twice (config.ts checks this against the file's own ring size) waits for it too.
    if (2 * applied.limits.max_frame_bytes + 64 > applied.ring.size_bytes) {
      restartRequired.push('limits.max_frame_bytes');
      applied.limits = { ...applied.limits, max_frame_bytes: prev.limits.max_frame_bytes };
    }
    this.config = applied;
    const l = applied.limits;
    this.nodeToken = new TokenCheck(applied.tcp_server.token, applied.tcp_server.tokens);
    this.pool.reconfigure({ token: applied.tcp_server.token, tokens: applied.tcp_server.tokens, limits: shardLimits(applied) });
    this.handoff.setLimits({
      maxConnections: l.max_connections, firstMessageTimeoutMs: l.first_message_timeout_ms,
      idleTimeoutMs: l.idle_timeout_ms, maxInflightBytes: l.max_inflight_bytes, maxOutputBytes: l.max_output_bytes,
    });
    this.nodes.setReconnectGuard({ max: l.reconnect_max, windowMs: l.reconnect_window_ms, banMs: l.reconnect_ban_ms });
    this.nodes.setLimits(nodeLimits(applied));
    // The listener's own cap sits above the handoff's limit (the handoff counts refusals itself).
    if (this.tcp) this.tcp.maxConnections = l.max_connections + 64;
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
  readiness(): Record<string, { ok: boolean; detail?: string }> {
    const down = this.pool.slots.filter((s) => !s.ready).map((s) => s.id);
    return {
      config: { ok: true },
      listening: this.config.tcp_server.enabled
        ? { ok: this.tcp?.listening === true, ...(this.tcp?.listening ? {} : { detail: 'node port not listening' }) }
        : { ok: true, detail: 'tcp_server disabled' },
      shards: down.length === 0 ? { ok: true } : { ok: false, detail: `shards not running: ${down.join(', ')}` },
      draining: this.stopping === null ? { ok: true } : { ok: false, detail: 'shutting down' },
      ...(this.trackers ? { trackers: this.trackers.health() } : {}),
    };
  }

  /** Starts shards, then the TCP and HTTP listeners. */
  async start(): Promise<void> {
    if (this.started) throw new Error('engine already started');
    this.started = true;
    const c = this.config;
    if (c.tcp_server.token === '') {
      this.log.warn(Object.keys(c.tcp_server.tokens).length === 0
        ? 'tcp_server.token is empty: node authentication is disabled'
        : 'tcp_server.token is empty: nodes without an entry in tcp_server.tokens are not authenticated');
    }
    this.checkDescriptors();
    await this.pool.start();
    this.trackers?.start();
    this.httpAddress = await this.http.listen(c.http.port, c.http.host);
    if (c.tcp_server.enabled) {
      // The node port: PROXY header and TLS (if configured), then the handoff.
      const listener = new NodeListener({
        proxyProtocol: c.tcp_server.proxy_protocol, proxyTrusted: c.tcp_server.proxy_trusted, tls: c.tcp_server.tls,
        handoff: this.handoff, counters: this.counters, log: this.log,
      });
      this.tcp = listener.server;
      this.tcpAddress = await listener.listen(c.tcp_server.port, c.tcp_server.host, c.limits.max_connections);
    }
    const sweepMs = this.opts.sweepMs ?? 200;
    this.sweep = setInterval(() => this.sweepRings(), sweepMs);
    this.sweep.unref();
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

  /** Warns (with the numbers) when RLIMIT_NOFILE cannot hold both ports' connection caps and the trackers. */
  private checkDescriptors(): void {
    const c = this.config;
    const trackerSlots = c.sink === 'trackers'
      ? c.trackers.length + (c.tcp_server.auto_provision ? c.tcp_server.auto_provision_port_end - c.tcp_server.auto_provision_port_start + 1 : 0)
      : 0;
    const needed = c.limits.max_connections + c.http.max_connections + FDS_PER_TRACKER * trackerSlots + FD_MARGIN;
    const b = fdBudget(needed, readNofile());
    if (!b.ok) {
      this.log.warn({
        soft: b.soft, hard: b.hard, needed, node_max_connections: c.limits.max_connections, http_max_connections: c.http.max_connections,
        tracker_slots: trackerSlots,
      }, 'RLIMIT_NOFILE is below what the connection limits need: raise it (systemd LimitNOFILE=, ulimit -n) or lower limits.max_connections / http.max_connections');
    }
  }

  /** The periodic summary (status_interval_sec): one line, never per frame. */
  private logStatus(): void {
    const t = this.totals();
    const tr = this.trackers?.metrics();
    this.log.info({
      connections: this.handoff.open, nodes: this.nodes.nodes.size,
      received: t.received, delivered: t.delivered, in_rings: t.inRings, dropped: t.droppedTotal,
      ...(tr ? { trackers: Object.fromEntries(Object.entries(tr.states).filter(([, n]) => n > 0)) } : {}),
    }, 'status');
  }

  private sweepRings(): void {
    for (const n of this.nodes.byRing) {
      if (n.reader.usedBytes > 0) this.offer(n);
    }
  }

  private offer(node: NodeEntry): void {
    const trace = this.traces.size > 0 ? this.traces.get(node.id) : undefined;
    const before = trace ? node.reader.consumedFrames : 0;
    try {
      this.sink.onData(node);
    } catch (err) {
      this.logError('sink', err as Error);
    }
    if (trace) {
      const n = node.reader.consumedFrames - before;
      if (n > 0) this.log.info({ node: node.id, correlation_id: trace.id, frames: n }, 'deep-trace: delivered');
      if (Date.now() > trace.untilMs) this.traces.delete(node.id);
    }
  }

  /**
   * Frames written since the last sweep count as a heartbeat; time-based
   * agent/command states; rings of nodes gone long enough are released.
   */
  private sweepAgents(): void {
    this.nodes.releaseIdle();
    const now = Date.now();
    for (const [node, t] of this.traces) if (now > t.untilMs) this.traces.delete(node);
    const reg = this.agents.registry;
    for (const n of this.nodes.byRing) {
      const w = n.reader.lastWriteMs;
      if (w !== 0 && this.lastWrites.get(n.id) !== w) {
        this.lastWrites.set(n.id, w);
        this.agents.touchNode(n.id, reg.now(), undefined, false);
      }
    }
    this.agents.sweep();
  }

  /** deep-trace: every shard logs the node's frames with the command's id, bounded in time and count. */
  traceNode(node: string, id: string, durationMs: number): void {
    const ms = Math.min(durationMs, this.config.agents.deep_trace_max_ms);
    const untilMs = Date.now() + ms;
    this.traces.set(node, { id, untilMs });
    for (let i = 0; i < this.pool.size; i++) this.pool.send(i, { t: M_TRACE, node, id, untilMs, maxEvents: 10000 });
    this.log.info({ node, correlation_id: id, duration_ms: ms }, 'deep-trace: started');
  }

  private onShardMessage(shard: number, msg: ShardToMain): void {
    switch (msg.t) {
      case S_BATCH: {
        const cr = msg.credits;
        for (let i = 0; i < cr.length; i += 2) this.handoff.credit(cr[i] as number, cr[i + 1] as number);
        const w = msg.writes;
        for (let i = 0; i < w.length; i += 2) this.handoff.write(w[i] as number, w[i + 1] as Uint8Array);
        for (const id of msg.wake) {
          const node = this.nodes.ring(id);
          if (node) this.offer(node);
        }
        for (const n of msg.seen) this.nodes.seen(n);
        for (const e of msg.traces) {
          this.log.info({ shard, node: e.node, correlation_id: e.id, timestamp: e.timestamp, detections: e.detections, bytes: e.bytes, seq: e.seq, outcome: e.outcome }, 'deep-trace: frame decoded');
        }
        break;
      }
      case S_CLAIM: {
        const h = this.handoff.conns.get(msg.conn);
        const info = { node: msg.node, remote: h?.remote ?? '?', protocol: msg.protocol, first: msg.first, ...(msg.group !== undefined ? { group: msg.group } : {}) };
        this.nodes.claim({ shard, conn: msg.conn }, info);
        break;
      }
      case S_REVOKED:
        this.nodes.revoked(msg.conn, msg.node);
        break;
      case S_CLOSE: {
        // Closes the host asked for (shutdown, a newer connection of the node) are not problems.
        if (msg.error && this.errLimit.take(msg.reason) >= 0) {
          const h = this.handoff.conns.get(msg.conn);
          const level = msg.reason === 'shutdown' || msg.reason === 'superseded' ? 'info' : 'warn';
          this.log[level]({ conn: msg.conn, remote: h?.remote, reason: msg.reason, code: msg.error.code }, msg.error.message);
        }
        this.handoff.close(msg.conn, msg.reason);
        break;
      }
      case S_CLOSED:
        this.nodes.connClosed(msg.conn, msg.nodes);
        this.handoff.released(msg.conn);
        break;
      case S_AUTH:
        this.handoff.authed(msg.conn);
        break;
      case S_LOG: {
        const h = this.handoff.conns.get(msg.conn);
        this.log.warn({ shard, conn: msg.conn, remote: h?.remote, reason: msg.reason, suppressed: msg.suppressed }, `frame dropped: ${msg.detail}`);
        break;
      }
    }
  }

  private onShardCrash(shard: number, err: Error): void {
    this.log.error({ shard, err: err.message }, 'shard worker crashed; closing its connections and replacing it');
    const owned = this.nodes.ownedByShard(shard);
    for (const h of this.handoff.ofShard(shard)) {
      this.handoff.destroy(h.id, 'shard_crashed');
      this.handoff.released(h.id);
    }
    for (const [conn, ids] of owned) this.nodes.connClosed(conn, ids);
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

  /** Stops listeners, closes node connections and shards. Idempotent. */
  stop(): Promise<void> {
    if (!this.stopping) this.stopping = this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const t0 = Date.now();
    const deadline = t0 + this.config.shutdown.deadline_ms;
    // 0. /readyz is 503 from now on (stopping is set). Behind a load balancer, keep
    //    accepting for the grace period so the balancer notices and stops sending.
    const grace = this.config.shutdown.drain_grace_ms;
    if (grace > 0 && this.started) {
      this.log.info({ grace_ms: grace }, 'draining: /readyz is 503; still accepting connections for the grace period');
      await new Promise((r) => setTimeout(r, grace));
    }
    if (this.agentTimer) clearInterval(this.agentTimer);
    if (this.statusTimer) clearInterval(this.statusTimer);
    this.refusals.close();
    this.agents.close();
    // 1. Stop accepting and close node connections (they reconnect elsewhere).
    this.handoff.refusing = 'shutdown';
    const tcpClosed = this.tcp ? new Promise<void>((r) => this.tcp!.close(() => r())) : Promise.resolve();
    // The shards close their connections first, so binary nodes get RADAR_ERR_SHUTTING_DOWN
    // before the close; whatever they have not closed in time is closed here. The time
    // grows with the connections (10,000 take ~1 s to tell), at most a quarter of the deadline.
    for (let i = 0; i < this.pool.size; i++) this.pool.send(i, { t: M_SHUTDOWN });
    const closingBy = Date.now() + Math.min(500 + this.handoff.open / 10, this.config.shutdown.deadline_ms / 4);
    const anyOpen = (): boolean => {
      for (const h of this.handoff.conns.values()) if (h.closeReason === null && !h.socketClosed) return true;
      return false;
    };
    while (Date.now() < closingBy && anyOpen()) {
      await new Promise((r) => setTimeout(r, 5));
    }
    this.handoff.closeAll('shutdown');
    await Promise.race([tcpClosed, new Promise((r) => setTimeout(r, 3000).unref())]);
    // 2. Stop the shards: every frame they accepted is in a ring (or counted as dropped).
    //    The ring sweep keeps running meanwhile, so a shard blocked on a full ring can finish.
    await this.pool.stop();
    if (this.sweep) clearInterval(this.sweep);
    this.sweepRings();
    // 3. Drain the rings into the trackers, then stop them (SIGTERM, SIGKILL after the grace).
    if (this.trackers) {
      // A tracker gets up to 2 s to read its input to EOF, then the SIGTERM grace.
      const stopBudget = this.config.tracker.stop_grace_ms + 3000;
      const drainUntil = Math.max(Date.now(), deadline - stopBudget);
      const r = await this.trackers.shutdown(drainUntil, Math.max(0, deadline - Date.now() - this.config.tracker.stop_grace_ms));
      const t = this.totals();
      this.log[r.drained ? 'info' : 'warn']({
        drained: r.drained, left_in_rings: r.leftInRings, delivered: t.delivered, dropped: t.droppedTotal, received: t.received,
      }, r.drained ? 'rings drained to the trackers' : 'shutdown deadline: frames left in rings were counted as dropped (reason shutdown)');
    }
    await this.sink.close?.();
    await this.http.close();
    this.log.info({ took_ms: Date.now() - t0 }, 'radar-ingest stopped');
  }

}

