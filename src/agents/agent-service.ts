// The control plane for agents: registry, commands, SSE streams, and the
// /api/v1/agents HTTP API. Nodes are the agents: the same node_id on TCP and HTTP
// is one agent.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { bearer, sha256, tokenMatches, unauthorized } from '../http-auth.js';
import { z } from 'zod';
import type { Config } from '../config.js';
import { sendJson, type HttpServer } from '../http-server.js';
import { readJsonBody } from '../http-body.js';
import { NODE_ID_PATTERN, NODE_ID_RULE } from '../shared/node-id.js';
import {
  GROUP_PATTERN, GROUP_RULE, TEXT_PATTERN, TEXT_RULE, NAME_MAX, VERSION_MAX, CAPS_MAX, CAP_MAX, ROUTES_MAX, ROUTE_MAX,
} from '../shared/agent-fields.js';
import { AgentRegistry, AGENT_STATES, type AgentState, type Agent } from './agent-registry.js';
import { CommandStore, COMMAND_TYPES, type CommandType, type CommandResult, type Command } from './command-store.js';
import { SseHub } from './sse-hub.js';
import { CommandSigner, canonicalJson } from './signing.js';
import { AccessTokens } from './access-token.js';

const PREFIX = '/api/v1/agents';

const idSchema = z.string().regex(NODE_ID_PATTERN, NODE_ID_RULE);
const groupSchema = z.string().regex(GROUP_PATTERN, GROUP_RULE);
const textSchema = (min: number, max: number) => z.string().min(min).max(max).regex(TEXT_PATTERN, TEXT_RULE);
const registerSchema = z.object({
  id: idSchema,
  name: textSchema(1, NAME_MAX),
  group: groupSchema,
  version: textSchema(0, VERSION_MAX),
  capabilities: z.array(textSchema(0, CAP_MAX)).max(CAPS_MAX),
  routes: z.array(textSchema(0, ROUTE_MAX)).max(ROUTES_MAX).optional(),
});
const commandSchema = (deepTraceMaxMs: number) => z.object({
  type: z.enum(COMMAND_TYPES),
  payload: z.unknown().optional(),
}).superRefine((c, ctx) => {
  if (c.type !== 'deep-trace') return;
  const p = c.payload;
  if (p === undefined) return;
  if (typeof p !== 'object' || p === null || Array.isArray(p)) {
    ctx.addIssue({ code: 'custom', path: ['payload'], message: 'deep-trace payload must be an object' });
    return;
  }
  const d = (p as Record<string, unknown>).duration_ms;
  if (d !== undefined && (typeof d !== 'number' || !Number.isInteger(d) || d < 1 || d > deepTraceMaxMs)) {
    ctx.addIssue({ code: 'custom', path: ['payload', 'duration_ms'], message: `must be an integer between 1 and ${deepTraceMaxMs}` });
  }
});
const ackSchema = z.object({ result: z.unknown().optional() }).optional();

function zodPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? String(seg) : `.${String(seg)}`;
  return out;
}

const sha = sha256;

export interface AgentServiceOptions {
  config: Config;
  now?: () => number;
  /** Checks a node's TCP token (shared or per node). */
  checkNodeToken(nodeId: string, token: string): boolean;
  /** Extra per-node facts shown with the agent (the flapping guard's ban). */
  /** The node's connection facts: flapping ban, and its address (from a PROXY header when there is one). */
  nodeStatus?(nodeId: string): { bannedUntil: string | null; remote: string | null };
  /** deep-trace: turn on host-side tracing of a node's frames. */
  traceNode?(nodeId: string, correlationId: string, durationMs: number): void;
  log?: (level: 'info' | 'warn', obj: Record<string, unknown>, msg: string) => void;
}

export class AgentService {
  readonly registry: AgentRegistry;
  readonly commands: CommandStore;
  readonly hub: SseHub;
  readonly signer: CommandSigner;
  readonly tokens: AccessTokens;
  /** radar_ingest_commands_total{type,result}. */
  readonly commandCounts = new Map<string, number>();
  private readonly apiToken: Buffer | null;
  /** Digest of each agent's latest access token: registering again revokes the previous one. */
  private readonly currentToken = new Map<string, Buffer>();
  private readonly cfg: Config['agents'];
  private readonly commandBody: ReturnType<typeof commandSchema>;

