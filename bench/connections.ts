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
import { snapshot, delta, sleep, waitQuiet, procStatus, cpuBreakdown, type ProbeSnapshot } from './lib/probes.js';
import { isBinary, type ConnMix, type ConnClientOptions, type ClientSample, type ToClient, type FromClient } from './lib/loadgen-idle.js';
import { IpcChild } from './lib/ipc.js';
import { ENGINE_BACKLOG, RawServer } from './lib/raw-server.js';
import { byLabel, scrapeMetrics } from './lib/metrics.js';
import { EngineLog } from './lib/engine-log.js';
import { defineWorkload, num, str, SAVE_OPTION, type OptValues } from './lib/options.js';
import { boundRun, header, report, summaryLine } from './lib/results.js';
import { medianTree, round } from './lib/stats.js';
import { counterSum } from './lib/engine-run.js';

const LOADGEN = fileURLToPath(new URL('./lib/loadgen.js', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const TOKEN = 'bench-secret';
/** 10,000 node connections under 1 GiB of engine RSS. */
const RSS_TARGET = { connections: 10_000, max_bytes: 2 ** 30 };
/** monitorEventLoopDelay sampling period; the histogram holds whole intervals, lag = value - this. */
const LAG_RES_MS = 10;
const nowEpoch = (): number => performance.timeOrigin + performance.now();
const mib = (x: number): number => round(x / 2 ** 20, 1);

type Kind = 'engine' | 'raw';
interface GcStats { count: number; major: number; ms: number; max_ms: number }

/** The engine's settings here: sink discard (the default sink would spawn a tracker process per node). */
const engineOverrides = (n: number, token: string, keyFile: string) => ({
  sink: 'discard', tcp_server: { enabled: true, host: '127.0.0.1', port: 0, token }, http: { host: '127.0.0.1', port: 0 },
  limits: { max_connections: Math.max(10_000, n) + Math.max(1024, Math.ceil(n / 10)) }, agents: { key_file: keyFile },
});

/** Memory of this process after gc(): process.memoryUsage() and /proc/self/status (all threads). */
function memSnap(doGc: boolean) {
  const g = (globalThis as { gc?: () => void }).gc;
  if (doGc && g) {
    g();
    g();
  }
  const m = process.memoryUsage();
  const s = procStatus();
  return {
    rss: m.rss, heap_used: m.heapUsed, heap_total: m.heapTotal, external: m.external, array_buffers: m.arrayBuffers,
    rss_anon: s.RssAnon ?? NaN, vm_hwm: s.VmHWM ?? NaN, threads: s.Threads ?? NaN,
  };
}
type Mem = ReturnType<typeof memSnap>;

/** The server's counters (engine: summed over the shards; raw: what it read). `ready`: nodes connected / connections that sent. */
function serverCounters(engine: Engine | null, raw: RawServer | null, nodesUp: number) {
  const at = nowEpoch();
  if (raw || !engine) {
    const r = raw!;
    const closed: Record<string, number> = r.closedByPeer ? { peer_closed: r.closedByPeer } : {};
    return { at, open: r.sockets.size, ready: r.firstData, heartbeats: NaN, bytes: r.bytes, accepted: r.accepted, acks: NaN, closed, rejected: {} };
  }
  const sum = (i: number): number => counterSum(engine, i);
  const closed: Record<string, number> = Object.fromEntries(CLOSE_REASONS.map((r) => [r, sum(closeIndex(r))]).filter(([, v]) => v));
  const rejected: Record<string, number> = Object.fromEntries(REJECT_REASONS.filter((r) => closed[r]).map((r) => [r, closed[r]!]));
  return {
    at, open: engine.handoff.open, ready: nodesUp, heartbeats: sum(C_HEARTBEATS), bytes: sum(C_BYTES_RECEIVED),
    accepted: sum(C_CONNECTIONS_ACCEPTED), acks: sum(C_ACKS_SENT), closed, rejected,
  };
}
type ServerCounters = ReturnType<typeof serverCounters>;

/** CPU, lag and GC of the server since a mark. */
function cpuStats(p: ProbeSnapshot, workers: Parameters<typeof snapshot>[0], lag: IntervalHistogram, gc0: GcStats, gc: GcStats) {
  const d = delta(p, snapshot(workers));
  const lagMs = (ns: number): number => round(Math.max(0, ns / 1e6 - LAG_RES_MS), 2);
  return {
    seconds: round(d.seconds, 3), ...cpuBreakdown(d, {}),
    lag: { p50_ms: lagMs(lag.percentile(50)), p99_ms: lagMs(lag.percentile(99)), max_ms: lagMs(lag.max), samples: lag.count },
    gc: { count: gc.count - gc0.count, major: gc.major - gc0.major, ms: round(gc.ms - gc0.ms, 1), max_ms: round(gc.max_ms, 1) },
  };
}
type CpuStats = ReturnType<typeof cpuStats>;
interface AcceptServer { ok: boolean; all_open_at: number; all_ready_at: number; counters: ServerCounters; cpu: CpuStats }

type ToServer =
  | { t: 'start'; kind: Kind; n: number; maxSeconds: number }
  | { t: 'arm'; n: number; lineN: number }
  | { t: 'await-ready'; timeoutMs: number }
  | { t: 'mem' | 'snap' | 'window-start' | 'window-end' | 'stop' };
type FromServer =
  | { t: 'started'; port: number; httpPort: number | null; pid: number; shards: number; mem: Mem }
  | { t: 'armed' }
  | { t: 'ready'; r: AcceptServer }
  | { t: 'mem'; mem: Mem }
  | { t: 'snap'; c: ServerCounters }
  | { t: 'window-started'; c: ServerCounters }
  | { t: 'window'; cpu: CpuStats; c: ServerCounters }
  | { t: 'stopped'; stop_s: number; c: ServerCounters }
  | { t: 'fail'; error: string };

function serverMain(): void {
  const send = (m: FromServer): void => {
    if (process.connected) process.send!(m);
  };
  process.on('disconnect', () => process.exit(3));
  const lag = monitorEventLoopDelay({ resolution: LAG_RES_MS });
  lag.enable();
  const gcs: GcStats = { count: 0, major: 0, ms: 0, max_ms: 0 };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcs.count++;
      gcs.ms += e.duration;
      gcs.max_ms = Math.max(gcs.max_ms, e.duration);
      if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === 4) gcs.major++; // NODE_PERFORMANCE_GC_MAJOR
    }
  }).observe({ entryTypes: ['gc'] });

  let engine: Engine | null = null;
  let raw: RawServer | null = null;
  let nodesUp = 0;
  let nodesUpAt = 0;
  let target = { n: Infinity, lineN: 0 };
  const counters = (): ServerCounters => serverCounters(engine, raw, nodesUp);
  const mark = (): { p: ProbeSnapshot; gc: GcStats } => {
    lag.reset();
    return { p: snapshot(engine?.pool.threads ?? []), gc: { ...gcs } };
  };
  const cpuSince = (m: ReturnType<typeof mark>): CpuStats => cpuStats(m.p, engine?.pool.threads ?? [], lag, m.gc, gcs);

  // Accept: polled until the server sees every connection ready (engine: nodes connected and the line heartbeats counted).
  let acceptMark = mark();
  let allOpenAt = 0;
  let acceptResult: AcceptServer | null = null;
  let poll: NodeJS.Timeout | null = null;
  const readyWaiters: Array<() => void> = [];
  const finishAccept = (ok: boolean, allReadyAt = 0): void => {
    if (poll) clearInterval(poll);
    poll = null;
    acceptResult = { ok, all_open_at: allOpenAt, all_ready_at: allReadyAt, counters: counters(), cpu: cpuSince(acceptMark) };
    for (const w of readyWaiters.splice(0)) w();
  };
  const checkAccept = (): void => {
    const c = counters();
    if (!allOpenAt && c.accepted >= target.n) allOpenAt = c.at;
    if (acceptResult) return;
    if (raw && raw.allReadyAt > 0) finishAccept(true, raw.allReadyAt);
    else if (!raw && nodesUpAt > 0 && c.heartbeats >= target.lineN) finishAccept(true, Math.max(nodesUpAt, c.at));
  };

  let windowMark = acceptMark;
  const handle = async (m: ToServer): Promise<void> => {
    switch (m.t) {
      case 'start': {
        setTimeout(() => {
          process.stderr.write(`conn-server: hard deadline of ${m.maxSeconds} s reached, exiting\n`);
          process.exit(4);
        }, m.maxSeconds * 1000).unref();
        if (m.kind === 'engine') {
          const keyFile = join(tmpdir(), 'radar-ingest-bench-connections', 'ed25519.pem');
          const cfg = parseConfig(engineOverrides(m.n, TOKEN, keyFile), {}); // {}: RADAR_INGEST_TOKEN must not override the bench token
          engine = new Engine({
            config: cfg,
            hooks: {
              onNodeConnected: () => void (++nodesUp === target.n && (nodesUpAt = nowEpoch())),
              onNodeDisconnected: () => void nodesUp--,
            },
          });
          await engine.start();
        } else {
          raw = new RawServer();
          await raw.listen();
        }
        await sleep(300);
        send({
          t: 'started', port: engine ? engine.tcpAddress!.port : (raw!.server.address() as { port: number }).port,
          httpPort: engine?.httpAddress!.port ?? null, pid: process.pid, shards: engine?.pool.workers ?? 0, mem: memSnap(true),
        });
        break;
      }
      case 'arm':
        target = { n: m.n, lineN: m.lineN };
        if (raw) raw.target = m.n;
        allOpenAt = 0;
        acceptResult = null;
        acceptMark = mark();
        poll = setInterval(checkAccept, 5);
        return send({ t: 'armed' });
      case 'await-ready': {
        if (!acceptResult) {
          let timer: NodeJS.Timeout | null = null;
          await Promise.race([new Promise<void>((r) => readyWaiters.push(r)), new Promise<void>((r) => (timer = setTimeout(r, m.timeoutMs)))]);
          if (timer) clearTimeout(timer);
          if (!acceptResult) finishAccept(false);
        }
        return send({ t: 'ready', r: acceptResult! });
      }
      case 'mem':
        return send({ t: 'mem', mem: memSnap(true) });
      case 'snap':
        return send({ t: 'snap', c: counters() });
      case 'window-start':
        windowMark = mark();
        return send({ t: 'window-started', c: counters() });
      case 'window-end':
        return send({ t: 'window', cpu: cpuSince(windowMark), c: counters() });
      case 'stop': {
        const t0 = performance.now();
        await engine?.stop();
        await raw?.stop();
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

/** Machine-wide TCP counters (/proc/net/netstat, /proc/net/snmp): listen-queue drops, retransmits, resets. */
function netstat(): Record<string, number> {
  const want = ['ListenOverflows', 'ListenDrops', 'TCPReqQFullDrop', 'TCPReqQFullDoCookies', 'SyncookiesSent', 'TCPTimeouts', 'RetransSegs', 'AttemptFails', 'EstabResets', 'TCPAbortOnData', 'TCPAbortOnClose'];
  const out: Record<string, number> = {};
  for (const f of ['/proc/net/netstat', '/proc/net/snmp']) {
    const lines = readText(f)?.trim().split('\n') ?? [];
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const vals = lines[i + 1]!.split(/\s+/);
      lines[i]!.split(/\s+/).forEach((k, j) => want.includes(k) && (out[k] = Number(vals[j])));
    }
  }
  return out;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** The listen socket's backlog as the kernel has it (ss: Send-Q of a LISTEN socket), or null. */
function listenBacklog(port: number): number | null {
  try {
    const out = execFileSync('ss', ['-ltnH', `sport = :${port}`], { stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).toString().trim();
    const v = Number(out.split('\n')[0]?.trim().split(/\s+/)[2]);
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}

/** GET /metrics and the series this benchmark checks. */
async function scrape(port: number) {
  const { m, bytes, ms } = await scrapeMetrics(port);
  const v = (name: string): number => m.get(`radar_ingest_${name}`) ?? NaN;
  return {
    ms: round(ms, 1), bytes, connections_open: v('connections_open'), connections_accepted: v('connections_accepted_total'),
    nodes: v('nodes'), nodes_connected: v('nodes_connected'), heartbeats: v('heartbeats_total'), ring_capacity_bytes: v('ring_capacity_bytes'),
    process_resident_memory_bytes: m.get('process_resident_memory_bytes') ?? NaN,
    rejected: byLabel(m, 'radar_ingest_connections_rejected_total', 'reason'), closed: byLabel(m, 'radar_ingest_connections_closed_total', 'reason'),
  };
}

type Server = IpcChild<ToServer, FromServer>;
type Client = IpcChild<ToClient, FromClient>;
type Reply<U, T> = Extract<U, { t: T }>;
let markSeq = 0;
const clientMark = async (client: Client): Promise<ClientSample> => (await client.request<Reply<FromClient, 'mark'>>({ t: 'mark', id: ++markSeq }, `mark:${markSeq}`, 10000)).s;
const serverAsk = <T extends FromServer['t']>(server: Server, m: ToServer, t: T, ms = 10000): Promise<Reply<FromServer, T>> => server.request(m, t, ms);

/** A window of `seconds` on both sides: the server's CPU and counters, the client's samples, and the CPU split. */
async function measureWindow(server: Server, client: Client, seconds: number) {
  const [a, k0] = await Promise.all([serverAsk(server, { t: 'window-start' }, 'window-started'), clientMark(client)]);
  await sleep(seconds * 1000);
  const [b, k1] = await Promise.all([serverAsk(server, { t: 'window-end' }, 'window'), clientMark(client)]);
  const ks = (k1.at - k0.at) / 1000;
  const clientCpu = (k1.cpu_us - k0.cpu_us) / 1e6 / ks;
  const s = b.cpu;
  return {
    server: s, c0: a.c, c1: b.c, k0, k1,
    cpu: {
      ...s, client_cpu: round(clientCpu, 4), client_elu: round((k1.elu_active_ms - k0.elu_active_ms) / 1000 / ks, 4),
      other_cpu: s.other_cpu === null ? null : round(s.other_cpu - clientCpu, 3),
    },
  };
}

async function runPhase(kind: Kind, o: Resolved) {
  const quiet = o.quietWait > 0 ? await waitQuiet(o.quietWait) : null;
  if (quiet && (quiet.busy ?? 0) >= 0.3) process.stderr.write(`[${kind}] machine still busy (${quiet.busy} cores) after ${quiet.waited_s} s; measuring anyway\n`);
  const t0 = performance.now();
  const n = o.connections;
  let lineN = 0;
  for (let i = 0; i < n; i++) if (!isBinary(o.mix, i)) lineN++;
  const say = (s: string): boolean => process.stderr.write(`[${kind}] ${s}\n`);
  const maxSeconds = Math.ceil(o.idle + o.warmup + o.duration + 180);
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--inspect')).concat('--expose-gc');
  const server: Server = new IpcChild(`${kind} server`, SELF, ['--conn-server'], { execArgv, pipeStdout: true });
  const log = kind === 'engine' ? new EngineLog(server.proc.stdout!) : null;
  if (!log) server.proc.stdout!.resume();
  let client: Client | null = null;
  const violations: string[] = [];
  const bad = (cond: boolean, what: string): void => void (cond && violations.push(what));
  try {
    const started = await serverAsk(server, { t: 'start', kind, n, maxSeconds }, 'started', 60000);
    const backlog = listenBacklog(started.port);
    client = new IpcChild(`${kind} client`, LOADGEN, ['--loadgen-child', 'idle'], { execArgv: [] });
    const opts: ConnClientOptions = {
      host: '127.0.0.1', port: started.port, connections: n, token: TOKEN, mix: o.mix, parallel: o.parallel, nodePrefix: 'conn-', maxSeconds,
    };

    // ---- accept ----
    const ns0 = netstat();
    await serverAsk(server, { t: 'arm', n, lineN }, 'armed');
    const conn = (await client.request<Reply<FromClient, 'connected'>>({ t: 'connect', opts }, 'connected', 120000)).r;
    const acc = (await serverAsk(server, { t: 'await-ready', timeoutMs: conn.ready === n ? 30000 : 2000 }, 'ready', 60000)).r;
    const ns1 = netstat();
    const tcp = Object.fromEntries(Object.keys(ns1).map((k) => [k, ns1[k]! - (ns0[k] ?? 0)]));
    const since = (at: number): number => round((at - conn.first_connect_at) / 1000, 3);
    const acceptS = since(Math.max(acc.all_ready_at || Infinity, conn.last_ready_at));
    say(`accept: ${conn.ready}/${n} ready in ${acceptS} s (server saw all: ${acc.ok}), connect p99 ${conn.connect_ms.p99} ms, ready p99 ${conn.ready_ms.p99} ms`);

    // ---- memory after accept, idle, heartbeats ----
    await sleep(1000);
    const memConnected = (await serverAsk(server, { t: 'mem' }, 'mem', 30000)).mem;
    const scrape1 = started.httpPort !== null ? await scrape(started.httpPort) : null;
    await sleep(300);
    const idle = o.idle > 0 ? await measureWindow(server, client, o.idle) : null;
    client.send({ t: 'hb-start', heartbeatMs: o.heartbeatMs });
    await sleep(o.warmup * 1000);
    const hb = await measureWindow(server, client, o.duration);
    const stopped = (await client.request<Reply<FromClient, 'hb-stopped'>>({ t: 'hb-stop' }, 'hb-stopped', 15000)).s;
    // Let the server count what is in flight (bounded).
    const hbSentTotal = stopped.hb_binary + stopped.hb_line;
    let final = (await serverAsk(server, { t: 'snap' }, 'snap')).c;
    for (let i = 0; i < 50 && (final.bytes < stopped.bytes_sent || (kind === 'engine' && final.heartbeats < hbSentTotal)); i++) {
      await sleep(100);
      final = (await serverAsk(server, { t: 'snap' }, 'snap')).c;
    }
    const memAfter = (await serverAsk(server, { t: 'mem' }, 'mem', 30000)).mem;
    const scrape2 = started.httpPort !== null ? await scrape(started.httpPort) : null;
    const beforeStop = (await serverAsk(server, { t: 'snap' }, 'snap')).c;
    const clientBeforeStop = await clientMark(client);

    // ---- stop: the server closes every connection ----
    log?.markStop();
    const closedP = client.request<Reply<FromClient, 'closed'>>(null, 'closed', 40000);
    client.send({ t: 'expect-close', timeoutMs: 30000 });
    const stop = await serverAsk(server, { t: 'stop' }, 'stopped', 60000);
    const closed = (await closedP).r;
    client.send({ t: 'exit' });
    await Promise.all([server.end(5000), client.end(5000)]);
    say(`stopped in ${stop.stop_s} s; client saw ${closed.closed}/${n} closes`);

    // ---- results ----
    const hbS = (hb.k1.at - hb.k0.at) / 1000;
    const hbSent = hb.k1.hb_binary + hb.k1.hb_line - hb.k0.hb_binary - hb.k0.hb_line;
    const hbCounted = hb.c1.heartbeats - hb.c0.heartbeats;
    const engineOnly = <T>(v: T): T | null => (kind === 'engine' ? v : null);
    /** Cores over the window -> µs per heartbeat (or per connection). */
    const us = (cores: number | null, s: number, per: number, d = 2): number => (cores === null ? NaN : round((cores * s * 1e6) / per, d));
    const perConn = (k: 'rss' | 'rss_anon' | 'heap_used' | 'external' | 'array_buffers'): number => round((memConnected[k] - started.mem[k]) / n);
    const accept = {
      wall_s: acceptS,
      conns_per_s: round(n / acceptS),
      /** First connect() to: the server accepting all N, seeing all N ready, the client's last ready and last TCP connect. */
      all_accepted_s: acc.all_open_at ? since(acc.all_open_at) : null,
      server_all_ready_s: acc.all_ready_at ? since(acc.all_ready_at) : null,
      client_last_ready_s: since(conn.last_ready_at),
      client_last_tcp_connect_s: since(conn.last_tcp_connect_at),
      server_saw_all: acc.ok, ready: conn.ready, failed: conn.failed, connect_ms: conn.connect_ms, ready_ms: conn.ready_ms,
      slow_connects_over_900ms: conn.slow_connects, parallel: o.parallel,
      server_cpu: { ...acc.cpu, cpu_us_per_conn: us(acc.cpu.process_cpu, acc.cpu.seconds, n, 1), main_cpu_us_per_conn: us(acc.cpu.main_thread_cpu, acc.cpu.seconds, n, 1) },
      server_counters: acc.counters, tcp_machine_counters_delta: tcp, client_errors: conn.errors, client_error_count: conn.error_count,
      client_rss_bytes: conn.client_rss_bytes,
      /** Client CPU while connecting, cores (1 = the client's one thread saturated: the client is the limit). */
      client_cpu: round(conn.client_cpu_s / ((conn.last_ready_at - conn.first_connect_at) / 1000), 3),
    };
    const memory = {
      before: started.mem, after_accept: memConnected, after_window: memAfter,
      rss_before_mib: mib(started.mem.rss), rss_after_accept_mib: mib(memConnected.rss), rss_after_window_mib: mib(memAfter.rss), peak_rss_mib: mib(memAfter.vm_hwm),
      rss_per_conn_bytes: perConn('rss'), rss_anon_per_conn_bytes: perConn('rss_anon'), heap_used_per_conn_bytes: perConn('heap_used'),
      external_per_conn_bytes: perConn('external'), array_buffers_per_conn_bytes: perConn('array_buffers'),
      rss_growth_in_window_bytes: memAfter.rss - memConnected.rss,
      note: 'after gc() in the server process; RSS from /proc/self/status (all threads); heap/external/arrayBuffers are the main isolate only',
    };
    const heartbeats = {
      interval_ms: o.heartbeatMs, per_interval: n, warmup_s: o.warmup, window_s: round(hbS, 3), sent_in_window: hbSent, sent_per_s: round(hbSent / hbS, 1),
      counted_in_window: engineOnly(hbCounted), counted_per_s: engineOnly(round(hbCounted / hb.server.seconds, 1)),
      bytes_received_per_s: round((hb.c1.bytes - hb.c0.bytes) / hb.server.seconds), acks_received: hb.k1.acks - hb.k0.acks,
      ...hb.cpu,
      cpu_us_per_hb: us(hb.server.process_cpu, hb.server.seconds, hbSent),
      main_cpu_us_per_hb: us(hb.server.main_thread_cpu, hb.server.seconds, hbSent),
      main_busy_us_per_hb: us(hb.server.main_elu, hb.server.seconds, hbSent),
      /** Process CPU per heartbeat minus what the same connections cost with no traffic (the idle window). */
      cpu_us_per_hb_above_idle: idle ? us(hb.server.process_cpu - idle.server.process_cpu, hb.server.seconds, hbSent) : null,
      client_hb_skipped: hb.k1.hb_skipped - hb.k0.hb_skipped, client_max_writable: hb.k1.max_writable,
    };
    const books = {
      hb_sent_total: hbSentTotal, hb_counted_total: engineOnly(final.heartbeats), bytes_sent_total: stopped.bytes_sent, bytes_received_total: final.bytes,
      acks_received_total: clientBeforeStop.acks, acks_sent_total: engineOnly(beforeStop.acks), binary_hb_total: stopped.hb_binary,
      connections_open_before_stop: beforeStop.open, ready_before_stop: beforeStop.ready, closed_before_stop: beforeStop.closed,
      rejected_before_stop: beforeStop.rejected, client_closed_early: clientBeforeStop.closed_early, client_host_errors: clientBeforeStop.host_errors,
    };
    const logSummary = log?.summary() ?? null;

    // ---- checks ----
    const engine = kind === 'engine';
    bad(conn.failed > 0, `${conn.failed} connections failed to become ready: ${conn.errors.slice(0, 3).join('; ')}`);
    bad(!acc.ok, `the server did not see all ${n} connections ready (counters ${JSON.stringify(acc.counters)})`);
    bad(conn.slow_connects > 0, `${conn.slow_connects} connects took over 900 ms (SYN retransmitted: listen queue full?)`);
    bad((tcp.ListenOverflows ?? 0) > 0 || (tcp.ListenDrops ?? 0) > 0, `machine listen-queue drops during accept: ListenOverflows ${tcp.ListenOverflows}, ListenDrops ${tcp.ListenDrops}`);
    bad(clientBeforeStop.closed_early > 0, `${clientBeforeStop.closed_early} connections closed by the server before the stop`);
    bad(Object.keys(beforeStop.closed).length > 0, `connections closed before the stop: ${JSON.stringify(beforeStop.closed)}`);
    bad(Object.keys(beforeStop.rejected).length > 0, `connections rejected: ${JSON.stringify(beforeStop.rejected)}`);
    bad(beforeStop.open !== n, `server holds ${beforeStop.open} connections, not ${n}`);
    bad(engine && final.heartbeats !== hbSentTotal, `heartbeats sent ${hbSentTotal} != counted ${final.heartbeats}`);
    bad(final.bytes !== stopped.bytes_sent, `bytes sent ${stopped.bytes_sent} != received ${final.bytes}`);
    bad(clientBeforeStop.host_errors > 0, `${clientBeforeStop.host_errors} error messages from the host before the stop: ${conn.errors.slice(0, 3).join('; ')}`);
    bad(engine && clientBeforeStop.acks !== beforeStop.acks, `engine sent ${beforeStop.acks} acks, the client received ${clientBeforeStop.acks}`);
    bad(engine && clientBeforeStop.acks < stopped.hb_binary, `binary heartbeats ${stopped.hb_binary} but only ${clientBeforeStop.acks} acks (one per heartbeat expected at this rate)`);
    bad(heartbeats.client_hb_skipped > 0, `client skipped ${heartbeats.client_hb_skipped} heartbeats in the window`);
    for (const s of [scrape1, scrape2]) {
      bad(s !== null && s.connections_open !== n, `/metrics connections_open ${s?.connections_open} != ${n}`);
      bad(s !== null && s.nodes_connected !== n, `/metrics nodes_connected ${s?.nodes_connected} != ${n}`);
      bad(s !== null && Object.keys(s.rejected).length > 0, `/metrics connections_rejected_total ${JSON.stringify(s?.rejected)}`);
    }
    bad(closed.closed !== n, `client saw ${closed.closed} of ${n} connections closed at the stop`);
    const lv = logSummary?.by_level ?? {};
    bad((lv.error ?? 0) > 0 || (lv.fatal ?? 0) > 0, `engine logged ${lv.error ?? 0} errors, ${lv.fatal ?? 0} fatal`);
    const warnBefore = logSummary?.before_stop?.by_level.warn ?? 0;
    bad(warnBefore > 0, `engine logged ${warnBefore} warnings before the stop`);

    return {
      kind, connections: n, binary: conn.binary, line: conn.line, server_pid: started.pid, shards: started.shards, listen_backlog: backlog,
      accept, memory,
      idle: idle ? { ...idle.cpu, bytes_received: idle.c1.bytes - idle.c0.bytes } : null,
      heartbeats,
      metrics_scrape: { after_accept: scrape1, after_window: scrape2 },
      books,
      stop: {
        stop_s: stop.stop_s, server_closed_by_reason: stop.c.closed, client_saw_closed: closed.closed, client_still_open: closed.still_open,
        client_close_wait_ms: closed.wait_ms, client_host_error_codes_at_stop: closed.host_error_codes,
      },
      log: logSummary,
      /** The wait for a quiet machine before the phase (busy: cores busy at its end, other jobs). */
      quiet_wait: quiet, violations, duration_s: round((performance.now() - t0) / 1000, 1),
    };
  } finally {
    if (client?.alive) client.proc.kill('SIGKILL');
    if (server.alive) server.proc.kill('SIGKILL');
    await Promise.all([server.exited, client?.exited]);
  }
}
type PhaseResult = Awaited<ReturnType<typeof runPhase>>;

/** The figures compared across reps and between engine and raw. */
const keyOf = (p: PhaseResult) => ({
  accept_s: p.accept.wall_s, accept_cpu_us_per_conn: p.accept.server_cpu.cpu_us_per_conn, accept_lag_p99_ms: p.accept.server_cpu.lag.p99_ms,
  rss_before_mib: p.memory.rss_before_mib, rss_after_accept_mib: p.memory.rss_after_accept_mib, rss_after_window_mib: p.memory.rss_after_window_mib,
  peak_rss_mib: p.memory.peak_rss_mib, rss_per_conn_bytes: p.memory.rss_per_conn_bytes, heap_used_per_conn_bytes: p.memory.heap_used_per_conn_bytes,
  idle_process_cpu: p.idle?.process_cpu ?? NaN, hb_sent_per_s: p.heartbeats.sent_per_s, hb_cpu_us_per_hb: p.heartbeats.cpu_us_per_hb,
  hb_main_elu: p.heartbeats.main_elu, hb_lag_p99_ms: p.heartbeats.lag.p99_ms, stop_s: p.stop.stop_s,
});

/** The `connections` workload and its `raw` counterpart, in the same invocation (reps interleaved: engine, raw, engine, ...). */
async function runConnections(o: Resolved): Promise<object> {
  if (!Number.isInteger(o.connections) || o.connections < 1) throw new Error(`connections must be a positive integer, got ${o.connections}`);
  if (!(o.heartbeatMs > 0) || !(o.duration > 0)) throw new Error('heartbeatMs and windowS must be > 0');
  const started = performance.now();
  const sysctl = (f: string): number | null => Number(readText(`/proc/sys/net/${f}`)?.trim().split(/\s+/)[0] ?? NaN);
  const head = header('connections', {
    connections: o.connections, heartbeat_ms: o.heartbeatMs, window_s: o.duration, reps: o.reps, mix: o.mix, parallel: o.parallel,
    idle_s: o.idle, warmup_s: o.warmup, quiet_wait_max_s: o.quietWait,
  });
  const runs: Record<Kind, PhaseResult[]> = { engine: [], raw: [] };
  for (let r = 0; r < o.reps; r++) {
    for (const kind of ['engine', 'raw'] as const) {
      process.stderr.write(`[${kind}] rep ${r + 1}/${o.reps}: ${o.connections} connections (${o.mix})\n`);
      runs[kind].push(await runPhase(kind, o));
    }
  }
  const e = medianTree(runs.engine.map(keyOf));
  const w = medianTree(runs.raw.map(keyOf));
  const ratio = (k: keyof typeof e): number => round(e[k] / w[k], 3);
  const n = o.connections;
  const measured = n >= RSS_TARGET.connections;
  const rss = measured ? e.peak_rss_mib * 2 ** 20 : e.rss_before_mib * 2 ** 20 + e.rss_per_conn_bytes * RSS_TARGET.connections;
  const violations = (['engine', 'raw'] as const).flatMap((k) => runs[k].flatMap((p, i) => p.violations.map((v) => `${k} rep ${i + 1}: ${v}`)));
  return {
    ...head,
    kernel: { somaxconn: sysctl('core/somaxconn'), tcp_max_syn_backlog: sysctl('ipv4/tcp_max_syn_backlog'), tcp_syncookies: sysctl('ipv4/tcp_syncookies') },
    engine_config: {
      overrides: engineOverrides(n, '<bench token>', '<temp dir>'),
      why_sink_discard: 'the default sink (trackers) would spawn one tracker process per node (10,000 processes) for nodes that send no frame; rings are still allocated per node',
      engine_listen_backlog_requested: ENGINE_BACKLOG,
    },
    raw_server: 'node:net server, backlog 4096, reads and discards; answers a binary hello with a welcome, never acks heartbeats',
    duration_s: round((performance.now() - started) / 1000, 1),
    targets: {
      rss: {
        what: `engine RSS with ${RSS_TARGET.connections.toLocaleString('en-US')} connections under 1 GiB (peak RSS of the engine process, VmHWM)`,
        connections: n, value_bytes: Math.round(rss), value_mib: mib(rss), max_bytes: RSS_TARGET.max_bytes,
        how: measured ? 'measured' : `extrapolated from ${n} connections: rss_before + rss_per_conn x ${RSS_TARGET.connections}`,
        pass: rss < RSS_TARGET.max_bytes,
      },
    },
    medians: { engine: e, raw: w },
    ratios: {
      what: 'ingest (engine) / raw, medians',
      rss_per_conn: ratio('rss_per_conn_bytes'), accept_s: ratio('accept_s'), accept_cpu_us_per_conn: ratio('accept_cpu_us_per_conn'),
      hb_cpu_us_per_hb: ratio('hb_cpu_us_per_hb'), hb_main_elu: ratio('hb_main_elu'), idle_process_cpu: ratio('idle_process_cpu'),
      rss_after_accept: ratio('rss_after_accept_mib'),
    },
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
  ...SAVE_OPTION,
};
type Resolved = OptValues<typeof options>;

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
