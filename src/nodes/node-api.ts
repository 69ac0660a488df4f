// POST /api/v1/nodes/{node_id}/resume-point: an operator moves a binary node's
// resume point (welcome.last_seq), with the control token (http.api_token). Body
// {"last_seq": n} (default 0: start again). Refused (409) while the node is
// connected: its connection's shard owns the ring header then.
import { z } from 'zod';
import type { HttpServer } from '../http/server.js';
import { sendJson } from '../http/server.js';
import { controlToken } from '../http/auth.js';
import { readJsonBody } from '../http/body.js';
import type { NodeTable } from './node-table.js';

const bodySchema = z.object({ last_seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional() }).strict().optional();

export function mountNodeApi(http: HttpServer, nodes: NodeTable, apiToken: string, maxBodyBytes: number, log: (msg: string, obj: Record<string, unknown>) => void): void {
  const isControl = controlToken(apiToken);
  http.addRoute('POST', '/api/v1/nodes/{node_id}/resume-point', async (req, res, _url, params) => {
    const id = params.node_id!;
    const r = await readJsonBody(req, maxBodyBytes);
    if (!r.ok) {
      sendJson(res, r.status, { error: r.error });
      return;
    }
    const p = bodySchema.safeParse(r.value);
    if (!p.success) {
      const iss = p.error.issues[0]!;
      sendJson(res, 400, { error: 'invalid request body', path: iss.path.join('.') || '(body)', message: iss.message });
      return;
    }
    const seq = p.data?.last_seq ?? 0;
    const out = nodes.setResumePoint(id, seq);
    if (out === 'unknown') {
      sendJson(res, 404, { error: `unknown node ${id}` });
      return;
    }
    if (out === 'connected') {
      sendJson(res, 409, { error: `node ${id} is connected; move its resume point after it disconnects` });
      return;
    }
    log('node resume point moved', { node: id, last_seq: seq, previous: out.previous });
    sendJson(res, 200, { node: id, last_seq: seq, previous: out.previous });
  }, { auth: 'control', body: true, authorize: (req) => isControl(req) });
}