  constructor(private readonly opts: AgentServiceOptions) {
    const c = opts.config;
    this.cfg = c.agents;
    const now = opts.now ?? Date.now;
    this.registry = new AgentRegistry({ staleAfterMs: c.agents.stale_after_ms, deadAfterMs: c.agents.dead_after_ms }, now,
      (id, from, to) => opts.log?.('info', { agent: id, from, to }, 'agent state'));
    this.signer = CommandSigner.loadOrCreate(c.agents.key_file);
    this.tokens = new AccessTokens(this.signer.deriveSecret('radar-ingest agent access tokens v1'), c.agents.access_token_ttl_ms, now);
    for (const t of COMMAND_TYPES) for (const r of ['created', 'delivered', 'acknowledged', 'expired']) this.commandCounts.set(`${t}/${r}`, 0);
    this.commands = new CommandStore(c.agents.command_ttl_ms, c.agents.max_commands_kept, (f) => this.signer.sign(f), now,
      (type, result) => this.countCommand(type, result));
    this.hub = new SseHub(c.agents.keepalive_ms);
    this.apiToken = c.http.api_token === '' ? null : sha(c.http.api_token);
    this.commandBody = commandSchema(c.agents.deep_trace_max_ms);
  }

  private countCommand(type: CommandType, result: CommandResult): void {
    const k = `${type}/${result}`;
    this.commandCounts.set(k, (this.commandCounts.get(k) ?? 0) + 1);
  }

  /** Periodic: time-based state changes (agents, command expiry). */
  sweep(): void {
    this.registry.sweep();
    this.commands.sweep();
  }

  close(): void {
    this.hub.closeAll();
  }

  mount(http: HttpServer): void {
    http.addRoute('*', new RegExp(`^${PREFIX}(/.*)?$`), (req, res, url) => this.route(req, res, url));
  }

  // ---- routing ------------------------------------------------------------

