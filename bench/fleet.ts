// Workload `fleet`: many field nodes at a low rate with heartbeats, one minimal
// tracker per node (or the drain-only sink); latency to the tracker's input through
// the engine's probe, host CPU, memory, event-loop lag. Details: docs/benchmarks.md.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
import os from 'node:os';
import { join } from 'node:path';
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { Engine, C_HEARTBEATS, type Totals } from './lib/engine-api.js';
import { FleetClient, type FleetSample } from './lib/loadgen-fleet.js';
import { Loadgen, type LoadgenSample } from './lib/loadgen.js';
import { snapshot, delta, sleep, perSecond, waitQuiet, pidStat, pidsStat, pidsCpu, openFds, fdLimit, cpuBreakdown, genCpu, type ProbeSnapshot } from './lib/probes.js';
import { MarkerLatency } from './lib/send-marker.js';
import { httpGet } from './lib/metrics.js';
import { acksSent, benchConfig, counterSum, deliveredAll, nonZero, sinkViolations, feederTotals, ringsUsed, trackerPids, untilUp } from './lib/engine-run.js';
import { latencyStats, quantile, round } from './lib/stats.js';
import { defineWorkload, list, num, SAVE_OPTION } from './lib/options.js';
import { boundRun, header, report, summaryLine } from './lib/results.js';
import type { Mode } from './ingest.js';

const TOKEN = 'fleet-secret';
/** Node ids of the paced fleet (FleetClient's default prefix). */
const PACED_PREFIX = 'fleet-';

/** Targets for a fleet of nodes at 2 Hz. */
export const FLEET_TARGETS = { p99_ms: 2, host_cpu_pct_of_core: 15 };

export const MINIMAL_TRACKER = ['sh', '-c', 'exec cat >/dev/null'];

/** One fleet run; optional fields default as in runFleet (the workload's options table documents them). */
export interface FleetOptions {
  nodes: number; fps: number; durationS: number; detections: number; heartbeatMs: number;
  idleS?: number; warmupS?: number; maxS?: number; portStart?: number; quietWaitS?: number; sink?: 'trackers' | 'discard'; shards?: number | 'auto';
  /** Mixed fleet: this many unpaced binary nodes besides the paced ones (0: none). */
  fast?: number;
}

// Host-side latency through the engine's probe: its write into a tracker's input, or (sink discard) the records the sink frees.

const hook = new MarkerLatency();
const sum = (xs: number[]): number => xs.reduce((x, y) => x + y, 0);

function engineConfig(o: Required<Pick<FleetOptions, 'portStart' | 'shards' | 'sink'>> & { portEnd: number }, dir: string) {
  return benchConfig(TOKEN, {
    shards: o.shards,
    sink: o.sink,
    output_dir: join(dir, 'output'),
    tracker: { command: MINIMAL_TRACKER, input: 'stdin', stop_grace_ms: 5000 },
    shutdown: { deadline_ms: 120000 },
    agents: { key_file: join(dir, 'agents-key.pem') },
  }, { auto_provision: true, auto_provision_port_start: o.portStart, auto_provision_port_end: o.portEnd });
}

/**
 * The engine's event-loop delay histogram (prom-client's default metrics run a
 * monitorEventLoopDelay, resolution 10 ms, reset at every collection): collects it
 * now, which resets it, and returns what it held, in ns (timer intervals).
 */
async function eventLoopLag(engine: Engine): Promise<{ p50: number; p90: number; p99: number; max: number; mean: number }> {
  const reg = engine.metrics.registry;
  const g = async (name: string): Promise<number> => {
    const m = reg.getSingleMetric(name) as unknown as { get(): Promise<{ values: Array<{ value: number }> }> } | undefined;
    if (!m) return NaN;
    const v = await m.get();
    return (v.values[0]?.value ?? NaN) * 1e9;
  };
  await g('nodejs_eventloop_lag_seconds'); // runs the collection: sets the gauges below, resets the histogram
  return {
    p50: await g('nodejs_eventloop_lag_p50_seconds'), p90: await g('nodejs_eventloop_lag_p90_seconds'),
    p99: await g('nodejs_eventloop_lag_p99_seconds'), max: await g('nodejs_eventloop_lag_max_seconds'),
    mean: await g('nodejs_eventloop_lag_mean_seconds'),
  };
}

