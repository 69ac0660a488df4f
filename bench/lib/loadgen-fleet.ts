// The load generator's `fleet` mode: many nodes (fleet-0..N-1), one connection each,
// line frames with a fixed number of detections, each frame stamped (timestamp and
// send-time marker) at its write. Paced: node i's frames offset by i/N of the period
// and a heartbeat per node now and then (late frames skipped and counted); or
// flooding batches as fast as the engine takes them.
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { GenChild, childChannel } from './ipc.js';
import { FrameTemplate, TS0, heartbeatLine } from './frames.js';

/** `nodes` connections (node ids `prefix`0.., default "fleet-"), `detections` per frame (fixed), a hard bound on the child's life. */
export interface FleetClientOptions { host: string; port: number; nodes: number; token: string; detections: number; prefix?: string; maxSeconds: number }
/** Paced: frames per second per node, a heartbeat per node every `heartbeatMs` (0: none). */
export interface PaceSpec { fps: number; heartbeatMs: number }
/** Flooding: bytes per write (whole frames, at least one), writes in flight per connection. */
export interface FloodSpec { chunkBytes: number; depth: number }

/**
 * The generator's counters: frames and heartbeats written, bytes, CPU (µs), ELU active
 * ms, its clock (epoch ms); paced: frames skipped more than 200 ms late or with 1 MiB
 * queued (the engine did not read), the lateness of writes (max, how many over 1 / 5 ms),
 * writes made and timer callbacks run.
 */
export interface FleetSample {
  sent: number; heartbeats: number; bytes: number; cpuUs: number; eluActiveMs: number; childAt: number;
  paceSkipped: number; backpressureSkipped: number; lateMaxMs: number; late1ms: number; late5ms: number; writes: number; ticks: number;
}

/** The totals at the stop: errors, connections the host closed early, frames sent per node (min, max). */
export interface FleetResult extends FleetSample { errors: string[]; closedEarly: number; framesPerNodeMin: number; framesPerNodeMax: number }

type ToChild =
  | { t: 'init'; opts: FleetClientOptions }
  | { t: 'go'; pace: PaceSpec }
  | { t: 'flood'; flood: FloodSpec }
  | { t: 'pause' | 'stop' }
  | { t: 'mark'; id: number };
type FromChild =
  | { t: 'ready' | 'paused' }
  | { t: 'fail'; error: string }
  | { t: 'mark'; id: number; s: FleetSample }
  | { t: 'done'; r: FleetResult };

/** The fleet mode of the load generator (parent side): paced (`go`) or flooding, `pause`, `mark`, `stop`. */
export class FleetClient extends GenChild<ToChild, FromChild, FleetSample> {
  /** Forks the generator; resolves once every node is connected and its first frame was written. */
  static start(opts: FleetClientOptions, timeoutMs = 120000): Promise<FleetClient> {
    return new FleetClient('fleet').init({ t: 'init', opts }, timeoutMs);
  }

  go(pace: PaceSpec): void {
    this.send({ t: 'go', pace });
  }

  flood(flood: FloodSpec): void {
    this.send({ t: 'flood', flood });
  }

  stop(timeoutMs = 30000): Promise<FleetResult> {
    return this.finish({ t: 'stop' }, timeoutMs);
  }
}

// ---- Child side ----

/** A node: `seq` is its next frame number (the prime is frame 0); flood: the batch buffers not in flight, and the frames per batch. */
interface Node { id: string; socket: Socket; tpl: FrameTemplate; hb: Buffer; seq: number; inflight: number; closed: boolean; free: Buffer[]; batchFrames: number }

const PACE_MAX_QUEUED = 1 << 20;
const PACE_MAX_LATE_MS = 200;

