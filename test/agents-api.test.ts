// The /api/v1/agents HTTP API over real sockets: registration, heartbeats, the
// control API, SSE command streams (with a minimal SSE client written here),
// signed commands, acks, expiry, agent states under a fake clock, TCP liveness.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { call, SseClient, type Resp, type SseEvent } from './agents-http.js';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startEngine, Client, lineFrame, until, scrape, TOKEN } from './helpers.js';
import { encodeHello } from '../src/protocol/binary-protocol.js';
import { verifyCommand } from '../src/agents/signing.js';
import type { Engine } from '../src/engine/engine.js';

const CONTROL = 'control-secret';
const BASE = '/api/v1/agents';
const T0 = Date.UTC(2030, 0, 1);
const STALE = 1000;
const DEAD = 2000;
const TTL = 5000;
const HB = 700;
const MAX_BODY = 1024;

// ---- fixtures -------------------------------------------------------------------

interface Registration {
  id: string;
  sseEndpoint: string;
  heartbeatIntervalMs: number;
  accessToken: string;
  accessTokenExpiresAt: string;
  serverPublicKey: string;
}

interface Ctx {
  engine: Engine;
  port: number;
  clock: { now: number };
  register(id: string, over?: Record<string, unknown>): Promise<Registration>;
  stream(id: string, token: string, headers?: Record<string, string>): Promise<SseClient>;
  get(path: string, token?: string | null): Promise<Resp>;
  post(path: string, json?: unknown, token?: string | null): Promise<Resp>;
  command(path: string, type: string, payload?: unknown): Promise<Resp>;
  list(status?: string): Promise<any[]>;
  state(id: string): Promise<string>;
}

function regBody(id: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { id, name: `Node ${id}`, group: 'north', version: '1.2.3', capabilities: ['det-f64'], ...over };
}

