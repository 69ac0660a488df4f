// Node leases with fences. The lease table (when to renew, when a grant is given up)
// with a fake clock; then two lease keepers, as two hosts, against a real redis-server
// (skipped, saying so, when it is not installed): acquire, holder reported, handover
// over pub/sub, strictly higher fences, compare-and-renew/release, loss when Redis
// stops, fences that stay monotonic when Redis restarts empty, expiry of a dead holder.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { LeaseTable, MAX_REMEMBERED_FENCES, type LeaseAction } from '../src/cluster/lease-table.js';
import { LeaseKeeper, type LeaseKeeperOptions } from '../src/cluster/lease-keeper.js';
import { NodeLeases, decodeHandover } from '../src/cluster/node-lease.js';
import { registerLeaseMetrics } from '../src/cluster/lease-metrics.js';
import { FENCE_GUARD_LUA, leaseValue } from '../src/cluster/lease-scripts.js';
import { ResumeStore } from '../src/cluster/resume-store.js';
import { CLUSTER_M } from '../src/telemetry/metric-names.js';
import { RedisServer, REDIS_SERVER, redisSkip } from './redis-server.js';
import { until } from './helpers.js';

// ---------------------------------------------------------------------------
// The lease table, fake clock
// ---------------------------------------------------------------------------

const kinds = (acts: LeaseAction[]) => acts.map((a) => `${a.kind} ${a.node}${a.kind === 'lost' ? ` ${a.reason}` : ''}`);

test('lease table: renews every third of the lease; a confirmed renew moves the loss deadline', () => {
  const t = new LeaseTable(900);
  t.acquired('n', 7, 1000);
  assert.deepEqual(t.due(1299), []);
  assert.equal(t.nextWakeAt(), 1300);
  assert.deepEqual(kinds(t.due(1300)), ['renew n']);
  assert.deepEqual(t.due(1350), [], 'one renew in flight at a time');
  t.renewed('n', 7, 1300);
  assert.equal(t.nextWakeAt(), 1600);
  assert.deepEqual(kinds(t.due(1600)), ['renew n']);
  // No answer at all: the grant is trusted until 2/3 of the lease after the last confirmed send (1300).
  assert.deepEqual(t.due(1899), []);
  assert.equal(t.nextWakeAt(), 1900);
  assert.deepEqual(t.due(1900), [{ kind: 'lost', node: 'n', fence: 7, reason: 'unrenewed' }]);
  assert.equal(t.fenceOf('n'), undefined);
  assert.equal(t.nextWakeAt(), Infinity);
  t.renewed('n', 7, 1600); // the late answer changes nothing
  assert.deepEqual(t.owned(), []);
});

test('lease table: a failed renew is retried soon; a rejected one loses the grant at once; stale answers are ignored', () => {
  const t = new LeaseTable(1200);
  t.acquired('a', 1, 0);
  t.acquired('b', 2, 0);
  assert.deepEqual(kinds(t.due(400)), ['renew a', 'renew b']);
  t.renewFailed('a', 1, 410);
  assert.equal(t.nextWakeAt(), 510, 'retried after a twelfth of the lease');
  assert.deepEqual(t.renewRejected('b', 2), { kind: 'lost', node: 'b', fence: 2, reason: 'superseded' });
  assert.equal(t.renewRejected('b', 2), null, 'reported once');
  assert.deepEqual(kinds(t.due(510)), ['renew a']);
  t.renewed('a', 1, 510);
  // A new grant of the node: answers about the old fence do not touch it.
  t.released('a', 1);
  t.acquired('a', 5, 600);
  t.renewRejected('a', 1);
  t.renewed('a', 1, 5000);
  assert.deepEqual(t.owned(), [{ node: 'a', fence: 5 }]);
  assert.deepEqual(kinds(t.due(1000)), ['renew a']);
  assert.deepEqual(t.due(1399), [], 'unanswered: trusted until 600 + 800');
  assert.deepEqual(kinds(t.due(1400)), ['lost a unrenewed']);
});

