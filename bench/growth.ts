// Workload `growth`: how throughput, CPU, memory and latency grow with the number
// of nodes and with the detections per frame. Every cell is one fleet run, by
// default in a fresh process so one cell's heap does not weigh on the next.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { FLEET_TARGETS, type FleetOptions } from './fleet.js';
import { waitQuiet } from './lib/probes.js';
import { defineWorkload, num, nums, SAVE_OPTION, type OptValues } from './lib/options.js';
import { boundRun, header, report, writeResultFile } from './lib/results.js';
import { fmt, round } from './lib/stats.js';

const RUN_JS = fileURLToPath(new URL('./run.js', import.meta.url));

type Sweep = 'nodes' | 'detections' | 'both';

/** One table row from a fleet result (`max`: unpaced; `paced`: against the target nodes x fps). */
/* eslint-disable @typescript-eslint/no-explicit-any */
function rowOf(sweep: Sweep, r: any) {
  const p = r.paced;
  const m = r.max ?? null;
  const lat = p.latency_to_tracker_write;
  return {
    sweep, nodes: r.params.nodes as number, detections: r.params.detections as number, frame_bytes: r.params.frame_bytes as number,
    max_frames_per_s: (m?.into_rings_per_s ?? null) as number | null, max_delivered_per_s: (m?.delivered_per_s ?? null) as number | null,
    max_detections_per_s: (m?.detections_into_rings_per_s ?? null) as number | null,
    max_engine_cpu: (m?.cpu.process_cpu ?? null) as number | null, max_generator_cpu: (m?.cpu.generator_cpu ?? null) as number | null,
    paced_target_per_s: p.target_frames_per_s as number, paced_delivered_per_s: p.delivered_per_s as number,
    engine_cpu_pct: p.cpu.engine_process_cpu_pct_of_core as number,
    main_thread_cpu_pct: p.cpu.main_thread_cpu === null ? null : round(p.cpu.main_thread_cpu * 100, 2),
    engine_cpu_us_per_frame: round((p.cpu.process_cpu / p.delivered_per_s) * 1e6, 1),
    idle_engine_cpu_pct: (r.idle ? r.idle.cpu.engine_process_cpu_pct_of_core : null) as number | null,
    trackers_cpu_pct: round(p.cpu.trackers_cpu * 100, 2), generator_cpu_pct: round(p.cpu.generator_cpu * 100, 2),
    other_cpu: p.cpu.other_cpu as number | null, rss_mb: p.memory.rss_mb_median as number, rss_kb_per_node: p.memory.rss_kb_per_node as number,
    /** Nodes sweep: (RSS - RSS of the previous cell) / (nodes - nodes of the previous cell). */
    rss_kb_per_added_node: null as number | null,
    p50_ms: lat.p50_ms as number, p99_ms: lat.p99_ms as number, max_ms: lat.max_ms as number, latency_samples: lat.samples as number,
    event_loop_lag_p99_ms: p.event_loop_lag_ms.p99 as number, supervisor_pass_p50_ms: p.supervisor_passes.p50_ms as number,
    setup_s: r.setup.total_s as number, accounting_ok: r.accounting.ok as boolean, violations: r.accounting.violations as string[],
  };
}
/* eslint-enable @typescript-eslint/no-explicit-any */
type CellRow = ReturnType<typeof rowOf>;

interface CellSpec { nodes: number; detections: number; sweep: Sweep }

type FleetArgs = FleetOptions;

