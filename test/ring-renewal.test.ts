// Ring renewal: a ring a backlog made resident goes back to fresh memory once it has
// been empty for ring.renew_after_ms, on an open connection (detached and attached
// again at a frame boundary) and on a node with no connection; frames before and
// after arrive exactly once and in order, the books stay exact.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { engineFixtures, lineFrame, until, scrape, getJson, assertAccounting, CollectingSink, Client, TOKEN } from './helpers.js';
import { encodeHello, encodeFrame } from '../src/protocol/binary-protocol.js';

const BURST = 1500; // ~560 B a frame: ~800 KiB of ring, far past the 128 KiB renewal mark
const TS0 = 1757400000000;

async function open(port: number): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  await once(s, 'connect');
  return s;
}

function send(s: Socket, node: string, from: number, n: number): void {
  let buf = '';
  for (let i = from; i < from + n; i++) buf += lineFrame(node, TS0 + i, 20);
  s.write(buf);
}

/** Timestamps the sink got for `node`, which must be TS0 + 0 .. n-1, each once, in order. */
function assertInOrder(sink: CollectingSink, node: string, n: number): void {
  const got = sink.of(node).map((f) => f.timestamp - TS0);
  assert.equal(got.length, n, `${got.length} frames delivered, ${n} sent`);
  for (let i = 0; i < n; i++) if (got[i] !== i) assert.fail(`frame ${i}: got ${got[i]} (delivered out of order, lost or twice)`);
}

