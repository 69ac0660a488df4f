// The load generator's `hostile` mode: legit (binary nodes at a steady rate that
// reconnect and resend as docs/protocol.md asks; delivered = acked) or attack
// (slow-loris, never-reading amplifiers, a node-id flood, oversize frames, a
// reconnect storm, malformed URLs; each bounded in count and time). 127.0.0.1 only.
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { encodeFrame, encodeHello, T_ACK, T_ERROR, T_WELCOME } from './engine-api.js';
import { GenChild, childChannel } from './ipc.js';
import { MessageReader } from './frames.js';
import { sleep } from './probes.js';

export const ATTACKS = ['slowloris', 'amplifier', 'idflood', 'oversize', 'storm', 'badurl'] as const;
export type Attack = typeof ATTACKS[number];

export interface LegitOptions { host: string; port: number; token: string; nodes: number; fps: number; detections: number; maxSeconds: number }

/** How big each attacker is (the hostile workload's defaults). */
export const ATTACK_SIZES = {
  /** Slow-loris sockets held open at once (one the host closes is opened again 1 s later; at most 10x in all). */
  slowlorisSockets: 1100,
  /** Never-reading amplifier connections at once, after a shared-token hello and without one; bytes written per connection at most. */
  amplifiersAuth: 3, amplifiersUnauth: 1, amplifierMaxBytes: 512 * 2 ** 20,
  /** Distinct node ids claimed by the flood (one frame each, spread over the phase). */
  floodIds: 5000,
  /** Oversize frames in all (1 MiB lines, 2 MiB lines, 43,000-detection binary frames, in turn). */
  oversizeFrames: 30,
  /** Reconnect storm: concurrent loops and connect/hello/close cycles in all. */
  stormConcurrency: 4, stormCycles: 5000,
  /** Malformed-target requests in all (one a second from the middle of the phase). */
  badUrlRequests: 30,
};

/**
 * The attack mix. `sources`: the attackers' source addresses (127.0.0.x: all loopback on
 * Linux), so a per-source limit of the host can tell them from the legitimate nodes and
 * the probe (127.0.0.1); slow-loris spreads over all of them, the others use the first.
 */
export type AttackOptions = typeof ATTACK_SIZES & {
  host: string; nodePort: number; httpPort: number; token: string; attacks: Attack[]; sources: string[]; maxSeconds: number;
};

/** Per phase: frames sent, delivered (acked), refused; ms from a frame's first write to the ack that settled it. */
export interface PhaseStats { sent: number; delivered: number; refused: number; latencies: number[] }

/** The legitimate nodes' totals: refused = settled by an `error` naming the seq; unsettled = neither acked nor refused at the stop. */
export interface LegitResult {
  phases: { baseline: PhaseStats; attack: PhaseStats; after: PhaseStats };
  sent: number; delivered: number; refused: number; unsettled: number;
  nodesComplete: number; closedByHost: number; reconnects: number; connectFailures: number; hostErrors: Record<string, number>; errors: string[];
}

export type AttackStats = Record<string, number | string | Record<string, number>>;
export interface AttackResult { attacks: Record<string, AttackStats>; errors: string[] }

type ToChild =
  | { t: 'init'; role: 'legit'; opts: LegitOptions }
  | { t: 'init'; role: 'attack'; opts: AttackOptions }
  | { t: 'phase'; phase: 0 | 1 | 2 }
  | { t: 'start'; durationS: number }
  | { t: 'stop'; settleMs: number };
type FromChild =
  | { t: 'ready' }
  | { t: 'fail'; error: string }
  | { t: 'done'; r: LegitResult | AttackResult };

/** A hostile load process (the generator's hostile mode, parent side): init, messages, and its one final result. */
export class HostileChild extends GenChild<ToChild, FromChild> {
  static start(init: Extract<ToChild, { t: 'init' }>, timeoutMs: number): Promise<HostileChild> {
    return new HostileChild('hostile').init(init, timeoutMs);
  }
}

// ---- Shared child helpers ----

function bump(rec: Record<string, number>, key: string, by = 1): void {
  rec[key] = (rec[key] ?? 0) + by;
}

// ---- Legitimate nodes ----

interface Pending { seq: number; sentAt: number; phase: number; buf: Buffer }

