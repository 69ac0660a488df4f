// Prometheus metrics. Shard counters live in shared memory and are summed here at
// scrape time (prom-client has no worker_threads aggregation); every labelled series
// is present from the start, at zero.
import { Registry, Counter, Gauge, collectDefaultMetrics } from 'prom-client';
import { M } from '../telemetry/metric-names.js';
import { HTTP_REJECT_REASONS } from '../http/connections.js';
import { SSE_CLOSE_REASONS } from '../agents/sse-hub.js';
import { AGENT_REFUSED_VIA } from '../agents/agent-registry.js';
import type { SinkAccounting } from '../nodes/ring-sink.js';
import type { TrackerMetrics } from '../tracker/supervisor.js';
import { TRACKER_STATES } from '../tracker/supervisor.js';
import { PROVISION_REFUSED_REASONS } from '../tracker/provisioning.js';
import { CONFIG_POLL_FAILURES } from '../tracker/config-poller.js';
import { registerGeolocatorMetrics } from './geolocator-metrics.js';
import { OUTPUT_SKIP_REASONS } from '../tracker/track-line.js';
import { FORWARD_RESULTS } from '../tracker/output-counts.js';
import { PUSH_RESULTS, PUSH_ROUTES, type PushCounts } from '../server-mode/push-api.js';
import {
  ALL_DROP_REASONS, DROP_REASONS, CLOSE_REASONS, REJECT_REASONS, dropIndex, closeIndex,
  C_FRAMES_RECEIVED, C_FRAMES_WRITTEN, C_DETECTIONS_RECEIVED, C_HEARTBEATS, C_BYTES_RECEIVED,
  C_CONNECTIONS_ACCEPTED, C_ACKS_SENT, CLAIM_REFUSALS, type ClaimRefusal,
} from '../telemetry/counters.js';

export interface MetricsSource {
  /** Every counter array (main thread's and each shard slot's). */
  counterArrays(): Float64Array[];
  connectionsOpen(): number;
  /** Per ring: frames in it, frames consumed, bytes used, capacity. */
  rings(): { frames: number; consumed: number; used: number; capacity: number; touched: number; connected: boolean }[];
  shards(): { count: number; restarts: number };
  /** What the sink did with the frames it consumed. */
  sink(): SinkAccounting;
  /** Config reloads (SIGHUP) by result. */
  reloads?(): { ok: number; error: number };
  /** Tracker supervisor state (absent with another sink). */
  trackers?(): TrackerMetrics;
  /** Rings released (nodes gone for limits.node_release_ms) and the frames consumed from them. */
  released?(): { nodes: number; consumed: number };
  /** Rings moved to fresh memory after a backlog (ring-renewal.ts). */
  ringRenewals?(): number;
  /** Node claims refused, by reason (a refused line node keeps its connection, so this is where it shows). */
  claimsRefused?(): Record<ClaimRefusal, number>;
  /** Entries in each map kept per peer-chosen id (each is bounded). */
  idMaps?(): Record<string, number>;
  /** Agent registry: counts per state, open SSE streams, commands by type/result. */
  agents?(): {
    states: Record<string, number>; streams: number; commands: Map<string, number>;
    refused?: Record<string, number>; takeovers?: number; streamsClosed?: Record<string, number>;
  };
  /** HTTP listener: open connections, refusals at accept and timeouts by reason. */
  http?(): { open: number; rejected: Record<string, number> };
  /** Unhandled promise rejections and uncaught exceptions caught by the process guard. */
  unhandled?(): { rejection: number; exception: number };
  /** Server mode: push requests by route and result, pushed lines, pushing nodes held. */
  push?(): { requests: PushCounts; lines: { accepted: number; invalid: number }; nodes: number };
}

export interface Totals {
  received: number;
  written: number;
  consumed: number;
  inRings: number;
  /** Handed to trackers. */
  delivered: number;
  /** Taken from rings by the sink, not yet delivered. */
  inSink: number;
  /** By reason, shard and sink reasons together. */
  dropped: Record<string, number>;
  droppedTotal: number;
  /**
   * Dropped by the shards (their reasons). received = written + droppedBeforeRing
   * holds except under drop-oldest, whose ring_overflow frames were written first.
   */
  droppedBeforeRing: number;
  detections: number;
  /** Bytes read from node connections. */
  bytesReceived: number;
}

export class Metrics {
  readonly registry = new Registry();

