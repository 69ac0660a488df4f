// shards: auto over real sockets: connections start on the main thread and move
// to a worker and back at frame boundaries. Forced moves (the placement test hook
// `alternateMs`) every few ms while clients stream a known sequence in ragged
// chunks (partial lines and messages cross the moves): every frame arrives once
// and in order, binary acks stay cumulative, accounting holds, and the move
// counters on /metrics match the moves the API shows per node. Then real
// (small) thresholds: a slow node stays on the main thread, a fast one moves to a
// worker and back when it slows down.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEngine, CollectingSink, Client, until, scrape, assertAccounting, getJson, lineFrame, heartbeat } from './helpers.js';
import { encodeHello, encodeFrame } from '../src/protocol/binary-protocol.js';
import type { Engine } from '../src/engine/engine.js';
import type { PlacementPolicy } from '../src/ingress/placement.js';
import { mulberry32 } from './prng.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const engines: Engine[] = [];
after(async () => {
  await Promise.all(engines.map((e) => e.stop()));
});
async function setup(over: Record<string, unknown>, placement: Partial<PlacementPolicy>): Promise<{ engine: Engine; sink: CollectingSink; port: number; http: number }> {
  const sink = new CollectingSink();
  const engine = await startEngine(over, { sink, placement });
  engines.push(engine);
  return { engine, sink, port: engine.tcpAddress!.port, http: engine.httpAddress!.port };
}

/** Writes `data` in chunks of 1..maxChunk bytes with a pause every few chunks, so moves land mid-message. */
async function ragged(c: Client, data: Buffer, rnd: () => number, maxChunk: number): Promise<void> {
  for (let p = 0, i = 0; p < data.length; i++) {
    const n = 1 + Math.floor(rnd() * maxChunk);
    await c.send(data.subarray(p, p + n));
    p += n;
    if (i % 4 === 0) await sleep(1);
  }
}

function binFrame(seq: number): Buffer {
  const d = [10.25, 11.25 + (seq % 7)];
  return encodeFrame({ seq, timestamp: 1_700_000_000_000 + seq, delay: d, doppler: d.map((x) => -x), snr: d.map((x) => x / 2) });
}

async function moveCounts(engine: Engine): Promise<{ main: number; shard: number }> {
  const m = await scrape(engine);
  return { main: m.get('radar_ingest_connection_moves_total{to="main"}')!, shard: m.get('radar_ingest_connection_moves_total{to="shard"}')! };
}

const FORCED: Partial<PlacementPolicy> = { tickMs: 5, alternateMs: 15 };

