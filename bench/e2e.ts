// Workload `e2e`: frames from the nodes' sockets to the trackers' input. One drain
// tracker process per node (auto-provisioned); per rep: the discard-sink reference,
// the unpaced max phase, then a paced phase for latency. Details: docs/benchmarks.md.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Engine, type EngineProbe, type Totals } from './lib/engine-api.js';
import { Loadgen, type LoadgenSample } from './lib/loadgen.js';
import { snapshot, delta, sleep, pidsStat, pidsCpu, perSecond, waitQuiet, cpuBreakdown, genCpu, type ProbeSnapshot } from './lib/probes.js';
import { MarkerLatency } from './lib/send-marker.js';
import { benchConfig, calibrate, deliveredAll, nonZero, sinkViolations, feederTotals, ringsUsed, trackerPids, untilUp } from './lib/engine-run.js';
import { latencyStats, round, fmt, medianTree } from './lib/stats.js';
import { defineWorkload, flag, list, num, optNum, str, type OptValues } from './lib/options.js';
import { boundRun, header, report, summaryLine } from './lib/results.js';
import { E2E_TARGETS, TOKEN, baseOf, loadOptions, runOnce, type RunResult } from './ingest.js';

const DRAIN_TRACKER = fileURLToPath(new URL('./lib/drain-tracker.js', import.meta.url));

/** The trackers an e2e run can use (E2eSpec.tracker): what each is and where `latency` is taken. */
const TRACKER_KINDS = {
  drain: { what: 'bench/lib/drain-tracker.ts (one process per node)', latencyAt: 'tracker read (drain-tracker arrival)' },
  cat: { what: "sh -c 'exec cat >/dev/null' on stdin (one process per node)", latencyAt: 'engine write into the tracker input (EngineProbe.onTrackerWrite)' },
  none: { what: 'none: the drain-only sink (sink: discard)', latencyAt: 'the drain-only sink draining the ring (EngineProbe.onSinkDrain)' },
} as const;
type TrackerKind = keyof typeof TRACKER_KINDS;

/** One e2e run; the flags of the e2e workload (see its options table) fill it. */
/**
 * One e2e run. The paced phase: warm-up and latency window, seconds; its rate `pacedFps`
 * frames/s when > 0, else `loadFraction` of the max phase's delivered rate. `portStart`:
 * the trackers' provisioning range (100 ports at least, out of the ephemeral range).
 * Binary frames carry no send-time markers: no latency, the run stops after the max
 * phase (as with `maxOnly`).
 */
export interface E2eSpec {
  connections: number; warmupS: number; durationS: number; latencyWarmupS: number; latencyS: number;
  loadFraction: number; pacedFps: number; tickMs: number; stagger?: boolean; portStart: number;
  trackerPrefix?: string[]; tracker?: TrackerKind; nice?: number; protocol?: 'line' | 'binary'; detections?: number;
  shards?: number | 'auto'; maxOnly?: boolean;
  /** tcp_server.ack (default: the config default, delivered). */
  ack?: 'delivered' | 'ring';
}

function engineConfig(spec: E2eSpec, dir: string) {
  return benchConfig(TOKEN, {
    shards: spec.shards ?? 'auto',
    sink: spec.tracker === 'none' ? 'discard' : 'trackers',
    output_dir: join(dir, 'output'),
    startup_delay_sec: 0,
    tcp_connect_retries: 400,
    tcp_retry_delay_sec: 0.05,
    tracker: {
      command: [
        ...(spec.nice ? ['nice', '-n', String(spec.nice)] : []), ...(spec.trackerPrefix ?? []),
        ...(spec.tracker === 'cat' ? ['sh', '-c', 'exec cat >/dev/null']
          : [process.execPath, DRAIN_TRACKER, '--tcp-port', '{port}', '--report', join(dir, 'reports', '{node_id}')]),
      ],
      input: spec.tracker === 'cat' ? 'stdin' : 'tcp',
      stop_grace_ms: 10000,
      reconcile_interval_ms: 100,
    },
    shutdown: { deadline_ms: 60000 },
  }, {
    auto_provision: true, auto_provision_port_start: spec.portStart, auto_provision_port_end: Math.min(65535, spec.portStart + Math.max(99, spec.connections - 1)),
    ...(spec.ack ? { ack: spec.ack } : {}),
  });
}

