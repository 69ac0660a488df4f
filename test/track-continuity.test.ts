// Track continuity across hosts: with a `cluster` section, track ids name the
// host and the fence of its lease on the node, every event in a track file and
// every forwarded item carries node_id, host, fence and run_id, and track files
// name the host. Two real engines (two "hosts" with different host_id) share
// one output_dir and one api_forward receiver (a real node:http server); the
// built-in tracker runs as their subprocess and nodes are real TCP clients. The
// fence of each host's lease is set on the node's entry before its tracker
// starts (as the lease does). A third engine without `cluster` shows the single
// host's format unchanged.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Engine } from '../src/engine/engine.js';
import { ID_PREFIX_RE } from '../src/tracker/reference-tracker.js';
import { trackFileName } from '../src/tracker/track-output.js';
import { MAX_RUN_ID_CHARS, clusterRunId, hostTag, runIdFor, withProvenance } from '../src/tracker/track-provenance.js';
import { Client, TOKEN, startTrackerEngine, until, type TrackerEngine } from './helpers.js';
import { RedisServer, REDIS_SERVER, redisSkip } from './redis-server.js';
import { ForwardReceiver, twoTargetFrames } from './track-fixtures.js';

type Event = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('track provenance (pure)', () => {
  test('host tags: readable for short ids, hashed otherwise, never with "." or "-"', () => {
    assert.equal(hostTag('ingest-a'), 'ingest:a');
    assert.equal(hostTag('myhost-4711'), 'myhost:4711');
    const hashed = hostTag('host.example.org_7-12345');
    assert.match(hashed, /^@[0-9a-f]{12}$/);
    assert.notEqual(hostTag('a.b'), hostTag('a_b'));
    for (const h of ['ingest-a', 'x', 'host.example.org_7-12345', 'A'.repeat(64)]) assert.match(hostTag(h), /^[A-Za-z0-9:@]+$/);
  });

  test('cluster run ids: {host}.{fence}.{epoch}.{spawn}, at most 64 characters, taken by the built-in tracker', () => {
    assert.equal(clusterRunId('ingest-a', 1_800_000_000_123, '3.7'), 'ingest:a.1800000000123.3.7');
    assert.equal(runIdFor(undefined, 1_800_000_000_123, '3.7'), '3.7', 'no cluster: the run id is unchanged');
    assert.equal(runIdFor({ host_id: 'ingest-a' }, 5, '3.7'), 'ingest:a.5.3.7');
    // A fence that is not a non-negative safe integer is written as 0 (unfenced).
    assert.equal(clusterRunId('h', -4, '1.1'), 'h.0.1.1');
    assert.equal(clusterRunId('h', 2 ** 60, '1.1'), 'h.0.1.1');
    const longest = clusterRunId('Z'.repeat(64), Number.MAX_SAFE_INTEGER, `${Date.now()}.99999999`);
    assert.ok(longest.length <= MAX_RUN_ID_CHARS, longest);
    for (const id of [longest, clusterRunId('ingest-a', 1, '1.1'), clusterRunId('a_b.c', 9, '1.1')]) {
      assert.match(id, ID_PREFIX_RE);
      assert.ok(!id.includes('-'), 'no "-": a track id splits at its last "-"');
    }
  });

  test('events keep the tracker\'s bytes and get the fields before the closing brace', () => {
    const p = { nodeId: 'n1', host: 'ingest-a', fence: 42, runId: 'ingest:a.42.1.1' };
    const text = '{"track_id":"ingest:a.42.1.1-T0001","delay":1.50,"snr":[1e3, 2.0] }';
    assert.equal(withProvenance(text, JSON.parse(text), p),
      '{"track_id":"ingest:a.42.1.1-T0001","delay":1.50,"snr":[1e3, 2.0],"node_id":"n1","host":"ingest-a","fence":42,"run_id":"ingest:a.42.1.1"}');
    assert.equal(withProvenance('{ }', {}, { ...p, runId: null }), '{"node_id":"n1","host":"ingest-a","fence":42}');
    // The tracker printed one of the fields itself: re-serialised, the host's values win and no key appears twice.
    const own = '{"track_id":7,"fence":3,"host":"elsewhere"}';
    const out = withProvenance(own, JSON.parse(own), p);
    assert.deepEqual(JSON.parse(out), { track_id: 7, fence: 42, host: 'ingest-a', node_id: 'n1', run_id: 'ingest:a.42.1.1' });
    assert.equal(out.match(/"fence"/g)!.length, 1);
  });

  test('track file names: the host between the name and the date, only when given', () => {
    const t = Date.UTC(2025, 8, 9, 12);
    assert.equal(trackFileName('node-1', t), 'node-1_2025-09-09.jsonl');
    assert.equal(trackFileName('node-1', t, 'utc', undefined, 'ingest-a'), 'node-1_ingest-a_2025-09-09.jsonl');
  });
});

// ---------------------------------------------------------------------------
// Two hosts, one output_dir, one receiver
// ---------------------------------------------------------------------------