/** One runFleet in a fresh process (`run.js fleet`, one cell, not saved): its result. */
function runIsolated(a: FleetArgs, boundS: number): Promise<Record<string, unknown>> {
  const args = [
    'fleet', '--nodes', String(a.nodes), '--fps', String(a.fps), '--duration', String(a.durationS), '--detections', String(a.detections),
    '--heartbeat-ms', String(a.heartbeatMs), '--idle', String(a.idleS ?? 0), '--warmup', String(a.warmupS ?? 2), '--max', String(a.maxS ?? 0),
    '--quiet-wait', '0', '--port-start', String(a.portStart ?? 20000), '--sinks', 'trackers', '--modes', 'default', '--no-save',
  ];
  return new Promise((resolve, reject) => {
    const child = fork(RUN_JS, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const bound = setTimeout(() => child.kill('SIGKILL'), boundS * 1000);
    child.on('exit', (code, sig) => {
      clearTimeout(bound);
      if (code !== 0) {
        const lines = err.trim().split('\n');
        const why = lines.filter((l) => /Error|^bench:/.test(l)).slice(0, 2);
        return reject(new Error(`fleet cell exited with ${sig ?? `code ${code}`}: ${(why.length ? why : lines.slice(-3)).join(' | ')}`));
      }
      try {
        resolve((JSON.parse(out.trim().split('\n').pop() ?? '') as { runs: Array<{ result: Record<string, unknown> }> }).runs[0]!.result);
      } catch {
        reject(new Error(`fleet cell printed no result: ${out.slice(-200)} ${err.slice(-200)}`));
      }
    });
  });
}

export function growthTable(rows: CellRow[]): string {
  const L: string[] = [];
  L.push('| nodes | det/frame | frames/s max (into rings) | delivered/s max | delivered/s paced (target) | engine CPU paced (% of a core) | engine CPU idle | RSS MB | RSS/node KB | ΔRSS/Δnode KB | p50 / p99 ms | other CPU (noise, cores) |');
  L.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    L.push(`| ${fmt(r.nodes)} | ${r.detections} | ${fmt(r.max_frames_per_s)} | ${fmt(r.max_delivered_per_s)} | ${fmt(r.paced_delivered_per_s, 0)} (${fmt(r.paced_target_per_s)}) | ${fmt(r.engine_cpu_pct, 1)}% | ${fmt(r.idle_engine_cpu_pct, 1)}% | ${fmt(r.rss_mb, 0)} | ${r.nodes >= 100 ? fmt(r.rss_kb_per_node, 0) : 'n/a'} | ${fmt(r.rss_kb_per_added_node, 0)} | ${fmt(r.p50_ms, 2)} / ${fmt(r.p99_ms, 2)} | ${fmt(r.other_cpu, 2)} |`);
  }
  return L.join('\n');
}

const options = {
  nodesList: nums([1, 10, 100, 1000], 'node counts of the nodes sweep'),
  detList: nums([1, 10, 50, 200], 'detections per frame of the detections sweep'),
  fixedNodes: num(100, 'node count of the detections sweep', 1),
  fixedDet: num(10, 'detections per frame of the nodes sweep', 1),
  fps: num(2, 'frames/s per node, paced'),
  duration: num(15, 'paced window per cell, seconds'),
  warmup: num(2, 'paced warm-up per cell, seconds'),
  idle: num(3, 'idle window per cell, seconds'),
  max: num(5, 'unpaced window per cell, seconds'),
  heartbeatMs: num(5000, 'heartbeat period per node, ms'),
  quietWait: num(5, 'before each cell, wait up to S s for the machine to be idle'),
  portStart: num(20000, 'first tracker port to provision', 1),
  ...SAVE_OPTION,
};