test('lease table: renews due within earlyMs go with the batch due now, so grants acquired at different times renew together', () => {
  const t = new LeaseTable(1200); // renew every 400
  t.acquired('a', 1, 0);
  t.acquired('b', 2, 100);
  t.acquired('c', 3, 350);
  assert.deepEqual(kinds(t.due(400, 133)), ['renew a', 'renew b'], 'b is due at 500: within 133 ms, sent early');
  t.renewed('a', 1, 400);
  t.renewed('b', 2, 400);
  assert.equal(t.nextWakeAt(), 750, 'c next');
  assert.deepEqual(kinds(t.due(750, 133)), ['renew a', 'renew b', 'renew c'], 'a and b (due at 800) join c');
  for (const [n, f] of [['a', 1], ['b', 2], ['c', 3]] as const) t.renewed(n, f, 750);
  assert.deepEqual(t.due(1149, 0), []);
  assert.deepEqual(kinds(t.due(1150, 133)), ['renew a', 'renew b', 'renew c'], 'one batch per period from now on');
  // Unanswered: each grant is trusted until its last confirmed renew (750) plus two thirds of the lease.
  assert.deepEqual(t.due(1549, 133), []);
  assert.deepEqual(kinds(t.due(1550, 133)), ['lost a unrenewed', 'lost b unrenewed', 'lost c unrenewed']);
});

test('lease table: the acquire floor is above every fence seen for the node, within a bounded memory', () => {
  const t = new LeaseTable(1000);
  assert.equal(t.floor('n'), 1);
  t.seen('n', 50);
  t.seen('n', 20);
  assert.equal(t.floor('n'), 51);
  t.acquired('n', 60, 0);
  assert.equal(t.floor('n'), 61);
  for (let i = 0; i <= MAX_REMEMBERED_FENCES; i++) t.seen(`x${i}`, 3);
  assert.equal(t.floor('n'), 1, 'the oldest remembered node is forgotten first');
  assert.equal(t.floor(`x${MAX_REMEMBERED_FENCES}`), 4);
});

test('handover messages are bounded and checked', () => {
  assert.equal(decodeHandover('{"from":"host-b"}'), 'host-b');
  for (const bad of ['', 'x', '[]', 'null', '{"from":3}', '{"from":"a|b"}', `{"from":"${'a'.repeat(300)}"}`]) {
    assert.equal(decodeHandover(bad), null, bad);
  }
});

// ---------------------------------------------------------------------------
// Two hosts, one real redis-server
// ---------------------------------------------------------------------------

