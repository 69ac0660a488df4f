// Workload `connections`: N mostly idle node connections against a real Engine and
// against a bare read-and-discard server (raw), in fresh server processes per phase
// (accept, memory, idle, heartbeats, books, stop). Details: docs/benchmarks.md.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance, PerformanceObserver, monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import {
  parseConfig, Engine, C_HEARTBEATS, C_BYTES_RECEIVED, C_CONNECTIONS_ACCEPTED, C_ACKS_SENT, CLOSE_REASONS, REJECT_REASONS, closeIndex,
} from './lib/engine-api.js';
import { snapshot, delta, sleep, waitQuiet, procStatus, type ProbeSnapshot } from './lib/probes.js';
import {
  isBinary, type ConnMix, type ConnClientOptions, type ClientSample, type CloseReport, type ToClient, type FromClient,
} from './lib/loadgen-idle.js';
import { IpcChild } from './lib/ipc.js';
import { ENGINE_BACKLOG, RawServer } from './lib/raw-server.js';
import { byLabel, scrapeMetrics } from './lib/metrics.js';
import { defineWorkload, num, str, SAVE_OPTION, type OptValues } from './lib/options.js';
import { boundRun, gitInfo, machineInfo, report, summaryLine } from './lib/results.js';
import { median, round } from './lib/stats.js';
import { counterSum } from './lib/engine-run.js';

