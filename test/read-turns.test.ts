// Per-turn read budgets on the main thread (src/ingress/read-turns.ts): a connection
// that read its budget in one event-loop turn pauses until the next, so unpaced
// peers cannot fill a turn the slow nodes wait behind. The bookkeeping is checked
// with an injected scheduler; over real sockets, a flooding peer whose ring is full
// stays bounded by its credit (a yielded turn never resumes a socket that credit
// back-pressure paused), and once the sink drains every frame arrives once, in order.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { ReadTurns, TURN_READ_BYTES, type TurnReader } from '../src/ingress/read-turns.js';
import { startEngine, CollectingSink, Client, until, scrape, assertAccounting, lineFrame } from './helpers.js';
import type { Engine } from '../src/engine/engine.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('read turns (bookkeeping)', () => {
  test('a connection yields once it read its budget in a turn and resumes at the next; others are untouched', () => {
    const queued: Array<() => void> = [];
    const resumed: string[] = [];
    const turns = new ReadTurns<TurnReader & { name: string }>(100, (h) => resumed.push(h.name), (fn) => queued.push(fn));
    const fast = { name: 'fast', turnBytes: 0, yielded: false };
    const slow = { name: 'slow', turnBytes: 0, yielded: false };
    assert.equal(turns.read(fast, 60), false);
    assert.equal(turns.read(slow, 10), false);
    assert.equal(turns.read(fast, 60), true, 'over the budget: pause');
    assert.equal(turns.read(fast, 60), false, 'a read already buffered while pausing does not pause again');
    assert.equal(queued.length, 1, 'one scheduled turn end for all connections');
    assert.equal(turns.yields, 1);
    queued.shift()!();
    assert.deepEqual(resumed, ['fast'], 'only the connection that yielded is resumed');
    assert.equal(fast.turnBytes, 0);
    assert.equal(fast.yielded, false);
    assert.equal(slow.turnBytes, 0, 'every connection starts the next turn with a full budget');
    // The next turn: the same budget again.
    assert.equal(turns.read(fast, 99), false);
    assert.equal(turns.read(fast, 1), true);
    assert.equal(queued.length, 1);
  });

  test('the budget is one libuv read', () => {
    assert.equal(TURN_READ_BYTES, 64 * 1024);
  });
});

describe('read turns over real sockets', () => {
  const engines: Engine[] = [];
  after(async () => {
    await Promise.all(engines.map((e) => e.stop()));
  });

  for (const shards of [0, 1] as const) {
    test(`shards: ${shards}: a peer flooding a full ring stays bounded by its credit, then every frame arrives once, in order`, async () => {
      const sink = new CollectingSink();
      sink.paused = true;
      const ring = 1 << 17;
      const inflight = 64 * 1024;
      const engine = await startEngine({ shards, ring: { size_bytes: ring, overflow: 'block' }, limits: { max_inflight_bytes: inflight, max_frame_bytes: 16384 } }, { sink });
      engines.push(engine);
      const c = await Client.open(engine.tcpAddress!.port);
      // ~4 MB of frames, written without waiting: far more than the ring and the credit hold.
      const N = 12000;
      const frames: string[] = [];
      for (let i = 1; i <= N; i++) frames.push(lineFrame('flood', 1_700_000_000_000 + i, 4));
      const all = Buffer.from(frames.join(''));
      c.socket.write(all);
      const received = async () => (await scrape(engine)).get('radar_ingest_bytes_received_total') ?? 0;
      await until(async () => (await received()) > ring, 'the ring filled');
      // Many turns go by while the peer keeps pushing: reading stops at the credit bound.
      await sleep(300);
      const held = await received();
      await sleep(300);
      assert.equal(await received(), held, 'no more bytes read while the ring is full');
      // Ring + credit + the read that crossed the credit and one more buffered read + the framer's partial line.
      const bound = ring + inflight + 2 * 64 * 1024 + 4096;
      assert.ok(held <= bound, `bytes read ${held} <= ${bound} (the peer wrote ${all.length})`);
      assert.ok(held < all.length / 4, 'most of the flood is still with the peer');

      sink.paused = false; // the engine's safety sweep offers the full ring again
      await until(() => sink.of('flood').length >= N, 'every frame delivered', 30000);
      assert.deepEqual(sink.of('flood').map((f) => f.timestamp - 1_700_000_000_000), Array.from({ length: N }, (_, i) => i + 1), 'each frame once, in order');
      await assertAccounting(engine);
      c.destroy();
    });
  }
});
