// Workload `ingest` (the default): for each protocol (line: 64 nodes, 1-5 detections
// a frame; binary: 64 nodes, 50 detections a frame) and each engine mode (shards: 0,
// everything on the main thread, vs the default shards: auto), an Engine (sink:
// discard) is loaded by the push generator; frames and detections written into rings,
// the main thread's ELU and CPU, the workers' ELU and the process CPU are measured over
// the window after a warm-up, each cell repeated and the medians reported. After the
// load stops and the rings drain the books are checked: sent == received == written +
// dropped, written == consumed + inRings. The `naive` cell (line only) runs the same
// generator against the naive single-thread server (bench/lib/naive-line.ts: split,
// JSON.parse, token, count) in this process; the ratios engine/naive are reported.
import { performance } from 'node:perf_hooks';
import { Engine, C_BYTES_RECEIVED } from './lib/engine-api.js';
import { Loadgen, type BenchProtocol } from './lib/loadgen.js';
import { snapshot, delta, sleep, perSecond, cpuBreakdown, genCpu } from './lib/probes.js';
import { acksSent, benchConfig, calibrate, drained } from './lib/engine-run.js';
import { defineWorkload, list, num, SAVE_OPTION, type OptValues } from './lib/options.js';
import { boundRun, header, report, summaryLine } from './lib/results.js';
import { fmt, median, medianTree, round } from './lib/stats.js';
import { runNaive, type NaiveResult } from './lib/naive-line.js';

export const TOKEN = 'bench-secret';

/** Targets the engine's default configuration must meet on this 2-core machine. */
export const TARGETS = {
  line: { metric: 'frames_per_s' as const, min: 800_000, what: 'line protocol frames/s into rings' },
  binary: { metric: 'detections_per_s' as const, min: 15_000_000, what: 'binary protocol detections/s into rings' },
};
/**
 * End to end: delivered to the trackers' input at least this share of the line
 * protocol's into-ring rate with the discard sink (measured in the same run), and p99
 * send-to-tracker latency under this at `loadFraction` (half) of the measured e2e rate.
 */
export const E2E_TARGETS = { min_ratio: 0.8, line_target_frames_per_s: TARGETS.line.min, p99_ms: 5 };
/** The engine's default configuration against the naive line server: at least this many times its frames/s. */
export const NAIVE_GOAL = 2;
/** Python tracker-host reference on this machine (frames/s parsed, line protocol). */
const PYTHON_REFERENCE_FRAMES_PER_S = 234_000;

/** 'default' = the config default (shards: auto); 'shardsN' = shards: N. */
export type Mode = 'default' | `shards${number}`;
export const shardsOf = (m: Mode): number | 'auto' => (m === 'default' ? 'auto' : Number(m.slice(6)));

/** The load options shared by ingest, ceiling, burst and e2e. */
export function loadOptions(durationS: number, reps: number) {
  return {
    duration: num(durationS, 'measured window per run, seconds'),
    warmup: num(1.5, 'load before the window, seconds'),
    reps: num(reps, 'runs per cell, medians reported', 1),
    connections: num(64, 'nodes (TCP connections)', 1),
    ...SAVE_OPTION,
  };
}

/** The cells of ingest, ceiling and burst: protocols x engine modes. */
export const CELL_OPTIONS = {
  protocols: list<BenchProtocol>(['line', 'binary'], 'protocols', ['line', 'binary']),
  modes: list<Mode>(['shards0', 'shards1', 'default'], 'engine modes: default (shards: auto), shardsN (shards: N)', /^(default|shards\d+)$/),
  detections: num(50, 'binary detections per frame', 1),
};

type LoadValues = OptValues<ReturnType<typeof loadOptions>>;
export const baseOf = (o: LoadValues) => ({ connections: o.connections, warmupS: o.warmup, durationS: o.duration });
export type CellSpec = ReturnType<typeof baseOf> & {
  protocol: BenchProtocol;
  mode: Mode;
  /** Binary: detections per frame. */
  detections: number;
  /** Line: the e2e workload's stamped generator (increasing timestamps, send-time markers). */
  stamped?: boolean;
};

