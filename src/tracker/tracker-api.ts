// GET /api/v1/trackers, GET|DELETE /api/v1/trackers/{node_id}.
// Reads are open like /metrics (operational state, no secrets) unless
// http.open_reads is false; DELETE, which removes an auto-provisioned instance and
// frees its port, always needs http.api_token.
import type { ServerResponse } from 'node:http';
import type { HttpServer } from '../http/server.js';
import { sendJson } from '../http/server.js';
import { controlToken, readAccess } from '../http/auth.js';
import type { TrackerSupervisor } from './supervisor.js';
import { describeCommand } from './tracker-command.js';

/**
 * `clusterScope` answers ?scope=cluster (the whole fleet's trackers) on a host with a
 * cluster section; without one that scope is 404.
 */
export function mountTrackerApi(http: HttpServer, sup: TrackerSupervisor, apiToken: string, openReads = true,
  clusterScope: ((res: ServerResponse) => Promise<void>) | null = null): void {
  const control = controlToken(apiToken);
  const reads = readAccess(apiToken, openReads);
  http.addRoute('GET', '/api/v1/trackers', (_req, res, url) => {
    if (url.searchParams.get('scope') === 'cluster') {
      if (clusterScope) return clusterScope(res);
      return sendJson(res, 404, { error: 'scope=cluster needs a cluster section in the config (this host is alone)' });
    }
    const list = sup.views();
    sendJson(res, 200, {
      trackers: list,
      command: describeCommand(sup.command),
      ports: { start: sup.ports.start, end: sup.ports.end, in_use: sup.ports.inUse },
      supervisor: { passes: sup.passes, pass_errors: sup.passErrors, probe_errors: sup.probeErrors, last_pass_error: sup.lastPassError },
    });
  }, reads);
  http.addRoute('GET', '/api/v1/trackers/{node_id}', (_req, res, _url, p) => {
    const view = sup.view(p.node_id!);
    if (!view) sendJson(res, 404, { error: `no tracker for node ${p.node_id}` });
    else sendJson(res, 200, view);
  }, reads);
  http.addRoute('DELETE', '/api/v1/trackers/{node_id}', (_req, res, _url, p) => {
    const id = p.node_id!;
    switch (sup.remove(id)) {
      case 'removed':
        sendJson(res, 200, { removed: id });
        return;
      case 'not_found':
        sendJson(res, 404, { error: `no tracker for node ${id}` });
        return;
      case 'configured':
        sendJson(res, 409, { error: `the tracker for node ${id} is configured in the config file; remove it there` });
        return;
      case 'connected':
        sendJson(res, 409, { error: `node ${id} is connected; remove its tracker after it disconnects` });
        return;
    }
  }, { auth: 'control', authorize: (req) => control(req) });
}
