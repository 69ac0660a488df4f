// Prometheus metrics. Shard counters live in shared memory and are summed here at
// scrape time (prom-client has no worker_threads aggregation); every labelled series
// is present from the start, at zero.
import { Registry, Counter, Gauge, collectDefaultMetrics } from 'prom-client';
import { M } from './shared/metric-names.js';
import {
  DROP_REASONS, CLOSE_REASONS, REJECT_REASONS, dropIndex, closeIndex,
  C_FRAMES_RECEIVED, C_FRAMES_WRITTEN, C_DETECTIONS_RECEIVED, C_HEARTBEATS, C_BYTES_RECEIVED,
  C_CONNECTIONS_ACCEPTED, C_ACKS_SENT,
} from './shared/counters.js';

export interface MetricsSource {
  /** Every counter array (main thread's and each shard slot's). */
  counterArrays(): Float64Array[];
  connectionsOpen(): number;
  /** Per ring: frames in it, frames consumed, bytes used, capacity. */
  rings(): { frames: number; consumed: number; used: number; capacity: number; connected: boolean }[];
  shards(): { count: number; restarts: number };
  /** Agent registry: counts per state, open SSE streams, commands by type/result. */
  agents?(): { states: Record<string, number>; streams: number; commands: Map<string, number> };
}

export interface Totals {
  received: number;
  written: number;
  consumed: number;
  inRings: number;
  dropped: Record<string, number>;
  droppedTotal: number;
  detections: number;
}

export class Metrics {
  readonly registry = new Registry();

  constructor(private readonly src: MetricsSource) {
    const reg = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: '' });
    const sum = (i: number): number => this.sum(i);
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
        let s = 0;
        for (const r of src.rings()) s += r.consumed;
        this.inc(s);
      },
    });
    new Counter({
      name: M.framesDropped, help: 'Frames received but not delivered, by reason.', labelNames: ['reason'], registers: reg,
      collect() {
        this.reset();
        for (const r of DROP_REASONS) this.inc({ reason: r }, sum(dropIndex(r)));
      },
    });
    new Gauge({
      name: M.framesInRings, help: 'Frames waiting in rings.', registers: reg,
      collect() {
        let s = 0;
        for (const r of src.rings()) s += r.frames;
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
        for (const r of src.rings()) s += r.used;
        this.set(s);
      },
    });
    new Gauge({
      name: M.ringBytesCapacity, help: 'Bytes of ring capacity allocated.', registers: reg,
      collect() {
        let s = 0;
        for (const r of src.rings()) s += r.capacity;
        this.set(s);
      },
    });
    new Gauge({
      name: M.nodes, help: 'Nodes known to the host (each has a ring).', registers: reg,
      collect() { this.set(src.rings().length); },
    });
    new Gauge({
      name: M.nodesConnected, help: 'Nodes with an attached connection (healthy).', registers: reg,
      collect() { this.set(src.rings().filter((r) => r.connected).length); },
    });
    new Gauge({
      name: M.shards, help: 'Shard workers (0 = shard on the main thread counts as 1).', registers: reg,
      collect() { this.set(src.shards().count); },
    });
    this.agentMetrics(reg);
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
    for (const r of DROP_REASONS) {
      dropped[r] = sum(dropIndex(r));
      droppedTotal += dropped[r]!;
    }
    let consumed = 0;
    let inRings = 0;
    for (const r of this.src.rings()) {
      consumed += r.consumed;
      inRings += r.frames;
    }
    return {
      received: sum(C_FRAMES_RECEIVED), written: sum(C_FRAMES_WRITTEN), consumed, inRings,
      dropped, droppedTotal, detections: sum(C_DETECTIONS_RECEIVED),
    };
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
