// Hosts the shards: N piscina threads each running one long-lived shard task, or
// (shards: 0) one shard on the main thread, or (shards: auto) both: workers plus a
// main-thread shard where slow connections are decoded (see ingress/placement.ts). A crashed shard thread is replaced and
// its slot's counters carry on (they live in the slot's SharedArrayBuffer).
import { MessageChannel, type MessagePort, type TransferListItem } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { Shard } from './shard.js';
import { COUNTER_BYTES } from '../telemetry/counters.js';
import { M_CONFIG, M_DATA, M_DATA_BATCH, M_SHUTDOWN, S_READY, type MainToShard, type ShardToMain, type ShardSettings, type ShardReload } from '../protocol/thread-messages.js';
import type { ShardTaskInput } from './shard-worker.js';
import { defaultShards } from '../config.js';

export interface ShardPoolOptions extends ShardSettings {
  /** Workers, 0 (main thread only), or "auto" (workers and a main-thread shard). */
  shards: number | 'auto';
  testHooks: boolean;
  onMessage: (shard: number, msg: ShardToMain) => void;
  /** A shard died: every connection it owned is gone. It is being replaced. */
  onCrash: (shard: number, err: Error) => void;
}

interface Slot {
  id: number;
  counters: Float64Array;
  countersSab: SharedArrayBuffer;
  port: MessagePort | null;
  inline: Shard | null;
  ready: boolean;
  /** Its thread was launched (with `shards: auto` the workers start when a connection first needs one). */
  started: boolean;
  restarts: number;
  generation: number;
  /** Reads queued for this shard during the current event-loop turn (sent as one message). */
  data: { conns: number[]; bufs: Uint8Array[]; transfer: TransferListItem[]; bytes: number } | null;
}

/**
 * Bytes of reads batched into one message before it is sent. A shard publishes
 * rings, acks and credits after each message, so an unbounded batch (1,000 nodes
 * pushing: hundreds of MB in one turn) would hold every frame back for seconds.
 */
const MAX_BATCH_BYTES = 256 * 1024;

export class ShardPool {
  readonly slots: Slot[] = [];
  private pool: Piscina | null = null;
  private stopping = false;
  private readonly opts: ShardPoolOptions;

  /** Worker threads (0 with `shards: 0`). */
  readonly workers: number;
  /** Index of the main-thread shard (-1: none). It is the last slot. */
  readonly inlineShard: number;

  constructor(opts: ShardPoolOptions) {
    this.opts = opts;
    this.workers = opts.shards === 'auto' ? defaultShards() : opts.shards;
    const n = this.workers + (opts.shards === 'auto' || opts.shards === 0 ? 1 : 0);
    this.inlineShard = n > this.workers ? n - 1 : -1;
    for (let i = 0; i < n; i++) {
      const sab = new SharedArrayBuffer(COUNTER_BYTES);
      this.slots.push({ id: i, counters: new Float64Array(sab), countersSab: sab, port: null, inline: null, ready: false, started: false, restarts: 0, generation: 0, data: null });
    }
  }

  /** Every connection is decoded on the main thread (`shards: 0`). */
  get inline(): boolean {
    return this.workers === 0;
  }
  /** Connections start on the main-thread shard and move by their rate (`shards: auto`). */
  get adaptive(): boolean {
    return this.opts.shards === 'auto';
  }
  isInline(shard: number): boolean {
    return shard === this.inlineShard;
  }
  get size(): number {
    return this.slots.length;
  }

  /** Resolves when every shard reported ready. */
  async start(): Promise<void> {
    if (this.inlineShard >= 0) {
      const slot = this.slots[this.inlineShard]!;
      slot.inline = new Shard({
        shardId: slot.id,
        counters: slot.counters,
        token: this.opts.token,
        tokens: this.opts.tokens,
        limits: this.opts.limits,
        overflow: this.opts.overflow,
        ack: this.opts.ack,
        testHooks: false,
        // Deliver asynchronously, like a port would, so the two sides never re-enter.
        post: (msg) => queueMicrotask(() => this.opts.onMessage(slot.id, msg)),
      });
      slot.ready = true;
      slot.started = true;
      // Adaptive: an idle worker thread still costs CPU (V8's memory reducer keeps
      // collecting its heap), and a fleet of slow nodes never needs one.
      if (this.workers === 0 || this.adaptive) return;
    }
    await this.startWorkers();
  }

  /**
   * Launches the worker threads (once); resolves when they reported ready. With
   * `shards: auto` the handoff calls it when a connection first wants a worker.
   */
  startWorkers(): Promise<void> {
    if (this.workersStarted) return this.workersStarted;
    if (this.stopping || this.workers === 0) return Promise.resolve();
    this.pool = new Piscina({
      filename: new URL('./shard-worker.js', import.meta.url).href,
      minThreads: this.workers,
      maxThreads: this.workers,
      idleTimeout: Infinity,
      concurrentTasksPerWorker: 1,
      // A socket-owning worker must never block in Atomics.wait.
      atomics: 'disabled',
      maxQueue: 'auto',
    });
    this.workersStarted = Promise.all(this.slots.slice(0, this.workers).map((s) => this.launch(s))).then(() => undefined);
    return this.workersStarted;
  }
  private workersStarted: Promise<void> | null = null;

