// `radar-ingest simulate`: N simulated radar nodes push moving targets
// (sim-targets.ts) to a host over the line or the binary protocol, one
// connection per node, paced at --rate frames per second each. Progress on
// stderr every second, a summary on stdout at the end.
// Exit codes: 0 every frame sent (and, binary, acked), 1 the host refused or
// closed a connection (or could not be reached), 2 bad usage or config.
import { connect, type Socket } from 'node:net';
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../config.js';
import { ConfigError } from '../protocol/errors.js';
import { decodeBody, encodeFrame, encodeHello, encodeMessage, T_ACK, T_ERROR, T_HEARTBEAT, T_WELCOME, HEARTBEAT_MS } from '../protocol/binary-protocol.js';
import { Scene, type SimFrame } from './sim-targets.js';

export const SIMULATE_USAGE = `usage: radar-ingest simulate [--host H] [--port P] [--token T] [--nodes N] [--rate HZ] [--targets K]
                            [--protocol line|binary] [--duration S] [--clutter MEAN] [--adsb] [--seed N]
                            [--prefix NAME] [--config F] [--json]
Pushes simulated radar nodes' frames (moving targets with noise, clutter, optional ADS-B truth) to a host.
  --host H           the host's node listener (default: tcp_server.host of the config; 0.0.0.0 means 127.0.0.1)
  --port P           (default: tcp_server.port of the config, 30050)
  --token T          (default: the node's tcp_server.tokens entry, else RADAR_INGEST_TOKEN, else tcp_server.token)
  --config F         the engine's config file for those defaults (default ./config.yaml, if it exists)
  --nodes N          simulated nodes, named PREFIX1..PREFIXN, one connection each (default 1)
  --prefix NAME      node id prefix (default sim-)
  --rate HZ          frames per second per node (default 2)
  --targets K        aircraft in view of each node (default 3)
  --clutter MEAN     false alarms per frame, on average (default 2)
  --protocol P       line (retina's JSON lines, default) or binary (acked)
  --duration S       seconds to run (default: until Ctrl-C)
  --adsb             attach ADS-B truth: an object per target detection, null for clutter
  --seed N           random seed: the same seed sends the same detections (default: random, printed)
  --json             the summary as one JSON object
Exit codes: 0 done, 1 the host refused or closed a connection, 2 bad usage.
`;

const MAX_NODES = 1000;
const MAX_RATE = 1000;
const MAX_TARGETS = 1000;
const MAX_CLUTTER = 100;
/** After the last frame, how long to wait for the binary acks. */
const ACK_WAIT_MS = 10_000;
/** A connection that takes longer than this to answer the hello or to open has failed. */
const CONNECT_TIMEOUT_MS = 10_000;
/** The host's largest reply (a welcome, an ack or an error) is well under this. */
const MAX_REPLY_BYTES = 1 << 20;

export interface SimulateArgs {
  host: string;
  port: number;
  /** Per node id: the token it presents. */
  tokenOf: (node: string) => string;
  nodes: number;
  prefix: string;
  rate: number;
  targets: number;
  clutter: number;
  protocol: 'line' | 'binary';
  /** Seconds; null: until a signal. */
  duration: number | null;
  adsb: boolean;
  seed: number;
  json: boolean;
}

export interface SimulateIo {
  env: NodeJS.ProcessEnv;
  out: (s: string) => void;
  err: (s: string) => void;
  /** Resolves when the run should stop early (default: SIGINT or SIGTERM). */
  stopSignal?: Promise<unknown>;
}

