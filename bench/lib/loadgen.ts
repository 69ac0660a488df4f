// The load generator: a forked process (never the engine's event loop), one program
// with modes (`--loadgen-child <mode>`: fleet, idle, hostile in their own files). This
// file is the `push` mode: N connections push pre-encoded frames as fast as the engine
// takes them, or paced at a rate (open loop: frames owed too long are skipped, counted).
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { encodeHello, decodeBody, T_WELCOME, T_ACK, T_ERROR } from './engine-api.js';
import { GenChild, childChannel } from './ipc.js';
import { BinaryBatch, LineBatch, MessageReader, TS0 } from './frames.js';

export type BenchProtocol = 'line' | 'binary';

export interface LoadgenOptions {
  host: string;
  port: number;
  protocol: BenchProtocol;
  /** Connections, one node each (bench-<i>). */
  connections: number;
  token: string;
  /** Binary: detections per frame (default 50). Line frames cycle through 1..5. */
  detections?: number;
  /** Hard bound on the child's life, in seconds (it exits by itself after it). */
  maxSeconds: number;
  /**
   * Line only: increasing timestamps and a send-time marker per write (LineBatch),
   * for sinks that skip repeated timestamps (trackers). Default false: the same
   * chunk is written over and over (cheapest for the generator).
   */
  stamped?: boolean;
  /** Nice value of the generator process (default 0). */
  nice?: number;
}

/** Bytes per write (whole frames: about this) and writes in flight per connection. */
const CHUNK_BYTES = 256 * 1024;
const DEPTH = 2;

/** Paced push: `fps` frames/s in total, each connection writing every `tickMs`. */
export interface PaceOptions {
  fps: number;
  tickMs?: number;
  /**
   * Spread the connections' writes over the period (connection i writes at
   * t0 + i/N x tickMs + k x tickMs), as independent nodes would, instead of all
   * of them in the same instant (default false: every connection at each tick).
   */
  stagger?: boolean;
}

/**
 * Frames a connection sending `perConnFps` owes `sinceMs` after its phase, when it
 * writes once every `periodMs`: everything up to its latest period boundary.
 */
export function staggeredDue(perConnFps: number, periodMs: number, sinceMs: number): number {
  if (sinceMs < 0) return 0;
  const boundary = (Math.floor(sinceMs / periodMs) + 1) * periodMs;
  return Math.floor((perConnFps * boundary) / 1000);
}

/** Counters of the generator: frames written (handed to the kernel), its CPU (µs) and event-loop active time (ms), its clock (epoch ms); paced: frames skipped behind the schedule, ticks, the longest gap between ticks. */
export interface LoadgenSample {
  sent: number; detections: number; bytes: number; cpuUs: number; eluActiveMs: number; childAt: number;
  paceSkipped: number; paceTicks: number; paceMaxGapMs: number;
}

/** The totals at the stop; binary: per connection the last sequence number sent and acked; host or socket errors; connections the host closed early. */
export interface LoadgenResult extends LoadgenSample { lastSeqSent: number[]; lastAck: number[]; errors: string[]; closedEarly: number }

type ToChild =
  | { t: 'init'; opts: LoadgenOptions }
  | { t: 'go'; pace?: PaceOptions }
  | { t: 'prime' | 'pause' | 'stop' }
  | { t: 'mark'; id: number };
type FromChild =
  | { t: 'ready' | 'primed' | 'paused' }
  | { t: 'fail'; error: string }
  | { t: 'mark'; id: number; s: LoadgenSample }
  | { t: 'done'; r: LoadgenResult };

const SELF = fileURLToPath(import.meta.url);

/** The push mode (parent side). */
export class Loadgen extends GenChild<ToChild, FromChild, LoadgenSample> {
  /** Forks the generator; resolves once every connection is ready to push. */
  static start(opts: LoadgenOptions): Promise<Loadgen> {
    return new Loadgen('push', { nice: opts.nice ?? 0 }).init({ t: 'init', opts }, 30000);
  }

  /** Starts pushing: as fast as possible, or paced at `pace.fps` (switches a running push). */
  go(pace?: PaceOptions): void {
    this.send({ t: 'go', pace });
  }

  /** Stamped line: one frame per connection; resolves when every write completed. */
  async prime(): Promise<void> {
    await this.request({ t: 'prime' }, 'primed', 10000);
  }

