// Hostile peers and dying workers while connections move (shards: auto). Moves are
// driven by the test (the placement timer never fires; a tick moves only the chosen
// connection), and a move's answer from the old shard can be held back, as a busy
// worker would hold it, so the window between M_DETACH and the attach is as long as
// the test needs.
// - A peer that floods large frames while its connection is moving: its reads are
//   held, not buffered without bound (the socket is paused at the read credit, the
//   bytes received stop growing); a well-behaved node on the same host keeps
//   flowing; after the attach every frame of both arrives once and in order.
// - The shard worker dies in the middle of a move: before its answer reaches the
//   main thread (the connection is closed as shard_crashed), after it (the
//   connection goes on on the main thread), or right after the connection was
//   attached to it (closed as shard_crashed), or its thread is terminated from
//   outside before its answer arrives. The engine stays up, the worker is
//   replaced and takes moves again, the other node never notices, accounting holds.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { Client, startEngine, until, scrape, assertAccounting, httpGet, lineFrame } from './helpers.js';
import { encodeHello, encodeFrame } from '../src/protocol/binary-protocol.js';
import type { Engine } from '../src/engine/engine.js';
import type { RingSink } from '../src/nodes/ring-sink.js';
import type { NodeEntry } from '../src/nodes/node-table.js';
import type { ConnHandle } from '../src/ingress/connection-handoff.js';
import type { PlacementState } from '../src/ingress/placement.js';
import type { DetachedMsg } from '../src/protocol/thread-messages.js';

const T0 = 1_700_000_000_000;
const MAX_INFLIGHT = 256 * 1024;
/** The most one socket read hands over (libuv reads at most 64 KiB at a time). */
const READ_CHUNK = 64 * 1024;

