// The control plane for agents: registry, commands, SSE streams, and the
// /api/v1/agents HTTP API. Nodes are the agents: the same node_id on TCP and HTTP
// is one agent.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { bearer, bearerOrQuery, controlToken, sha256, tokenMatches, unauthorized } from '../http/auth.js';
import { z } from 'zod';
import type { Config } from '../config.js';
import { sendJson, type HttpServer, type Params } from '../http/server.js';
import { readJsonBody } from '../http/body.js';
import { encodeCursor, parsePageQuery } from '../http/page.js';
import { ErrorCodes } from '../protocol/errors.js';
import { NODE_ID_PATTERN, NODE_ID_RULE } from '../protocol/node-id.js';
import {
  GROUP_PATTERN, GROUP_RULE, TEXT_PATTERN, TEXT_RULE, NAME_MAX, VERSION_MAX, CAPS_MAX, CAP_MAX, ROUTES_MAX, ROUTE_MAX,
} from '../protocol/agent-fields.js';
import { AgentRegistry, AGENT_STATES, AGENT_REFUSED_VIA, type AgentState, type Agent } from './agent-registry.js';
import { inSlices } from './slices.js';
import { CommandStore, COMMAND_TYPES, type CommandType, type CommandResult, type Command, type AckOutcome } from './command-store.js';
import { SseHub } from './sse-hub.js';
import { CommandSigner, canonicalJson } from './signing.js';
import { AccessTokens } from './access-token.js';
import type { RedisFleetStore } from './fleet-store-redis.js';
import { FleetPlane, type FleetLink } from './fleet-plane.js';

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
  /** radar_ingest_agents_refused_total{via}: new agents refused because the registry was full. */
  readonly refused: Record<(typeof AGENT_REFUSED_VIA)[number], number> = { register: 0, tcp: 0 };
  /** radar_ingest_agent_takeovers_total: re-registrations from another address while the agent's stream was open. */
  takeovers = 0;
  /** Digest of each agent's latest access token: registering again revokes the previous one. */
  private readonly currentToken = new Map<string, Buffer>();
  private readonly cfg: Config['agents'];
  private readonly commandBody: ReturnType<typeof commandSchema>;
  private readonly isControl: (req: IncomingMessage) => boolean;
  /** With a `cluster` section: the fleet's registry and commands. */
  private fleet: FleetPlane | null = null;
  /** When each of this host's agents got its current token (a write back never revokes a newer one). */
  private readonly tokenAt = new Map<string, number>();

  constructor(private readonly opts: AgentServiceOptions) {
    const c = opts.config;
    this.cfg = c.agents;
    const now = opts.now ?? Date.now;
    this.registry = new AgentRegistry({ staleAfterMs: c.agents.stale_after_ms, deadAfterMs: c.agents.dead_after_ms }, now,
      (id, from, to) => opts.log?.('info', { agent: id, from, to }, 'agent state'), c.agents.max_agents);
    this.signer = CommandSigner.loadOrCreate(c.agents.key_file);
    this.tokens = new AccessTokens(this.signer.deriveSecret('radar-ingest agent access tokens v1'), c.agents.access_token_ttl_ms, now);
    for (const t of COMMAND_TYPES) for (const r of ['created', 'delivered', 'acknowledged', 'expired']) this.commandCounts.set(`${t}/${r}`, 0);
    this.commands = new CommandStore(c.agents.command_ttl_ms, c.agents.max_commands_kept, (f) => this.signer.sign(f), now,
      (type, result) => this.countCommand(type, result));
    // A stream may hold a few full-size commands unread, then it is closed.
    this.hub = new SseHub(c.agents.keepalive_ms, Math.max(1024 * 1024, 4 * c.http.max_body_bytes));
    this.isControl = controlToken(c.http.api_token);
    this.commandBody = commandSchema(c.agents.deep_trace_max_ms);
  }

  private countCommand(type: CommandType, result: CommandResult): void {
    const k = `${type}/${result}`;
    this.commandCounts.set(k, (this.commandCounts.get(k) ?? 0) + 1);
  }

  /** A node seen on TCP; false (counted once per connection when `connected`) if the registry is full. */
  touchNode(id: string, at: number, group: string | undefined, connected: boolean): void {
    this.fleet?.touch(id, at, group);
    if (!this.registry.touch(id, at, group) && connected) {
      this.refused.tcp++;
      this.opts.log?.('warn', { agent: id, max_agents: this.cfg.max_agents, code: ErrorCodes.MAX_AGENTS }, 'agent registry full: node not listed');
    }
  }

  /** Periodic: time-based state changes (agents, command expiry, streams whose token expired). */
  sweep(): void {
    this.registry.sweep();
    this.commands.sweep();
    this.hub.expire(this.registry.now());
    this.fleet?.sweep();
  }

  close(): void {
    this.hub.closeAll();
  }

  mount(http: HttpServer): void {
    const control = { auth: 'control' as const, authorize: (req: IncomingMessage) => this.isControl(req) };
    // An agent's token is checked against the id in the path before the handler can
    // say whether that agent exists: 401 before 404.
    const agent = (query: boolean) => ({
      auth: 'agent' as const,
      authorize: (req: IncomingMessage, url: URL, p: Params) => this.agentTokenExpiry(query ? bearerOrQuery(req, url) : bearer(req), p.id!) !== null,
    });
    const P = PREFIX;
    http.addRoute('GET', P, (req, res, url) => this.list(req, res, url), control);
    http.addRoute('POST', `${P}/register`, (req, res) => this.register(req, res), { auth: 'node', body: true, authorize: (req) => bearer(req) !== null });
    http.addRoute('POST', `${P}/commands`, (req, res) => this.send(req, res, 'all', null), { ...control, body: true });
    http.addRoute('POST', `${P}/groups/{group}/commands`, (req, res, _u, p) => this.send(req, res, 'group', p.group!), { ...control, body: true });
    http.addRoute('GET', `${P}/{id}`, (req, res, _u, p) => this.getOne(req, res, p.id!), control);
    http.addRoute('DELETE', `${P}/{id}`, (req, res, _u, p) => this.remove(req, res, p.id!), control);
    http.addRoute('POST', `${P}/{id}/heartbeat`, (req, res, _u, p) => this.heartbeat(req, res, p.id!), agent(false));
    http.addRoute('GET', `${P}/{id}/events`, (req, res, url, p) => this.events(req, res, url, p.id!), agent(true));
    http.addRoute('POST', `${P}/{id}/commands`, (req, res, _u, p) => this.send(req, res, 'agent', p.id!), { ...control, body: true });
    http.addRoute('GET', `${P}/{id}/commands`, (req, res, url, p) => this.listCommands(req, res, url, p.id!), control);
    http.addRoute('POST', `${P}/{id}/commands/{commandId}/ack`, (req, res, _u, p) => this.ack(req, res, p.id!, p.commandId!), { ...agent(false), body: true });
  }

  // ---- auth -----------------------------------------------------------------

  /** A token the host issued to this agent, unexpired and not revoked by a newer registration. */
  holdsAccessToken(id: string, token: string): boolean {
    return this.agentTokenExpiry(token, id) !== null && tokenMatches(token, this.currentToken.get(id));
  }

  /** The expiry of a token the host issued for this agent id (signature, expiry, subject), else null. */
  private agentTokenExpiry(token: string | null, id: string): number | null {
    return token === null ? null : this.tokens.expiresAt(token, id);
  }

  /**
   * Agent endpoints, once the route has checked the token's signature for this id: the
   * agent must exist (404 after a host restart or a delete: register again) and the
   * token must be its latest (401 once revoked by a newer registration).
   */
  private async agentCurrent(res: ServerResponse, id: string, token: string | null): Promise<boolean> {
    const f = await this.viaFleet((st) => st.get(id));
    let digest: Buffer | undefined;
    if (f.ok) {
      if (f.v === null) {
        sendJson(res, 404, { error: `unknown agent ${id}` });
        return false;
      }
      digest = f.v.tokenDigest === null ? undefined : Buffer.from(f.v.tokenDigest, 'hex');
      if (tokenMatches(token, digest)) this.fleet!.mirror(f.v);
    } else {
      if (!this.registry.get(id)) {
        sendJson(res, 404, { error: `unknown agent ${id}` });
        return false;
      }
      digest = this.currentToken.get(id);
    }
    if (!tokenMatches(token, digest)) {
      unauthorized(res);
      return false;
    }
    return true;
  }

  // ---- the fleet (several hosts) ----------------------------------------------

  /** Registry and commands of the whole fleet (in Redis) from now on; this host's memory is the fallback. */
  attachFleet(link: FleetLink): FleetPlane {
    this.fleet = new FleetPlane(link, {
      registry: this.registry, commands: this.commands, hub: this.hub, cfg: this.cfg,
      currentToken: this.currentToken, tokenAt: this.tokenAt,
      countCommand: (type, result) => this.countCommand(type, result),
      forget: (id) => this.forgetLocal(id),
      ...(this.opts.traceNode ? { traceNode: this.opts.traceNode } : {}),
      ...(this.opts.log ? { log: this.opts.log } : {}),
    });
    return this.fleet;
  }

  /**
   * True while a cluster is configured and Redis is unreachable: the registry and the
   * commands are this host's only (false on a single host).
   */
  get degraded(): boolean {
    return this.fleet !== null && this.fleet.degraded;
  }

  /** The fleet's answer, or not ok (Redis unreachable, or no fleet): serve from this host's memory. */
  private viaFleet<T>(op: (st: RedisFleetStore) => Promise<T>): Promise<{ ok: true; v: T } | { ok: false }> {
    return this.fleet ? this.fleet.via(op) : Promise.resolve({ ok: false });
  }

  private forgetLocal(id: string): boolean {
    const found = this.registry.delete(id);
    this.currentToken.delete(id);
    this.tokenAt.delete(id);
    this.commands.forget(id);
    return found;
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

  private async register(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // The route made sure a token is present; the id it is checked against is in the body.
    const token = bearer(req)!;
    const b = await this.body(req, res, registerSchema);
    if (!b.ok) return;
    const v = b.value;
    if (!this.opts.checkNodeToken(v.id, token)) return unauthorized(res);
    const remote = req.socket.remoteAddress ?? '?';
    const info = { name: v.name, group: v.group, version: v.version, capabilities: v.capabilities, routes: v.routes ?? [] };
    const issued = this.tokens.issue(v.id);
    const digest = sha(issued.token);
    const now = this.registry.now();
    const f = await this.viaFleet(async (st) => {
      const prev = (await st.get(v.id))?.agent;
      const agent: Agent = { id: v.id, ...info, registeredAt: prev?.registered ? prev.registeredAt : now, lastHeartbeatAt: now, registered: true };
      if (!(await st.register({ agent, tokenDigest: digest.toString('hex'), tokenAt: now }, this.cfg.max_agents))) return false;
      // The previous token is revoked, and with it the stream it opened, wherever that stream is.
      await st.publishAll({ t: 'close', a: v.id, r: 'token_revoked', d: digest.toString('hex'), f: this.fleet!.hostId });
      return true;
    });
    const live = this.hub.get(v.id);
    const a = f.ok && !f.v ? null : this.registry.tryRegister(v.id, info);
    if (a === null) {
      this.refused.register++;
      this.opts.log?.('warn', { agent: v.id, max_agents: this.cfg.max_agents, code: ErrorCodes.MAX_AGENTS }, 'agent registry full: registration refused');
      return sendJson(res, 507, { error: `the agent registry is full (agents.max_agents = ${this.cfg.max_agents})`, code: ErrorCodes.MAX_AGENTS });
    }
    if (live && live.auth.remote !== remote) {
      this.takeovers++;
      this.opts.log?.('warn', { agent: v.id, stream_remote: live.auth.remote, remote }, 'agent registered again from another address while its stream was open; the stream is closed');
    }
    this.currentToken.set(v.id, digest);
    this.tokenAt.set(v.id, now);
    // The previous token is revoked, and with it the stream it opened.
    this.hub.close(v.id, 'token_revoked');
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

  private async heartbeat(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    if (!(await this.agentCurrent(res, id, bearer(req)))) return;
    await this.viaFleet((st) => st.heartbeat(id, this.registry.now()));
    this.registry.heartbeat(id);
    sendJson(res, 200, { id, state: 'LIVE' });
  }

  private async list(_req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const status = url.searchParams.get('status');
    if (status !== null && !(AGENT_STATES as readonly string[]).includes(status)) {
      return sendJson(res, 400, { error: `status must be one of ${AGENT_STATES.join(', ')}`, path: 'status' });
    }
    const q = parsePageQuery(url);
    if (!q.ok) return sendJson(res, 400, { error: q.error, path: q.path });
    const st = (status as AgentState | null) ?? undefined;
    const f = await this.viaFleet((s) => s.page(q.limit, q.cursor, st, this.registry.now(), this.registry.timing, this.cfg.max_agents));
    const page = f.ok ? f.v : this.registry.page(q.limit, q.cursor, st);
    const agents = page.agents.map((a) => ({ ...this.registry.view(a), ...this.opts.nodeStatus?.(a.id) }));
    sendJson(res, 200, { agents, next_cursor: page.next === null ? null : encodeCursor(page.next) });
  }

  private async getOne(_req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const f = await this.viaFleet(async (st) => ({ rec: await st.get(id), holder: (await st.streamHolders([id]))[0] ?? null }));
    const a = f.ok ? f.v.rec?.agent : this.registry.get(id);
    if (!a) return sendJson(res, 404, { error: `unknown agent ${id}` });
    const streamOpen = this.hub.get(id) !== undefined || (f.ok && f.v.holder !== null);
    sendJson(res, 200, { ...this.registry.view(a), ...this.opts.nodeStatus?.(a.id), streamOpen });
  }

  private async remove(_req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const f = await this.viaFleet(async (st) => {
      const r = await st.delete(id);
      await st.publishAll({ t: 'close', a: id, r: 'deleted', f: this.fleet!.hostId });
      return r.found;
    });
    const local = this.forgetLocal(id);
    if (!(f.ok ? f.v || local : local)) return sendJson(res, 404, { error: `unknown agent ${id}` });
    this.hub.close(id, 'deleted');
    sendJson(res, 200, { id, deleted: true });
  }

  private async events(req: IncomingMessage, res: ServerResponse, url: URL, id: string): Promise<void> {
    const token = bearerOrQuery(req, url);
    if (!(await this.agentCurrent(res, id, token))) return;
    const last = req.headers['last-event-id'];
    const expiresAt = this.agentTokenExpiry(token, id)!;
    // Last-Event-ID is accepted but nothing is replayed: delivered commands are not re-sent.
    const stream = this.hub.open(id, res, typeof last === 'string' ? last : null, {
      tokenDigest: sha(token!), expiresAt, remote: req.socket.remoteAddress ?? '?',
    });
    this.registry.heartbeat(id);
    for (const c of this.commands.undelivered(id)) this.deliver(c);
    const fl = this.fleet;
    if (!fl) return;
    res.on('close', () => {
      if (this.hub.get(id) === undefined) fl.streamClosed(id);
    });
    await fl.streamOpened(id, expiresAt, () => stream.closed);
  }

  private async send(req: IncomingMessage, res: ServerResponse, scope: 'agent' | 'group' | 'all', key: string | null): Promise<void> {
    let targets: Agent[];
    let target: string;
    const now = this.registry.now();
    const f = await this.viaFleet(async (st) => {
      if (scope === 'agent') {
        const r = await st.get(key!);
        return r ? [r.agent] : [];
      }
      const live = await st.live(now, this.registry.timing.staleAfterMs, this.cfg.max_agents);
      return scope === 'group' ? live.filter((a) => a.group === key) : live;
    });
    const fleet = f.ok ? this.fleet : null;
    if (scope === 'agent') {
      const a = f.ok ? f.v[0] : this.registry.get(key!);
      if (!a) return sendJson(res, 404, { error: `unknown agent ${key}` });
      targets = [a];
      target = `agent:${key}`;
    } else if (scope === 'group') {
      targets = f.ok ? f.v : this.registry.list('LIVE').filter((a) => a.group === key);
      target = `group:${key}`;
    } else {
      targets = f.ok ? f.v : this.registry.list('LIVE');
      target = 'all';
    }
    const b = await this.body(req, res, this.commandBody);
    if (!b.ok) return;
    const { type, payload = {} } = b.value;
    let canonical: string;
    try {
      canonical = canonicalJson(payload); // what the signature covers must have one canonical form
    } catch (err) {
      return sendJson(res, 400, { error: 'invalid request body', path: 'payload', message: `cannot be signed: ${(err as Error).message}` });
    }
    const dur = type === 'deep-trace' ? (payload as { duration_ms?: number }).duration_ms ?? Math.min(60000, this.cfg.deep_trace_max_ms) : 0;
    // One canonical payload for every command; signing (one per command: the id is
    // signed) runs in slices so a broadcast does not hold the event loop.
    const built: Command[] = [];
    await inSlices(targets, (a) => {
      if (fleet) built.push(this.commands.build(a.id, type, payload, target, canonical));
      else {
        if (!this.registry.get(a.id)) return; // deleted meanwhile
        const cmd = this.commands.create(a.id, type, payload, target, canonical);
        this.deliver(cmd);
        if (type === 'deep-trace') this.opts.traceNode?.(a.id, cmd.id, dur);
        built.push(cmd);
      }
    });
    if (fleet) {
      // Commands the fleet did not take (Redis failed meanwhile) are this host's.
      for (const c of await fleet.send(built, type, dur)) {
        this.commands.keep(c);
        this.deliver(c);
        if (type === 'deep-trace') this.opts.traceNode?.(c.agentId, c.id, dur);
      }
    }
    const results = built.map((c) => JSON.stringify({ agentId: c.agentId, commandId: c.id, state: this.commands.state(c) }));
    const body = `{"target":${JSON.stringify(target)},"type":${JSON.stringify(type)},"commands":[${results.join(',')}]}`;
    res.writeHead(202, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  private deliver(c: Command): void {
    const s = this.hub.get(c.agentId);
    if (!s) return; // stays PENDING; sent when the agent's stream opens, unless it expires first
    if (s.send(c.id, c.type, this.commands.eventData(c))) this.commands.markDelivered(c);
  }

  private async listCommands(_req: IncomingMessage, res: ServerResponse, url: URL, id: string): Promise<void> {
    const q = parsePageQuery(url);
    const f = await this.viaFleet(async (st) => (await st.get(id)) !== null);
    if (!(f.ok ? f.v : this.registry.get(id))) return sendJson(res, 404, { error: `unknown agent ${id}` });
    if (!q.ok) return sendJson(res, 400, { error: q.error, path: q.path });
    const after = q.cursor === null ? 0 : Number(q.cursor);
    if (!Number.isSafeInteger(after) || after < 0) return sendJson(res, 400, { error: 'cursor is not one this server gave out', path: 'cursor' });
    const fp = f.ok ? await this.viaFleet((st) => st.commandsOf(id, q.limit, after)) : { ok: false as const };
    const page = fp.ok
      ? { commands: fp.v.commands, next: fp.v.more && fp.v.commands.length > 0 ? fp.v.commands[fp.v.commands.length - 1]!.seq : null }
      : this.commands.page(id, q.limit, after);
    sendJson(res, 200, { commands: page.commands.map((c) => this.commands.view(c)), next_cursor: page.next === null ? null : encodeCursor(String(page.next)) });
  }

  private async ack(req: IncomingMessage, res: ServerResponse, id: string, commandId: string): Promise<void> {
    if (!(await this.agentCurrent(res, id, bearer(req)))) return;
    const b = await this.body(req, res, ackSchema);
    if (!b.ok) return;
    const result = b.value?.result;
    // A command created while Redis was unreachable lives here only.
    const local = this.commands.get(id, commandId) !== undefined;
    const f = local ? { ok: false as const } : await this.viaFleet(async (st) => {
      const c = await st.getCommand(id, commandId);
      if (!c) return { outcome: 'unknown' as AckOutcome, c };
      const outcome = await st.ack(id, commandId, result, this.registry.now(), this.cfg.command_ttl_ms);
      if (outcome === 'acknowledged') {
        c.acknowledgedAt = this.registry.now();
        c.result = result;
        this.countCommand(c.type, 'acknowledged');
      }
      return { outcome, c };
    });
    const outcome = f.ok ? f.v.outcome : this.commands.ack(id, commandId, result);
    switch (outcome) {
      case 'acknowledged':
        return sendJson(res, 200, this.commands.view(f.ok ? f.v.c! : this.commands.get(id, commandId)!));
      case 'unknown':
        return sendJson(res, 404, { error: `unknown command ${commandId} for agent ${id}` });
      case 'expired':
        return sendJson(res, 409, { error: `command ${commandId} expired before it was acknowledged`, state: 'EXPIRED' });
      case 'already':
        return sendJson(res, 409, { error: `command ${commandId} was already acknowledged`, state: 'ACKNOWLEDGED' });
    }
  }
}