/** A node: its frames not settled yet are queue[head..]; a seq the host refused by an `error` is in refusedSeqs until settled. */
interface LegitNode {
  id: string; socket: Socket | null; ready: boolean; nextSeq: number; queue: Pending[]; head: number; refusedSeqs: Set<number>;
  sent: number; delivered: number; backoffMs: number; reader: MessageReader;
}

function legitMain(o: LegitOptions, send: (m: FromChild) => void): { onMessage(m: ToChild): void } {
  const phases: PhaseStats[] = [0, 1, 2].map(() => ({ sent: 0, delivered: 0, refused: 0, latencies: [] }));
  const hostErrors: Record<string, number> = {};
  const errors: string[] = [];
  let phase = 0;
  let producing = false;
  let stopping = false;
  let closedByHost = 0;
  let reconnects = 0;
  let connectFailures = 0;
  const note = (e: string): void => {
    if (errors.length < 20) errors.push(e);
  };
  const det = Array.from({ length: o.detections }, (_, k) => 20 + k * 3.7);
  const dop = Array.from({ length: o.detections }, (_, k) => -50 + k * 1.3);
  const snr = Array.from({ length: o.detections }, (_, k) => 8 + (k % 7));

  const nodes: LegitNode[] = Array.from({ length: o.nodes }, (_, i) => ({
    id: `legit-${i}`, socket: null, ready: false, nextSeq: 1, queue: [], head: 0, refusedSeqs: new Set(),
    sent: 0, delivered: 0, backoffMs: 200, reader: new MessageReader(),
  }));

  function settle(n: LegitNode, upTo: number): void {
    const now = performance.now();
    while (n.head < n.queue.length && n.queue[n.head]!.seq <= upTo) {
      const p = n.queue[n.head++]!;
      const ph = phases[p.phase]!;
      if (n.refusedSeqs.delete(p.seq)) {
        ph.refused++;
      } else {
        ph.delivered++;
        n.delivered++;
        ph.latencies.push(now - p.sentAt);
      }
    }
    if (n.head > 1024 && n.head * 2 > n.queue.length) {
      n.queue = n.queue.slice(n.head);
      n.head = 0;
    }
    maybeStopped();
  }

  function onMessage(n: LegitNode, m: Record<string, unknown>): void {
    if (m.t === T_ACK && typeof m.seq === 'number') {
      settle(n, m.seq);
    } else if (m.t === T_WELCOME) {
      n.ready = true;
      n.backoffMs = 200;
      const last = typeof m.last_seq === 'number' ? m.last_seq : 0;
      settle(n, last);
      for (let k = n.head; k < n.queue.length; k++) n.socket!.write(n.queue[k]!.buf);
      readyCheck();
    } else if (m.t === T_ERROR) {
      bump(hostErrors, String(m.code));
      if (typeof m.seq === 'number') n.refusedSeqs.add(m.seq);
    }
  }

  function open(n: LegitNode): void {
    const s = connect({ host: o.host, port: o.port, noDelay: true });
    n.socket = s;
    n.ready = false;
    n.reader = new MessageReader();
    let connected = false;
    s.on('connect', () => {
      connected = true;
      s.write(encodeHello(n.id, o.token));
    });
    s.on('data', (d: Buffer) => n.reader.push(d, (m) => onMessage(n, m)));
    s.on('error', (e) => note(`${n.id}: ${e.message}`));
    s.on('close', () => {
      if (n.socket !== s) return;
      n.socket = null;
      n.ready = false;
      if (!connected) connectFailures++;
      else if (!stopping || n.head < n.queue.length) closedByHost++;
      if (stopping && n.head >= n.queue.length) return;
      reconnects++;
      const wait = n.backoffMs;
      n.backoffMs = Math.min(2000, n.backoffMs * 2);
      setTimeout(() => open(n), wait);
    });
  }

  let readySent = false;
  function readyCheck(): void {
    if (!readySent && nodes.every((n) => n.ready)) {
      readySent = true;
      send({ t: 'ready' });
    }
  }

  function produce(n: LegitNode): void {
    const seq = n.nextSeq++;
    const buf = encodeFrame({ seq, timestamp: Date.now(), delay: det, doppler: dop, snr });
    n.queue.push({ seq, sentAt: performance.now(), phase, buf });
    n.sent++;
    phases[phase]!.sent++;
    if (n.ready && n.socket) n.socket.write(buf);
  }

  function pace(): void {
    const N = nodes.length;
    const step = 1000 / o.fps / N;
    const t0 = performance.now();
    let k = 0;
    const tick = (): void => {
      if (!producing) return;
      const now = performance.now();
      // Open loop: a frame owed is produced even when late (the node's clock does not wait).
      for (let due = t0 + k * step; due <= now; due = t0 + k * step) produce(nodes[k++ % N]!);
      setTimeout(tick, Math.max(0, t0 + k * step - performance.now()));
    };
    tick();
  }

  let stopResolve: (() => void) | null = null;
  function maybeStopped(): void {
    if (stopResolve && nodes.every((n) => n.head >= n.queue.length)) {
      const r = stopResolve;
      stopResolve = null;
      r();
    }
  }

  async function stop(settleMs: number): Promise<void> {
    producing = false;
    stopping = true;
    await Promise.race([new Promise<void>((r) => {
      stopResolve = r;
      maybeStopped();
    }), sleep(settleMs)]);
    for (const n of nodes) n.socket?.destroy();
    const sum = (f: (p: PhaseStats) => number): number => phases.reduce((a, p) => a + f(p), 0);
    const sent = sum((p) => p.sent);
    const delivered = sum((p) => p.delivered);
    const refused = sum((p) => p.refused);
    const r: LegitResult = {
      phases: { baseline: phases[0]!, attack: phases[1]!, after: phases[2]! },
      sent, delivered, refused, unsettled: sent - delivered - refused,
      nodesComplete: nodes.filter((n) => n.delivered === n.sent).length,
      closedByHost, reconnects, connectFailures, hostErrors, errors,
    };
    send({ t: 'done', r });
    setTimeout(() => process.exit(0), 100);
  }

  for (const n of nodes) open(n);
  return {
    onMessage(m: ToChild): void {
      if (m.t === 'phase') {
        phase = m.phase;
        if (!producing && !stopping) {
          producing = true;
          pace();
        }
      } else if (m.t === 'stop') {
        void stop(m.settleMs);
      }
    },
  };
}