const OPTIONS = {
  host: { type: 'string' },
  port: { type: 'string' },
  token: { type: 'string' },
  config: { type: 'string', short: 'c' },
  nodes: { type: 'string' },
  prefix: { type: 'string' },
  rate: { type: 'string' },
  targets: { type: 'string' },
  clutter: { type: 'string' },
  protocol: { type: 'string' },
  duration: { type: 'string' },
  adsb: { type: 'boolean' },
  seed: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Parsed = SimulateArgs | { error: string } | 'help';

function num(flag: string, v: string | undefined, dflt: number, ok: (n: number) => boolean, what: string): number | { error: string } {
  if (v === undefined) return dflt;
  const n = v.trim() === '' ? NaN : Number(v);
  return Number.isFinite(n) && ok(n) ? n : { error: `--${flag}: expected ${what}, got ${JSON.stringify(v)}` };
}

/** Flags, then the config file for whatever the flags leave out. Pure but for reading the config file. */
export function parseSimulateArgs(argv: string[], env: NodeJS.ProcessEnv): Parsed {
  let values: { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };
  try {
    ({ values } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    return { error: (err as Error).message };
  }
  if (values.help) return 'help';
  const int = (n: number): boolean => Number.isInteger(n);
  const nodes = num('nodes', values.nodes, 1, (n) => int(n) && n >= 1 && n <= MAX_NODES, `an integer 1-${MAX_NODES}`);
  const rate = num('rate', values.rate, 2, (n) => n > 0 && n <= MAX_RATE, `frames per second, above 0 and at most ${MAX_RATE}`);
  const targets = num('targets', values.targets, 3, (n) => int(n) && n >= 0 && n <= MAX_TARGETS, `an integer 0-${MAX_TARGETS}`);
  const clutter = num('clutter', values.clutter, 2, (n) => n >= 0 && n <= MAX_CLUTTER, `a mean number of false alarms per frame, 0-${MAX_CLUTTER}`);
  const duration = num('duration', values.duration, -1, (n) => n > 0, 'seconds above 0');
  const seed = num('seed', values.seed, Math.floor(Math.random() * 2 ** 32), (n) => int(n) && n >= 0 && n < 2 ** 32, 'an integer 0-4294967295');
  const port = num('port', values.port, -1, (n) => int(n) && n >= 1 && n <= 65535, 'a port 1-65535');
  for (const v of [nodes, rate, targets, clutter, duration, seed, port]) if (typeof v !== 'number') return v;
  const protocol = values.protocol ?? 'line';
  if (protocol !== 'line' && protocol !== 'binary') return { error: `--protocol: expected line or binary, got ${JSON.stringify(protocol)}` };
  const prefix = values.prefix ?? 'sim-';
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,50}$/.test(prefix)) return { error: `--prefix: node ids are letters, digits, ".", "_" and "-" (starting with a letter or digit), got ${JSON.stringify(prefix)}` };

  // The node listener of the engine's config fills in what the flags leave out.
  let host = values.host;
  let portN = port as number;
  let shared = values.token;
  let perNode: Record<string, string> = {};
  if (host === undefined || portN < 0 || shared === undefined) {
    const path = values.config ?? 'config.yaml';
    let listener = { host: '127.0.0.1', port: 30050, token: env.RADAR_INGEST_TOKEN ?? '', tokens: {} as Record<string, string> };
    if (values.config !== undefined || existsSync(path)) {
      try {
        listener = loadConfigFile(path, env).tcp_server;
      } catch (err) {
        if (err instanceof ConfigError) return { error: `config error: ${err.message}` };
        throw err;
      }
    }
    host ??= listener.host === '0.0.0.0' ? '127.0.0.1' : listener.host === '::' ? '::1' : listener.host;
    if (portN < 0) portN = listener.port;
    if (shared === undefined) {
      shared = listener.token;
      perNode = listener.tokens;
    }
  }
  if (portN === 0) return { error: 'tcp_server.port is 0 (an ephemeral port) in the config: give --port' };
  const token = shared;
  return {
    host,
    port: portN,
    tokenOf: (node) => perNode[node] ?? token,
    nodes: nodes as number,
    prefix,
    rate: rate as number,
    targets: targets as number,
    clutter: clutter as number,
    protocol,
    duration: (duration as number) > 0 ? duration as number : null,
    adsb: values.adsb ?? false,
    seed: seed as number,
    json: values.json ?? false,
  };
}

interface NodeStats {
  node_id: string;
  frames_sent: number;
  /** Binary: frames the host acked (settled); null for the line protocol (no replies). */
  frames_acked: number | null;
  /** Binary: frames the host settled with a non-fatal error. */
  frames_rejected: number | null;
  detections: number;
  target_detections: number;
  clutter_detections: number;
  error: string | null;
}

/** Splits the host's replies (u32 length + msgpack) into messages. */
class ReplyReader {
  private buf: Buffer = Buffer.alloc(0);
  /** Returns an error instead of buffering a reply no host sends (the protocol's replies are small). */
  push(chunk: Buffer, fn: (m: Record<string, unknown>) => void): string | null {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let at = 0;
    while (this.buf.length - at >= 4) {
      const len = this.buf.readUInt32BE(at);
      if (len > MAX_REPLY_BYTES) return `the host sent a ${len}-byte message: not the radar-ingest binary protocol`;
      if (this.buf.length - at - 4 < len) break;
      let m: unknown = null;
      try {
        m = decodeBody(this.buf, at + 4, at + 4 + len);
      } catch { /* a body that is not msgpack: skipped */ }
      at += 4 + len;
      if (m !== null && typeof m === 'object') fn(m as Record<string, unknown>);
    }
    this.buf = this.buf.subarray(at);
    return null;
  }
}