const LOADGEN = fileURLToPath(new URL('./lib/loadgen.js', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const TOKEN = 'bench-secret';
const GIB = 2 ** 30;
/** Issue 6: 10,000 node connections under 1 GiB of engine RSS. */
const RSS_TARGET = { connections: 10_000, max_bytes: GIB };
/** monitorEventLoopDelay sampling period; the histogram holds whole intervals, lag = value - this. */
const LAG_RES_MS = 10;

type Kind = 'engine' | 'raw';

interface Mem {
  rss: number;
  heap_used: number;
  heap_total: number;
  external: number;
  array_buffers: number;
  /** /proc/self/status, bytes. */
  rss_anon: number;
  rss_file: number;
  rss_shmem: number;
  vm_hwm: number;
  vm_size: number;
  threads: number;
}

interface Lag {
  /** Event-loop lag, ms (interval recorded by monitorEventLoopDelay minus its resolution). */
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  samples: number;
}

interface GcStats {
  count: number;
  major: number;
  ms: number;
  max_ms: number;
}

interface CpuStats {
  seconds: number;
  /** Cores (1 = one core busy the whole time). */
  process_cpu: number;
  main_thread_cpu: number | null;
  main_elu: number;
  worker_elu: number[];
  machine_cpu_busy: number | null;
  machine_cpu: { user: number; system: number; softirq: number; steal: number } | null;
  lag: Lag;
  gc: GcStats;
}

interface ServerCounters {
  at: number;
  open: number;
  /** Engine: nodes connected (claimed and granted); raw: connections that sent their first bytes. */
  ready: number;
  heartbeats: number;
  bytes: number;
  accepted: number;
  acks: number;
  /** Engine: connections_closed_total by reason (non-zero only); raw: {peer_closed}. */
  closed: Record<string, number>;
  /** Engine: connections_rejected_total by reason (non-zero only). */
  rejected: Record<string, number>;
}

interface AcceptServer {
  ok: boolean;
  all_open_at: number;
  all_ready_at: number;
  counters: ServerCounters;
  cpu: CpuStats;
}

type ToServer =
  | { t: 'start'; kind: Kind; token: string; maxConnections: number; logLevel: string | null; maxSeconds: number }
  | { t: 'arm'; n: number; lineN: number }
  | { t: 'await-ready'; timeoutMs: number }
  | { t: 'mem'; gc: boolean }
  | { t: 'snap' }
  | { t: 'window-start' }
  | { t: 'window-end' }
  | { t: 'stop' };

type FromServer =
  | { t: 'started'; port: number; httpPort: number | null; pid: number; shards: number; config: Record<string, unknown>; mem: Mem }
  | { t: 'armed' }
  | { t: 'ready'; r: AcceptServer }
  | { t: 'mem'; mem: Mem }
  | { t: 'snap'; c: ServerCounters }
  | { t: 'window-started'; c: ServerCounters }
  | { t: 'window'; cpu: CpuStats; c: ServerCounters }
  | { t: 'stopped'; stop_s: number; c: ServerCounters }
  | { t: 'fail'; error: string };

const nowEpoch = (): number => performance.timeOrigin + performance.now();

function memSnap(doGc: boolean): Mem {
  const g = (globalThis as { gc?: () => void }).gc;
  if (doGc && g) {
    g();
    g();
  }
  const m = process.memoryUsage();
  const s = procStatus();
  return {
    rss: m.rss, heap_used: m.heapUsed, heap_total: m.heapTotal, external: m.external, array_buffers: m.arrayBuffers,
    rss_anon: s.RssAnon ?? NaN, rss_file: s.RssFile ?? NaN, rss_shmem: s.RssShmem ?? NaN, vm_hwm: s.VmHWM ?? NaN,
    vm_size: s.VmSize ?? NaN, threads: s.Threads ?? NaN,
  };
}

function serverMain(): void {
  const send = (m: FromServer): void => {
    if (process.connected) process.send!(m);
  };
  process.on('disconnect', () => process.exit(3));
  const lag: IntervalHistogram = monitorEventLoopDelay({ resolution: LAG_RES_MS });
  lag.enable();
  const gcs: GcStats = { count: 0, major: 0, ms: 0, max_ms: 0 };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcs.count++;
      gcs.ms += e.duration;
      if (e.duration > gcs.max_ms) gcs.max_ms = e.duration;
      if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === 4) gcs.major++; // NODE_PERFORMANCE_GC_MAJOR
    }
  }).observe({ entryTypes: ['gc'] });

  let kind: Kind = 'engine';
  let engine: Engine | null = null;
  let raw: RawServer | null = null;
  let nodesUp = 0;
  let nodesUpAt = 0;
  let target = { n: Infinity, lineN: 0 };

  const workers = (): readonly import('node:worker_threads').Worker[] => (engine ? engine.pool.threads : []);
  const sumCounter = (i: number): number => (engine ? counterSum(engine, i) : 0);
  const counters = (): ServerCounters => {
    if (raw) {
      return {
        at: nowEpoch(), open: raw.sockets.size, ready: raw.firstData, heartbeats: NaN, bytes: raw.bytes, accepted: raw.accepted, acks: NaN,
        closed: raw.closedByPeer ? { peer_closed: raw.closedByPeer } : {}, rejected: {},
      };
    }
    const e = engine!;
    const closed: Record<string, number> = {};
    for (const r of CLOSE_REASONS) {
      const v = sumCounter(closeIndex(r));
      if (v) closed[r] = v;
    }
    const rejected: Record<string, number> = {};
    for (const r of REJECT_REASONS) if (closed[r]) rejected[r] = closed[r]!;
    return {
      at: nowEpoch(), open: e.handoff.open, ready: nodesUp, heartbeats: sumCounter(C_HEARTBEATS), bytes: sumCounter(C_BYTES_RECEIVED),
      accepted: sumCounter(C_CONNECTIONS_ACCEPTED), acks: sumCounter(C_ACKS_SENT), closed, rejected,
    };
  };

  interface Mark { p: ProbeSnapshot; gc: GcStats }
  const mark = (): Mark => {
    lag.reset();
    return { p: snapshot(workers()), gc: { ...gcs } };
  };
  const cpuSince = (m: Mark): CpuStats => {
    const d = delta(m.p, snapshot(workers()));
    const lagMs = (q: number): number => round(Math.max(0, lag.percentile(q) / 1e6 - LAG_RES_MS), 2);
    return {
      seconds: round(d.seconds, 3),
      process_cpu: round(d.processCpu, 4),
      main_thread_cpu: d.mainThreadCpu === null ? null : round(d.mainThreadCpu, 4),
      main_elu: round(d.mainElu, 4),
      worker_elu: d.workerElu.map((x) => round(x, 4)),
      machine_cpu_busy: d.machineBusy === null ? null : round(d.machineBusy, 3),
      machine_cpu: d.machine,
      lag: {
        p50_ms: lagMs(50), p99_ms: lagMs(99), max_ms: round(Math.max(0, lag.max / 1e6 - LAG_RES_MS), 2), samples: lag.count,
      },
      gc: { count: gcs.count - m.gc.count, major: gcs.major - m.gc.major, ms: round(gcs.ms - m.gc.ms, 1), max_ms: round(gcs.max_ms, 1) },
    };
  };

  // ---- accept tracking ----
  let acceptMark: Mark | null = null;
  let allOpenAt = 0;
  let allReadyAt = 0;
  let acceptResult: AcceptServer | null = null;
  let poll: NodeJS.Timeout | null = null;
  const readyWaiters: Array<() => void> = [];
  const checkAccept = (): void => {
    const c = counters();
    if (!allOpenAt && c.accepted >= target.n) allOpenAt = c.at;
    const ready = kind === 'raw'
      ? raw!.allReadyAt > 0
      : nodesUpAt > 0 && c.heartbeats >= target.lineN;
    if (ready && !acceptResult) {
      allReadyAt = kind === 'raw' ? raw!.allReadyAt : Math.max(nodesUpAt, c.at);
      finishAccept(true);
    }
  };
  const finishAccept = (ok: boolean): void => {
    if (poll) clearInterval(poll);
    poll = null;
    acceptResult = { ok, all_open_at: allOpenAt, all_ready_at: allReadyAt, counters: counters(), cpu: cpuSince(acceptMark!) };
    for (const w of readyWaiters.splice(0)) w();
  };

  let windowMark: Mark | null = null;

  const handle = async (m: ToServer): Promise<void> => {
    switch (m.t) {
      case 'start': {
        setTimeout(() => {
          process.stderr.write(`conn-server: hard deadline of ${m.maxSeconds} s reached, exiting\n`);
          process.exit(4);
        }, m.maxSeconds * 1000).unref();
        kind = m.kind;
        let port: number;
        let httpPort: number | null = null;
        let config: Record<string, unknown> = {};
        let shards = 0;
        if (kind === 'engine') {
          const raw0: Record<string, unknown> = {
            sink: 'discard',
            tcp_server: { enabled: true, host: '127.0.0.1', port: 0, token: m.token },
            http: { host: '127.0.0.1', port: 0 },
            limits: { max_connections: m.maxConnections },
            agents: { key_file: join(tmpdir(), 'radar-ingest-bench-connections', 'ed25519.pem') },
          };
          if (m.logLevel) raw0.log = { level: m.logLevel };
          config = raw0;
          const cfg = parseConfig(raw0, {}); // {}: RADAR_INGEST_TOKEN must not override the bench token
          engine = new Engine({
            config: cfg,
            hooks: {
              onNodeConnected: () => {
                if (++nodesUp === target.n) nodesUpAt = nowEpoch();
              },
              onNodeDisconnected: () => {
                nodesUp--;
              },
            },
          });
          await engine.start();
          port = engine.tcpAddress!.port;
          httpPort = engine.httpAddress!.port;
          shards = cfg.shards;
        } else {
          raw = new RawServer();
          port = (await raw.listen()).port;
        }
        await sleep(300);
        send({ t: 'started', port, httpPort, pid: process.pid, shards, config, mem: memSnap(true) });
        break;
      }
      case 'arm':
        target = { n: m.n, lineN: m.lineN };
        if (raw) raw.target = m.n;
        allOpenAt = 0;
        allReadyAt = 0;
        acceptResult = null;
        acceptMark = mark();
        poll = setInterval(checkAccept, 5);
        send({ t: 'armed' });
        break;
      case 'await-ready': {
        if (!acceptResult) {
          let timer: NodeJS.Timeout | null = null;
          await Promise.race([
            new Promise<void>((r) => readyWaiters.push(r)),
            new Promise<void>((r) => (timer = setTimeout(r, m.timeoutMs))),
          ]);
          if (timer) clearTimeout(timer);
          if (!acceptResult) finishAccept(false);
        }
        send({ t: 'ready', r: acceptResult! });
        break;
      }
      case 'mem':
        send({ t: 'mem', mem: memSnap(m.gc) });
        break;
      case 'snap':
        send({ t: 'snap', c: counters() });
        break;
      case 'window-start':
        windowMark = mark();
        send({ t: 'window-started', c: counters() });
        break;
      case 'window-end':
        send({ t: 'window', cpu: cpuSince(windowMark!), c: counters() });
        break;
      case 'stop': {
        const t0 = performance.now();
        if (engine) await engine.stop();
        if (raw) await raw.stop();
        send({ t: 'stopped', stop_s: round((performance.now() - t0) / 1000, 3), c: counters() });
        setTimeout(() => process.exit(0), 50);
        break;
      }
    }
  };
  process.on('message', (m: ToServer) => {
    handle(m).catch((err: Error) => {
      send({ t: 'fail', error: err.stack ?? err.message });
      setTimeout(() => process.exit(1), 50);
    });
  });
}

