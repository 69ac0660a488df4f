// Liveness and readiness: what a supervisor and a load balancer ask the process.
import { sendJson, type HttpServer } from '../http/server.js';
import type { Config } from '../config.js';

export type Check = { ok: boolean; detail?: string };

/** The state readiness is judged on. */
export interface ReadinessInput {
  tcpEnabled: boolean;
  tcpListening: boolean;
  /** Shard ids whose worker is not running. */
  shardsDown: number[];
  draining: boolean;
  /** The tracker supervisor's own check (sink "trackers"), else undefined. */
  trackers?: Check;
  /** Where frames can come from (ingestSources()); none = nothing will ever arrive. */
  sources?: string[];
}

/**
 * The ways frames reach this engine: the node port, and trackers that poll their
 * node over HTTP (they run only with sink "trackers"). Server mode's routes do not
 * count: nodes there run their own tracker and push tracks, not frames.
 */
export function ingestSources(c: Config, trackersRun: boolean): string[] {
  const out: string[] = [];
  if (c.tcp_server.enabled) out.push('tcp_server');
  if (trackersRun && c.trackers.some((t) => t.mode === 'http')) out.push('http-polled trackers');
  return out;
}

/** Said at start and by /readyz when an engine can receive no frame at all. */
export const NO_SOURCE = 'no ingest source: tcp_server.enabled is false and no trackers[] entry polls a node over HTTP ' +
  '(mode: http with detection_url); set tcp_server.enabled: true to accept nodes';

/** Readiness checks (a load balancer should send nodes here only when all pass). */
export function readinessChecks(s: ReadinessInput): Record<string, Check> {
  return {
    config: { ok: true },
    listening: s.tcpEnabled
      ? { ok: s.tcpListening, ...(s.tcpListening ? {} : { detail: 'node port not listening' }) }
      : { ok: true, detail: 'tcp_server disabled' },
    shards: s.shardsDown.length === 0 ? { ok: true } : { ok: false, detail: `shards not running: ${s.shardsDown.join(', ')}` },
    draining: s.draining ? { ok: false, detail: 'shutting down' } : { ok: true },
    ...(s.trackers ? { trackers: s.trackers } : {}),
    ...(s.sources ? { ingest: s.sources.length > 0 ? { ok: true, detail: s.sources.join(', ') } : { ok: false, detail: NO_SOURCE } } : {}),
  };
}

/** GET /healthz and GET /readyz. */
export function mountHealth(http: HttpServer, readiness: () => Record<string, Check>): void {
  // Liveness: the process answers and its event loop turns. Never fails for draining.
  http.addRoute('GET', '/healthz', (_req, res) => sendJson(res, 200, { status: 'ok', uptime_s: Math.round(process.uptime()) }));
  http.addRoute('GET', '/readyz', (_req, res) => {
    const checks = readiness();
    const ok = Object.values(checks).every((c) => c.ok);
    sendJson(res, ok ? 200 : 503, { status: ok ? 'ready' : 'not ready', checks });
  });
}