interface Sample {
  at: number;
  hrNs: number;
  totals: ReturnType<Engine['totals']>;
  probes: ProbeSnapshot;
  gen: LoadgenSample;
  trackers: ReturnType<typeof pidsStat>;
  feeder: { batches: number; bytes: number; stalls: number; fed: number };
  /** Bytes in all rings. */
  ringsUsed: number;
}

async function sampleAll(engine: Engine, lg: Loadgen, pids: number[]): Promise<Sample> {
  const gen = await lg.mark();
  const probes = snapshot(engine.pool.threads);
  const totals = engine.totals();
  return {
    at: performance.now(), hrNs: Number(process.hrtime.bigint()), totals, probes, gen, trackers: pidsStat(pids), feeder: feederTotals(engine), ringsUsed: ringsUsed(engine),
  };
}

function cpuSplit(a: Sample, b: Sample) {
  const d = delta(a.probes, b.probes);
  return cpuBreakdown(d, { trackers_cpu: pidsCpu(a.trackers, b.trackers), generator_cpu: genCpu(a.gen, b.gen) });
}

/** CPU time per frame handed on, ns, by where it was spent (engine_other_threads: shard worker(s), libuv, GC). */
function frameCost(c: ReturnType<typeof cpuSplit>, framesPerS: number) {
  const ns = (cores: number | null): number | null => (cores === null ? null : Math.round((cores / framesPerS) * 1e9));
  return {
    engine: ns(c.process_cpu)!, main_thread: ns(c.main_thread_cpu), engine_other_threads: c.main_thread_cpu === null ? null : ns(c.process_cpu - c.main_thread_cpu),
    trackers: ns(c.trackers_cpu), generator: ns(c.generator_cpu)!, softirq: ns(c.machine_cpu?.softirq ?? null),
  };
}

/** Tracker writes (one batch each) per second, frames and bytes per write, feeder stalls on a full tracker input per second. */
function feederRates(a: Sample, b: Sample) {
  const s = (b.at - a.at) / 1000;
  const writes = b.feeder.batches - a.feeder.batches;
  return {
    writes_per_s: Math.round(writes / s), frames_per_write: round((b.feeder.fed - a.feeder.fed) / writes, 1),
    bytes_per_write: Math.round((b.feeder.bytes - a.feeder.bytes) / writes), stalls_per_s: round((b.feeder.stalls - a.feeder.stalls) / s, 1),
  };
}

interface TrackerReport {
  pid: number; port: number; connections: number; open: number; bytes: number; frames: number; chunks: number;
  samples: number; samples_dropped: number; bad_markers: number; cpu_us: number; rss_bytes: number;
}

/** Reads the drain trackers' reports; samples whose send time is in each window, as latencies (ns). */
function readReports(dir: string, windows: Array<[number, number]>): { reports: Map<string, TrackerReport>; lat: Float64Array[]; errors: string[] } {
  const reports = new Map<string, TrackerReport>();
  const errors: string[] = [];
  const lat: number[][] = windows.map(() => []);
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.json')) continue;
    const node = f.slice(0, -5);
    try {
      reports.set(node, JSON.parse(readFileSync(join(dir, f), 'utf8')) as TrackerReport);
      const bin = readFileSync(join(dir, `${node}.bin`));
      const pairs = new Float64Array(bin.buffer, bin.byteOffset, bin.length / 8);
      for (let i = 0; i + 1 < pairs.length; i += 2) {
        const send = pairs[i]!;
        for (let w = 0; w < windows.length; w++) {
          if (send >= windows[w]![0] && send < windows[w]![1]) lat[w]!.push(pairs[i + 1]!);
        }
      }
    } catch (err) {
      errors.push(`report of ${node}: ${(err as Error).message}`);
    }
  }
  return { reports, lat: lat.map((l) => Float64Array.from(l)), errors };
}

