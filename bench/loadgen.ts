// Load generator for the ingest benchmarks. Runs in its own process (forked from
// this compiled file), so it never shares the engine's event loop: N TCP
// connections (nodes bench-0..N-1) push pre-encoded frames as fast as the engine
// takes them, for as long as the parent says (bounded by a hard deadline).
//
//  - line:   retina JSON lines (1-5 detections a frame, cycling) with node_id and
//            token. Each connection encodes one large chunk of whole lines once and
//            writes it over and over; a new write is issued only from the previous
//            write's callback (socket back-pressure), `depth` writes in flight.
//  - binary: hello (encodeHello), wait for the welcome, then frames (encodeFrame,
//            50 detections) with increasing sequence numbers. A batch of frames is
//            encoded once from templates; before each write the sequence numbers and
//            timestamps are patched in place (fixed-width msgpack fields), into a
//            buffer that is not in flight. Acks are read and the last one is kept.
//
// Parent side: `Loadgen.start(opts)` forks the child(ren), which connect (and do
// the hello) before `start` resolves; `go()` starts the push, `mark()` samples the
// counters (frames sent so far, generator CPU), `stop()` stops pushing, waits for
// in-flight writes, ends the connections and returns the final counts.
import { fork, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { encodeFrame, encodeHello, decodeBody, T_WELCOME, T_ACK, T_ERROR } from '../src/shared/binary-protocol.js';

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
  /** Bytes per write (approximate: whole frames only). Default 256 KiB. */
  chunkBytes?: number;
  /** Writes in flight per connection. Default 2. */
  depth?: number;
  /** Generator processes sharing the connections. Default 1. */
  procs?: number;
  /** First node index (so several generators can use disjoint node ids). */
  nodeBase?: number;
  /** Hard bound on the child's life, in seconds (it exits by itself after it). */
  maxSeconds: number;
}

/** Counters of a generator at one instant. */
export interface LoadgenSample {
  /** Frames whose write completed (handed to the kernel). */
  sent: number;
  detections: number;
  bytes: number;
  /** Generator CPU time so far (user + system), microseconds, summed over processes. */
  cpuUs: number;
  /** Event-loop active time so far, ms, summed over processes. */
  eluActiveMs: number;
  /** Wall time of the sample in the parent (performance.now()). */
  at: number;
  /** Wall time of the sample in the generator (epoch ms; the latest over processes). */
  childAt: number;
}

export interface LoadgenResult extends LoadgenSample {
  /** Binary: per connection, the last sequence number sent and the last one acked. */
  lastSeqSent: number[];
  lastAck: number[];
  /** Error messages received from the host (binary) or socket errors. */
  errors: string[];
  /** Connections closed by the host before the generator stopped. */
  closedEarly: number;
}

// ---------------------------------------------------------------------------
// Frame encoders (pure; used by the child and by tests of the harness)
// ---------------------------------------------------------------------------

const TS0 = 1757400000000;

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/** One retina line-protocol frame with n detections (deterministic values from i). */
export function retinaLine(node: string, token: string, i: number, n: number): string {
  const delay: number[] = [];
  const doppler: number[] = [];
  const snr: number[] = [];
  const adsb: null[] = [];
  for (let k = 0; k < n; k++) {
    delay.push(round2(20 + ((i * 7 + k * 13) % 400) * 0.37));
    doppler.push(round2(-200 + ((i * 11 + k * 29) % 4000) * 0.1));
    snr.push(round2(6 + ((i * 3 + k * 5) % 200) * 0.09));
    adsb.push(null);
  }
  return `${JSON.stringify({ node_id: node, token, timestamp: TS0 + i * 500, delay, doppler, snr, adsb })}\n`;
}

export interface Chunk {
  buf: Buffer;
  frames: number;
  detections: number;
}

