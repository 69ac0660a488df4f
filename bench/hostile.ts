// Workload `hostile`: legitimate binary nodes against the CLI engine (a subprocess,
// as deployed), a baseline, then an attack mix on every port; delivered share,
// send->ack latency, RSS, /healthz and survival. Details: docs/benchmarks.md.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { HostileChild, ATTACKS, ATTACK_SIZES, type Attack, type AttackOptions, type AttackResult, type LegitOptions, type LegitResult, type PhaseStats } from './lib/hostile-load.js';
import { ENGINE_CLI as CLI } from './lib/engine-api.js';
import { sleep, openFds, procStatus } from './lib/probes.js';
import { defineWorkload, num, str, SAVE_OPTION, type OptValues } from './lib/options.js';
import { EngineLog } from './lib/engine-log.js';
import { boundRun, header, report, summaryLine } from './lib/results.js';
import { round, stats } from './lib/stats.js';
import { byLabel, httpGet, metricSum, parseMetrics, scrapeMetrics } from './lib/metrics.js';

export { parseMetrics };

const TOKEN = 'hostile-bench-secret';

/** Goals under hostile input. */
export const HOSTILE_TARGETS = { delivered_pct: 100, healthz_max_ms: 100 };

// ---- Pure helpers ----

/** The engine's accounting identity from its /metrics: received = in rings + in sink + delivered + dropped. */
export function engineBooks(m: Map<string, number>) {
  const received = metricSum(m, 'radar_ingest_frames_received_total');
  const inRings = metricSum(m, 'radar_ingest_frames_in_rings');
  const inSink = metricSum(m, 'radar_ingest_frames_in_sink');
  const delivered = metricSum(m, 'radar_ingest_frames_delivered_total');
  const droppedTotal = metricSum(m, 'radar_ingest_frames_dropped_total');
  return {
    received, in_rings: inRings, in_sink: inSink, delivered, dropped_total: droppedTotal,
    dropped: byLabel(m, 'radar_ingest_frames_dropped_total', 'reason'),
    balanced: received === inRings + inSink + delivered + droppedTotal,
  };
}

// ---- I/O helpers ----

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

function procStatusKb(pid: number): { rss: number; hwm: number } | null {
  const st = procStatus(pid);
  return st.VmRSS === undefined ? null : { rss: st.VmRSS / 1024, hwm: (st.VmHWM ?? NaN) / 1024 };
}

// ---- The run ----

type Phase = 'setup' | 'baseline' | 'attack' | 'settle' | 'end';

