// Benchmark runner.
//
//   node dist/bench/run.js [workload] [--duration S] [--warmup S] [--reps N] ...
//
// Workloads:
//   ingest   (default) for each protocol (line: 64 nodes, 1-5 detections a frame;
//            binary: 64 nodes, 50 detections a frame) and each engine mode
//            (shards: 0 = everything on the main thread, vs the default shards: auto),
//            an Engine (sink: discard) is loaded by a forked load generator; the rate
//            of frames and detections written into rings, the main thread's event-loop
//            utilisation and CPU, the workers' ELU and the process CPU are measured over
//            the window after a warm-up. Each cell is repeated and the medians reported.
//            After the load stops and the rings drain, the accounting identities are
//            checked: sent == received == written + dropped, written == consumed + inRings.
//   ceiling  the same generator against a bare server that reads and discards (no
//            engine): what the generator (and loopback TCP) can deliver on this machine.
//   e2e      end to end, node sockets to tracker input (bench/e2e.ts): line protocol,
//            64 nodes, engine with its default sink (trackers), one auto-provisioned
//            drain tracker process per node (bench/drain-tracker.ts). Per rep: the
//            ingest workload's line/default cell (sink discard) as the reference, then
//            the e2e run: frames/s delivered to the trackers' input at full push, and
//            send-to-tracker latency p50/p99 at half of that rate (paced generator).
//            Reports e2e / discard into-ring, both measured in the same invocation.
//   hostile  64 legitimate binary nodes at 20 Hz against the CLI engine (sink discard),
//            a baseline, then an attack mix on every port (bench/hostile.ts): legitimate
//            frames delivered / sent, send->ack p99 under attack / baseline, peak RSS,
//            /healthz latency, whether the engine survived.
//
// Output: one JSON object on stdout, also written to bench/results/<workload>-<ts>.json
// and bench/results/<workload>-latest.json; a human summary on stderr.
import { fork } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { parseConfig } from '../src/config.js';
import { Engine } from '../src/engine/engine.js';
import { C_BYTES_RECEIVED, C_ACKS_SENT } from '../src/telemetry/counters.js';
import { encodeMessage, PROTOCOL_VERSION, T_WELCOME, HEARTBEAT_MS } from '../src/protocol/binary-protocol.js';
import { M_DATA, S_BATCH } from '../src/protocol/thread-messages.js';
import type { MainToShard, ShardToMain } from '../src/protocol/thread-messages.js';
import { Loadgen, type BenchProtocol, type LoadgenSample } from './loadgen.js';
import { snapshot, delta, type ProbeSnapshot } from './probes.js';
import type { FloorCell, FloorSpec } from './floor.js';
import { runE2eOnce, TRACKER_KINDS, type E2eSpec, type E2eResult, type TrackerKind } from './e2e.js';
import { sleep, round, median, waitQuiet, gitInfo } from './common.js';

const SELF = fileURLToPath(import.meta.url);
const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url));
const TOKEN = 'bench-secret';

/** Targets the engine's default configuration must meet on this 2-core machine. */
const TARGETS = {
  line: { metric: 'frames_per_s' as const, min: 800_000, what: 'line protocol frames/s into rings' },
  binary: { metric: 'detections_per_s' as const, min: 15_000_000, what: 'binary protocol detections/s into rings' },
};
/**
 * End to end: delivered to the trackers' input at least this
 * share of the line protocol's into-ring rate with the discard sink (the ingest
 * workload's metric, measured in the same run), and p99 send-to-tracker latency
 * under this at `loadFraction` (half) of the measured end-to-end rate.
 */
const E2E_TARGETS = { min_ratio: 0.8, line_target_frames_per_s: TARGETS.line.min, p99_ms: 5 };
/** Python tracker-host reference on this machine (frames/s parsed, line protocol). */
const PYTHON_REFERENCE_FRAMES_PER_S = 234_000;

/** 'default' = the config default (shards: auto); 'shardsN' = shards: N. */
type Mode = 'default' | `shards${number}`;

interface CellSpec {
  protocol: BenchProtocol;
  mode: Mode;
  connections: number;
  /** Binary: detections per frame. */
  detections: number;
  warmupS: number;
  durationS: number;
  chunkBytes: number;
  depth: number;
  procs: number;
  ringBytes: number | null;
  /** Diagnostics: count the messages between the main thread and the shards. */
  traceMessages: boolean;
  /** Line: the e2e workload's stamped generator (increasing timestamps, send-time markers). */
  stamped?: boolean;
}

interface Accounting {
  sent: number;
  received: number;
  written: number;
  consumed: number;
  inRings: number;
  droppedTotal: number;
  dropped: Record<string, number>;
  /** Binary: connections whose last frame was not acked by the end. */
  unacked: number;
  errors: string[];
  violations: string[];
}

interface RunResult {
  protocol: BenchProtocol;
  mode: Mode;
  shards: number;
  window_s: number;
  frames_per_s: number;
  detections_per_s: number;
  received_per_s: number;
  sent_per_s: number;
  mbytes_per_s: number;
  /** Binary: ack messages the host sent per second (one socket write each). */
  acks_per_s: number;
  main_elu: number;
  worker_elu: number[];
  /** Main-thread ELU per 1,000,000 frames/s of throughput. */
  main_elu_per_mfps: number;
  /** Main-thread busy time (ELU) per frame written, nanoseconds. */
  main_busy_ns_per_frame: number;
  /** Main-thread CPU, cores (Linux /proc). */
  main_thread_cpu: number | null;
  main_cpu_ns_per_frame: number | null;
  /** Whole engine process CPU (all threads), cores. */
  process_cpu: number;
  /** Main thread's share of the engine process CPU. */
  main_cpu_share: number | null;
  machine_cpu_busy: number | null;
  /** Machine CPU by kind (cores): user, system, softirq (loopback TCP work), steal. */
  machine_cpu: { user: number; system: number; softirq: number; steal: number } | null;
  /**
   * Machine CPU not accounted for by the engine process, the generator or softirq
   * (cores): other processes or host noise. Near 0 in a clean run.
   */
  other_cpu: number | null;
  generator_cpu: number;
  generator_elu: number;
  /** Frames/s written into rings, second by second through the window. */
  per_second: number[];
  /** With --trace-messages: main<->shard message rates in the window. */
  messages?: MessageRates;
  /**
   * Machine speed index measured just before the run: millions of a fixed small
   * JSON.parse per second on the main thread (shows host-side drift between runs).
   */
  calibration_mops: number;
  /** Seconds spent starting (engine + generator ready) and stopping (drain + engine stop). */
  setup_s: number;
  teardown_s: number;
  accounting: Accounting;
}

interface MessageRates {
  /** M_DATA messages (one per socket read) per second and their mean size. */
  data_msgs_per_s: number;
  data_bytes_mean: number;
  /** Frames per M_DATA message. */
  frames_per_data_msg: number;
  /** S_BATCH messages per second, and socket writes (acks, errors) they carried. */
  batch_msgs_per_s: number;
  socket_writes_per_s: number;
  other_to_shard_per_s: number;
  other_from_shard_per_s: number;
}

interface MessageCounts { data: number; dataBytes: number; otherTo: number; batch: number; writes: number; otherFrom: number }

/**
 * Wraps the engine's pool so every main<->shard message is counted (diagnostics:
 * costs a little main-thread time, so it is off by default).
 */
function traceMessages(engine: Engine): MessageCounts {
  const c: MessageCounts = { data: 0, dataBytes: 0, otherTo: 0, batch: 0, writes: 0, otherFrom: 0 };
  const pool = engine.pool as unknown as {
    send(shard: number, msg: MainToShard, transfer?: unknown[]): boolean;
    opts: { onMessage(shard: number, msg: ShardToMain): void };
  };
  const send = pool.send.bind(pool);
  pool.send = (shard, msg, transfer) => {
    if (msg.t === M_DATA) {
      c.data++;
      c.dataBytes += msg.buf.byteLength;
    } else {
      c.otherTo++;
    }
    return send(shard, msg, transfer);
  };
  const onMessage = pool.opts.onMessage;
  pool.opts.onMessage = (shard, msg) => {
    if (msg.t === S_BATCH) {
      c.batch++;
      c.writes += msg.writes.length / 2;
    } else {
      c.otherFrom++;
    }
    onMessage(shard, msg);
  };
  return c;
}

// ---------------------------------------------------------------------------
// One measured run
// ---------------------------------------------------------------------------


function engineConfig(spec: CellSpec) {
  const raw: Record<string, unknown> = {
    shards: spec.mode === 'default' ? 'auto' : Number(spec.mode.slice(6)),
    sink: 'discard',
    tcp_server: { enabled: true, host: '127.0.0.1', port: 0, token: TOKEN },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'silent' },
  };
  if (spec.ringBytes) raw.ring = { size_bytes: spec.ringBytes };
  return parseConfig(raw, {}); // {}: RADAR_INGEST_TOKEN must not override the bench token
}

/** A fixed CPU-bound task for 200 ms: millions of operations per second. */
function calibrate(): number {
  const line = '{"timestamp":1757400000000,"delay":[40.46,120.3,77.1],"doppler":[-27.99,88.1,3.5],"snr":[12.08,7.2,9.9]}';
  const end = performance.now() + 200;
  let n = 0;
  let t = performance.now();
  const t0 = t;
  while (t < end) {
    for (let i = 0; i < 200; i++) JSON.parse(line);
    n += 200;
    t = performance.now();
  }
  return n / (t - t0) / 1000;
}