  private async route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    let rest: string[];
    try {
      rest = url.pathname.slice(PREFIX.length).split('/').filter((s) => s !== '').map(decodeURIComponent);
    } catch {
      return sendJson(res, 400, { error: 'malformed percent-encoding in the path' });
    }
    const m = req.method ?? 'GET';
    const [a, b, c, d] = rest;
    const n = rest.length;
    if (n === 0) return m === 'GET' ? this.list(req, res, url) : this.methodNotAllowed(res, 'GET');
    if (n === 1 && a === 'register') return m === 'POST' ? this.register(req, res, url) : this.methodNotAllowed(res, 'POST');
    if (n === 1 && a === 'commands') return m === 'POST' ? this.send(req, res, url, 'all', null) : this.methodNotAllowed(res, 'POST');
    if (n === 3 && a === 'groups' && c === 'commands') return m === 'POST' ? this.send(req, res, url, 'group', b!) : this.methodNotAllowed(res, 'POST');
    if (n === 1) {
      if (m === 'GET') return this.getOne(req, res, url, a!);
      if (m === 'DELETE') return this.remove(req, res, url, a!);
      return this.methodNotAllowed(res, 'GET, DELETE');
    }
    if (n === 2 && b === 'heartbeat') return m === 'POST' ? this.heartbeat(req, res, url, a!) : this.methodNotAllowed(res, 'POST');
    if (n === 2 && b === 'events') return m === 'GET' ? this.events(req, res, url, a!) : this.methodNotAllowed(res, 'GET');
    if (n === 2 && b === 'commands') {
      if (m === 'POST') return this.send(req, res, url, 'agent', a!);
      if (m === 'GET') return this.listCommands(req, res, url, a!);
      return this.methodNotAllowed(res, 'GET, POST');
    }
    if (n === 4 && b === 'commands' && d === 'ack') return m === 'POST' ? this.ack(req, res, url, a!, c!) : this.methodNotAllowed(res, 'POST');
    sendJson(res, 404, { error: 'not found' });
  }

  private methodNotAllowed(res: ServerResponse, allow: string): void {
    res.setHeader('allow', allow);
    sendJson(res, 405, { error: 'method not allowed' });
  }

  // ---- auth -----------------------------------------------------------------

  private unauthorized(res: ServerResponse): void {
    unauthorized(res);
  }

  /** Control API: the operator's bearer token (http.api_token). */
  private control(req: IncomingMessage, res: ServerResponse, url: URL): boolean {
    const t = bearer(req, url);
    if (!tokenMatches(t, this.apiToken)) {
      this.unauthorized(res);
      return false;
    }
    return true;
  }

  /** Agent endpoints: the agent's own access token. */
  private agentAuth(req: IncomingMessage, res: ServerResponse, url: URL, id: string): boolean {
    const t = bearer(req, url);
    const current = this.currentToken.get(id);
    if (t === null || !this.tokens.verify(t, id) || !tokenMatches(t, current)) {
      this.unauthorized(res);
      return false;
    }
    return true;
  }

  private async body<T>(req: IncomingMessage, res: ServerResponse, schema: z.ZodType<T>): Promise<{ ok: true; value: T } | { ok: false }> {
    const r = await readJsonBody(req, this.opts.config.http.max_body_bytes);
    if (!r.ok) {
      if (r.status === 413) res.setHeader('connection', 'close');
      sendJson(res, r.status, { error: r.error });
      return { ok: false };
    }
    const p = schema.safeParse(r.value);
    if (!p.success) {
      const iss = p.error.issues[0]!;
      const path = zodPath(iss.path);
      sendJson(res, 400, { error: 'invalid request body', path: path === '' ? '(body)' : path, message: iss.message });
      return { ok: false };
    }
    return { ok: true, value: p.data };
  }

  // ---- handlers ---------------------------------------------------------------

  private async register(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const token = bearer(req, url);
    // Authenticate before reading the body; the id it is checked against is in the body,
    // so a shared token is checked here and a per-node token after parsing.
    if (token === null) return this.unauthorized(res);
    const b = await this.body(req, res, registerSchema);
    if (!b.ok) return;
    const v = b.value;
    if (!this.opts.checkNodeToken(v.id, token)) return this.unauthorized(res);
    this.registry.register(v.id, { name: v.name, group: v.group, version: v.version, capabilities: v.capabilities, routes: v.routes ?? [] });
    const issued = this.tokens.issue(v.id);
    this.currentToken.set(v.id, sha(issued.token));
    this.opts.log?.('info', { agent: v.id, group: v.group, version: v.version }, 'agent registered');
    sendJson(res, 200, {
      id: v.id,
      sseEndpoint: `${PREFIX}/${encodeURIComponent(v.id)}/events`,
      heartbeatIntervalMs: this.cfg.heartbeat_interval_ms,
      accessToken: issued.token,
      accessTokenExpiresAt: new Date(issued.expiresAt).toISOString(),
      serverPublicKey: this.signer.publicKeyBase64,
    });
  }

  private async heartbeat(req: IncomingMessage, res: ServerResponse, url: URL, id: string): Promise<void> {
    if (!this.registry.get(id)) return sendJson(res, 404, { error: `unknown agent ${id}` });
    if (!this.agentAuth(req, res, url, id)) return;
    this.registry.heartbeat(id);
    sendJson(res, 200, { id, state: 'LIVE' });
  }

  private async list(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (!this.control(req, res, url)) return;
    const status = url.searchParams.get('status');
    if (status !== null && !(AGENT_STATES as readonly string[]).includes(status)) {
      return sendJson(res, 400, { error: `status must be one of ${AGENT_STATES.join(', ')}`, path: 'status' });
    }
    const agents = this.registry.list((status as AgentState | null) ?? undefined).map((a) => ({ ...this.registry.view(a), ...this.opts.nodeStatus?.(a.id) }));
    sendJson(res, 200, { agents });
  }

  private async getOne(req: IncomingMessage, res: ServerResponse, url: URL, id: string): Promise<void> {
    if (!this.control(req, res, url)) return;
    const a = this.registry.get(id);
    if (!a) return sendJson(res, 404, { error: `unknown agent ${id}` });
    sendJson(res, 200, { ...this.registry.view(a), ...this.opts.nodeStatus?.(a.id), streamOpen: this.hub.get(id) !== undefined });
  }

  private async remove(req: IncomingMessage, res: ServerResponse, url: URL, id: string): Promise<void> {
    if (!this.control(req, res, url)) return;
    if (!this.registry.delete(id)) return sendJson(res, 404, { error: `unknown agent ${id}` });
    this.currentToken.delete(id);
    this.hub.close(id);
    this.commands.forget(id);
    sendJson(res, 200, { id, deleted: true });
  }

  private async events(req: IncomingMessage, res: ServerResponse, url: URL, id: string): Promise<void> {
    if (!this.registry.get(id)) return sendJson(res, 404, { error: `unknown agent ${id}` });
    if (!this.agentAuth(req, res, url, id)) return;
    const last = req.headers['last-event-id'];
    // Last-Event-ID is accepted but nothing is replayed: delivered commands are not re-sent.
    this.hub.open(id, res, typeof last === 'string' ? last : null);
    this.registry.heartbeat(id);
    for (const c of this.commands.undelivered(id)) this.deliver(c);
  }

  private async send(req: IncomingMessage, res: ServerResponse, url: URL, scope: 'agent' | 'group' | 'all', key: string | null): Promise<void> {
    if (!this.control(req, res, url)) return;
    let targets: Agent[];
    let target: string;
    if (scope === 'agent') {
      const a = this.registry.get(key!);
      if (!a) return sendJson(res, 404, { error: `unknown agent ${key}` });
      targets = [a];
      target = `agent:${key}`;
    } else if (scope === 'group') {
      targets = this.registry.list('LIVE').filter((a) => a.group === key);
      target = `group:${key}`;
    } else {
      targets = this.registry.list('LIVE');
      target = 'all';
    }
    const b = await this.body(req, res, this.commandBody);
    if (!b.ok) return;
    const { type, payload = {} } = b.value;
    try {
      canonicalJson(payload); // what the signature covers must have one canonical form
    } catch (err) {
      return sendJson(res, 400, { error: 'invalid request body', path: 'payload', message: `cannot be signed: ${(err as Error).message}` });
    }
    const results = targets.map((a) => {
      const cmd = this.commands.create(a.id, type, payload, target);
      this.deliver(cmd);
      if (type === 'deep-trace') {
        const dur = (payload as { duration_ms?: number }).duration_ms ?? Math.min(60000, this.cfg.deep_trace_max_ms);
        this.opts.traceNode?.(a.id, cmd.id, dur);
      }
      return { agentId: a.id, commandId: cmd.id, state: this.commands.state(cmd) };
    });
    sendJson(res, 202, { target, type, commands: results });
  }

  private deliver(c: Command): void {
    const s = this.hub.get(c.agentId);
    if (!s) return; // stays PENDING; sent when the agent's stream opens, unless it expires first
    s.send(c.id, c.type, this.commands.eventData(c));
    this.commands.markDelivered(c);
  }

  private async listCommands(req: IncomingMessage, res: ServerResponse, url: URL, id: string): Promise<void> {
    if (!this.control(req, res, url)) return;
    if (!this.registry.get(id)) return sendJson(res, 404, { error: `unknown agent ${id}` });
    sendJson(res, 200, { commands: this.commands.list(id).map((c) => this.commands.view(c)) });
  }

  private async ack(req: IncomingMessage, res: ServerResponse, url: URL, id: string, commandId: string): Promise<void> {
    if (!this.registry.get(id)) return sendJson(res, 404, { error: `unknown agent ${id}` });
    if (!this.agentAuth(req, res, url, id)) return;
    const b = await this.body(req, res, ackSchema);
    if (!b.ok) return;
    const outcome = this.commands.ack(id, commandId, b.value?.result);
    switch (outcome) {
      case 'acknowledged':
        return sendJson(res, 200, this.commands.view(this.commands.get(id, commandId)!));
      case 'unknown':
        return sendJson(res, 404, { error: `unknown command ${commandId} for agent ${id}` });
      case 'expired':
        return sendJson(res, 409, { error: `command ${commandId} expired before it was acknowledged`, state: 'EXPIRED' });
      case 'already':
        return sendJson(res, 409, { error: `command ${commandId} was already acknowledged`, state: 'ACKNOWLEDGED' });
    }
  }
}
