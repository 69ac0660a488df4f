// The fleet view: hosts sharing one real redis-server (skipped, saying so, when it is not
// installed) list each other in GET /api/v1/cluster with their addresses and heartbeats;
// a host killed with SIGKILL goes down after its ttl and is then forgotten, a stopped
// one leaves at once; GET /api/v1/trackers?scope=cluster shows nodes connected to
// different hosts with the host holding each; cluster_up / cluster_degraded / /readyz
// follow a Redis stop and restart; records another process wrote into Redis are
// checked and skipped; and a host without a cluster section shows none of it.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import type { Engine } from '../src/engine/engine.js';
import { decodeHostRecord, decodeSnapshot, defaultAddress, encodeSnapshot, mergeTrackers, MAX_SNAPSHOT_TRACKERS, type FleetTracker } from '../src/cluster/host-record.js';
import { RedisServer, redisSkip } from './redis-server.js';
import {
  Client, getJson, httpGet, lineFrame, scrape, startEngine, startTrackerEngine, until, TOKEN, TEST_KEY_FILE,
} from './helpers.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const LEASE_MS = 600;

// ---------------------------------------------------------------------------
// Pure parts
// ---------------------------------------------------------------------------

const tracker = (node: string, connected: boolean): FleetTracker => ({
  node_id: node, name: node, state: 'running', node_connected: connected, pid: 1, port: 2, restarts: 0,
  frames_fed: 3, tracks_written: 0, active_tracks: 0, since: '2026-01-01T00:00:00.000Z', last_frame_at: null,
});

test('host records read from Redis are checked: id, types, sizes', () => {
  const ok = { id: 'h1', address: 'a:1', started: 5, nodes_owned: 2, draining: false, ttl_ms: 1000 };
  assert.deepEqual(decodeHostRecord('h1', JSON.stringify(ok)), ok);
  assert.equal(decodeHostRecord('h2', JSON.stringify(ok)), null, 'stored under another id');
  assert.equal(decodeHostRecord('h1', 'not json'), null);
  assert.equal(decodeHostRecord('h1', JSON.stringify({ ...ok, nodes_owned: -1 })), null);
  assert.equal(decodeHostRecord('h1', JSON.stringify({ ...ok, draining: 'no' })), null);
  assert.equal(decodeHostRecord('h1', JSON.stringify({ ...ok, address: 'x'.repeat(300) })), null);
  assert.equal(decodeHostRecord('h1', JSON.stringify({ ...ok, pad: 'x'.repeat(5000) })), null, 'longer than a record');
  const snap = decodeSnapshot('h1', JSON.stringify({ host: 'h1', at: 1, truncated: false, trackers: [tracker('n1', true), { node_id: 7 }] }));
  assert.equal(snap?.snapshot.trackers.length, 1);
  assert.equal(snap?.invalid, 1, 'the bad entry is skipped and counted');
  const many = Array.from({ length: MAX_SNAPSHOT_TRACKERS + 1 }, (_, i) => tracker(`n${i}`, false));
  const cut = decodeSnapshot('h1', encodeSnapshot('h1', 1, many));
  assert.equal(cut?.snapshot.trackers.length, MAX_SNAPSHOT_TRACKERS);
  assert.equal(cut?.snapshot.truncated, true);
});

test('default address: the bound host and port, the machine name for a wildcard', () => {
  assert.equal(defaultAddress('127.0.0.1', 8080, 'box'), '127.0.0.1:8080');
  assert.equal(defaultAddress('0.0.0.0', 8080, 'box'), 'box:8080');
  assert.equal(defaultAddress('::1', 8080, 'box'), '[::1]:8080');
});

test('merged trackers name the host holding each and the node\'s owner', () => {
  const m = mergeTrackers(new Map([['a', [tracker('n1', true), tracker('n2', false)]], ['b', [tracker('n2', true)]]]));
  assert.deepEqual(m.map((t) => [t.node_id, t.host, t.owner]), [['n1', 'a', 'a'], ['n2', 'a', 'b'], ['n2', 'b', 'b']]);
});

// ---------------------------------------------------------------------------
// Hosts against a real redis-server
// ---------------------------------------------------------------------------