async function runOnce(spec: CellSpec): Promise<RunResult> {
  const calibrationMops = calibrate();
  const tStart = performance.now();
  const engine = new Engine({ config: engineConfig(spec) });
  const trace = spec.traceMessages ? traceMessages(engine) : null;
  await engine.start();
  let lg: Loadgen | null = null;
  try {
    const port = engine.tcpAddress!.port;
    lg = await Loadgen.start({
      host: '127.0.0.1', port, protocol: spec.protocol, connections: spec.connections, token: TOKEN,
      detections: spec.detections, chunkBytes: spec.chunkBytes, depth: spec.depth, procs: spec.procs,
      maxSeconds: spec.warmupS + spec.durationS + 60, stamped: spec.stamped === true,
    });
    const setupS = (performance.now() - tStart) / 1000;
    lg.go();
    await sleep(spec.warmupS * 1000);

    const workers = engine.pool.threads;
    const t0 = engine.totals();
    const b0 = engine.counters[C_BYTES_RECEIVED]!;
    const a0 = acksSent(engine);
    const p0: ProbeSnapshot = snapshot(workers);
    const g0: LoadgenSample = await lg.mark();
    const m0 = trace ? { ...trace } : null;
    const perSecond: number[] = [];
    let lastWritten = t0.written;
    let lastAt = performance.now();
    const tick = setInterval(() => {
      const w = engine.totals().written;
      const now = performance.now();
      perSecond.push(Math.round(((w - lastWritten) * 1000) / (now - lastAt)));
      lastWritten = w;
      lastAt = now;
    }, 1000);
    await sleep(spec.durationS * 1000);
    clearInterval(tick);
    const p1 = snapshot(workers);
    const t1 = engine.totals();
    const b1 = engine.counters[C_BYTES_RECEIVED]!;
    const a1 = acksSent(engine);
    const g1 = await lg.mark();
    const m1 = trace ? { ...trace } : null;

    // Stop the load, let the engine drain, then check the books.
    const tStop = performance.now();
    const fin = await lg.stop();
    lg = null;
    const end = await drained(engine);
    await engine.stop();
    const teardownS = (performance.now() - tStop) / 1000;
    const d = delta(p0, p1);
    const s = d.seconds;
    const frames = t1.written - t0.written;
    const det = t1.detections - t0.detections;
    const genS = (g1.childAt - g0.childAt) / 1000;
    const acc: Accounting = {
      sent: fin.sent, received: end.received, written: end.written, consumed: end.consumed, inRings: end.inRings,
      droppedTotal: end.droppedBeforeRing,
      dropped: Object.fromEntries(Object.entries(end.dropped).filter(([k, v]) => v !== 0 && k !== 'discarded')),
      unacked: fin.lastSeqSent.filter((sq, i) => sq > (fin.lastAck[i] ?? 0)).length,
      errors: fin.errors,
      violations: [],
    };
    if (acc.received !== acc.written + acc.droppedTotal) acc.violations.push(`received ${acc.received} != written ${acc.written} + dropped ${acc.droppedTotal}`);
    if (acc.written !== acc.consumed + acc.inRings) acc.violations.push(`written ${acc.written} != consumed ${acc.consumed} + inRings ${acc.inRings}`);
    if (acc.sent !== acc.received) acc.violations.push(`generator sent ${acc.sent} != engine received ${acc.received}`);
    if (acc.droppedTotal !== 0) acc.violations.push(`dropped ${acc.droppedTotal} frames: ${JSON.stringify(acc.dropped)}`);
    if (fin.closedEarly > 0) acc.violations.push(`${fin.closedEarly} connections closed by the host during the run`);
    if (acc.unacked > 0) acc.violations.push(`${acc.unacked} connections without an ack for their last frame`);
    if (acc.errors.length > 0) acc.violations.push(`host/socket errors: ${acc.errors.slice(0, 3).join('; ')}`);

    const mainBusy = d.mainElu * s;
    let messages: MessageRates | undefined;
    if (m0 && m1) {
      const n = m1.data - m0.data;
      messages = {
        data_msgs_per_s: Math.round(n / s),
        data_bytes_mean: Math.round((m1.dataBytes - m0.dataBytes) / n),
        frames_per_data_msg: round((t1.received - t0.received) / n, 1),
        batch_msgs_per_s: Math.round((m1.batch - m0.batch) / s),
        socket_writes_per_s: Math.round((m1.writes - m0.writes) / s),
        other_to_shard_per_s: round((m1.otherTo - m0.otherTo) / s, 1),
        other_from_shard_per_s: round((m1.otherFrom - m0.otherFrom) / s, 1),
      };
    }
    return {
      protocol: spec.protocol,
      mode: spec.mode,
      shards: engine.config.shards,
      window_s: round(s, 3),
      frames_per_s: Math.round(frames / s),
      detections_per_s: Math.round(det / s),
      received_per_s: Math.round((t1.received - t0.received) / s),
      sent_per_s: Math.round((g1.sent - g0.sent) / genS),
      mbytes_per_s: round((b1 - b0) / s / 1e6, 1),
      acks_per_s: Math.round((a1 - a0) / s),
      main_elu: round(d.mainElu, 4),
      worker_elu: d.workerElu.map((x) => round(x, 4)),
      main_elu_per_mfps: round(d.mainElu / (frames / s / 1e6), 4),
      main_busy_ns_per_frame: round((mainBusy / frames) * 1e9, 1),
      main_thread_cpu: d.mainThreadCpu === null ? null : round(d.mainThreadCpu, 3),
      main_cpu_ns_per_frame: d.mainThreadCpu === null ? null : round(((d.mainThreadCpu * s) / frames) * 1e9, 1),
      process_cpu: round(d.processCpu, 3),
      main_cpu_share: d.mainThreadCpu === null ? null : round(d.mainThreadCpu / d.processCpu, 3),
      machine_cpu_busy: d.machineBusy === null ? null : round(d.machineBusy, 3),
      machine_cpu: d.machine,
      other_cpu: d.machineBusy === null || !d.machine ? null
        : round(d.machineBusy - d.processCpu - (g1.cpuUs - g0.cpuUs) / 1e6 / genS - d.machine.softirq, 3),
      generator_cpu: round((g1.cpuUs - g0.cpuUs) / 1e6 / genS, 3),
      generator_elu: round((g1.eluActiveMs - g0.eluActiveMs) / 1000 / genS, 3),
      per_second: perSecond,
      ...(messages ? { messages } : {}),
      calibration_mops: round(calibrationMops, 3),
      setup_s: round(setupS, 2),
      teardown_s: round(teardownS, 2),
      accounting: acc,
    };
  } finally {
    lg?.kill();
    await engine.stop();
  }
}

function acksSent(engine: Engine): number {
  return engine.pool.slots.reduce((n, s) => n + s.counters[C_ACKS_SENT]!, engine.counters[C_ACKS_SENT]!);
}

/** Waits until the engine's counters stop moving and the rings are empty (bounded). */
async function drained(engine: Engine): Promise<ReturnType<Engine['totals']>> {
  const deadline = Date.now() + 10000;
  let last = engine.totals();
  let stable = 0;
  while (Date.now() < deadline) {
    await sleep(50);
    const t = engine.totals();
    if (t.received === last.received && t.written === last.written && t.consumed === last.consumed && t.inRings === 0) {
      if (++stable >= 3) return t;
    } else {
      stable = 0;
    }
    last = t;
  }
  return engine.totals();
}

// ---------------------------------------------------------------------------
// Ceiling: the generator against a bare read-and-discard server
// ---------------------------------------------------------------------------

interface CeilingResult {
  protocol: BenchProtocol;
  window_s: number;
  frames_per_s: number;
  detections_per_s: number;
  mbytes_per_s: number;
  server_main_elu: number;
  generator_cpu: number;
  generator_elu: number;
  machine_cpu_busy: number | null;
  machine_cpu: { user: number; system: number; softirq: number; steal: number } | null;
}

async function runCeiling(spec: CellSpec): Promise<CeilingResult> {
  let bytes = 0;
  const sockets = new Set<Socket>();
  const server = createServer({ noDelay: true }, (s) => {
    sockets.add(s);
    let first = true;
    s.on('data', (d: Buffer) => {
      bytes += d.length;
      if (first && spec.protocol === 'binary') {
        s.write(encodeMessage({ t: T_WELCOME, v: PROTOCOL_VERSION, node: 'x', last_seq: 0, max_frame: 1 << 20, hb_ms: HEARTBEAT_MS }));
      }
      first = false;
    });
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  let lg: Loadgen | null = null;
  try {
    lg = await Loadgen.start({
      host: '127.0.0.1', port, protocol: spec.protocol, connections: spec.connections, token: TOKEN,
      detections: spec.detections, chunkBytes: spec.chunkBytes, depth: spec.depth, procs: spec.procs,
      maxSeconds: spec.warmupS + spec.durationS + 60, stamped: spec.stamped === true,
    });
    // The bare server never acks: the generator's end-of-run ack wait is bounded.
    lg.go();
    await sleep(spec.warmupS * 1000);
    const p0 = snapshot([]);
    const g0 = await lg.mark();
    const by0 = bytes;
    await sleep(spec.durationS * 1000);
    const p1 = snapshot([]);
    const g1 = await lg.mark();
    const by1 = bytes;
    const genS = (g1.childAt - g0.childAt) / 1000;
    await lg.stop(30000);
    lg = null;
    const d = delta(p0, p1);
    return {
      protocol: spec.protocol,
      window_s: round(genS, 3),
      frames_per_s: Math.round((g1.sent - g0.sent) / genS),
      detections_per_s: Math.round((g1.detections - g0.detections) / genS),
      mbytes_per_s: round((by1 - by0) / d.seconds / 1e6, 1),
      server_main_elu: round(d.mainElu, 4),
      generator_cpu: round((g1.cpuUs - g0.cpuUs) / 1e6 / genS, 3),
      generator_elu: round((g1.eluActiveMs - g0.eluActiveMs) / 1000 / genS, 3),
      machine_cpu_busy: d.machineBusy === null ? null : round(d.machineBusy, 3),
      machine_cpu: d.machine,
    };
  } finally {
    lg?.kill();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
}

// ---------------------------------------------------------------------------
// Isolation: one run in a fresh process (--isolate)
// ---------------------------------------------------------------------------

function runIsolated<T>(kind: 'ingest' | 'ceiling', spec: CellSpec): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = fork(SELF, ['--cell', JSON.stringify({ kind, spec })], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const bound = setTimeout(() => child.kill('SIGKILL'), (spec.warmupS + spec.durationS + 90) * 1000);
    child.on('exit', (code) => {
      clearTimeout(bound);
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`isolated run exited with code ${code}`));
      try {
        resolve(JSON.parse(line) as T);
      } catch {
        reject(new Error(`isolated run printed no result: ${out.slice(-200)}`));
      }
    });
  });
}