async function runHostile(o: OptValues<typeof options>): Promise<Record<string, unknown>> {
  const started = performance.now();
  const head = header('hostile');
  const sizes = ATTACK_SIZES;
  const attacks = parseAttacks(o.attacks);
  const dir = mkdtempSync(join(os.tmpdir(), 'radar-hostile-'));
  const nodePort = await freePort();
  const httpPort = await freePort();
  const config = {
    sink: 'discard',
    output_dir: join(dir, 'output'),
    tcp_server: { enabled: true, host: '127.0.0.1', port: nodePort, token: TOKEN },
    http: { host: '127.0.0.1', port: httpPort },
    agents: { key_file: join(dir, 'agents-key.pem') },
    log: { level: 'info' },
  };
  const cfgFile = join(dir, 'config.yaml');
  writeFileSync(cfgFile, `${JSON.stringify(config, null, 2)}\n`); // JSON is YAML

  let phase = 'setup' as Phase;
  let phaseAt = performance.now();
  const setPhase = (p: Phase): void => {
    phase = p;
    phaseAt = performance.now();
  };
  const env = { ...process.env };
  delete env.RADAR_INGEST_TOKEN; // must not override the bench token
  const argv = [process.execPath, CLI, '--config', cfgFile];
  // sh sets the descriptor limit, then exec: the engine keeps the shell's pid.
  const engine: ChildProcess = o.engineNofile > 0
    ? spawn('sh', ['-c', 'ulimit -n "$0" 2>/dev/null; exec "$@"', String(o.engineNofile), ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env, cwd: dir })
    : spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env, cwd: dir });
  const pid = engine.pid!;
  let engineFdLimit: string | null = null;
  const logs = new EngineLog(engine.stdout!, 50);
  let stderrTail = '';
  engine.stderr!.on('data', (d: Buffer) => {
    stderrTail = (stderrTail + d.toString()).slice(-4000);
  });
  let exit: { code: number | null; signal: string | null; phase: Phase; at_s: number } | null = null;
  const exited = new Promise<void>((resolve) => engine.once('exit', (code, signal) => {
    exit = { code, signal, phase, at_s: round((performance.now() - phaseAt) / 1000, 2) };
    resolve();
  }));
  const alive = (): boolean => exit === null;

  // RSS and descriptors every 250 ms; the cap protects the shared machine.
  let killedAtCap = false;
  const mem = { peak_rss_kb: 0, hwm_kb: 0, peak_fds: 0, baseline_peak_rss_kb: 0, attack_peak_rss_kb: 0, rss_at_attack_start_kb: 0, rss_end_kb: 0 };
  const rssSeries: Array<[number, number]> = [];
  const memTimer = setInterval(() => {
    if (!alive()) return;
    const s = procStatusKb(pid);
    if (!s || !Number.isFinite(s.rss) || !Number.isFinite(s.hwm)) return; // gone, or a zombie
    mem.peak_rss_kb = Math.max(mem.peak_rss_kb, s.rss);
    mem.hwm_kb = Math.max(mem.hwm_kb, s.hwm);
    if (phase === 'baseline') mem.baseline_peak_rss_kb = Math.max(mem.baseline_peak_rss_kb, s.rss);
    if (phase === 'attack') mem.attack_peak_rss_kb = Math.max(mem.attack_peak_rss_kb, s.rss);
    mem.rss_end_kb = s.rss;
    const f = openFds(pid);
    if (f !== null) mem.peak_fds = Math.max(mem.peak_fds, f);
    rssSeries.push([round((performance.now() - started) / 1000, 1), Math.round(s.rss / 1024)]);
    if (s.rss > o.rssCapMb * 1024 && !killedAtCap) {
      killedAtCap = true;
      process.stderr.write(`hostile: engine RSS ${Math.round(s.rss / 1024)} MB over the cap of ${o.rssCapMb} MB: SIGKILL\n`);
      engine.kill('SIGKILL');
    }
  }, 250);

  // /healthz every 75 ms, one request at a time, each on a new connection.
  const probe: Record<'baseline' | 'attack' | 'settle', { lat: number[]; failures: Record<string, number> }> = {
    baseline: { lat: [], failures: {} }, attack: { lat: [], failures: {} }, settle: { lat: [], failures: {} },
  };
  let probing = true;
  const probeLoop = (async (): Promise<void> => {
    while (probing) {
      const ph = phase;
      const t0 = performance.now();
      if (ph === 'baseline' || ph === 'attack' || ph === 'settle') {
        const r = await httpGet(httpPort, '/healthz', 2000);
        const rec = probe[ph];
        if ('status' in r && r.status === 200) rec.lat.push(r.ms);
        else {
          const k = 'status' in r ? `status_${r.status}` : r.error;
          rec.failures[k] = (rec.failures[k] ?? 0) + 1;
        }
      }
      await sleep(Math.max(1, 75 - (performance.now() - t0)));
    }
  })();

  let legit: HostileChild | null = null;
  let attack: HostileChild | null = null;
  let legitR: LegitResult | null = null;
  let attackR: AttackResult | null = null;
  const problems: string[] = [];
  let metricsEnd: Map<string, number> | null = null;
  let metricsBaseline: Map<string, number> | null = null;
  let booksStable = false;
  let booksWaitS: number | null = null;
  let stop: { sent: boolean; exit_code: number | null; signal: string | null; stop_s: number | null } = { sent: false, exit_code: null, signal: null, stop_s: null };
  const maxS = o.baseline + o.duration + 180;
  try {
    // ---- setup ----
    const upBy = performance.now() + 20000;
    for (;;) {
      if (!alive()) throw new Error(`engine exited during start-up: ${stderrTail || logs.summary().last_problems.join(' | ')}`);
      const r = await httpGet(httpPort, '/healthz', 1000);
      if ('status' in r && r.status === 200) break;
      if (performance.now() > upBy) throw new Error('engine not healthy within 20 s');
      await sleep(100);
    }
    try {
      engineFdLimit = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.slice(1, 3).join('/') ?? null;
    } catch {
      engineFdLimit = null;
    }
    const legitOpts: LegitOptions = { host: '127.0.0.1', port: nodePort, token: TOKEN, nodes: o.nodes, fps: o.fps, detections: o.detections, maxSeconds: maxS };
    legit = await HostileChild.start({ t: 'init', role: 'legit', opts: legitOpts }, 30000);
    const sources = Array.from({ length: 10 }, (_, i) => `127.0.0.${i + 2}`);
    const attackOpts: AttackOptions = { host: '127.0.0.1', nodePort, httpPort, token: TOKEN, attacks, sources, ...sizes, maxSeconds: maxS };
    attack = await HostileChild.start({ t: 'init', role: 'attack', opts: attackOpts }, 30000);

    // ---- baseline ----
    setPhase('baseline');
    legit.send({ t: 'phase', phase: 0 });
    await sleep(o.baseline * 1000);
    metricsBaseline = await scrapeMetrics(httpPort, 5000).then((r) => r.m, () => null);
    mem.rss_at_attack_start_kb = procStatusKb(pid)?.rss ?? 0;

    // ---- attack ----
    setPhase('attack');
    legit.send({ t: 'phase', phase: 1 });
    const atk = attack.finish<AttackResult>({ t: 'start', durationS: o.duration }, o.duration * 1000 + 30000).then(
      (r) => { attackR = r; },
      (e: Error) => { problems.push(`attack load: ${e.message}`); },
    );
    await sleep(o.duration * 1000);
    attack.send({ t: 'stop', settleMs: 0 });
    await atk;
    attack = null;

    // ---- settle: the legitimate nodes stop and get their last frames settled ----
    setPhase('settle');
    legit.send({ t: 'phase', phase: 2 });
    legitR = await legit.finish<LegitResult>({ t: 'stop', settleMs: 15000 }, 30000).catch((e: Error) => {
      problems.push(`legit load: ${e.message}`);
      return null;
    });
    legit = null;
    // The books are read once they stop moving (rings and sink empty, the same counts
    // twice 250 ms apart; bounded): a backlog inside the engine is still being counted.
    const t0 = performance.now();
    let last: ReturnType<typeof engineBooks> | null = null;
    while (alive() && performance.now() - t0 < 20000) {
      const m = await scrapeMetrics(httpPort, 5000).then((r) => r.m, () => null);
      if (m) {
        const b = engineBooks(m);
        metricsEnd = m;
        if (last && b.in_rings === 0 && b.in_sink === 0 && b.received === last.received && b.dropped_total === last.dropped_total) {
          booksStable = true;
          break;
        }
        last = b;
      }
      await sleep(250);
    }
    booksWaitS = round((performance.now() - t0) / 1000, 2);
    setPhase('end');
  } catch (err) {
    problems.push((err as Error).message);
  } finally {
    probing = false;
    await probeLoop;
    clearInterval(memTimer);
    legit?.kill();
    attack?.kill();
    const wasAlive = alive();
    if (wasAlive) {
      const t0 = performance.now();
      stop.sent = true;
      engine.kill('SIGTERM');
      const bound = setTimeout(() => engine.kill('SIGKILL'), 45000);
      await exited;
      clearTimeout(bound);
      stop = { sent: true, exit_code: exit!.code, signal: exit!.signal, stop_s: round((performance.now() - t0) / 1000, 2) };
    } else {
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }

  // ---- results ----
  const exitInfo = exit as { code: number | null; signal: string | null; phase: Phase; at_s: number } | null;
  const diedDuringRun = !stop.sent;
  const survived = !diedDuringRun && !killedAtCap && stop.exit_code === 0;
  const L = legitR as LegitResult | null;
  const latB = stats(L?.phases.baseline.latencies ?? []);
  const latA = stats(L?.phases.attack.latencies ?? []);
  const allHealth = stats([...probe.baseline.lat, ...probe.attack.lat, ...probe.settle.lat]);
  const failures = (p: { failures: Record<string, number> }): number => Object.values(p.failures).reduce((a, b) => a + b, 0);
  const healthFailures = failures(probe.baseline) + failures(probe.attack) + failures(probe.settle);
  const books = metricsEnd ? engineBooks(metricsEnd) : null;
  const legitBooks = L ? { sent: L.sent, delivered: L.delivered, refused: L.refused, unsettled: L.unsettled, balanced: L.sent === L.delivered + L.refused + L.unsettled } : null;
  const deliveredPct = L && L.sent > 0 ? round((100 * L.delivered) / L.sent, 3) : null;
  const p99Ratio = Number.isFinite(latA.p99_ms) && latB.p99_ms > 0 ? round(latA.p99_ms / latB.p99_ms, 2) : null;
  const byPhase = <T>(f: (p: PhaseStats) => T) => (L ? { baseline: f(L.phases.baseline), attack: f(L.phases.attack), after: f(L.phases.after) } : null);
  /** The engine's own non-zero series, without histogram buckets and per-ring gauges. */
  const interesting = (m: Map<string, number> | null): Record<string, number> | null => (m ? Object.fromEntries([...m].filter(([k, v]) =>
    v !== 0 && k.startsWith('radar_ingest_') && !k.includes('_bucket{') && !k.startsWith('radar_ingest_ring_'))) : null);
  return {
    ...head,
    params: {
      baseline_s: o.baseline, attack_s: o.duration, nodes: o.nodes, fps: o.fps, detections: o.detections,
      legit: 'binary protocol, shared token, ids legit-0..N-1; delivered = acked and not refused; latency = first write -> ack',
      attacks, sizes, rss_cap_mb: o.rssCapMb, healthz_every_ms: 75, engine_nofile: o.engineNofile || 'inherited',
      sources: { legit_and_probe: '127.0.0.1', attackers: '127.0.0.2-11 (slow-loris spread over all, the others from 127.0.0.2)' },
      engine: { cli: 'dist/src/cli.js', config },
    },
    targets: {
      delivered: { what: 'legitimate frames delivered / sent', goal_pct: HOSTILE_TARGETS.delivered_pct, value_pct: deliveredPct, pass: deliveredPct === 100 },
      healthz: { what: '/healthz latency max over the run, and no failures', goal_max_ms: HOSTILE_TARGETS.healthz_max_ms, value_max_ms: allHealth.max_ms, failures: healthFailures, pass: allHealth.max_ms < HOSTILE_TARGETS.healthz_max_ms && healthFailures === 0 },
      survived: { what: 'engine alive at the end and exit code 0 after SIGTERM', pass: survived },
      accounting: { what: 'engine books balance; legitimate sent = delivered + refused + unsettled', pass: books?.balanced === true && legitBooks?.balanced === true },
    },
    summary: {
      delivered_pct: deliveredPct,
      legit_p99_ms: { baseline: latB.p99_ms, attack: latA.p99_ms, ratio_attack_over_baseline: p99Ratio },
      peak_rss_mb: round(Math.max(mem.peak_rss_kb, mem.hwm_kb) / 1024, 0),
      healthz_max_ms: allHealth.max_ms,
      healthz_failures: healthFailures,
      survived,
    },
    legit: L ? {
      ...legitBooks,
      phases: byPhase((p) => ({ sent: p.sent, delivered: p.delivered, refused: p.refused })),
      latency: byPhase((p) => stats(p.latencies)),
      nodes_complete: L.nodesComplete, closed_by_host: L.closedByHost, reconnects: L.reconnects, connect_failures: L.connectFailures,
      host_errors: L.hostErrors, errors: L.errors,
    } : null,
    healthz: Object.fromEntries(Object.entries(probe).map(([ph, p]) => [ph, { ...stats(p.lat), failures: p.failures }])),
    memory: {
      peak_rss_mb: round(mem.peak_rss_kb / 1024, 1), vm_hwm_mb: round(mem.hwm_kb / 1024, 1),
      baseline_peak_rss_mb: round(mem.baseline_peak_rss_kb / 1024, 1), attack_peak_rss_mb: round(mem.attack_peak_rss_kb / 1024, 1),
      rss_at_attack_start_mb: round(mem.rss_at_attack_start_kb / 1024, 1), rss_last_mb: round(mem.rss_end_kb / 1024, 1),
      peak_open_fds: mem.peak_fds, fd_limit_soft_hard_at_start: engineFdLimit, killed_at_rss_cap: killedAtCap,
      /** [s since start, RSS MB], one a second. */
      rss_per_s: rssSeries.filter((_, i) => i % 4 === 0),
    },
    engine: {
      survived, died_during_run: diedDuringRun, killed_at_rss_cap: killedAtCap, sigterm: stop, stderr_tail: stderrTail.slice(-1500), log: logs.summary(),
      exit: exitInfo ? { code: exitInfo.code, signal: exitInfo.signal, phase: exitInfo.phase, s_into_phase: exitInfo.at_s } : null,
    },
    accounting: books ? { ...books, stable: booksStable, waited_s: booksWaitS, legit: legitBooks } : { engine: 'no /metrics at the end (engine gone)', legit: legitBooks },
    metrics_at_attack_start: interesting(metricsBaseline),
    metrics_end: interesting(metricsEnd),
    attacks: (attackR as AttackResult | null)?.attacks ?? null,
    problems: [...problems, ...((attackR as AttackResult | null)?.errors ?? [])],
    duration_s: round((performance.now() - started) / 1000, 1),
  };
}

