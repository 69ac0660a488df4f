// Node ownership across hosts, end to end: engines (in-process, and one CLI subprocess
// for kill -9) with a `cluster` section on one real redis-server (skipped, saying so,
// when it is not installed). A binary node moving between hosts, a takeover storm
// watched through both hosts' tracker APIs, a dead host's node taken over at expiry,
// the drain, the fleet's resume point, Redis restarting mid-run, and no Redis at all
// without a cluster section.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import type { Engine } from '../src/engine/engine.js';
import { encodeFrame } from '../src/protocol/binary-protocol.js';
import { RedisServer, redisSkip } from './redis-server.js';
import {
  startEngine, startTrackerEngine, CollectingSink, Client, until, scrape, getJson, TOKEN, TEST_KEY_FILE, binaryHello, errorCodeOf, type TrackerEngine,
} from './helpers.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'radar-own-'));

function frame(seq: number, ts = 1000 + seq): Buffer {
  return encodeFrame({ seq, timestamp: ts, delay: [10.5, 20.5], doppler: [-1.5, 2.5], snr: [6, 7] });
}

const hello = (port: number, node: string) => binaryHello(port, node, 8000);

async function acked(c: Client, seq: number): Promise<void> {
  await until(() => c.messages().some((m) => m.t === 'ack' && m.seq >= seq), `ack ${seq}`);
}

