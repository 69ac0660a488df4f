// One agent registry and one command plane across hosts: three engines sharing one
// real redis-server (skipped, saying so, when it is not installed). An agent
// registered on one host is listed by the others with the same state; a command
// created on one host reaches the agent's stream on another and is acknowledged on a
// third, with one state everywhere; group commands and broadcasts reach every host;
// a stream opening later gets its pending commands; a re-registration revokes the
// stream on the other host; deep-trace runs on the node's owner; Redis restarted
// mid-run: each host serves its own agents meanwhile and writes them back after.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { Engine } from '../src/engine/engine.js';
import { testConfig, until, scrape, TOKEN, Client, lineFrame } from './helpers.js';
import { call, SseClient, type Resp } from './agents-http.js';
import { RedisServer, redisSkip } from './redis-server.js';
import { verifyCommand } from '../src/agents/signing.js';
import { CLUSTER_M } from '../src/telemetry/metric-names.js';
import { decodeFleetMessage, deliverMessages, leaseHolder, MAX_DELIVERIES_PER_MESSAGE } from '../src/agents/fleet-messages.js';
import { decodeAgent, decodeCommand } from '../src/agents/fleet-records.js';

const CONTROL = 'control-secret';
const BASE = '/api/v1/agents';
const PREFIX = 'agents-test:';
/** Command lifetime: long enough for a loaded machine, short enough to watch one expire. */
const TTL = 6000;

interface Host {
  id: string;
  engine: Engine;
  port: number;
  logs: Record<string, unknown>[];
}

function regBody(id: string, group = 'north'): Record<string, unknown> {
  return { id, name: `Node ${id}`, group, version: '1.0.0', capabilities: ['det-f64'] };
}

const CMD = '0f8fad5b-d9cb-469f-a165-70867728950e';

test('host messages: only well-formed, bounded messages are taken', () => {
  assert.deepEqual(decodeFleetMessage(`{"t":"deliver","c":[["node-1","${CMD}"]]}`, 60000), { t: 'deliver', c: [['node-1', CMD]] });
  assert.deepEqual(decodeFleetMessage(`{"t":"trace","n":"node-1","c":"${CMD}","ms":500}`, 60000), { t: 'trace', n: 'node-1', c: CMD, ms: 500 });
  assert.deepEqual(decodeFleetMessage('{"t":"close","a":"n","r":"deleted","f":"host-a"}', 1), { t: 'close', a: 'n', r: 'deleted', f: 'host-a' });
  for (const bad of [
    'nope', '[]', 'null', '{"t":"other"}', '{"t":"deliver","c":[]}', `{"t":"deliver","c":[["../etc","${CMD}"]]}`,
    '{"t":"deliver","c":[["n","not-a-uuid"]]}', `{"t":"trace","n":"n","c":"${CMD}","ms":60001}`, `{"t":"trace","n":"n","c":"${CMD}","ms":1.5}`,
    '{"t":"close","a":"n","r":"other","f":"h"}', '{"t":"close","a":"n","r":"deleted"}', '{"t":"close","a":"n","r":"token_revoked","d":"xyz","f":"h"}',
    `{"t":"deliver","c":${JSON.stringify(Array.from({ length: MAX_DELIVERIES_PER_MESSAGE + 1 }, () => ['n', CMD]))}}`,
    `{"t":"trace","n":"n","c":"${CMD}","ms":5,"pad":"${'x'.repeat(9000)}"}`,
  ]) assert.equal(decodeFleetMessage(bad, 60000), null, bad.slice(0, 80));
  const msgs = deliverMessages(Array.from({ length: 70 }, (_, i) => [`n${i}`, CMD] as [string, string]));
  assert.equal(msgs.length, 3);
  assert.ok(msgs.every((m) => decodeFleetMessage(m, 1) !== null));
  assert.equal(leaseHolder('host-b|1790000000000'), 'host-b');
  for (const v of [null, 'host-b', '|1', 'bad host|1', `${'h'.repeat(65)}|1`]) assert.equal(leaseHolder(v), null, String(v));
});