  constructor(private readonly src: MetricsSource) {
    const reg = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: '' });
    const sum = (i: number): number => this.sum(i);
    const rings = (): ReturnType<MetricsSource['rings']> => this.ringsOnce();
    const counter = (name: string, help: string, idx: number): void => {
      new Counter({
        name, help, registers: reg,
        collect() {
          this.reset();
          this.inc(sum(idx));
        },
      });
    };
    new Gauge({
      name: M.connectionsOpen, help: 'Node connections currently open.', registers: reg,
      collect() { this.set(src.connectionsOpen()); },
    });
    counter(M.connectionsAccepted, 'Node connections accepted.', C_CONNECTIONS_ACCEPTED);
    new Counter({
      name: M.connectionsRejected, help: 'Node connections refused or closed by a limit or check, by reason.',
      labelNames: ['reason'], registers: reg,
      collect() {
        this.reset();
        for (const r of REJECT_REASONS) this.inc({ reason: r }, sum(closeIndex(r)));
      },
    });
    new Counter({
      name: M.connectionsClosed, help: 'Node connections closed, by reason.', labelNames: ['reason'], registers: reg,
      collect() {
        this.reset();
        for (const r of CLOSE_REASONS) this.inc({ reason: r }, sum(closeIndex(r)));
      },
    });
    counter(M.framesReceived, 'Frames received from nodes (every framed message that is not a heartbeat or hello).', C_FRAMES_RECEIVED);
    counter(M.framesWritten, 'Frames written into per-node rings.', C_FRAMES_WRITTEN);
    new Counter({
      name: M.framesConsumed, help: 'Frames taken out of rings by the sink.', registers: reg,
      collect() {
        this.reset();
        let s = src.released?.().consumed ?? 0;
        for (const r of rings()) s += r.consumed;
        this.inc(s);
      },
    });
    new Counter({
      name: M.framesDropped, help: 'Frames received but not delivered, by reason.', labelNames: ['reason'], registers: reg,
      collect() {
        this.reset();
        const sink = src.sink().dropped as Record<string, number | undefined>;
        for (const r of ALL_DROP_REASONS) {
          const shard = (DROP_REASONS as readonly string[]).includes(r) ? sum(dropIndex(r as (typeof DROP_REASONS)[number])) : 0;
          this.inc({ reason: r }, shard + (sink[r] ?? 0));
        }
      },
    });
    new Counter({
      name: M.framesDelivered, help: 'Frames handed to a tracker\'s input.', registers: reg,
      collect() {
        this.reset();
        this.inc(src.sink().delivered);
      },
    });
    new Gauge({
      name: M.framesInSink, help: 'Frames taken out of rings and not yet delivered (queued towards a tracker).', registers: reg,
      collect() { this.set(src.sink().inFlight); },
    });
    new Gauge({
      name: M.framesInRings, help: 'Frames waiting in rings.', registers: reg,
      collect() {
        let s = 0;
        for (const r of rings()) s += r.frames;
        this.set(s);
      },
    });
    counter(M.bytesReceived, 'Bytes read from node connections.', C_BYTES_RECEIVED);
    counter(M.detectionsReceived, 'Detections in frames written to rings.', C_DETECTIONS_RECEIVED);
    counter(M.heartbeats, 'Heartbeat messages from nodes.', C_HEARTBEATS);
    counter(M.acksSent, 'Binary-protocol ack messages sent.', C_ACKS_SENT);
    new Gauge({
      name: M.ringBytesUsed, help: 'Bytes used in all rings.', registers: reg,
      collect() {
        let s = 0;
        for (const r of rings()) s += r.used;
        this.set(s);
      },
    });
    new Gauge({
      name: M.ringBytesCapacity, help: 'Bytes of ring capacity allocated.', registers: reg,
      collect() {
        let s = 0;
        for (const r of rings()) s += r.capacity;
        this.set(s);
      },
    });
    new Gauge({
      name: M.ringBytesTouched, help: 'Bytes of the rings ever written, in whole 4 KiB pages: the part of the ring capacity that is resident memory.', registers: reg,
      collect() {
        let s = 0;
        for (const r of rings()) s += Math.ceil(r.touched / 4096) * 4096;
        this.set(s);
      },
    });
    new Gauge({
      name: M.nodes, help: 'Nodes known to the host (each has a ring).', registers: reg,
      collect() { this.set(rings().length); },
    });
    new Counter({
      name: M.nodesReleased, help: 'Node rings released after the node was gone for limits.node_release_ms.', registers: reg,
      collect() {
        this.reset();
        this.inc(src.released?.().nodes ?? 0);
      },
    });
    new Counter({
      name: M.ringRenewals, help: 'Rings moved to fresh memory after being empty for ring.renew_after_ms (a backlog had made them resident).', registers: reg,
      collect() {
        this.reset();
        this.inc(src.ringRenewals?.() ?? 0);
      },
    });
    new Counter({
      name: M.nodeClaimsRefused,
      help: 'Claims of a node by a connection that were refused: max_nodes (limits.max_nodes), flapping (reconnect guard), node_refused (provisioning or mode).',
      labelNames: ['reason'], registers: reg,
      collect() {
        this.reset();
        const r = src.claimsRefused?.();
        for (const k of CLAIM_REFUSALS) this.inc({ reason: k }, r?.[k] ?? 0);
      },
    });
    new Gauge({
      name: M.idMapEntries, help: 'Entries in each map kept per node id or other peer-chosen key (every one is bounded).',
      labelNames: ['map'], registers: reg,
      collect() {
        for (const [map, n] of Object.entries(src.idMaps?.() ?? {})) this.set({ map }, n);
      },
    });
    new Gauge({
      name: M.nodesConnected, help: 'Nodes with an attached connection (healthy).', registers: reg,
      collect() { this.set(rings().filter((r) => r.connected).length); },
    });
    new Gauge({
      name: M.shards, help: 'Shard workers (0 = shard on the main thread counts as 1).', registers: reg,
      collect() { this.set(src.shards().count); },
    });
    this.agentMetrics(reg);
    this.trackerMetrics(reg);
    registerGeolocatorMetrics(reg, () => src.trackers?.().geolocators);
    this.httpMetrics(reg);
    this.pushMetrics(reg);
    new Counter({
      name: M.configReloads, help: 'Config reloads (SIGHUP), by result: ok (applied) or error (rejected, the old config stays).',
      labelNames: ['result'], registers: reg,
      collect() {
        this.reset();
        const r = src.reloads?.() ?? { ok: 0, error: 0 };
        this.inc({ result: 'ok' }, r.ok);
        this.inc({ result: 'error' }, r.error);
      },
    });
    new Counter({
      name: M.shardRestarts, help: 'Shard workers replaced after a crash.', registers: reg,
      collect() {
        this.reset();
        this.inc(src.shards().restarts);
      },
    });
  }

  private agentMetrics(reg: Registry[]): void {
    const src = this.src;
    new Gauge({
      name: M.agents, help: 'Agents by state (LIVE, STALE, DEAD).', labelNames: ['state'], registers: reg,
      collect() {
        const a = src.agents?.();
        for (const st of ['LIVE', 'STALE', 'DEAD']) this.set({ state: st }, a ? a.states[st] ?? 0 : 0);
      },
    });
    new Gauge({
      name: M.sseStreamsOpen, help: 'Agent command streams (SSE) open.', registers: reg,
      collect() { this.set(src.agents?.().streams ?? 0); },
    });
    new Counter({
      name: M.agentsRefused, help: 'New agents refused because the registry held agents.max_agents, by where they came from (register, tcp).',
      labelNames: ['via'], registers: reg,
      collect() {
        this.reset();
        const r = src.agents?.().refused;
        for (const v of AGENT_REFUSED_VIA) this.inc({ via: v }, r?.[v] ?? 0);
      },
    });
    new Counter({
      name: M.agentTakeovers, help: 'Registrations from another address while the agent\'s stream was open (the stream is closed).', registers: reg,
      collect() {
        this.reset();
        this.inc(src.agents?.().takeovers ?? 0);
      },
    });
    new Counter({
      name: M.sseStreamsClosed, help: 'Agent command streams closed, by reason.', labelNames: ['reason'], registers: reg,
      collect() {
        this.reset();
        const c = src.agents?.().streamsClosed;
        for (const r of SSE_CLOSE_REASONS) this.inc({ reason: r }, c?.[r] ?? 0);
      },
    });
    new Counter({
      name: M.commands, help: 'Commands by type and result (created, delivered, acknowledged, expired).', labelNames: ['type', 'result'], registers: reg,
      collect() {
        this.reset();
        const a = src.agents?.();
        if (!a) return;
        for (const [k, v] of a.commands) {
          const [type, result] = k.split('/') as [string, string];
          this.inc({ type, result }, v);
        }
      },
    });
  }

  private httpMetrics(reg: Registry[]): void {
    const src = this.src;
    new Gauge({
      name: M.httpConnectionsOpen, help: 'HTTP connections open (SSE streams included).', registers: reg,
      collect() { this.set(src.http?.().open ?? 0); },
    });
    new Counter({
      name: M.httpConnectionsRejected,
      help: 'HTTP connections refused at accept (max_connections, max_connections_per_source) or closed by a timeout (headers_timeout, request_timeout).',
      labelNames: ['reason'], registers: reg,
      collect() {
        this.reset();
        const h = src.http?.();
        for (const r of HTTP_REJECT_REASONS) this.inc({ reason: r }, h?.rejected[r] ?? 0);
      },
    });
    new Counter({
      name: M.unhandledErrors, help: 'Unhandled promise rejections (kept serving) and uncaught exceptions (drained and exited), by kind.',
      labelNames: ['kind'], registers: reg,
      collect() {
        this.reset();
        const u = src.unhandled?.() ?? { rejection: 0, exception: 0 };
        this.inc({ kind: 'rejection' }, u.rejection);
        this.inc({ kind: 'exception' }, u.exception);
      },
    });
  }

  private pushMetrics(reg: Registry[]): void {
    const src = this.src;
    new Counter({
      name: M.nodePushRequests,
      help: 'Server mode: POST /api/node/{name}/config and /tracks by route and result (accepted, unauthorized, bad_name, name_taken, bad_body, too_large).',
      labelNames: ['route', 'result'], registers: reg,
      collect() {
        this.reset();
        const p = src.push?.();
        for (const route of PUSH_ROUTES) for (const result of PUSH_RESULTS) this.inc({ route, result }, p?.requests[route][result] ?? 0);
      },
    });
    new Counter({
      name: M.nodePushLines, help: 'Server mode: pushed track lines written and forwarded (accepted) or skipped (invalid: not a JSON object).',
      labelNames: ['result'], registers: reg,
      collect() {
        this.reset();
        const p = src.push?.();
        this.inc({ result: 'accepted' }, p?.lines.accepted ?? 0);
        this.inc({ result: 'invalid' }, p?.lines.invalid ?? 0);
      },
    });
    new Gauge({
      name: M.nodePushNodes, help: 'Server mode: pushing nodes held (at most 1024; the least recently active is forgotten beyond).', registers: reg,
      collect() { this.set(src.push?.().nodes ?? 0); },
    });
  }

  private trackerMetrics(reg: Registry[]): void {
    const src = this.src;
    new Gauge({
      name: M.trackerUp, help: 'Per node: 1 while its tracker runs with its input open.', labelNames: ['node'], registers: reg,
      collect() {
        this.reset();
        for (const [node, v] of src.trackers?.().up ?? []) this.set({ node }, v);
      },
    });
    new Counter({
      name: M.trackerRestarts, help: 'Per node: tracker restarts after a crash or a lost input.', labelNames: ['node'], registers: reg,
      collect() {
        this.reset();
        for (const [node, v] of src.trackers?.().restarts ?? []) this.inc({ node }, v);
      },
    });
    new Counter({
      name: M.trackerResets,
      help: 'Times a tracker was sent {"type":"RESET"}: source="resync" after a run of out-of-order frames (to follow its node\'s clock again), source="node" passing on the node\'s own RESET.',
      labelNames: ['source'], registers: reg,
      collect() {
        this.reset();
        const t = src.trackers?.();
        this.inc({ source: 'resync' }, t?.resets ?? 0);
        this.inc({ source: 'node' }, t?.nodeResets ?? 0);
      },
    });
    new Counter({
      name: M.nodeConfigChanges, help: 'Per node with a config_url: changes of the config it serves (each restarts its tracker).', labelNames: ['node'], registers: reg,
      collect() {
        this.reset();
        for (const [node, v] of src.trackers?.().configChanges ?? []) this.inc({ node }, v);
      },
    });
    new Counter({
      name: M.nodeConfigPollFailures, help: 'Failed polls of trackers[].config_url, by reason (the last good config stays in force).', labelNames: ['reason'], registers: reg,
      collect() {
        this.reset();
        const f = src.trackers?.().configPollFailures;
        for (const r of CONFIG_POLL_FAILURES) this.inc({ reason: r }, f?.[r] ?? 0);
      },
    });
    new Counter({
      name: M.trackerMemoryKills, help: 'Trackers killed (SIGKILL) for resident memory over tracker.max_memory_mb; each is then restarted like a crash.', registers: reg,
      collect() {
        this.reset();
        this.inc(src.trackers?.().memoryKills ?? 0);
      },
    });
    new Gauge({
      name: M.trackers, help: 'Tracker instances by state.', labelNames: ['state'], registers: reg,
      collect() {
        const t = src.trackers?.();
        for (const st of TRACKER_STATES) this.set({ state: st }, t?.states[st] ?? 0);
      },
    });
    new Counter({
      name: M.tracksWritten, help: 'Track lines written to track files.', registers: reg,
      collect() {
        this.reset();
        this.inc(src.trackers?.().tracksWritten ?? 0);
      },
    });
    new Counter({
      name: M.tracksStarted, help: 'Tracks seen for the first time in trackers\' output (a track_id not active before).', registers: reg,
      collect() {
        this.reset();
        this.inc(src.trackers?.().tracksStarted ?? 0);
      },
    });
    new Gauge({
      name: M.tracksActive, help: 'Live tracks, over every tracker: ended by a deleted event, 60 s without an event, or the tracker process ending.', registers: reg,
      collect() { this.set(src.trackers?.().tracksActive ?? 0); },
    });
    new Counter({
      name: M.trackerOutputSkipped, help: 'Tracker stdout lines that were not track events (not_json, not_object, too_long): not written, not forwarded.', labelNames: ['reason'], registers: reg,
      collect() {
        this.reset();
        const o = src.trackers?.().output;
        for (const r of OUTPUT_SKIP_REASONS) this.inc({ reason: r }, o?.skipped[r] ?? 0);
      },
    });
    new Counter({
      name: M.tracksForwarded, help: 'Track events POSTed to api_forward.url, by result (sent, failed, dropped).', labelNames: ['result'], registers: reg,
      collect() {
        this.reset();
        const o = src.trackers?.().output;
        for (const r of FORWARD_RESULTS) this.inc({ result: r }, o?.forwarded[r] ?? 0);
      },
    });
    new Counter({
      name: M.provisionRefused, help: 'Unknown nodes refused a tracker, by reason (disabled, ports_exhausted, name_taken).', labelNames: ['reason'], registers: reg,
      collect() {
        this.reset();
        const t = src.trackers?.();
        for (const r of PROVISION_REFUSED_REASONS) this.inc({ reason: r }, t?.provisionRefused[r] ?? 0);
      },
    });
    new Counter({
      name: M.supervisorPasses, help: 'Tracker supervisor reconcile passes.', registers: reg,
      collect() {
        this.reset();
        this.inc(src.trackers?.().passes ?? 0);
      },
    });
    new Counter({
      name: M.supervisorErrors, help: 'Exceptions caught by the tracker supervisor, by where (pass, probe).', labelNames: ['where'], registers: reg,
      collect() {
        this.reset();
        const t = src.trackers?.();
        this.inc({ where: 'pass' }, t?.passErrors ?? 0);
        this.inc({ where: 'probe' }, t?.probeErrors ?? 0);
      },
    });
  }

  /** One counter summed over the main thread's and every shard's array. */
  private sum(i: number): number {
    let s = 0;
    for (const a of this.src.counterArrays()) s += a[i]!;
    return s;
  }

  /** The accounting identity, from the same counters /metrics shows. */
  totals(): Totals {
    const sum = (i: number): number => this.sum(i);
    const dropped: Record<string, number> = {};
    let droppedTotal = 0;
    const sink = this.src.sink();
    const sinkDropped = sink.dropped as Record<string, number | undefined>;
    let droppedBeforeRing = 0;
    for (const r of ALL_DROP_REASONS) {
      const shard = (DROP_REASONS as readonly string[]).includes(r) ? sum(dropIndex(r as (typeof DROP_REASONS)[number])) : 0;
      droppedBeforeRing += shard;
      dropped[r] = shard + (sinkDropped[r] ?? 0);
      droppedTotal += dropped[r]!;
    }
    let consumed = this.src.released?.().consumed ?? 0;
    let inRings = 0;
    for (const r of this.src.rings()) {
      consumed += r.consumed;
      inRings += r.frames;
    }
    return {
      received: sum(C_FRAMES_RECEIVED), written: sum(C_FRAMES_WRITTEN), consumed, inRings,
      delivered: sink.delivered, inSink: sink.inFlight,
      dropped, droppedTotal, droppedBeforeRing, detections: sum(C_DETECTIONS_RECEIVED), bytesReceived: sum(C_BYTES_RECEIVED),
    };
  }

  /**
   * The rings' figures, read once per scrape (several collectors use them; at
   * 10,000 nodes one read of every ring header costs ~10 ms of main thread).
   */
  private ringsCache: ReturnType<MetricsSource['rings']> | null = null;
  private ringsOnce(): ReturnType<MetricsSource['rings']> {
    if (this.ringsCache === null) {
      this.ringsCache = this.src.rings();
      setImmediate(() => { this.ringsCache = null; });
    }
    return this.ringsCache;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