/** The engine's log (pino JSON lines on the server child's stdout): counts by level, warnings and errors kept. */
class LogTap {
  lines = 0;
  readonly byLevel: Record<string, number> = {};
  readonly byMsg: Record<string, number> = {};
  readonly problems: Array<Record<string, unknown>> = [];
  private rest = '';
  private static readonly LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

  constructor(stream: NodeJS.ReadableStream) {
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => {
      const parts = (this.rest + d).split('\n');
      this.rest = parts.pop() ?? '';
      for (const p of parts) this.line(p);
    });
  }

  private line(s: string): void {
    if (s.trim() === '') return;
    this.lines++;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(s) as Record<string, unknown>;
    } catch {
      this.byLevel.unparsed = (this.byLevel.unparsed ?? 0) + 1;
      if (this.problems.length < 10) this.problems.push({ text: s.slice(0, 300) });
      return;
    }
    const level = LogTap.LEVELS[o.level as number] ?? String(o.level);
    this.byLevel[level] = (this.byLevel[level] ?? 0) + 1;
    const key = `${level}: ${String(o.msg)}`;
    this.byMsg[key] = (this.byMsg[key] ?? 0) + 1;
    if ((o.level as number) >= 40 && this.problems.length < 10) {
      const { time: _t, pid: _p, hostname: _h, service: _s, ...rest } = o;
      this.problems.push(rest);
    }
  }

  private beforeStop: { lines: number; by_level: Record<string, number> } | null = null;

  /** The engine is about to be stopped: what was logged until now is kept apart. */
  markStop(): void {
    this.beforeStop = { lines: this.lines, by_level: { ...this.byLevel } };
  }

  summary(): {
    lines: number; by_level: Record<string, number>; before_stop: { lines: number; by_level: Record<string, number> } | null;
    by_message: Record<string, number>; warnings_and_errors: Array<Record<string, unknown>>;
  } {
    return { lines: this.lines, by_level: this.byLevel, before_stop: this.beforeStop, by_message: this.byMsg, warnings_and_errors: this.problems };
  }
}

/** Machine-wide TCP counters (/proc/net/netstat, /proc/net/snmp): listen-queue drops, retransmits, resets. */
function netstat(): Record<string, number> {
  const want = ['ListenOverflows', 'ListenDrops', 'TCPReqQFullDrop', 'TCPReqQFullDoCookies', 'SyncookiesSent', 'TCPTimeouts', 'RetransSegs', 'AttemptFails', 'EstabResets', 'TCPAbortOnData', 'TCPAbortOnClose'];
  const out: Record<string, number> = {};
  for (const f of ['/proc/net/netstat', '/proc/net/snmp']) {
    let lines: string[];
    try {
      lines = readFileSync(f, 'utf8').trim().split('\n');
    } catch {
      continue;
    }
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const keys = lines[i]!.split(/\s+/).slice(1);
      const vals = lines[i + 1]!.split(/\s+/).slice(1);
      keys.forEach((k, j) => {
        if (want.includes(k)) out[k] = Number(vals[j]);
      });
    }
  }
  return out;
}

function netstatDelta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.keys(b).map((k) => [k, (b[k] ?? 0) - (a[k] ?? 0)]));
}