export function parseAttacks(v: string | undefined): Attack[] {
  if (v === undefined || v === 'all') return [...ATTACKS];
  const out = v.split(',').filter((a) => a !== '');
  for (const a of out) if (!(ATTACKS as readonly string[]).includes(a)) throw new Error(`--attacks: unknown attack ${a} (${ATTACKS.join(', ')})`);
  return out as Attack[];
}

const options = {
  baseline: num(20, 'baseline phase (legitimate load only), seconds'),
  duration: num(60, 'attack phase, seconds'),
  nodes: num(64, 'legitimate binary nodes', 1),
  fps: num(20, 'frames/s per legitimate node'),
  detections: num(10, 'detections per legitimate frame', 1),
  attacks: str('all', `attack mix: all or a list of ${ATTACKS.join(',')}`),
  rssCapMb: num(4096, 'the engine is killed past this RSS (counted as not surviving), MB'),
  engineNofile: num(1024, 'ulimit -n for the engine (0 = inherit)'),
  ...SAVE_OPTION,
};

export const workload = defineWorkload({
  about: 'legitimate binary nodes at 20 Hz against the CLI engine, a baseline, then an attack mix on every port',
  options,
  run: async (o) => {
    boundRun(o.baseline + o.duration + 300);
    const res = await runHostile(o);
    report('hostile', res, summaryLine('hostile', res), !o.noSave);
  },
});
