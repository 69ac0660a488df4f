// A binary-protocol node that behaves as the protocol asks a real one to: it keeps
// every unacked frame, reconnects (through a balancer: to whichever host it is sent)
// when the connection closes, and after `welcome` resends what the host has not got
// (seq > last_seq). Frames carry ts = ts0 + seq, so a tracker's input tells which
// seqs reached it. Used by the fleet tests and the cluster benchmark.
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { encodeFrame, encodeHello, T_ACK, T_ERROR, T_WELCOME } from './engine-api.js';
import { MessageReader, TS0 } from './frames.js';

export interface ResumingNodeOptions {
  host: string;
  port: number;
  nodeId: string;
  token: string;
  /** Frame timestamps are ts0 + seq. */
  ts0?: number;
  /** Wait before a reconnect, ms (a little jitter is added). */
  reconnectMs?: number;
  /** Unacked frames kept at most; beyond it the oldest is dropped and counted. */
  maxBuffered?: number;
  /** Detections per frame (1: small frames; many make a tracker's input pipe fill sooner). */
  detections?: number;
}

/** One outage: the connection closed at `closedAt`; the first ack on a later connection came at `resumedAt` (null: not yet). */
export interface Outage { closedAt: number; resumedAt: number | null; reason: string }

/** The seq a tracker-input line's timestamp stands for (NaN when it is not one of ours). */
export const seqOfTimestamp = (ts: number, ts0 = TS0): number => ts - ts0;

export class ResumingNode {
  readonly ts0: number;
  /** The last seq generated. */
  seq = 0;
  /** Highest seq a host acked (an `ack` message); every seq up to it was acked. */
  acked = 0;
  /** Highest last_seq a welcome reported. */
  welcomedAt = 0;
  connects = 0;
  welcomes = 0;
  acksReceived = 0;
  /** Frames sent more than once (resends after a reconnect). */
  resent = 0;
  /** Unacked frames dropped because the buffer was full (never expected). */
  overflowed = 0;
  /** Errors by code, as the hosts sent them. */
  readonly errors = new Map<string, number>();
  readonly outages: Outage[] = [];
  /** Welcomes whose last_seq was below the highest seq already acked (first few). */
  readonly welcomesBehind: Array<{ lastSeq: number; acked: number }> = [];
  /** Every connection's end, for diagnosis: close reasons seen. */
  lastError: string | null = null;

  private readonly buf: Array<{ seq: number; bytes: Buffer }> = [];
  private head = 0;
  private socket: Socket | null = null;
  private welcomed = false;
  private sentUpTo = 0;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly reconnectMs: number;
  private readonly maxBuffered: number;

  constructor(readonly o: ResumingNodeOptions) {
    this.ts0 = o.ts0 ?? TS0;
    this.reconnectMs = o.reconnectMs ?? 100;
    this.maxBuffered = o.maxBuffered ?? 200000;
  }

  get buffered(): number {
    return this.buf.length - this.head;
  }

  get connected(): boolean {
    return this.welcomed;
  }

  /** Opens the first connection. */
  start(): void {
    this.stopped = false;
    this.open();
  }

  /** Generates the next frame (buffered; sent at once when connected). */
  frame(): number {
    const seq = ++this.seq;
    const n = this.o.detections ?? 1;
    const delay = Array.from({ length: n }, (_, i) => 10 + ((seq + i) % 50));
    const bytes = encodeFrame({ seq, timestamp: this.ts0 + seq, delay, doppler: delay.map((d) => d / 7), snr: delay.map(() => 9) });
    this.buf.push({ seq, bytes });
    if (this.buffered > this.maxBuffered) {
      this.head++;
      this.overflowed++;
    }
    this.flush();
    return seq;
  }

  /** Stops reconnecting and closes the connection. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.socket?.destroy();
    this.socket = null;
  }

  /** Closes the current connection as a node that lost its link would (it reconnects). */
  drop(): void {
    this.socket?.destroy();
  }

  private open(): void {
    if (this.stopped) return;
    const s = connect({ host: this.o.host, port: this.o.port });
    this.socket = s;
    this.welcomed = false;
    this.connects++;
    s.setNoDelay(true);
    const reader = new MessageReader();
    s.on('connect', () => s.write(encodeHello(this.o.nodeId, this.o.token)));
    s.on('data', (chunk: Buffer) => reader.push(chunk, (m) => this.onMessage(s, m)));
    s.on('drain', () => this.flush());
    s.on('error', (err: NodeJS.ErrnoException) => { this.lastError = err.code ?? err.message; });
    s.on('close', () => {
      if (this.socket !== s) return;
      const wasUp = this.welcomed;
      this.socket = null;
      this.welcomed = false;
      if (wasUp) this.outages.push({ closedAt: performance.now(), resumedAt: null, reason: this.lastError ?? 'closed' });
      if (this.stopped) return;
      this.timer = setTimeout(() => { this.timer = null; this.open(); }, this.reconnectMs + Math.random() * this.reconnectMs);
    });
  }

