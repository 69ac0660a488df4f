// Server mode's HTTP routes, for nodes that run their own tracker and push its
// output here (tracker-host's --server routes, on the one listener):
//   POST /api/node/{name}/config  the node's radar config (a JSON object)
//   POST /api/node/{name}/tracks  track events, NDJSON: each line to the node's
//                                 track file and to api_forward
//   GET  /api/nodes               {"nodes": {name: {has_config, active_tracks, ...}}}
// The POSTs need the node's token (tcp_server.tokens[name], else tcp_server.token)
// or its agent access token as a Bearer token. Answers keep tracker-host's shape:
// {"status": "registered" | "ok" | "error", ...}.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { bearer } from '../http/auth.js';
import { readJsonBody } from '../http/body.js';
import { readRawBody } from '../http/raw-body.js';
import { sendJson, type HttpServer, type Params, type RouteOptions } from '../http/server.js';
import { pushNameError } from './push-name.js';
import type { PushRegistry } from './push-registry.js';
import { parseTrackBatch } from './track-batch.js';

export const PUSH_ROUTES = ['config', 'tracks'] as const;
export type PushRoute = (typeof PUSH_ROUTES)[number];
/** What became of a push request: radar_ingest_node_push_requests_total{route,result}. */
export const PUSH_RESULTS = ['accepted', 'unauthorized', 'bad_name', 'name_taken', 'bad_body', 'too_large'] as const;
export type PushResult = (typeof PUSH_RESULTS)[number];

export interface PushApiOptions {
  registry: PushRegistry;
  /** Does `token` authenticate `name`: its node token, or an agent access token the host issued to it. */
  authenticates(name: string, token: string): boolean;
  /** A local tracker writes the track file of this name (one writer per file). */
  nameTaken(name: string): boolean;
  /** Limit of a config body (http.max_body_bytes). */
  maxConfigBytes(): number;
  /** Limit of a tracks body (http.max_track_body_bytes). */
  maxTracksBytes(): number;
  /** Who may read GET /api/nodes (http.open_reads); absent = everyone. */
  reads?: RouteOptions;
}

export type PushCounts = Record<PushRoute, Record<PushResult, number>>;

/** Mounts the routes; returns the request counts by route and result (all present from the start). */
export function mountPushApi(http: HttpServer, o: PushApiOptions): PushCounts {
  const counts = Object.fromEntries(PUSH_ROUTES.map((r) => [r, Object.fromEntries(PUSH_RESULTS.map((x) => [x, 0]))])) as PushCounts;
  const answer = (res: ServerResponse, route: PushRoute, result: PushResult, status: number, body: Record<string, unknown>): void => {
    counts[route][result]++;
    if (result === 'too_large') res.setHeader('connection', 'close');
    sendJson(res, status, body);
  };
  const refuse = (res: ServerResponse, route: PushRoute, result: PushResult, status: number, message: string): void =>
    answer(res, route, result, status, { status: 'error', message });

  const node = (route: PushRoute) => ({
    auth: 'node' as const,
    authorize: (req: IncomingMessage, _url: URL, p: Params): boolean => {
      const token = bearer(req);
      const ok = token !== null && token !== '' && o.authenticates(p.name!, token);
      if (!ok) counts[route].unauthorized++;
      return ok;
    },
  });

  /** The checks before a body is read: the name's shape, then whether a local tracker holds it. */
  const admit = (res: ServerResponse, route: PushRoute, name: string): boolean => {
    const bad = pushNameError(name);
    if (bad !== null) {
      refuse(res, route, 'bad_name', 400, bad);
      return false;
    }
    if (o.nameTaken(name)) {
      refuse(res, route, 'name_taken', 409, `node name ${name} belongs to a tracker of this host (its track file ${name}_<date>.jsonl)`);
      return false;
    }
    return true;
  };

  http.addRoute('POST', '/api/node/{name}/config', async (req, res, _url, p) => {
    const name = p.name!;
    if (!admit(res, 'config', name)) return;
    const r = await readJsonBody(req, o.maxConfigBytes());
    if (!r.ok) {
      refuse(res, 'config', r.status === 413 ? 'too_large' : 'bad_body', r.status, r.error);
      return;
    }
    const v = r.value;
    if (v === undefined) return refuse(res, 'config', 'bad_body', 400, 'invalid JSON: empty body');
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return refuse(res, 'config', 'bad_body', 400, 'the config must be a JSON object');
    o.registry.storeConfig(name, v as Record<string, unknown>);
    answer(res, 'config', 'accepted', 200, { status: 'registered', node: name });
  }, { ...node('config'), body: true });

  // Not declared as a JSON-body route: the body is NDJSON, and a line that is not
  // an event is skipped and counted, not a reason to refuse the batch.
  http.addRoute('POST', '/api/node/{name}/tracks', async (req, res, _url, p) => {
    const name = p.name!;
    if (!admit(res, 'tracks', name)) return;
    const r = await readRawBody(req, o.maxTracksBytes());
    if (!r.ok) return refuse(res, 'tracks', r.status === 413 ? 'too_large' : 'bad_body', r.status, r.error);
    const batch = parseTrackBatch(r.body);
    await o.registry.appendTracks(name, batch);
    answer(res, 'tracks', 'accepted', 200, { status: 'ok', accepted: batch.lines.length, skipped: batch.invalid });
  }, node('tracks'));

  http.addRoute('GET', '/api/nodes', (_req, res) => {
    sendJson(res, 200, { nodes: o.registry.list() });
  }, o.reads ?? {});
  return counts;
}