interface Sample {
  at: number;
  hrNs: number;
  hrEndNs: number;
  /** Close edge: how long the trackers' /proc reads took (ns). */
  procReadNs?: number;
  totals: ReturnType<Engine['totals']>;
  probes: ProbeSnapshot;
  gen: FleetSample & { at: number };
  heartbeats: number;
  acks: number;
  feeder: ReturnType<typeof feederTotals>;
  trackers: ReturnType<typeof pidsStat>;
}

/** Between the trackers' /proc reads and a window's edge: the frames held up by the reads, or sent just before the window closed, are handed on first. */
const SETTLE_MS = 100;

/**
 * The figures at one edge of a window. The bench runs the engine in this process,
 * so the trackers' /proc reads (two files per tracker: ~40 ms on the engine's main
 * thread for 1,000 on an idle machine) stall every connection: they are made
 * before the window opens and after it has closed, never inside it.
 */
async function sampleAll(engine: Engine, client: FleetClient, pids: number[], edge: 'open' | 'close'): Promise<Sample> {
  const before = edge === 'open' ? pidsStat(pids) : null;
  // The frames that queued up during the reads are handed on before the window opens.
  if (before) await sleep(SETTLE_MS);
  const gen = await client.mark();
  const probes = snapshot(engine.pool.threads);
  const s = {
    at: performance.now(), hrNs: Number(process.hrtime.bigint()), totals: engine.totals(), probes, gen,
    heartbeats: counterSum(engine, C_HEARTBEATS), feeder: feederTotals(engine), acks: acksSent(engine),
  };
  if (before) return { ...s, trackers: before, hrEndNs: Number(process.hrtime.bigint()) };
  await sleep(SETTLE_MS);
  const t0 = Number(process.hrtime.bigint());
  return { ...s, trackers: pidsStat(pids), hrEndNs: t0, procReadNs: Number(process.hrtime.bigint()) - t0 };
}

function cpuOf(a: Sample, b: Sample) {
  const c = cpuBreakdown(delta(a.probes, b.probes), { trackers_cpu: pidsCpu(a.trackers, b.trackers), generator_cpu: genCpu(a.gen, b.gen) });
  return { ...c, engine_process_cpu_pct_of_core: round(c.process_cpu * 100, 2) };
}

