// Connection placement (`shards: auto`) as operators see it: moves counted on
// /metrics, and each node's placement in GET /api/v1/nodes[/{node_id}].
import { Counter, type Registry } from 'prom-client';
import { M } from '../telemetry/metric-names.js';
import type { HttpServer } from '../http/server.js';
import { sendJson } from '../http/server.js';
import { readAccess } from '../http/auth.js';
import type { ConnectionHandoff } from '../ingress/connection-handoff.js';
import type { NodeEntry, NodeTable } from '../nodes/node-table.js';

export function placementMetrics(registry: Registry, handoff: ConnectionHandoff): void {
  new Counter({
    name: M.connectionMoves, help: 'Connections moved between the main thread and a shard worker (shards: auto), by destination.',
    labelNames: ['to'], registers: [registry],
    collect() {
      this.reset();
      this.inc({ to: 'main' }, handoff.moves.main);
      this.inc({ to: 'shard' }, handoff.moves.shard);
    },
  });
}

/** One node's connection as the API shows it; placement is null while it is not connected (or pinned: "shard"/"main" by config). */
export function nodeView(n: NodeEntry, handoff: ConnectionHandoff, pinned: 'main' | 'shard' | null) {
  const conn = n.owner?.conn;
  const p = conn !== undefined ? handoff.placementOf(conn) : null;
  return {
    node_id: n.id,
    connected: n.healthy,
    protocol: n.protocol,
    remote: n.remote !== '' ? n.remote : null,
    placement: n.healthy ? (p?.placement ?? pinned) : null,
    moves: p?.moves ?? 0,
    rate_bytes_per_s: p?.rate_bytes_per_s ?? null,
    /** size: capacity; touched: ever written (resident); used: frames waiting now. */
    ring: { size_bytes: n.reader.capacity, touched_bytes: n.reader.touchedBytes, used_bytes: n.reader.usedBytes },
  };
}

export function mountNodeViews(http: HttpServer, nodes: NodeTable, handoff: ConnectionHandoff, pinned: 'main' | 'shard' | null,
  apiToken: string, openReads: boolean): void {
  const reads = readAccess(apiToken, openReads);
  http.addRoute('GET', '/api/v1/nodes', (_req, res) => {
    sendJson(res, 200, { nodes: [...nodes.nodes.values()].map((n) => nodeView(n, handoff, pinned)) });
  }, reads);
  http.addRoute('GET', '/api/v1/nodes/{node_id}', (_req, res, _url, p) => {
    const n = nodes.get(p.node_id!);
    if (!n) sendJson(res, 404, { error: `unknown node ${p.node_id}` });
    else sendJson(res, 200, nodeView(n, handoff, pinned));
  }, reads);
}