// ---------------------------------------------------------------------------
// Statistics and reporting
// ---------------------------------------------------------------------------



const MEDIAN_FIELDS = [
  'frames_per_s', 'detections_per_s', 'received_per_s', 'sent_per_s', 'mbytes_per_s', 'acks_per_s', 'main_elu', 'main_elu_per_mfps',
  'main_busy_ns_per_frame', 'main_thread_cpu', 'main_cpu_ns_per_frame', 'process_cpu', 'main_cpu_share',
  'machine_cpu_busy', 'other_cpu', 'generator_cpu', 'generator_elu', 'calibration_mops',
] as const;

function medians(runs: RunResult[]): Record<string, number | number[]> {
  const out: Record<string, number | number[]> = {};
  for (const f of MEDIAN_FIELDS) {
    const xs = runs.map((r) => r[f]).filter((x): x is number => typeof x === 'number');
    out[f] = xs.length ? round(median(xs), f.endsWith('_s') || f.endsWith('per_s') ? 0 : 4) : NaN;
  }
  const nw = Math.max(0, ...runs.map((r) => r.worker_elu.length));
  out.worker_elu = Array.from({ length: nw }, (_, i) => round(median(runs.map((r) => r.worker_elu[i] ?? NaN)), 4));
  const fps = runs.map((r) => r.frames_per_s);
  out.frames_per_s_min = Math.min(...fps);
  out.frames_per_s_max = Math.max(...fps);
  return out;
}