export async function runOnce(spec: CellSpec) {
  const calibrationMops = calibrate();
  const tStart = performance.now();
  const engine = new Engine({ config: benchConfig(TOKEN, { shards: shardsOf(spec.mode), sink: 'discard' }) });
  await engine.start();
  let lg: Loadgen | null = null;
  try {
    lg = await Loadgen.start({
      host: '127.0.0.1', port: engine.tcpAddress!.port, protocol: spec.protocol, connections: spec.connections, token: TOKEN,
      detections: spec.detections, maxSeconds: spec.warmupS + spec.durationS + 60, stamped: spec.stamped === true,
    });
    const setupS = (performance.now() - tStart) / 1000;
    lg.go();
    await sleep(spec.warmupS * 1000);
    // Under `shards: auto` busy connections move to a worker once their rate has held for a
    // while (longer on a loaded machine): the window starts when one runs (at most 5 s more).
    for (let t = 0; spec.mode === 'default' && engine.pool.threads.length === 0 && t < 50; t++) await sleep(100);

    const workers = engine.pool.threads;
    const t0 = engine.totals();
    const b0 = engine.counters[C_BYTES_RECEIVED]!;
    const a0 = acksSent(engine);
    const p0 = snapshot(workers);
    const g0 = await lg.mark();
    const tick = perSecond(() => engine.totals().written, t0.written);
    await sleep(spec.durationS * 1000);
    const rates = tick.stop();
    const p1 = snapshot(workers);
    const workersAtEnd = engine.pool.threads.length;
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
    const acc = {
      sent: fin.sent, received: end.received, written: end.written, consumed: end.consumed, inRings: end.inRings,
      droppedTotal: end.droppedBeforeRing,
      dropped: Object.fromEntries(Object.entries(end.dropped).filter(([k, v]) => v !== 0 && k !== 'discarded')),
      /** Binary: connections whose last frame was not acked by the end. */
      unacked: fin.lastSeqSent.filter((sq, i) => sq > (fin.lastAck[i] ?? 0)).length,
      errors: fin.errors,
      violations: [] as string[],
    };
    const check = (bad: boolean, what: string): void => void (bad && acc.violations.push(what));
    check(acc.received !== acc.written + acc.droppedTotal, `received ${acc.received} != written ${acc.written} + dropped ${acc.droppedTotal}`);
    check(acc.written !== acc.consumed + acc.inRings, `written ${acc.written} != consumed ${acc.consumed} + inRings ${acc.inRings}`);
    check(acc.sent !== acc.received, `generator sent ${acc.sent} != engine received ${acc.received}`);
    check(acc.droppedTotal !== 0, `dropped ${acc.droppedTotal} frames: ${JSON.stringify(acc.dropped)}`);
    check(fin.closedEarly > 0, `${fin.closedEarly} connections closed by the host during the run`);
    check(acc.unacked > 0, `${acc.unacked} connections without an ack for their last frame`);
    check(acc.errors.length > 0, `host/socket errors: ${acc.errors.slice(0, 3).join('; ')}`);

    const cpu = cpuBreakdown(d, { generator_cpu: genCpu(g0, g1) });
    const perFrameNs = (cores: number | null): number | null => (cores === null ? null : round(((cores * s) / frames) * 1e9, 1));
    return {
      protocol: spec.protocol,
      mode: spec.mode,
      shards: engine.config.shards,
      window_s: round(s, 3),
      frames_per_s: Math.round(frames / s),
      detections_per_s: Math.round((t1.detections - t0.detections) / s),
      received_per_s: Math.round((t1.received - t0.received) / s),
      sent_per_s: Math.round((g1.sent - g0.sent) / ((g1.childAt - g0.childAt) / 1000)),
      mbytes_per_s: round((b1 - b0) / s / 1e6, 1),
      /** Binary: ack messages the host sent per second (one socket write each). */
      acks_per_s: Math.round((a1 - a0) / s),
      ...cpu,
      /** Main-thread ELU per 1,000,000 frames/s; main-thread busy time (ELU) and CPU per frame written, ns. */
      main_elu_per_mfps: round(d.mainElu / (frames / s / 1e6), 4),
      main_busy_ns_per_frame: perFrameNs(d.mainElu),
      main_cpu_ns_per_frame: perFrameNs(d.mainThreadCpu),
      /** The busiest shard worker's busy time (ELU) per frame written, ns: the worker's rate limit is 1e9 / this. */
      worker_busy_ns_per_frame: d.workerElu.length === 0 ? null : perFrameNs(Math.max(...d.workerElu)),
      /** The whole process (main thread + shard workers), ns of CPU per frame written. */
      process_cpu_ns_per_frame: perFrameNs(d.processCpu),
      /**
       * CPU per frame of the thread(s) that decode: the shard workers (the process's CPU
       * minus its main thread's: V8's helper threads are in it too, a few %), or the main
       * thread when no worker runs (`shards: 0`). Steadier than frames/s when the host's speed moves.
       */
      decode_cpu_ns_per_frame: d.mainThreadCpu === null ? null
        : perFrameNs(workersAtEnd === 0 ? d.mainThreadCpu : d.processCpu - d.mainThreadCpu),
      /** A worker started inside the window: decoding was on the main thread for part of it. */
      workers_started_in_window: workersAtEnd !== workers.length,
      main_cpu_share: d.mainThreadCpu === null ? null : round(d.mainThreadCpu / d.processCpu, 3),
      generator_elu: round((g1.eluActiveMs - g0.eluActiveMs) / (g1.childAt - g0.childAt), 3),
      /** Frames/s written into rings, second by second through the window. */
      per_second: rates,
      /** Machine speed index just before the run: millions of a small JSON.parse per second (host drift between runs). */
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
export type RunResult = Awaited<ReturnType<typeof runOnce>>;

/** Ingest's modes: the engine's, and `naive` (the naive line server, line protocol only). */
type IngestMode = Mode | 'naive';
const INGEST_OPTIONS = {
  ...CELL_OPTIONS,
  modes: list<IngestMode>(['shards0', 'shards1', 'default', 'naive'],
    'cells: default (shards: auto), shardsN (shards: N), naive (single-thread split + JSON.parse server, line only)', /^(default|naive|shards\d+)$/),
};
type CellResult = RunResult | NaiveResult;

async function runIngest(o: LoadValues & OptValues<typeof INGEST_OPTIONS>): Promise<void> {
  const { reps, protocols, modes } = o;
  const base = baseOf(o);
  const started = performance.now();
  boundRun((base.warmupS + base.durationS + 30) * reps * protocols.length * modes.length + 60);
  const head = header('ingest', { ...base, reps, protocols, modes, binary_detections: o.detections, line_detections: '1-5 cycling' });
  calibrate(); // the first calibration of a process reads low (cold code): not one of a cell's

  // Repetitions are interleaved (rep 1 of every cell, then rep 2, ...) so that a slow
  // drift of the machine's speed (shared host) does not bias one cell against another.
  const cells = protocols.flatMap((protocol) => modes.filter((m) => m !== 'naive' || protocol === 'line')
    .map((mode) => ({ protocol, mode, shards: -1 as number | 'auto' | null, runs: [] as CellResult[], median: null as CellResult | null })));
  for (let r = 0; r < reps; r++) {
    for (const cell of cells) {
      const { protocol, mode } = cell;
      const res: CellResult = mode === 'naive' ? await runNaive(base, TOKEN, calibrate)
        : await runOnce({ ...base, protocol, mode, detections: protocol === 'binary' ? o.detections : 3 });
      cell.runs.push(res);
      cell.shards = res.shards;
      process.stderr.write(`${protocol.padEnd(6)} ${mode.padEnd(7)} rep ${r + 1}: ${fmt(res.frames_per_s).padStart(10)} frames/s ${fmt(res.detections_per_s).padStart(12)} det/s  main ELU ${fmt(res.main_elu, 3)}  worker ELU ${res.worker_elu.map((x) => fmt(x, 3)).join(',') || '-'}  proc CPU ${fmt(res.process_cpu, 2)}  decode CPU ${fmt(res.decode_cpu_ns_per_frame ?? NaN, 0)} ns/frame  gen CPU ${fmt(res.generator_cpu, 2)}  calib ${fmt(res.calibration_mops, 2)}${(res.other_cpu ?? 0) > 0.2 ? `  (other CPU ${fmt(res.other_cpu, 2)} cores: noisy)` : ''}${res.accounting.violations.length ? `  VIOLATIONS: ${res.accounting.violations.join('; ')}` : ''}\n`);
    }
  }
  for (const cell of cells) cell.median = { ...medianTree(cell.runs), accounting: cell.runs[0]!.accounting } as CellResult;

  const med = (p: BenchProtocol, m: IngestMode): CellResult | null | undefined => cells.find((c) => c.protocol === p && c.mode === m)?.median;
  const ratios = Object.fromEntries(protocols.flatMap((p) => {
    const a = med(p, 'default');
    const b = med(p, 'shards0');
    if (!a || !b) return [];
    const fields = ['frames_per_s', 'detections_per_s', 'main_elu', 'main_thread_cpu', 'main_busy_ns_per_frame', 'process_cpu'] as const;
    return [[p, Object.fromEntries(fields.map((f) => [f, round((a[f] ?? NaN) / (b[f] ?? NaN), 3)]))]];
  }));
  // Engine cells over the naive server, line: the ratio of the medians, and each rep's own
  // ratio (rep i of a cell over rep i of naive: interleaved, so both saw the same machine).
  const naiveRuns = cells.find((c) => c.protocol === 'line' && c.mode === 'naive')?.runs ?? [];
  const engineOverNaive = naiveRuns.length === 0 ? null : Object.fromEntries(cells.filter((c) => c.protocol === 'line' && c.mode !== 'naive').map((c) => {
    const perRep = c.runs.map((x, i) => round(x.frames_per_s / naiveRuns[i]!.frames_per_s, 3));
    const cpu = c.runs.map((x, i) => round((x.process_cpu_ns_per_frame ?? NaN) / (naiveRuns[i]!.process_cpu_ns_per_frame ?? NaN), 3));
    // The same comparison by the decoding thread's CPU per frame (naive over engine): what the
    // frames/s ratio would be if each side's decoding thread had a core of its own.
    const byDecodeCpu = c.runs.map((x, i) => round((naiveRuns[i]!.decode_cpu_ns_per_frame ?? NaN) / (x.decode_cpu_ns_per_frame ?? NaN), 3));
    return [c.mode, {
      frames_per_s: round(c.median!.frames_per_s / med('line', 'naive')!.frames_per_s, 3),
      per_rep: perRep,
      median_of_reps: round(median(perRep), 3),
      process_cpu_ns_per_frame_per_rep: cpu,
      decode_cpu_naive_over_engine_per_rep: byDecodeCpu,
      decode_cpu_naive_over_engine_median: round(median(byDecodeCpu), 3),
      goal: NAIVE_GOAL,
      pass: c.mode === 'default' ? median(perRep) >= NAIVE_GOAL : null,
    }];
  }));
  const targets = protocols.map((p) => {
    const t = TARGETS[p];
    const byMode = Object.fromEntries(modes.filter((m) => m !== 'naive').map((m) => {
      const v = med(p, m)?.[t.metric] ?? NaN;
      return [m, { value: v, pass: v >= t.min }];
    }));
    return { protocol: p, metric: t.metric, min: t.min, what: t.what, ...byMode, pass: byMode.default?.pass ?? null };
  });
  const violations = cells.flatMap((c) => c.runs.flatMap((r, i) => r.accounting.violations.map((v) => `${c.protocol}/${c.mode} rep ${i + 1}: ${v}`)));
  const out = {
    ...head,
    duration_s: round((performance.now() - started) / 1000, 1),
    targets,
    reference: { python_tracker_host_frames_per_s: PYTHON_REFERENCE_FRAMES_PER_S },
    ratios_default_over_shards0: ratios,
    ratios_engine_over_naive: engineOverNaive,
    accounting: { ok: violations.length === 0, violations },
    cells,
  };
  const naiveLine = engineOverNaive === null ? '' : `\nengine/naive frames/s (line, median of ${reps} interleaved reps): ${Object.entries(engineOverNaive)
    .map(([m, v]) => `${m} x${fmt(v.median_of_reps, 2)} [${v.per_rep.map((x) => fmt(x, 2)).join(', ')}]`).join(', ')}; goal default >= x${NAIVE_GOAL}: ${engineOverNaive.default?.pass ? 'PASS' : 'FAIL'}`
    + `\nby the decoding thread's CPU per frame (naive / engine): ${Object.entries(engineOverNaive)
      .map(([m, v]) => `${m} x${fmt(v.decode_cpu_naive_over_engine_median, 2)} [${v.decode_cpu_naive_over_engine_per_rep.map((x) => fmt(x, 2)).join(', ')}]`).join(', ')}`;
  report('ingest', out, summaryLine('ingest', out) + naiveLine, !o.noSave);
}

export const workload = defineWorkload({
  about: 'frames and detections into rings (sink discard), by protocol and engine mode',
  options: { ...loadOptions(10, 3), ...INGEST_OPTIONS },
  run: runIngest,
});