for (const shards of [1, 0] as const) {
  describe(`ring renewal (shards: ${shards})`, () => {
    const start = engineFixtures({ shards, ring: { renew_after_ms: 300 } });

    test('a connected node bursts, goes quiet: its ring is renewed without closing the connection, and frames flow on in order', async () => {
      const sink = new CollectingSink();
      sink.paused = true;
      const { engine, port } = await start({}, {}, sink);
      const s = await open(port);
      try {
        send(s, 'burst-1', 0, BURST);
        const node = await until(() => (engine.nodes.get('burst-1')?.reader.frames === BURST ? engine.nodes.get('burst-1') : null), 'the burst in the ring');
        const oldRing = node.ring;
        const touched = (await scrape(engine)).get('radar_ingest_ring_touched_bytes')!;
        assert.ok(touched >= 512 * 1024, `the backlog made ${touched} bytes resident`);
        sink.paused = false;
        await until(() => sink.of('burst-1').length === BURST, 'the burst delivered');
        const m = await until(async () => {
          const x = await scrape(engine);
          return x.get('radar_ingest_ring_renewals_total') === 1 ? x : null;
        }, 'the ring renewed', 10000);
        assert.equal(m.get('radar_ingest_ring_touched_bytes'), 0, 'the fresh ring has touched nothing yet');
        assert.notEqual(node.ring, oldRing, 'the node has a new buffer');
        const view = await getJson(engine.httpAddress!.port, '/api/v1/nodes/burst-1');
        assert.equal(view.json.connected, true, 'the connection stayed open');
        assert.deepEqual(view.json.ring, { size_bytes: 4194304, touched_bytes: 0, used_bytes: 0 });
        assert.equal(engine.handoff.moves.main + engine.handoff.moves.shard, 0, 'a renewal is not a placement move');
        send(s, 'burst-1', BURST, 200);
        await until(() => sink.of('burst-1').length === BURST + 200, 'frames after the renewal delivered');
        assertInOrder(sink, 'burst-1', BURST + 200);
        assert.ok(node.reader.touchedBytes > 0 && node.reader.touchedBytes < 128 * 1024, `the new ring is written from its start (${node.reader.touchedBytes})`);
        const books = await assertAccounting(engine);
        assert.equal(books.get('radar_ingest_frames_received_total'), BURST + 200);
        assert.equal(books.get('radar_ingest_frames_delivered_total'), BURST + 200);
      } finally {
        s.destroy();
      }
    });

    test('a node whose connection closed during its backlog has its ring renewed once delivered; it comes back and goes on in order', async () => {
      const sink = new CollectingSink();
      sink.paused = true;
      const { engine, port } = await start({}, {}, sink);
      const s = await open(port);
      send(s, 'burst-2', 0, BURST);
      const node = await until(() => (engine.nodes.get('burst-2')?.reader.frames === BURST ? engine.nodes.get('burst-2') : null), 'the burst in the ring');
      s.end();
      await until(() => node.owner === null, 'the connection released');
      sink.paused = false;
      await until(() => sink.of('burst-2').length === BURST, 'the burst delivered');
      await until(async () => (await scrape(engine)).get('radar_ingest_ring_renewals_total') === 1, 'the ring renewed', 10000);
      assert.equal(node.reader.touchedBytes, 0);
      const s2 = await open(port);
      try {
        send(s2, 'burst-2', BURST, 200);
        await until(() => sink.of('burst-2').length === BURST + 200, 'frames after the renewal delivered');
        assertInOrder(sink, 'burst-2', BURST + 200);
        await assertAccounting(engine);
      } finally {
        s2.destroy();
      }
    });

    test('binary, acks delivered: acks, the resume point and seqs carry over a renewal on an open connection', async () => {
      const sink = new CollectingSink();
      sink.paused = true;
      const { engine, port } = await start({ tcp_server: { ack: 'delivered' } }, {}, sink);
      const c = await Client.open(port);
      const frames = (from: number, to: number): Buffer => {
        const out: Buffer[] = [];
        for (let q = from; q <= to; q++) {
          const v = Array.from({ length: 20 }, (_, i) => q + i / 10);
          out.push(encodeFrame({ seq: q, timestamp: TS0 + q, delay: v, doppler: v, snr: v }));
        }
        return Buffer.concat(out);
      };
      const maxAck = (): number => Math.max(-1, ...c.messages().filter((m) => m.t === 'ack').map((m) => m.seq as number));
      try {
        await c.send(encodeHello('bin-1', TOKEN));
        await until(() => c.messages().find((m) => m.t === 'welcome'), 'welcome');
        await c.send(frames(1, BURST));
        const node = await until(() => (engine.nodes.get('bin-1')?.reader.frames === BURST ? engine.nodes.get('bin-1') : null), 'the burst in the ring');
        assert.ok(maxAck() < BURST, 'nothing past the sink is acked yet');
        sink.paused = false;
        await until(() => maxAck() === BURST, 'the burst acked once delivered');
        await until(async () => (await scrape(engine)).get('radar_ingest_ring_renewals_total') === 1, 'the ring renewed', 10000);
        assert.equal(node.reader.lastSeq, BURST, 'the resume point moved with the ring');
        await c.send(frames(BURST - 10, BURST + 200)); // 10 duplicates, then new frames
        await until(() => maxAck() === BURST + 200, 'frames after the renewal acked');
        const got = sink.of('bin-1').map((f) => f.timestamp - TS0);
        assert.deepEqual(got, Array.from({ length: BURST + 200 }, (_, i) => i + 1), 'every seq once, in order');
        await assertAccounting(engine);
      } finally {
        c.destroy();
      }
    });

    test('a ring its sink keeps up with is never renewed', async () => {
      const sink = new CollectingSink();
      const { engine, port } = await start({}, {}, sink);
      const s = await open(port);
      try {
        for (let k = 0; k < 20; k++) {
          send(s, 'steady', k * 50, 50);
          await until(() => sink.of('steady').length === (k + 1) * 50, 'a batch delivered');
        }
        await new Promise((r) => setTimeout(r, 700)); // two renewal periods: a wrong renewal would show by now
        assert.equal((await scrape(engine)).get('radar_ingest_ring_renewals_total'), 0);
        assertInOrder(sink, 'steady', 1000);
      } finally {
        s.destroy();
      }
    });
  });
}