describe(`node leases in Redis (${REDIS_SERVER ?? 'redis-server not installed'})`, { skip: redisSkip }, () => {
  let redis: RedisServer;
  const keepers: LeaseKeeper[] = [];
  const clients: Redis[] = [];
  let prefixes = 0;

  after(async () => {
    for (const k of keepers) k.abandon();
    for (const c of clients) c.disconnect();
    await redis?.dispose();
  });

  interface Host {
    keeper: LeaseKeeper;
    lost: { node: string; fence: number; reason: string; at: number }[];
    asked: { node: string; fence: number; from: string }[];
    registry: Registry;
  }

  async function host(hostId: string, leaseMs: number, keyPrefix: string, over: Partial<LeaseKeeperOptions> = {}): Promise<Host> {
    const lost: Host['lost'] = [];
    const asked: Host['asked'] = [];
    const registry = new Registry();
    const keeper = new LeaseKeeper({
      redisUrl: redis.url, hostId, leaseMs, keyPrefix,
      onLost: (node, fence, reason) => lost.push({ node, fence, reason, at: Date.now() }),
      onHandoverRequest: (node, fence, from) => asked.push({ node, fence, from }),
      metrics: registerLeaseMetrics(registry),
      ...over,
    });
    keepers.push(keeper);
    assert.equal(await keeper.start(), redis.running);
    return { keeper, lost, asked, registry };
  }

  async function metric(h: Host, name: string, labels = ''): Promise<number> {
    const text = await h.registry.metrics();
    const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
    return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
  }

  function raw(): Redis {
    const c = new Redis(redis.url, { lazyConnect: false, maxRetriesPerRequest: 1 });
    c.on('error', () => {});
    clients.push(c);
    return c;
  }

  const prefix = () => `t${++prefixes}:`;

  test('start', async () => {
    redis = await RedisServer.start();
  });

  test('one holder per node: the other host learns the holder, asks for a handover, and gets a strictly higher fence', async () => {
    const p = prefix();
    const a = await host('host-a', 5000, p);
    const b = await host('host-b', 5000, p);
    const ra = await a.keeper.acquire('node-1');
    assert.ok(ra.acquired, JSON.stringify(ra));
    const fenceA = ra.fence;
    assert.deepEqual(await b.keeper.acquire('node-1'), { acquired: false, holder: 'host-a', fence: fenceA });
    assert.deepEqual(await a.keeper.acquire('node-1'), { acquired: true, fence: fenceA }, 'the holder asking again keeps its grant');
    const twice = await Promise.all([a.keeper.acquire('node-3'), a.keeper.acquire('node-3')]);
    assert.ok(twice[0].acquired && twice[1].acquired && twice[0].fence === twice[1].fence, 'one grant for two concurrent attempts');
    assert.equal(await b.keeper.requestHandover('node-3'), 1, 'and its holder still listens');
    await until(() => a.asked.some((q) => q.node === 'node-3'), 'node-3 request heard');
    a.asked.length = 0;

    assert.equal(await b.keeper.requestHandover('node-1'), 1, 'PUBLISH reached the holder');
    await until(() => a.asked.length === 1, 'the holder hears the request');
    assert.deepEqual(a.asked, [{ node: 'node-1', fence: fenceA, from: 'host-b' }]);
    assert.equal(await b.keeper.requestHandover('node-2'), 0, 'nobody holds node-2');

    assert.equal(await a.keeper.release('node-1'), true);
    assert.equal(await a.keeper.requestHandover('node-1'), 0, 'the host that released no longer listens');
    const rb = await b.keeper.acquire('node-1');
    assert.ok(rb.acquired, JSON.stringify(rb));
    assert.ok(rb.fence > fenceA, `fence ${rb.fence} > ${fenceA}`);

    // Host A with its old grant, or guessing B's fence, can neither renew nor release B's grant.
    const asA = new NodeLeases(raw(), 'host-a', 5000, p);
    assert.equal(await asA.renew('node-1', fenceA), false);
    assert.equal(await asA.release('node-1', fenceA), false);
    assert.equal(await asA.renew('node-1', rb.fence), false);
    assert.equal(await asA.release('node-1', rb.fence), false);
    assert.equal(await asA.check('node-1', rb.fence), 0);
    assert.equal(await b.keeper.check('node-1'), true, 'B still holds it');
    // A write that matters, guarded by the fence: A's stale grant writes nothing, B's writes.
    const guarded = `${FENCE_GUARD_LUA}\nredis.call('SET', KEYS[2], ARGV[2])\nreturn 1`;
    const c = raw();
    await assert.rejects(c.eval(guarded, 2, `${p}lease:node-1`, `${p}resume:node-1`, leaseValue('host-a', fenceA), 'from-a'), /FENCED/);
    assert.equal(await c.get(`${p}resume:node-1`), null);
    assert.equal(await c.eval(guarded, 2, `${p}lease:node-1`, `${p}resume:node-1`, leaseValue('host-b', rb.fence), 'from-b'), 1);
    assert.equal(await c.get(`${p}resume:node-1`), 'from-b');
    assert.equal(await a.keeper.check('node-1'), false);
    const asB = new NodeLeases(raw(), 'host-b', 5000, p);
    const left = await asB.check('node-1', rb.fence);
    assert.ok(left > 0 && left <= 5000, `ms left ${left}`);

    assert.equal(await metric(a, CLUSTER_M.leaseAcquisitions, '{result="acquired"}'), 2);
    assert.equal(await metric(b, CLUSTER_M.leaseAcquisitions, '{result="held"}'), 1);
    assert.equal(await metric(b, CLUSTER_M.handoversRequested, '{result="received"}'), 2);
    assert.equal(await metric(b, CLUSTER_M.handoversRequested, '{result="no_listener"}'), 1);
    assert.equal(await metric(a, CLUSTER_M.handoverRequestsReceived), 2);
    assert.equal(await metric(a, CLUSTER_M.leaseLosses, '{reason="unrenewed"}'), 0, 'series start at zero');
    await a.keeper.stop();
    await b.keeper.stop();
  });

  test('a grant granted again elsewhere (failover, restart) is lost as superseded at the next renew', async () => {
    const p = prefix();
    const a = await host('host-a', 600, p);
    const b = await host('host-b', 600, p);
    const ra = await a.keeper.acquire('n');
    assert.ok(ra.acquired);
    const c = raw();
    await c.del(`${p}lease:n`); // what a Redis that lost its data looks like
    const rb = await b.keeper.acquire('n');
    assert.ok(rb.acquired && rb.fence > ra.fence);
    await until(() => a.lost.length > 0, 'A notices at its next renew', 1000);
    assert.deepEqual(a.lost.map(({ node, fence, reason }) => ({ node, fence, reason })), [{ node: 'n', fence: ra.fence, reason: 'superseded' }]);
    assert.equal(await b.keeper.check('n'), true, "A's loss did not touch B's grant");
    assert.equal(await metric(a, CLUSTER_M.leaseRenewals, '{result="rejected"}'), 1);
    await a.keeper.stop();
    await b.keeper.stop();
  });

  test('a dead holder: its grant expires after lease_ms and the other host takes the node with a higher fence', async () => {
    const p = prefix();
    const a = await host('host-a', 1200, p);
    const b = await host('host-b', 1200, p);
    const ra = await a.keeper.acquire('n');
    assert.ok(ra.acquired);
    await until(async () => (await metric(a, CLUSTER_M.leaseRenewals, '{result="ok"}')) >= 2, 'A renews')
      .catch(async (e) => { throw new Error(`${(e as Error).message}: ${await a.registry.metrics()} lost ${JSON.stringify(a.lost)}`); });
    const diedAt = Date.now();
    a.keeper.abandon(); // no release: as a crash
    const held = await b.keeper.acquire('n');
    assert.deepEqual(held, { acquired: false, holder: 'host-a', fence: ra.fence }, 'still held just after the crash');
    assert.equal(await b.keeper.requestHandover('n'), 0, 'a dead holder hears nothing');
    const rb = await until(async () => { const r = await b.keeper.acquire('n'); return r.acquired ? r : null; }, 'B acquires after expiry', 3000);
    const waited = Date.now() - diedAt;
    assert.ok(waited >= 1200 - 400 - 50, `taken ${waited} ms after the crash: not before the last renew's grant ran out`);
    assert.ok(rb.fence > ra.fence);
    await b.keeper.stop();
  });

  test('Redis stopped: the holder gives the node up within two thirds of the lease; Redis back (empty): fences still rise', async () => {
    const p = prefix();
    const a = await host('host-a', 600, p);
    const ra = await a.keeper.acquire('n');
    assert.ok(ra.acquired);
    await until(async () => (await metric(a, CLUSTER_M.leaseRenewals, '{result="ok"}')) >= 4, 'renewals over more than a lease', 3000);
    assert.equal(a.lost.length, 0, 'no loss while Redis answers');

    const stoppedAt = Date.now();
    await redis.stop();
    await until(() => a.lost.length > 0, 'A declares the grant lost', 2000);
    const lost = a.lost[0]!;
    assert.equal(lost.reason, 'unrenewed');
    assert.equal(lost.fence, ra.fence);
    // The last successful renew was sent at most a third of the lease before the stop; the
    // grant is given up 2/3 of the lease after it: always before it can expire in Redis.
    assert.ok(lost.at - stoppedAt < 600, `lost ${lost.at - stoppedAt} ms after the stop, before the grant could run out`);
    assert.ok(await metric(a, CLUSTER_M.leaseRenewals, '{result="error"}') >= 1);
    assert.equal(await metric(a, CLUSTER_M.leaseLosses, '{reason="unrenewed"}'), 1);
    assert.deepEqual(a.keeper.owned(), []);
    const failed = await a.keeper.acquire('other');
    assert.ok(!failed.acquired && 'error' in failed, 'acquire fails fast while Redis is down');

    await redis.restart();
    const c = raw();
    await until(async () => (await c.ping().catch(() => '')) === 'PONG', 'raw client back');
    assert.equal(await c.get(`${p}fence:n`), null, 'the restarted Redis has lost the fence counter');
    const again = await until(async () => { const r = await a.keeper.acquire('n'); return r.acquired ? r : null; }, 'A acquires again', 5000);
    assert.ok(again.fence > ra.fence, `fence ${again.fence} > ${ra.fence} although the counter started over`);

    // A fresh host (no memory) also gets a higher fence: Redis's clock is past every earlier grant.
    const b = await host('host-b', 600, p);
    assert.equal(await a.keeper.release('n'), true);
    await redis.stop();
    await redis.restart();
    const rb = await until(async () => { const r = await b.keeper.acquire('n'); return r.acquired ? r : null; }, 'B acquires', 5000);
    assert.ok(rb.fence > again.fence, `fence ${rb.fence} > ${again.fence}`);
    await b.keeper.stop();
    await a.keeper.stop();
  });

  test('a Redis whose clock is behind an earlier grant: the host\'s own high-water mark keeps its fences rising', async () => {
    const p = prefix();
    const a = await host('host-a', 5000, p);
    const c = raw();
    const future = Date.now() + 1e9; // a fence granted by a Redis whose clock ran ahead
    await c.set(`${p}fence:n`, String(future));
    const r1 = await a.keeper.acquire('n');
    assert.ok(r1.acquired);
    assert.equal(r1.fence, future + 1);
    assert.equal(await a.keeper.release('n'), true);
    await redis.stop();
    await redis.restart();
    const r2 = await until(async () => { const r = await a.keeper.acquire('n'); return r.acquired ? r : null; }, 'A acquires', 5000);
    assert.equal(r2.fence, future + 2, 'the floor this host sent, not the restarted Redis\'s clock');
    await a.keeper.stop();
  });

  test('a host started while Redis is down: start says so, acquires fail fast, and work once Redis is up', async () => {
    const p = prefix();
    await redis.stop();
    const a = await host('host-a', 600, p);
    assert.equal(a.keeper.isUp(), false);
    const r = await a.keeper.acquire('n');
    assert.ok(!r.acquired && 'error' in r);
    assert.equal(await metric(a, CLUSTER_M.leaseAcquisitions, '{result="error"}'), 1);
    await redis.restart();
    const ok = await until(async () => { const x = await a.keeper.acquire('n'); return x.acquired ? x : null; }, 'acquired once Redis is up', 5000);
    assert.ok(ok.fence > 0);
    assert.equal(await redis.running, true);
    await a.keeper.stop();
  });
  /** Script calls Redis ran so far (EVALSHA and EVAL, every client). */
  async function scriptCalls(): Promise<number> {
    const info = await raw().info('commandstats');
    let n = 0;
    for (const m of info.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)) n += Number(m[1]);
    return n;
  }

  test('many grants acquired at different times are renewed in a few script calls per period, not one per grant', async () => {
    const p = prefix();
    const a = await host('host-a', 600, p); // renew every 200 ms
    const nodes = Array.from({ length: 40 }, (_, i) => `r${i}`);
    for (const n of nodes) {
      assert.ok((await a.keeper.acquire(n)).acquired);
      await new Promise((r) => setTimeout(r, 10)); // spread over two periods
    }
    await new Promise((r) => setTimeout(r, 400)); // the renews gather
    const ok0 = await metric(a, CLUSTER_M.leaseRenewals, '{result="ok"}');
    const c0 = await scriptCalls();
    await new Promise((r) => setTimeout(r, 1000));
    const calls = (await scriptCalls()) - c0;
    const renewed = (await metric(a, CLUSTER_M.leaseRenewals, '{result="ok"}')) - ok0;
    assert.ok(renewed >= 40 * 3, `every grant renewed about every 200 ms (${renewed} renewals in 1 s)`);
    assert.ok(calls <= 20, `${calls} script calls for ${renewed} renewals: batched`);
    assert.deepEqual(a.lost, []);
    await a.keeper.stop();
  });

  test('resume points of many nodes: one script call per 256, each entry checked against its own lease', async () => {
    const p = prefix();
    const a = await host('host-a', 5000, p);
    const b = await host('host-b', 5000, p);
    const nodes = Array.from({ length: 300 }, (_, i) => `w${i}`);
    const fences = new Map<string, number>();
    for (const n of nodes.slice(0, 299)) {
      const r = await a.keeper.acquire(n);
      assert.ok(r.acquired);
      fences.set(n, r.fence);
    }
    const rb = await b.keeper.acquire('w299');
    assert.ok(rb.acquired);
    const store = new ResumeStore(a.keeper.redis, 'host-a', p);
    const entries = nodes.map((node, i) => ({ node, fence: fences.get(node) ?? rb.fence, seq: i + 1 }));
    await store.write([{ node: 'w0', fence: fences.get('w0')!, seq: 1 }]); // loads the script
    const c0 = await scriptCalls();
    const res = await store.write(entries);
    assert.equal((await scriptCalls()) - c0, 2, 'two script calls for 300 nodes');
    assert.deepEqual(res.slice(0, 299), Array(299).fill('ok'));
    assert.equal(res[299], 'fenced', 'host-a does not hold w299: nothing written');
    const c = raw();
    assert.equal(await c.get(`${p}resume:w5`), `6|${fences.get('w5')}`);
    assert.equal(await c.get(`${p}resume:w299`), null);
    await a.keeper.stop();
    await b.keeper.stop();
  });
});