describe('fleet view', { skip: redisSkip }, () => {
  let redis: RedisServer;
  const dir = mkdtempSync(join(tmpdir(), 'radar-cluster-view-'));
  const engines: Engine[] = [];
  const children: ChildProcess[] = [];
  const clients: Client[] = [];
  let n = 0;

  const cluster = (hostId: string, extra: Record<string, unknown> = {}) => ({
    redis_url: redis.url, host_id: hostId, lease_ms: LEASE_MS, key_prefix: `t${process.pid}-${n}:`, ...extra,
  });
  const hostsOf = async (e: Engine) => (await getJson(e.httpAddress!.port, '/api/v1/cluster')).json;

  before(async () => { redis = await RedisServer.start(); });
  after(async () => {
    for (const c of clients) c.destroy();
    for (const ch of children) if (ch.exitCode === null && ch.signalCode === null) ch.kill('SIGKILL');
    await Promise.all(engines.map((e) => e.stop()));
    await redis?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every host lists the others with address and heartbeat; SIGKILL: down after the ttl, then forgotten; a stop leaves at once', async () => {
    n++;
    const a = await startEngine({ cluster: cluster('host-a') });
    // A drain grace: the fleet sees host-b draining before it leaves.
    const b = await startEngine({ cluster: cluster('host-b'), shutdown: { drain_grace_ms: 1000 } });
    engines.push(a, b);
    // A third host as an operator runs it: the command, a config file, killed with SIGKILL.
    const cfg = join(dir, 'c.json');
    writeFileSync(cfg, JSON.stringify({
      tcp_server: { enabled: true, host: '127.0.0.1', port: 0, token: TOKEN }, http: { host: '127.0.0.1', port: 0 },
      log: { level: 'warn' }, agents: { key_file: TEST_KEY_FILE }, cluster: cluster('host-c'),
    }));
    const c = spawn(process.execPath, [CLI, '--config', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(c);
    let stderr = '';
    c.stderr!.on('data', (d) => (stderr += d));

    // A node on host b: nodes_owned counts it.
    const node = await Client.open(b.tcpAddress!.port);
    clients.push(node);
    await node.send(lineFrame('n-b', 1757400000000));

    for (const e of [a, b]) {
      const v = await until(async () => {
        const j = await hostsOf(e);
        const ids = j.hosts.filter((h: any) => h.up).map((h: any) => h.id).sort();
        const hb = j.hosts.find((h: any) => h.id === 'host-b');
        return ids.join() === 'host-a,host-b,host-c' && hb?.nodes_owned === 1 ? j : null;
      }, `three hosts up (and host-b owning 1 node) seen from ${e.httpAddress!.port}; c stderr: ${stderr}`, 15000);
      const byId = new Map(v.hosts.map((h: any) => [h.id, h]));
      assert.equal((byId.get('host-a') as any).address, `127.0.0.1:${a.httpAddress!.port}`);
      assert.equal((byId.get('host-b') as any).address, `127.0.0.1:${b.httpAddress!.port}`);
      for (const h of v.hosts) {
        assert.ok(Date.now() - Date.parse(h.last_seen) < 5000, `${h.id} last_seen is recent: ${h.last_seen}`);
        assert.equal(h.draining, false);
      }
      assert.equal(v.redis.up, true);
      assert.equal(typeof v.redis.rtt_ms, 'number');
      assert.equal(v.degraded, false);
    }
    const self = (await hostsOf(b)).self;
    assert.equal(self.id, 'host-b');
    assert.equal(self.nodes_owned, 1);

    // host-c's API answers at the address the fleet lists for it.
    const cAddr = (await hostsOf(a)).hosts.find((h: any) => h.id === 'host-c').address as string;
    const cPort = Number(cAddr.split(':')[1]);
    assert.equal((await getJson(cPort, '/api/v1/cluster')).json.self.id, 'host-c');
    await until(async () => (await scrape(a)).get('radar_ingest_cluster_hosts') === 3, 'hosts gauge 3 (as of the next heartbeat)', 3000);

    // SIGKILL: no goodbye. Up until its ttl passes, then down, then gone.
    c.kill('SIGKILL');
    const down = await until(async () => (await hostsOf(a)).hosts.find((h: any) => h.id === 'host-c' && !h.up), 'host-c down', 5000);
    assert.ok(Date.now() - Date.parse(down.last_seen) >= LEASE_MS, 'down only after its ttl');
    await until(async () => (await scrape(a)).get('radar_ingest_cluster_hosts') === 2, 'hosts gauge 2', 3000);
    await until(async () => !(await hostsOf(a)).hosts.some((h: any) => h.id === 'host-c'), 'host-c forgotten', 10000);

    // A clean stop deregisters: gone from the list as soon as stop() returns.
    node.destroy();
    const stopping = b.stop();
    await until(async () => (await hostsOf(a)).hosts.find((h: any) => h.id === 'host-b')?.draining === true, 'host-b shown draining', 900);
    await stopping;
    assert.deepEqual((await hostsOf(a)).hosts.map((h: any) => h.id), ['host-a']);
  });

  test('?scope=cluster lists nodes connected to different hosts with their host; without scope: this host only', async () => {
    n++;
    const ta = await startTrackerEngine(mkdtempSync(join(dir, 'a-')), [], { cluster: cluster('host-a') });
    const tb = await startTrackerEngine(mkdtempSync(join(dir, 'b-')), [], { cluster: cluster('host-b') });
    engines.push(ta.e, tb.e);
    const ca = await Client.open(ta.tcp);
    const cb = await Client.open(tb.tcp);
    clients.push(ca, cb);
    await ca.send(lineFrame('node-1', 1757400000000));
    await cb.send(lineFrame('node-2', 1757400000000));
    for (const t of [ta, tb]) {
      const j = await until(async () => {
        const r = await getJson(t.http, '/api/v1/trackers?scope=cluster');
        const list = r.json.trackers.map((x: any) => `${x.node_id}@${x.host}:${x.owner}:${x.node_connected}`);
        return list.join() === 'node-1@host-a:host-a:true,node-2@host-b:host-b:true' ? r.json : null;
      }, `the fleet's trackers from ${t.http}`, 10000);
      assert.equal(j.scope, 'cluster');
      assert.equal(j.complete, true);
      assert.deepEqual(j.hosts.map((h: any) => h.id).sort(), ['host-a', 'host-b']);
    }
    const local = (await getJson(ta.http, '/api/v1/trackers')).json;
    assert.deepEqual(local.trackers.map((x: any) => x.node_id), ['node-1']);
    assert.equal(local.trackers[0].host, undefined, 'the unscoped answer is unchanged');
    assert.ok(local.supervisor);
  });

  test('Redis stopped and restarted: cluster_up 1 -> 0 -> 1, degraded the opposite, /readyz says so; refuse mode is not ready', async () => {
    n++;
    const a = await startEngine({ cluster: cluster('host-a') });
    const r = await startEngine({ cluster: cluster('host-r', { on_redis_down: 'refuse' }) });
    engines.push(a, r);
    const metric = async (e: Engine, name: string) => (await scrape(e)).get(name);
    await until(async () => await metric(a, 'radar_ingest_cluster_up') === 1 && await metric(a, 'radar_ingest_cluster_hosts') === 2, 'cluster up, 2 hosts');
    assert.equal((await hostsOf(a)).hosts.length, 2);
    assert.equal(await metric(a, 'radar_ingest_cluster_degraded'), 0);
    assert.ok((await metric(a, 'radar_ingest_cluster_redis_rtt_seconds_count'))! >= 1, 'PING round trips observed');
    let ready = await getJson(a.httpAddress!.port, '/readyz');
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.json.checks.cluster, { ok: true });

    await redis.stop();
    await until(async () => await metric(a, 'radar_ingest_cluster_up') === 0, 'cluster_up 0 while Redis is down', 5000);
    assert.equal(await metric(a, 'radar_ingest_cluster_degraded'), 1);
    ready = await getJson(a.httpAddress!.port, '/readyz');
    assert.equal(ready.status, 200, 'degraded (on_redis_down: accept) stays ready');
    assert.deepEqual(ready.json.checks.cluster, { ok: true, detail: 'degraded: redis unreachable' });
    await until(async () => (await getJson(r.httpAddress!.port, '/readyz')).status === 503, 'refuse mode not ready', 5000);
    const rr = (await getJson(r.httpAddress!.port, '/readyz')).json.checks.cluster;
    assert.equal(rr.ok, false);
    assert.match(rr.detail, /^degraded: redis unreachable/);
    const view = await getJson(a.httpAddress!.port, '/api/v1/cluster');
    assert.equal(view.status, 200, 'the fleet view answers without Redis');
    assert.equal(view.json.redis.up, false);
    assert.equal(view.json.degraded, true);
    assert.ok(view.json.hosts.some((h: any) => h.id === 'host-a'), 'the last list read');
    assert.equal((await httpGet(a.httpAddress!.port, '/healthz')).status, 200, 'alive throughout');

    // Back, empty: both hosts heal and register again.
    await redis.restart();
    await until(async () => await metric(a, 'radar_ingest_cluster_up') === 1, 'cluster_up 1 after the restart', 8000);
    // Each Redis connection (fleet view, agents, leases) reconnects on its own backoff: degraded clears once the last is back.
    await until(async () => await metric(a, 'radar_ingest_cluster_degraded') === 0, 'degraded 0 once every connection is back', 8000);
    await until(async () => (await hostsOf(a)).hosts.filter((h: any) => h.up).length === 2, 'both hosts registered again', 5000);
    await until(async () => (await getJson(r.httpAddress!.port, '/readyz')).status === 200, 'refuse mode ready again', 5000);
    assert.equal(a.unhandled.rejection + a.unhandled.exception + r.unhandled.rejection + r.unhandled.exception, 0);
  });

  test('with http.open_reads false the fleet reads need the control token', async () => {
    n++;
    const a = await startEngine({ cluster: cluster('host-a'), http: { open_reads: false, api_token: 'ops-token' } });
    engines.push(a);
    const base = `http://127.0.0.1:${a.httpAddress!.port}`;
    assert.equal((await fetch(`${base}/api/v1/cluster`)).status, 401);
    const ok = await fetch(`${base}/api/v1/cluster`, { headers: { authorization: 'Bearer ops-token' } });
    assert.equal(ok.status, 200);
    assert.equal(((await ok.json()) as any).self.id, 'host-a');
  });

  test('records written into Redis by someone else are checked and skipped, and counted', async () => {
    n++;
    const a = await startEngine({ cluster: cluster('host-a') });
    engines.push(a);
    const prefix = cluster('x').key_prefix;
    const raw = new Redis(redis.url);
    try {
      const now = Number((await raw.time())[0]) * 1000;
      await raw.zadd(`${prefix}hosts`, now, 'evil-json', now, 'evil-type', now, 'x'.repeat(100), now, 'evil-big', now, 'host-fake');
      await raw.set(`${prefix}host:evil-json`, '{not json', 'PX', 60000);
      await raw.hset(`${prefix}host:evil-type`, 'a', 'b');
      await raw.expire(`${prefix}host:evil-type`, 60);
      await raw.set(`${prefix}host:evil-big`, 'x'.repeat(100000), 'PX', 60000);
      await raw.set(`${prefix}host:host-fake`, JSON.stringify({ id: 'host-fake', address: 'f:1', started: 1, nodes_owned: 0, draining: false, ttl_ms: 60000 }), 'PX', 60000);
      await raw.set(`${prefix}trackers:host-fake`, JSON.stringify({ host: 'host-fake', at: 1, truncated: false, trackers: 'nope' }), 'PX', 60000);
    } finally {
      raw.disconnect();
    }
    const j = await until(async () => {
      const v = await hostsOf(a);
      return v.hosts.some((h: any) => h.id === 'host-a') ? v : null;
    }, 'host-a listed');
    assert.deepEqual(j.hosts.map((h: any) => h.id).sort(), ['host-a', 'host-fake'], 'only valid records are listed');
    const m = await scrape(a);
    // Counted per read: bad JSON, a hash, an oversized value, each time they are read.
    const bad = m.get('radar_ingest_cluster_records_invalid_total{kind="host"}')!;
    assert.ok(bad >= 3 && bad % 3 === 0, `invalid host records counted: ${bad}`);
    assert.equal(m.get('radar_ingest_cluster_records_invalid_total{kind="trackers"}'), 0);
    assert.equal((await httpGet(a.httpAddress!.port, '/healthz')).status, 200);
  });
});

test('without a cluster section: no fleet routes, no cluster metrics, no cluster check', async () => {
  const out = mkdtempSync(join(tmpdir(), 'radar-no-cluster-'));
  const t = await startTrackerEngine(out, []);
  try {
    const v = await httpGet(t.http, '/api/v1/cluster');
    assert.equal(v.status, 404);
    const s = await getJson(t.http, '/api/v1/trackers?scope=cluster');
    assert.equal(s.status, 404);
    assert.match(s.json.error, /cluster section/);
    assert.equal((await getJson(t.http, '/api/v1/trackers')).status, 200);
    const metrics = (await httpGet(t.http, '/metrics')).body;
    assert.doesNotMatch(metrics, /radar_ingest_cluster_/);
    const ready = await getJson(t.http, '/readyz');
    assert.equal(ready.json.checks.cluster, undefined);
  } finally {
    await t.e.stop();
    rmSync(out, { recursive: true, force: true });
  }
});