describe('adaptive placement (shards: auto)', () => {
  test('line protocol: a gateway connection moved many times mid-stream loses, repeats and reorders nothing', async () => {
    const { engine, sink, port, http } = await setup({ shards: 'auto' }, FORCED);
    assert.deepEqual(await moveCounts(engine), { main: 0, shard: 0 }, 'series exist at zero');
    const N = 1500;
    const parts: string[] = [];
    // Two nodes on one connection (a gateway), frames interleaved, heartbeats among them.
    for (let i = 1; i <= N; i++) {
      parts.push(lineFrame('gw-a', 1_700_000_000_000 + i, 1 + (i % 4)));
      if (i % 3 === 0) parts.push(lineFrame('gw-b', 1_700_000_000_000 + i, 2));
      if (i % 100 === 0) parts.push(heartbeat('gw-a'));
    }
    const c = await Client.open(port);
    await ragged(c, Buffer.from(parts.join('')), mulberry32(7), 400);
    await until(() => sink.of('gw-a').length >= N && sink.of('gw-b').length >= N / 3, 'every frame in the sink', 20000);
    const a = sink.of('gw-a').map((f) => f.timestamp - 1_700_000_000_000);
    const b = sink.of('gw-b').map((f) => f.timestamp - 1_700_000_000_000);
    assert.deepEqual(a, Array.from({ length: N }, (_, i) => i + 1), 'gw-a: each frame once, in order');
    assert.deepEqual(b, Array.from({ length: N / 3 }, (_, i) => 3 * (i + 1)), 'gw-b: each frame once, in order');
    assert.equal(JSON.parse(sink.of('gw-a')[4]!.line).delay.length, 2, 'frames intact');

    // Forced moves go on during the scrape: the metric lies between the counts read before and after it.
    const before = { ...engine.handoff.moves };
    const moves = await moveCounts(engine);
    const afterScrape = { ...engine.handoff.moves };
    assert.ok(moves.shard >= 10 && moves.main >= 10, `moved many times both ways: ${JSON.stringify(moves)}`);
    for (const to of ['main', 'shard'] as const) {
      assert.ok(before[to] <= moves[to] && moves[to] <= afterScrape[to], `${to}: ${before[to]} <= ${moves[to]} <= ${afterScrape[to]}`);
    }
    const view = (await getJson(http, '/api/v1/nodes/gw-a')).json;
    assert.ok(['main', 'shard'].includes(view.placement), JSON.stringify(view));
    // Moves go on while the connection is idle; the API's count is read after the metric's.
    assert.ok(view.moves >= moves.main + moves.shard, `per-node moves ${view.moves} vs metrics ${JSON.stringify(moves)}`);
    assert.equal(c.closed, false, 'the connection stayed open');
    const m = await assertAccounting(engine);
    assert.equal(m.get('radar_ingest_frames_received_total'), N + N / 3);
    c.destroy();
  });

  test('binary protocol: hello once, frames and acks survive many moves mid-message', async () => {
    const { engine, sink, port, http } = await setup({ shards: 'auto' }, FORCED);
    const c = await Client.open(port);
    await c.send(encodeHello('bin-mv', 'test-secret'));
    await until(() => c.messages().find((m) => m.t === 'welcome'), 'welcome');
    const N = 2000;
    const frames: Buffer[] = [];
    for (let s = 1; s <= N; s++) frames.push(binFrame(s));
    await ragged(c, Buffer.concat(frames), mulberry32(11), 120);
    await until(() => sink.of('bin-mv').length >= N, 'every frame in the sink', 20000);
    const got = sink.of('bin-mv').map((f) => f.timestamp - 1_700_000_000_000);
    assert.deepEqual(got, Array.from({ length: N }, (_, i) => i + 1), 'each frame once, in order');
    await until(() => c.messages().some((m) => m.t === 'ack' && m.seq === N), `ack ${N}`, 10000);
    const msgs = c.messages();
    assert.equal(msgs.filter((m) => m.t === 'welcome').length, 1, 'welcomed once');
    assert.deepEqual(msgs.filter((m) => m.t === 'error'), [], 'no protocol error');
    const acks = msgs.filter((m) => m.t === 'ack').map((m) => m.seq as number);
    for (let i = 1; i < acks.length; i++) assert.ok(acks[i]! >= acks[i - 1]!, `acks cumulative: ${acks[i - 1]} then ${acks[i]}`);
    const moves = await moveCounts(engine);
    assert.ok(moves.shard >= 10 && moves.main >= 10, `moved many times both ways: ${JSON.stringify(moves)}`);
    const view = (await getJson(http, '/api/v1/nodes/bin-mv')).json;
    assert.ok(view.moves >= moves.main + moves.shard, JSON.stringify(view));
    // A reconnect resumes after the last frame: the ring's seq survived the moves.
    c.destroy();
    const c2 = await Client.open(port);
    await c2.send(encodeHello('bin-mv', 'test-secret'));
    const w = await until(() => c2.messages().find((m) => m.t === 'welcome'), 'welcome again');
    assert.equal(w.last_seq, N);
    c2.destroy();
    await assertAccounting(engine);
  });

  test('by rate: a slow node stays on the main thread; a fast one moves to a worker, and back when it slows', async () => {
    const { engine, sink, port, http } = await setup({ shards: 'auto' }, { tickMs: 50, upBytesPerS: 50_000, upForMs: 300 });
    const slow = await Client.open(port);
    const fast = await Client.open(port);
    let ts = 1_700_000_000_000;
    let stop = false;
    const slowLoop = (async () => {
      while (!stop) {
        await slow.send(lineFrame('slow-1', ts++, 2));
        await sleep(100); // ~2 KB/s
      }
    })();
    let sent = 0;
    const fastLoop = (async () => {
      // ~400 KB/s for up to 10 s or until it has moved to a worker.
      const end = Date.now() + 10000;
      while (Date.now() < end && (await getJson(http, '/api/v1/nodes/fast-1').catch(() => ({ json: {} }))).json.placement !== 'shard') {
        let batch = '';
        for (let i = 0; i < 40; i++) batch += lineFrame('fast-1', 1_700_000_000_000 + ++sent, 5);
        await fast.send(batch);
        await sleep(20);
      }
    })();
    await fastLoop;
    let view = (await getJson(http, '/api/v1/nodes/fast-1')).json;
    assert.equal(view.placement, 'shard', JSON.stringify(view));
    assert.equal(view.moves, 1);
    assert.ok(view.rate_bytes_per_s > 50_000, JSON.stringify(view));
    // Now quiet (heartbeats only): back to the main thread after 4 x 300 ms below 12.5 KB/s.
    await fast.send(heartbeat('fast-1'));
    view = await until(async () => {
      const v = (await getJson(http, '/api/v1/nodes/fast-1')).json;
      return v.placement === 'main' ? v : null;
    }, 'fast-1 back on the main thread', 10000);
    assert.equal(view.moves, 2);
    stop = true;
    await slowLoop;
    const s = (await getJson(http, '/api/v1/nodes/slow-1')).json;
    assert.deepEqual([s.placement, s.moves], ['main', 0], JSON.stringify(s));
    assert.deepEqual(await moveCounts(engine), { main: 1, shard: 1 });
    await until(() => sink.of('fast-1').length === sent, 'fast frames');
    assert.deepEqual(sink.of('fast-1').map((f) => f.timestamp - 1_700_000_000_000), Array.from({ length: sent }, (_, i) => i + 1));
    const list = (await getJson(http, '/api/v1/nodes')).json.nodes;
    assert.deepEqual(list.map((n: { node_id: string }) => n.node_id).sort(), ['fast-1', 'slow-1']);
    slow.destroy();
    fast.destroy();
    await assertAccounting(engine);
  });

  test('pinned placements do not move: shards 2 shows "shard", shards 0 shows "main"; no moves counted', async () => {
    for (const [shards, where] of [[2, 'shard'], [0, 'main']] as const) {
      const { engine, sink, port, http } = await setup({ shards }, FORCED);
      const c = await Client.open(port);
      let data = '';
      for (let i = 1; i <= 200; i++) data += lineFrame(`pin-${shards}`, 1_700_000_000_000 + i, 2);
      await ragged(c, Buffer.from(data), mulberry32(3), 300);
      await until(() => sink.of(`pin-${shards}`).length === 200, 'frames');
      const v = (await getJson(http, `/api/v1/nodes/pin-${shards}`)).json;
      assert.deepEqual([v.placement, v.moves], [where, 0]);
      assert.deepEqual(await moveCounts(engine), { main: 0, shard: 0 });
      c.destroy();
    }
  });
});