const T0 = 1_757_400_000_000;
const NODE = 'cont-node';
const DEADLINE = 20_000;
const FENCE_A = 1_800_000_000_001;
const FENCE_A2 = 1_800_000_000_005;
const FENCE_B = 1_800_000_000_009;

const { frames } = twoTargetFrames(NODE, T0);

/** The complete lines of the files in `dir` whose names match `re`, with the file names. */
function filesMatching(dir: string, re: RegExp): string[] {
  return readdirSync(dir).filter((f) => re.test(f)).sort();
}
function lines(dir: string, file: string): string[] {
  const parts = readFileSync(join(dir, file), 'utf8').split('\n');
  parts.pop();
  return parts;
}

function post(port: number, path: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/x-ndjson' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe(`track continuity across two hosts (${REDIS_SERVER ?? 'redis-server not installed'})`, { skip: redisSkip }, () => {
  const root = mkdtempSync(join(tmpdir(), 'radar-track-continuity-'));
  const engines: Engine[] = [];
  const clients: Client[] = [];
  const receiver = new ForwardReceiver();
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
    await receiver.start();
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await Promise.all(engines.map((e) => e.stop().catch(() => undefined)));
    await receiver.close();
    await redis?.dispose();
    rmSync(root, { recursive: true, force: true });
  });

  async function host(out: string, hostId: string | null, forward: Record<string, unknown>): Promise<TrackerEngine> {
    const t = await startTrackerEngine(out, [], {
      tracker: { command: 'reference', stop_grace_ms: 3000 },
      api_forward: { enabled: true, ...forward },
      ...(hostId !== null ? { cluster: { redis_url: redis.url, host_id: hostId, lease_ms: 3000 } } : {}),
    });
    engines.push(t.e);
    return t;
  }

  test('ids never collide, files name the host, every event and forwarded item carries node_id/host/fence/run_id', async () => {
    const out = join(root, 'shared');
    mkdirSync(out);
    const a = await host(out, 'ingest-a', { url: receiver.url('/a') });
    const b = await host(out, 'ingest-b', { url: receiver.url('/b'), batch_max_events: 10, batch_max_ms: 50 });
    const fileA = new RegExp(`^${NODE}_ingest-a_\\d{4}-\\d{2}-\\d{2}\\.jsonl$`);
    const fileB = new RegExp(`^${NODE}_ingest-b_\\d{4}-\\d{2}-\\d{2}\\.jsonl$`);
    const linesOf = (re: RegExp): Event[] => filesMatching(out, re).flatMap((f) => lines(out, f)).map((l) => JSON.parse(l) as Event);

    // ---- host A holds the node under FENCE_A ----
    a.e.nodes.ensure(NODE).fence = FENCE_A;
    const ca = await Client.open(a.tcp);
    clients.push(ca);
    await ca.send(frames(0, 10));
    await until(() => filesMatching(out, fileA).length > 0 && linesOf(fileA).filter((e) => e.track_id !== undefined).length >= 4,
      'host A writes track events into its own file', DEADLINE);
    // Host A loses and re-acquires the node without its tracker being replaced: later events carry the new fence.
    const fenceNow = a.e.nodes.get(NODE)!.fence;
    assert.ok(fenceNow > 0, 'the node is served under a fence');
    a.e.nodes.get(NODE)!.fence = FENCE_A2;
    await ca.send(frames(10, 16));
    await until(() => linesOf(fileA).some((e) => e.fence === FENCE_A2), 'events after the change carry the new fence', DEADLINE);
    ca.destroy();

    // ---- host B takes the node over under a higher fence ----
    b.e.nodes.ensure(NODE).fence = FENCE_B;
    const cb = await Client.open(b.tcp);
    clients.push(cb);
    await cb.send(frames(20, 30));
    await until(() => filesMatching(out, fileB).length > 0 && linesOf(fileB).filter((e) => e.track_id !== undefined).length >= 4,
      'host B writes track events into its own file', DEADLINE);

    // Two hosts never append to one file, and no file has the single host's name.
    const all = readdirSync(out).filter((f) => f.endsWith('.jsonl'));
    assert.deepEqual(all.filter((f) => !fileA.test(f) && !fileB.test(f)), [], `only host-named track files: ${all.join(', ')}`);

    const evA = linesOf(fileA);
    const evB = linesOf(fileB);
    const fenceB = b.e.nodes.get(NODE)!.fence;
    for (const [events, hostId, tag] of [[evA, 'ingest-a', 'ingest:a'], [evB, 'ingest-b', 'ingest:b']] as const) {
      for (const e of events) {
        assert.equal(e.node_id, NODE);
        assert.equal(e.host, hostId);
        assert.ok(Number.isSafeInteger(e.fence) && e.fence > 0, `fence ${e.fence}`);
        const m = new RegExp(`^${tag}\\.(\\d+)\\.\\d+\\.\\d+$`).exec(e.run_id);
        assert.ok(m, `run_id ${e.run_id} names the host`);
        // The built-in tracker's ids start with the run id of the process that printed them.
        if (e.track_id !== undefined) assert.ok(String(e.track_id).startsWith(`${e.run_id}-T`), `${e.track_id} under ${e.run_id}`);
      }
    }
    // The run id holds the fence at the spawn; each event the fence at the time it was written.
    assert.ok(evA.every((e) => e.run_id.split('.')[1] === String(fenceNow)), 'host A\'s process runs under its first fence');
    assert.ok(evA.some((e) => e.fence === fenceNow) && evA.some((e) => e.fence === FENCE_A2));
    assert.ok(evB.every((e) => e.fence === fenceB && e.run_id.split('.')[1] === String(fenceB)));
    assert.notEqual(fenceB, fenceNow, 'the new owner runs under another fence');

    // Ids of the two hosts never collide.
    const idsA = new Set(evA.filter((e) => e.track_id !== undefined).map((e) => String(e.track_id)));
    const idsB = new Set(evB.filter((e) => e.track_id !== undefined).map((e) => String(e.track_id)));
    assert.ok(idsA.size >= 2 && idsB.size >= 2, `tracks on both hosts (${idsA.size}, ${idsB.size})`);
    assert.deepEqual([...idsA].filter((id) => idsB.has(id)), [], 'no track id written by both hosts');

    // Forwarded items: one object per POST from host A, arrays from host B (batching), all carrying the fields.
    await until(() => receiver.events('/a').length >= evA.length && receiver.events('/b').length >= evB.length, 'every event forwarded', DEADLINE);
    const postsA = receiver.posts.filter((p) => p.path === '/a');
    assert.ok(postsA.every((p) => p.body.startsWith('{')), 'one object per POST');
    assert.ok(receiver.posts.some((p) => p.path === '/b' && p.body.startsWith('[')), 'batches from host B');
    // What is forwarded is the line written, byte for byte.
    const fileTextA = filesMatching(out, fileA).flatMap((f) => lines(out, f));
    assert.deepEqual(postsA.map((p) => p.body).slice(0, fileTextA.length), fileTextA);
    for (const [path, hostId] of [['/a', 'ingest-a'], ['/b', 'ingest-b']] as const) {
      for (const e of receiver.events(path)) {
        assert.equal(e.node_id, NODE);
        assert.equal(e.host, hostId);
        assert.ok(e.fence > 0 && typeof e.run_id === 'string');
      }
    }

    // Pushed tracks (server mode) on a host of a cluster: the host's file, node_id and host, fence 0 (no lease).
    assert.equal(await post(a.http, '/api/node/pushy/tracks', '{"track_id":"p-1","delay":1.50}\n{"track_id":"p-2","fence":7}\n'), 200);
    const pushFile = new RegExp('^pushy_ingest-a_\\d{4}-\\d{2}-\\d{2}\\.jsonl$');
    await until(() => filesMatching(out, pushFile).length === 1 && lines(out, filesMatching(out, pushFile)[0]!).length === 2, 'pushed tracks in the host\'s file', DEADLINE);
    const pushed = lines(out, filesMatching(out, pushFile)[0]!);
    assert.equal(pushed[0], '{"track_id":"p-1","delay":1.50,"node_id":"pushy","host":"ingest-a","fence":0}');
    assert.deepEqual(JSON.parse(pushed[1]!), { track_id: 'p-2', fence: 0, node_id: 'pushy', host: 'ingest-a' });
  });

  test('without a cluster: {name}_{date}.jsonl, ids {epoch}.{spawn}-T0001, events as the tracker printed them', async () => {
    const out = join(root, 'single');
    mkdirSync(out);
    const s = await host(out, null, { url: receiver.url('/single') });
    const c = await Client.open(s.tcp);
    clients.push(c);
    await c.send(frames(0, 10));
    const plain = new RegExp(`^${NODE}_\\d{4}-\\d{2}-\\d{2}\\.jsonl$`);
    const text = (): string[] => filesMatching(out, plain).flatMap((f) => lines(out, f));
    await until(() => text().filter((l) => l.includes('"track_id"')).length >= 4, 'track events in the plain file', DEADLINE);
    assert.deepEqual(readdirSync(out).filter((f) => f.endsWith('.jsonl') && !plain.test(f)), []);
    for (const l of text()) {
      const e = JSON.parse(l) as Event;
      for (const k of ['node_id', 'host', 'fence', 'run_id']) assert.equal(k in e, false, `no ${k} without a cluster: ${l}`);
      if (e.track_id !== undefined) assert.match(String(e.track_id), /^\d+\.\d+-T\d{4}$/);
    }
    await until(() => receiver.posts.filter((p) => p.path === '/single').length >= text().length, 'forwarded', DEADLINE);
    assert.deepEqual(receiver.posts.filter((p) => p.path === '/single').map((p) => p.body).slice(0, text().length), text());
  });
});