export function fleetChild(): void {
  const ch = childChannel<FromChild>('fleet generator');
  const nodes: Node[] = [];
  const errors = ch.errors;
  const cnt = { sent: 0, heartbeats: 0, bytes: 0, writes: 0, ticks: 0, paceSkipped: 0, backpressureSkipped: 0, lateMaxMs: 0, late1ms: 0, late5ms: 0 };
  let closedEarly = 0;
  let stopping = false;
  /** Bumped on every mode change: stale timers and write callbacks of the old mode stop. */
  let gen = 0;
  let mode: 'idle' | 'paced' | 'flood' = 'idle';
  let flood: FloodSpec | null = null;
  let idleWaiters: Array<() => void> = [];
  const send = ch.send;
  const note = ch.note;
  const sample = (): FleetSample => ({
    ...cnt, cpuUs: ch.cpuUs(), eluActiveMs: ch.eluActiveMs(), childAt: performance.timeOrigin + performance.now(), lateMaxMs: Math.round(cnt.lateMaxMs * 1000) / 1000,
  });

  function settled(): void {
    if (idleWaiters.length > 0 && nodes.every((n) => n.inflight === 0)) {
      const ws = idleWaiters;
      idleWaiters = [];
      for (const w of ws) w();
    }
  }

  function whenIdle(): Promise<void> {
    if (nodes.every((n) => n.inflight === 0)) return Promise.resolve();
    return new Promise((resolve) => idleWaiters.push(resolve));
  }

  /** One write of `frames` frames (or a heartbeat when frames is 0); `owner` goes back to the free list after. */
  function write(n: Node, buf: Buffer, frames: number, owner: Buffer | null): void {
    n.inflight++;
    cnt.writes++;
    const g = gen;
    n.socket.write(buf, (err) => {
      n.inflight--;
      if (owner) n.free.push(owner);
      if (err) {
        note(`write ${n.id}: ${err.message}`);
      } else {
        cnt.bytes += buf.length;
        if (frames > 0) cnt.sent += frames;
        else cnt.heartbeats++;
      }
      if (mode === 'flood' && g === gen && !stopping) pump(n);
      settled();
      if (stopping) maybeDone();
    });
  }

  function writeFrame(n: Node): void {
    const len = n.tpl.line.length;
    const buf = Buffer.allocUnsafe(len);
    n.tpl.line.copy(buf, 0);
    n.tpl.patch(buf, 0, n.seq++, Number(process.hrtime.bigint()));
    write(n, buf, 1, null);
  }

  // ---- paced ----

  function startPaced(p: PaceSpec): void {
    const g = ++gen;
    mode = 'paced';
    const N = nodes.length;
    const stepF = 1000 / p.fps / N;
    const stepH = p.heartbeatMs > 0 ? p.heartbeatMs / N : Infinity;
    const t0 = performance.now() + 1;
    const offH = stepF / 2;
    let k = 0;
    let h = 0;
    const tick = (): void => {
      if (g !== gen || stopping) return;
      cnt.ticks++;
      const now = performance.now();
      for (let due = t0 + k * stepF; due <= now; due = t0 + k * stepF) {
        const n = nodes[k % N]!;
        k++;
        const late = now - due;
        if (late > PACE_MAX_LATE_MS) {
          cnt.paceSkipped++;
          n.seq++;
          continue;
        }
        if (n.closed) continue;
        if (n.socket.writableLength > PACE_MAX_QUEUED) {
          cnt.backpressureSkipped++;
          continue;
        }
        if (late > cnt.lateMaxMs) cnt.lateMaxMs = late;
        if (late > 1) cnt.late1ms++;
        if (late > 5) cnt.late5ms++;
        writeFrame(n);
      }
      for (let due = t0 + offH + h * stepH; due <= now; due = t0 + offH + h * stepH) {
        const n = nodes[h % N]!;
        h++;
        if (n.closed || now - due > PACE_MAX_LATE_MS || n.socket.writableLength > PACE_MAX_QUEUED) continue;
        write(n, n.hb, 0, null);
      }
      const next = Math.min(t0 + k * stepF, t0 + offH + h * stepH);
      setTimeout(tick, Math.max(0, next - performance.now()));
    };
    setTimeout(tick, 1);
  }

  // ---- unpaced ----

  function startFlood(f: FloodSpec): void {
    ++gen;
    mode = 'flood';
    flood = f;
    for (const n of nodes) {
      const per = Math.max(1, Math.floor(f.chunkBytes / n.tpl.line.length));
      if (per !== n.batchFrames) {
        n.batchFrames = per;
        n.free = [];
        for (let d = 0; d <= f.depth; d++) {
          const b = Buffer.allocUnsafe(per * n.tpl.line.length);
          for (let j = 0; j < per; j++) n.tpl.line.copy(b, j * n.tpl.line.length);
          n.free.push(b);
        }
      }
    }
    for (const n of nodes) pump(n);
  }

  function pump(n: Node): void {
    const f = flood!;
    while (mode === 'flood' && !stopping && !n.closed && n.inflight < f.depth) {
      const b = n.free.pop();
      if (!b) return;
      const L = n.tpl.line.length;
      const tNs = Number(process.hrtime.bigint());
      for (let j = 0; j < n.batchFrames; j++) n.tpl.patch(b, j * L, n.seq++, j === 0 ? tNs : 0);
      write(n, b, n.batchFrames, b);
    }
  }

  // ---- stop ----

  let doneSent = false;
  function maybeDone(): void {
    if (doneSent || !stopping) return;
    for (const n of nodes) if (n.inflight > 0) return;
    doneSent = true;
    ch.closeAndReport(nodes, () => {
      const seqs = nodes.map((n) => n.seq);
      return { t: 'done', r: { ...sample(), errors, closedEarly, framesPerNodeMin: Math.min(...seqs), framesPerNodeMax: Math.max(...seqs) } };
    });
  }

  // ---- init ----

  async function init(o: FleetClientOptions): Promise<void> {
    ch.deadline(o.maxSeconds);
    const prefix = o.prefix ?? 'fleet-';
    // Self-check: a patched frame parses to what we meant.
    const tpl = new FrameTemplate('x-1', o.token, o.detections, 3);
    const b = Buffer.from(tpl.line);
    tpl.patch(b, 0, 42, 123456789);
    const m = JSON.parse(b.toString()) as { timestamp: number; t: string; delay: number[] };
    if (m.timestamp !== TS0 + 42 * 500 || m.t !== '0000000000123456789' || m.delay.length !== o.detections) {
      throw new Error('frame patching self-check failed');
    }
    const connectOne = (i: number): Promise<void> => new Promise((resolve, reject) => {
      const id = `${prefix}${i}`;
      const socket = connect({ host: o.host, port: o.port, noDelay: true });
      const n: Node = {
        id, socket, tpl: new FrameTemplate(id, o.token, o.detections, i), hb: heartbeatLine(id, o.token),
        seq: 0, inflight: 0, closed: false, free: [], batchFrames: 0,
      };
      nodes[i] = n;
      socket.on('error', (err) => note(`${id}: ${err.message}`));
      socket.on('data', () => undefined); // the line protocol has no replies
      socket.on('close', () => {
        n.closed = true;
        if (!stopping) closedEarly++;
        maybeDone();
      });
      socket.once('connect', () => {
        // The prime: the node's first frame (the engine provisions its tracker on it).
        writeFrame(n);
        resolve();
      });
      socket.once('close', () => reject(new Error(`${id}: closed before it was ready (${errors.join('; ') || 'no error message'})`)));
    });
    const CONCURRENT = 64;
    for (let i = 0; i < o.nodes; i += CONCURRENT) {
      const batch: Promise<void>[] = [];
      for (let j = i; j < Math.min(o.nodes, i + CONCURRENT); j++) batch.push(connectOne(j));
      await Promise.all(batch);
    }
    await whenIdle();
  }

  process.on('message', (m: ToChild) => {
    switch (m.t) {
      case 'init':
        ch.answerInit(init(m.opts));
        break;
      case 'go':
        startPaced(m.pace);
        break;
      case 'flood':
        startFlood(m.flood);
        break;
      case 'pause':
        ++gen;
        mode = 'idle';
        void whenIdle().then(() => send({ t: 'paused' }));
        break;
      case 'mark':
        send({ t: 'mark', id: m.id, s: sample() });
        break;
      case 'stop':
        ++gen;
        mode = 'idle';
        stopping = true;
        maybeDone();
        break;
    }
  });
}
