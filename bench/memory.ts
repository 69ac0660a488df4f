// Workload `memory`: proportional set size (PSS, /proc/<pid>/smaps_rollup) of the engine
// and of every built-in tracker process, for a fleet of N nodes x fps with one
// reference tracker each, sampled while the fleet streams. PSS counts a page shared by
// k processes as 1/k in each, so the sums add up to what the machine spends; RSS sums
// count every shared page once per process and overstate 1,000 Node processes by GiBs.
// Each cell runs in a fresh process (the engine of one cell must not weigh on the next).
import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Engine } from './lib/engine-api.js';
import { FleetClient } from './lib/loadgen-fleet.js';
import { sleep, waitQuiet, fdLimit, openFds } from './lib/probes.js';
import { benchConfig, deliveredAll, sinkViolations, trackerPids, untilUp } from './lib/engine-run.js';
import { defineWorkload, num, nums, SAVE_OPTION, type OptValues } from './lib/options.js';
import { boundRun, header, report, writeResultFile } from './lib/results.js';
import { fmt, round } from './lib/stats.js';

const TOKEN = 'memory-secret';
const RUN_JS = fileURLToPath(new URL('./run.js', import.meta.url));

/** Pss, Private (clean + dirty) and Rss of one process from its smaps_rollup text, KiB. */
function parseRollup(t: string): { pss: number; priv: number; rss: number } {
  const g = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(t)?.[1] ?? 0);
  return { pss: g('Pss'), priv: g('Private_Clean') + g('Private_Dirty'), rss: g('Rss') };
}