function writeResults(workload: string, result: unknown): string[] {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const text = `${JSON.stringify(result, null, 2)}\n`;
  const files = [`${workload}-${stamp}.json`, `${workload}-latest.json`];
  for (const f of files) {
    const tmp = `${RESULTS_DIR}${f}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, `${RESULTS_DIR}${f}`);
  }
  return files.map((f) => `bench/results/${f}`);
}

const fmt = (x: number | null | undefined, d = 0): string => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

const USAGE = `usage: node dist/bench/run.js [ingest|ceiling|e2e|burst|connections|fleet|growth|floor|hostile] [options]
workloads: ingest (default), ceiling, e2e (see the top of bench/run.ts);
  burst        64 nodes unpaced, both protocols, shards 0 vs default: into rings, end to
               end and raw (bare server) in one run (--reps, --duration; default 3 x 5 s)
  connections  10,000 mostly idle connections: engine vs raw (bench/connections.ts;
               --connections, --duration = heartbeat window, --heartbeat-ms)
  fleet        1,000 nodes x 2 frames/s with heartbeats, drained by one minimal tracker
               each and by the drain-only consumer (sink: discard), default shards and
               shards: 0 (bench/fleet.ts; --nodes, --fps, --duration, --detections,
               --sinks trackers,discard)
  growth       cost by node count and detections per frame (bench/growth.ts)
  hostile      legitimate nodes while the host is attacked (bench/hostile.ts; --duration =
               attack phase (default 60), --baseline S (default 20), --nodes (64),
               --fps (20 per node), --detections (10), --attacks LIST (default all:
               slowloris,amplifier,idflood,oversize,storm,badurl), --rss-cap-mb (4096:
               the engine is killed past it, counted as not surviving), --engine-nofile
               (ulimit -n for the engine, default 1024; 0 = inherit))
  floor        the architecture's latency floor on this machine, without the engine: the e2e
               paced generator into a bare Node server (read), + one worker hop per
               read and back (hop), + the shard's decode cost as a busy wait (decode)
               and the real engine with the drain-only sink under the same load (engine)
               (bench/floor.ts; --cells, --rates 40000,180000,360000, --tick-ms,
               --stagger, --nice (default 10), --ns-per-byte (default 12.5), --duration)
  --duration S      measured window per run, seconds (default 10; ceiling 5; e2e 8)
  --warmup S        load before the window, seconds (default 1.5)
  --reps N          runs per cell, medians reported (default 3; ceiling 1)
  --connections N   nodes / TCP connections (default 64)
  --protocols LIST  line,binary (default both)
  --modes LIST      engine modes: default (shards: auto) and shardsN (shards: N);
                    default list shards0,default
  --detections N    binary detections per frame (default 50)
  --chunk-kb N      bytes per generator write, KiB (default 256)
  --depth N         generator writes in flight per connection (default 2)
  --procs N         generator processes (default 1)
  --ring-bytes N    ring.size_bytes for the engine (default: config default)
  --isolate         run each measurement in a fresh process
  --trace-messages  count main<->shard messages (diagnostics; adds main-thread work)
  --no-save         do not write bench/results/
e2e only:
  --latency-duration S  latency window at the paced rate, seconds (default: --duration)
  --latency-warmup S    paced load before that window, seconds (default 1)
  --load-fraction F     paced rate as a share of the measured e2e rate (default 0.5)
  --paced-fps N         paced rate in frames/s instead (e.g. 128: 64 nodes at 2 Hz)
  --tick-ms MS          pacing period of the generator (default 1)
  --stagger             each node writes once per tick at its own phase (node i at
                        i/N of the tick), as independent nodes do, instead of all
                        nodes in the same instant
  --shards N            the engine's shards (default: auto; 0 = one shard on the main
                        thread, no thread hops)
  --tracker drain|cat|none  the tracker per node: drain (bench/drain-tracker.ts on TCP,
                        latency at its read; default), cat (sh -c 'exec cat >/dev/null' on
                        stdin, latency at the engine's write into it) or none (no trackers:
                        the drain-only sink, sink: discard; the ingest path alone, latency
                        where the sink drains the ring)
  --nice N              nice value for the generator and the trackers (default 0): with 10
                        the engine is served first when the cores are short, as on a host
                        of its own (the nodes are remote in a deployment)
  --tracker-prefix CMD  run the trackers under CMD, e.g. "nice -n 10" or "chrt -b 0"
                        (SCHED_BATCH: a woken tracker does not preempt the engine)
  --port-start P        first tracker port to provision (default 19000; 100 ports; keep
                        it out of the ephemeral port range)
  --quiet-wait S        before each cell, wait up to S s for the machine to be idle
                        (< 0.3 cores busy; default 10, 0 = never)
  --refs LIST           discard-sink reference cells per rep: ingest (the ingest
                        workload's line/default cell), stamped (the same with the e2e
                        generator), none; default ingest`;

function trackerKind(v: string | undefined): TrackerKind {
  if (v === undefined) return 'drain';
  if (Object.hasOwn(TRACKER_KINDS, v)) return v as TrackerKind;
  throw new Error(`--tracker must be ${Object.keys(TRACKER_KINDS).join(', ')} (got ${v})`);
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      duration: { type: 'string' }, warmup: { type: 'string' }, reps: { type: 'string' },
      connections: { type: 'string' }, protocols: { type: 'string' }, modes: { type: 'string' },
      detections: { type: 'string' }, 'chunk-kb': { type: 'string' }, depth: { type: 'string' },
      procs: { type: 'string' }, 'ring-bytes': { type: 'string' }, isolate: { type: 'boolean' },
      'trace-messages': { type: 'boolean' },
      'latency-duration': { type: 'string' }, 'latency-warmup': { type: 'string' }, 'load-fraction': { type: 'string' },
      'tick-ms': { type: 'string' }, 'paced-fps': { type: 'string' }, 'tracker-prefix': { type: 'string' }, 'port-start': { type: 'string' }, refs: { type: 'string' }, sinks: { type: 'string' }, tracker: { type: 'string' }, nice: { type: 'string' }, 'quiet-wait': { type: 'string' }, shards: { type: 'string' }, stagger: { type: 'boolean' }, cells: { type: 'string' }, rates: { type: 'string' }, 'ns-per-byte': { type: 'string' },
      'heartbeat-ms': { type: 'string' }, nodes: { type: 'string' }, fps: { type: 'string' },
      baseline: { type: 'string' }, attacks: { type: 'string' }, 'rss-cap-mb': { type: 'string' }, 'engine-nofile': { type: 'string' },
      'no-save': { type: 'boolean' }, cell: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.cell) {
    // Child of --isolate: one run, result as the last stdout line.
    const { kind, spec } = JSON.parse(values.cell) as { kind: 'ingest' | 'ceiling'; spec: CellSpec };
    const r = kind === 'ingest' ? await runOnce(spec) : await runCeiling(spec);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    process.exit(0);
  }
  if (values.help) {
    process.stderr.write(`${USAGE}\n`);
    return;
  }
  const workload = positionals[0] ?? 'ingest';
  if (!['ingest', 'ceiling', 'e2e', 'burst', 'connections', 'fleet', 'growth', 'floor', 'hostile'].includes(workload)) throw new Error(`unknown workload ${workload}\n${USAGE}`);
  const num = (v: string | undefined, def: number): number => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`bad number ${v}`);
    return n;
  };
  const ceiling = workload === 'ceiling';
  const base = {
    connections: num(values.connections, 64),
    warmupS: num(values.warmup, 1.5),
    durationS: num(values.duration, ceiling ? 5 : workload === 'e2e' ? 8 : 10),
    chunkBytes: num(values['chunk-kb'], 256) * 1024,
    depth: num(values.depth, 2),
    procs: num(values.procs, 1),
    ringBytes: values['ring-bytes'] ? num(values['ring-bytes'], 0) : null,
    traceMessages: values['trace-messages'] ?? false,
  };
  const reps = num(values.reps, ceiling ? 1 : 3);
  const protocols = (values.protocols ?? 'line,binary').split(',') as BenchProtocol[];
  const modes = (values.modes ?? 'shards0,default').split(',') as Mode[];
  for (const p of protocols) if (p !== 'line' && p !== 'binary') throw new Error(`unknown protocol ${p}`);
  for (const m of modes) if (m !== 'default' && !/^shards\d+$/.test(m)) throw new Error(`unknown mode ${m} (default or shardsN)`);
  const detFor = (p: BenchProtocol): number => (p === 'binary' ? num(values.detections, 50) : 3);
  const isolate = values.isolate ?? false;
  if (workload === 'e2e') {
    await mainE2e(base, num(values.reps, 3), values, num);
    return;
  }
  if (workload === 'connections') {
    // 10,000 mostly idle connections against the engine and against a bare server (raw), one invocation.
    const { runConnections, summarizeConnections } = await import('./connections.js');
    const res = await runConnections({
      connections: num(values.connections, 10_000), windowS: num(values.duration, 20), heartbeatMs: num(values['heartbeat-ms'], 5000),
      reps: num(values.reps, 1),
    });
    const files = values['no-save'] ? [] : writeResults('connections', res);
    process.stderr.write(`${summarizeConnections(res)}${files.length ? `results in ${files.join(', ')}\n` : ''}`);
    process.stdout.write(`${JSON.stringify(res)}\n`);
    return;
  }
  if (workload === 'fleet') {
    // 1,000 nodes x 2 Hz with heartbeats, one minimal tracker per node; default shards and shards: 0 in one run.
    const { runFleet, fleetSummary, FLEET_TARGETS } = await import('./fleet.js');
    const fleetModes = (values.modes ?? 'default,shards0').split(',') as Mode[];
    const sinks = (values.sinks ?? 'trackers,discard').split(',');
    for (const k of sinks) if (k !== 'trackers' && k !== 'discard') throw new Error(`--sinks: unknown sink ${k} (trackers, discard)`);
    const started = new Date().toISOString();
    const runs: Array<{ mode: Mode; sink: string; result: Record<string, unknown> }> = [];
    for (let r = 0; r < num(values.reps, 1); r++) {
      for (const sink of sinks as Array<'trackers' | 'discard'>) {
        for (const mode of fleetModes) {
          const result = await runFleet({
            nodes: num(values.nodes, 1000), fps: num(values.fps, 2), durationS: num(values.duration, 60),
            detections: num(values.detections, 10), heartbeatMs: num(values['heartbeat-ms'], 5000),
            shards: mode === 'default' ? 'auto' : Number(mode.slice(6)), quietWaitS: 10, sink,
          });
          runs.push({ mode, sink, result });
          process.stderr.write(`fleet ${mode} sink ${sink} rep ${r + 1}:\n${fleetSummary(result)}\n`);
        }
      }
    }
    const out = { workload: 'fleet', started_at: started, git: gitInfo(), targets: FLEET_TARGETS, modes: fleetModes, sinks, runs };
    const files = values['no-save'] ? [] : writeResults('fleet', out);
    if (files.length) process.stderr.write(`results in ${files.join(', ')}\n`);
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  if (workload === 'hostile') {
    // Legitimate nodes through an attack mix on every port, against the CLI engine.
    const { runHostile, hostileSummary, parseAttacks } = await import('./hostile.js');
    const opts = {
      baselineS: num(values.baseline, 20), durationS: num(values.duration, 60), nodes: num(values.nodes, 64),
      fps: num(values.fps, 20), detections: num(values.detections, 10), attacks: parseAttacks(values.attacks),
      rssCapMb: num(values['rss-cap-mb'], 4096), engineNofile: num(values['engine-nofile'], 1024),
    };
    const watchdog = setTimeout(() => {
      process.stderr.write('bench: overall time bound exceeded, exiting\n');
      process.exit(2);
    }, (opts.baselineS + opts.durationS + 300) * 1000);
    watchdog.unref();
    const res = await runHostile(opts);
    const files = values['no-save'] ? [] : writeResults('hostile', res);
    process.stderr.write(`${hostileSummary(res)}\n${files.length ? `results in ${files.join(', ')}\n` : ''}`);
    process.stdout.write(`${JSON.stringify(res)}\n`);
    return;
  }
  if (workload === 'growth') {
    const { runGrowth } = await import('./growth.js');
    const res = await runGrowth(values.duration ? { cellS: num(values.duration, 15) } : {});
    const files = values['no-save'] ? [] : writeResults('growth', res);
    const table = (res as { table_md?: string }).table_md ?? '';
    if (!values['no-save'] && table) writeFileSync(`${RESULTS_DIR}growth-latest.md`, `${table}\n`);
    process.stderr.write(`${table}\n${files.length ? `results in ${files.join(', ')}, bench/results/growth-latest.md\n` : ''}`);
    process.stdout.write(`${JSON.stringify(res)}\n`);
    return;
  }
  if (workload === 'floor') {
    // The architecture's latency floor here: bare server, + one worker hop, + simulated decode (bench/floor.ts).
    const { runFloor, floorLine, FLOOR_CELLS } = await import('./floor.js');
    const cells = (values.cells ?? FLOOR_CELLS.join(',')).split(',') as FloorCell[];
    for (const c of cells) if (!FLOOR_CELLS.includes(c)) throw new Error(`--cells: unknown cell ${c} (${FLOOR_CELLS.join(', ')})`);
    const rates = (values.rates ?? '40000,180000,360000').split(',').map((x) => num(x, 0));
    const started = new Date().toISOString();
    const runs: unknown[] = [];
    for (let r = 0; r < num(values.reps, 1); r++) {
      for (const fps of rates) {
        for (const cell of cells) {
          const fs: FloorSpec = {
            cell, fps, tickMs: num(values['tick-ms'], 1), stagger: values.stagger === true, connections: num(values.connections, 64),
            nice: num(values.nice, 10), nsPerByte: num(values['ns-per-byte'], 12.5), warmupS: num(values.warmup, 2), durationS: num(values.duration, 6),
          };
          const res = await runFloor(fs, calibrate);
          runs.push(res);
          process.stderr.write(`${floorLine(res)}\n`);
        }
      }
    }
    const out = { workload: 'floor', started_at: started, git: gitInfo(), machine: { cpus: os.availableParallelism(), node: process.version, platform: `${os.platform()} ${os.release()}` }, runs };
    const files = values['no-save'] ? [] : writeResults('floor', out);
    if (files.length) process.stderr.write(`results in ${files.join(', ')}\n`);
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  if (workload === 'burst') {
    await mainBurst({ ...base, durationS: num(values.duration, 5) }, num(values.reps, 3), protocols, modes, detFor, values, num);
    return;
  }
  const started = performance.now();
  // Whole-run bound: never hang a CI job or a terminal.
  const perRun = base.warmupS + base.durationS + 30;
  const watchdog = setTimeout(() => {
    process.stderr.write('bench: overall time bound exceeded, exiting\n');
    process.exit(2);
  }, perRun * reps * protocols.length * (ceiling ? 1 : modes.length) * 1000 + 60000);
  watchdog.unref();

  const header = {
    workload,
    started_at: new Date().toISOString(),
    git: gitInfo(),
    machine: { cpus: os.availableParallelism(), model: os.cpus()[0]?.model ?? '?', mem_gib: round(os.totalmem() / 2 ** 30, 1), node: process.version, platform: `${os.platform()} ${os.release()}` },
    params: { ...base, reps, protocols, modes, isolate, binary_detections: detFor('binary'), line_detections: '1-5 cycling' },
  };

  if (ceiling) {
    const results: CeilingResult[] = [];
    for (const protocol of protocols) {
      const spec: CellSpec = { ...base, protocol, mode: 'default', detections: detFor(protocol) };
      const runs: CeilingResult[] = [];
      for (let r = 0; r < reps; r++) {
        const res = isolate ? await runIsolated<CeilingResult>('ceiling', spec) : await runCeiling(spec);
        runs.push(res);
        process.stderr.write(`ceiling ${protocol} rep ${r + 1}: ${fmt(res.frames_per_s)} frames/s, ${fmt(res.mbytes_per_s, 1)} MB/s, generator CPU ${fmt(res.generator_cpu, 2)} cores\n`);
      }
      results.push(runs.sort((a, b) => a.frames_per_s - b.frames_per_s)[runs.length >> 1]!);
    }
    const out = { ...header, duration_s: round((performance.now() - started) / 1000, 1), results };
    if (!values['no-save']) out_files(writeResults(workload, out));
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }

  // Repetitions are interleaved (rep 1 of every cell, then rep 2, ...) so that a slow
  // drift of the machine's speed (shared host) does not bias one cell against another.
  type Cell = { protocol: BenchProtocol; mode: Mode; shards: number; runs: RunResult[]; median: Record<string, number | number[]> };
  const cells: Cell[] = [];
  for (const protocol of protocols) for (const mode of modes) cells.push({ protocol, mode, shards: -1, runs: [], median: {} });
  for (let r = 0; r < reps; r++) {
    for (const cell of cells) {
      const { protocol, mode } = cell;
      const spec: CellSpec = { ...base, protocol, mode, detections: detFor(protocol) };
      const res = isolate ? await runIsolated<RunResult>('ingest', spec) : await runOnce(spec);
      cell.runs.push(res);
      cell.shards = res.shards;
      process.stderr.write(`${protocol.padEnd(6)} ${mode.padEnd(7)} rep ${r + 1}: ${fmt(res.frames_per_s).padStart(10)} frames/s ${fmt(res.detections_per_s).padStart(12)} det/s  main ELU ${fmt(res.main_elu, 3)}  worker ELU ${res.worker_elu.map((x) => fmt(x, 3)).join(',') || '-'}  proc CPU ${fmt(res.process_cpu, 2)}  gen CPU ${fmt(res.generator_cpu, 2)}  calib ${fmt(res.calibration_mops, 2)}${(res.other_cpu ?? 0) > 0.2 ? `  (other CPU ${fmt(res.other_cpu, 2)} cores: noisy)` : ''}${res.accounting.violations.length ? `  VIOLATIONS: ${res.accounting.violations.join('; ')}` : ''}\n`);
    }
  }
  for (const cell of cells) cell.median = medians(cell.runs);

  const med = (p: BenchProtocol, m: Mode): Record<string, number | number[]> | undefined => cells.find((c) => c.protocol === p && c.mode === m)?.median;
  const ratios: Record<string, Record<string, number>> = {};
  for (const p of protocols) {
    const a = med(p, 'default');
    const b = med(p, 'shards0');
    if (!a || !b) continue;
    const r: Record<string, number> = {};
    for (const f of ['frames_per_s', 'detections_per_s', 'main_elu', 'main_thread_cpu', 'main_busy_ns_per_frame', 'process_cpu'] as const) {
      r[f] = round((a[f] as number) / (b[f] as number), 3);
    }
    ratios[p] = r;
  }
  const targets = protocols.map((p) => {
    const t = TARGETS[p];
    const byMode = Object.fromEntries(modes.map((m) => {
      const v = med(p, m)?.[t.metric] as number;
      return [m, { value: v, pass: v >= t.min }];
    }));
    return { protocol: p, metric: t.metric, min: t.min, what: t.what, ...byMode, pass: byMode.default?.pass ?? null };
  });
  const violations = cells.flatMap((c) => c.runs.flatMap((r, i) => r.accounting.violations.map((v) => `${c.protocol}/${c.mode} rep ${i + 1}: ${v}`)));
  const out = {
    ...header,
    duration_s: round((performance.now() - started) / 1000, 1),
    targets,
    reference: { python_tracker_host_frames_per_s: PYTHON_REFERENCE_FRAMES_PER_S },
    ratios_default_over_shards0: ratios,
    accounting: { ok: violations.length === 0, violations },
    cells,
  };
  let files: string[] = [];
  if (!values['no-save']) files = writeResults(workload, out);

  // Human summary.
  const lines: string[] = [];
  lines.push('');
  lines.push('medians:');
  lines.push('protocol mode     shards     frames/s        det/s   main ELU  ELU/Mfps  main ns/frame  main CPU  share  proc CPU  gen CPU  machine  worker ELU   frames/s min..max');
  for (const c of cells) {
    const m = c.median;
    lines.push(`${c.protocol.padEnd(8)} ${c.mode.padEnd(8)} ${String(c.shards).padStart(6)} ${fmt(m.frames_per_s as number).padStart(12)} ${fmt(m.detections_per_s as number).padStart(12)} ${fmt(m.main_elu as number, 3).padStart(10)} ${fmt(m.main_elu_per_mfps as number, 3).padStart(9)} ${fmt(m.main_busy_ns_per_frame as number, 0).padStart(14)} ${fmt(m.main_thread_cpu as number, 2).padStart(9)} ${fmt(m.main_cpu_share as number, 2).padStart(6)} ${fmt(m.process_cpu as number, 2).padStart(9)} ${fmt(m.generator_cpu as number, 2).padStart(8)} ${fmt(m.machine_cpu_busy as number, 2).padStart(8)}  ${((m.worker_elu as number[]).map((x) => fmt(x, 3)).join(',') || '-').padEnd(11)} ${fmt(m.frames_per_s_min as number)}..${fmt(m.frames_per_s_max as number)}`);
  }
  lines.push('(main ELU/Mfps: main-thread event-loop utilisation per 1,000,000 frames/s; share: main thread / engine process CPU;');
  lines.push(' CPU columns in cores; machine: whole machine CPU busy incl. generator and loopback TCP)');
  lines.push('');
  for (const [p, r] of Object.entries(ratios)) {
    lines.push(`${p}: default/shards0  frames/s x${fmt(r.frames_per_s, 2)}  main ELU x${fmt(r.main_elu, 2)}  main ns/frame x${fmt(r.main_busy_ns_per_frame, 2)}  process CPU x${fmt(r.process_cpu, 2)}`);
  }
  for (const t of targets) {
    const parts = modes.map((m) => {
      const x = (t as unknown as Record<string, { value: number; pass: boolean }>)[m]!;
      return `${m} ${fmt(x.value)} ${x.pass ? 'PASS' : 'FAIL'}`;
    });
    lines.push(`target ${t.what} >= ${fmt(t.min)}: ${parts.join(', ')}`);
  }
  const lineDefault = med('line', 'default')?.frames_per_s as number | undefined;
  if (lineDefault) lines.push(`line default vs Python tracker-host (${fmt(PYTHON_REFERENCE_FRAMES_PER_S)} frames/s): x${fmt(lineDefault / PYTHON_REFERENCE_FRAMES_PER_S, 1)}`);
  lines.push(`accounting: ${violations.length === 0 ? 'OK (sent == received == written + dropped, written == consumed + inRings, nothing dropped)' : `${violations.length} VIOLATIONS`}`);
  for (const v of violations.slice(0, 10)) lines.push(`  ${v}`);
  lines.push(`total ${fmt(out.duration_s, 1)} s${files.length ? `; results in ${files.join(', ')}` : ''}`);
  process.stderr.write(`${lines.join('\n')}\n`);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

// ---------------------------------------------------------------------------
// e2e
// ---------------------------------------------------------------------------

type Base = Omit<CellSpec, 'protocol' | 'mode' | 'detections'>;


async function mainE2e(base: Base, reps: number, values: Record<string, string | boolean | undefined>,
  num: (v: string | undefined, def: number) => number): Promise<void> {
  const str = (k: string): string | undefined => (typeof values[k] === 'string' ? values[k] as string : undefined);
  const portStart = num(str('port-start'), 19000);
  const spec: E2eSpec = {
    connections: base.connections,
    warmupS: base.warmupS,
    durationS: base.durationS,
    latencyWarmupS: num(str('latency-warmup'), 1),
    latencyS: num(str('latency-duration'), base.durationS),
    loadFraction: num(str('load-fraction'), 0.5),
    pacedFps: num(str('paced-fps'), 0),
    trackerPrefix: (str('tracker-prefix') ?? '').split(/\s+/).filter((x) => x !== ''),
    tracker: trackerKind(str('tracker')),
    nice: num(str('nice'), 0),
    tickMs: num(str('tick-ms'), 1),
    stagger: values.stagger === true,
    shards: str('shards') === undefined ? 'auto' : num(str('shards'), 0),
    chunkBytes: base.chunkBytes,
    depth: base.depth,
    procs: base.procs,
    ringBytes: base.ringBytes,
    portStart,
    portEnd: Math.min(65535, portStart + Math.max(99, base.connections - 1)),
    token: TOKEN,
  };
  const quietMaxS = num(str('quiet-wait'), 10);
  const quiet: Array<{ cell: string; rep: number; waited_s: number; busy: number | null }> = [];
  const beQuiet = async (cell: string, rep: number): Promise<void> => {
    if (quietMaxS <= 0) return;
    const q = await waitQuiet(quietMaxS);
    quiet.push({ cell, rep, ...q });
    if (q.busy !== null && q.busy >= 0.3) process.stderr.write(`(machine still busy before ${cell} rep ${rep}: ${fmt(q.busy, 2)} cores after ${fmt(q.waited_s, 1)} s; measuring anyway)\n`);
  };
  const refs = (str('refs') ?? 'ingest').split(',').filter((r) => r !== '' && r !== 'none');
  for (const r of refs) if (r !== 'ingest' && r !== 'stamped') throw new Error(`unknown reference ${r} (ingest or stamped)`);
  const started = performance.now();
  const perRep = (base.warmupS + base.durationS + 30 + quietMaxS) * refs.length
    + spec.warmupS + spec.durationS + spec.latencyWarmupS + spec.latencyS + 120 + quietMaxS;
  const watchdog = setTimeout(() => {
    process.stderr.write('bench: overall time bound exceeded, exiting\n');
    process.exit(2);
  }, perRep * reps * 1000 + 60000);
  watchdog.unref();

  const header = {
    workload: 'e2e',
    started_at: new Date().toISOString(),
    git: gitInfo(),
    machine: { cpus: os.availableParallelism(), model: os.cpus()[0]?.model ?? '?', mem_gib: round(os.totalmem() / 2 ** 30, 1), node: process.version, platform: `${os.platform()} ${os.release()}` },
    params: { ...spec, token: undefined, reps, refs, line_detections: '1-5 cycling', tracker: TRACKER_KINDS[spec.tracker ?? 'drain'].what },
  };

  const refRuns: Record<string, RunResult[]> = Object.fromEntries(refs.map((r) => [r, []]));
  const runs: E2eResult[] = [];
  for (let r = 0; r < reps; r++) {
    for (const ref of refs) {
      await beQuiet(`ref ${ref}`, r + 1);
      const res = await runOnce({ ...base, protocol: 'line', mode: 'default', detections: 3, stamped: ref === 'stamped' });
      refRuns[ref]!.push(res);
      process.stderr.write(`ref ${ref.padEnd(8)} rep ${r + 1}: ${fmt(res.frames_per_s).padStart(10)} frames/s into rings (sink discard)  main ELU ${fmt(res.main_elu, 3)}  worker ELU ${res.worker_elu.map((x) => fmt(x, 3)).join(',')}  proc CPU ${fmt(res.process_cpu, 2)}  gen CPU ${fmt(res.generator_cpu, 2)}  calib ${fmt(res.calibration_mops, 2)}${(res.other_cpu ?? 0) > 0.2 ? `  (other CPU ${fmt(res.other_cpu, 2)} cores: noisy)` : ''}${res.accounting.violations.length ? `  VIOLATIONS: ${res.accounting.violations.join('; ')}` : ''}\n`);
    }
    await beQuiet('e2e', r + 1);
    const e = await runE2eOnce(spec, calibrate);
    runs.push(e);
    const m = e.max;
    const h = e.half!; // the e2e workload always runs the half phase
    process.stderr.write(`e2e          rep ${r + 1}: ${fmt(m.delivered_per_s).padStart(10)} frames/s delivered (${fmt(m.into_rings_per_s)} into rings, rings ${fmt(m.rings_fill * 100)}% full)  main ELU ${fmt(m.cpu.main_elu, 3)}  worker ELU ${m.cpu.worker_elu.map((x) => fmt(x, 3)).join(',')}  proc CPU ${fmt(m.cpu.process_cpu, 2)}  trackers CPU ${fmt(m.cpu.trackers_cpu, 2)}  gen CPU ${fmt(m.cpu.generator_cpu, 2)}  calib ${fmt(e.calibration_mops, 2)}${(m.cpu.other_cpu ?? 0) > 0.2 ? `  (other CPU ${fmt(m.cpu.other_cpu, 2)} cores: noisy)` : ''}\n`);
    process.stderr.write(`  half load  rep ${r + 1}: ${fmt(h.delivered_per_s).padStart(10)} frames/s (target ${fmt(h.target_per_s)})  latency p50 ${fmt(h.latency.p50_ms, 2)} ms  p99 ${fmt(h.latency.p99_ms, 2)} ms  max ${fmt(h.latency.max_ms, 1)} ms (${fmt(h.latency.samples)} samples)  to tracker write p50 ${fmt(h.latency_to_tracker_write.p50_ms, 2)} ms  p99 ${fmt(h.latency_to_tracker_write.p99_ms, 2)} ms  to engine read p50 ${fmt(h.latency_to_engine_read?.p50_ms, 2)} ms  p99 ${fmt(h.latency_to_engine_read?.p99_ms, 2)} ms  main ELU ${fmt(h.cpu.main_elu, 3)}  proc CPU ${fmt(h.cpu.process_cpu, 2)}  trackers CPU ${fmt(h.cpu.trackers_cpu, 2)}  gen CPU ${fmt(h.cpu.generator_cpu, 2)}${(h.cpu.other_cpu ?? 0) > 0.2 ? `  (other CPU ${fmt(h.cpu.other_cpu, 2)} cores: noisy)` : ''}${h.sustained ? '' : '  NOT SUSTAINED (queues grew: the latency is backlog)'}${h.pace_skipped > 0 ? `  generator behind: ${fmt(h.pace_skipped)} frames skipped` : ''}${e.accounting.violations.length ? `  VIOLATIONS: ${e.accounting.violations.join('; ')}` : ''}\n`);
  }

  const med = (xs: Array<number | null>): number => round(median(xs.filter((x): x is number => x !== null)), 4);
  const refMedian: Record<string, number> = Object.fromEntries(refs.map((r) => [r, Math.round(med(refRuns[r]!.map((x) => x.frames_per_s)))]));
  const primary = refs[0];
  const perRepRatio = runs.map((e, i) => round(e.max.delivered_per_s / (primary ? refRuns[primary]![i]!.frames_per_s : NaN), 4));
  const cpuMed = (pick: (e: E2eResult) => E2eResult['max']['cpu']): Record<string, number | number[]> => ({
    process_cpu: med(runs.map((e) => pick(e).process_cpu)),
    main_thread_cpu: med(runs.map((e) => pick(e).main_thread_cpu)),
    main_elu: med(runs.map((e) => pick(e).main_elu)),
    worker_elu: Array.from({ length: Math.max(0, ...runs.map((e) => pick(e).worker_elu.length)) }, (_, k) => med(runs.map((e) => pick(e).worker_elu[k] ?? null))),
    trackers_cpu: med(runs.map((e) => pick(e).trackers_cpu)),
    generator_cpu: med(runs.map((e) => pick(e).generator_cpu)),
    machine_cpu_busy: med(runs.map((e) => pick(e).machine_cpu_busy)),
    softirq: med(runs.map((e) => pick(e).machine_cpu?.softirq ?? null)),
    other_cpu: med(runs.map((e) => pick(e).other_cpu)),
  });
  const costMed = (pick: (e: E2eResult) => E2eResult['max']['cost_ns_per_frame']): Record<string, number> => Object.fromEntries(
    (['engine', 'main_thread', 'engine_other_threads', 'trackers', 'generator', 'softirq'] as const).map((k) => [k, Math.round(med(runs.map((e) => pick(e)[k])))]));
  const medians = {
    reference_into_rings_per_s: refMedian,
    reference_main_elu: Object.fromEntries(refs.map((r) => [r, med(refRuns[r]!.map((x) => x.main_elu))])),
    reference_process_cpu: Object.fromEntries(refs.map((r) => [r, med(refRuns[r]!.map((x) => x.process_cpu))])),
    reference_generator_cpu: Object.fromEntries(refs.map((r) => [r, med(refRuns[r]!.map((x) => x.generator_cpu))])),
    e2e_delivered_per_s: Math.round(med(runs.map((e) => e.max.delivered_per_s))),
    e2e_into_rings_per_s: Math.round(med(runs.map((e) => e.max.into_rings_per_s))),
    e2e_delivered_per_s_min: Math.min(...runs.map((e) => e.max.delivered_per_s)),
    e2e_delivered_per_s_max: Math.max(...runs.map((e) => e.max.delivered_per_s)),
    e2e_main_busy_ns_per_frame: med(runs.map((e) => e.max.main_busy_ns_per_frame)),
    e2e_rings_fill: med(runs.map((e) => e.max.rings_fill)),
    e2e_feeder_writes_per_s: Math.round(med(runs.map((e) => e.max.feeder.writes_per_s))),
    e2e_feeder_frames_per_write: med(runs.map((e) => e.max.feeder.frames_per_write)),
    e2e_cpu: cpuMed((e) => e.max.cpu),
    e2e_cost_ns_per_frame: costMed((e) => e.max.cost_ns_per_frame),
    reference_engine_cpu_ns_per_frame: Object.fromEntries(refs.map((r) => [r, Math.round(med(refRuns[r]!.map((x) => (x.process_cpu / x.frames_per_s) * 1e9)))])),
    reference_main_cpu_ns_per_frame: Object.fromEntries(refs.map((r) => [r, Math.round(med(refRuns[r]!.map((x) => x.main_cpu_ns_per_frame)))])),
    e2e_saturated_latency_p50_ms: med(runs.map((e) => e.max.latency.p50_ms)),
    e2e_saturated_latency_p99_ms: med(runs.map((e) => e.max.latency.p99_ms)),
    half_target_per_s: Math.round(med(runs.map((e) => e.half!.target_per_s))),
    half_delivered_per_s: Math.round(med(runs.map((e) => e.half!.delivered_per_s))),
    half_sustained_reps: runs.filter((e) => e.half!.sustained).length,
    half_latency_p50_ms: med(runs.map((e) => e.half!.latency.p50_ms)),
    half_latency_p90_ms: med(runs.map((e) => e.half!.latency.p90_ms)),
    half_latency_p99_ms: med(runs.map((e) => e.half!.latency.p99_ms)),
    half_latency_p999_ms: med(runs.map((e) => e.half!.latency.p999_ms)),
    half_latency_max_ms: med(runs.map((e) => e.half!.latency.max_ms)),
    half_latency_samples: Math.round(med(runs.map((e) => e.half!.latency.samples))),
    half_latency_to_tracker_write_p50_ms: med(runs.map((e) => e.half!.latency_to_tracker_write.p50_ms)),
    half_latency_to_tracker_write_p99_ms: med(runs.map((e) => e.half!.latency_to_tracker_write.p99_ms)),
    half_latency_to_tracker_write_samples: Math.round(med(runs.map((e) => e.half!.latency_to_tracker_write.samples))),
    half_latency_to_engine_read_p50_ms: med(runs.map((e) => e.half!.latency_to_engine_read.p50_ms)),
    half_latency_to_engine_read_p99_ms: med(runs.map((e) => e.half!.latency_to_engine_read.p99_ms)),
    half_feeder_frames_per_write: med(runs.map((e) => e.half!.feeder.frames_per_write)),
    half_cpu: cpuMed((e) => e.half!.cpu),
    half_cost_ns_per_frame: costMed((e) => e.half!.cost_ns_per_frame),
    half_feeder_writes_per_s: Math.round(med(runs.map((e) => e.half!.feeder.writes_per_s))),
  };
  const ratio = round(medians.e2e_delivered_per_s / (primary ? refMedian[primary]! : NaN), 4);
  const ratios = {
    /** The ratio that matters: e2e delivered / discard into-ring (medians, same invocation). */
    e2e_over_discard_into_rings: ratio,
    e2e_over_discard_per_rep: perRepRatio,
    e2e_over_discard_per_rep_median: med(perRepRatio),
    ...(refs.includes('stamped') ? { e2e_over_discard_stamped: round(medians.e2e_delivered_per_s / refMedian.stamped!, 4) } : {}),
    e2e_delivered_over_into_rings: round(medians.e2e_delivered_per_s / medians.e2e_into_rings_per_s, 4),
    half_delivered_over_target: round(medians.half_delivered_per_s / medians.half_target_per_s, 4),
  };
  const p99Max = Math.max(...runs.map((e) => e.half!.latency.p99_ms));
  const targets = {
    throughput: {
      what: `e2e frames/s delivered to trackers >= ${E2E_TARGETS.min_ratio} x line frames/s into rings (sink discard, same run)`,
      value: ratio, min: E2E_TARGETS.min_ratio, pass: ratio >= E2E_TARGETS.min_ratio,
      absolute: {
        what: `e2e frames/s >= ${E2E_TARGETS.min_ratio} x the ${fmt(E2E_TARGETS.line_target_frames_per_s)} frames/s ingest target`,
        value: medians.e2e_delivered_per_s, min: E2E_TARGETS.min_ratio * E2E_TARGETS.line_target_frames_per_s,
        pass: medians.e2e_delivered_per_s >= E2E_TARGETS.min_ratio * E2E_TARGETS.line_target_frames_per_s,
      },
    },
    latency: {
      what: `p99 send-to-tracker latency < ${E2E_TARGETS.p99_ms} ms at ${spec.pacedFps > 0 ? `${spec.pacedFps} frames/s` : `${spec.loadFraction} x the e2e rate`}`,
      value: medians.half_latency_p99_ms, worst_rep: p99Max, max: E2E_TARGETS.p99_ms, pass: medians.half_latency_p99_ms < E2E_TARGETS.p99_ms,
    },
  };
  const violations = [
    ...runs.flatMap((e, i) => e.accounting.violations.map((v) => `e2e rep ${i + 1}: ${v}`)),
    ...refs.flatMap((ref) => refRuns[ref]!.flatMap((x, i) => x.accounting.violations.map((v) => `ref ${ref} rep ${i + 1}: ${v}`))),
  ];
  const out = {
    ...header,
    duration_s: round((performance.now() - started) / 1000, 1),
    targets,
    ratios,
    medians,
    accounting: { ok: violations.length === 0, violations },
    quiet_waits: quiet,
    runs,
    reference_runs: refRuns,
  };
  let files: string[] = [];
  if (!values['no-save']) files = writeResults('e2e', out);

  const L: string[] = [''];
  const mc = medians.e2e_cpu;
  const hc = medians.half_cpu;
  L.push(`medians of ${reps} (line protocol, ${spec.connections} nodes, 1-5 det/frame, default shards, tracker ${spec.tracker ?? 'drain'}):`);
  for (const r of refs) L.push(`  discard sink, into rings (${r === 'ingest' ? 'ingest workload generator' : 'e2e generator'}): ${fmt(refMedian[r]).padStart(10)} frames/s  main ELU ${fmt(medians.reference_main_elu[r], 3)}  proc CPU ${fmt(medians.reference_process_cpu[r], 2)}  gen CPU ${fmt(medians.reference_generator_cpu[r], 2)}`);
  L.push(`  e2e, delivered to trackers:             ${fmt(medians.e2e_delivered_per_s).padStart(10)} frames/s  (${fmt(medians.e2e_delivered_per_s_min)}..${fmt(medians.e2e_delivered_per_s_max)}; into rings ${fmt(medians.e2e_into_rings_per_s)}, rings ${fmt((medians.e2e_rings_fill) * 100)}% full)`);
  L.push(`    CPU (cores): engine ${fmt(mc.process_cpu as number, 2)} (main ${fmt(mc.main_thread_cpu as number, 2)}, main ELU ${fmt(mc.main_elu as number, 3)}, worker ELU ${(mc.worker_elu as number[]).map((x) => fmt(x, 3)).join(',')})  trackers ${fmt(mc.trackers_cpu as number, 2)}  generator ${fmt(mc.generator_cpu as number, 2)}  softirq ${fmt(mc.softirq as number, 2)}  machine ${fmt(mc.machine_cpu_busy as number, 2)}`);
  L.push(`    CPU ns per delivered frame: engine ${fmt(medians.e2e_cost_ns_per_frame.engine)} (main thread ${fmt(medians.e2e_cost_ns_per_frame.main_thread)}, other threads ${fmt(medians.e2e_cost_ns_per_frame.engine_other_threads)}), trackers ${fmt(medians.e2e_cost_ns_per_frame.trackers)}, generator ${fmt(medians.e2e_cost_ns_per_frame.generator)}, softirq ${fmt(medians.e2e_cost_ns_per_frame.softirq)}${primary ? `; discard sink: engine ${fmt(medians.reference_engine_cpu_ns_per_frame[primary])} (main thread ${fmt(medians.reference_main_cpu_ns_per_frame[primary])})` : ''}\n    main thread ${fmt(medians.e2e_main_busy_ns_per_frame)} ns busy per delivered frame; ${fmt(medians.e2e_feeder_writes_per_s)} tracker writes/s of ${fmt(medians.e2e_feeder_frames_per_write, 1)} frames; latency at saturation p50 ${fmt(medians.e2e_saturated_latency_p50_ms, 1)} ms p99 ${fmt(medians.e2e_saturated_latency_p99_ms, 1)} ms`);
  L.push(`  e2e / discard into-ring: x${fmt(ratio, 3)} (per rep ${perRepRatio.map((x) => fmt(x, 3)).join(', ')})${ratios.e2e_over_discard_stamped !== undefined ? `; / stamped-generator discard: x${fmt(ratios.e2e_over_discard_stamped, 3)}` : ''}`);
  L.push(`  at ${spec.pacedFps > 0 ? `${fmt(spec.pacedFps)} frames/s` : `${spec.loadFraction} load`}: ${fmt(medians.half_delivered_per_s)} frames/s delivered (target ${fmt(medians.half_target_per_s)}), ${medians.half_sustained_reps < reps ? `sustained in ${medians.half_sustained_reps}/${reps} reps, ` : ''}latency send->tracker input p50 ${fmt(medians.half_latency_p50_ms, 2)} ms  p90 ${fmt(medians.half_latency_p90_ms, 2)}  p99 ${fmt(medians.half_latency_p99_ms, 2)}  p99.9 ${fmt(medians.half_latency_p999_ms, 2)}  max ${fmt(medians.half_latency_max_ms, 1)} ms (${fmt(medians.half_latency_samples)} samples/rep)`);
  L.push(`    CPU (cores): engine ${fmt(hc.process_cpu as number, 2)} (main ELU ${fmt(hc.main_elu as number, 3)}, worker ELU ${(hc.worker_elu as number[]).map((x) => fmt(x, 3)).join(',')})  trackers ${fmt(hc.trackers_cpu as number, 2)}  generator ${fmt(hc.generator_cpu as number, 2)}  machine ${fmt(hc.machine_cpu_busy as number, 2)}; ${fmt(medians.half_feeder_writes_per_s)} tracker writes/s of ${fmt(medians.half_feeder_frames_per_write, 1)} frames`);
  L.push(`    CPU ns per delivered frame: engine ${fmt(medians.half_cost_ns_per_frame.engine)} (main thread ${fmt(medians.half_cost_ns_per_frame.main_thread)}), trackers ${fmt(medians.half_cost_ns_per_frame.trackers)}, generator ${fmt(medians.half_cost_ns_per_frame.generator)}`);
  L.push(`target ${targets.throughput.what}: x${fmt(ratio, 3)} ${targets.throughput.pass ? 'PASS' : 'FAIL'}`);
  L.push(`target ${targets.throughput.absolute.what}: ${fmt(targets.throughput.absolute.value)} ${targets.throughput.absolute.pass ? 'PASS' : 'FAIL'}`);
  L.push(`target ${targets.latency.what}: ${fmt(targets.latency.value, 2)} ms (worst rep ${fmt(p99Max, 2)}) ${targets.latency.pass ? 'PASS' : 'FAIL'}`);
  const booksNote = TRACKER_KINDS[spec.tracker ?? 'drain'].books;
  L.push(`accounting: ${violations.length === 0 ? `OK (sent == received == inRings + inSink + delivered + dropped, nothing dropped, ${booksNote})` : `${violations.length} VIOLATIONS`}`);
  for (const v of violations.slice(0, 10)) L.push(`  ${v}`);
  L.push(`total ${fmt(out.duration_s, 1)} s${files.length ? `; results in ${files.join(', ')}` : ''}`);
  process.stderr.write(`${L.join('\n')}\n`);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

// ---------------------------------------------------------------------------
// burst: 64 nodes unpaced, both protocols, shards: 0 vs default; into rings
// (sink discard), end to end (sink trackers, one drain tracker per node) and the
// raw ceiling (bare server, same generator) in one run.
// ---------------------------------------------------------------------------

interface BurstCell {
  protocol: BenchProtocol;
  mode: Mode;
  shards: number;
  into_rings: { frames_per_s: number; detections_per_s: number; mbytes_per_s: number; process_cpu: number; main_elu: number };
  e2e: { delivered_per_s: number; into_rings_per_s: number; mbytes_per_s: number; process_cpu: number; trackers_cpu: number | null; main_elu: number };
}

async function mainBurst(base: Base, reps: number, protocols: BenchProtocol[], modes: Mode[], detFor: (p: BenchProtocol) => number,
  values: Record<string, string | boolean | undefined>, num: (v: string | undefined, def: number) => number): Promise<void> {
  const str = (k: string): string | undefined => (typeof values[k] === 'string' ? values[k] as string : undefined);
  const portStart = num(str('port-start'), 19000);
  const started = performance.now();
  const perRep = protocols.length * ((base.warmupS + base.durationS + 30) * (1 + 2 * modes.length) + 60 * modes.length);
  const watchdog = setTimeout(() => {
    process.stderr.write('bench: overall time bound exceeded, exiting\n');
    process.exit(2);
  }, perRep * reps * 1000 + 60000);
  watchdog.unref();
  const shardsOf = (m: Mode): number | 'auto' => (m === 'default' ? 'auto' : Number(m.slice(6)));
  const raw: Record<string, CeilingResult[]> = Object.fromEntries(protocols.map((p) => [p, []]));
  const runs: Record<string, BurstCell[]> = {};
  for (let r = 0; r < reps; r++) {
    for (const protocol of protocols) {
      const detections = detFor(protocol);
      // Line: the stamped generator (increasing timestamps: a tracker skips repeats) into the
      // engine; the raw server gets the plain generator (same frame sizes: the stamped one does
      // not keep up with a server that never pushes back).
      const stamped = protocol === 'line';
      const c = await runCeiling({ ...base, protocol, mode: 'default', detections });
      raw[protocol]!.push(c);
      process.stderr.write(`raw  ${protocol.padEnd(6)}         rep ${r + 1}: ${fmt(c.frames_per_s).padStart(10)} frames/s ${fmt(c.mbytes_per_s, 1).padStart(7)} MB/s (bare server)\n`);
      for (const mode of modes) {
        const ing = await runOnce({ ...base, protocol, mode, detections, stamped });
        const e = await runE2eOnce({
          connections: base.connections, warmupS: base.warmupS, durationS: base.durationS, latencyWarmupS: 0, latencyS: 0,
          loadFraction: 0.5, pacedFps: 0, tickMs: 1, chunkBytes: base.chunkBytes, depth: base.depth, procs: base.procs,
          ringBytes: base.ringBytes, portStart, portEnd: Math.min(65535, portStart + Math.max(99, base.connections - 1)), token: TOKEN,
          trackerPrefix: [], protocol, detections, shards: shardsOf(mode), maxOnly: true,
        }, calibrate);
        if (e.accounting.violations.length) process.stderr.write(`  e2e VIOLATIONS: ${e.accounting.violations.join('; ')}\n`);
        if (ing.accounting.violations.length) process.stderr.write(`  into-rings VIOLATIONS: ${ing.accounting.violations.join('; ')}\n`);
        const cell: BurstCell = {
          protocol, mode, shards: ing.shards,
          into_rings: { frames_per_s: ing.frames_per_s, detections_per_s: ing.detections_per_s, mbytes_per_s: ing.mbytes_per_s, process_cpu: ing.process_cpu, main_elu: ing.main_elu },
          e2e: {
            delivered_per_s: e.max.delivered_per_s, into_rings_per_s: e.max.into_rings_per_s, mbytes_per_s: round(e.max.bytes_received_per_s / 1e6, 1),
            process_cpu: e.max.cpu.process_cpu, trackers_cpu: e.max.cpu.trackers_cpu, main_elu: e.max.cpu.main_elu,
          },
        };
        (runs[`${protocol}/${mode}`] ??= []).push(cell);
        process.stderr.write(`     ${protocol.padEnd(6)} ${mode.padEnd(8)} rep ${r + 1}: into rings ${fmt(cell.into_rings.frames_per_s).padStart(10)} frames/s ${fmt(cell.into_rings.mbytes_per_s, 1).padStart(7)} MB/s;  e2e delivered ${fmt(cell.e2e.delivered_per_s).padStart(10)} frames/s ${fmt(cell.e2e.mbytes_per_s, 1).padStart(7)} MB/s\n`);
      }
    }
  }
  const med = (xs: Array<number | null>): number => round(median(xs.filter((x): x is number => x !== null)), 4);
  const medCell = (cs: BurstCell[]): BurstCell => ({
    protocol: cs[0]!.protocol, mode: cs[0]!.mode, shards: cs[0]!.shards,
    into_rings: Object.fromEntries(Object.keys(cs[0]!.into_rings).map((k) => [k, med(cs.map((c) => (c.into_rings as unknown as Record<string, number>)[k]!))])) as BurstCell['into_rings'],
    e2e: Object.fromEntries(Object.keys(cs[0]!.e2e).map((k) => [k, med(cs.map((c) => (c.e2e as unknown as Record<string, number | null>)[k] ?? null))])) as BurstCell['e2e'],
  });
  const cells = Object.values(runs).map(medCell);
  const rawMed = Object.fromEntries(protocols.map((p) => [p, { frames_per_s: Math.round(med(raw[p]!.map((c) => c.frames_per_s))), mbytes_per_s: med(raw[p]!.map((c) => c.mbytes_per_s)) }]));
  const ratios = cells.map((c) => ({
    protocol: c.protocol, mode: c.mode,
    e2e_over_raw_bytes: round(c.e2e.mbytes_per_s / rawMed[c.protocol]!.mbytes_per_s, 3),
    into_rings_over_raw_bytes: round(c.into_rings.mbytes_per_s / rawMed[c.protocol]!.mbytes_per_s, 3),
    e2e_over_into_rings: round(c.e2e.delivered_per_s / c.into_rings.frames_per_s, 3),
  }));
  const target = ratios.filter((x) => x.mode === 'default').map((x) => ({ protocol: x.protocol, e2e_over_raw_bytes: x.e2e_over_raw_bytes, min: 0.5, pass: x.e2e_over_raw_bytes >= 0.5 }));
  const out = {
    workload: 'burst',
    started_at: new Date(Date.now() - (performance.now() - started)).toISOString(),
    git: gitInfo(),
    machine: { cpus: os.availableParallelism(), model: os.cpus()[0]?.model ?? '?', mem_gib: round(os.totalmem() / 2 ** 30, 1), node: process.version, platform: `${os.platform()} ${os.release()}` },
    params: { ...base, reps, protocols, modes, binary_detections: detFor('binary'), line_detections: '1-5 cycling (stamped generator)', tracker: 'bench/drain-tracker.ts (one process per node)' },
    duration_s: round((performance.now() - started) / 1000, 1),
    raw: rawMed,
    cells,
    ratios,
    targets: { burst_e2e_at_least_half_of_raw_bytes: target },
    runs: { raw, cells: runs },
  };
  const files = values['no-save'] ? [] : writeResults('burst', out);
  const L: string[] = ['', `medians of ${reps} (64 nodes unpaced; into rings = sink discard; e2e = sink trackers, delivered to the trackers' input; raw = bare Node server reading and discarding):`];
  L.push('protocol mode     shards  into rings f/s    MB/s   e2e delivered f/s    MB/s   raw MB/s  e2e/raw  e2e/into');
  for (const c of cells) {
    const rt = ratios.find((x) => x.protocol === c.protocol && x.mode === c.mode)!;
    L.push(`${c.protocol.padEnd(8)} ${c.mode.padEnd(8)} ${String(c.shards).padStart(6)} ${fmt(c.into_rings.frames_per_s).padStart(15)} ${fmt(c.into_rings.mbytes_per_s, 1).padStart(7)} ${fmt(c.e2e.delivered_per_s).padStart(19)} ${fmt(c.e2e.mbytes_per_s, 1).padStart(7)} ${fmt(rawMed[c.protocol]!.mbytes_per_s, 1).padStart(10)} ${fmt(rt.e2e_over_raw_bytes, 2).padStart(8)} ${fmt(rt.e2e_over_into_rings, 2).padStart(9)}`);
  }
  for (const t of target) L.push(`target burst e2e >= 0.5 x raw bytes/s (${t.protocol}, default): x${fmt(t.e2e_over_raw_bytes, 2)} ${t.pass ? 'PASS' : 'FAIL'}`);
  L.push(`total ${fmt(out.duration_s, 1)} s${files.length ? `; results in ${files.join(', ')}` : ''}`);
  process.stderr.write(`${L.join('\n')}\n`);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function out_files(files: string[]): void {
  process.stderr.write(`results in ${files.join(', ')}\n`);
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