/** Whole lines, 1-5 detections cycling, until at least chunkBytes. */
export function lineChunk(node: string, token: string, chunkBytes: number): Chunk {
  const parts: string[] = [];
  let size = 0;
  let frames = 0;
  let detections = 0;
  // A multiple of 5 frames so every chunk has the same detection mix.
  while (size < chunkBytes || frames % 5 !== 0) {
    const n = 1 + (frames % 5);
    const line = retinaLine(node, token, frames, n);
    parts.push(line);
    size += Buffer.byteLength(line);
    frames++;
    detections += n;
  }
  return { buf: Buffer.from(parts.join('')), frames, detections };
}

/**
 * A batch of binary frames that can be renumbered in place: every frame has the
 * same length, its seq is a msgpack uint32 (0xce) and its ts a float64 (0xcb) or
 * uint64 (0xcf) at known offsets.
 */
export class BinaryBatch {
  readonly frameLen: number;
  readonly seqOff: number;
  readonly tsOff: number;
  readonly tsKind: number;
  readonly frames: number;
  readonly template: Buffer;

  constructor(readonly detections: number, chunkBytes: number, variants = 8) {
    const probe = binaryFrame(0x10000, TS0, detections, 0);
    this.frameLen = probe.length;
    this.seqOff = valueOffset(probe, 'seq', 0xce);
    const ts = findKey(probe, 'ts');
    this.tsKind = probe[ts]!;
    if (this.tsKind !== 0xcb && this.tsKind !== 0xcf) throw new Error(`unexpected msgpack type 0x${this.tsKind.toString(16)} for ts`);
    this.tsOff = ts + 1;
    this.frames = Math.max(1, Math.floor(chunkBytes / this.frameLen));
    this.template = Buffer.allocUnsafe(this.frames * this.frameLen);
    for (let j = 0; j < this.frames; j++) {
      const f = binaryFrame(0x10000, TS0, detections, j % variants);
      if (f.length !== this.frameLen) throw new Error('binary frame length varies between variants');
      f.copy(this.template, j * this.frameLen);
    }
  }

  /** A private copy of the template, to be patched and written. */
  copy(): Buffer {
    return Buffer.from(this.template);
  }

  /** Numbers the frames of `buf` seq0, seq0+1, ...; timestamps 500 ms apart. */
  patch(buf: Buffer, seq0: number): void {
    const L = this.frameLen;
    const cb = this.tsKind === 0xcb;
    for (let j = 0, p = 0; j < this.frames; j++, p += L) {
      const seq = seq0 + j;
      buf.writeUInt32BE(seq, p + this.seqOff);
      const ts = TS0 + seq * 500;
      if (cb) buf.writeDoubleBE(ts, p + this.tsOff);
      else buf.writeBigUInt64BE(BigInt(ts), p + this.tsOff);
    }
  }
}

function binaryFrame(seq: number, ts: number, n: number, variant: number): Buffer {
  const delay = new Float64Array(n);
  const doppler = new Float64Array(n);
  const snr = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    delay[k] = 20 + ((variant * 37 + k * 13) % 400) * 0.37;
    doppler[k] = -200 + ((variant * 53 + k * 29) % 4000) * 0.1;
    snr[k] = 6 + ((variant * 3 + k * 5) % 200) * 0.09;
  }
  return encodeFrame({ seq, timestamp: ts, delay, doppler, snr });
}

/** Offset of the msgpack type byte of the value of fixstr key `key`. */
function findKey(msg: Buffer, key: string): number {
  const k = Buffer.concat([Buffer.from([0xa0 | key.length]), Buffer.from(key)]);
  const at = msg.indexOf(k, 4);
  if (at < 0) throw new Error(`key ${key} not found in encoded frame`);
  return at + k.length;
}

function valueOffset(msg: Buffer, key: string, type: number): number {
  const at = findKey(msg, key);
  if (msg[at] !== type) throw new Error(`unexpected msgpack type 0x${msg[at]!.toString(16)} for ${key}`);
  return at + 1;
}