describe('agents API', () => {
  const engines: Engine[] = [];
  const clients: Client[] = [];
  const streams: SseClient[] = [];
  after(async () => {
    for (const s of streams) s.close();
    for (const c of clients) c.destroy();
    await Promise.all(engines.map((e) => e.stop()));
  });

  async function setup(agents: Record<string, unknown> = {}, http: Record<string, unknown> = {}): Promise<Ctx> {
    const clock = { now: T0 };
    const engine = await startEngine({
      http: { api_token: CONTROL, max_body_bytes: MAX_BODY, ...http },
      agents: { heartbeat_interval_ms: HB, stale_after_ms: STALE, dead_after_ms: DEAD, command_ttl_ms: TTL, keepalive_ms: 60000, ...agents },
    }, { now: () => clock.now, agentSweepMs: 20 });
    engines.push(engine);
    const port = engine.httpAddress!.port;
    const ctx: Ctx = {
      engine, port, clock,
      async register(id, over = {}) {
        const r = await call(port, 'POST', `${BASE}/register`, { token: TOKEN, json: regBody(id, over) });
        assert.equal(r.status, 200, `register ${id}: ${r.text}`);
        return r.body as Registration;
      },
      async stream(id, token, headers = {}) {
        const s = await SseClient.open(port, `${BASE}/${id}/events`, { authorization: `Bearer ${token}`, ...headers });
        streams.push(s);
        assert.equal(s.status, 200, `stream ${id}: ${s.text}`);
        await until(() => s.items.length > 0, `initial comment on ${id}'s stream`);
        return s;
      },
      get: (path, token = CONTROL) => call(port, 'GET', path, { token }),
      post: (path, json, token = CONTROL) => call(port, 'POST', path, json === undefined ? { token } : { token, json }),
      command: (path, type, payload) => call(port, 'POST', path, { token: CONTROL, json: payload === undefined ? { type } : { type, payload } }),
      async list(status) {
        const r = await call(port, 'GET', status === undefined ? BASE : `${BASE}?status=${status}`, { token: CONTROL });
        assert.equal(r.status, 200, r.text);
        return r.body.agents as any[];
      },
      async state(id) {
        const r = await call(port, 'GET', `${BASE}/${id}`, { token: CONTROL });
        assert.equal(r.status, 200, r.text);
        return r.body.state as string;
      },
    };
    return ctx;
  }

  async function tcp(port: number): Promise<Client> {
    const c = await Client.open(port);
    clients.push(c);
    return c;
  }

  function assertUnauthorized(r: Resp | SseClient, what: string): void {
    assert.equal(r.status, 401, what);
    const body = r instanceof SseClient ? r.json : r.body;
    assert.deepEqual(body, { error: 'unauthorized' }, `${what}: no detail in a 401`);
  }

  function parseCommand(e: SseEvent): { id: string; type: string; target: string; created_at: number; payload: unknown; signature: string } {
    return JSON.parse(e.data);
  }

  // ---- registration ---------------------------------------------------------------

  test('register: the answer, the agent LIVE and listed; re-registration issues a fresh token and updates metadata', async () => {
    const x = await setup();
    const r1 = await x.register('reg-1', { routes: ['tracker-a'] });
    assert.equal(r1.id, 'reg-1');
    assert.equal(r1.sseEndpoint, `${BASE}/reg-1/events`);
    assert.equal(r1.heartbeatIntervalMs, HB);
    assert.equal(typeof r1.accessToken, 'string');
    assert.ok(r1.accessToken.length > 20);
    assert.equal(r1.accessTokenExpiresAt, new Date(T0 + 3600000).toISOString());
    assert.equal(Buffer.from(r1.serverPublicKey, 'base64').length, 32, 'raw Ed25519 public key, base64');

    const one = await x.get(`${BASE}/reg-1`);
    assert.equal(one.status, 200);
    assert.deepEqual(
      { ...one.body },
      {
        id: 'reg-1', name: 'Node reg-1', group: 'north', version: '1.2.3', capabilities: ['det-f64'], routes: ['tracker-a'],
        state: 'LIVE', registered: true, registeredAt: new Date(T0).toISOString(), lastHeartbeatAt: new Date(T0).toISOString(),
        bannedUntil: null, remote: null,
        streamOpen: false,
      },
    );

    // Same instant (fake clock not moved): the token must still be new.
    const r2 = await x.register('reg-1', { name: 'Renamed', group: 'south', version: '2.0.0', capabilities: ['det-f64', 'replay'], routes: [] });
    assert.notEqual(r2.accessToken, r1.accessToken);
    const r3 = await x.register('reg-1', { name: 'Renamed', group: 'south', version: '2.0.0', capabilities: ['det-f64', 'replay'], routes: [] });
    assert.notEqual(r3.accessToken, r2.accessToken);
    assert.equal(r2.serverPublicKey, r1.serverPublicKey);
    // The new token works; the ones it replaced are revoked.
    assert.equal((await x.post(`${BASE}/reg-1/heartbeat`, undefined, r3.accessToken)).status, 200);
    assert.equal((await x.post(`${BASE}/reg-1/heartbeat`, undefined, r1.accessToken)).status, 401);
    assert.equal((await x.post(`${BASE}/reg-1/heartbeat`, undefined, r2.accessToken)).status, 401);

    // Re-registration revives a STALE agent, replaces metadata, keeps registeredAt.
    x.clock.now = T0 + STALE;
    assert.equal(await x.state('reg-1'), 'STALE');
    await x.register('reg-1', { name: 'Again', group: 'east', version: '3.0.0', capabilities: [] });
    const v = (await x.get(`${BASE}/reg-1`)).body;
    assert.equal(v.state, 'LIVE');
    assert.equal(v.name, 'Again');
    assert.equal(v.group, 'east');
    assert.equal(v.version, '3.0.0');
    assert.deepEqual(v.capabilities, []);
    assert.deepEqual(v.routes, []);
    assert.equal(v.registeredAt, new Date(T0).toISOString());
    assert.equal(v.lastHeartbeatAt, new Date(T0 + STALE).toISOString());
    assert.equal((await x.list()).length, 1);
  });

  test('register: missing or wrong node token is 401 without detail, and nothing is registered', async () => {
    const x = await setup();
    assertUnauthorized(await call(x.port, 'POST', `${BASE}/register`, { json: regBody('r-no') }), 'no token');
    assertUnauthorized(await call(x.port, 'POST', `${BASE}/register`, { token: 'wrong', json: regBody('r-wrong') }), 'wrong token');
    assertUnauthorized(await call(x.port, 'POST', `${BASE}/register`, { token: CONTROL, json: regBody('r-ctl') }), 'the control token is not a node token');
    assertUnauthorized(await call(x.port, 'POST', `${BASE}/register`, { headers: { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }, json: regBody('r-basic') }), 'basic auth');
    const r = await call(x.port, 'POST', `${BASE}/register`, { token: 'wrong', json: regBody('r-wrong') });
    assert.equal(r.headers['www-authenticate'], 'Bearer');
    assert.deepEqual(await x.list(), []);
  });

  // ---- heartbeat ---------------------------------------------------------------------

  test('heartbeat: 200 for the agent itself, 401 for an unknown agent (no token can be its), 401 with another agent\'s or no token', async () => {
    const x = await setup();
    const a = await x.register('hb-a');
    const b = await x.register('hb-b');
    x.clock.now = T0 + 500;
    const ok = await x.post(`${BASE}/hb-a/heartbeat`, undefined, a.accessToken);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.body.id, 'hb-a');
    assert.equal(ok.body.state, 'LIVE');
    assert.equal((await x.get(`${BASE}/hb-a`)).body.lastHeartbeatAt, new Date(T0 + 500).toISOString());

    // 401 before 404: A's token says nothing about whether "nobody" exists.
    const unknown = await x.post(`${BASE}/nobody/heartbeat`, undefined, a.accessToken);
    assert.equal(unknown.status, 401);

    assertUnauthorized(await x.post(`${BASE}/hb-a/heartbeat`, undefined, b.accessToken), "B's token on A's heartbeat");
    assertUnauthorized(await x.post(`${BASE}/hb-a/heartbeat`, undefined, null), 'no token');
    assertUnauthorized(await x.post(`${BASE}/hb-a/heartbeat`, undefined, CONTROL), 'control token');
    assertUnauthorized(await x.post(`${BASE}/hb-a/heartbeat`, undefined, TOKEN), 'node TCP token');
    assertUnauthorized(await x.post(`${BASE}/hb-a/heartbeat`, undefined, `${a.accessToken}x`), 'tampered token');
    // The failed attempts did not count as heartbeats.
    assert.equal((await x.get(`${BASE}/hb-a`)).body.lastHeartbeatAt, new Date(T0 + 500).toISOString());
    assert.equal((await x.get(`${BASE}/hb-b`)).body.lastHeartbeatAt, new Date(T0).toISOString());
    // Wrong method.
    assert.equal((await x.get(`${BASE}/hb-a/heartbeat`, a.accessToken)).status, 405);
  });

  test('access tokens expire after access_token_ttl_ms (fake clock); registering again gives a working one', async () => {
    const x = await setup({ access_token_ttl_ms: 10000, stale_after_ms: 100000 });
    const a = await x.register('tok-a');
    x.clock.now = T0 + 9999;
    assert.equal((await x.post(`${BASE}/tok-a/heartbeat`, undefined, a.accessToken)).status, 200);
    x.clock.now = T0 + 10000;
    assertUnauthorized(await x.post(`${BASE}/tok-a/heartbeat`, undefined, a.accessToken), 'expired token');
    const s = await SseClient.open(x.port, `${BASE}/tok-a/events`, { authorization: `Bearer ${a.accessToken}` });
    streams.push(s);
    assertUnauthorized(s, 'expired token on the stream');
    const a2 = await x.register('tok-a');
    assert.equal(a2.accessTokenExpiresAt, new Date(T0 + 20000).toISOString());
    assert.equal((await x.post(`${BASE}/tok-a/heartbeat`, undefined, a2.accessToken)).status, 200);
  });

  // ---- control API: list / get / delete --------------------------------------------------

  test('list: all agents, ?status filter, 400 for an invalid status, 401 without the control token', async () => {
    const x = await setup();
    const a = await x.register('ls-a');
    await x.register('ls-b');
    x.clock.now = T0 + STALE;
    await x.post(`${BASE}/ls-a/heartbeat`, undefined, a.accessToken);
    assert.deepEqual((await x.list()).map((v) => v.id).sort(), ['ls-a', 'ls-b']);
    assert.deepEqual((await x.list('LIVE')).map((v) => v.id), ['ls-a']);
    assert.deepEqual((await x.list('STALE')).map((v) => v.id), ['ls-b']);
    assert.deepEqual(await x.list('DEAD'), []);
    for (const bad of ['live', 'BOGUS', '', 'LIVE,STALE']) {
      const r = await x.get(`${BASE}?status=${encodeURIComponent(bad)}`);
      assert.equal(r.status, 400, `status=${bad}`);
      assert.equal(r.body.path, 'status');
      assert.match(r.body.error, /LIVE, STALE, DEAD/);
    }
    assertUnauthorized(await x.get(BASE, null), 'no token');
    assertUnauthorized(await x.get(BASE, 'nope'), 'wrong token');
    assertUnauthorized(await x.get(BASE, a.accessToken), "an agent's token");
    assertUnauthorized(await x.get(BASE, TOKEN), 'the node token');
    // The control token is taken from the Authorization header only (a query string ends up in logs).
    assertUnauthorized(await call(x.port, 'GET', `${BASE}?access_token=${CONTROL}`), 'control token in the query');
  });

  test('the control API answers 401 to everyone when http.api_token is empty', async () => {
    const x = await setup({}, { api_token: '' });
    await x.register('empty-ctl');
    assertUnauthorized(await x.get(BASE, ''), 'empty bearer');
    assertUnauthorized(await call(x.port, 'GET', BASE, { headers: { authorization: 'Bearer ' } }), 'blank bearer');
    assertUnauthorized(await x.get(BASE, null), 'no token');
  });

  test('GET and DELETE one agent; DELETE ends its stream and forgets its commands', async () => {
    const x = await setup();
    const a = await x.register('del-a');
    assert.equal((await x.get(`${BASE}/nobody`)).status, 404);
    assertUnauthorized(await x.get(`${BASE}/del-a`, null), 'GET without token');
    assertUnauthorized(await call(x.port, 'DELETE', `${BASE}/del-a`, { token: a.accessToken }), "DELETE with the agent's token");

    const s = await x.stream('del-a', a.accessToken);
    assert.equal((await x.get(`${BASE}/del-a`)).body.streamOpen, true);
    assert.equal((await x.command(`${BASE}/del-a/commands`, 'config-update', { a: 1 })).status, 202);

    const d = await call(x.port, 'DELETE', `${BASE}/del-a`, { token: CONTROL });
    assert.equal(d.status, 200);
    assert.deepEqual(d.body, { id: 'del-a', deleted: true });
    await s.endedP;
    assert.equal((await x.get(`${BASE}/del-a`)).status, 404);
    assert.deepEqual(await x.list(), []);
    assert.equal((await call(x.port, 'DELETE', `${BASE}/del-a`, { token: CONTROL })).status, 404);
    assert.equal((await x.post(`${BASE}/del-a/heartbeat`, undefined, a.accessToken)).status, 404);
    assert.equal((await x.get(`${BASE}/del-a/commands`)).status, 404);
    await until(async () => (await scrape(x.engine)).get('radar_ingest_sse_streams_open') === 0, 'stream count back to 0');

    // Registering again starts afresh: no old commands.
    const a2 = await x.register('del-a');
    assert.deepEqual((await x.get(`${BASE}/del-a/commands`)).body.commands, []);
    const s2 = await x.stream('del-a', a2.accessToken);
    await new Promise((r) => setTimeout(r, 50)); // nothing may arrive
    assert.deepEqual(s2.events, []);
  });

  // ---- streams -------------------------------------------------------------------------------

  test('stream: 401 for an unknown agent; the initial comment arrives at once, before any command', async () => {
    const x = await setup();
    const a = await x.register('st-a');
    const unknown = await SseClient.open(x.port, `${BASE}/nobody/events`, { authorization: `Bearer ${a.accessToken}` });
    streams.push(unknown);
    assert.equal(unknown.status, 401);

    const s = await x.stream('st-a', a.accessToken);
    assert.match(String(s.headers['content-type']), /^text\/event-stream/);
    assert.equal(s.headers['cache-control'], 'no-cache, no-transform');
    assert.equal(s.items[0]!.kind, 'comment');
    assert.deepEqual(s.events, []);
    const r = await x.command(`${BASE}/st-a/commands`, 'config-update', { k: 'v' });
    assert.equal(r.status, 202);
    await until(() => s.events.length === 1, 'command event');
    assert.equal(s.items[0]!.kind, 'comment', 'the comment came first');

    // ?access_token= (EventSource cannot set headers) works as well and replaces the stream.
    const q = await SseClient.open(x.port, `${BASE}/st-a/events?access_token=${encodeURIComponent(a.accessToken)}`);
    streams.push(q);
    assert.equal(q.status, 200);
    await until(() => q.items.length > 0, 'initial comment (query token)');
    await s.endedP;
  });

  test('opening a stream counts as a heartbeat', async () => {
    const x = await setup();
    const a = await x.register('st-hb');
    x.clock.now = T0 + STALE + DEAD;
    assert.equal(await x.state('st-hb'), 'DEAD');
    await x.stream('st-hb', a.accessToken);
    assert.equal(await x.state('st-hb'), 'LIVE');
  });

  test('every command type is delivered with id = command id, event = type, and a valid Ed25519 signature', async () => {
    const x = await setup();
    const a = await x.register('cmd-a');
    const s = await x.stream('cmd-a', a.accessToken);
    const payloads: Record<string, unknown> = {
      'config-update': { ring: { size_bytes: 65536 }, note: 'ünïcødé ✓', list: [1, 2.5, null, true] },
      'deep-trace': { duration_ms: 1500 },
      replay: { from: '2030-01-01T00:00:00Z', to: '2030-01-01T00:05:00Z', z: 1, a: 2 },
    };
    let n = 0;
    for (const [type, payload] of Object.entries(payloads)) {
      x.clock.now = T0 + 10 * ++n;
      const r = await x.command(`${BASE}/cmd-a/commands`, type, payload);
      assert.equal(r.status, 202, r.text);
      assert.equal(r.body.target, 'agent:cmd-a');
      assert.equal(r.body.type, type);
      assert.equal(r.body.commands.length, 1);
      const c = r.body.commands[0];
      assert.equal(c.agentId, 'cmd-a');
      assert.equal(c.state, 'DELIVERED');
      await until(() => s.events.length === n, `${type} event`);
      const e = s.events[n - 1]!;
      assert.equal(e.id, c.commandId);
      assert.equal(e.event, type);
      const d = parseCommand(e);
      assert.equal(d.id, c.commandId);
      assert.equal(d.type, type);
      assert.equal(d.target, 'agent:cmd-a');
      assert.equal(d.created_at, T0 + 10 * n);
      assert.deepEqual(d.payload, payload);
      const fields = { id: d.id, type: d.type, target: d.target, createdAt: d.created_at, payload: d.payload };
      assert.equal(verifyCommand(a.serverPublicKey, fields, d.signature), true, `${type}: signature verifies`);
      // Any alteration breaks it.
      assert.equal(verifyCommand(a.serverPublicKey, { ...fields, payload: { ...(payload as object), injected: 1 } }, d.signature), false);
      assert.equal(verifyCommand(a.serverPublicKey, { ...fields, type: type === 'replay' ? 'config-update' : 'replay' }, d.signature), false);
      assert.equal(verifyCommand(a.serverPublicKey, { ...fields, target: 'all' }, d.signature), false);
      assert.equal(verifyCommand(a.serverPublicKey, { ...fields, createdAt: d.created_at + 1 }, d.signature), false);
      assert.equal(verifyCommand(a.serverPublicKey, { ...fields, id: '00000000-0000-4000-8000-000000000000' }, d.signature), false);
    }
    // The command ids are distinct; the store shows them DELIVERED.
    const list = (await x.get(`${BASE}/cmd-a/commands`)).body.commands as any[];
    assert.deepEqual(list.map((c) => c.id), s.events.map((e) => e.id));
    assert.deepEqual(list.map((c) => c.state), ['DELIVERED', 'DELIVERED', 'DELIVERED']);
    assert.deepEqual(list.map((c) => c.type), ['config-update', 'deep-trace', 'replay']);
    assert.equal(new Set(list.map((c) => c.id)).size, 3);
  });

  test('a command without payload is sent (and signed) with an empty object payload', async () => {
    const x = await setup();
    const a = await x.register('np-a');
    const s = await x.stream('np-a', a.accessToken);
    const r = await x.command(`${BASE}/np-a/commands`, 'replay');
    assert.equal(r.status, 202, r.text);
    await until(() => s.events.length === 1, 'event');
    const d = parseCommand(s.events[0]!);
    assert.deepEqual(d.payload, {});
    assert.equal(verifyCommand(a.serverPublicKey, { id: d.id, type: d.type, target: d.target, createdAt: d.created_at, payload: d.payload }, d.signature), true);
  });

  test('commands for an agent without a stream stay PENDING and are delivered, in order, when it opens', async () => {
    const x = await setup();
    const a = await x.register('pend-a');
    const r1 = await x.command(`${BASE}/pend-a/commands`, 'config-update', { n: 1 });
    const r2 = await x.command(`${BASE}/pend-a/commands`, 'replay', { n: 2 });
    assert.equal(r1.body.commands[0].state, 'PENDING');
    assert.equal(r2.body.commands[0].state, 'PENDING');
    const s = await x.stream('pend-a', a.accessToken);
    await until(() => s.events.length === 2, 'pending commands delivered');
    assert.deepEqual(s.events.map((e) => e.id), [r1.body.commands[0].commandId, r2.body.commands[0].commandId]);
    const states = ((await x.get(`${BASE}/pend-a/commands`)).body.commands as any[]).map((c) => c.state);
    assert.deepEqual(states, ['DELIVERED', 'DELIVERED']);
  });

  test('group and broadcast commands reach LIVE agents only (STALE and DEAD excluded)', async () => {
    const x = await setup();
    const ids = ['g1-live', 'g1-stale', 'g1-dead', 'g2-live'];
    const reg: Record<string, Registration> = {};
    const st: Record<string, SseClient> = {};
    for (const id of ids) reg[id] = await x.register(id, { group: id.slice(0, 2) });
    for (const id of ids) st[id] = await x.stream(id, reg[id]!.accessToken);
    // T0 + 3000: all DEAD; revive g1-stale; +1000: g1-stale STALE; revive the LIVE ones.
    x.clock.now = T0 + STALE + DEAD;
    await x.post(`${BASE}/g1-stale/heartbeat`, undefined, reg['g1-stale']!.accessToken);
    x.clock.now += STALE;
    await x.post(`${BASE}/g1-live/heartbeat`, undefined, reg['g1-live']!.accessToken);
    await x.post(`${BASE}/g2-live/heartbeat`, undefined, reg['g2-live']!.accessToken);
    assert.deepEqual(Object.fromEntries(await Promise.all(ids.map(async (id) => [id, await x.state(id)]))),
      { 'g1-live': 'LIVE', 'g1-stale': 'STALE', 'g1-dead': 'DEAD', 'g2-live': 'LIVE' });

    const g = await x.command(`${BASE}/groups/g1/commands`, 'config-update', { g: 1 });
    assert.equal(g.status, 202, g.text);
    assert.equal(g.body.target, 'group:g1');
    assert.deepEqual(g.body.commands.map((c: any) => c.agentId), ['g1-live']);
    await until(() => st['g1-live']!.events.length === 1, 'group command on g1-live');
    const gd = parseCommand(st['g1-live']!.events[0]!);
    assert.equal(gd.target, 'group:g1');
    assert.equal(verifyCommand(reg['g1-live']!.serverPublicKey, { id: gd.id, type: gd.type, target: gd.target, createdAt: gd.created_at, payload: gd.payload }, gd.signature), true);

    const all = await x.command(`${BASE}/commands`, 'replay', { all: true });
    assert.equal(all.status, 202, all.text);
    assert.equal(all.body.target, 'all');
    assert.deepEqual(all.body.commands.map((c: any) => c.agentId).sort(), ['g1-live', 'g2-live']);
    await until(() => st['g1-live']!.events.length === 2 && st['g2-live']!.events.length === 1, 'broadcast on LIVE agents');
    assert.equal(parseCommand(st['g2-live']!.events[0]!).target, 'all');

    const none = await x.command(`${BASE}/groups/nogroup/commands`, 'replay', {});
    assert.equal(none.status, 202);
    assert.deepEqual(none.body.commands, []);

    await new Promise((r) => setTimeout(r, 50)); // the excluded agents must receive nothing
    assert.deepEqual(st['g1-stale']!.events, []);
    assert.deepEqual(st['g1-dead']!.events, []);
    assert.deepEqual((await x.get(`${BASE}/g1-stale/commands`)).body.commands, []);
    assert.deepEqual((await x.get(`${BASE}/g1-dead/commands`)).body.commands, []);
    // A command addressed to one agent reaches it whatever its state.
    const direct = await x.command(`${BASE}/g1-dead/commands`, 'config-update', {});
    assert.equal(direct.status, 202);
    await until(() => st['g1-dead']!.events.length === 1, 'direct command to a DEAD agent with an open stream');
  });

  test('ack: 200 with the result, 409 when acknowledged twice, 404 for an unknown command', async () => {
    const x = await setup();
    const a = await x.register('ack-a');
    const s = await x.stream('ack-a', a.accessToken);
    const r = await x.command(`${BASE}/ack-a/commands`, 'config-update', { x: 1 });
    const id = r.body.commands[0].commandId as string;
    await until(() => s.events.length === 1, 'event');
    x.clock.now = T0 + 42;
    const ok = await x.post(`${BASE}/ack-a/commands/${id}/ack`, { result: { applied: true } }, a.accessToken);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.body.id, id);
    assert.equal(ok.body.state, 'ACKNOWLEDGED');
    assert.deepEqual(ok.body.result, { applied: true });
    assert.equal(ok.body.acknowledgedAt, new Date(T0 + 42).toISOString());

    const again = await x.post(`${BASE}/ack-a/commands/${id}/ack`, { result: 'again' }, a.accessToken);
    assert.equal(again.status, 409);
    assert.equal(again.body.state, 'ACKNOWLEDGED');
    const unknown = await x.post(`${BASE}/ack-a/commands/00000000-0000-4000-8000-000000000000/ack`, undefined, a.accessToken);
    assert.equal(unknown.status, 404);

    // The body is optional.
    const r2 = await x.command(`${BASE}/ack-a/commands`, 'replay', {});
    const id2 = r2.body.commands[0].commandId as string;
    const ok2 = await x.post(`${BASE}/ack-a/commands/${id2}/ack`, undefined, a.accessToken);
    assert.equal(ok2.status, 200, ok2.text);
    assert.equal(ok2.body.result, undefined);

    const list = (await x.get(`${BASE}/ack-a/commands`)).body.commands as any[];
    assert.deepEqual(list.map((c) => [c.id, c.state]), [[id, 'ACKNOWLEDGED'], [id2, 'ACKNOWLEDGED']]);
    assert.deepEqual(list[0].result, { applied: true }, 'the second ack did not overwrite the result');
    const m = await scrape(x.engine);
    assert.equal(m.get('radar_ingest_commands_total{type="config-update",result="acknowledged"}'), 1);
    assert.equal(m.get('radar_ingest_commands_total{type="replay",result="acknowledged"}'), 1);
  });

  test('expiry after command_ttl_ms (fake clock): EXPIRED in the list, ack -> 409, counted once; never delivered late', async () => {
    const x = await setup();
    const a = await x.register('exp-a');
    const s = await x.stream('exp-a', a.accessToken);
    const r = await x.command(`${BASE}/exp-a/commands`, 'deep-trace', { duration_ms: 1000 });
    const id = r.body.commands[0].commandId as string;
    await until(() => s.events.length === 1, 'event');
    const stateOf = async (cid: string): Promise<string> =>
      ((await x.get(`${BASE}/exp-a/commands`)).body.commands as any[]).find((c) => c.id === cid).state;
    x.clock.now = T0 + TTL - 1;
    assert.equal(await stateOf(id), 'DELIVERED');
    x.clock.now = T0 + TTL;
    assert.equal(await stateOf(id), 'EXPIRED');
    const view = ((await x.get(`${BASE}/exp-a/commands`)).body.commands as any[])[0];
    assert.equal(view.expiresAt, new Date(T0 + TTL).toISOString());
    const late = await x.post(`${BASE}/exp-a/commands/${id}/ack`, { result: 'late' }, a.accessToken);
    assert.equal(late.status, 409);
    assert.equal(late.body.state, 'EXPIRED');
    await until(async () => (await scrape(x.engine)).get('radar_ingest_commands_total{type="deep-trace",result="expired"}') === 1, 'expired counted');
    await new Promise((r) => setTimeout(r, 60)); // several sweeps: still counted once
    assert.equal((await scrape(x.engine)).get('radar_ingest_commands_total{type="deep-trace",result="expired"}'), 1);
    assert.equal((await scrape(x.engine)).get('radar_ingest_commands_total{type="deep-trace",result="acknowledged"}'), 0);

    // A PENDING command that expires before the stream opens is never sent.
    s.close();
    await until(async () => (await scrape(x.engine)).get('radar_ingest_sse_streams_open') === 0, 'stream closed');
    const p = await x.command(`${BASE}/exp-a/commands`, 'replay', {});
    assert.equal(p.body.commands[0].state, 'PENDING');
    x.clock.now += TTL;
    const s2 = await x.stream('exp-a', a.accessToken);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(s2.events, []);
    assert.equal(await stateOf(p.body.commands[0].commandId), 'EXPIRED');
  });

  test('keepalive comments every keepalive_ms', async () => {
    const x = await setup({ keepalive_ms: 50 });
    const a = await x.register('ka-a');
    const s = await x.stream('ka-a', a.accessToken);
    await until(() => s.comments.filter((c) => c === 'keepalive').length >= 3, 'three keepalive comments', 3000);
    assert.deepEqual(s.events, []);
    assert.equal(s.ended, false);
  });

  test('Last-Event-ID is accepted: the stream works and nothing already delivered is replayed', async () => {
    const x = await setup();
    const a = await x.register('lei-a');
    const s1 = await x.stream('lei-a', a.accessToken);
    const c1 = await x.command(`${BASE}/lei-a/commands`, 'config-update', { n: 1 });
    await until(() => s1.events.length === 1, 'first event');
    s1.close();
    await until(async () => (await scrape(x.engine)).get('radar_ingest_sse_streams_open') === 0, 'first stream gone');
    const s2 = await x.stream('lei-a', a.accessToken, { 'last-event-id': c1.body.commands[0].commandId });
    assert.equal(s2.status, 200);
    const c2 = await x.command(`${BASE}/lei-a/commands`, 'replay', { n: 2 });
    await until(() => s2.events.length >= 1, 'second event');
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(s2.events.map((e) => e.id), [c2.body.commands[0].commandId]);
    // An unknown Last-Event-ID is accepted too.
    const s3 = await x.stream('lei-a', a.accessToken, { 'last-event-id': 'not-a-command' });
    assert.equal(s3.status, 200);
  });

  test('stream replacement: the old stream ends, commands go to the new one, one stream counted', async () => {
    const x = await setup();
    const a = await x.register('rep-a');
    const s1 = await x.stream('rep-a', a.accessToken);
    const s2 = await x.stream('rep-a', a.accessToken);
    await s1.endedP;
    // Let the old stream's close handler run (it must not remove the new stream).
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(s2.ended, false);
    const r = await x.command(`${BASE}/rep-a/commands`, 'config-update', { v: 2 });
    assert.equal(r.body.commands[0].state, 'DELIVERED');
    await until(() => s2.events.length === 1, 'command on the new stream');
    assert.deepEqual(s1.events, []);
    assert.equal((await scrape(x.engine)).get('radar_ingest_sse_streams_open'), 1);
    assert.equal((await x.get(`${BASE}/rep-a`)).body.streamOpen, true);

    // Many quick replacements: exactly one stream survives and receives.
    const many: SseClient[] = [];
    for (let i = 0; i < 5; i++) many.push(await x.stream('rep-a', a.accessToken));
    const last = many[many.length - 1]!;
    await Promise.all([s2, ...many.slice(0, -1)].map((s) => s.endedP));
    await new Promise((r) => setTimeout(r, 30));
    assert.equal((await scrape(x.engine)).get('radar_ingest_sse_streams_open'), 1);
    await x.command(`${BASE}/rep-a/commands`, 'replay', {});
    await until(() => last.events.length === 1, 'command on the last stream');

    // The client closing the current stream: count back to 0, commands stay PENDING.
    last.close();
    await until(async () => (await scrape(x.engine)).get('radar_ingest_sse_streams_open') === 0, 'no stream open');
    assert.equal((await x.get(`${BASE}/rep-a`)).body.streamOpen, false);
    const p = await x.command(`${BASE}/rep-a/commands`, 'replay', {});
    assert.equal(p.body.commands[0].state, 'PENDING');
  });

  test('engine stop ends open streams and does not hang on them', async () => {
    const x = await setup({ keepalive_ms: 20 });
    const a = await x.register('stop-a');
    const s = await x.stream('stop-a', a.accessToken);
    const t = Date.now();
    await x.engine.stop();
    await s.endedP;
    assert.ok(Date.now() - t < 3000, `stop took ${Date.now() - t} ms`);
  });

  test('auth failures on agent endpoints: no token, wrong token, another agent\'s token, control token', async () => {
    const x = await setup();
    const a = await x.register('au-a');
    const b = await x.register('au-b');
    const sb = await x.stream('au-b', b.accessToken);
    const cmd = await x.command(`${BASE}/au-b/commands`, 'config-update', {});
    const cid = cmd.body.commands[0].commandId as string;
    await until(() => sb.events.length === 1, 'event for B');

    const open = async (path: string, headers: Record<string, string> = {}): Promise<SseClient> => {
      const s = await SseClient.open(x.port, path, headers);
      streams.push(s);
      return s;
    };
    assertUnauthorized(await open(`${BASE}/au-b/events`), 'stream without token');
    assertUnauthorized(await open(`${BASE}/au-b/events`, { authorization: 'Bearer wrong' }), 'stream, wrong token');
    assertUnauthorized(await open(`${BASE}/au-b/events`, { authorization: `Bearer ${a.accessToken}` }), "stream with A's token");
    assertUnauthorized(await open(`${BASE}/au-b/events?access_token=${encodeURIComponent(a.accessToken)}`), "stream with A's token in the query");
    assertUnauthorized(await open(`${BASE}/au-b/events`, { authorization: `Bearer ${CONTROL}` }), 'stream with the control token');
    assertUnauthorized(await x.post(`${BASE}/au-b/heartbeat`, undefined, a.accessToken), "heartbeat with A's token");
    assertUnauthorized(await x.post(`${BASE}/au-b/commands/${cid}/ack`, undefined, a.accessToken), "ack with A's token");
    assertUnauthorized(await x.post(`${BASE}/au-b/commands/${cid}/ack`, undefined, null), 'ack without token');
    assertUnauthorized(await x.post(`${BASE}/au-b/commands/${cid}/ack`, undefined, CONTROL), 'ack with the control token');
    // An agent cannot use the control API.
    assertUnauthorized(await x.post(`${BASE}/au-b/commands`, { type: 'replay' }, b.accessToken), 'send with an agent token');
    assertUnauthorized(await x.get(`${BASE}/au-b/commands`, b.accessToken), 'list commands with an agent token');
    assertUnauthorized(await x.post(`${BASE}/commands`, { type: 'replay' }, b.accessToken), 'broadcast with an agent token');
    assertUnauthorized(await x.post(`${BASE}/groups/north/commands`, { type: 'replay' }, null), 'group send without token');

    // B's stream survived all of this and A's token did not ack B's command.
    assert.equal(sb.ended, false);
    const list = (await x.get(`${BASE}/au-b/commands`)).body.commands as any[];
    assert.equal(list.find((c) => c.id === cid).state, 'DELIVERED');
    // A cannot ack B's command through its own path either.
    assert.equal((await x.post(`${BASE}/au-a/commands/${cid}/ack`, undefined, a.accessToken)).status, 404);
    assert.equal((await x.post(`${BASE}/au-b/commands/${cid}/ack`, undefined, b.accessToken)).status, 200);
  });

  // ---- request bodies ---------------------------------------------------------------------------

  test('bodies: 413 over max_body_bytes, 415 for text/plain, 400 for malformed JSON, 400 with the path of a schema error', async () => {
    const x = await setup();
    const big = regBody('big-a', { name: 'x'.repeat(MAX_BODY) });
    const r413 = await call(x.port, 'POST', `${BASE}/register`, { token: TOKEN, json: big });
    assert.equal(r413.status, 413);
    assert.match(r413.body.error, /exceeds the limit of 1024 bytes/);
    const r413c = await call(x.port, 'POST', `${BASE}/register`, { token: TOKEN, json: big, chunked: true });
    assert.equal(r413c.status, 413, 'chunked body over the limit');

    const r415 = await call(x.port, 'POST', `${BASE}/register`, { token: TOKEN, raw: JSON.stringify(regBody('txt')), contentType: 'text/plain' });
    assert.equal(r415.status, 415);
    assert.match(r415.body.error, /application\/json/);
    const json415 = await call(x.port, 'POST', `${BASE}/register`, { token: TOKEN, raw: JSON.stringify(regBody('cs')), contentType: 'application/json; charset=utf-8' });
    assert.equal(json415.status, 200, 'a charset parameter is fine');

    const bad = await call(x.port, 'POST', `${BASE}/register`, { token: TOKEN, raw: '{"id": "x",', contentType: 'application/json' });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error, /invalid JSON/);

    const cases: [unknown, string][] = [
      [regBody('s-1', { capabilities: [1] }), 'capabilities[0]'],
      [regBody('s-2', { capabilities: ['ok', 'x'.repeat(65)] }), 'capabilities[1]'],
      [regBody('bad id!'), 'id'],
      [regBody('s-3', { group: '' }), 'group'],
      [regBody('s-4', { routes: 'r' }), 'routes'],
      [{ id: 's-5', name: 'n', group: 'g', capabilities: [] }, 'version'],
      [[1, 2], '(body)'],
    ];
    for (const [body, path] of cases) {
      const r = await call(x.port, 'POST', `${BASE}/register`, { token: TOKEN, json: body });
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assert.equal(r.body.error, 'invalid request body');
      assert.equal(r.body.path, path);
      assert.equal(typeof r.body.message, 'string');
    }
    const empty = await call(x.port, 'POST', `${BASE}/register`, { token: TOKEN });
    assert.equal(empty.status, 400);
    assert.equal(empty.body.path, '(body)');

    // Command bodies.
    const a = await x.register('body-a');
    const t = await x.command(`${BASE}/body-a/commands`, 'reboot', {});
    assert.equal(t.status, 400);
    assert.equal(t.body.path, 'type');
    const dt = await x.command(`${BASE}/body-a/commands`, 'deep-trace', { duration_ms: 300001 });
    assert.equal(dt.status, 400);
    assert.equal(dt.body.path, 'payload.duration_ms');
    const dt2 = await x.command(`${BASE}/body-a/commands`, 'deep-trace', [1]);
    assert.equal(dt2.status, 400);
    assert.equal(dt2.body.path, 'payload');
    const txt = await call(x.port, 'POST', `${BASE}/body-a/commands`, { token: CONTROL, raw: '{"type":"replay"}', contentType: 'text/plain' });
    assert.equal(txt.status, 415);
    const ackBad = await call(x.port, 'POST', `${BASE}/body-a/commands/x/ack`, { token: a.accessToken, raw: 'nope', contentType: 'application/json' });
    assert.equal(ackBad.status, 400);
    // None of the invalid commands were created.
    assert.deepEqual((await x.get(`${BASE}/body-a/commands`)).body.commands, []);
    // Nothing invalid was registered.
    assert.deepEqual((await x.list()).map((v) => v.id).sort(), ['body-a', 'cs']);
  });

  test('unknown routes are 404 and wrong methods 405', async () => {
    const x = await setup();
    await x.register('rt-a');
    assert.equal((await x.get(`${BASE}/rt-a/nothing`)).status, 404);
    assert.equal((await x.get(`${BASE}/register`)).status, 405);
    assert.equal((await call(x.port, 'PUT', `${BASE}/rt-a`, { token: CONTROL })).status, 405);
    assert.equal((await call(x.port, 'POST', BASE, { token: CONTROL })).status, 405);
  });

  test('a malformed percent-escape in the path is a client error, not a 500', async () => {
    const x = await setup();
    const r = await x.get(`${BASE}/%E0%A4%A`);
    assert.equal(r.status, 400, `got ${r.status} ${r.text}`);
    assert.equal((await x.post(`${BASE}/%ZZ/heartbeat`, undefined, null)).status, 400);
  });

  test('a command payload that cannot be signed (a number out of range, 1e400 -> Infinity) is a 400, not a 500', async () => {
    const x = await setup();
    const a = await x.register('inf-a');
    const s = await x.stream('inf-a', a.accessToken);
    const r = await call(x.port, 'POST', `${BASE}/inf-a/commands`, { token: CONTROL, raw: '{"type":"config-update","payload":{"x":1e400}}' });
    assert.equal(r.status, 400, `got ${r.status} ${r.text}`);
    assert.equal(r.body.path, 'payload');
    assert.deepEqual((await x.get(`${BASE}/inf-a/commands`)).body.commands, [], 'no command created');
    // The stream is unaffected and later commands work.
    const ok = await x.command(`${BASE}/inf-a/commands`, 'config-update', { x: 1 });
    assert.equal(ok.status, 202);
    await until(() => s.events.length === 1, 'event');
  });

  // ---- states over time ----------------------------------------------------------------------------

  test('LIVE -> STALE -> DEAD on the list endpoint (fake clock), revived by a heartbeat; metrics for all states', async () => {
    const x = await setup();
    const a = await x.register('life-a');
    const states = async (): Promise<Record<string, string[]>> => {
      const out: Record<string, string[]> = {};
      for (const st of ['LIVE', 'STALE', 'DEAD']) out[st] = (await x.list(st)).map((v) => v.id);
      return out;
    };
    x.clock.now = T0 + STALE - 1;
    assert.deepEqual(await states(), { LIVE: ['life-a'], STALE: [], DEAD: [] });
    x.clock.now = T0 + STALE;
    assert.deepEqual(await states(), { LIVE: [], STALE: ['life-a'], DEAD: [] });
    x.clock.now = T0 + STALE + DEAD - 1;
    assert.deepEqual(await states(), { LIVE: [], STALE: ['life-a'], DEAD: [] });
    x.clock.now = T0 + STALE + DEAD;
    assert.deepEqual(await states(), { LIVE: [], STALE: [], DEAD: ['life-a'] });
    x.clock.now = T0 + 100 * (STALE + DEAD);
    assert.deepEqual(await states(), { LIVE: [], STALE: [], DEAD: ['life-a'] }, 'DEAD agents are kept');
    const m = await scrape(x.engine);
    assert.equal(m.get('radar_ingest_agents{state="DEAD"}'), 1);
    assert.equal(m.get('radar_ingest_agents{state="LIVE"}'), 0);
    const hb = await x.post(`${BASE}/life-a/heartbeat`, undefined, a.accessToken);
    assert.equal(hb.status, 200, hb.text);
    assert.deepEqual(await states(), { LIVE: ['life-a'], STALE: [], DEAD: [] });

    // One agent in each state at once: metrics show all three.
    await x.register('m-dead');
    x.clock.now += STALE + DEAD;
    await x.register('m-stale');
    x.clock.now += STALE;
    await x.register('m-live');
    await x.register('life-a');
    const m2 = await scrape(x.engine);
    assert.equal(m2.get('radar_ingest_agents{state="LIVE"}'), 2);
    assert.equal(m2.get('radar_ingest_agents{state="STALE"}'), 1);
    assert.equal(m2.get('radar_ingest_agents{state="DEAD"}'), 1);
    assert.equal(m2.get('radar_ingest_sse_streams_open'), 0);
    for (const type of ['config-update', 'deep-trace', 'replay']) {
      for (const result of ['created', 'delivered', 'acknowledged', 'expired']) {
        assert.equal(m2.get(`radar_ingest_commands_total{type="${type}",result="${result}"}`), 0, `${type}/${result} present`);
      }
    }
  });

  test('command metrics: created, delivered, acknowledged, expired per type', async () => {
    const x = await setup();
    const a = await x.register('met-a');
    const s = await x.stream('met-a', a.accessToken);
    const c1 = await x.command(`${BASE}/met-a/commands`, 'config-update', {});
    await x.command(`${BASE}/met-a/commands`, 'deep-trace', { duration_ms: 1000 });
    await until(() => s.events.length === 2, 'two events');
    await x.post(`${BASE}/met-a/commands/${c1.body.commands[0].commandId}/ack`, undefined, a.accessToken);
    x.clock.now = T0 + TTL;
    await until(async () => (await scrape(x.engine)).get('radar_ingest_commands_total{type="deep-trace",result="expired"}') === 1, 'expiry counted by the sweep');
    const m = await scrape(x.engine);
    const v = (t: string, r: string): number | undefined => m.get(`radar_ingest_commands_total{type="${t}",result="${r}"}`);
    assert.deepEqual([v('config-update', 'created'), v('config-update', 'delivered'), v('config-update', 'acknowledged'), v('config-update', 'expired')], [1, 1, 1, 0]);
    assert.deepEqual([v('deep-trace', 'created'), v('deep-trace', 'delivered'), v('deep-trace', 'acknowledged'), v('deep-trace', 'expired')], [1, 1, 0, 1]);
    assert.equal(m.get('radar_ingest_sse_streams_open'), 1);
  });

  // ---- TCP traffic and agents ------------------------------------------------------------------------

  test('TCP frames keep a registered agent LIVE (on connect and through the agent sweep)', async () => {
    const x = await setup();
    const tcpPort = x.engine.tcpAddress!.port;
    await x.register('node-1');
    const lastHb = async (): Promise<string> => (await x.get(`${BASE}/node-1`)).body.lastHeartbeatAt;

    // First frame (a new connection) shortly before the stale deadline.
    x.clock.now = T0 + STALE - 100;
    const c = await tcp(tcpPort);
    await c.send(lineFrame('node-1', 1));
    await until(async () => (await lastHb()) === new Date(T0 + STALE - 100).toISOString(), 'the frame counted as a heartbeat');
    // Let the agent sweep see this first write at this clock value (so the second frame is the only news later).
    await until(() => (x.engine.nodes.get('node-1')?.reader.lastWriteMs ?? 0) > 0, 'first frame in the ring');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await lastHb(), new Date(T0 + STALE - 100).toISOString());
    x.clock.now = T0 + STALE + 50;
    assert.equal(await x.state('node-1'), 'LIVE', 'still LIVE past the original stale deadline');

    // Another frame on the same connection: seen through the ring's write clock at the next sweep.
    const t2 = x.clock.now;
    await c.send(lineFrame('node-1', 2));
    await until(async () => (await lastHb()) === new Date(t2).toISOString(), 'the agent sweep saw the second frame');
    x.clock.now = T0 + STALE - 100 + STALE + 10;
    assert.equal(await x.state('node-1'), 'LIVE', 'LIVE past the deadline of the first frame');
    const v = (await x.get(`${BASE}/node-1`)).body;
    assert.equal(v.registered, true);
    assert.equal(v.group, 'north', 'TCP traffic does not replace the registered group');

    // Without more traffic it goes STALE at last.
    x.clock.now = t2 + STALE;
    await new Promise((r) => setTimeout(r, 60)); // several sweeps with no new frames
    assert.equal(await x.state('node-1'), 'STALE');
  });

  test('a node seen only on TCP is listed (registered: false, group "default" or its hello group)', async () => {
    const x = await setup();
    const tcpPort = x.engine.tcpAddress!.port;
    const c = await tcp(tcpPort);
    await c.send(lineFrame('tcp-only', 1));
    const v = await until(async () => (await x.list()).find((a) => a.id === 'tcp-only'), 'tcp-only listed');
    assert.equal(v.registered, false);
    assert.equal(v.group, 'default');
    assert.equal(v.name, 'tcp-only');
    assert.equal(v.state, 'LIVE');
    assert.equal(v.lastHeartbeatAt, new Date(T0).toISOString());

    const h = await tcp(tcpPort);
    await h.send(encodeHello('tcp-hello', TOKEN, { group: 'south' }));
    const hv = await until(async () => (await x.list()).find((a) => a.id === 'tcp-hello'), 'tcp-hello listed');
    assert.equal(hv.registered, false);
    assert.equal(hv.group, 'south');

    // Implicit agents take part in group commands (LIVE) and are listed by state.
    assert.deepEqual((await x.list('LIVE')).map((a) => a.id).sort(), ['tcp-hello', 'tcp-only']);
    const g = await x.command(`${BASE}/groups/south/commands`, 'config-update', {});
    assert.deepEqual(g.body.commands.map((cc: any) => cc.agentId), ['tcp-hello']);

    // Registering over HTTP turns it into a registered agent.
    await x.register('tcp-only', { group: 'east' });
    const r = (await x.get(`${BASE}/tcp-only`)).body;
    assert.equal(r.registered, true);
    assert.equal(r.group, 'east');
  });
});