/** The listen socket's backlog as the kernel has it (ss: Send-Q of a LISTEN socket), or null. */
function listenBacklog(port: number): number | null {
  try {
    const out = execFileSync('ss', ['-ltnH', `sport = :${port}`], { stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).toString().trim();
    const f = out.split('\n')[0]?.trim().split(/\s+/) ?? [];
    const v = Number(f[2]);
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}

function sysctl(path: string): number | null {
  try {
    return Number(readFileSync(path, 'utf8').trim().split(/\s+/)[0]);
  } catch {
    return null;
  }
}

interface Scrape {
  ms: number;
  bytes: number;
  connections_open: number;
  connections_accepted: number;
  nodes: number;
  nodes_connected: number;
  heartbeats: number;
  ring_capacity_bytes: number;
  process_resident_memory_bytes: number;
  rejected: Record<string, number>;
  closed: Record<string, number>;
}

/** GET /metrics and the series this benchmark checks. */
async function scrape(port: number): Promise<Scrape> {
  const { m, bytes, ms } = await scrapeMetrics(port);
  const v = (name: string): number => m.get(name) ?? NaN;
  return {
    ms: round(ms, 1), bytes,
    connections_open: v('radar_ingest_connections_open'),
    connections_accepted: v('radar_ingest_connections_accepted_total'),
    nodes: v('radar_ingest_nodes'),
    nodes_connected: v('radar_ingest_nodes_connected'),
    heartbeats: v('radar_ingest_heartbeats_total'),
    ring_capacity_bytes: v('radar_ingest_ring_capacity_bytes'),
    process_resident_memory_bytes: v('process_resident_memory_bytes'),
    rejected: byLabel(m, 'radar_ingest_connections_rejected_total', 'reason'),
    closed: byLabel(m, 'radar_ingest_connections_closed_total', 'reason'),
  };
}

interface WindowResult {
  server: CpuStats;
  c0: ServerCounters;
  c1: ServerCounters;
  k0: ClientSample;
  k1: ClientSample;
}

let markSeq = 0;

async function measureWindow(server: IpcChild<ToServer, FromServer>, client: IpcChild<ToClient, FromClient>, seconds: number): Promise<WindowResult> {
  const id0 = ++markSeq;
  const [a, k0] = await Promise.all([
    server.request<Extract<FromServer, { t: 'window-started' }>>({ t: 'window-start' }, 'window-started', 10000),
    client.request<Extract<FromClient, { t: 'mark' }>>({ t: 'mark', id: id0 }, `mark:${id0}`, 10000),
  ]);
  await sleep(seconds * 1000);
  const id1 = ++markSeq;
  const [b, k1] = await Promise.all([
    server.request<Extract<FromServer, { t: 'window' }>>({ t: 'window-end' }, 'window', 10000),
    client.request<Extract<FromClient, { t: 'mark' }>>({ t: 'mark', id: id1 }, `mark:${id1}`, 10000),
  ]);
  return { server: b.cpu, c0: a.c, c1: b.c, k0: k0.s, k1: k1.s };
}

type WindowCpu = Omit<CpuStats, 'lag'> & {
  lag_ms: Lag;
  client_cpu: number;
  client_elu: number;
  /** Machine CPU not used by the server, the client or softirq (cores): other jobs on the machine. Near 0 when quiet. */
  other_cpu: number | null;
};

function cpuOf(w: WindowResult): WindowCpu {
  const { lag, ...s } = w.server;
  const ks = (w.k1.at - w.k0.at) / 1000;
  const clientCpu = (w.k1.cpu_us - w.k0.cpu_us) / 1e6 / ks;
  return {
    ...s,
    lag_ms: lag,
    client_cpu: round(clientCpu, 4),
    client_elu: round((w.k1.elu_active_ms - w.k0.elu_active_ms) / 1000 / ks, 4),
    other_cpu: s.machine_cpu_busy === null || !s.machine_cpu ? null : round(s.machine_cpu_busy - s.process_cpu - clientCpu - s.machine_cpu.softirq, 3),
  };
}

export interface PhaseResult {
  kind: Kind;
  connections: number;
  binary: number;
  line: number;
  server_pid: number;
  shards: number;
  listen_backlog: number | null;
  accept: Record<string, unknown>;
  memory: Record<string, unknown>;
  idle: Record<string, unknown>;
  heartbeats: Record<string, unknown>;
  metrics_scrape: { after_accept: Scrape | null; after_window: Scrape | null };
  books: Record<string, unknown>;
  stop: Record<string, unknown>;
  log: ReturnType<LogTap['summary']> | null;
  /** The wait for a quiet machine before the phase (busy: cores busy at its end, other jobs). */
  quiet_wait: { waited_s: number; busy: number | null } | null;
  violations: string[];
  /** Flat numbers compared across reps and between engine and raw. */
  key: Record<string, number>;
  duration_s: number;
}

type Resolved = OptValues<typeof options>;

function maxConnectionsFor(n: number): number {
  return Math.max(10_000, n) + Math.max(1024, Math.ceil(n / 10));
}

async function runPhase(kind: Kind, o: Resolved): Promise<PhaseResult> {
  const quiet = o.quietWait > 0 ? await waitQuiet(o.quietWait) : null;
  if (quiet && (quiet.busy ?? 0) >= 0.3) process.stderr.write(`[${kind}] machine still busy (${quiet.busy} cores) after ${quiet.waited_s} s; measuring anyway\n`);
  const t0 = performance.now();
  const n = o.connections;
  let lineN = 0;
  for (let i = 0; i < n; i++) if (!isBinary(o.mix, i)) lineN++;
  const say = (s: string): boolean => process.stderr.write(`[${kind}] ${s}\n`);
  const maxSeconds = Math.ceil(o.idle + o.warmup + o.duration + 180);
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--inspect')).concat('--expose-gc');
  const server = new IpcChild<ToServer, FromServer>(`${kind} server`, SELF, ['--conn-server'], { execArgv, pipeStdout: true });
  const log = kind === 'engine' ? new LogTap(server.proc.stdout!) : null;
  if (!log) server.proc.stdout!.resume();
  let client: IpcChild<ToClient, FromClient> | null = null;
  const violations: string[] = [];
  try {
    const started = await server.request<Extract<FromServer, { t: 'started' }>>({
      t: 'start', kind, token: TOKEN, maxConnections: maxConnectionsFor(n), logLevel: o.logLevel || null, maxSeconds,
    }, 'started', 60000);
    const backlog = listenBacklog(started.port);
    client = new IpcChild<ToClient, FromClient>(`${kind} client`, LOADGEN, ['--loadgen-child', 'idle'], { execArgv: [] });
    const opts: ConnClientOptions = {
      host: '127.0.0.1', port: started.port, connections: n, token: TOKEN, mix: o.mix, parallel: o.parallel, nodePrefix: 'conn-', maxSeconds,
    };

    // ---- accept ----
    const ns0 = netstat();
    await server.request({ t: 'arm', n, lineN }, 'armed', 10000);
    const conn = (await client.request<Extract<FromClient, { t: 'connected' }>>({ t: 'connect', opts }, 'connected', 120000)).r;
    const acc = (await server.request<Extract<FromServer, { t: 'ready' }>>({ t: 'await-ready', timeoutMs: conn.ready === n ? 30000 : 2000 }, 'ready', 60000)).r;
    const ns1 = netstat();
    const readyAt = Math.max(acc.all_ready_at || Infinity, conn.last_ready_at);
    const acceptS = (readyAt - conn.first_connect_at) / 1000;
    say(`accept: ${conn.ready}/${n} ready in ${round(acceptS, 2)} s (server saw all: ${acc.ok}), connect p99 ${conn.connect_ms.p99} ms, ready p99 ${conn.ready_ms.p99} ms`);
    const tcp = netstatDelta(ns0, ns1);

    // ---- memory after accept ----
    await sleep(1000);
    const memConnected = (await server.request<Extract<FromServer, { t: 'mem' }>>({ t: 'mem', gc: true }, 'mem', 30000)).mem;
    const scrape1 = started.httpPort !== null ? await scrape(started.httpPort) : null;

    // ---- idle ----
    await sleep(300);
    const idle = o.idle > 0 ? await measureWindow(server, client, o.idle) : null;

    // ---- heartbeats ----
    client.send({ t: 'hb-start', heartbeatMs: o.heartbeatMs });
    await sleep(o.warmup * 1000);
    const hb = await measureWindow(server, client, o.duration);
    const stopped = (await client.request<Extract<FromClient, { t: 'hb-stopped' }>>({ t: 'hb-stop' }, 'hb-stopped', 15000)).s;
    // Let the server count what is in flight (bounded).
    const hbSentTotal = stopped.hb_binary + stopped.hb_line;
    let final = (await server.request<Extract<FromServer, { t: 'snap' }>>({ t: 'snap' }, 'snap', 10000)).c;
    for (let i = 0; i < 50; i++) {
      const done = kind === 'engine' ? final.heartbeats >= hbSentTotal && final.bytes >= stopped.bytes_sent : final.bytes >= stopped.bytes_sent;
      if (done) break;
      await sleep(100);
      final = (await server.request<Extract<FromServer, { t: 'snap' }>>({ t: 'snap' }, 'snap', 10000)).c;
    }
    const memAfter = (await server.request<Extract<FromServer, { t: 'mem' }>>({ t: 'mem', gc: true }, 'mem', 30000)).mem;
    const scrape2 = started.httpPort !== null ? await scrape(started.httpPort) : null;
    const beforeStop = (await server.request<Extract<FromServer, { t: 'snap' }>>({ t: 'snap' }, 'snap', 10000)).c;
    const clientBeforeStop = (await client.request<Extract<FromClient, { t: 'mark' }>>({ t: 'mark', id: ++markSeq }, `mark:${markSeq}`, 10000)).s;

    // ---- stop: the server closes every connection ----
    log?.markStop();
    const closedP = client.request<Extract<FromClient, { t: 'closed' }>>(null, 'closed', 40000);
    client.send({ t: 'expect-close', timeoutMs: 30000 });
    const stop = await server.request<Extract<FromServer, { t: 'stopped' }>>({ t: 'stop' }, 'stopped', 60000);
    const closed: CloseReport = (await closedP).r;
    client.send({ t: 'exit' });
    await Promise.all([server.end(5000), client.end(5000)]);
    say(`stopped in ${stop.stop_s} s; client saw ${closed.closed}/${n} closes`);

    // ---- results ----
    const rssPerConn = (memConnected.rss - started.mem.rss) / n;
    const hbS = (hb.k1.at - hb.k0.at) / 1000;
    const hbSent = hb.k1.hb_binary + hb.k1.hb_line - hb.k0.hb_binary - hb.k0.hb_line;
    const hbCounted = hb.c1.heartbeats - hb.c0.heartbeats;
    const bytesIn = hb.c1.bytes - hb.c0.bytes;
    const perHb = (cores: number | null): number => (cores === null ? NaN : round((cores * hb.server.seconds * 1e6) / hbSent, 2));
    const accept = {
      wall_s: round(acceptS, 3),
      conns_per_s: round(n / acceptS),
      /** First connect() to the server having accepted all N TCP connections. */
      all_accepted_s: acc.all_open_at ? round((acc.all_open_at - conn.first_connect_at) / 1000, 3) : null,
      /** First connect() to the server seeing all N ready (engine: nodes connected + line heartbeats counted). */
      server_all_ready_s: acc.all_ready_at ? round((acc.all_ready_at - conn.first_connect_at) / 1000, 3) : null,
      /** First connect() to the last connection ready at the client (binary: welcome received). */
      client_last_ready_s: round((conn.last_ready_at - conn.first_connect_at) / 1000, 3),
      client_last_tcp_connect_s: round((conn.last_tcp_connect_at - conn.first_connect_at) / 1000, 3),
      server_saw_all: acc.ok,
      ready: conn.ready,
      failed: conn.failed,
      connect_ms: conn.connect_ms,
      ready_ms: conn.ready_ms,
      slow_connects_over_900ms: conn.slow_connects,
      parallel: o.parallel,
      server_cpu: {
        ...acc.cpu,
        cpu_us_per_conn: round((acc.cpu.process_cpu * acc.cpu.seconds * 1e6) / n, 1),
        main_cpu_us_per_conn: acc.cpu.main_thread_cpu === null ? null : round((acc.cpu.main_thread_cpu * acc.cpu.seconds * 1e6) / n, 1),
      },
      server_counters: acc.counters,
      tcp_machine_counters_delta: tcp,
      client_errors: conn.errors,
      client_error_count: conn.error_count,
      client_rss_bytes: conn.client_rss_bytes,
      /** Client CPU while connecting, cores (1 = the client's one thread saturated: the client is the limit). */
      client_cpu: round(conn.client_cpu_s / ((conn.last_ready_at - conn.first_connect_at) / 1000), 3),
    };
    const mib = (x: number): number => round(x / 2 ** 20, 1);
    const memory = {
      before: started.mem,
      after_accept: memConnected,
      after_window: memAfter,
      rss_before_mib: mib(started.mem.rss),
      rss_after_accept_mib: mib(memConnected.rss),
      rss_after_window_mib: mib(memAfter.rss),
      peak_rss_mib: mib(memAfter.vm_hwm),
      rss_per_conn_bytes: round(rssPerConn),
      rss_anon_per_conn_bytes: round((memConnected.rss_anon - started.mem.rss_anon) / n),
      heap_used_per_conn_bytes: round((memConnected.heap_used - started.mem.heap_used) / n),
      external_per_conn_bytes: round((memConnected.external - started.mem.external) / n),
      array_buffers_per_conn_bytes: round((memConnected.array_buffers - started.mem.array_buffers) / n),
      vm_size_per_conn_bytes: round((memConnected.vm_size - started.mem.vm_size) / n),
      rss_growth_in_window_bytes: memAfter.rss - memConnected.rss,
      note: 'after gc() in the server process; RSS from /proc/self/status (all threads); heap/external/arrayBuffers are the main isolate only',
    };
    const heartbeats = {
      interval_ms: o.heartbeatMs,
      per_interval: n,
      warmup_s: o.warmup,
      window_s: round(hbS, 3),
      sent_in_window: hbSent,
      sent_per_s: round(hbSent / hbS, 1),
      counted_in_window: kind === 'engine' ? hbCounted : null,
      counted_per_s: kind === 'engine' ? round(hbCounted / hb.server.seconds, 1) : null,
      bytes_received_per_s: round(bytesIn / hb.server.seconds),
      acks_received: hb.k1.acks - hb.k0.acks,
      ...cpuOf(hb),
      cpu_us_per_hb: perHb(hb.server.process_cpu),
      main_cpu_us_per_hb: perHb(hb.server.main_thread_cpu),
      main_busy_us_per_hb: round((hb.server.main_elu * hb.server.seconds * 1e6) / hbSent, 2),
      /** Process CPU per heartbeat minus what the same connections cost with no traffic (the idle window). */
      cpu_us_per_hb_above_idle: idle ? round(((hb.server.process_cpu - idle.server.process_cpu) * hb.server.seconds * 1e6) / hbSent, 2) : null,
      client_hb_skipped: hb.k1.hb_skipped - hb.k0.hb_skipped,
      client_max_writable: hb.k1.max_writable,
    };
    const books = {
      hb_sent_total: hbSentTotal,
      hb_counted_total: kind === 'engine' ? final.heartbeats : null,
      bytes_sent_total: stopped.bytes_sent,
      bytes_received_total: final.bytes,
      acks_received_total: clientBeforeStop.acks,
      acks_sent_total: kind === 'engine' ? beforeStop.acks : null,
      binary_hb_total: stopped.hb_binary,
      connections_open_before_stop: beforeStop.open,
      ready_before_stop: beforeStop.ready,
      closed_before_stop: beforeStop.closed,
      rejected_before_stop: beforeStop.rejected,
      client_closed_early: clientBeforeStop.closed_early,
      client_host_errors: clientBeforeStop.host_errors,
    };
    const stopInfo = {
      stop_s: stop.stop_s,
      server_closed_by_reason: stop.c.closed,
      client_saw_closed: closed.closed,
      client_still_open: closed.still_open,
      client_close_wait_ms: closed.wait_ms,
      client_host_error_codes_at_stop: closed.host_error_codes,
    };

    // ---- checks ----
    if (conn.failed > 0) violations.push(`${conn.failed} connections failed to become ready: ${conn.errors.slice(0, 3).join('; ')}`);
    if (!acc.ok) violations.push(`the server did not see all ${n} connections ready (counters ${JSON.stringify(acc.counters)})`);
    if (conn.slow_connects > 0) violations.push(`${conn.slow_connects} connects took over 900 ms (SYN retransmitted: listen queue full?)`);
    if ((tcp.ListenOverflows ?? 0) > 0 || (tcp.ListenDrops ?? 0) > 0) violations.push(`machine listen-queue drops during accept: ListenOverflows ${tcp.ListenOverflows}, ListenDrops ${tcp.ListenDrops}`);
    if (clientBeforeStop.closed_early > 0) violations.push(`${clientBeforeStop.closed_early} connections closed by the server before the stop`);
    if (Object.keys(beforeStop.closed).length > 0) violations.push(`connections closed before the stop: ${JSON.stringify(beforeStop.closed)}`);
    if (Object.keys(beforeStop.rejected).length > 0) violations.push(`connections rejected: ${JSON.stringify(beforeStop.rejected)}`);
    if (beforeStop.open !== n) violations.push(`server holds ${beforeStop.open} connections, not ${n}`);
    if (kind === 'engine' && final.heartbeats !== hbSentTotal) violations.push(`heartbeats sent ${hbSentTotal} != counted ${final.heartbeats}`);
    if (final.bytes !== stopped.bytes_sent) violations.push(`bytes sent ${stopped.bytes_sent} != received ${final.bytes}`);
    if (clientBeforeStop.host_errors > 0) violations.push(`${clientBeforeStop.host_errors} error messages from the host before the stop: ${conn.errors.slice(0, 3).join('; ')}`);
    if (kind === 'engine' && clientBeforeStop.acks !== beforeStop.acks) violations.push(`engine sent ${beforeStop.acks} acks, the client received ${clientBeforeStop.acks}`);
    if (kind === 'engine' && clientBeforeStop.acks < stopped.hb_binary) violations.push(`binary heartbeats ${stopped.hb_binary} but only ${clientBeforeStop.acks} acks (one per heartbeat expected at this rate)`);
    if (hb.k1.hb_skipped - hb.k0.hb_skipped > 0) violations.push(`client skipped ${hb.k1.hb_skipped - hb.k0.hb_skipped} heartbeats in the window`);
    for (const s of [scrape1, scrape2]) {
      if (!s) continue;
      if (s.connections_open !== n) violations.push(`/metrics connections_open ${s.connections_open} != ${n}`);
      if (s.nodes_connected !== n) violations.push(`/metrics nodes_connected ${s.nodes_connected} != ${n}`);
      if (Object.keys(s.rejected).length > 0) violations.push(`/metrics connections_rejected_total ${JSON.stringify(s.rejected)}`);
    }
    if (closed.closed !== n) violations.push(`client saw ${closed.closed} of ${n} connections closed at the stop`);
    const logSummary = log?.summary() ?? null;
    if (logSummary && ((logSummary.by_level.error ?? 0) > 0 || (logSummary.by_level.fatal ?? 0) > 0)) {
      violations.push(`engine logged ${logSummary.by_level.error ?? 0} errors, ${logSummary.by_level.fatal ?? 0} fatal`);
    }
    const warnBefore = logSummary?.before_stop?.by_level.warn ?? 0;
    if (warnBefore > 0) violations.push(`engine logged ${warnBefore} warnings before the stop`);

    const key: Record<string, number> = {
      accept_s: round(acceptS, 3),
      all_accepted_s: accept.all_accepted_s ?? NaN,
      accept_conns_per_s: accept.conns_per_s,
      accept_cpu_us_per_conn: accept.server_cpu.cpu_us_per_conn,
      accept_main_cpu_us_per_conn: accept.server_cpu.main_cpu_us_per_conn ?? NaN,
      accept_lag_p99_ms: acc.cpu.lag.p99_ms,
      accept_lag_max_ms: acc.cpu.lag.max_ms,
      accept_gc_ms: acc.cpu.gc.ms,
      accept_main_elu: acc.cpu.main_elu,
      accept_client_cpu: accept.client_cpu,
      connect_p99_ms: conn.connect_ms.p99,
      ready_p99_ms: conn.ready_ms.p99,
      rss_before_mib: memory.rss_before_mib,
      rss_after_accept_mib: memory.rss_after_accept_mib,
      rss_after_window_mib: memory.rss_after_window_mib,
      peak_rss_mib: memory.peak_rss_mib,
      rss_per_conn_bytes: memory.rss_per_conn_bytes,
      heap_used_per_conn_bytes: memory.heap_used_per_conn_bytes,
      heap_used_after_accept_mib: mib(memConnected.heap_used),
      idle_process_cpu: idle?.server.process_cpu ?? NaN,
      idle_main_elu: idle?.server.main_elu ?? NaN,
      idle_lag_p99_ms: idle?.server.lag.p99_ms ?? NaN,
      hb_sent_per_s: heartbeats.sent_per_s,
      hb_counted_per_s: heartbeats.counted_per_s ?? NaN,
      hb_process_cpu: hb.server.process_cpu,
      hb_main_thread_cpu: hb.server.main_thread_cpu ?? NaN,
      hb_main_elu: hb.server.main_elu,
      hb_worker_elu: hb.server.worker_elu[0] ?? NaN,
      hb_cpu_us_per_hb: heartbeats.cpu_us_per_hb,
      hb_main_cpu_us_per_hb: heartbeats.main_cpu_us_per_hb,
      hb_cpu_us_per_hb_above_idle: heartbeats.cpu_us_per_hb_above_idle ?? NaN,
      hb_other_cpu: cpuOf(hb).other_cpu ?? NaN,
      hb_lag_p50_ms: hb.server.lag.p50_ms,
      hb_lag_p99_ms: hb.server.lag.p99_ms,
      hb_lag_max_ms: hb.server.lag.max_ms,
      hb_gc_ms: hb.server.gc.ms,
      hb_client_cpu: heartbeats.client_cpu,
      metrics_scrape_ms: scrape2?.ms ?? NaN,
      stop_s: stop.stop_s,
    };
    return {
      kind, connections: n, binary: conn.binary, line: conn.line, server_pid: started.pid, shards: started.shards, listen_backlog: backlog,
      accept, memory,
      idle: idle ? { ...cpuOf(idle), bytes_received: idle.c1.bytes - idle.c0.bytes } : {},
      heartbeats,
      metrics_scrape: { after_accept: scrape1, after_window: scrape2 },
      books, stop: stopInfo, log: logSummary, quiet_wait: quiet, violations, key,
      duration_s: round((performance.now() - t0) / 1000, 1),
    };
  } finally {
    if (client?.alive) client.proc.kill('SIGKILL');
    if (server.alive) server.proc.kill('SIGKILL');
    await Promise.all([server.exited, client?.exited]);
  }
}

/**
 * The `connections` workload and its `raw` counterpart, measured in the same
 * invocation (reps interleaved: engine, raw, engine, raw, ...). Returns the JSON result.
 */
async function runConnections(o: Resolved): Promise<object> {
  if (!Number.isInteger(o.connections) || o.connections < 1) throw new Error(`connections must be a positive integer, got ${o.connections}`);
  if (!(o.heartbeatMs > 0) || !(o.duration > 0)) throw new Error('heartbeatMs and windowS must be > 0');
  const started = performance.now();
  const header = {
    workload: 'connections',
    started_at: new Date().toISOString(),
    git: gitInfo(),
    machine: {
      ...machineInfo(),
      somaxconn: sysctl('/proc/sys/net/core/somaxconn'), tcp_max_syn_backlog: sysctl('/proc/sys/net/ipv4/tcp_max_syn_backlog'),
      tcp_syncookies: sysctl('/proc/sys/net/ipv4/tcp_syncookies'),
    },
    params: {
      connections: o.connections, heartbeat_ms: o.heartbeatMs, window_s: o.duration, reps: o.reps, mix: o.mix, parallel: o.parallel,
      idle_s: o.idle, warmup_s: o.warmup, quiet_wait_max_s: o.quietWait,
    },
    engine_config: {
      overrides: {
        sink: 'discard', tcp_server: { enabled: true, host: '127.0.0.1', port: 0, token: '<bench token>' }, http: { host: '127.0.0.1', port: 0 },
        limits: { max_connections: maxConnectionsFor(o.connections) }, agents: { key_file: '<temp dir>' },
        ...(o.logLevel ? { log: { level: o.logLevel } } : {}),
      },
      why_sink_discard: 'the default sink (trackers) would spawn one tracker process per node (10,000 processes) for nodes that send no frame; rings are still allocated per node',
      engine_listen_backlog_requested: ENGINE_BACKLOG,
    },
    raw_server: 'node:net server, backlog 4096, reads and discards; answers a binary hello with a welcome, never acks heartbeats',
  };
  const runs: Record<Kind, PhaseResult[]> = { engine: [], raw: [] };
  for (let r = 0; r < o.reps; r++) {
    for (const kind of ['engine', 'raw'] as const) {
      process.stderr.write(`[${kind}] rep ${r + 1}/${o.reps}: ${o.connections} connections (${o.mix})\n`);
      runs[kind].push(await runPhase(kind, o));
    }
  }
  const med = (kind: Kind): Record<string, number> => {
    const keys = Object.keys(runs[kind][0]!.key);
    return Object.fromEntries(keys.map((k) => [k, round(median(runs[kind].map((p) => p.key[k]!)), 4)]));
  };
  const medians = { engine: med('engine'), raw: med('raw') };
  const e = medians.engine;
  const w = medians.raw;
  const ratio = (a: number, b: number): number => round(a / b, 3);
  const ratios = {
    what: 'ingest (engine) / raw, medians',
    rss_per_conn: ratio(e.rss_per_conn_bytes!, w.rss_per_conn_bytes!),
    accept_s: ratio(e.accept_s!, w.accept_s!),
    accept_cpu_us_per_conn: ratio(e.accept_cpu_us_per_conn!, w.accept_cpu_us_per_conn!),
    hb_cpu_us_per_hb: ratio(e.hb_cpu_us_per_hb!, w.hb_cpu_us_per_hb!),
    hb_main_elu: ratio(e.hb_main_elu!, w.hb_main_elu!),
    idle_process_cpu: ratio(e.idle_process_cpu!, w.idle_process_cpu!),
    rss_after_accept: ratio(e.rss_after_accept_mib!, w.rss_after_accept_mib!),
  };
  const n = o.connections;
  const peak = e.peak_rss_mib! * 2 ** 20;
  const after = Math.max(e.rss_after_accept_mib!, e.rss_after_window_mib!) * 2 ** 20;
  const extrapolated = e.rss_before_mib! * 2 ** 20 + e.rss_per_conn_bytes! * RSS_TARGET.connections;
  const measuredAtTarget = n >= RSS_TARGET.connections;
  const targets = {
    rss: {
      what: `engine RSS with ${RSS_TARGET.connections.toLocaleString('en-US')} connections under 1 GiB (peak RSS of the engine process, VmHWM)`,
      connections: n,
      value_bytes: measuredAtTarget ? Math.round(peak) : Math.round(extrapolated),
      value_mib: round((measuredAtTarget ? peak : extrapolated) / 2 ** 20, 1),
      rss_after_accept_and_window_bytes: Math.round(after),
      max_bytes: RSS_TARGET.max_bytes,
      how: measuredAtTarget ? 'measured' : `extrapolated from ${n} connections: rss_before + rss_per_conn x ${RSS_TARGET.connections}`,
      pass: (measuredAtTarget ? peak : extrapolated) < RSS_TARGET.max_bytes,
    },
  };
  const violations = (['engine', 'raw'] as const).flatMap((k) => runs[k].flatMap((p, i) => p.violations.map((v) => `${k} rep ${i + 1}: ${v}`)));
  return {
    ...header,
    duration_s: round((performance.now() - started) / 1000, 1),
    targets,
    medians,
    ratios,
    accounting: { ok: violations.length === 0, violations },
    runs,
  };
}

const options = {
  connections: num(10_000, 'node connections', 1),
  duration: num(20, 'heartbeat window, seconds'),
  heartbeatMs: num(5000, 'heartbeat period per connection, ms', 1),
  reps: num(1, 'runs per phase', 1),
  mix: str<ConnMix>('half', 'protocols: half (even binary, odd line), binary, line', ['half', 'binary', 'line']),
  parallel: num(256, 'connects in progress at once', 1),
  idle: num(3, 'seconds with every connection idle, no traffic'),
  warmup: num(2, 'heartbeats before the window, seconds'),
  quietWait: num(5, 'before each phase, wait up to S s for an idle machine'),
  logLevel: str('', "the engine's log level (default: the config default, info)"),
  ...SAVE_OPTION,
};

export const workload = defineWorkload({
  about: '10,000 mostly idle connections with heartbeats: the engine vs a bare server (raw)',
  options,
  run: async (o) => {
    boundRun(15 * 60);
    const res = await runConnections(o);
    report('connections', res, summaryLine('connections', res), !o.noSave);
  },
});

// The measured server of a phase: this file, forked with --conn-server.
if (process.argv[1] === SELF && process.argv.includes('--conn-server')) serverMain();