/** One simulated node: its scene, its connection and its counts. */
class SimNode {
  readonly stats: NodeStats;
  readonly scene: Scene;
  socket: Socket | null = null;
  /** Accepting frames (line: connected; binary: welcomed). */
  ready = false;
  /** The socket's buffer is full: wait for 'drain'. */
  blocked = false;
  /** We ended the connection on purpose. */
  ending = false;
  closed = false;
  /** Binary: the seq of the last frame sent, the host's last ack, and the host's resume point. */
  seq = 0;
  ackedSeq = 0;
  firstSeq = 1;
  lastWriteMs = 0;
  private readonly closedP: Promise<void>;
  private resolveClosed!: () => void;

  constructor(readonly id: string, readonly index: number, readonly a: SimulateArgs, private readonly onFail: () => void) {
    this.scene = new Scene({ targets: a.targets, rateHz: a.rate, seed: a.seed, nodeIndex: index, clutterPerFrame: a.clutter, adsb: a.adsb });
    const binary = a.protocol === 'binary';
    this.stats = {
      node_id: id, frames_sent: 0, frames_acked: binary ? 0 : null, frames_rejected: binary ? 0 : null,
      detections: 0, target_detections: 0, clutter_detections: 0, error: null,
    };
    this.closedP = new Promise((r) => (this.resolveClosed = r));
  }

  fail(message: string): void {
    if (this.stats.error === null) this.stats.error = message;
    this.ready = false;
    this.socket?.destroy();
    this.onFail();
  }