// ---- Attackers ----

interface Ctx { o: AttackOptions; deadline: number; stopped: () => boolean }

/** Hundreds of HTTP sockets, each sending one header line every few seconds and never finishing the request. */
async function slowloris(c: Ctx, st: AttackStats): Promise<void> {
  const n = c.o.slowlorisSockets;
  const maxOpens = 10 * n;
  let opens = 0;
  let open = 0;
  let maxOpen = 0;
  let closedByHost = 0;
  let answered = 0;
  let connectErrors = 0;
  const live = new Set<Socket>();
  const openOne = (): void => {
    if (opens >= maxOpens || c.stopped()) return;
    opens++;
    const s = connect({ host: c.o.host, port: c.o.httpPort, localAddress: c.o.sources[opens % c.o.sources.length] });
    live.add(s);
    let k = 0;
    let timer: NodeJS.Timeout | null = null;
    let connected = false;
    s.on('connect', () => {
      connected = true;
      open++;
      maxOpen = Math.max(maxOpen, open);
      s.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      timer = setInterval(() => s.write(`X-Slow-${k}: ${k++}\r\n`), 5000 + (opens % 1000));
    });
    s.once('data', () => answered++);
    s.on('error', () => {
      if (!connected) connectErrors++;
    });
    s.on('close', () => {
      live.delete(s);
      if (timer) clearInterval(timer);
      if (connected) open--;
      if (!c.stopped()) {
        if (connected) closedByHost++;
        setTimeout(openOne, 1000);
      }
    });
  };
  for (let i = 0; i < n && !c.stopped(); i++) {
    openOne();
    if (i % 50 === 49) await sleep(20);
  }
  while (!c.stopped()) await sleep(100);
  Object.assign(st, { sockets: n, opened: opens, max_open_at_once: maxOpen, open_at_end: open, closed_by_host: closedByHost, answered, connect_errors: connectErrors });
  for (const s of live) s.destroy();
}