export async function runGrowth(o: OptValues<typeof options>): Promise<Record<string, unknown>> {
  const started = performance.now();
  const specs: CellSpec[] = [];
  for (const n of o.nodesList) specs.push({ nodes: n, detections: o.fixedDet, sweep: 'nodes' });
  for (const d of o.detList) {
    const same = specs.find((s) => s.nodes === o.fixedNodes && s.detections === d);
    if (same) same.sweep = 'both';
    else specs.push({ nodes: o.fixedNodes, detections: d, sweep: 'detections' });
  }
  const rows: CellRow[] = [];
  const runs: Record<string, unknown>[] = [];
  const quiet: Array<{ cell: string; waited_s: number; busy: number | null }> = [];
  const failures: string[] = [];
  for (const c of specs) {
    const name = `${c.nodes}x${c.detections}`;
    if (o.quietWait > 0) quiet.push({ cell: name, ...(await waitQuiet(o.quietWait)) });
    const a: FleetArgs = {
      nodes: c.nodes, fps: o.fps, durationS: o.duration, detections: c.detections, heartbeatMs: o.heartbeatMs,
      idleS: o.idle, warmupS: o.warmup, maxS: o.max, portStart: o.portStart,
    };
    const t0 = performance.now();
    let r: Record<string, unknown>;
    try {
      r = await runIsolated(a, 600);
    } catch (err) {
      failures.push(`${name}: ${(err as Error).message}`);
      process.stderr.write(`growth ${name.padEnd(9)} FAILED: ${(err as Error).message}\n`);
      continue;
    }
    const row = rowOf(c.sweep, r);
    rows.push(row);
    runs.push(r);
    process.stderr.write(`growth ${fmt(c.nodes).padStart(5)} nodes x ${String(c.detections).padStart(3)} det: max ${fmt(row.max_frames_per_s).padStart(9)} frames/s into rings, ${fmt(row.max_delivered_per_s).padStart(9)} delivered; paced ${fmt(row.paced_delivered_per_s)}/s, engine CPU ${fmt(row.engine_cpu_pct, 1)}% (idle ${fmt(row.idle_engine_cpu_pct, 1)}%), RSS ${fmt(row.rss_mb)} MB (${fmt(row.rss_kb_per_node)} KB/node), p50 ${fmt(row.p50_ms, 2)} p99 ${fmt(row.p99_ms, 2)} ms${(row.other_cpu ?? 0) > 0.2 ? `, other CPU ${fmt(row.other_cpu, 2)} (noisy)` : ''}${row.accounting_ok ? '' : `, VIOLATIONS ${row.violations.join('; ')}`} [${fmt((performance.now() - t0) / 1000, 0)} s]\n`);
  }
  const byNodes = rows.filter((r) => r.sweep !== 'detections').sort((a, b) => a.nodes - b.nodes);
  for (let i = 1; i < byNodes.length; i++) {
    const a = byNodes[i - 1]!;
    const b = byNodes[i]!;
    if (b.nodes > a.nodes) b.rss_kb_per_added_node = round(((b.rss_mb - a.rss_mb) * 1024) / (b.nodes - a.nodes), 1);
  }
  const byDet = rows.filter((r) => r.sweep !== 'nodes').sort((a, b) => a.detections - b.detections);
  const ordered = [...byNodes, ...byDet.filter((r) => r.sweep === 'detections')];
  const table = growthTable(ordered);
  const violations = [...failures, ...rows.flatMap((r) => r.violations.map((v) => `${r.nodes}x${r.detections}: ${v}`))];
  return {
    ...header('growth'),
    params: {
      nodes_list: o.nodesList, det_list: o.detList, fixed_nodes: o.fixedNodes, fixed_det: o.fixedDet, fps: o.fps, cell_s: o.duration,
      warmup_s: o.warmup, idle_s: o.idle, max_s: o.max, heartbeat_ms: o.heartbeatMs, isolate: true,
      tracker: "sh -c 'exec cat >/dev/null' (tracker.input stdin), one per node",
      what: {
        max: 'unpaced fleet generator, same engine (sink trackers): frames/s written into rings and delivered to the trackers\' input',
        paced: `each node ${o.fps} frames/s, writes spread evenly, heartbeats every ${o.heartbeatMs} ms`,
        latency: 'send -> the engine handing the frame to the tracker\'s stdin pipe (EngineProbe.onTrackerWrite)',
        rss_kb_per_node: '(median RSS in the paced window - RSS of the started engine before any node) / nodes (noise below 100 nodes: n/a in the table)',
        max_1000_nodes: 'with many nodes pushing at once the unpaced phase can stall for seconds (see runs[].max.per_second): one M_DATA_BATCH per main-thread turn holds every read (up to limits.max_inflight_bytes per connection) and the shard publishes nothing until it has framed all of it',
        rss_kb_per_added_node: 'nodes sweep: RSS difference to the previous cell / nodes added',
        rings: 'each node has a 4 MiB ring (SharedArrayBuffer); pages become resident as it fills, all of it once it wrapped (see runs[].paced.memory.rings_fully_resident_after_min): long-run RSS grows by ring.size_bytes per node',
      },
      targets_at_1000_nodes: FLEET_TARGETS,
    },
    duration_s: round((performance.now() - started) / 1000, 1),
    table_md: table,
    by_nodes: byNodes,
    by_detections: byDet,
    accounting: { ok: violations.length === 0, violations },
    quiet_waits: quiet,
    runs,
  };
}

export const workload = defineWorkload({
  about: 'cost by node count and by detections per frame (fleet cells)',
  options,
  run: async (o) => {
    boundRun(30 * 60);
    const r = await runGrowth(o);
    const table = r.table_md as string;
    if (!o.noSave) writeResultFile('growth-latest.md', `${table}\n`);
    const acc = r.accounting as { ok: boolean; violations: string[] };
    report('growth', r, `\n${table}\n\naccounting: ${acc.ok ? 'OK in every cell' : `VIOLATIONS: ${acc.violations.slice(0, 5).join('; ')}`}; total ${fmt(r.duration_s as number, 0)} s`, !o.noSave);
  },
});