/**
 * Host-side latency, through the engine's probe: the send-time markers in each batch
 * the engine writes into a tracker's input (or, tracker none, that the drain-only
 * sink frees), taken in this process at that instant. It separates the engine's own
 * latency from the tracker processes' wake-up, which dominates on a 2-core machine
 * running 64 of them. `toRead`: send -> the engine's socket read (the first stage).
 */
const toHandOn = new MarkerLatency(2_000_000);
const toRead = new MarkerLatency(2_000_000);
const PROBE: EngineProbe = {
  onSocketRead: (b) => toRead.record(b),
  onTrackerWrite: (_node, b) => toHandOn.record(b),
  onSinkDrain: (_node, b) => toHandOn.record(b),
};

/** One e2e run (see the top of this file). `calibrate` is the caller's machine speed index. */
export async function runE2eOnce(spec: E2eSpec, calibrate: () => number) {
  const calibrationMops = calibrate();
  const binary = spec.protocol === 'binary';
  const maxOnly = binary || spec.maxOnly === true;
  const none = spec.tracker === 'none';
  /** Frames handed on: to the trackers' input, or (tracker none) drained by the drain-only sink. */
  const out = (t: Totals): number => (none ? t.consumed : t.delivered);
  const dir = mkdtempSync(join(tmpdir(), 'radar-e2e-'));
  mkdirSync(join(dir, 'reports'));
  const tStart = performance.now();
  const engine = new Engine({ config: engineConfig(spec, dir), probe: PROBE });
  await engine.start();
  let lg: Loadgen | null = null;
  try {
    lg = await Loadgen.start({
      host: '127.0.0.1', port: engine.tcpAddress!.port, protocol: binary ? 'binary' : 'line', stamped: !binary, connections: spec.connections,
      token: TOKEN, detections: spec.detections ?? 50,
      maxSeconds: spec.warmupS + spec.durationS + spec.latencyWarmupS + spec.latencyS + 180, nice: spec.nice ?? 0,
    });
    // Setup: one frame per node provisions and starts every tracker (binary: the hello does).
    if (!binary) await lg.prime();
    // Binary: a hello provisions nothing (a tracker waits for the node's first frame), so the push starts here.
    else lg.go();
    await untilUp(engine, spec.connections, { drainOnly: none, handedOn: binary ? 0 : spec.connections, timeoutS: 60 });
    const setupS = (performance.now() - tStart) / 1000;
    const pids = trackerPids(engine);

    // Max: unpaced push.
    if (!binary) lg.go();
    await sleep(spec.warmupS * 1000);
    const a = await sampleAll(engine, lg, pids);
    const tick = perSecond(() => out(engine.totals()), out(a.totals));
    await sleep(spec.durationS * 1000);
    const rates = tick.stop();
    const b = await sampleAll(engine, lg, pids);

    // Pause and drain.
    await lg.pause();
    await deliveredAll(engine);

    // Half: paced at loadFraction of the delivered rate.
    const s1 = (b.at - a.at) / 1000;
    const deliveredPerS = (out(b.totals) - out(a.totals)) / s1;
    const target = spec.pacedFps > 0 ? spec.pacedFps : Math.max(spec.connections, Math.round(deliveredPerS * spec.loadFraction));
    let c = b;
    let d = b;
    let hostLatency = latencyStats([]);
    let readLatency = latencyStats([]);
    if (!maxOnly) {
      lg.go({ fps: target, tickMs: spec.tickMs, stagger: spec.stagger ?? false });
      await sleep(spec.latencyWarmupS * 1000);
      c = await sampleAll(engine, lg, pids);
      for (const l of [toHandOn, toRead]) l.open(c.hrNs);
      await sleep(spec.latencyS * 1000);
      d = await sampleAll(engine, lg, pids);
      for (const l of [toHandOn, toRead]) l.until(d.hrNs);
      await sleep(200);
      for (const l of [toHandOn, toRead]) l.close();
      hostLatency = latencyStats(toHandOn.lat);
      readLatency = latencyStats(toRead.lat);
    }

    // Stop, drain, books.
    const tStop = performance.now();
    const fin = await lg.stop();
    lg = null;
    const end = await deliveredAll(engine);
    const instances = [...(engine.trackers?.instances.values() ?? [])];
    const feederBytes = instances.reduce((n, i) => n + i.feeder.bytes, 0);
    const restarts = instances.reduce((n, i) => n + i.state.restarts, 0);
    await engine.stop();
    const teardownS = (performance.now() - tStop) / 1000;
    // Only the drain trackers report (cat cannot count; none has no trackers).
    const reports = (spec.tracker ?? 'drain') === 'drain';
    const rep = reports
      ? readReports(join(dir, 'reports'), [[a.hrNs, b.hrNs], [c.hrNs, d.hrNs]])
      : { reports: new Map<string, TrackerReport>(), lat: [new Float64Array(0), new Float64Array(0)], errors: [] as string[] };

    const total = (k: 'frames' | 'bytes' | 'chunks' | 'cpu_us' | 'rss_bytes'): number => [...rep.reports.values()].reduce((n, r) => n + r[k], 0);
    const [trackerFrames, trackerBytes, reads, cpuUs, rss] = [total('frames'), total('bytes'), total('chunks'), total('cpu_us'), total('rss_bytes')];
    const acc = {
      sent: fin.sent, received: end.received, written: end.written, inRings: end.inRings, inSink: end.inSink,
      delivered: end.delivered, droppedTotal: end.droppedTotal, dropped: nonZero(end.dropped), trackerFrames, trackerBytes, feederBytes, trackerReports: rep.reports.size, restarts,
      errors: [...fin.errors, ...rep.errors], violations: sinkViolations(fin.sent, end, none),
    };
    const v = acc.violations;
    if (reports) {
      if (acc.trackerReports !== spec.connections) v.push(`${acc.trackerReports} tracker reports for ${spec.connections} nodes`);
      if (acc.trackerFrames !== acc.delivered) v.push(`trackers counted ${acc.trackerFrames} frames, engine delivered ${acc.delivered}`);
      if (acc.trackerBytes !== acc.feederBytes) v.push(`trackers read ${acc.trackerBytes} bytes, feeders wrote ${acc.feederBytes}`);
    }
    for (const [node, r] of rep.reports) {
      if (r.connections !== 1) v.push(`tracker ${node}: ${r.connections} input connections`);
      if (!binary && r.bad_markers > 0) v.push(`tracker ${node}: ${r.bad_markers} unreadable send-time markers`);
      if (r.samples_dropped > 0) v.push(`tracker ${node}: ${r.samples_dropped} latency samples over its cap`);
    }
    if (acc.restarts !== 0) v.push(`${acc.restarts} tracker restarts`);
    if (fin.closedEarly > 0) v.push(`${fin.closedEarly} connections closed by the host during the run`);
    if (acc.errors.length > 0) v.push(`errors: ${acc.errors.slice(0, 3).join('; ')}`);

    const d1 = delta(a.probes, b.probes);
    const into = (b.totals.written - a.totals.written) / s1;
    const ringCap = engine.config.ring.size_bytes * spec.connections;
    const s2 = (d.at - c.at) / 1000;
    const genS1 = (b.gen.childAt - a.gen.childAt) / 1000;
    const genS2 = (d.gen.childAt - c.gen.childAt) / 1000;
    const half2 = (out(d.totals) - out(c.totals)) / s2;
    const cpu1 = cpuSplit(a, b);
    const cpu2 = cpuSplit(c, d);
    const perS1 = (f: (t: Totals) => number): number => Math.round((f(b.totals) - f(a.totals)) / s1);
    return {
      shards: engine.config.shards, trackers: instances.length, calibration_mops: round(calibrationMops, 3),
      setup_s: round(setupS, 2), teardown_s: round(teardownS, 2),
      /** Unpaced: frames/s written into rings and handed on, rings' fill at the end, main-thread busy time per frame; latency at saturation (queueing in full rings; informative). */
      max: {
        window_s: round(s1, 3), into_rings_per_s: Math.round(into), delivered_per_s: Math.round(deliveredPerS), received_per_s: perS1((t) => t.received),
        sent_per_s: Math.round((b.gen.sent - a.gen.sent) / genS1), detections_into_rings_per_s: perS1((t) => t.detections),
        delivered_over_into_rings: round(deliveredPerS / into, 4), per_second: rates, in_rings_end: b.totals.inRings, rings_fill: round(b.ringsUsed / ringCap, 3),
        main_busy_ns_per_frame: round((d1.mainElu / deliveredPerS) * 1e9, 1),
        cpu: cpu1, cost_ns_per_frame: frameCost(cpu1, deliveredPerS), feeder: feederRates(a, b),
        latency: latencyStats(rep.lat[0]!), bytes_received_per_s: perS1((t) => t.bytesReceived),
      },
      /** Paced at the target: sustained when at least 97% was delivered (else queues grew through the window); the pacer's skipped frames. */
      half: maxOnly ? null : {
        target_per_s: target, sustained: half2 >= 0.97 * target, window_s: round(s2, 3), sent_per_s: Math.round((d.gen.sent - c.gen.sent) / genS2),
        delivered_per_s: Math.round(half2), pace_skipped: d.gen.paceSkipped - c.gen.paceSkipped, pace_max_gap_ms: round(d.gen.paceMaxGapMs, 2),
        cpu: cpu2, cost_ns_per_frame: frameCost(cpu2, half2), feeder: feederRates(c, d),
        /** Send -> the tracker's read (drain), else -> the host-side hand-on (latency_at says where). */
        latency: reports ? latencyStats(rep.lat[1]!) : hostLatency,
        latency_at: TRACKER_KINDS[spec.tracker ?? 'drain'].latencyAt,
        latency_to_tracker_write: hostLatency,
        latency_to_engine_read: readLatency,
      },
      trackers_total: {
        reads, bytes_per_read: Math.round(trackerBytes / reads), frames_per_read: round(trackerFrames / reads, 1),
        cpu_s: round(cpuUs / 1e6, 2), cpu_ns_per_frame: Math.round((cpuUs * 1000) / trackerFrames),
        rss_mb_mean: round(rss / Math.max(1, rep.reports.size) / 2 ** 20, 1),
      },
      accounting: acc,
    };
  } finally {
    lg?.kill();
    await engine.stop();
    for (const l of [toHandOn, toRead]) l.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const options = {
  ...loadOptions(8, 3),
  latencyDuration: optNum('latency window at the paced rate, seconds (default: --duration)'),
  loadFraction: num(0.5, 'paced rate as a share of the measured e2e rate'),
  pacedFps: num(0, 'paced rate in frames/s instead (e.g. 128: 64 nodes at 2 Hz; 0 = use --load-fraction)'),
  tickMs: num(1, 'pacing period of the generator, ms'),
  stagger: flag('each node writes once per tick at its own phase (node i at i/N of the tick), as independent nodes do'),
  shards: optNum("the engine's shards (default auto; 0 = one shard on the main thread)"),
  tracker: str<TrackerKind>('drain', 'the tracker per node: drain (bench/lib/drain-tracker.ts on TCP), cat (stdin, latency at the write), none (sink discard)', ['drain', 'cat', 'none']),
  nice: num(0, 'nice value for the generator and the trackers'),
  trackerPrefix: str('', 'run the trackers under this command, e.g. "nice -n 10" or "chrt -b 0"'),
  portStart: num(19000, 'first tracker port to provision (100 ports; keep it out of the ephemeral range)', 1),
  quietWait: num(10, 'before each cell, wait up to S s for the machine to be idle (0 = never)'),
  refs: list<'ingest' | 'stamped' | 'none'>(['ingest'], 'discard-sink reference cells per rep: ingest, stamped (the e2e generator), none', ['ingest', 'stamped', 'none']),
};

async function runE2e(o: OptValues<typeof options>): Promise<void> {
  const base = baseOf(o);
  const spec: E2eSpec = {
    connections: base.connections, warmupS: base.warmupS, durationS: base.durationS, latencyWarmupS: 1, latencyS: o.latencyDuration ?? base.durationS,
    loadFraction: o.loadFraction, pacedFps: o.pacedFps, trackerPrefix: o.trackerPrefix.split(/\s+/).filter((x) => x !== ''), tracker: o.tracker,
    nice: o.nice, tickMs: o.tickMs, stagger: o.stagger, shards: o.shards ?? 'auto', portStart: o.portStart,
  };
  const quiet: Array<{ cell: string; rep: number; waited_s: number; busy: number | null }> = [];
  const beQuiet = async (cell: string, rep: number): Promise<void> => {
    if (o.quietWait <= 0) return;
    const q = await waitQuiet(o.quietWait);
    quiet.push({ cell, rep, ...q });
    if (q.busy !== null && q.busy >= 0.3) process.stderr.write(`(machine still busy before ${cell} rep ${rep}: ${fmt(q.busy, 2)} cores after ${fmt(q.waited_s, 1)} s; measuring anyway)\n`);
  };
  const refs = o.refs.filter((r) => r !== 'none');
  const started = performance.now();
  const perRep = (base.warmupS + base.durationS + 30 + o.quietWait) * refs.length + spec.warmupS + spec.durationS + spec.latencyWarmupS + spec.latencyS + 120 + o.quietWait;
  boundRun(perRep * o.reps + 60);
  const head = header('e2e', { ...spec, reps: o.reps, refs, line_detections: '1-5 cycling', tracker: TRACKER_KINDS[spec.tracker ?? 'drain'].what });

  const refRuns: Record<string, RunResult[]> = Object.fromEntries(refs.map((r) => [r, []]));
  const runs: E2eResult[] = [];
  const noisy = (other: number | null): string => ((other ?? 0) > 0.2 ? `  (other CPU ${fmt(other, 2)} cores: noisy)` : '');
  for (let r = 0; r < o.reps; r++) {
    for (const ref of refs) {
      await beQuiet(`ref ${ref}`, r + 1);
      const res = await runOnce({ ...base, protocol: 'line', mode: 'default', detections: 3, stamped: ref === 'stamped' });
      refRuns[ref]!.push(res);
      process.stderr.write(`ref ${ref.padEnd(8)} rep ${r + 1}: ${fmt(res.frames_per_s).padStart(10)} frames/s into rings (sink discard)  main ELU ${fmt(res.main_elu, 3)}  proc CPU ${fmt(res.process_cpu, 2)}  gen CPU ${fmt(res.generator_cpu, 2)}${noisy(res.other_cpu)}${res.accounting.violations.length ? `  VIOLATIONS: ${res.accounting.violations.join('; ')}` : ''}\n`);
    }
    await beQuiet('e2e', r + 1);
    const e = await runE2eOnce(spec, calibrate);
    runs.push(e);
    const m = e.max;
    const h = e.half!; // the e2e workload always runs the half phase
    process.stderr.write(`e2e          rep ${r + 1}: ${fmt(m.delivered_per_s).padStart(10)} frames/s delivered (${fmt(m.into_rings_per_s)} into rings, rings ${fmt(m.rings_fill * 100)}% full)  main ELU ${fmt(m.cpu.main_elu, 3)}  proc CPU ${fmt(m.cpu.process_cpu, 2)}  trackers CPU ${fmt(m.cpu.trackers_cpu, 2)}  gen CPU ${fmt(m.cpu.generator_cpu, 2)}${noisy(m.cpu.other_cpu)}\n`);
    process.stderr.write(`  half load  rep ${r + 1}: ${fmt(h.delivered_per_s).padStart(10)} frames/s (target ${fmt(h.target_per_s)})  latency p50 ${fmt(h.latency.p50_ms, 2)} ms  p99 ${fmt(h.latency.p99_ms, 2)} ms  max ${fmt(h.latency.max_ms, 1)} ms (${fmt(h.latency.samples)} samples)  to tracker write p99 ${fmt(h.latency_to_tracker_write.p99_ms, 2)} ms  to engine read p99 ${fmt(h.latency_to_engine_read.p99_ms, 2)} ms${noisy(h.cpu.other_cpu)}${h.sustained ? '' : '  NOT SUSTAINED (queues grew: the latency is backlog)'}${h.pace_skipped > 0 ? `  generator behind: ${fmt(h.pace_skipped)} frames skipped` : ''}${e.accounting.violations.length ? `  VIOLATIONS: ${e.accounting.violations.join('; ')}` : ''}\n`);
  }

  // Medians of every figure over the reps (the reference cells: the fields the ratios use).
  const medians = {
    reference: Object.fromEntries(refs.map((ref) => [ref, medianTree(refRuns[ref]!.map((x) => ({
      frames_per_s: x.frames_per_s, main_elu: x.main_elu, process_cpu: x.process_cpu, generator_cpu: x.generator_cpu,
      engine_cpu_ns_per_frame: Math.round((x.process_cpu / x.frames_per_s) * 1e9), main_cpu_ns_per_frame: x.main_cpu_ns_per_frame,
    })))])),
    max: medianTree(runs.map((e) => e.max)),
    half: medianTree(runs.map((e) => e.half!)),
    e2e_delivered_per_s_range: [Math.min(...runs.map((e) => e.max.delivered_per_s)), Math.max(...runs.map((e) => e.max.delivered_per_s))],
    half_sustained_reps: runs.filter((e) => e.half!.sustained).length,
  };
  const refFps = (ref: string | undefined, i?: number): number => (ref === undefined ? NaN : i === undefined ? medians.reference[ref]!.frames_per_s : refRuns[ref]![i]!.frames_per_s);
  const ratio = round(medians.max.delivered_per_s / refFps(refs[0]), 4);
  const perRepRatio = runs.map((e, i) => round(e.max.delivered_per_s / refFps(refs[0], i), 4));
  const ratios = {
    /** The ratio that matters: e2e delivered / discard into-ring (medians, same invocation). */
    e2e_over_discard_into_rings: ratio,
    e2e_over_discard_per_rep: perRepRatio,
    ...(refs.includes('stamped') ? { e2e_over_discard_stamped: round(medians.max.delivered_per_s / refFps('stamped'), 4) } : {}),
    e2e_delivered_over_into_rings: round(medians.max.delivered_per_s / medians.max.into_rings_per_s, 4),
    half_delivered_over_target: round(medians.half.delivered_per_s / medians.half.target_per_s, 4),
  };
  const p99 = medians.half.latency.p99_ms;
  const minFps = E2E_TARGETS.min_ratio * E2E_TARGETS.line_target_frames_per_s;
  const targets = {
    throughput: {
      what: `e2e frames/s delivered to trackers >= ${E2E_TARGETS.min_ratio} x line frames/s into rings (sink discard, same run)`,
      value: ratio, min: E2E_TARGETS.min_ratio, pass: ratio >= E2E_TARGETS.min_ratio,
      absolute: {
        what: `e2e frames/s >= ${E2E_TARGETS.min_ratio} x the ${fmt(E2E_TARGETS.line_target_frames_per_s)} frames/s ingest target`,
        value: medians.max.delivered_per_s, min: minFps, pass: medians.max.delivered_per_s >= minFps,
      },
    },
    latency: {
      what: `p99 send-to-tracker latency < ${E2E_TARGETS.p99_ms} ms at ${spec.pacedFps > 0 ? `${spec.pacedFps} frames/s` : `${spec.loadFraction} x the e2e rate`}`,
      value: p99, worst_rep: Math.max(...runs.map((e) => e.half!.latency.p99_ms)), max: E2E_TARGETS.p99_ms, pass: p99 < E2E_TARGETS.p99_ms,
    },
  };
  const violations = [
    ...runs.flatMap((e, i) => e.accounting.violations.map((v) => `e2e rep ${i + 1}: ${v}`)),
    ...refs.flatMap((ref) => refRuns[ref]!.flatMap((x, i) => x.accounting.violations.map((v) => `ref ${ref} rep ${i + 1}: ${v}`))),
  ];
  const out = {
    ...head, duration_s: round((performance.now() - started) / 1000, 1), targets, ratios, medians,
    accounting: { ok: violations.length === 0, violations }, quiet_waits: quiet, runs, reference_runs: refRuns,
  };
  report('e2e', out, summaryLine('e2e', out), !o.noSave);
}
type E2eResult = Awaited<ReturnType<typeof runE2eOnce>>;

export const workload = defineWorkload({
  about: 'node sockets to tracker input: frames/s delivered at full push, send-to-tracker latency at half of it',
  options,
  run: runE2e,
});