/**
 * Never-reading connections sending 4-byte malformed messages (length 0), with and
 * without a hello; a connection the host closes is opened again (at most 50 times a slot).
 */
async function amplifier(c: Ctx, st: AttackStats): Promise<void> {
  const chunk = Buffer.alloc(64 * 1024); // 16,384 messages of length 0
  const per: Array<{ bytes: number; closedAfterMs: number | null; connected: boolean }> = [];
  const t0 = performance.now();
  const one = (auth: boolean, i: number): Promise<void> => new Promise((resolve) => {
    const rec = { bytes: 0, closedAfterMs: null as number | null, connected: false };
    per.push(rec);
    const s = connect({ host: c.o.host, port: c.o.nodePort, localAddress: c.o.sources[0] });
    s.pause(); // never read: replies pile up wherever the host keeps them
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearInterval(watch);
      s.destroy();
      resolve();
    };
    const pump = (): void => {
      while (!done && !c.stopped() && rec.bytes < c.o.amplifierMaxBytes) {
        rec.bytes += chunk.length;
        if (!s.write(chunk)) return; // resumes on 'drain'
      }
    };
    // Holds the connection (still not reading) until the phase ends, whether or not
    // the host still takes bytes.
    const watch = setInterval(() => {
      if (c.stopped()) finish();
    }, 100);
    s.on('connect', () => {
      rec.connected = true;
      if (auth) s.write(encodeHello(`amp-${i}`, c.o.token));
      pump();
    });
    s.on('drain', pump);
    s.on('error', () => undefined);
    s.on('close', () => {
      if (rec.connected && rec.closedAfterMs === null && !c.stopped()) rec.closedAfterMs = Math.round(performance.now() - t0);
      finish();
    });
  });
  const slot = async (auth: boolean, i: number): Promise<void> => {
    for (let k = 0; k < 50 && !c.stopped(); k++) {
      await one(auth, i);
      await sleep(200);
    }
  };
  const all: Promise<void>[] = [];
  for (let i = 0; i < c.o.amplifiersAuth; i++) all.push(slot(true, i));
  for (let i = 0; i < c.o.amplifiersUnauth; i++) all.push(slot(false, i));
  await Promise.all(all);
  const closed = per.filter((p) => p.closedAfterMs !== null);
  Object.assign(st, {
    slots: c.o.amplifiersAuth + c.o.amplifiersUnauth,
    connections: per.filter((p) => p.connected).length,
    connect_errors: per.filter((p) => !p.connected).length,
    mib_written: Math.round(per.reduce((a, p) => a + p.bytes, 0) / 2 ** 20),
    closed_by_host: closed.length,
    first_close_after_ms: Math.min(...closed.map((p) => p.closedAfterMs!)),
  });
}

/** Line protocol, one shared-token connection claiming `floodIds` distinct node ids, spread over the phase. */
async function idflood(c: Ctx, st: AttackStats): Promise<void> {
  const total = c.o.floodIds;
  const span = Math.max(1000, c.deadline - performance.now() - 1000);
  const t0 = performance.now();
  let k = 0;
  let opens = 0;
  let closedByHost = 0;
  let s: Socket | null = null;
  while (k < total && !c.stopped()) {
    if (s === null || s.destroyed) {
      if (opens >= 100) break;
      opens++;
      const sock = connect({ host: c.o.host, port: c.o.nodePort, localAddress: c.o.sources[0] });
      sock.on('data', () => undefined);
      sock.on('error', () => undefined);
      sock.on('close', () => {
        if (!c.stopped()) closedByHost++;
      });
      s = sock;
    }
    const due = Math.min(total, Math.floor(((performance.now() - t0) / span) * total) + 1);
    let lines = '';
    for (; k < due; k++) {
      lines += `${JSON.stringify({ node_id: `flood-${k}`, token: c.o.token, timestamp: Date.now(), delay: [40.5], doppler: [-20.1], snr: [9.9] })}\n`;
    }
    if (lines && s.writableLength < 1 << 20) s.write(lines);
    await sleep(20);
  }
  Object.assign(st, { ids_claimed: k, connections: opens, closed_by_host: closedByHost });
  while (!c.stopped()) await sleep(100);
  s?.destroy();
}