test('records read from Redis: a field of the wrong shape or size makes the record absent', () => {
  const h = { name: 'N', group: 'north', version: '1', capabilities: '["a"]', routes: '[]', registered: '1', registeredAt: '5', token: 'ab'.repeat(32) };
  assert.equal(decodeAgent('n1', h, '7')?.agent.lastHeartbeatAt, 7);
  assert.equal(decodeAgent('n1', h, '7')?.tokenDigest, 'ab'.repeat(32));
  for (const over of [{ group: '../x' }, { capabilities: '{"a":1}' }, { capabilities: JSON.stringify(Array(65).fill('c')) }, { name: 'x'.repeat(200) },
    { registered: 'yes' }, { registeredAt: '-1' }, { token: 'zz' }, { name: 'bell' }]) {
    assert.equal(decodeAgent('n1', { ...h, ...over }, '7'), null, JSON.stringify(over).slice(0, 60));
  }
  assert.equal(decodeAgent('../n', h, '7'), null);
  assert.equal(decodeAgent('n1', h, 'NaN'), null);
  const c = { agent: 'n1', type: 'replay', target: 'agent:n1', createdAt: '10', payload: '{"a":1}', signature: 'c2ln', seq: '3' };
  assert.deepEqual(decodeCommand(CMD, c, 1000)?.payload, { a: 1 });
  for (const over of [{ type: 'rm-rf' }, { target: 'agent:../x' }, { payload: 'not json' }, { payload: `"${'x'.repeat(2000)}"` }, { seq: '1e3' }, { signature: 'a b' }]) {
    assert.equal(decodeCommand(CMD, { ...c, ...over }, 1000), null, JSON.stringify(over).slice(0, 60));
  }
  assert.equal(decodeCommand(CMD, {}, 1000), null);
});