/** A sink that keeps each record's timestamp and detection count only (floods would not fit as strings). */
class StampSink implements RingSink {
  readonly seen = new Map<string, { ts: number[]; det: number[] }>();
  onData(node: NodeEntry): void {
    const r = node.reader;
    let s = this.seen.get(node.id);
    if (!s) this.seen.set(node.id, (s = { ts: [], det: [] }));
    for (;;) {
      const b = r.read();
      if (b) {
        for (const rec of b.records()) {
          s.ts.push(rec.timestamp - T0);
          s.det.push(rec.detections);
        }
      }
      if (r.arm()) return;
    }
  }
  ts(node: string): number[] {
    return this.seen.get(node)?.ts ?? [];
  }
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

const engines: Engine[] = [];
const clients: Client[] = [];
const stoppers: (() => void)[] = [];
after(async () => {
  for (const s of stoppers) s();
  for (const c of clients) c.destroy();
  await Promise.all(engines.map((e) => e.stop()));
});

async function setup(): Promise<{ e: Engine; sink: StampSink; port: number; worker: number }> {
  const sink = new StampSink();
  // alternateMs: each tick moves a connection to the other side; tickMs: the timer never fires, the test ticks.
  const e = await startEngine({ shards: 'auto', limits: { max_inflight_bytes: MAX_INFLIGHT, max_frame_bytes: 64 * 1024 } },
    { sink, placement: { tickMs: 2 ** 30, alternateMs: 1 } });
  engines.push(e);
  const worker = [...Array(e.pool.size).keys()].find((i) => i !== e.pool.inlineShard)!;
  return { e, sink, port: e.tcpAddress!.port, worker };
}

function handleOf(e: Engine, node: string): ConnHandle | null {
  const conn = e.nodes.get(node)?.owner?.conn;
  return conn !== undefined ? e.handoff.conns.get(conn) ?? null : null;
}

/** One placement tick that moves only `h` (every other connection stays where it is). */
function tickOnly(e: Engine, h: ConnHandle): void {
  const hidden: [ConnHandle, PlacementState][] = [];
  for (const o of e.handoff.conns.values()) {
    if (o !== h && o.placement) {
      hidden.push([o, o.placement]);
      o.placement = null;
    }
  }
  try {
    e.handoff.placementTick();
  } finally {
    for (const [o, p] of hidden) o.placement = p;
  }
}

/** Moves `h` to the other side and waits until it got there (a declined move is tried again). */
async function moveAndWait(e: Engine, h: ConnHandle): Promise<void> {
  const to = h.placement!.placement === 'main' ? 'shard' : 'main';
  await until(() => {
    if (h.placement!.placement === to && h.move === null) return true;
    if (h.move === null) tickOnly(e, h);
    return false;
  }, `connection ${h.id} moved to ${to}`, 10000);
}

/**
 * Intercepts the old shard's answers to moves (S_DETACHED). `hold(conn)`: answers
 * taking that connection's state are kept until `release()` (or dropped by `drop()`), as if the
 * worker were slow to answer or died before its answer arrived. `after`: called
 * once an answer was handled. `sizes`: bytes held for the connection at each completed move.
 */
function gate(e: Engine) {
  const real = e.handoff.detached.bind(e.handoff);
  const held: DetachedMsg[] = [];
  const holding = new Set<number>();
  const sizes: number[] = [];
  const g = {
    sizes,
    held,
    after: null as ((msg: DetachedMsg) => void) | null,
    hold(conn: number): void {
      holding.add(conn);
    },
    release(): void {
      holding.clear();
      for (const m of held.splice(0)) deliver(m);
    },
    drop(): void {
      holding.clear();
      held.length = 0;
    },
  };
  const deliver = (msg: DetachedMsg): void => {
    const h = e.handoff.conns.get(msg.conn);
    if (h?.move && msg.state !== null) sizes.push(h.move.held.reduce((s, x) => s + (Buffer.isBuffer(x) ? x.length : 0), 0));
    real(msg);
    g.after?.(msg);
  };
  e.handoff.detached = (msg: DetachedMsg) => {
    if (holding.has(msg.conn) && msg.state !== null) held.push(msg);
    else deliver(msg);
  };
  return g;
}

/** Bytes queued for `h`'s new shard while it moves. */
function heldBytes(h: ConnHandle): number {
  return h.move ? h.move.held.reduce((s, x) => s + (Buffer.isBuffer(x) ? x.length : 0), 0) : 0;
}

/** A line node that writes large frames as fast as its socket takes them (respecting its own back-pressure). */
class Flooder {
  next = 1;
  stopped = false;
  private readonly tpl: [string, string];
  done: Promise<void> = Promise.resolve();
  constructor(readonly c: Client, node: string, det: number) {
    const parts = lineFrame(node, 987654321, det).split('987654321');
    this.tpl = [parts[0]!, parts[1]!];
    stoppers.push(() => (this.stopped = true));
  }
  get frameBytes(): number {
    return this.tpl[0].length + this.tpl[1].length + 13;
  }
  start(): void {
    const s: Socket = this.c.socket;
    this.done = (async () => {
      while (!this.stopped && !this.c.closed) {
        const ok = s.write(this.tpl[0] + String(T0 + this.next++) + this.tpl[1]);
        if (!ok) await new Promise<void>((r) => { s.once('drain', r); s.once('close', r); });
      }
    })();
  }
  async stop(): Promise<number> {
    this.stopped = true;
    await this.done;
    return this.next - 1;
  }
}

/** A well-behaved binary node: one frame every `everyMs`, acks read. */
class Calm {
  seq = 0;
  private timer: NodeJS.Timeout | null = null;
  constructor(readonly c: Client, readonly node: string) {
    stoppers.push(() => this.stop());
  }
  async start(everyMs: number): Promise<void> {
    await this.c.send(encodeHello(this.node, 'test-secret'));
    await until(() => this.c.messages().find((m) => m.t === 'welcome'), `${this.node} welcomed`);
    this.timer = setInterval(() => {
      const s = ++this.seq;
      const d = [10.25, 11.25 + (s % 7)];
      void this.c.send(encodeFrame({ seq: s, timestamp: T0 + s, delay: d, doppler: d.map((x) => -x), snr: d.map((x) => x / 2) })).catch(() => undefined);
    }, everyMs);
  }
  stop(): number {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    return this.seq;
  }
}

async function metric(e: Engine, name: string): Promise<number> {
  return (await scrape(e)).get(name) ?? Number.NaN;
}

describe('placement moves under hostile peers and dying workers', () => {
  test('a peer flooding large frames while its connection moves: reads paused at the credit, nothing buffered beyond it; every frame once and in order, for it and for a calm node', async () => {
    const { e, sink, port } = await setup();
    const g = gate(e);
    const calm = new Calm(await Client.open(port), 'calm-1');
    clients.push(calm.c);
    await calm.start(5);
    const fc = await Client.open(port);
    clients.push(fc);
    const flood = new Flooder(fc, 'flood-1', 1500);
    assert.ok(flood.frameBytes > 30_000, `large frames (${flood.frameBytes} bytes)`);
    flood.start();
    await until(() => sink.ts('flood-1').length >= 50, 'the flood reaches the sink');
    const h = handleOf(e, 'flood-1')!;
    assert.equal(h.placement!.placement, 'main');

    // The move to the worker starts; the answer is held, so the connection is between shards.
    g.hold(h.id);
    await until(() => {
      if (h.move === null) tickOnly(e, h);
      return g.held.length > 0;
    }, 'a move under way with the state taken', 10000);
    const bytesAtHold = await metric(e, 'radar_ingest_bytes_received_total');
    const calmAtHold = sink.ts('calm-1').length;
    // The flood keeps coming for as long as the move lasts (1.5 s): what is held never exceeds the read credit.
    let maxHeld = 0;
    const holdUntil = Date.now() + 1500;
    await until(() => {
      maxHeld = Math.max(maxHeld, heldBytes(h));
      return Date.now() > holdUntil;
    }, 'the move held for 1.5 s', 5000);
    assert.ok(maxHeld > 0, 'reads were held during the move');
    assert.ok(maxHeld <= MAX_INFLIGHT + READ_CHUNK, `held ${maxHeld} bytes > credit ${MAX_INFLIGHT} + one read`);
    const bytesDuringHold = (await metric(e, 'radar_ingest_bytes_received_total')) - bytesAtHold;
    assert.ok(bytesDuringHold <= MAX_INFLIGHT + READ_CHUNK, `read ${bytesDuringHold} bytes while the move was held`);
    assert.ok(h.paused, 'the flooding socket is paused, not read into memory');
    assert.ok(fc.socket.writableLength > 0 || fc.socket.writableNeedDrain, 'the flooder is back-pressured (the host stopped reading)');
    await until(() => sink.ts('calm-1').length >= calmAtHold + 50, 'the calm node flows while the flooder is held');

    // The move completes; then many more moves, the flood still going.
    g.release();
    await until(() => h.move === null && h.placement!.placement === 'shard', 'attached to the worker');
    for (let i = 0; i < 12; i++) await moveAndWait(e, h);
    assert.ok(g.sizes.length >= 13, `${g.sizes.length} moves answered`);
    for (const s of g.sizes) assert.ok(s <= MAX_INFLIGHT + READ_CHUNK, `held at an attach: ${s} bytes`);

    const lastFlood = await flood.stop();
    const lastCalm = calm.stop();
    await until(() => sink.ts('flood-1').length >= lastFlood && sink.ts('calm-1').length >= lastCalm, 'every frame in the sink', 20000);
    assert.deepEqual(sink.ts('flood-1'), range(1, lastFlood), 'flooder: each frame once, in order');
    assert.ok(sink.seen.get('flood-1')!.det.every((d) => d === 1500), 'flooder: frames intact');
    assert.deepEqual(sink.ts('calm-1'), range(1, lastCalm), 'calm node: each frame once, in order');
    await until(() => calm.c.messages().some((m) => m.t === 'ack' && m.seq === lastCalm), `calm acked up to ${lastCalm}`);
    assert.equal(fc.closed || calm.c.closed, false, 'both connections stayed open');
    const m = await assertAccounting(e);
    assert.equal(m.get('radar_ingest_frames_received_total'), lastFlood + lastCalm);
    assert.equal(m.get('radar_ingest_connection_moves_total{to="shard"}')! + m.get('radar_ingest_connection_moves_total{to="main"}')!, g.sizes.length);
  });

  test('the worker dies in the middle of a move: closed as shard_crashed or carried on the main thread, the worker replaced, the other node untouched, accounting holds', async () => {
    const { e, sink, port, worker } = await setup();
    const g = gate(e);
    const calm = new Calm(await Client.open(port), 'calm-2');
    clients.push(calm.c);
    await calm.start(5);
    let ts = 0;
    /** Streams `node` (frames of 200 detections every 2 ms) on a new connection until it closes. */
    const stream = async (node: string): Promise<{ c: Client; first: number; stop: () => void }> => {
      const c = await Client.open(port);
      clients.push(c);
      const first = ts + 1;
      const t = setInterval(() => void c.send(lineFrame(node, T0 + ++ts, 200)).catch(() => undefined), 2);
      stoppers.push(() => clearInterval(t));
      c.closedP.then(() => clearInterval(t), () => undefined);
      await until(() => sink.ts(node).length > 0 && sink.ts(node).at(-1)! >= first, `${node} flows`);
      return { c, first, stop: () => clearInterval(t) };
    };
    const crashes = async (n: number): Promise<void> => {
      await until(async () => (await metric(e, 'radar_ingest_shard_restarts_total')) === n && e.pool.isReady(worker), `worker replaced (${n})`, 10000);
    };
    const closedCrashed = (): Promise<number> => metric(e, 'radar_ingest_connections_closed_total{reason="shard_crashed"}');
    assert.equal(await closedCrashed(), 0);

    // A fresh victim connection, moved onto the (current) worker.
    const victimOnWorker = async () => {
      const v = { s: await stream('victim'), h: handleOf(e, 'victim')! };
      await moveAndWait(e, v.h);
      return v;
    };
    // Starts the victim's move back to the main thread and holds the worker's answer.
    const holdMoveOff = (h: ConnHandle) => {
      g.hold(h.id);
      return until(() => {
        if (h.move === null) tickOnly(e, h);
        return g.held.length > 0;
      }, 'a move off the worker under way', 10000);
    };

    // 1. Worker -> main; the worker dies before its answer reaches the main thread.
    let { s, h } = await victimOnWorker();
    await holdMoveOff(h);
    e.crashShard(worker);
    await until(() => s.c.closed, 'the moving connection closed', 10000);
    g.drop(); // the dead worker's answer never arrives
    await crashes(1);
    assert.equal(await closedCrashed(), 1, 'the moving connection closed as shard_crashed');
    assert.equal(e.handoff.conns.has(h.id), false, 'its handle is gone');

    // 2. Worker -> main; the worker dies just after its answer arrived: the connection goes on on the main thread.
    s.stop();
    ({ s, h } = await victimOnWorker()); // onto the replaced worker
    let crashedAt = -1;
    g.after = (msg) => {
      if (msg.conn === h.id && msg.state !== null && crashedAt < 0) {
        crashedAt = ts;
        e.crashShard(worker);
      }
    };
    await moveAndWait(e, h); // back to main; the worker dies right after
    await crashes(2);
    assert.equal(h.placement!.placement, 'main');
    assert.equal(s.c.closed, false, 'carried on the main thread');
    assert.equal(await closedCrashed(), 1);
    const after2 = ts;
    await until(() => sink.ts('victim').at(-1)! >= after2, 'frames after the crash delivered');

    // 3. Main -> worker; the worker dies just after the connection was attached to it.
    g.after = (msg) => {
      if (msg.conn === h.id && msg.state !== null) {
        g.after = null;
        e.crashShard(worker);
      }
    };
    await moveAndWait(e, h);
    await until(() => s.c.closed, 'the moved connection closed', 10000);
    await crashes(3);
    assert.equal(await closedCrashed(), 2, 'closed as shard_crashed once the worker it moved to died');

    // 4. Worker -> main; the worker thread is terminated from outside (as a worker out of memory is) before its answer arrives.
    s.stop();
    ({ s, h } = await victimOnWorker());
    await holdMoveOff(h);
    const threads = (e.pool as unknown as { pool: { threads: { terminate(): Promise<number> }[] } }).pool.threads;
    assert.equal(threads.length, 1, 'one worker thread');
    await threads[0]!.terminate();
    await until(() => s.c.closed, 'the moving connection closed', 10000);
    g.drop();
    await crashes(4);
    assert.equal(await closedCrashed(), 3, 'closed as shard_crashed');

    // The replaced worker takes moves again, and the node streams on a new connection.
    s.stop();
    s = await stream('victim');
    h = handleOf(e, 'victim')!;
    await moveAndWait(e, h);
    await moveAndWait(e, h);
    const last = ts;
    s.stop();
    const lastCalm = calm.stop();
    await until(() => sink.ts('victim').at(-1)! >= last && sink.ts('calm-2').length >= lastCalm, 'last frames delivered', 10000);
    // Frames in transit at a crash may be lost; none is repeated or reordered.
    const v = sink.ts('victim');
    for (let i = 1; i < v.length; i++) assert.ok(v[i]! > v[i - 1]!, `victim frames strictly increasing at ${i}: ${v[i - 1]} then ${v[i]}`);
    assert.deepEqual(sink.ts('calm-2'), range(1, lastCalm), 'the calm node on the main thread: each frame once, in order');
    assert.equal(calm.c.closed, false);
    assert.equal((await httpGet(e.httpAddress!.port, '/healthz')).status, 200);
    const m = await assertAccounting(e);
    assert.equal(m.get('radar_ingest_connections_open'), 2, 'the calm node and the victim\'s last connection');
    assert.equal(m.get('radar_ingest_shard_restarts_total'), 4);
  });
});
