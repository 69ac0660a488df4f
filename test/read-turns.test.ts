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

  test('a fast connection on a worker yields its turns; flooding a full ring it stays bounded by its credit, then every frame arrives once, in order', async () => {
    const sink = new CollectingSink();
    const ring = 1 << 17;
    const inflight = 64 * 1024;
    // shards: auto with a low threshold: the connection moves to a worker at once and never back.
    const engine = await startEngine({ shards: 'auto', ring: { size_bytes: ring, overflow: 'block' }, limits: { max_inflight_bytes: inflight, max_frame_bytes: 16384 } },
      { sink, placement: { upBytesPerS: 1000, upForMs: 20, tickMs: 10, downBytesPerS: 0, downForMs: 3_600_000 } });
    engines.push(engine);
    const c = await Client.open(engine.tcpAddress!.port);
    const T0 = 1_700_000_000_000;
    let next = 1;
    const frames = (n: number): string => {
      const parts: string[] = [];
      for (let i = 0; i < n; i++) parts.push(lineFrame('flood', T0 + next++, 4));
      return parts.join('');
    };
    await c.send(frames(50));
    await until(async () => {
      if (engine.handoff.moves.shard >= 1) return true;
      await c.send(frames(10));
      return false;
    }, 'the connection moved to a worker');
    await until(() => sink.of('flood').length === next - 1, 'the first frames delivered');
    sink.paused = true;
    // ~4 MB of frames, written without waiting: far more than the ring and the credit hold.
    const before = next - 1;
    const all = Buffer.from(frames(12000));
    c.socket.write(all);
    const received = async () => (await scrape(engine)).get('radar_ingest_bytes_received_total') ?? 0;
    const start = await received();
    await until(async () => (await received()) - start > ring / 2, 'the ring filling');
    await until(() => engine.handoff.turns.yields > 0, 'the connection yielded turns');
    // Many turns go by while the peer keeps pushing: reading stops at the credit bound.
    await sleep(300);
    const held = await received();
    await sleep(300);
    assert.equal(await received(), held, 'no more bytes read while the ring is full');
    // Ring + credit + the read that crossed the credit and one more buffered read + the framer's partial line.
    const bound = ring + inflight + 2 * 64 * 1024 + 4096;
    assert.ok(held - start <= bound, `bytes read ${held - start} <= ${bound} (the peer wrote ${all.length})`);
    assert.ok(held - start < all.length / 4, 'most of the flood is still with the peer');

    sink.paused = false; // the engine's safety sweep offers the full ring again
    await until(() => sink.of('flood').length >= next - 1, 'every frame delivered', 30000);
    assert.ok(next - 1 > before);
    assert.deepEqual(sink.of('flood').map((f) => f.timestamp - T0), Array.from({ length: next - 1 }, (_, i) => i + 1), 'each frame once, in order');
    await assertAccounting(engine);
    c.destroy();
  });
});