export async function runFleet(opts: FleetOptions): Promise<Record<string, unknown>> {
  const o = { idleS: 5, warmupS: 3, maxS: 0, maxWarmupS: 1, quietWaitS: 0, setupTimeoutS: 300, portStart: 20000, sink: 'trackers' as const, ...opts };
  const drainOnly = o.sink === 'discard';
  /** Frames handed on by the sink: to a tracker's input, or drained by the drain-only consumer. */
  const out = (t: Totals): number => (drainOnly ? t.consumed : t.delivered);
  const portEnd = Math.min(65535, o.portStart + Math.max(1999, o.nodes - 1));
  if (portEnd - o.portStart + 1 < o.nodes) throw new Error(`provisioning range ${o.portStart}..${portEnd} holds fewer than ${o.nodes} ports`);
  const quiet = o.quietWaitS > 0 ? await waitQuiet(o.quietWaitS) : null;
  const started = performance.now();
  const dir = mkdtempSync(join(os.tmpdir(), 'radar-fleet-'));
  const rssEmpty = process.memoryUsage.rss();
  // Supervisor passes (the reconcile loop walks every instance): start and end times.
  const passes: Array<[number, number]> = [];
  const record = (b: Buffer): void => hook.record(b);
  const engine = new Engine({
    config: engineConfig({ portStart: o.portStart, portEnd, shards: o.shards ?? 'auto', sink: o.sink }, dir),
    // Only the paced nodes' frames carry send-time markers: the drain-only sink
    // discards the unpaced ones without copying them out for the probe.
    probe: { onTrackerWrite: (_n, b) => record(b), onSinkDrain: (_n, b) => record(b), drainsNode: (n) => n.startsWith(PACED_PREFIX), onReconcilePass: (t0, t1) => passes.push([t0, t1]) },
  });
  // GC pauses (main thread).
  const gcs: Array<[number, number, number]> = [];
  const gcObs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push([e.startTime, e.duration, ((e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0)]);
  });

  let client: FleetClient | null = null;
  let fastGen: Loadgen | null = null;
  const pids: number[] = [];
  try {
    await engine.start();
    const rssEngine = process.memoryUsage.rss();

    // ---- setup: connect, provision, start every tracker ----
    const tConnect = performance.now();
    client = await FleetClient.start({
      host: '127.0.0.1', port: engine.tcpAddress!.port, nodes: o.nodes, token: TOKEN, detections: o.detections,
      maxSeconds: o.setupTimeoutS + o.idleS + o.warmupS + o.durationS + o.maxWarmupS + o.maxS + 300,
    }, o.setupTimeoutS * 1000);
    const connectS = (performance.now() - tConnect) / 1000;
    let provisionedAt = 0;
    const timeline: Array<[number, number, number, number]> = [];
    await untilUp(engine, o.nodes, {
      drainOnly, handedOn: o.nodes, timeoutS: o.setupTimeoutS,
      each: (inst) => {
        const t = round((performance.now() - tConnect) / 1000, 1);
        if (t - (timeline.at(-1)?.[0] ?? -1) >= 0.5) timeline.push([t, engine.nodes.nodes.size, inst.length, inst.filter((i) => i.up).length]);
        if (provisionedAt === 0 && inst.length === o.nodes) provisionedAt = performance.now();
      },
    });
    provisionedAt ||= performance.now();
    const runningAt = performance.now();
    pids.push(...trackerPids(engine));
    const passesSetup = passes.length;
    const api = drainOnly ? null : await httpGet(engine.httpAddress!.port, '/api/v1/trackers', 30000);
    const apiTrackers = api && 'body' in api ? (JSON.parse(api.body) as { trackers: Array<{ state: string }> }).trackers : [];
    const passMsSetup = passes.map(([a, b]) => (b - a) / 1e6);
    const setup = {
      total_s: round((runningAt - started) / 1000, 2), connect_and_prime_s: round(connectS, 2),
      all_instances_s: round((provisionedAt - tConnect) / 1000, 2), all_running_s: round((runningAt - tConnect) / 1000, 2),
      supervisor_passes: passesSetup, supervisor_pass_max_ms: round(Math.max(0, ...passMsSetup), 2), supervisor_pass_total_ms: round(sum(passMsSetup), 1),
      /** [s since connect, nodes with a ring, tracker instances, trackers up], every 0.5 s. */
      timeline,
      /** The operator's view: GET /api/v1/trackers (sink trackers only). */
      api: api && ('body' in api ? { status: api.status, ms: round(api.ms, 1), bytes: api.body.length, trackers: apiTrackers.length,
        states: Object.fromEntries([...new Set(apiTrackers.map((t) => t.state))].map((st) => [st, apiTrackers.filter((t) => t.state === st).length])) } : api),
      fds_open: openFds(),
      fd_limit: fdLimit(),
      tracker_pids: pids.length,
    };

    // ---- idle: connected, nothing sent ----
    let idle: Record<string, unknown> | null = null;
    if (o.idleS > 0) {
      await sleep(500);
      const c = await sampleAll(engine, client, pids, 'open');
      await sleep(o.idleS * 1000);
      const d = await sampleAll(engine, client, pids, 'close');
      idle = { window_s: round((d.at - c.at) / 1000, 3), cpu: cpuOf(c, d), rss_mb: round(process.memoryUsage.rss() / 2 ** 20, 1) };
    }

    // ---- mixed fleet: the fast nodes alone first (their burst rate here), then beside the paced ones ----
    const fastRate = (x: LoadgenSample & { at: number }, y: LoadgenSample & { at: number }): number => Math.round((y.sent - x.sent) / ((y.childAt - x.childAt) / 1000));
    let fastAlone: number | null = null;
    if ((o.fast ?? 0) > 0) {
      fastGen = await Loadgen.start({ host: '127.0.0.1', port: engine.tcpAddress!.port, protocol: 'binary', connections: o.fast!, token: TOKEN, detections: 50,
        maxSeconds: o.setupTimeoutS + o.warmupS * 2 + o.durationS * 2 + o.maxS + 600 });
      fastGen.go();
      await sleep(Math.max(3, o.warmupS) * 1000); // provisioning, and the moves to the workers (shards: auto)
      const f0 = await fastGen.mark();
      await sleep((o.durationS / 2) * 1000);
      fastAlone = fastRate(f0, await fastGen.mark());
    }

    // ---- paced window ----
    client.go({ fps: o.fps, heartbeatMs: o.heartbeatMs });
    await sleep(o.warmupS * 1000);
    const fa = fastGen ? await fastGen.mark() : null;
    const a = await sampleAll(engine, client, pids, 'open');
    const passesA = passes.length;
    const gcA = gcs.length;
    gcObs.observe({ entryTypes: ['gc'] });
    const heapProf = process.env.FLEET_HEAP_PROF ? await startHeapSampling() : null;
    const schedA = mainSched();
    hook.open(a.hrNs);
    await eventLoopLag(engine); // resets the engine's delay histogram
    const rss: number[] = [process.memoryUsage.rss()];
    const tick = perSecond(() => out(engine.totals()), out(a.totals), () => rss.push(process.memoryUsage.rss()));
    await sleep(o.durationS * 1000);
    const rates = tick.stop();
    const lag = await eventLoopLag(engine);
    const b = await sampleAll(engine, client, pids, 'close');
    const schedB = mainSched();
    if (heapProf) await heapProf(process.env.FLEET_HEAP_PROF + '.' + Date.now() + '.heapprofile');
    const fb = fastGen ? await fastGen.mark() : null;
    hook.until(b.hrNs);
    const mem = process.memoryUsage();
    rss.push(mem.rss);
    const fdsWindow = openFds();
    await sleep(300); // frames sent just before the end of the window reach their tracker
    hook.close();
    const win = hook;
    gcObs.disconnect();
    const s = (b.at - a.at) / 1000;
    const genS = (b.gen.childAt - a.gen.childAt) / 1000;
    const lat = latencyStats(win.lat, 1e-6, true);
    const windowPasses = passes.slice(passesA).filter(([p0]) => p0 >= a.hrNs && p0 <= b.hrNs);
    const passMs = windowPasses.map(([p0, p1]) => (p1 - p0) / 1e6);
    const windowGcs = gcs.slice(gcA);
    // Slow samples (> 2 ms): how many overlap a supervisor pass or a GC pause.
    let slow = 0;
    let slowInPass = 0;
    let slowInGc = 0;
    // GC entries are on the performance.now() clock: move them to hrtime ns.
    const hrNow = Number(process.hrtime.bigint());
    const perfNow = performance.now();
    const gcNs = windowGcs.map(([start, dur, kind]) => [hrNow - (perfNow - start) * 1e6, dur * 1e6, kind] as const);
    for (let i = 0; i < win.lat.length; i++) {
      const l = win.lat[i]!;
      if (l <= 2e6) continue;
      slow++;
      const end = win.at[i]!;
      const begin = end - l;
      if (windowPasses.some(([p0, p1]) => p0 < end && p1 > begin)) slowInPass++;
      if (gcNs.some(([g0, gd]) => g0 < end && g0 + gd > begin)) slowInGc++;
    }
    if (process.env.FLEET_DUMP) {
      const { writeFileSync } = await import('node:fs');
      const slowS: Array<[number, number]> = [];
      for (let i = 0; i < win.lat.length; i++) if (win.lat[i]! > 2e6) slowS.push([round((win.at[i]! - win.lat[i]! - a.hrNs) / 1e6, 2), round(win.lat[i]! / 1e6, 2)]);
      writeFileSync(process.env.FLEET_DUMP + "." + Date.now() + ".json", JSON.stringify({ sched: { a: schedA, b: schedB }, aHrNs: a.hrNs, bHrNs: b.hrNs, procMs: (b.procReadNs ?? 0) / 1e6, slow: slowS,
        passes: windowPasses.map(([p0, p1]) => [round((p0 - a.hrNs) / 1e6, 2), round((p1 - p0) / 1e6, 2)]),
        gcs: gcNs.map(([g0, gd, k]) => [round((g0 - a.hrNs) / 1e6, 2), round(gd / 1e6, 2), k]) }));
    }
    const cpu = cpuOf(a, b);
    const lagMs = (v: number): number => round(Math.max(0, v / 1e6 - 10), 3);
    const rssMax = Math.max(...rss);
    const rssMed = quantile(rss, 0.5);
    const mb = (x: number): number => round(x / 2 ** 20, 1);
    const paced = {
      window_s: round(s, 3), target_frames_per_s: o.nodes * o.fps, sent_frames: b.gen.sent - a.gen.sent, sent_per_s: round((b.gen.sent - a.gen.sent) / genS, 1),
      received_per_s: round((b.totals.received - a.totals.received) / s, 1),
      /** Sink trackers: written into a tracker's input; sink discard: drained by the drain-only consumer. */
      delivered_frames: out(b.totals) - out(a.totals), delivered_per_s: round((out(b.totals) - out(a.totals)) / s, 1), delivered_per_s_by_second: rates,
      heartbeats_sent_per_s: round((b.gen.heartbeats - a.gen.heartbeats) / genS, 1), heartbeats_received_per_s: round((b.heartbeats - a.heartbeats) / s, 1),
      latency_to_tracker_write: {
        what: drainOnly
          ? 'generator write (send-time marker) -> the drain-only sink (sink: discard) taking the frame out of its ring (EngineProbe.onSinkDrain), hrtime'
          : 'generator write (send-time marker) -> the engine handing the batch to the tracker\'s stdin pipe (EngineProbe.onTrackerWrite), hrtime; excludes the pipe and the tracker\'s wake-up',
        ...lat,
      },
      slow_samples: { over_2ms: slow, overlapping_supervisor_pass: slowInPass, overlapping_gc: slowInGc },
      cpu,
      event_loop_lag_ms: {
        what: 'main thread: the engine\'s prom-client monitorEventLoopDelay (resolution 10 ms) over the window; lag = timer interval - 10 ms',
        p50: lagMs(lag.p50), p90: lagMs(lag.p90), p99: lagMs(lag.p99), max: lagMs(lag.max), mean: lagMs(lag.mean),
      },
      memory: {
        rss_mb_before_engine: mb(rssEmpty), rss_mb_engine_no_nodes: mb(rssEngine), rss_mb_start: mb(rss[0]!), rss_mb_end: mb(mem.rss),
        rss_mb_max: mb(rssMax), rss_mb_median: mb(rssMed),
        /** (median RSS in the window - RSS of the started engine before any node) / nodes. */
        rss_kb_per_node: round((rssMed - rssEngine) / o.nodes / 1024, 1),
        heap_used_mb: mb(mem.heapUsed), external_mb: mb(mem.external), array_buffers_mb: mb(mem.arrayBuffers), ring_bytes_per_node: engine.config.ring.size_bytes,
        /** Rings are SharedArrayBuffers: address space now, resident as pages are first written (each ring fully resident once it wrapped). */
        rings_virtual_mb: round((engine.config.ring.size_bytes * o.nodes) / 2 ** 20, 0),
        /** At this rate a ring has wrapped (all of it resident) after this many minutes: the long-run RSS is about rings_virtual_mb more. */
        rings_fully_resident_after_min: round(engine.config.ring.size_bytes / (o.fps * frameBytes(o.detections)) / 60, 0),
        trackers_rss_mb_total: mb(b.trackers.rss),
        trackers_rss_kb_mean: round(b.trackers.rss / Math.max(1, b.trackers.alive) / 1024, 0),
      },
      supervisor_passes: { count: passMs.length, p50_ms: round(quantile(passMs, 0.5), 3), max_ms: round(Math.max(0, ...passMs), 3), total_ms: round(sum(passMs), 1) },
      gc: { count: windowGcs.length, max_ms: round(Math.max(0, ...windowGcs.map(([, d]) => d)), 3), total_ms: round(sum(windowGcs.map(([, d]) => d)), 1) },
      feeder: {
        writes_per_s: round((b.feeder.batches - a.feeder.batches) / s, 1),
        frames_per_write: round((b.feeder.fed - a.feeder.fed) / Math.max(1, b.feeder.batches - a.feeder.batches), 2),
      },
      generator: {
        late_max_ms: b.gen.lateMaxMs, writes_late_1ms: b.gen.late1ms - a.gen.late1ms, writes_late_5ms: b.gen.late5ms - a.gen.late5ms,
        pace_skipped: b.gen.paceSkipped - a.gen.paceSkipped, backpressure_skipped: b.gen.backpressureSkipped - a.gen.backpressureSkipped,
        writes_per_s: round((b.gen.writes - a.gen.writes) / genS, 1), timer_ticks_per_s: round((b.gen.ticks - a.gen.ticks) / genS, 1),
      },
      fds_open: fdsWindow,
      trackers_alive: b.trackers.alive,
      /** shards: auto: connections moved to a worker / back to the main thread since the start. */
      placement_moves: { ...engine.handoff.moves },
      ...(fa && fb && fastAlone !== null ? {
        mixed: {
          what: `${o.fast} unpaced binary nodes (50 detections a frame) beside the paced ones; their frames carry no send-time marker, so the latency above is the paced nodes' alone`,
          fast_nodes: o.fast, fast_alone_frames_per_s: fastAlone, fast_mixed_frames_per_s: fastRate(fa, fb),
          fast_mixed_over_alone: round(fastRate(fa, fb) / Math.max(1, fastAlone), 3),
          /** Ack messages the host wrote (the fast nodes' and the paced heartbeats'), per second of the window. */
          acks_per_s: round((b.acks - a.acks) / s, 0),
        },
      } : {}),
    };
    const fastFin = fastGen ? await fastGen.stop() : null;
    fastGen = null;

    // ---- optional unpaced phase ----
    let max: Record<string, unknown> | null = null;
    if (o.maxS > 0) {
      await client.pause(120000);
      await deliveredAll(engine);
      const chunkBytes = Math.max(4096, Math.min(256 * 1024, Math.floor((32 << 20) / o.nodes)));
      client.flood({ chunkBytes, depth: 2 });
      await sleep(o.maxWarmupS * 1000);
      const c = await sampleAll(engine, client, pids, 'open');
      // Second by second: [frames/s into rings, delivered/s, frames in rings, RSS MB, main ELU].
      const perSec: Array<[number, number, number, number, number]> = [];
      let lt = c.totals;
      let lAt = performance.now();
      let lElu = performance.eventLoopUtilization();
      const t2 = setInterval(() => {
        const t = engine.totals();
        const now = performance.now();
        const k = 1000 / (now - lAt);
        const e = performance.eventLoopUtilization();
        perSec.push([Math.round((t.written - lt.written) * k), Math.round((t.delivered - lt.delivered) * k), t.inRings,
          round(process.memoryUsage.rss() / 2 ** 20, 0), round(performance.eventLoopUtilization(e, lElu).utilization, 3)]);
        lt = t;
        lAt = now;
        lElu = e;
      }, 1000);
      await sleep(o.maxS * 1000);
      clearInterval(t2);
      const d = await sampleAll(engine, client, pids, 'close');
      const ringsNow = ringsUsed(engine);
      const rssAfter = process.memoryUsage.rss();
      // In-flight writes complete as the engine reads them: after a stall that can take a while.
      await client.pause(120000);
      const s2 = (d.at - c.at) / 1000;
      const g2 = (d.gen.childAt - c.gen.childAt) / 1000;
      max = {
        window_s: round(s2, 3),
        chunk_bytes: chunkBytes,
        sent_per_s: Math.round((d.gen.sent - c.gen.sent) / g2),
        into_rings_per_s: Math.round((d.totals.written - c.totals.written) / s2),
        delivered_per_s: Math.round((out(d.totals) - out(c.totals)) / s2),
        detections_into_rings_per_s: Math.round((d.totals.detections - c.totals.detections) / s2),
        rings_fill_end: round(ringsNow / (engine.config.ring.size_bytes * o.nodes), 4),
        feeder_frames_per_write: round((d.feeder.fed - c.feeder.fed) / Math.max(1, d.feeder.batches - c.feeder.batches), 1),
        cpu: cpuOf(c, d),
        rss_mb_after: round(rssAfter / 2 ** 20, 1),
        /** [into rings /s, delivered /s, frames in rings, RSS MB, main ELU] each second. */
        per_second: perSec,
      };
    }

    // ---- stop and check the books ----
    const tStop = performance.now();
    const fin0 = await client.stop();
    client = null;
    const fin = fastFin ? { ...fin0, sent: fin0.sent + fastFin.sent, errors: [...fin0.errors, ...fastFin.errors], closedEarly: fin0.closedEarly + fastFin.closedEarly } : fin0;
    const end = await deliveredAll(engine);
    const hbEnd = counterSum(engine, C_HEARTBEATS);
    const instances = engine.trackers ? [...engine.trackers.instances.values()] : [];
    const restarts = instances.reduce((n, i) => n + i.state.restarts, 0);
    const notUp = instances.filter((i) => !i.up).length;
    const tEngineStop = performance.now();
    await engine.stop();
    const engineStopS = (performance.now() - tEngineStop) / 1000;
    // Every tracker process must be gone (bounded wait: they exit on EOF of stdin).
    let left = pids.filter((p) => pidStat(p)?.zombie === false);
    for (let k = 0; k < 50 && left.length > 0; k++) {
      await sleep(100);
      left = left.filter((p) => pidStat(p)?.zombie === false);
    }
    const acc = {
      sent: fin.sent, received: end.received, in_rings: end.inRings, in_sink: end.inSink, delivered: end.delivered,
      dropped_total: end.droppedTotal,
      dropped: nonZero(end.dropped),
      heartbeats_sent: fin.heartbeats, heartbeats_received: hbEnd,
      instances: instances.length, trackers_not_up_before_stop: notUp, restarts,
      generator_errors: fin.errors, closed_early: fin.closedEarly,
      violations: sinkViolations(fin.sent, end, drainOnly),
    };
    const v = acc.violations;
    if (acc.heartbeats_sent !== acc.heartbeats_received) v.push(`heartbeats sent ${acc.heartbeats_sent} != received ${acc.heartbeats_received}`);
    const allNodes = o.nodes + (o.fast ?? 0);
    if (acc.instances !== (drainOnly ? 0 : allNodes)) v.push(`${acc.instances} tracker instances for ${allNodes} nodes`);
    if (notUp > 0) v.push(`${notUp} trackers not up at the end of the load`);
    if (restarts > 0) v.push(`${restarts} tracker restarts`);
    if (fin.closedEarly > 0) v.push(`${fin.closedEarly} node connections closed by the host during the run`);
    if (fin.errors.length > 0) v.push(`generator errors: ${fin.errors.slice(0, 3).join('; ')}`);
    if (left.length > 0) v.push(`${left.length} tracker processes still alive after engine.stop() (e.g. pid ${left[0]})`);

    const p99 = lat.p99_ms;
    const cpuPct = cpu.engine_process_cpu_pct_of_core;
    return {
      ...header('fleet'),
      params: {
        nodes: o.nodes, fps: o.fps, duration_s: o.durationS, warmup_s: o.warmupS, detections: o.detections, heartbeat_ms: o.heartbeatMs,
        max_s: o.maxS, fast_nodes: o.fast ?? 0, port_range: [o.portStart, portEnd], shards: engine.config.shards, sink: o.sink,
        tracker: drainOnly ? null : { command: MINIMAL_TRACKER, input: 'stdin' }, frame_bytes: frameBytes(o.detections),
        protocol: 'line (retina JSON), one TCP connection per node, writes spread evenly, one frame per write',
      },
      quiet_wait: quiet,
      targets: {
        latency: {
          what: `p99 send -> ${drainOnly ? 'drained by the drain-only sink' : 'hand-off to the tracker\'s input pipe'} < ${FLEET_TARGETS.p99_ms} ms (${o.nodes} nodes x ${o.fps} Hz)`,
          value: p99, max: FLEET_TARGETS.p99_ms, pass: p99 < FLEET_TARGETS.p99_ms,
        },
        host_cpu: {
          what: `engine process CPU (all threads) < ${FLEET_TARGETS.host_cpu_pct_of_core}% of one core; trackers and generator reported separately`,
          value_pct: cpuPct, max_pct: FLEET_TARGETS.host_cpu_pct_of_core, pass: cpuPct < FLEET_TARGETS.host_cpu_pct_of_core,
        },
      },
      setup,
      ...(idle ? { idle } : {}),
      paced,
      ...(max ? { max } : {}),
      teardown: { stop_load_and_drain_s: round((tEngineStop - tStop) / 1000, 2), engine_stop_s: round(engineStopS, 2), tracker_processes_left: left.length },
      accounting: { ok: v.length === 0, ...acc },
      duration_s: round((performance.now() - started) / 1000, 1),
    };
  } finally {
    hook.close();
    gcObs.disconnect();
    client?.kill();
    fastGen?.kill();
    await engine.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The main thread's scheduler figures: ns on CPU, ns waiting on a run queue, time slices; context switches. */
function mainSched(): Record<string, number> {
  const { readFileSync } = require('node:fs') as typeof import('node:fs');
  const [run, wait, slices] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').trim().split(' ').map(Number);
  const st = readFileSync(`/proc/self/task/${process.pid}/status`, 'utf8');
  const num = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st)?.[1]);
  return { run: run!, wait: wait!, slices: slices!, vol: num('voluntary_ctxt_switches'), invol: num('nonvoluntary_ctxt_switches') };
}

