// Workload `ingest` (the default): for each protocol (line: 64 nodes, 1-5 detections
// a frame; binary: 64 nodes, 50 detections a frame) and each engine mode (shards: 0,
// everything on the main thread, vs the default shards: auto), an Engine (sink:
// discard) is loaded by the push generator; frames and detections written into rings,
// the main thread's ELU and CPU, the workers' ELU and the process CPU are measured over
// the window after a warm-up, each cell repeated and the medians reported. After the
// load stops and the rings drain the books are checked: sent == received == written +
// dropped, written == consumed + inRings.
import { performance } from 'node:perf_hooks';
import { Engine, C_BYTES_RECEIVED } from './lib/engine-api.js';
import { Loadgen, type BenchProtocol, type LoadgenSample } from './lib/loadgen.js';
import { snapshot, delta, sleep, perSecond, type ProbeSnapshot } from './lib/probes.js';
import { acksSent, benchConfig, calibrate, drained } from './lib/engine-run.js';
import { defineWorkload, list, num, optNum, SAVE_OPTION, type OptValues } from './lib/options.js';
import { boundRun, header as headerOf, report, summaryLine } from './lib/results.js';
import { fmt, median, round } from './lib/stats.js';

export const TOKEN = 'bench-secret';

/** Targets the engine's default configuration must meet on this 2-core machine. */
export const TARGETS = {
  line: { metric: 'frames_per_s' as const, min: 800_000, what: 'line protocol frames/s into rings' },
  binary: { metric: 'detections_per_s' as const, min: 15_000_000, what: 'binary protocol detections/s into rings' },
};
/**
 * End to end: delivered to the trackers' input at least this
 * share of the line protocol's into-ring rate with the discard sink (the ingest
 * workload's metric, measured in the same run), and p99 send-to-tracker latency
 * under this at `loadFraction` (half) of the measured end-to-end rate.
 */
export const E2E_TARGETS = { min_ratio: 0.8, line_target_frames_per_s: TARGETS.line.min, p99_ms: 5 };
/** Python tracker-host reference on this machine (frames/s parsed, line protocol). */
const PYTHON_REFERENCE_FRAMES_PER_S = 234_000;

/** 'default' = the config default (shards: auto); 'shardsN' = shards: N. */
export type Mode = 'default' | `shards${number}`;

export interface CellSpec {
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
  /** Line: the e2e workload's stamped generator (increasing timestamps, send-time markers). */
  stamped?: boolean;
}

export interface Accounting {
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

export interface RunResult {
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

/** The load options shared by ingest, ceiling, burst and e2e. */
export function loadOptions(durationS: number, reps: number) {
  return {
    duration: num(durationS, 'measured window per run, seconds'),
    warmup: num(1.5, 'load before the window, seconds'),
    reps: num(reps, 'runs per cell, medians reported', 1),
    connections: num(64, 'nodes (TCP connections)', 1),
    chunkKb: num(256, 'bytes per generator write, KiB', 1),
    depth: num(2, 'generator writes in flight per connection', 1),
    procs: num(1, 'generator processes', 1),
    ringBytes: optNum('ring.size_bytes for the engine (default: the config default)'),
    ...SAVE_OPTION,
  };
}

/** The cells of ingest, ceiling and burst: protocols x engine modes. */
export const CELL_OPTIONS = {
  protocols: list<BenchProtocol>(['line', 'binary'], 'protocols', ['line', 'binary']),
  modes: list<Mode>(['shards0', 'default'], 'engine modes: default (shards: auto), shardsN (shards: N)', /^(default|shards\d+)$/),
  detections: num(50, 'binary detections per frame', 1),
};

type LoadValues = OptValues<ReturnType<typeof loadOptions>>;
export type Base = Omit<CellSpec, 'protocol' | 'mode' | 'detections'>;

export function baseOf(o: LoadValues): Base {
  return {
    connections: o.connections, warmupS: o.warmup, durationS: o.duration, chunkBytes: o.chunkKb * 1024,
    depth: o.depth, procs: o.procs, ringBytes: o.ringBytes ?? null,
  };
}

function engineConfig(spec: CellSpec) {
  return benchConfig(TOKEN, {
    shards: spec.mode === 'default' ? 'auto' : Number(spec.mode.slice(6)),
    sink: 'discard',
    ...(spec.ringBytes ? { ring: { size_bytes: spec.ringBytes } } : {}),
  });
}

export async function runOnce(spec: CellSpec): Promise<RunResult> {
  const calibrationMops = calibrate();
  const tStart = performance.now();
  const engine = new Engine({ config: engineConfig(spec) });
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
    const tick = perSecond(() => engine.totals().written, t0.written);
    await sleep(spec.durationS * 1000);
    const rates = tick.stop();
    const p1 = snapshot(workers);
    const t1 = engine.totals();
    const b1 = engine.counters[C_BYTES_RECEIVED]!;
    const a1 = acksSent(engine);
    const g1 = await lg.mark();

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
      per_second: rates,
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

async function runIngest(o: LoadValues & OptValues<typeof CELL_OPTIONS>): Promise<void> {
  const { reps, protocols, modes } = o;
  const base = baseOf(o);
  const detFor = (p: BenchProtocol): number => (p === 'binary' ? o.detections : 3);
  const started = performance.now();
  boundRun((base.warmupS + base.durationS + 30) * reps * protocols.length * modes.length + 60);
  const header = headerOf('ingest', { ...base, reps, protocols, modes, binary_detections: o.detections, line_detections: '1-5 cycling' });

  // Repetitions are interleaved (rep 1 of every cell, then rep 2, ...) so that a slow
  // drift of the machine's speed (shared host) does not bias one cell against another.
  type Cell = { protocol: BenchProtocol; mode: Mode; shards: number; runs: RunResult[]; median: Record<string, number | number[]> };
  const cells: Cell[] = [];
  for (const protocol of protocols) for (const mode of modes) cells.push({ protocol, mode, shards: -1, runs: [], median: {} });
  for (let r = 0; r < reps; r++) {
    for (const cell of cells) {
      const { protocol, mode } = cell;
      const spec: CellSpec = { ...base, protocol, mode, detections: detFor(protocol) };
      const res = await runOnce(spec);
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

  report('ingest', out, summaryLine('ingest', out), !o.noSave);
}

export const workload = defineWorkload({
  about: 'frames and detections into rings (sink discard), by protocol and engine mode',
  options: { ...loadOptions(10, 3), ...CELL_OPTIONS },
  run: runIngest,
});