  private onMessage(s: Socket, m: Record<string, unknown>): void {
    if (s !== this.socket) return;
    if (m.t === T_WELCOME) {
      const last = typeof m.last_seq === 'number' ? m.last_seq : 0;
      this.welcomes++;
      // A resume point behind what was acked: the host did not know where the node was.
      if (last < this.acked) this.welcomesBehind.push({ lastSeq: last, acked: this.acked });
      this.welcomedAt = Math.max(this.welcomedAt, last);
      this.settle(last);
      // Resend everything the host has not got, in order.
      this.sentUpTo = last;
      this.welcomed = true;
      this.lastError = null;
      this.flush();
    } else if (m.t === T_ACK && typeof m.seq === 'number') {
      this.acksReceived++;
      if (m.seq > this.acked) this.acked = Math.min(m.seq, this.seq);
      this.settle(m.seq);
      const o = this.outages[this.outages.length - 1];
      if (o && o.resumedAt === null) o.resumedAt = performance.now();
    } else if (m.t === T_ERROR) {
      const code = String(m.code);
      this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
      this.lastError = code;
    }
  }

  /** Frees every buffered frame with seq <= upTo. */
  private settle(upTo: number): void {
    while (this.head < this.buf.length && this.buf[this.head]!.seq <= upTo) this.head++;
    if (this.head > 1024 && this.head * 2 > this.buf.length) {
      this.buf.splice(0, this.head);
      this.head = 0;
    }
  }

  /** Writes buffered frames after sentUpTo until the socket pushes back. */
  private flush(): void {
    const s = this.socket;
    if (!s || !this.welcomed) return;
    // The buffer is in seq order: the first unsent frame by binary search (a backlog can be long).
    let lo = this.head;
    let hi = this.buf.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.buf[mid]!.seq <= this.sentUpTo) lo = mid + 1; else hi = mid;
    }
    let i = lo;
    const out: Buffer[] = [];
    for (; i < this.buf.length; i++) {
      const f = this.buf[i]!;
      out.push(f.bytes);
      if (f.seq <= this.sentBefore) this.resent++;
      this.sentUpTo = f.seq;
      if (out.length >= 256) break;
    }
    this.sentBefore = Math.max(this.sentBefore, this.sentUpTo);
    if (out.length === 0) return;
    if (s.write(out.length === 1 ? out[0]! : Buffer.concat(out)) && i < this.buf.length) setImmediate(() => this.flush());
  }

  /** Highest seq ever written to any connection. */
  private sentBefore = 0;
}

/** Many resuming nodes at one rate each, driven by one timer. */
export class NodeFleet {
  readonly nodes: ResumingNode[];
  private timer: NodeJS.Timeout | null = null;
  private due = 0;

  constructor(ids: string[], o: Omit<ResumingNodeOptions, 'nodeId'>) {
    this.nodes = ids.map((nodeId) => new ResumingNode({ ...o, nodeId }));
  }

  /** Connects every node (spread over `spreadMs`) and, with fps > 0, sends fps frames a second from each. */
  start(fps: number, spreadMs = 0): void {
    this.nodes.forEach((n, i) => (spreadMs > 0 ? setTimeout(() => n.start(), (spreadMs * i) / this.nodes.length) : n.start()));
    if (fps > 0) this.pace(fps);
  }

  /** Sends `fps` frames a second from every node until pause()/stop(), spread evenly over each 10 ms tick. */
  pace(fps: number): void {
    this.pause();
    const t0 = performance.now();
    let sent = 0;
    this.due = 0;
    this.timer = setInterval(() => {
      const want = Math.floor(((performance.now() - t0) / 1000) * fps * this.nodes.length);
      for (; sent < want; sent++) this.nodes[sent % this.nodes.length]!.frame();
      this.due = sent;
    }, 10);
  }

  pause(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  stop(): void {
    this.pause();
    for (const n of this.nodes) n.stop();
  }

  get generated(): number {
    return this.nodes.reduce((s, n) => s + n.seq, 0);
  }

  get ackedTotal(): number {
    return this.nodes.reduce((s, n) => s + n.acked, 0);
  }

  /** True when every generated frame was acked. */
  allAcked(): boolean {
    return this.nodes.every((n) => n.acked >= n.seq);
  }

  get paced(): number {
    return this.due;
  }
}