  open(): void {
    const s = connect({ host: this.a.host, port: this.a.port });
    this.socket = s;
    s.setNoDelay(true);
    const where = `${this.a.host}:${this.a.port}`;
    let connected = false;
    const timer = setTimeout(() => this.fail(`no answer from ${where} within ${CONNECT_TIMEOUT_MS / 1000} s`), CONNECT_TIMEOUT_MS);
    s.on('connect', () => {
      connected = true;
      this.lastWriteMs = Date.now();
      if (this.a.protocol === 'line') {
        clearTimeout(timer);
        this.ready = true;
      } else {
        s.write(encodeHello(this.id, this.a.tokenOf(this.id), { name: `radar-ingest simulate ${this.id}` }));
      }
    });
    s.on('drain', () => (this.blocked = false));
    s.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      this.fail(connected ? `connection error: ${err.code ?? err.message}` : `cannot connect to ${where}: ${err.code ?? err.message}`);
    });
    s.on('close', () => {
      clearTimeout(timer);
      this.closed = true;
      this.ready = false;
      if (!this.ending && this.stats.error === null) {
        this.fail(this.a.protocol === 'line'
          ? `the host closed the connection after ${this.stats.frames_sent} frames; the line protocol gives no reason: `
            + 'check the token (--token, RADAR_INGEST_TOKEN, tcp_server.token) and the host\'s log'
          : `the host closed the connection after ${this.stats.frames_sent} frames without an error message`);
      }
      this.resolveClosed();
    });
    if (this.a.protocol === 'binary') {
      const reader = new ReplyReader();
      s.on('data', (chunk: Buffer) => {
        const bad = reader.push(chunk, (m) => this.onReply(m, timer));
        if (bad !== null) this.fail(bad);
      });
    } else {
      s.resume(); // the line protocol sends nothing back; never let a stray byte fill the buffer
    }
  }

  private onReply(m: Record<string, unknown>, timer: NodeJS.Timeout): void {
    if (m.t === T_WELCOME) {
      clearTimeout(timer);
      // Resume after the host's last accepted frame: an earlier run of the same node id left it there.
      const last = typeof m.last_seq === 'number' ? m.last_seq : 0;
      this.seq = last;
      this.ackedSeq = last;
      this.firstSeq = last + 1;
      this.ready = true;
    } else if (m.t === T_ACK && typeof m.seq === 'number') {
      this.ackedSeq = Math.max(this.ackedSeq, Math.min(m.seq, this.seq));
      this.stats.frames_acked = this.ackedSeq - this.firstSeq + 1;
    } else if (m.t === T_ERROR) {
      const what = `${String(m.code)}: ${String(m.message)}`;
      if (m.fatal === true) this.fail(`the host refused the node (${what})`);
      else if (typeof m.seq === 'number') this.stats.frames_rejected!++;
    }
  }

  /** Writes frame `f` at timestamp ts; false when the socket's buffer is full. */
  send(f: SimFrame, ts: number): boolean {
    const s = this.socket!;
    let buf: Buffer | string;
    if (this.a.protocol === 'line') {
      buf = `${JSON.stringify({ node_id: this.id, token: this.a.tokenOf(this.id), timestamp: ts, delay: f.delay, doppler: f.doppler, snr: f.snr, adsb: f.adsb })}\n`;
    } else {
      buf = encodeFrame({ seq: ++this.seq, timestamp: ts, delay: f.delay, doppler: f.doppler, snr: f.snr, ...(this.a.adsb ? { adsb: f.adsb } : {}) });
    }
    this.stats.frames_sent++;
    this.stats.detections += f.delay.length;
    this.stats.target_detections += f.targetDetections;
    this.stats.clutter_detections += f.clutterDetections;
    this.lastWriteMs = Date.now();
    const ok = s.write(buf);
    if (!ok) this.blocked = true;
    return ok;
  }

  /** Keeps a slow node's connection alive between frames. */
  heartbeat(now: number): void {
    if (!this.ready || this.blocked || now - this.lastWriteMs < HEARTBEAT_MS) return;
    this.lastWriteMs = now;
    const hb = this.a.protocol === 'line'
      ? `${JSON.stringify({ node_id: this.id, token: this.a.tokenOf(this.id), type: 'heartbeat' })}\n`
      : encodeMessage({ t: T_HEARTBEAT });
    if (!this.socket!.write(hb)) this.blocked = true;
  }

  allAcked(): boolean {
    return this.a.protocol === 'line' || this.ackedSeq >= this.seq;
  }

  /** Ends the connection and waits for the host to close its side. */
  async finish(): Promise<void> {
    if (this.closed || this.socket === null) return;
    this.ending = true;
    this.ready = false;
    this.socket.end();
    const t = setTimeout(() => this.socket?.destroy(), 5000);
    await this.closedP;
    clearTimeout(t);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function defaultStopSignal(): { promise: Promise<unknown>; dispose: () => void } {
  let fire!: (sig: string) => void;
  const promise = new Promise<string>((r) => (fire = r));
  const onInt = (): void => fire('SIGINT');
  const onTerm = (): void => fire('SIGTERM');
  process.once('SIGINT', onInt);
  process.once('SIGTERM', onTerm);
  return { promise, dispose: () => { process.off('SIGINT', onInt); process.off('SIGTERM', onTerm); } };
}

/** Runs the command; resolves to the exit code. */
export async function runSimulate(argv: string[], io: Partial<SimulateIo> = {}): Promise<number> {
  const env = io.env ?? process.env;
  const out = io.out ?? ((s: string) => void process.stdout.write(s));
  const err = io.err ?? ((s: string) => void process.stderr.write(s));
  const a = parseSimulateArgs(argv, env);
  if (a === 'help') {
    out(SIMULATE_USAGE);
    return 0;
  }
  if ('error' in a) {
    err(`radar-ingest simulate: ${a.error}\n${SIMULATE_USAGE}`);
    return 2;
  }
  const signal = io.stopSignal ? { promise: io.stopSignal, dispose: () => undefined } : defaultStopSignal();
  try {
    return await simulate(a, out, err, signal.promise);
  } finally {
    signal.dispose();
  }
}

async function simulate(a: SimulateArgs, out: (s: string) => void, err: (s: string) => void, stop: Promise<unknown>): Promise<number> {
  let wake: (() => void) | null = null;
  let failed = false;
  let stopped = false;
  const kick = (): void => {
    const w = wake;
    wake = null;
    w?.();
  };
  void stop.then(() => {
    stopped = true;
    kick();
  });
  const nodes = Array.from({ length: a.nodes }, (_, i) => new SimNode(`${a.prefix}${i + 1}`, i, a, () => {
    failed = true;
    kick();
  }));
  for (const n of nodes) n.open();

  const started = Date.now();
  const framesPerNode = a.duration === null ? Infinity : Math.max(1, Math.round(a.duration * a.rate));
  const periodMs = 1000 / a.rate;
  const tickMs = Math.max(2, Math.min(periodMs, 50));
  let lastProgress = started;
  let lastProgressSent = 0;
  const totals = (): { sent: number; acked: number } => ({
    sent: nodes.reduce((s, n) => s + n.stats.frames_sent, 0),
    acked: nodes.reduce((s, n) => s + (n.stats.frames_acked ?? 0), 0),
  });
  const progress = (now: number): void => {
    const t = totals();
    const rate = ((t.sent - lastProgressSent) * 1000) / Math.max(1, now - lastProgress);
    const up = nodes.filter((n) => n.ready).length;
    err(`simulate ${Math.round((now - started) / 1000)}s: sent ${t.sent} frames (${rate.toFixed(1)}/s)`
      + `${a.protocol === 'binary' ? `, acked ${t.acked}` : ''}, ${up}/${a.nodes} nodes connected\n`);
    lastProgress = now;
    lastProgressSent = t.sent;
  };

  // Frame k of every node is due at started + k/rate and carries that time as its timestamp,
  // so the detections depend only on the seed and the timestamps are evenly spaced.
  for (;;) {
    if (failed || stopped) break;
    const now = Date.now();
    const due = Math.min(framesPerNode, Math.floor((now - started) / periodMs) + 1);
    for (const n of nodes) {
      while (n.ready && !n.blocked && n.stats.frames_sent < due) {
        const f = n.scene.nextFrame();
        n.send(f, started + f.offsetMs);
      }
      n.heartbeat(now);
    }
    if (nodes.every((n) => n.stats.frames_sent >= framesPerNode)) break;
    if (now - lastProgress >= 1000) progress(now);
    await new Promise<void>((r) => {
      wake = r;
      setTimeout(kick, tickMs);
    });
  }

  // A run of --duration lasts that long, not just until its last frame is due.
  if (!failed && !stopped && a.duration !== null) {
    const end = started + a.duration * 1000;
    while (!failed && !stopped && Date.now() < end) {
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(kick, Math.min(50, Math.max(1, end - Date.now())));
      });
    }
  }
  // Binary: every frame sent should be settled before we hang up.
  if (!failed && a.protocol === 'binary') {
    const deadline = Date.now() + ACK_WAIT_MS;
    while (!failed && nodes.some((n) => !n.allAcked()) && Date.now() < deadline) await sleep(10);
    for (const n of nodes) {
      if (!n.allAcked() && n.stats.error === null) n.stats.error = `${n.seq - n.ackedSeq} frames not acked within ${ACK_WAIT_MS / 1000} s`;
    }
  }
  if (Date.now() - started >= 1000) progress(Date.now());
  await Promise.all(nodes.map((n) => n.finish()));
  const elapsed = (Date.now() - started) / 1000;

  const stats = nodes.map((n) => n.stats);
  const ok = stats.every((s) => s.error === null);
  const sum = (k: 'frames_sent' | 'detections' | 'target_detections' | 'clutter_detections'): number => stats.reduce((s, x) => s + x[k], 0);
  const summary = {
    ok,
    host: a.host,
    port: a.port,
    protocol: a.protocol,
    seed: a.seed,
    rate_hz: a.rate,
    targets: a.targets,
    duration_s: Math.round(elapsed * 1000) / 1000,
    stopped_by_signal: stopped,
    frames_sent: sum('frames_sent'),
    frames_acked: a.protocol === 'binary' ? stats.reduce((s, x) => s + (x.frames_acked ?? 0), 0) : null,
    frames_rejected: a.protocol === 'binary' ? stats.reduce((s, x) => s + (x.frames_rejected ?? 0), 0) : null,
    detections: sum('detections'),
    target_detections: sum('target_detections'),
    clutter_detections: sum('clutter_detections'),
    nodes: stats,
  };
  if (a.json) {
    out(`${JSON.stringify(summary)}\n`);
  } else {
    const lines = [
      `simulated ${a.nodes} node${a.nodes === 1 ? '' : 's'} (${a.protocol} protocol, seed ${a.seed}) for ${summary.duration_s.toFixed(1)} s against ${a.host}:${a.port}`,
      `frames sent ${summary.frames_sent} (${(summary.frames_sent / Math.max(elapsed, 1e-3)).toFixed(1)}/s)`
        + `${a.protocol === 'binary' ? `, acked ${summary.frames_acked}, rejected ${summary.frames_rejected}` : ''}`
        + `; detections ${summary.detections} (targets ${summary.target_detections}, clutter ${summary.clutter_detections})`,
      ...stats.map((s) => `  ${s.node_id}: ${s.frames_sent} frames${s.frames_acked !== null ? `, ${s.frames_acked} acked` : ''}${s.error ? `; FAILED: ${s.error}` : ''}`),
    ];
    out(`${lines.join('\n')}\n`);
  }
  for (const s of stats) if (s.error) err(`radar-ingest simulate: ${s.node_id}: ${s.error}\n`);
  return ok ? 0 : 1;
}