/** 1 MiB lines of 3 x 170,000 numbers, 2 MiB lines, and binary frames of 43,000 detections, in turn. */
async function oversize(c: Ctx, st: AttackStats): Promise<void> {
  const nums = Array(170_000).fill('1').join(',');
  const big = (id: string, size: 'near' | 'over'): string => {
    const arr = size === 'near' ? nums : `${nums},${nums}`;
    return `{"node_id":"${id}","token":"${c.o.token}","timestamp":${Date.now()},"delay":[${arr}],"doppler":[${arr}],"snr":[${arr}]}\n`;
  };
  const N = 43_000;
  const det = new Array<number>(N).fill(1);
  const counts: Record<string, number> = {};
  const replies: Record<string, number> = {};
  let line: Socket | null = null;
  for (let i = 0; i < c.o.oversizeFrames && !c.stopped(); i++) {
    const kind = (['line_1mib', 'line_2mib', 'binary_43k'] as const)[i % 3]!;
    if (kind === 'binary_43k') {
      const s = connect({ host: c.o.host, port: c.o.nodePort, localAddress: c.o.sources[0] });
      const rd = new MessageReader();
      s.on('data', (d: Buffer) => rd.push(d, (m) => bump(replies, m.t === T_ERROR ? String(m.code) : String(m.t))));
      s.on('error', () => undefined);
      s.on('connect', () => {
        s.write(encodeHello(`bigb-${i}`, c.o.token));
        s.write(encodeFrame({ seq: 1, timestamp: Date.now(), delay: det, doppler: det, snr: det }));
      });
      setTimeout(() => s.destroy(), 1500);
    } else {
      if (line === null || line.destroyed) {
        line = connect({ host: c.o.host, port: c.o.nodePort, localAddress: c.o.sources[0] });
        line.on('data', () => undefined);
        line.on('error', () => undefined);
      }
      if (line.writableLength < 4 << 20) line.write(big(`big-${i}`, kind === 'line_1mib' ? 'near' : 'over'));
    }
    bump(counts, kind);
    await sleep(2000);
  }
  Object.assign(st, { frames: counts, binary_replies: replies });
  while (!c.stopped()) await sleep(100);
  line?.destroy();
}

/** Loops of connect, shared-token hello, first reply (or 1 s), close, over a few node ids. */
async function storm(c: Ctx, st: AttackStats): Promise<void> {
  let cycles = 0;
  const replies: Record<string, number> = {};
  let connectErrors = 0;
  const loop = async (w: number): Promise<void> => {
    while (!c.stopped() && cycles < c.o.stormCycles) {
      const k = cycles++;
      await new Promise<void>((resolve) => {
        const s = connect({ host: c.o.host, port: c.o.nodePort, localAddress: c.o.sources[0] });
        const rd = new MessageReader();
        let got = false;
        const end = (): void => {
          s.destroy();
          resolve();
        };
        const t = setTimeout(() => {
          if (!got) bump(replies, 'no_reply_1s');
          end();
        }, 1000);
        s.on('connect', () => s.write(encodeHello(`storm-${(k + w) % 20}`, c.o.token)));
        s.on('data', (d: Buffer) => rd.push(d, (m) => {
          if (got) return;
          got = true;
          bump(replies, m.t === T_ERROR ? String(m.code) : String(m.t));
          clearTimeout(t);
          end();
        }));
        s.on('error', () => {
          if (!got) connectErrors++;
        });
        s.on('close', () => {
          clearTimeout(t);
          resolve();
        });
      });
      await sleep(5);
    }
  };
  await Promise.all(Array.from({ length: c.o.stormConcurrency }, (_, w) => loop(w)));
  Object.assign(st, { cycles, replies, connect_errors: connectErrors });
}

/**
 * One HTTP/1.1 connection held open with keep-alive requests (a valid GET a second),
 * so a request can be sent even while other attackers hold every descriptor of the
 * host; `request` sends on it and resolves with the next status code, or a reason.
 */
class HeldConnection {
  private buf = '';
  private from = 0;
  private waiter: ((r: string) => void) | null = null;
  closed = false;
  private readonly s: Socket;

