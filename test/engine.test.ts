// Engine-level behaviour over real sockets: supersede, back-pressure, overflow
// policies, connection limits, shard crash and replacement.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { engineFixtures, CollectingSink, Client, lineFrame, heartbeat, until, scrape, assertAccounting, TOKEN, type EngineFixture } from './helpers.js';
import { encodeHello, encodeFrame } from '../src/protocol/binary-protocol.js';

describe('engine', () => {
  const clients: Client[] = [];
  after(() => {
    for (const c of clients) c.destroy();
  });
  const fixture = engineFixtures();
  const setup = (over: Record<string, unknown> = {}, sink = new CollectingSink()): Promise<EngineFixture> => fixture(over, {}, sink);
  async function open(port: number): Promise<Client> {
    const c = await Client.open(port);
    clients.push(c);
    return c;
  }

  test('a new connection for a node supersedes the old one, which is closed before the new one writes', async () => {
    const { engine, sink, port } = await setup();
    const a = await open(port);
    await a.send(lineFrame('node-s', 1));
    await until(() => sink.of('node-s').length === 1, 'first frame');
    const b = await open(port);
    await b.send(lineFrame('node-s', 2));
    await a.closedP;
    await until(() => sink.of('node-s').length === 2, 'frame on the new connection');
    assert.equal(b.closed, false);
    assert.equal(engine.nodes.get('node-s')!.healthy, true);
    const m = await scrape(engine);
    assert.equal(m.get('radar_ingest_connections_closed_total{reason="superseded"}'), 1);
    // The old connection's late bytes are never written.
    assert.deepEqual(sink.of('node-s').map((f) => f.timestamp), [1, 2]);
  });

  test('binary supersede: the old connection is told why', async () => {
    const { port } = await setup();
    const a = await open(port);
    await a.send(encodeHello('bin-s', TOKEN));
    await until(() => a.messages().some((m) => m.t === 'welcome'), 'welcome a');
    const b = await open(port);
    await b.send(encodeHello('bin-s', TOKEN));
    await until(() => b.messages().some((m) => m.t === 'welcome'), 'welcome b');
    await a.closedP;
    assert.equal(a.messages().find((m) => m.t === 'error')?.code, 'RADAR_ERR_SUPERSEDED');
  });

  for (const shards of [1, 0]) {
    test(`back-pressure (shards: ${shards}): a stalled consumer stalls the sender and nothing is lost`, async () => {
      const sink = new CollectingSink();
      sink.paused = true;
      const { engine, port } = await setup({ shards, ring: { size_bytes: 65536 }, limits: { max_frame_bytes: 4096, max_inflight_bytes: 65536 } }, sink);
      const c = await open(port);
      const total = 150000;
      let text = '';
      for (let i = 1; i <= total; i++) text += lineFrame('node-bp', i, 3);
      const payload = Buffer.from(text); // ~25 MB: far more than ring + in-flight + kernel socket buffers
      let written = false;
      c.socket.write(payload, () => { written = true; });
      // The ring fills and stays full; the sender cannot finish.
      await until(async () => (await scrape(engine)).get('radar_ingest_frames_in_rings')! > 0, 'ring filling');
      await until(() => c.socket.writableLength > 0, 'sender stalled (kernel buffers full)');
      const inRing1 = engine.nodes.get('node-bp')!.reader.frames;
      await new Promise((r) => setTimeout(r, 200)); // a window in which nothing may move
      assert.equal(engine.nodes.get('node-bp')!.reader.frames, inRing1, 'ring stays full while the consumer is stalled');
      assert.equal(written, false);
      assert.ok(engine.nodes.get('node-bp')!.reader.usedBytes > 65536 * 0.9);
      // Resume: everything arrives, in order, once.
      sink.paused = false;
      sink.onData(engine.nodes.get('node-bp')!);
      await until(() => sink.of('node-bp').length === total, 'all frames after resume', 20000);
      const ts = sink.of('node-bp').map((f) => f.timestamp);
      for (let i = 0; i < total; i++) assert.equal(ts[i], i + 1);
      const m = await assertAccounting(engine);
      assert.equal(m.get('radar_ingest_frames_dropped_total{reason="ring_overflow"}'), 0);
    });
  }

  test('a frame held back by a full ring when its connection is superseded is dropped as connection_closed; the books balance', async () => {
    // (A peer that just closes a paused socket is not noticed until the ring drains:
    // its bytes, FIN included, wait unread in the kernel and are processed then.)
    const sink = new CollectingSink();
    sink.paused = true;
    const { engine, port } = await setup({ ring: { size_bytes: 65536 }, limits: { max_frame_bytes: 4096 } }, sink);
    const old = await open(port);
    let text = '';
    for (let i = 1; i <= 5000; i++) text += lineFrame('node-cc', i, 3); // far more than the 64 KiB ring holds
    old.socket.write(text);
    const nodes = engine.nodes;
    await until(() => (nodes.get('node-cc')?.reader.usedBytes ?? 0) > 65536 * 0.9, 'ring full');
    // The shard holds the next frame (framed, not written): not counted anywhere yet.
    await until(async () => {
      const m = await scrape(engine);
      return m.get('radar_ingest_frames_received_total') === m.get('radar_ingest_frames_in_rings');
    }, 'writes stopped at a full ring');
    const inRing = nodes.get('node-cc')!.reader.frames;
    // The node reconnects: the old connection is closed, its held frame counted.
    const fresh = await open(port);
    await fresh.send(lineFrame('node-cc', 9000, 3));
    await old.closedP;
    await until(async () => (await scrape(engine)).get('radar_ingest_frames_dropped_total{reason="connection_closed"}') === 1, 'held frame counted');
    // Resume: the ring's frames, then the new connection's frame, each once.
    sink.paused = false;
    sink.onData(nodes.get('node-cc')!);
    await until(() => sink.of('node-cc').length === inRing + 1, 'ring drained, new frame delivered');
    const ts = sink.of('node-cc').map((f) => f.timestamp);
    assert.deepEqual(ts, [...Array.from({ length: inRing }, (_, i) => i + 1), 9000]);
    const m = await assertAccounting(engine);
    assert.equal(m.get('radar_ingest_frames_received_total'), inRing + 2, 'received = delivered + the one dropped');
    assert.equal(fresh.closed, false);
  });

  test('drop-oldest: a stalled consumer loses the oldest frames, counted, and keeps the newest', async () => {
    const sink = new CollectingSink();
    sink.paused = true;
    const { engine, port } = await setup({ ring: { size_bytes: 65536, overflow: 'drop-oldest' }, limits: { max_frame_bytes: 4096 } }, sink);
    const c = await open(port);
    const total = 5000;
    let text = '';
    for (let i = 1; i <= total; i++) text += lineFrame('node-do', i, 3);
    await c.send(text); // completes: nothing blocks under drop-oldest
    await until(async () => (await scrape(engine)).get('radar_ingest_frames_received_total') === total, 'all received');
    const m = await assertAccounting(engine);
    const dropped = m.get('radar_ingest_frames_dropped_total{reason="ring_overflow"}')!;
    assert.ok(dropped > 0);
    sink.paused = false;
    sink.onData(engine.nodes.get('node-do')!);
    await until(() => sink.of('node-do').length === total - dropped, 'survivors');
    const ts = sink.of('node-do').map((f) => f.timestamp);
    assert.equal(ts[ts.length - 1], total, 'the newest frame survives');
    assert.equal(ts[0], dropped + 1, 'exactly the oldest were dropped');
  });

  test('max connections: the connection over the limit is refused and counted', async () => {
    const { engine, port } = await setup({ limits: { max_connections: 2 } });
    const a = await open(port);
    const b = await open(port);
    await until(() => engine.handoff.open === 2, 'two open');
    const c = await open(port);
    await c.closedP;
    assert.equal(a.closed || b.closed, false);
    assert.equal((await scrape(engine)).get('radar_ingest_connections_rejected_total{reason="max_connections"}'), 1);
  });

  test('first-message deadline: a silent connection is closed and counted; an authenticated one is not', async () => {
    const { engine, port } = await setup({ limits: { first_message_timeout_ms: 150 } });
    const silent = await open(port);
    const good = await open(port);
    await good.send(heartbeat('node-fm'));
    await silent.closedP;
    assert.equal(good.closed, false);
    assert.equal((await scrape(engine)).get('radar_ingest_connections_rejected_total{reason="first_message_timeout"}'), 1);
  });

  test('slow-loris bytes do not extend the first-message deadline', async () => {
    const { port } = await setup({ limits: { first_message_timeout_ms: 200 } });
    const c = await open(port);
    const t0 = Date.now();
    const trickle = setInterval(() => { if (!c.closed) c.socket.write('{'); }, 20);
    await c.closedP;
    clearInterval(trickle);
    assert.ok(Date.now() - t0 < 2000);
  });

  test('idle timeout closes a connection that goes quiet', async () => {
    const { engine, port } = await setup({ limits: { idle_timeout_ms: 150 } });
    const c = await open(port);
    await c.send(heartbeat('node-idle'));
    await c.closedP;
    assert.equal((await scrape(engine)).get('radar_ingest_connections_rejected_total{reason="idle_timeout"}'), 1);
  });

  test('a node paused by back-pressure (its ring full) is not closed as idle; the idle timer runs again once it is read', async () => {
    const sink = new CollectingSink();
    sink.paused = true;
    const idle = 300;
    const { engine, port } = await setup({
      limits: { idle_timeout_ms: idle, max_frame_bytes: 4096, max_inflight_bytes: 65536 }, ring: { size_bytes: 65536 },
    }, sink);
    const c = await open(port);
    // Frames until the ring is full and the main thread stops reading the socket.
    const frame = lineFrame('node-bp', 1, 40);
    let ts = 1;
    const h = (): { paused: boolean } | undefined => [...engine.handoff.conns.values()][0];
    const pump = setInterval(() => {
      if (!c.closed && !h()?.paused) {
        let batch = '';
        for (let i = 0; i < 200; i++) batch += frame.replace('"timestamp":1,', `"timestamp":${ts++},`);
        c.socket.write(batch);
      }
    }, 5);
    try {
      await until(() => h()?.paused === true, 'socket paused by back-pressure', 10000);
    } finally {
      clearInterval(pump);
    }
    // Three idle periods with nothing read: the connection must stay.
    await new Promise((r) => setTimeout(r, 3 * idle));
    assert.equal(c.closed, false, 'a back-pressured node was closed');
    assert.equal((await scrape(engine)).get('radar_ingest_connections_rejected_total{reason="idle_timeout"}') ?? 0, 0);
    // The tracker catches up: every frame arrives, then the quiet node is closed as idle.
    sink.paused = false;
    await until(() => sink.of('node-bp').length === ts - 1, 'every frame delivered after the pause', 10000);
    await c.closedP;
    // Counted when the engine's side of the socket closes, just after the client sees it.
    const idleCount = async (): Promise<number | undefined> => (await scrape(engine)).get('radar_ingest_connections_rejected_total{reason="idle_timeout"}');
    for (const deadline = Date.now() + 5000; (await idleCount()) !== 1 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await idleCount(), 1);
    await assertAccounting(engine);
  });

  test('a shard crash closes its connections, the shard is replaced, nodes reconnect, the process lives', async () => {
    const { engine, sink, port } = await setup({ shards: 2 });
    const a = await open(port);
    const b = await open(port);
    await a.send(lineFrame('node-c1', 1));
    await b.send(lineFrame('node-c2', 1));
    await until(() => sink.frames.length === 2, 'frames before crash');
    const shardOfA = [...engine.handoff.conns.values()].find((h) => h.id === 1)!.shard;
    engine.crashShard(shardOfA);
    await a.closedP;
    assert.equal(b.closed, false, 'the other shard is unaffected');
    await until(() => engine.pool.isReady(shardOfA), 'shard replaced');
    await until(() => !engine.nodes.get('node-c1')!.healthy, 'crashed node unhealthy');
    const m = await scrape(engine);
    assert.equal(m.get('radar_ingest_shard_restarts_total'), 1);
    assert.equal(m.get('radar_ingest_connections_closed_total{reason="shard_crashed"}'), 1);
    // Reconnect works (possibly onto the replaced shard).
    const a2 = await open(port);
    await a2.send(lineFrame('node-c1', 2));
    await b.send(lineFrame('node-c2', 2));
    await until(() => sink.of('node-c1').length === 2 && sink.of('node-c2').length === 2, 'frames after crash');
    await assertAccounting(engine);
  });

  test('hostile input: deeply nested msgpack and a 1 MiB line of [ are rejected, the connections carry on', async () => {
    const { engine, sink, port } = await setup({ limits: { max_frame_bytes: 2 * 1024 * 1024 }, ring: { size_bytes: 8 * 1024 * 1024 } });
    const b = await open(port);
    await b.send(encodeHello('bin-deep', TOKEN));
    await until(() => b.messages().some((m) => m.t === 'welcome'), 'welcome');
    const deep = Buffer.alloc(4 + (1 << 20), 0x91); // fixarray(1) nested a million deep
    deep.writeUInt32BE(1 << 20, 0);
    await b.send(Buffer.concat([deep, encodeFrame({ seq: 1, timestamp: 1, delay: [1], doppler: [2], snr: [3] })]));
    const l = await open(port);
    await l.send(lineFrame('node-deep', 1) + '['.repeat(1 << 20) + '\n' + lineFrame('node-deep', 2));
    await until(() => sink.of('bin-deep').length === 1 && sink.of('node-deep').length === 2, 'frames after the hostile ones');
    assert.ok(b.messages().some((m) => m.t === 'error' && m.code === 'RADAR_ERR_MALFORMED' && m.fatal === false));
    const m = await assertAccounting(engine);
    assert.equal(m.get('radar_ingest_frames_dropped_total{reason="malformed"}'), 2);
    assert.equal(b.closed || l.closed, false);
  });

  test('per-node tokens: a node with its own token must use it; others use the shared token', async () => {
    const { engine, sink, port } = await setup({ tcp_server: { tokens: { 'node-own': 'own-secret' } } });
    const ownWithShared = await open(port);
    await ownWithShared.send(lineFrame('node-own', 1, 2, TOKEN));
    await ownWithShared.closedP;
    const ownOk = await open(port);
    await ownOk.send(lineFrame('node-own', 2, 2, 'own-secret'));
    const otherWithOwn = await open(port);
    await otherWithOwn.send(lineFrame('node-other', 1, 2, 'own-secret'));
    await otherWithOwn.closedP;
    const otherOk = await open(port);
    await otherOk.send(lineFrame('node-other', 2, 2, TOKEN));
    await until(() => sink.of('node-own').length === 1 && sink.of('node-other').length === 1, 'frames with the right tokens');
    assert.deepEqual(sink.of('node-own').map((f) => f.timestamp), [2]);
    // Binary hello follows the same rule.
    const bad = await open(port);
    await bad.send(encodeHello('node-own', TOKEN));
    await bad.closedP;
    assert.equal(bad.messages()[0]?.code, 'RADAR_ERR_AUTH_FAILED');
    const good = await open(port);
    await good.send(encodeHello('node-own', 'own-secret'));
    await until(() => good.messages().some((m) => m.t === 'welcome'), 'welcome with the node token');
    assert.equal((await scrape(engine)).get('radar_ingest_connections_rejected_total{reason="auth_failed"}'), 3);
  });

  test('binary frames in flight when a connection drops are either acked and delivered or resent', async () => {
    const { engine, sink, port } = await setup();
    const a = await open(port);
    await a.send(encodeHello('bin-x', TOKEN));
    await until(() => a.messages().some((m) => m.t === 'welcome'), 'welcome');
    const frames: Buffer[] = [];
    for (let i = 1; i <= 500; i++) frames.push(encodeFrame({ seq: i, timestamp: i, delay: [1], doppler: [2], snr: [3] }));
    a.socket.write(Buffer.concat(frames));
    a.destroy(); // drop mid-stream
    await until(() => !engine.nodes.get('bin-x')?.healthy, 'disconnected');
    const b = await open(port);
    await b.send(encodeHello('bin-x', TOKEN));
    const w = await until(() => b.messages().find((m) => m.t === 'welcome'), 'welcome 2');
    await b.send(Buffer.concat(frames.slice(w.last_seq)));
    await until(() => sink.of('bin-x').length === 500, 'all 500 exactly once');
    assert.deepEqual(sink.of('bin-x').map((f) => f.timestamp), Array.from({ length: 500 }, (_, i) => i + 1));
  });
});