  /** Stops pushing, lets in-flight writes finish, closes the connections; returns the totals. */
  stop(timeoutMs = 20000): Promise<LoadgenResult> {
    return this.finish({ t: 'stop' }, timeoutMs);
  }
}

// ---- Child side ----

/**
 * A connection: writes in flight; binary and stamped line, the buffers not in flight
 * (ready to be patched); line, the node's frames (and the copies made); paced, the
 * frames scheduled (written or skipped) since the pace started.
 */
interface Conn {
  socket: Socket; node: string; inflight: number; free: Buffer[]; lb: LineBatch | null; copies: number; issued: number;
  nextSeq: number; lastSeqSent: number; lastAck: number; welcome: ((lastSeq: number) => void) | null; closed: boolean;
}

function childMain(): void {
  const ch = childChannel<FromChild>('load generator');
  const conns: Conn[] = [];
  const errors = ch.errors;
  let running = false;
  let stopping = false;
  const cnt = { sent: 0, detections: 0, bytes: 0, paceSkipped: 0, paceTicks: 0, paceMaxGapMs: 0 };
  let closedEarly = 0;
  let batch: BinaryBatch | null = null;
  let stamped = false;
  /** Paced push in progress (null: unpaced or idle). */
  let pace: { fps: number; tickMs: number; stagger: boolean; t0: number; gen: number } | null = null;
  let paceGen = 0;
  let lastTickAt = 0;
  /** Resolvers of prime/pause: called once no write is in flight. */
  let idleWaiters: Array<() => void> = [];
  const send = ch.send;
  const note = ch.note;
  const sample = (): LoadgenSample => ({ ...cnt, cpuUs: ch.cpuUs(), eluActiveMs: ch.eluActiveMs(), childAt: performance.timeOrigin + performance.now() });

  /** Stamped line: a buffer to patch (a new copy when all are in flight, up to 16 per connection). */
  function freeBuffer(c: Conn): Buffer | null {
    const b = c.free.pop();
    if (b) return b;
    if (c.copies >= 16) return null;
    c.copies++;
    return c.lb!.copy();
  }

  /** One write; `owner` (a patched buffer) goes back to the connection's free list when it completes. */
  let chained = 0;
  function write(c: Conn, i: number, buf: Buffer, frames: number, dets: number, owner: Buffer | null): void {
    c.inflight++;
    c.socket.write(buf, (err) => {
      c.inflight--;
      if (owner) c.free.push(owner);
      if (err) {
        note(`write ${c.node}: ${err.message}`);
      } else {
        cnt.sent += frames;
        cnt.detections += dets;
        cnt.bytes += buf.length;
      }
      if (stopping) maybeDone();
      else if (running) {
        // Against a server that drains at once (the raw ceiling), every write completes
        // synchronously and its callback comes by nextTick: pumping from it forever would
        // starve the event loop (and the parent's IPC requests). Yield now and then.
        if (++chained % 64 === 0) setImmediate(() => pump(c, i));
        else pump(c, i);
      }
      if (idleWaiters.length > 0 && conns.every((x) => x.inflight === 0)) {
        const ws = idleWaiters;
        idleWaiters = [];
        for (const w of ws) w();
      }
    });
  }

  /** Stamped line: patches and writes the first k frames of a free buffer; false if none is free. */
  function writeStamped(c: Conn, i: number, k: number, tNs: number): boolean {
    const lb = c.lb!;
    const b = freeBuffer(c);
    if (!b) return false;
    const len = lb.patch(b, c.nextSeq, k, tNs);
    c.nextSeq += k;
    write(c, i, len === b.length ? b : b.subarray(0, len), k, lb.detUpTo[k]!, b);
    return true;
  }

  function pump(c: Conn, i: number): void {
    const depth = DEPTH;
    while (running && !c.closed && c.inflight < depth) {
      if (stamped) {
        if (!writeStamped(c, i, c.lb!.frames, Number(process.hrtime.bigint()))) return;
        continue;
      }
      if (batch) {
        const b = c.free.pop();
        if (!b) return;
        batch.patch(b, c.nextSeq);
        c.nextSeq += batch.frames;
        c.lastSeqSent = c.nextSeq - 1;
        write(c, i, b, batch.frames, batch.frames * batch.detections, b);
      } else {
        const lb = c.lb!; // unstamped line: the same frames, written as they are
        write(c, i, lb.template, lb.frames, lb.detUpTo[lb.frames]!, null);
      }
    }
  }

  /** Bytes a connection may have queued in this process before the pacer skips it. */
  const PACE_MAX_QUEUED = 4 << 20;

  /** Paced: every connection writes what it owes for the schedule (stamped line only). */
  function tick(gen: number): void {
    const p = pace;
    if (!p || p.gen !== gen || stopping) return;
    const now = performance.now();
    cnt.paceTicks++;
    if (lastTickAt > 0) cnt.paceMaxGapMs = Math.max(cnt.paceMaxGapMs, now - lastTickAt);
    lastTickAt = now;
    const perConn = p.fps / conns.length;
    const elapsed = now - p.t0;
    const due = Math.floor((perConn * elapsed) / 1000);
    const maxOwed = Math.max(1, Math.ceil(perConn * 0.1));
    for (let i = 0; i < conns.length; i++) {
      const c = conns[i]!;
      if (c.closed) continue;
      // Staggered: what the connection owes as of its own last period boundary.
      const dueHere = p.stagger ? staggeredDue(perConn, p.tickMs, elapsed - (i * p.tickMs) / conns.length) : due;
      let owed = dueHere - c.issued;
      if (owed > maxOwed) {
        cnt.paceSkipped += owed - maxOwed;
        c.issued += owed - maxOwed;
        owed = maxOwed;
      }
      while (owed > 0 && c.socket.writableLength < PACE_MAX_QUEUED) {
        const k = Math.min(owed, c.lb!.frames);
        // Stamped at this write, not once per tick: the tick's later writes happen
        // up to milliseconds after its first (each loopback write runs the
        // receiver's TCP path here), and that is the generator's time, not the engine's.
        if (!writeStamped(c, i, k, Number(process.hrtime.bigint()))) break;
        c.issued += k;
        owed -= k;
      }
    }
    // Staggered: run every millisecond (the timer's resolution), so each connection
    // writes close to its own phase.
    setTimeout(() => tick(gen), p.stagger ? Math.min(1, p.tickMs) : p.tickMs);
  }

  function whenIdle(): Promise<void> {
    if (conns.every((c) => c.inflight === 0)) return Promise.resolve();
    return new Promise((resolve) => idleWaiters.push(resolve));
  }

  function onMessage(c: Conn, m: Record<string, unknown>): void {
    if (m.t === T_ACK && typeof m.seq === 'number') {
      if (m.seq > c.lastAck) c.lastAck = m.seq;
    } else if (m.t === T_WELCOME && c.welcome) {
      const w = c.welcome;
      c.welcome = null;
      w(typeof m.last_seq === 'number' ? m.last_seq : 0);
    } else if (m.t === T_ERROR) {
      note(`${c.node}: host error ${String(m.code)}: ${String(m.message)}`);
    }
  }

  let doneSent = false;
  function maybeDone(): void {
    if (doneSent || !stopping) return;
    for (const c of conns) if (c.inflight > 0) return;
    doneSent = true;
    // Everything is handed to the kernel. Binary: wait (bounded) for the acks of the
    // last frames. Then half-close, wait until the host has read it all and closed
    // its side (bounded), and report.
    void waitAcks(5000).then(finish);
  }

  function waitAcks(ms: number): Promise<void> {
    const end = Date.now() + ms;
    return new Promise((resolve) => {
      const check = (): void => {
        if (!batch || Date.now() > end || conns.every((c) => c.closed || c.lastAck >= c.lastSeqSent)) return resolve();
        setTimeout(check, 5);
      };
      check();
    });
  }

  function finish(): void {
    ch.closeAndReport(conns, () => ({
      t: 'done', r: { ...sample(), lastSeqSent: conns.map((c) => c.lastSeqSent), lastAck: conns.map((c) => c.lastAck), errors, closedEarly },
    }));
  }

  async function init(o: LoadgenOptions): Promise<void> {
    ch.deadline(o.maxSeconds);
    const chunkBytes = CHUNK_BYTES;
    const depth = DEPTH;
    stamped = o.protocol === 'line' && o.stamped === true;
    if (stamped) {
      // Self-check: a patched buffer holds whole frames with the timestamps and marker meant.
      const lb = new LineBatch('bench-x', o.token, 4096);
      const t = lb.copy();
      const len = lb.patch(t, 42, 3, 123456789);
      const got = t.toString('utf8', 0, len).trim().split('\n').map((l) => JSON.parse(l) as { timestamp: number; t?: string });
      if (got.length !== 3 || got[0]!.timestamp !== TS0 + 42 || got[2]!.timestamp !== TS0 + 44 || got[0]!.t !== '0000000000123456789' || got[1]!.t !== undefined) {
        throw new Error('line frame patching self-check failed');
      }
    } else if (o.protocol === 'binary') {
      batch = new BinaryBatch(o.detections ?? 50, chunkBytes);
      // Self-check: a patched frame decodes to what we meant.
      const t = batch.copy();
      batch.patch(t, 123456);
      const m = decodeBody(t, 4, batch.frameLen) as { seq: number; ts: number; det: Uint8Array };
      if (m.seq !== 123456 || m.ts !== TS0 + 123456 * 500 || m.det.length !== 24 * batch.detections) {
        throw new Error('binary frame patching self-check failed');
      }
    }
    const ready = [];
    for (let i = 0; i < o.connections; i++) {
      const node = `bench-${i}`;
      const socket = connect({ host: o.host, port: o.port, noDelay: true });
      const c: Conn = {
        socket, node, inflight: 0, free: [], lb: batch ? null : new LineBatch(node, o.token, chunkBytes), copies: 0, issued: 0,
        nextSeq: 1, lastSeqSent: 0, lastAck: 0, welcome: null, closed: false,
      };
      if (batch) for (let k = 0; k <= depth; k++) c.free.push(batch.copy());
      if (stamped) for (; c.copies <= depth; c.copies++) c.free.push(c.lb!.copy());
      conns.push(c);
      socket.on('error', (err) => note(`${node}: ${err.message}`));
      socket.on('close', () => {
        c.closed = true;
        if (!stopping) closedEarly++;
        maybeDone();
      });
      ready.push(new Promise<void>((resolve, reject) => {
        socket.once('connect', () => {
          if (!batch) {
            socket.on('data', () => undefined); // line protocol: the host says nothing
            return resolve();
          }
          c.welcome = (lastSeq) => {
            // Fixed-width uint32 sequence numbers (see BinaryBatch); gaps are allowed.
            c.nextSeq = Math.max(lastSeq + 1, 0x10000);
            resolve();
          };
          const rd = new MessageReader();
          socket.on('data', (d: Buffer) => rd.push(d, (m) => onMessage(c, m)));
          socket.write(encodeHello(node, o.token));
        });
        socket.once('close', () => reject(new Error(`${node}: closed before it was ready (${errors.join('; ') || 'no error message'})`)));
      }));
    }
    await Promise.all(ready);
  }

  process.on('message', (m: ToChild) => {
    switch (m.t) {
      case 'init':
        ch.answerInit(init(m.opts));
        break;
      case 'go':
        if (m.pace) {
          if (!stamped) {
            send({ t: 'fail', error: 'paced push needs stamped line frames' });
            break;
          }
          running = false;
          const gen = ++paceGen;
          pace = { fps: m.pace.fps, tickMs: m.pace.tickMs ?? 1, stagger: m.pace.stagger ?? false, t0: performance.now(), gen };
          lastTickAt = 0;
          for (const c of conns) c.issued = 0;
          tick(gen);
        } else {
          pace = null;
          running = true;
          conns.forEach((c, i) => pump(c, i));
        }
        break;
      case 'prime':
        if (!stamped) {
          send({ t: 'fail', error: 'prime needs stamped line frames' });
          break;
        }
        conns.forEach((c, i) => writeStamped(c, i, 1, Number(process.hrtime.bigint())));
        void whenIdle().then(() => send({ t: 'primed' }));
        break;
      case 'pause':
        running = false;
        pace = null;
        void whenIdle().then(() => send({ t: 'paused' }));
        break;
      case 'mark':
        send({ t: 'mark', id: m.id, s: sample() });
        break;
      case 'stop':
        running = false;
        pace = null;
        stopping = true;
        maybeDone();
        break;
    }
  });
}

// One program for every generator mode: `--loadgen-child <mode>` runs that mode's child.
if (process.argv[1] === SELF && process.argv[2] === '--loadgen-child') {
  const mode = process.argv[3];
  if (mode === 'push') childMain();
  else if (mode === 'fleet') void import('./loadgen-fleet.js').then((m) => m.fleetChild());
  else if (mode === 'idle') void import('./loadgen-idle.js').then((m) => m.idleChild());
  else if (mode === 'hostile') void import('./hostile-load.js').then((m) => m.hostileChild());
  else process.exit(2);
}