describe('agents across hosts (one Redis)', { skip: redisSkip }, () => {
  let redis: RedisServer;
  let peek: Redis;
  const hosts: Host[] = [];
  const streams: SseClient[] = [];
  const clients: Client[] = [];

  async function startHost(id: string, cluster = true, keyFile?: string): Promise<Host> {
    const logs: Record<string, unknown>[] = [];
    const out = new Writable({ write(chunk, _enc, cb) { for (const l of String(chunk).split('\n')) if (l) logs.push(JSON.parse(l)); cb(); } });
    const config = testConfig({
      http: { api_token: CONTROL },
      agents: { keepalive_ms: 60000, command_ttl_ms: TTL, ...(keyFile ? { key_file: keyFile } : {}) },
      ...(cluster ? { cluster: { redis_url: redis.url, host_id: id, key_prefix: PREFIX } } : {}),
    });
    const engine = new Engine({ config, logger: pino({ level: 'info' }, out), sweepMs: 50, agentSweepMs: 50 });
    await engine.start();
    const h = { id, engine, port: engine.httpAddress!.port, logs };
    hosts.push(h);
    return h;
  }

  const get = (h: Host, path: string): Promise<Resp> => call(h.port, 'GET', path, { token: CONTROL });
  const command = (h: Host, path: string, type: string, payload: unknown = {}): Promise<Resp> =>
    call(h.port, 'POST', path, { token: CONTROL, json: { type, payload } });

  async function register(h: Host, id: string, group = 'north'): Promise<{ accessToken: string; serverPublicKey: string }> {
    const r = await call(h.port, 'POST', `${BASE}/register`, { token: TOKEN, json: regBody(id, group) });
    assert.equal(r.status, 200, `register ${id} on ${h.id}: ${r.text}`);
    return r.body;
  }

  async function stream(h: Host, id: string, token: string): Promise<SseClient> {
    const s = await SseClient.open(h.port, `${BASE}/${id}/events`, { authorization: `Bearer ${token}` });
    streams.push(s);
    assert.equal(s.status, 200, `stream ${id} on ${h.id}: ${s.text}`);
    await until(() => s.items.length > 0, `initial comment on ${id}'s stream`);
    return s;
  }

  async function listed(h: Host, status?: string): Promise<Map<string, any>> {
    const r = await get(h, status ? `${BASE}?status=${status}` : BASE);
    assert.equal(r.status, 200, r.text);
    return new Map((r.body.agents as any[]).map((a) => [a.id, a]));
  }

  async function commandState(h: Host, agent: string, id: string): Promise<string | undefined> {
    const r = await get(h, `${BASE}/${agent}/commands`);
    assert.equal(r.status, 200, r.text);
    return (r.body.commands as any[]).find((c) => c.id === id)?.state;
  }

  let A: Host;
  let B: Host;
  let C: Host;

  before(async () => {
    redis = await RedisServer.start();
    peek = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    peek.on('error', () => {});
    await peek.connect();
    A = await startHost('host-a');
    B = await startHost('host-b');
    C = await startHost('host-c');
    await until(() => hosts.every((h) => !h.engine.agents.degraded), 'every host connected to Redis');
  });

  after(async () => {
    for (const s of streams) s.close();
    for (const c of clients) c.destroy();
    await Promise.all(hosts.map((h) => h.engine.stop()));
    peek?.disconnect();
    await redis?.dispose();
  });

  test('an agent registered on A is listed by B and C, with the same state, and ?status= works fleet-wide', async () => {
    await register(A, 'reg-1');
    const onA = (await listed(A)).get('reg-1');
    const onB = (await listed(B)).get('reg-1');
    assert.ok(onB, 'B lists the agent registered on A');
    assert.equal(onB.state, 'LIVE');
    assert.equal(onB.state, onA.state);
    assert.equal(onB.registeredAt, onA.registeredAt);
    assert.equal(onB.group, 'north');
    assert.ok((await listed(C, 'LIVE')).has('reg-1'));
    assert.ok(!(await listed(C, 'DEAD')).has('reg-1'));
    // Pages in id order over agents registered on three hosts.
    await register(B, 'reg-2');
    await register(C, 'reg-3');
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: Resp = await get(A, `${BASE}?status=LIVE&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(page.status, 200, page.text);
      assert.ok(page.body.agents.length <= 2);
      seen.push(...page.body.agents.map((a: any) => a.id));
      cursor = page.body.next_cursor;
    } while (cursor !== null);
    assert.deepEqual(seen, ['reg-1', 'reg-2', 'reg-3']);
    const one = await get(C, `${BASE}/reg-1`);
    assert.equal(one.status, 200);
    assert.equal(one.body.streamOpen, false);
  });

  test('a node seen only on TCP at A is listed by B (its frames are its heartbeats)', async () => {
    const c = await Client.open(A.engine.tcpAddress!.port);
    clients.push(c);
    await c.send(lineFrame('tcp-1', Date.now()));
    await until(async () => (await listed(B)).get('tcp-1')?.state === 'LIVE', 'B lists the TCP node of A');
    const onB = (await listed(B)).get('tcp-1');
    assert.equal(onB.registered, false);
    assert.equal(onB.group, 'default');
  });

  test('a command created on B reaches the stream on A, is acked on C, and reads ACKNOWLEDGED on every host', async () => {
    const reg = await register(A, 'cmd-1');
    const s = await stream(A, 'cmd-1', reg.accessToken);
    assert.equal((await get(B, `${BASE}/cmd-1`)).body.streamOpen, true, 'B sees that a stream is open (on A)');
    const r = await command(B, `${BASE}/cmd-1/commands`, 'config-update', { gain: 3 });
    assert.equal(r.status, 202, r.text);
    const id = r.body.commands[0].commandId as string;
    await until(() => s.events.some((e) => e.id === id), 'the command on the stream held by A');
    const ev = JSON.parse(s.events.find((e) => e.id === id)!.data);
    assert.deepEqual(ev.payload, { gain: 3 });
    assert.ok(verifyCommand(reg.serverPublicKey,
      { id: ev.id, type: ev.type, target: ev.target, createdAt: ev.created_at, payload: ev.payload }, ev.signature), 'signed once, verifiable');
    await until(async () => (await commandState(C, 'cmd-1', id)) === 'DELIVERED', 'DELIVERED seen from C');
    const ack = await call(C.port, 'POST', `${BASE}/cmd-1/commands/${id}/ack`, { token: reg.accessToken, json: { result: { ok: true } } });
    assert.equal(ack.status, 200, ack.text);
    assert.equal(ack.body.state, 'ACKNOWLEDGED');
    for (const h of [A, B, C]) assert.equal(await commandState(h, 'cmd-1', id), 'ACKNOWLEDGED', `state on ${h.id}`);
    const again = await call(B.port, 'POST', `${BASE}/cmd-1/commands/${id}/ack`, { token: reg.accessToken, json: {} });
    assert.equal(again.status, 409, 'a second ack on another host: already acknowledged');
    assert.equal(s.events.filter((e) => e.id === id).length, 1, 'written once');
    const m = await scrape(B.engine);
    assert.ok((m.get(`${CLUSTER_M.commandsRouted}{result="published"}`) ?? 0) >= 1, 'counted as routed to another host');
  });

  test('a group command and a broadcast reach agents on every host', async () => {
    const agents: [Host, string, string][] = [[A, 'grp-a', 'west'], [B, 'grp-b', 'west'], [C, 'grp-c', 'east']];
    const got = new Map<string, SseClient>();
    for (const [h, id, group] of agents) {
      const reg = await register(h, id, group);
      got.set(id, await stream(h, id, reg.accessToken));
    }
    const g = await command(C, `${BASE}/groups/west/commands`, 'replay');
    assert.equal(g.status, 202, g.text);
    assert.deepEqual(g.body.commands.map((c: any) => c.agentId).sort(), ['grp-a', 'grp-b']);
    for (const c of g.body.commands) await until(() => got.get(c.agentId)!.events.some((e) => e.id === c.commandId), `group command on ${c.agentId}`);
    assert.equal(got.get('grp-c')!.events.filter((e) => e.event === 'replay').length, 0, 'not to another group');
    const all = await command(A, `${BASE}/commands`, 'config-update', { all: 1 });
    assert.equal(all.status, 202, all.text);
    for (const [, id] of agents) {
      const c = all.body.commands.find((x: any) => x.agentId === id);
      assert.ok(c, `the broadcast includes ${id}`);
      await until(() => got.get(id)!.events.some((e) => e.id === c.commandId), `broadcast on ${id}`);
    }
  });

  test('a stream that opens on B after the command was created receives it', async () => {
    const reg = await register(C, 'late-1');
    const r = await command(A, `${BASE}/late-1/commands`, 'replay', { from: 1 });
    assert.equal(r.status, 202);
    const id = r.body.commands[0].commandId as string;
    assert.equal(r.body.commands[0].state, 'PENDING');
    assert.equal(await commandState(B, 'late-1', id), 'PENDING');
    const s = await stream(B, 'late-1', reg.accessToken);
    await until(() => s.events.some((e) => e.id === id), 'the pending command on the new stream');
    await until(async () => (await commandState(A, 'late-1', id)) === 'DELIVERED', 'DELIVERED seen from A');
  });

  test('a command nobody acknowledges reads EXPIRED on every host, is counted once where it was created, and its ack is refused', async () => {
    const reg = await register(B, 'exp-1');
    // The only deep-trace command so far: its expiry count is this command's alone.
    const r = await command(C, `${BASE}/exp-1/commands`, 'deep-trace', { duration_ms: 10 });
    assert.equal(r.status, 202, r.text);
    const id = r.body.commands[0].commandId as string;
    assert.equal(await commandState(A, 'exp-1', id), 'PENDING');
    await until(async () => (await commandState(A, 'exp-1', id)) === 'EXPIRED', 'EXPIRED from A', TTL + 5000);
    for (const h of [B, C]) assert.equal(await commandState(h, 'exp-1', id), 'EXPIRED', h.id);
    const ack = await call(A.port, 'POST', `${BASE}/exp-1/commands/${id}/ack`, { token: reg.accessToken, json: {} });
    assert.equal(ack.status, 409, ack.text);
    assert.equal(ack.body.state, 'EXPIRED');
    const key = 'radar_ingest_commands_total{type="deep-trace",result="expired"}';
    await until(async () => (await scrape(C.engine)).get(key) === 1, 'counted by the host that created it');
    assert.equal((await scrape(A.engine)).get(key), 0, 'not by another host');
  });

  test('registering again on B revokes the token and closes the stream held by A', async () => {
    const first = await register(A, 'rev-1');
    const s = await stream(A, 'rev-1', first.accessToken);
    const second = await register(B, 'rev-1');
    await s.endedP;
    assert.ok(s.comments.includes('stream closed: token_revoked'), JSON.stringify(s.comments));
    const hb = await call(C.port, 'POST', `${BASE}/rev-1/heartbeat`, { token: first.accessToken });
    assert.equal(hb.status, 401, 'the old token is refused on every host');
    const ok = await call(C.port, 'POST', `${BASE}/rev-1/heartbeat`, { token: second.accessToken });
    assert.equal(ok.status, 200, ok.text);
  });

  test('deep-trace turns tracing on at the host that owns the node', async () => {
    await register(A, 'trace-1');
    await peek.set(`${PREFIX}lease:trace-1`, 'host-c|1234', 'PX', 30000);
    const r = await command(A, `${BASE}/trace-1/commands`, 'deep-trace', { duration_ms: 1000 });
    assert.equal(r.status, 202, r.text);
    const id = r.body.commands[0].commandId;
    await until(() => C.logs.some((l) => l.msg === 'deep-trace: started' && l.correlation_id === id), 'tracing started on C');
    assert.ok(!A.logs.some((l) => l.msg === 'deep-trace: started' && l.correlation_id === id), 'not on the host that took the call');
  });

  test('a message on a host channel that is not valid is dropped and counted', async () => {
    assert.equal(await peek.publish(`${PREFIX}agents:host:host-b`, '{"t":"deliver","c":[["../x","nope"]]}'), 1);
    await peek.publish(`${PREFIX}agents:host:host-b`, 'x'.repeat(10000));
    await until(async () => (await scrape(B.engine)).get(CLUSTER_M.agentMessagesInvalid) === 2, 'two invalid messages counted');
    assert.equal((await get(B, '/healthz')).status, 200);
  });

  test('Redis restarted mid-run: nothing crashes, each host serves its own agents, and writes them back', async () => {
    const before = await register(A, 'keep-1');
    // Deleted on B while A holds a copy: the copy goes too, so A's write back does not bring it back.
    await register(A, 'gone-1');
    assert.equal((await call(B.port, 'DELETE', `${BASE}/gone-1`, { token: CONTROL })).status, 200);
    await until(() => A.engine.agents.registry.get('gone-1') === undefined, 'A forgets its copy of the deleted agent');
    await redis.stop();
    await until(() => hosts.every((h) => h.engine.agents.degraded), 'every host degraded');
    const reg = await register(A, 'down-1');
    assert.ok((await listed(A)).has('down-1'), 'listed by the host that took it');
    const hb = await call(A.port, 'POST', `${BASE}/keep-1/heartbeat`, { token: before.accessToken });
    assert.equal(hb.status, 200, 'an agent known here heartbeats while Redis is away');
    const s = await stream(A, 'down-1', reg.accessToken);
    const r = await command(A, `${BASE}/down-1/commands`, 'replay');
    assert.equal(r.status, 202, r.text);
    await until(() => s.events.some((e) => e.id === r.body.commands[0].commandId), 'local command delivered locally');
    const m = await scrape(A.engine);
    assert.ok((m.get(CLUSTER_M.agentRequestsLocal) ?? 0) > 0, 'served locally, counted');
    assert.equal(A.logs.filter((l) => String(l.msg).startsWith('agents: Redis unreachable')).length, 1, 'the outage is logged once');
    await redis.restart();
    await until(() => hosts.every((h) => !h.engine.agents.degraded), 'every host back', 15000);
    await until(async () => (await listed(B)).has('down-1') && (await listed(B)).has('keep-1'), 'B lists A\'s agents written back');
    assert.ok(!(await listed(B)).has('gone-1'), 'a deleted agent is not written back');
    const ok = await call(C.port, 'POST', `${BASE}/down-1/heartbeat`, { token: reg.accessToken });
    assert.equal(ok.status, 200, `the token issued while Redis was away is the fleet's now: ${ok.text}`);
    const later = await command(C, `${BASE}/down-1/commands`, 'config-update');
    await until(() => s.events.some((e) => e.id === later.body.commands[0].commandId), 'routed again to the stream on A');
  });

  test('a host whose agents.key_file is not the fleet\'s says so at start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'radar-ingest-other-key-'));
    try {
      const d = await startHost('host-d', true, join(dir, 'other.pem'));
      await until(() => d.logs.some((l) => String(l.msg).startsWith('agents: this host\'s agents.key_file is not the fleet\'s')), 'the key mismatch logged');
      assert.ok(!A.logs.some((l) => String(l.msg).includes('is not the fleet')), 'not by the hosts that share the key');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('without a cluster section there is no fleet: no Redis, no cluster metrics', async () => {
    const solo = await startHost('solo', false);
    assert.equal(solo.engine.clusterAgents, null);
    assert.equal(solo.engine.agents.degraded, false);
    const m = await scrape(solo.engine);
    assert.ok(![...m.keys()].some((k) => k.startsWith(CLUSTER_M.commandsRouted)));
    await register(solo, 'solo-1');
    assert.ok(!(await listed(A)).has('solo-1'), 'a single host keeps its agents to itself');
  });
});