/** One command on a fresh connection, closed afterwards. */
async function redisDo<T>(url: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

describe('cluster ownership', { skip: redisSkip }, () => {
  let redis: RedisServer;
  const engines: Engine[] = [];
  const clients: Client[] = [];
  let prefixN = 0;
  after(async () => {
    for (const c of clients) c.destroy();
    await Promise.all(engines.map((e) => e.stop().catch(() => undefined)));
    await redis?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A cluster section: one key prefix per test, so tests never see each other's leases. */
  const cluster = (host: string, prefix: string, over: Record<string, unknown> = {}) => ({
    redis_url: redis.url, host_id: host, lease_ms: 1500, key_prefix: `${prefix}:`, drain_nodes_per_s: 100, ...over,
  });

  async function host(name: string, prefix: string, over: Record<string, unknown> = {}, clusterOver: Record<string, unknown> = {}): Promise<{ e: Engine; sink: CollectingSink; port: number }> {
    const sink = new CollectingSink();
    const e = await startEngine({ cluster: cluster(name, prefix, clusterOver), shutdown: { deadline_ms: 4000 }, ...over }, { sink });
    engines.push(e);
    return { e, sink, port: e.tcpAddress!.port };
  }

  async function trackerHost(name: string, prefix: string): Promise<TrackerEngine> {
    const t = await startTrackerEngine(join(dir, `${name}-out`), [], { cluster: cluster(name, prefix) });
    engines.push(t.e);
    return t;
  }

  test('setup: redis-server', async () => {
    redis = await RedisServer.start();
  });

  test('a binary node moves from host A to host B: A closes it superseded, B resumes after the fleet resume point with a higher fence', async () => {
    const p = `move${prefixN++}`;
    const a = await host('host-a', p);
    const b = await host('host-b', p);
    const first = await hello(a.port, 'n1');
    clients.push(first.c);
    assert.equal(first.m.t, 'welcome');
    assert.equal(first.m.last_seq, 0);
    await first.c.send(Buffer.concat([1, 2, 3, 4, 5].map((s) => frame(s))));
    await acked(first.c, 5);
    await until(() => a.sink.of('n1').length === 5, 'A delivered 5');
    const fenceA = a.e.nodes.get('n1')!.fence;
    assert.ok(fenceA > 0, 'A holds a fence');

    const second = await hello(b.port, 'n1');
    clients.push(second.c);
    assert.equal(second.m.t, 'welcome', JSON.stringify(second.m));
    await first.c.closedP;
    assert.equal(errorCodeOf(first.c), 'RADAR_ERR_SUPERSEDED', 'A told the node why it closed');
    assert.equal(second.m.last_seq, 5, 'B resumes after what A settled (read from Redis)');
    const fenceB = b.e.nodes.get('n1')!.fence;
    assert.ok(fenceB > fenceA, `B's fence ${fenceB} is above A's ${fenceA}`);
    await second.c.send(frame(5));
    await second.c.send(frame(6));
    await acked(second.c, 6);
    await until(() => b.sink.of('n1').length === 1, 'B delivered only the new frame');
    assert.deepEqual(b.sink.of('n1').map((f) => f.timestamp), [1006]);
    const mb = await scrape(b.e);
    const ma = await scrape(a.e);
    assert.equal(mb.get('radar_ingest_cluster_takeovers_total{reason="handover"}'), 1);
    assert.equal(ma.get('radar_ingest_cluster_nodes_given_up_total{reason="handover"}'), 1);
    assert.equal(ma.get('radar_ingest_cluster_resume_writes_total{result="ok"}')! >= 1, true);
    assert.equal(mb.get('radar_ingest_cluster_resume_reads_total{result="found"}'), 1);
    assert.deepEqual(a.e.ownership!.owned(), []);
    assert.deepEqual(b.e.ownership!.owned().map((o) => o.node), ['n1']);
  });

  test('takeover storm: a node reconnecting alternately to A and B never has a running tracker on both hosts', async () => {
    const p = `storm${prefixN++}`;
    const a = await trackerHost('storm-a', p);
    const b = await trackerHost('storm-b', p);
    const running = async (t: TrackerEngine): Promise<boolean> => {
      const r = await getJson(t.http, '/api/v1/trackers');
      const list: any[] = Array.isArray(r.json) ? r.json : (r.json.trackers ?? []);
      return list.some((i) => i.node_id === 'storm-n' && i.pid !== null);
    };
    const fenceOf = async (t: TrackerEngine): Promise<number> => (await getJson(t.http, '/api/v1/trackers/storm-n')).json.fence;
    let lastFence = 0;
    let both = 0;
    let samples = 0;
    let seenA = false;
    let seenB = false;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const [ra, rb] = await Promise.all([running(a), running(b)]);
        samples++;
        if (ra && rb) both++;
        seenA ||= ra;
        seenB ||= rb;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    let seq = 0;
    for (let i = 0; i < 8; i++) {
      const t = i % 2 === 0 ? a : b;
      const { c, m } = await hello(t.tcp, 'storm-n');
      clients.push(c);
      assert.equal(m.t, 'welcome', JSON.stringify(m));
      assert.equal(m.last_seq, seq, `round ${i}: resumes after the fleet's last seq`);
      seq++;
      await c.send(frame(seq, 1_000_000 + seq));
      await acked(c, seq);
      // The tracker started for this host's turn.
      await until(async () => running(t), `tracker on ${i % 2 === 0 ? 'A' : 'B'}`);
      const f = await fenceOf(t);
      assert.ok(f > lastFence, `round ${i}: the tracker API shows a higher fence (${f} > ${lastFence})`);
      lastFence = f;
    }
    watching = false;
    await watcher;
    assert.ok(samples > 20, `watched ${samples} times`);
    assert.ok(seenA && seenB, 'both hosts ran the tracker in turn');
    assert.equal(both, 0, `a tracker ran on both hosts at once in ${both} of ${samples} samples`);
    assert.equal(await running(a), false, 'A stopped its tracker');
  });

  /** A host as an operator runs it: the CLI in a subprocess (log level info on stdout). */
  async function cliHost(name: string, prefix: string): Promise<{ tcp: number; out: () => string; kill(sig: NodeJS.Signals): void; exited: Promise<number | null> }> {
    const cfg = join(dir, `${name}.yaml`);
    writeFileSync(cfg, [
      'tcp_server:', '  enabled: true', '  host: 127.0.0.1', '  port: 0', `  token: ${TOKEN}`,
      'http:', '  host: 127.0.0.1', '  port: 0', 'shards: 1', 'sink: discard', 'log:', '  level: info',
      'agents:', `  key_file: ${TEST_KEY_FILE}`, 'shutdown:', '  deadline_ms: 4000',
      'cluster:', `  redis_url: ${redis.url}`, `  host_id: ${name}`, '  lease_ms: 1500', `  key_prefix: "${prefix}:"`, '  drain_nodes_per_s: 100',
    ].join('\n'));
    const child = spawn(process.execPath, [CLI, '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    after(() => { child.kill('SIGKILL'); });
    const started = await until(() => out.split('\n').find((l) => l.includes('radar-ingest started')), `${name} started`, 10000);
    return { tcp: Number(String(JSON.parse(started).tcp).split(':').pop()), out: () => out, kill: (sig) => child.kill(sig), exited };
  }

  test('kill -9 of host A: B takes the node over once A\'s lease expires', async () => {
    const p = `kill${prefixN++}`;
    const a = await cliHost('kill-a', p);
    const first = await hello(a.tcp, 'k1');
    clients.push(first.c);
    assert.equal(first.m.t, 'welcome');
    await first.c.send(Buffer.concat([frame(1), frame(2)]));
    await acked(first.c, 2);
    await until(async () => (await redisDo(redis.url, (r) => r.get(`${p}:resume:k1`))) !== null, 'A wrote its resume point');
    const b = await host('kill-b', p);
    a.kill('SIGKILL');
    await a.exited;
    const t0 = Date.now();
    const second = await hello(b.port, 'k1');
    clients.push(second.c);
    const took = Date.now() - t0;
    assert.equal(second.m.t, 'welcome', JSON.stringify(second.m));
    assert.equal(second.m.last_seq, 2, 'the resume point A wrote survives A');
    assert.ok(took >= 300, `B waited for the lease to expire (${took} ms)`);
    assert.ok(took < 4000, `bounded wait (${took} ms)`);
    const m = await scrape(b.e);
    assert.equal(m.get('radar_ingest_cluster_takeovers_total{reason="expired"}'), 1);
  });

  test('drain: SIGTERM on A hands its nodes to B at once (released, not expired), with the resume point; A exits 0', async () => {
    const p = `drain${prefixN++}`;
    const a = await cliHost('drain-a', p);
    const b = await host('drain-b', p);
    const ids = ['d1', 'd2', 'd3'];
    const conns: Client[] = [];
    for (const id of ids) {
      const { c, m } = await hello(a.tcp, id);
      clients.push(c);
      assert.equal(m.t, 'welcome');
      await c.send(Buffer.concat([frame(1), frame(2), frame(3)]));
      await acked(c, 3);
      conns.push(c);
    }
    a.kill('SIGTERM');
    await Promise.all(conns.map((c) => c.closedP));
    for (const c of conns) assert.equal(errorCodeOf(c), 'RADAR_ERR_SHUTTING_DOWN');
    const t0 = Date.now();
    for (const id of ids) {
      const { c, m } = await hello(b.port, id);
      clients.push(c);
      assert.equal(m.t, 'welcome', JSON.stringify(m));
      assert.equal(m.last_seq, 3, `${id} resumes after A's last seq`);
    }
    const took = Date.now() - t0;
    assert.ok(took < 1000, `acquired at once, not after expiry (${took} ms)`);
    assert.equal(await a.exited, 0);
    const drained = a.out().split('\n').filter((l) => l.includes('cluster: drain handed nodes over')).map((l) => JSON.parse(l));
    assert.deepEqual(drained.map((d) => [d.handed_over, d.left]), [[3, 0]]);
    const mb = await scrape(b.e);
    assert.equal(mb.get('radar_ingest_cluster_takeovers_total{reason="expired"}'), 0);
    assert.deepEqual(b.e.ownership!.owned().map((o) => o.node).sort(), ids);
  });

  test('Redis restarted mid-run: the owned node keeps flowing; a longer outage serves new nodes unfenced, re-asserted when Redis is back', async () => {
    const p = `restart${prefixN++}`;
    const a = await host('rs-a', p, {}, { lease_ms: 3000 });
    const { c, m } = await hello(a.port, 'r1');
    clients.push(c);
    assert.equal(m.t, 'welcome');
    const fence0 = a.e.nodes.get('r1')!.fence;
    let seq = 0;
    const pump = setInterval(() => { seq++; void c.send(frame(seq)).catch(() => undefined); }, 20);
    try {
      await until(() => a.sink.of('r1').length >= 5, 'flowing');
      await redis.stop();
      const during = a.sink.of('r1').length;
      await until(() => a.sink.of('r1').length >= during + 10, 'flowing while Redis is down');
      await redis.restart();
      // Redis came back empty: the next renew finds no lease, and the lease is re-asserted.
      await until(() => a.e.nodes.get('r1')!.fence > fence0, 're-asserted with a higher fence', 6000);
      const after = a.sink.of('r1').length;
      await until(() => a.sink.of('r1').length >= after + 10, 'still flowing');
      assert.equal(c.closed, false, 'the node was never closed');
      assert.deepEqual(a.e.ownership!.owned().map((o) => o.node), ['r1']);

      // Longer than two thirds of the lease: the node is fenced (closed), then served unfenced.
      await redis.stop();
      await c.closedP;
      assert.equal(errorCodeOf(c), 'RADAR_ERR_SUPERSEDED');
      const again = await hello(a.port, 'r1');
      clients.push(again.c);
      assert.equal(again.m.t, 'welcome', 'served unfenced (on_redis_down: accept)');
      assert.equal(a.e.nodes.get('r1')!.fence, 0);
      assert.equal((await scrape(a.e)).get('radar_ingest_cluster_unfenced_nodes'), 1);
      await redis.restart();
      await until(() => a.e.nodes.get('r1')!.fence > 0, 'unfenced node re-asserted', 6000);
      assert.equal((await scrape(a.e)).get('radar_ingest_cluster_unfenced_nodes'), 0);
      assert.equal(again.c.closed, false);
      assert.equal((await getJson(a.e.httpAddress!.port, '/healthz')).status, 200);
    } finally {
      clearInterval(pump);
    }
  });

  test('on_redis_down "refuse": a new node is refused with RADAR_ERR_CLUSTER_UNAVAILABLE while Redis is down', async () => {
    const p = `refuse${prefixN++}`;
    const a = await host('rf-a', p, {}, { on_redis_down: 'refuse' });
    await redis.stop();
    try {
      const { c, m } = await hello(a.port, 'rf1');
      clients.push(c);
      assert.equal(m.t, 'error');
      assert.equal(m.code, 'RADAR_ERR_CLUSTER_UNAVAILABLE');
      await c.closedP;
      assert.equal((await scrape(a.e)).get('radar_ingest_connections_rejected_total{reason="cluster_unavailable"}'), 1);
    } finally {
      await redis.restart();
    }
  });

  test('a node held by a host that never hands over is refused with RADAR_ERR_NODE_OWNED; a malformed resume point in Redis is ignored', async () => {
    const p = `held${prefixN++}`;
    // A grant of a host that is alive in Redis but never answers, and garbage where a resume point belongs.
    await redisDo(redis.url, async (r) => {
      await r.set(`${p}:lease:h1`, 'ghost-host|5', 'PX', 60000);
      await r.set(`${p}:resume:h2`, 'not|a|resume point');
    });
    const a = await host('held-a', p, { limits: { first_message_timeout_ms: 600 } }, { lease_ms: 400 });
    const t0 = Date.now();
    const { c, m } = await hello(a.port, 'h1');
    clients.push(c);
    assert.equal(m.t, 'error');
    assert.equal(m.code, 'RADAR_ERR_NODE_OWNED');
    assert.match(m.message, /ghost-host/);
    assert.ok(Date.now() - t0 >= 500, 'it waited for a handover first');
    await c.closedP;
    const second = await hello(a.port, 'h2');
    clients.push(second.c);
    assert.equal(second.m.t, 'welcome');
    assert.equal(second.m.last_seq, 0);
    const metrics = await scrape(a.e);
    assert.equal(metrics.get('radar_ingest_connections_rejected_total{reason="node_owned_elsewhere"}'), 1);
    assert.equal(metrics.get('radar_ingest_node_claims_refused_total{reason="node_owned_elsewhere"}'), 1);
    assert.ok(metrics.get('radar_ingest_cluster_handovers_requested_total{result="no_listener"}')! >= 1);
    assert.equal(metrics.get('radar_ingest_cluster_resume_reads_total{result="invalid"}'), 1);
  });

  test('without a cluster section: no lease, no cluster metrics, fence 0', async () => {
    const e = await startEngine({}, { sink: new CollectingSink() });
    engines.push(e);
    const { c, m } = await hello(e.tcpAddress!.port, 'solo');
    clients.push(c);
    assert.equal(m.t, 'welcome');
    assert.equal(e.ownership, null);
    assert.equal(e.nodes.get('solo')!.fence, 0);
    const text = await e.metrics.text();
    assert.equal(/radar_ingest_cluster_/.test(text), false, 'no cluster series');
    const keys = await redisDo(redis.url, (r) => r.keys('*'));
    assert.equal(keys.some((k) => k.includes('solo')), false, 'nothing about the node in Redis');
  });
});