// ---------------------------------------------------------------------------
// Parent side
// ---------------------------------------------------------------------------

type ToChild =
  | { t: 'init'; opts: LoadgenOptions }
  | { t: 'go' }
  | { t: 'mark'; id: number }
  | { t: 'stop' };
type FromChild =
  | { t: 'ready' }
  | { t: 'fail'; error: string }
  | { t: 'mark'; id: number; s: Omit<LoadgenSample, 'at'> }
  | { t: 'done'; r: Omit<LoadgenResult, 'at'> };

const SELF = fileURLToPath(import.meta.url);

class Child {
  readonly proc: ChildProcess;
  private waiters = new Map<string, (m: FromChild) => void>();
  private failed: Error | null = null;
  readonly exited: Promise<void>;

  constructor() {
    // Profiling flags given to the benchmark are meant for the engine, not for the generator.
    const execArgv = process.execArgv.filter((a) => !a.startsWith('--cpu-prof') && !a.startsWith('--heap-prof') && !a.startsWith('--prof'));
    this.proc = fork(SELF, ['--loadgen-child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
    this.proc.on('message', (m: FromChild) => {
      const key = m.t === 'mark' ? `mark:${m.id}` : m.t === 'fail' ? '*' : m.t;
      if (m.t === 'fail') {
        this.failed = new Error(`load generator: ${m.error}`);
        for (const w of this.waiters.values()) w(m);
        this.waiters.clear();
        return;
      }
      const w = this.waiters.get(key);
      if (w) {
        this.waiters.delete(key);
        w(m);
      }
    });
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, sig) => {
      if (!this.failed && this.waiters.size > 0) this.failed = new Error(`load generator exited (code ${code}, signal ${sig})`);
      for (const w of this.waiters.values()) w({ t: 'fail', error: this.failed?.message ?? 'exited' });
      this.waiters.clear();
      resolve();
    }));
  }

  send(m: ToChild): void {
    this.proc.send(m);
  }

  request<T extends FromChild>(m: ToChild, key: string, timeoutMs: number): Promise<T> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(key);
        reject(new Error(`load generator: no '${key}' reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.set(key, (r) => {
        clearTimeout(timer);
        if (r.t === 'fail') reject(this.failed ?? new Error(r.error));
        else resolve(r as T);
      });
      if (m.t !== 'init' || this.proc.connected) this.send(m);
    });
  }
}

export class Loadgen {
  private markId = 0;
  private constructor(private readonly children: Child[], readonly opts: LoadgenOptions) {}

  /** Forks the generator process(es); resolves once every connection is ready to push. */
  static async start(opts: LoadgenOptions): Promise<Loadgen> {
    const procs = Math.max(1, Math.min(opts.procs ?? 1, opts.connections));
    const children: Child[] = [];
    let base = opts.nodeBase ?? 0;
    const per = Math.floor(opts.connections / procs);
    const rest = opts.connections % procs;
    try {
      const ready: Promise<unknown>[] = [];
      for (let i = 0; i < procs; i++) {
        const n = per + (i < rest ? 1 : 0);
        const c = new Child();
        children.push(c);
        ready.push(c.request({ t: 'init', opts: { ...opts, connections: n, nodeBase: base, procs: 1 } }, 'ready', 30000));
        base += n;
      }
      await Promise.all(ready);
    } catch (err) {
      for (const c of children) c.proc.kill();
      throw err;
    }
    return new Loadgen(children, opts);
  }

  go(): void {
    for (const c of this.children) c.send({ t: 'go' });
  }

  async mark(): Promise<LoadgenSample> {
    const id = ++this.markId;
    const all = await Promise.all(this.children.map((c) => c.request<{ t: 'mark'; id: number; s: Omit<LoadgenSample, 'at'> }>({ t: 'mark', id }, `mark:${id}`, 10000)));
    const at = performance.now();
    return all.reduce<LoadgenSample>((a, m) => ({
      sent: a.sent + m.s.sent, detections: a.detections + m.s.detections, bytes: a.bytes + m.s.bytes,
      cpuUs: a.cpuUs + m.s.cpuUs, eluActiveMs: a.eluActiveMs + m.s.eluActiveMs, at, childAt: Math.max(a.childAt, m.s.childAt),
    }), { sent: 0, detections: 0, bytes: 0, cpuUs: 0, eluActiveMs: 0, at, childAt: 0 });
  }

  /** Stops pushing, lets in-flight writes finish, closes the connections; returns the totals. */
  async stop(timeoutMs = 20000): Promise<LoadgenResult> {
    try {
      const all = await Promise.all(this.children.map((c) => c.request<{ t: 'done'; r: Omit<LoadgenResult, 'at'> }>({ t: 'stop' }, 'done', timeoutMs)));
      const at = performance.now();
      const out: LoadgenResult = { sent: 0, detections: 0, bytes: 0, cpuUs: 0, eluActiveMs: 0, at, childAt: 0, lastSeqSent: [], lastAck: [], errors: [], closedEarly: 0 };
      for (const { r } of all) {
        out.sent += r.sent;
        out.detections += r.detections;
        out.bytes += r.bytes;
        out.cpuUs += r.cpuUs;
        out.eluActiveMs += r.eluActiveMs;
        out.childAt = Math.max(out.childAt, r.childAt);
        out.lastSeqSent.push(...r.lastSeqSent);
        out.lastAck.push(...r.lastAck);
        out.errors.push(...r.errors);
        out.closedEarly += r.closedEarly;
      }
      return out;
    } finally {
      await Promise.all(this.children.map(async (c) => {
        const t = setTimeout(() => c.proc.kill('SIGKILL'), 3000);
        await c.exited;
        clearTimeout(t);
      }));
    }
  }

  /** Ends the child processes at once (error paths). */
  kill(): void {
    for (const c of this.children) c.proc.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------------------
// Child side
// ---------------------------------------------------------------------------

interface Conn {
  socket: Socket;
  node: string;
  /** Writes in flight. */
  inflight: number;
  /** Binary: buffers not in flight, ready to be patched. */
  free: Buffer[];
  nextSeq: number;
  lastSeqSent: number;
  lastAck: number;
  rx: Buffer;
  welcome: ((lastSeq: number) => void) | null;
  closed: boolean;
}

function childMain(): void {
  let opts: LoadgenOptions;
  const conns: Conn[] = [];
  const errors: string[] = [];
  let running = false;
  let stopping = false;
  let sent = 0;
  let detections = 0;
  let bytes = 0;
  let closedEarly = 0;
  let lineChunks: Chunk[] = [];
  let batch: BinaryBatch | null = null;
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const send = (m: FromChild): void => {
    process.send!(m);
  };
  const note = (e: string): void => {
    if (errors.length < 20) errors.push(e);
  };
  const sample = (): Omit<LoadgenSample, 'at'> => {
    const c = process.cpuUsage(cpu0);
    return {
      sent, detections, bytes, cpuUs: c.user + c.system, eluActiveMs: performance.eventLoopUtilization(elu0).active,
      childAt: performance.timeOrigin + performance.now(),
    };
  };

  process.on('disconnect', () => process.exit(3));

  function pump(c: Conn, i: number): void {
    const depth = opts.depth ?? 2;
    while (running && !c.closed && c.inflight < depth) {
      let buf: Buffer;
      let frames: number;
      let dets: number;
      if (batch) {
        const b = c.free.pop();
        if (!b) return;
        batch.patch(b, c.nextSeq);
        c.nextSeq += batch.frames;
        c.lastSeqSent = c.nextSeq - 1;
        buf = b;
        frames = batch.frames;
        dets = batch.frames * batch.detections;
      } else {
        const ch = lineChunks[i]!;
        buf = ch.buf;
        frames = ch.frames;
        dets = ch.detections;
      }
      c.inflight++;
      c.socket.write(buf, (err) => {
        c.inflight--;
        if (batch) c.free.push(buf);
        if (err) {
          note(`write ${c.node}: ${err.message}`);
          return;
        }
        sent += frames;
        detections += dets;
        bytes += buf.length;
        if (!stopping) pump(c, i);
        else maybeDone();
      });
    }
  }

  function onData(c: Conn, chunk: Buffer): void {
    let b = c.rx.length ? Buffer.concat([c.rx, chunk]) : chunk;
    let p = 0;
    let last = -1;
    let lastEnd = -1;
    while (b.length - p >= 4) {
      const len = b.readUInt32BE(p);
      if (b.length - p - 4 < len) break;
      const s = p + 4;
      p = s + len;
      // Acks are tiny; anything bigger (welcome, error) is decoded at once.
      if (len > 24 || c.welcome) handleMsg(c, b, s, p);
      else {
        last = s;
        lastEnd = p;
      }
    }
    if (last >= 0) handleMsg(c, b, last, lastEnd);
    c.rx = p < b.length ? Buffer.from(b.subarray(p)) : EMPTY;
    b = EMPTY;
  }

  function handleMsg(c: Conn, b: Buffer, s: number, e: number): void {
    let m: Record<string, unknown>;
    try {
      m = decodeBody(b, s, e) as Record<string, unknown>;
    } catch (err) {
      note(`${c.node}: undecodable reply: ${(err as Error).message}`);
      return;
    }
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
    const closing = conns.map((c) => new Promise<void>((resolve) => {
      if (c.closed) return resolve();
      c.socket.once('close', () => resolve());
      c.socket.end();
    }));
    const bound = new Promise<void>((r) => setTimeout(r, 15000).unref());
    void Promise.race([Promise.all(closing), bound]).then(() => {
      for (const c of conns) if (!c.closed) c.socket.destroy();
      const s = sample();
      send({ t: 'done', r: { ...s, lastSeqSent: conns.map((c) => c.lastSeqSent), lastAck: conns.map((c) => c.lastAck), errors, closedEarly } });
      setTimeout(() => process.exit(0), 50);
    });
  }

  async function init(o: LoadgenOptions): Promise<void> {
    opts = o;
    setTimeout(() => {
      process.stderr.write(`load generator: hard deadline of ${o.maxSeconds} s reached, exiting\n`);
      process.exit(4);
    }, o.maxSeconds * 1000).unref();
    const chunkBytes = o.chunkBytes ?? 256 * 1024;
    const base = o.nodeBase ?? 0;
    const depth = o.depth ?? 2;
    if (o.protocol === 'line') {
      lineChunks = [];
      for (let i = 0; i < o.connections; i++) lineChunks.push(lineChunk(`bench-${base + i}`, o.token, chunkBytes));
    } else {
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
      const node = `bench-${base + i}`;
      const socket = connect({ host: o.host, port: o.port, noDelay: true });
      const c: Conn = {
        socket, node, inflight: 0, free: [], nextSeq: 1, lastSeqSent: 0, lastAck: 0, rx: EMPTY, welcome: null, closed: false,
      };
      if (batch) for (let k = 0; k <= depth; k++) c.free.push(batch.copy());
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
          socket.on('data', (d: Buffer) => onData(c, d));
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
        init(m.opts).then(() => send({ t: 'ready' }), (err: Error) => {
          send({ t: 'fail', error: err.message });
          setTimeout(() => process.exit(1), 50);
        });
        break;
      case 'go':
        running = true;
        conns.forEach((c, i) => pump(c, i));
        break;
      case 'mark':
        send({ t: 'mark', id: m.id, s: sample() });
        break;
      case 'stop':
        running = false;
        stopping = true;
        maybeDone();
        break;
    }
  });
}

const EMPTY = Buffer.alloc(0);

if (process.argv[1] === SELF && process.argv.includes('--loadgen-child')) childMain();