  constructor(c: Ctx) {
    this.s = connect({ host: c.o.host, port: c.o.httpPort, localAddress: c.o.sources[0] });
    this.s.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      this.check();
    });
    this.s.on('error', () => undefined);
    this.s.on('close', () => {
      this.closed = true;
      this.waiter?.(this.buf.length > this.from ? 'closed_without_status' : 'closed');
      this.waiter = null;
    });
  }

  private check(): void {
    if (!this.waiter) return;
    const m = /HTTP\/1\.[01] (\d{3})/.exec(this.buf.slice(this.from));
    if (m) {
      this.from += m.index + m[0].length;
      const w = this.waiter;
      this.waiter = null;
      w(m[1]!);
    }
  }

  request(target: string, timeoutMs: number): Promise<string> {
    if (this.closed) return Promise.resolve('closed');
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiter = null;
        resolve(`timeout_${timeoutMs}ms`);
      }, timeoutMs);
      this.waiter = (r) => {
        clearTimeout(t);
        resolve(r);
      };
      this.s.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      this.check();
    });
  }

  destroy(): void {
    this.s.destroy();
  }
}

/**
 * Requests whose target `new URL()` rejects (`GET //[` and kin), one a second from
 * the middle of the phase: on a connection held since the start of the phase while
 * it is open, else on a new one.
 */
async function badurl(c: Ctx, st: AttackStats): Promise<void> {
  const targets = ['//[', '/\\[', 'http://['];
  const status: Record<string, number> = {};
  const keepAlive: Record<string, number> = {};
  const mid = performance.now() + (c.deadline - performance.now()) / 2;
  let held = new HeldConnection(c);
  while (performance.now() < mid && !c.stopped()) {
    if (!held.closed) bump(keepAlive, await held.request('/healthz', 1000));
    await sleep(1000);
  }
  let sent = 0;
  let onHeld = 0;
  for (let i = 0; i < c.o.badUrlRequests && !c.stopped(); i++) {
    sent++;
    const target = targets[i % targets.length]!;
    if (!held.closed) onHeld++;
    else held = new HeldConnection(c); // the held one was closed: the request goes on a new connection
    const r = await held.request(target, 2000);
    bump(status, r);
    await sleep(1000);
  }
  held.destroy();
  Object.assign(st, { sent, sent_on_held_connection: onHeld, results: status, keep_alive_before: keepAlive, started_after: 'half of the attack phase' });
}

const ATTACK_FNS: Record<Attack, (c: Ctx, st: AttackStats) => Promise<void>> = { slowloris, amplifier, idflood, oversize, storm, badurl };

function attackMain(o: AttackOptions, send: (m: FromChild) => void): { onMessage(m: ToChild): void } {
  let stopAt = Infinity;
  const stopped = (): boolean => performance.now() >= stopAt;
  const errors: string[] = [];
  async function run(durationS: number): Promise<void> {
    const deadline = performance.now() + durationS * 1000;
    stopAt = deadline;
    const c: Ctx = { o, deadline, stopped };
    const stats: Record<string, AttackStats> = {};
    const runs = o.attacks.map(async (a) => {
      const st: AttackStats = {};
      stats[a] = st;
      try {
        await ATTACK_FNS[a](c, st);
      } catch (err) {
        errors.push(`${a}: ${(err as Error).message}`);
      }
    });
    // Every attacker stops at the deadline; a stuck one is abandoned 10 s later.
    await Promise.race([Promise.all(runs), sleep(durationS * 1000 + 10000)]);
    send({ t: 'done', r: { attacks: stats, errors } });
    setTimeout(() => process.exit(0), 100);
  }
  send({ t: 'ready' });
  return {
    onMessage(m: ToChild): void {
      if (m.t === 'start') void run(m.durationS);
      else if (m.t === 'stop') stopAt = Math.min(stopAt, performance.now());
    },
  };
}

export function hostileChild(): void {
  let role: { onMessage(m: ToChild): void } | null = null;
  const ch = childChannel<FromChild>('hostile load');
  process.on('message', (m: ToChild) => {
    if (m.t === 'init') {
      ch.deadline(m.opts.maxSeconds);
      role = m.role === 'legit' ? legitMain(m.opts, ch.send) : attackMain(m.opts, ch.send);
    } else {
      role?.onMessage(m);
    }
  });
}