/** Sampling heap profile of this process (objects collected by GC included) until the returned function writes it to `file`. */
async function startHeapSampling(): Promise<(file: string) => Promise<void>> {
  const { Session } = await import('node:inspector');
  const { writeFileSync } = await import('node:fs');
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<unknown> => new Promise((resolve, reject) => {
    session.post(method, params ?? {}, (err, r) => (err ? reject(err) : resolve(r)));
  });
  await post('HeapProfiler.startSampling', { samplingInterval: 8192, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  return async (file) => {
    const r = (await post('HeapProfiler.stopSampling')) as { profile: unknown };
    writeFileSync(file, JSON.stringify(r.profile));
    session.disconnect();
  };
}

/** Bytes of one frame line as sent (node fleet-0). */
function frameBytes(detections: number): number {
  const d = Array.from({ length: detections }, () => 123.45);
  return Buffer.byteLength(`${JSON.stringify({ node_id: 'fleet-0', token: TOKEN, timestamp: 1757400000000, t: '0'.repeat(19), delay: d, doppler: d, snr: d, adsb: d.map(() => null) })}\n`);
}

const options = {
  nodes: num(1000, 'nodes (one connection and one tracker each)', 1),
  fps: num(2, 'frames per second per node'),
  duration: num(60, 'measured (paced) window, seconds'),
  detections: num(10, 'detections per frame', 1),
  heartbeatMs: num(5000, 'heartbeat period per node, ms (0: none)'),
  idle: num(5, 'idle phase before the load (connected, nothing sent), seconds; 0 skips it'),
  warmup: num(3, 'paced load before the window, seconds'),
  max: num(0, 'unpaced phase after the window, seconds (0: none)'),
  fast: num(0, 'mixed fleet: unpaced binary nodes beside the paced ones (0: none); their rate alone is measured first'),
  portStart: num(20000, 'first tracker port to provision', 1),
  quietWait: num(10, 'before each run, wait up to S s for the machine to be idle'),
  modes: list<Mode>(['default', 'shards0', 'shards1'], 'engine modes: default (shards: auto), shardsN', /^(default|shards\d+)$/),
  sinks: list<'trackers' | 'discard'>(['trackers', 'discard'], 'what drains the rings: trackers (one per node), discard', ['trackers', 'discard']),
  reps: num(1, 'runs per cell', 1),
  ...SAVE_OPTION,
};

export const workload = defineWorkload({
  about: '1,000 nodes x 2 frames/s with heartbeats, drained by one minimal tracker each and by the drain-only sink',
  options,
  run: async (o) => {
    boundRun(o.reps * o.sinks.length * o.modes.length * (o.quietWait + o.idle + 300 + 2 * o.warmup + 2 * o.duration + o.max + 300));
    const head = header('fleet');
    const runs: Array<{ mode: Mode; sink: string; result: Record<string, unknown> }> = [];
    const lines: string[] = [];
    for (let r = 0; r < o.reps; r++) {
      for (const sink of o.sinks) {
        for (const mode of o.modes) {
          const result = await runFleet({
            nodes: o.nodes, fps: o.fps, durationS: o.duration, detections: o.detections, heartbeatMs: o.heartbeatMs,
            idleS: o.idle, warmupS: o.warmup, maxS: o.max, portStart: o.portStart, fast: o.fast,
            shards: mode === 'default' ? 'auto' : Number(mode.slice(6)), quietWaitS: o.quietWait, sink,
          });
          runs.push({ mode, sink, result });
          lines.push(summaryLine(`fleet ${mode} sink ${sink} rep ${r + 1}`, result));
        }
      }
    }
    report('fleet', { ...head, targets: FLEET_TARGETS, modes: o.modes, sinks: o.sinks, runs }, lines.join('\n'), !o.noSave);
  },
});