/** Pss and Private (clean + dirty) of one process, KiB; null when it is gone. */
export function smapsRollup(pid: number | 'self'): { pss: number; priv: number; rss: number } | null {
  try {
    return parseRollup(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  } catch {
    return null;
  }
}

/** The sweep below, as the source of a worker thread (an ES module from a data: URL). */
const SWEEP_WORKER = `
import { readFileSync } from 'node:fs';
import { workerData, parentPort } from 'node:worker_threads';
const out = { pss_kb: 0, priv_kb: 0, rss_kb: 0, alive: 0 };
const g = (t, k) => Number(new RegExp('^' + k + ':\\\\s+(\\\\d+)', 'm').exec(t)?.[1] ?? 0);
for (const p of workerData) {
  let t;
  try { t = readFileSync('/proc/' + p + '/smaps_rollup', 'utf8'); } catch { continue; }
  out.pss_kb += g(t, 'Pss'); out.priv_kb += g(t, 'Private_Clean') + g(t, 'Private_Dirty'); out.rss_kb += g(t, 'Rss'); out.alive++;
}
parentPort.postMessage(out);
`;

/**
 * The sum over `pids`, read on a thread of its own: the kernel walks every page of a
 * process to build its smaps_rollup, and with 1,000 busy processes on 2 cores a read
 * takes ~150 ms, so a sweep on the engine's thread stops it for minutes (its rings fill:
 * the sampler is measured, not the fleet), and reads queued on a saturated event loop
 * never finish.
 */
function sumPss(pids: number[]): Promise<{ pss_kb: number; priv_kb: number; rss_kb: number; alive: number }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(SWEEP_WORKER)}`), { workerData: pids });
    w.once('message', (m: { pss_kb: number; priv_kb: number; rss_kb: number; alive: number }) => {
      resolve(m);
      void w.terminate();
    });
    w.once('error', reject);
  });
}

interface CellOpts { nodes: number; fps: number; durationS: number; detections: number; heartbeatMs: number; portStart: number; sampleS: number; trackerNice: number }

/** One cell: engine in this process, trackers its children, the generator a child of its own. */
export async function runCell(o: CellOpts): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(os.tmpdir(), 'radar-memory-'));
  const portEnd = Math.min(65535, o.portStart + Math.max(1999, o.nodes - 1));
  const selfBefore = smapsRollup('self')!;
  const engine = new Engine({
    config: benchConfig(TOKEN, {
      sink: 'trackers', output_dir: join(dir, 'output'),
      tracker: { command: 'reference', stop_grace_ms: 5000 },
      // 1,000 Node processes starting on a shared 2-core machine: a tracker may take well over
      // the default 6 s to listen; it is retried instead of counted as failed.
      // Nodes connect first and stream only once every tracker is up: their connections
      // must not idle out (nor their trackers stop for the outage) while the rest start.
      tcp_connect_retries: 600, tcp_retry_delay_sec: 0.5, retry: { extended_outage_sec: 3600 }, limits: { idle_timeout_ms: 0 },
      shutdown: { deadline_ms: 120000 }, agents: { key_file: join(dir, 'agents-key.pem') },
    }, { auto_provision: true, auto_provision_port_start: o.portStart, auto_provision_port_end: portEnd }),
  });
  let client: FleetClient | null = null;
  try {
    await engine.start();
    const selfStarted = smapsRollup('self')!;
    const t0 = performance.now();
    client = await FleetClient.start({
      host: '127.0.0.1', port: engine.tcpAddress!.port, nodes: o.nodes, token: TOKEN, detections: o.detections, maxSeconds: o.durationS + 1500,
    }, 600000);
    await untilUp(engine, o.nodes, { drainOnly: false, handedOn: o.nodes, timeoutS: 900 });
    const setupS = (performance.now() - t0) / 1000;
    const pids = trackerPids(engine);
    // 1,000 tracker processes at 2 Hz want more CPU than a 2-core machine has; at equal
    // priority the engine (one process among them, with this sampler) gets a thousandth of
    // it, falls behind its nodes and never reaches a sample. Niced trackers lag instead,
    // and what they have not read yet waits in the rings, where the sampler counts it.
    if (o.trackerNice > 0) for (const pid of pids) { try { os.setPriority(pid, o.trackerNice); } catch { /* gone */ } }
    const fds = openFds();
    client.go({ fps: o.fps, heartbeatMs: o.heartbeatMs });
    const samples: Array<{ t_s: number; engine_pss_mb: number; trackers_pss_mb: number; total_mb: number; ring_touched_mb: number }> = [];
    const tGo = performance.now();
    const ringTouched = (): number => {
      let s = 0;
      for (const n of engine.nodes.byRing) s += Math.ceil(n.reader.touchedBytes / 4096) * 4096;
      return s;
    };
    // The window's end figures are its last sample's (a sweep over 1,000 processes takes minutes).
    let e = smapsRollup('self')!;
    let tr = { pss_kb: 0, priv_kb: 0, rss_kb: 0, alive: 0 };
    while (performance.now() - tGo < o.durationS * 1000) {
      await sleep(o.sampleS * 1000);
      e = smapsRollup('self')!;
      tr = await sumPss(pids);
      samples.push({
        t_s: round((performance.now() - tGo) / 1000, 0), engine_pss_mb: round(e.pss / 1024, 1), trackers_pss_mb: round(tr.pss_kb / 1024, 1),
        total_mb: round((e.pss + tr.pss_kb) / 1024, 1), ring_touched_mb: round(ringTouched() / 2 ** 20, 2),
      });
      process.stderr.write(`memory ${o.nodes} nodes t=${samples.at(-1)!.t_s}s engine ${samples.at(-1)!.engine_pss_mb} MiB trackers ${samples.at(-1)!.trackers_pss_mb} MiB rings touched ${samples.at(-1)!.ring_touched_mb} MiB\n`);
    }
    const runS = (performance.now() - tGo) / 1000;
    const touched = [...engine.nodes.byRing].map((n) => n.reader.touchedBytes);
    const fin = await client.stop();
    client = null;
    const end = await deliveredAll(engine);
    const bytesPerRing = fin.bytes / o.nodes;
    await engine.stop();
    return {
      nodes: o.nodes, fps: o.fps, detections: o.detections, run_s: round(runS, 0), setup_s: round(setupS, 1),
      ring_size_bytes: engine.config.ring.size_bytes,
      bytes_per_ring: Math.round(bytesPerRing), frames_sent: fin.sent,
      ring_touched_max_bytes: Math.max(0, ...touched), ring_touched_sum_mb: round(touched.reduce((a, b) => a + Math.ceil(b / 4096) * 4096, 0) / 2 ** 20, 2),
      engine_pss_mb: round(e.pss / 1024, 1), engine_priv_mb: round(e.priv / 1024, 1), engine_rss_mb: round(e.rss / 1024, 1),
      engine_pss_before_start_mb: round(selfBefore.pss / 1024, 1), engine_pss_started_mb: round(selfStarted.pss / 1024, 1),
      trackers: tr.alive, trackers_pss_mb: round(tr.pss_kb / 1024, 1), trackers_priv_mb: round(tr.priv_kb / 1024, 1), trackers_rss_mb: round(tr.rss_kb / 1024, 1),
      tracker_pss_mb_each: round(tr.pss_kb / 1024 / Math.max(1, tr.alive), 2),
      total_pss_mb: round((e.pss + tr.pss_kb) / 1024, 1), total_pss_mb_per_node: round((e.pss + tr.pss_kb) / 1024 / o.nodes, 2),
      fds_open: fds, fd_limit: fdLimit(),
      accounting: { violations: sinkViolations(fin.sent, end, false) },
      samples,
    };
  } finally {
    if (client) await client.stop().catch(() => undefined);
    await engine.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

function runIsolated(args: string[], boundS: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const child = fork(RUN_JS, ['memory', ...args, '--no-save'], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const bound = setTimeout(() => child.kill('SIGKILL'), boundS * 1000);
    child.on('exit', (code, sig) => {
      clearTimeout(bound);
      if (code !== 0) return reject(new Error(`memory cell exited with ${sig ?? `code ${code}`}`));
      try {
        resolve((JSON.parse(out.trim().split('\n').pop() ?? '') as { cells: Record<string, unknown>[] }).cells[0]!);
      } catch {
        reject(new Error(`memory cell printed no result: ${out.slice(-200)}`));
      }
    });
  });
}

export function memoryTable(cells: Record<string, number>[]): string {
  const L = [
    '| nodes | ran s | bytes each ring saw | ring touched max (KiB) | engine PSS MiB | trackers PSS MiB (each) | trackers private MiB (each) | total PSS MiB | total PSS per node MiB |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const c of cells) {
    const each = (mb: number): string => fmt(mb / Math.max(1, c.trackers!), 2);
    L.push(`| ${fmt(c.nodes)} | ${c.run_s} | ${fmt(c.bytes_per_ring)} | ${fmt(c.ring_touched_max_bytes! / 1024, 0)} | ${fmt(c.engine_pss_mb, 0)} | ${fmt(c.trackers_pss_mb, 0)} (${each(c.trackers_pss_mb!)}) | ${fmt(c.trackers_priv_mb, 0)} (${each(c.trackers_priv_mb!)}) | ${fmt(c.total_pss_mb, 0)} | ${fmt(c.total_pss_mb_per_node, 2)} |`);
  }
  return L.join('\n');
}

const options = {
  nodesList: nums([1, 10, 100, 1000], 'node counts, one cell each'),
  fps: num(2, 'frames/s per node'),
  duration: num(180, 'streaming window per cell, seconds (PSS read at its end)'),
  detections: num(10, 'detections per frame', 1),
  heartbeatMs: num(5000, 'heartbeat period per node, ms'),
  sample: num(30, 'PSS sample period during the window, seconds', 1),
  portStart: num(20000, 'first tracker port to provision', 1),
  trackerNice: num(0, 'niceness given to every tracker process once all are up (0 = as started)'),
  quietWait: num(5, 'before each cell, wait up to S s for the machine to be idle'),
  ...SAVE_OPTION,
};

async function runMemory(o: OptValues<typeof options>): Promise<Record<string, unknown>> {
  const started = performance.now();
  const cells: Record<string, unknown>[] = [];
  const failures: string[] = [];
  if (o.nodesList.length === 1) {
    cells.push(await runCell({ nodes: o.nodesList[0]!, fps: o.fps, durationS: o.duration, detections: o.detections, heartbeatMs: o.heartbeatMs, portStart: o.portStart, sampleS: o.sample, trackerNice: o.trackerNice }));
  } else {
    for (const n of o.nodesList) {
      if (o.quietWait > 0) await waitQuiet(o.quietWait);
      const args = ['--nodes-list', String(n), '--fps', String(o.fps), '--duration', String(o.duration), '--detections', String(o.detections),
        '--heartbeat-ms', String(o.heartbeatMs), '--sample', String(o.sample), '--port-start', String(o.portStart), '--tracker-nice', String(o.trackerNice)];
      try {
        cells.push(await runIsolated(args, o.duration + 1500));
      } catch (err) {
        failures.push(`${n}: ${(err as Error).message}`);
      }
    }
  }
  const table = memoryTable(cells as Record<string, number>[]);
  return {
    ...header('memory'),
    params: {
      nodes_list: o.nodesList, fps: o.fps, duration_s: o.duration, detections: o.detections, heartbeat_ms: o.heartbeatMs, tracker_nice: o.trackerNice,
      tracker: 'built-in reference tracker (tracker.command: reference), one Node process per node, fed over TCP',
      what: 'PSS from /proc/<pid>/smaps_rollup at the end of the streaming window: the engine (this process, with the bench harness) and the sum over every tracker process',
    },
    duration_s: round((performance.now() - started) / 1000, 0),
    table_md: table,
    failures,
    cells,
  };
}

export const workload = defineWorkload({
  about: 'PSS of the engine and the built-in trackers by node count (N nodes x fps, one reference tracker each)',
  options,
  run: async (o) => {
    boundRun(o.nodesList.length * (o.duration + 1500));
    const r = await runMemory(o);
    if (!o.noSave && o.nodesList.length > 1) writeResultFile('memory-latest.md', `${r.table_md as string}\n`);
    report('memory', r, `\n${r.table_md as string}\n${(r.failures as string[]).length ? `failures: ${(r.failures as string[]).join('; ')}` : ''}`, !o.noSave);
  },
});