describe('deep-trace', () => {
  test("a deep-trace command logs the node's frames (decoded and delivered) with the command id, for its duration", async () => {
    const lines: Record<string, any>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l));
        cb();
      },
    });
    const engine = await startEngine({ http: { api_token: CONTROL } }, { logger: pino({ level: 'info' }, sink) });
    try {
      const port = engine.httpAddress!.port;
      const reg = await call(port, 'POST', `${BASE}/register`, { token: TOKEN, json: regBody('node-tr') });
      assert.equal(reg.status, 200);
      const before = await Client.open(engine.tcpAddress!.port);
      await before.send(lineFrame('node-tr', 1));
      await until(() => lines.some((l) => l.msg === 'node connected' && l.node === 'node-tr'), 'connected');
      const r = await call(port, 'POST', `${BASE}/node-tr/commands`, { token: CONTROL, json: { type: 'deep-trace', payload: { duration_ms: 200 } } });
      assert.equal(r.status, 202);
      const id = r.body.commands[0].commandId as string;
      await until(() => lines.some((l) => l.msg === 'deep-trace: started' && l.correlation_id === id), 'trace started');
      await before.send(lineFrame('node-tr', 2, 3) + lineFrame('other-node', 2));
      const decoded = await until(() => lines.find((l) => l.msg === 'deep-trace: frame decoded' && l.correlation_id === id), 'frame traced');
      assert.equal(decoded.node, 'node-tr');
      assert.equal(decoded.timestamp, 2);
      assert.equal(decoded.detections, 3);
      await until(() => lines.some((l) => l.msg === 'deep-trace: delivered' && l.correlation_id === id && l.node === 'node-tr'), 'delivery traced');
      // Only the traced node, and only for the duration.
      assert.equal(lines.some((l) => l.msg?.startsWith('deep-trace') && l.node === 'other-node'), false);
      await new Promise((res) => setTimeout(res, 250));
      const n = lines.filter((l) => l.msg === 'deep-trace: frame decoded').length;
      await before.send(lineFrame('node-tr', 3));
      await until(async () => (await scrape(engine)).get('radar_ingest_frames_written_total') === 4, 'frame 3 written');
      assert.equal(lines.filter((l) => l.msg === 'deep-trace: frame decoded').length, n, 'no tracing after the duration');
      before.destroy();
    } finally {
      await engine.stop();
    }
  });
});

describe('registration with per-node tokens', () => {
  test('a node with its own TCP token registers with it, not with the shared one; others use the shared token', async () => {
    const engine = await startEngine({ http: { api_token: CONTROL }, tcp_server: { tokens: { 'node-own': 'own-secret' } } });
    try {
      const port = engine.httpAddress!.port;
      assert.equal((await call(port, 'POST', `${BASE}/register`, { token: TOKEN, json: regBody('node-own') })).status, 401);
      assert.equal((await call(port, 'POST', `${BASE}/register`, { token: 'own-secret', json: regBody('node-own') })).status, 200);
      assert.equal((await call(port, 'POST', `${BASE}/register`, { token: 'own-secret', json: regBody('node-else') })).status, 401);
      assert.equal((await call(port, 'POST', `${BASE}/register`, { token: TOKEN, json: regBody('node-else') })).status, 200);
    } finally {
      await engine.stop();
    }
  });
});
