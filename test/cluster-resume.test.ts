// The fleet's resume point when a node moves between two hosts (in-process engines, one
// real redis-server, skipped saying so when it is not installed), binary protocol, acks
// `delivered`: the welcome after a graceful move carries the node's last acked seq, and
// frames a host still held for a node it gave up are never fed to a later tracker there.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Engine } from '../src/engine/engine.js';
import { encodeFrame } from '../src/protocol/binary-protocol.js';
import { RedisServer, redisSkip } from './redis-server.js';
import { startEngine, CollectingSink, Client, until, scrape, assertAccounting, binaryHello, errorCodeOf } from './helpers.js';

function frames(from: number, to: number): Buffer {
  const out: Buffer[] = [];
  for (let s = from; s <= to; s++) out.push(encodeFrame({ seq: s, timestamp: 1000 + s, delay: [10.5], doppler: [-1.5], snr: [6] }));
  return Buffer.concat(out);
}

/** A binary connection for `node`, once welcomed (or refused). */
const hello = (port: number, node: string) => binaryHello(port, node, 10000);
const lastAck = (c: Client): number => Math.max(0, ...c.messages().filter((m) => m.t === 'ack').map((m) => m.seq as number));
const seqsOf = (sink: CollectingSink, node: string): number[] => sink.of(node).map((f) => f.timestamp - 1000);

describe('cluster resume point across a move', { skip: redisSkip }, () => {
  let redis: RedisServer;
  const engines: Engine[] = [];
  const clients: Client[] = [];
  let prefixN = 0;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await Promise.all(engines.map((e) => e.stop().catch(() => undefined)));
    await redis?.dispose();
  });

  async function host(name: string, prefix: string, opts: Parameters<typeof startEngine>[1] = {}): Promise<{ e: Engine; sink: CollectingSink; port: number }> {
    const sink = new CollectingSink();
    const e = await startEngine({
      cluster: { redis_url: redis.url, host_id: name, lease_ms: 1500, key_prefix: `${prefix}:`, drain_nodes_per_s: 100 },
      shutdown: { deadline_ms: 4000 },
    }, { sink, ...opts });
    engines.push(e);
    return { e, sink, port: e.tcpAddress!.port };
  }

  async function connect(port: number, node: string): Promise<{ c: Client; m: Record<string, any> }> { // eslint-disable-line @typescript-eslint/no-explicit-any
    const r = await hello(port, node);
    clients.push(r.c);
    assert.equal(r.m.t, 'welcome', JSON.stringify(r.m));
    return r;
  }

  test('a first claim whose provisioning outlasts a resume flush keeps its lease: the next host gets the node by handover, welcomed at its last ack', async () => {
    const p = `slowprov${prefixN++}`;
    // Provisioning that answers after a few resume flushes (an external service deciding).
    const b = await host('host-b', p, { hooks: { onUnknownNode: () => new Promise((r) => setTimeout(() => r({ accept: true }), 500)) } });
    const a = await host('host-a', p);
    const first = await connect(b.port, 'sp1');
    assert.equal(first.m.last_seq, 0);
    await first.c.send(frames(1, 5));
    await until(() => lastAck(first.c) === 5, 'B acked 5');
    const second = await connect(a.port, 'sp1');
    assert.equal(second.m.last_seq, 5, 'A welcomes the node at its last ack (B\'s resume point)');
    await first.c.closedP;
    assert.equal(errorCodeOf(first.c), 'RADAR_ERR_SUPERSEDED', 'B handed the node over instead of feeding it beside A');
    assert.equal((await scrape(b.e)).get('radar_ingest_cluster_nodes_given_up_total{reason="handover"}'), 1);
    assert.equal((await scrape(a.e)).get('radar_ingest_cluster_takeovers_total{reason="handover"}'), 1);
    assert.deepEqual(seqsOf(b.sink, 'sp1'), [1, 2, 3, 4, 5]);
    assert.deepEqual(seqsOf(a.sink, 'sp1'), []);
  });

  test('a node leaves a host whose sink is stalled and comes back: the welcomes carry its last ack, the frames left there are discarded and counted, never fed', async () => {
    const p = `stall${prefixN++}`;
    const a = await host('host-a', p);
    const b = await host('host-b', p);
    // On A: 1-3 delivered and acked, then A's sink stalls with 4-10 in the ring (not acked).
    const a1 = await connect(a.port, 'st1');
    await a1.c.send(frames(1, 3));
    await until(() => lastAck(a1.c) === 3, 'A acked 3');
    a.sink.paused = true;
    await a1.c.send(frames(4, 10));
    await until(async () => (await scrape(a.e)).get('radar_ingest_frames_in_rings') === 7, '4-10 in A\'s ring');
    // To B (A's handover deadline passes with 4-10 still in its ring): B resumes after 3.
    const b1 = await connect(b.port, 'st1');
    assert.equal(b1.m.last_seq, 3, 'B resumes after the last frame A acked');
    await a1.c.closedP;
    await b1.c.send(frames(4, 15));
    await until(() => lastAck(b1.c) === 15, 'B acked 15');
    // Back to A, whose sink still stalls: the welcome carries 15, and A's ring holds nothing of before.
    const a2 = await connect(a.port, 'st1');
    assert.equal(a2.m.last_seq, 15, 'A resumes after the last frame B acked');
    await b1.c.closedP;
    await a2.c.send(frames(16, 18));
    await until(async () => (await scrape(a.e)).get('radar_ingest_frames_received_total') === 13, '16-18 received by A');
    // To B again while A stalls with 16-18: the welcome carries 15 (acked), not an earlier ownership's 3.
    const b2 = await connect(b.port, 'st1');
    assert.equal(b2.m.last_seq, 15, 'B resumes after the node\'s last ack, not behind it');
    await a2.c.closedP;
    await b2.c.send(frames(16, 20));
    await until(() => lastAck(b2.c) === 20, 'B acked 20');
    // Back to A a last time, its sink flowing again: its tracker gets only what comes now.
    a.sink.paused = false;
    const a3 = await connect(a.port, 'st1');
    assert.equal(a3.m.last_seq, 20);
    await a3.c.send(frames(21, 22));
    await until(() => lastAck(a3.c) === 22, 'A acked 22');
    assert.deepEqual(seqsOf(a.sink, 'st1'), [1, 2, 3, 21, 22], 'A fed nothing it held from before a move');
    assert.deepEqual(seqsOf(b.sink, 'st1'), [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    const ma = await assertAccounting(a.e);
    assert.equal(ma.get('radar_ingest_frames_dropped_total{reason="given_up"}'), 10, '4-10 and 16-18 discarded on A');
    assert.equal(ma.get('radar_ingest_frames_received_total'), 15);
    assert.equal(ma.get('radar_ingest_frames_delivered_total'), 5);
    const mb = await assertAccounting(b.e);
    assert.equal(mb.get('radar_ingest_frames_dropped_total{reason="given_up"}'), 0);
  });
});