  /** Shards that were started and are not running now (a crashed worker being replaced). */
  shardsDown(): number[] {
    return this.slots.filter((s) => s.started && !s.ready).map((s) => s.id);
  }

  private launch(slot: Slot): Promise<void> {
    const { port1, port2 } = new MessageChannel();
    slot.port = port1;
    slot.ready = false;
    slot.started = true;
    const gen = ++slot.generation;
    let readyResolve!: () => void;
    const ready = new Promise<void>((r) => (readyResolve = r));
    port1.on('message', (msg: ShardToMain) => {
      if (msg.t === S_READY) {
        slot.ready = true;
        readyResolve();
        return;
      }
      this.opts.onMessage(slot.id, msg);
    });
    const input: ShardTaskInput = {
      port: port2,
      shardId: slot.id,
      counters: slot.countersSab,
      token: this.opts.token,
      tokens: this.opts.tokens,
      limits: this.opts.limits,
      overflow: this.opts.overflow,
      ack: this.opts.ack,
      testHooks: this.opts.testHooks,
    };
    this.pool!.run(input, { transferList: [port2] as unknown as TransferListItem[] }).then(
      () => undefined,
      (err: Error) => {
        if (slot.generation !== gen) return;
        slot.ready = false;
        port1.close();
        slot.port = null;
        slot.data = null; // reads for the dead shard's connections
        if (this.stopping) return;
        slot.restarts++;
        this.opts.onCrash(slot.id, err);
        readyResolve();
        void this.launch(slot);
      },
    );
    return ready;
  }

  /** Reloaded settings: live shards get them now, replacements at their start. */
  reconfigure(c: ShardReload): void {
    this.opts.token = c.token;
    this.opts.tokens = c.tokens;
    this.opts.limits = c.limits;
    for (let i = 0; i < this.slots.length; i++) this.send(i, { t: M_CONFIG, ...c });
  }

  send(shard: number, msg: MainToShard, transfer?: TransferListItem[]): boolean {
    const slot = this.slots[shard]!;
    if (slot.inline) {
      const s = slot.inline;
      queueMicrotask(() => s.handle(msg));
      return true;
    }
    if (!slot.port || !slot.ready) return false;
    // Reads queued earlier go first: a shard sees every message in the order it was sent.
    if (slot.data) this.flushData(slot);
    slot.port.postMessage(msg, transfer);
    return true;
  }

  /**
   * One socket read for a connection. Reads are queued per shard and sent as one
   * message per event-loop turn (setImmediate), so many nodes writing small chunks
   * cost one postMessage per shard per turn instead of one per read.
   */
  sendData(shard: number, conn: number, buf: Uint8Array, transfer?: ArrayBuffer): boolean {
    const slot = this.slots[shard]!;
    if (slot.inline) return this.send(shard, { t: M_DATA, conn, buf });
    if (!slot.port || !slot.ready) return false;
    let q = slot.data;
    if (!q) {
      q = slot.data = { conns: [], bufs: [], transfer: [], bytes: 0 };
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => {
          this.flushScheduled = false;
          for (const s of this.slots) if (s.data) this.flushData(s);
        });
      }
    }
    q.conns.push(conn);
    q.bufs.push(buf);
    if (transfer) q.transfer.push(transfer as unknown as TransferListItem);
    q.bytes += buf.byteLength;
    if (q.bytes >= MAX_BATCH_BYTES) this.flushData(slot);
    return true;
  }
  private flushScheduled = false;

  private flushData(slot: Slot): void {
    const q = slot.data!;
    slot.data = null;
    if (!slot.port) return;
    if (q.conns.length === 1) slot.port.postMessage({ t: M_DATA, conn: q.conns[0]!, buf: q.bufs[0]! } satisfies MainToShard, q.transfer);
    else slot.port.postMessage({ t: M_DATA_BATCH, conns: q.conns, bufs: q.bufs } satisfies MainToShard, q.transfer);
  }

  isReady(shard: number): boolean {
    return this.slots[shard]!.ready;
  }

  /** Every thread's worker object (for event-loop utilisation in benchmarks). */
  get threads(): readonly import('node:worker_threads').Worker[] {
    return this.pool ? this.pool.threads : [];
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const s of this.slots) {
      if (s.port) s.port.postMessage({ t: M_SHUTDOWN } satisfies MainToShard);
    }
    if (this.pool) {
      const p = this.pool;
      this.pool = null;
      await p.destroy();
    }
  }
}
