// Workload `cluster`: three engine processes on this machine behind HAProxy, one
// redis-server, binary nodes that keep unacked frames and resume after a reconnect
// (bench/lib/resuming-node.ts), every tracker a stand-in that appends its input to a
// file. One host is killed (-9) and, later, another drained (SIGTERM), each started
// again. Reported: acked frames no tracker received (goal 0), frames delivered twice,
// the time a node waits for acks again after losing its host (kill / drain), Redis
// commands per second, and the engines' CPU per delivered frame against one host
// without Redis in the same run, and against a control: the same three hosts behind the
// same balancer without a `cluster` section (no Redis), which separates the cost of
// splitting the load over three processes from the cost of coordinating them. With
// --reps the three steady cells are repeated, interleaved (medians reported); with
// --cpu-prof one fleet host is profiled and its steady window broken down.
// The fleet is the tests' fixture (test/cluster-fixture.ts).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Fleet, FLEET_TOKEN, fleetSkip, type FleetHost } from '../test/cluster-fixture.js';
import { NodeFleet } from './lib/resuming-node.js';
import { TS0 } from './lib/frames.js';
import { pidStat, sleep } from './lib/probes.js';
import { median, percentiles, round } from './lib/stats.js';
import { breakdownDir } from './lib/cpu-profile.js';
import { defineWorkload, flag, num, SAVE_OPTION } from './lib/options.js';
import { boundRun, header, report } from './lib/results.js';

const OPTIONS = {
  nodes: num(300, 'nodes', 1),
  fps: num(10, 'frames per second per node', 0.1),
  duration: num(60, 'seconds of load on the fleet (the kill at 30 %, the drain at 60 %)', 10),
  baseline: num(20, 'seconds of the same load on one host without Redis (0: skip)', 0),
  control: num(20, 'seconds of the same load on the three hosts without Redis (0: skip)', 0),
  reps: num(1, 'interleaved repetitions of the steady cells (baseline, control, fleet); the last fleet also takes the kill and the drain', 1),
  cpuProf: flag('profile host-b of the last fleet (node --cpu-prof); its steady window is broken down in the result'),
  leaseMs: num(1500, 'cluster.lease_ms', 300),
  ackRing: flag('tcp_server.ack: ring instead of delivered'),
  ...SAVE_OPTION,
};

/** CPU seconds of the engine processes so far: every pid ever seen, its last reading (a dead one keeps its last). */
class EngineCpu {
  private readonly last = new Map<number, number>();

  sample(hosts: FleetHost[]): number {
    for (const h of hosts) {
      const pid = h.pid;
      if (pid === null) continue;
      const s = pidStat(pid);
      if (s) this.last.set(pid, s.cpu);
    }
    return [...this.last.values()].reduce((a, b) => a + b, 0);
  }
}

/** Read and write system calls of the engine processes so far (/proc/{pid}/io; a dead one keeps its last). */
class EngineSyscalls {
  private readonly last = new Map<number, { r: number; w: number }>();

  sample(hosts: FleetHost[]): { r: number; w: number } {
    for (const h of hosts) {
      if (h.pid === null) continue;
      try {
        const io = readFileSync(`/proc/${h.pid}/io`, 'utf8');
        const r = Number(/syscr: (\d+)/.exec(io)?.[1]);
        const w = Number(/syscw: (\d+)/.exec(io)?.[1]);
        if (Number.isFinite(r) && Number.isFinite(w)) this.last.set(h.pid, { r, w });
      } catch { /* gone, or /proc/{pid}/io not readable */ }
    }
    let r = 0;
    let w = 0;
    for (const x of this.last.values()) { r += x.r; w += x.w; }
    return { r, w };
  }
}

/** One INFO section of a Redis, parsed (`key:value` lines). */
function redisInfo(port: number, section: string): Promise<Map<string, string>> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    const t = setTimeout(() => { s.destroy(); reject(new Error('redis INFO timed out')); }, 5000);
    s.on('connect', () => s.write(`INFO ${section}\r\n`));
    s.on('data', (d) => {
      got += d.toString('latin1');
      const nl = got.indexOf('\r\n');
      if (nl < 0) return;
      const len = Number(got.slice(1, nl));
      if (got.length < nl + 2 + len) return;
      clearTimeout(t);
      s.destroy();
      const m = new Map<string, string>();
      for (const line of got.slice(nl + 2, nl + 2 + len).split('\r\n')) {
        const i = line.indexOf(':');
        if (i > 0) m.set(line.slice(0, i), line.slice(i + 1));
      }
      resolve(m);
    });
    s.on('error', (e) => { clearTimeout(t); reject(e); });
  });
}

/** Commands by name since the start (INFO commandstats: `cmdstat_x:calls=N,...`); null when Redis did not answer (three tries). */
async function commandCalls(port: number): Promise<Record<string, number> | null> {
  const out: Record<string, number> = {};
  let info: Map<string, string> | null = null;
  for (let i = 0; i < 3 && info === null; i++) info = await redisInfo(port, 'commandstats').catch(() => null);
  if (info === null) return null;
  for (const [k, v] of info) {
    const calls = /calls=(\d+)/.exec(v);
    // INFO is this benchmark asking.
    if (k.startsWith('cmdstat_') && k !== 'cmdstat_info' && calls) out[k.slice(8)] = Number(calls[1]);
  }
  return out;
}

/** Frames delivered so far: lines in every host's tracker input. */
const deliveredNow = (fleet: Fleet): number => fleet.deliveries(TS0).total;

/** Steady load on a fleet for `seconds`: engine CPU seconds per delivered frame over the window after a warm-up. */
async function steadyCost(fleet: Fleet, seconds: number, nodes: NodeFleet, offeredPerS: number) {
  const backlog = (): number => nodes.nodes.reduce((k, n) => k + n.buffered, 0);
  const b0 = backlog();
  const cpu = new EngineCpu();
  const sys = new EngineSyscalls();
  const s0 = sys.sample(fleet.hosts);
  const c0 = cpu.sample(fleet.hosts);
  const d0 = deliveredNow(fleet);
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const c1 = cpu.sample(fleet.hosts);
  const s1 = sys.sample(fleet.hosts);
  const d1 = deliveredNow(fleet);
  const dt = (performance.now() - t0) / 1000;
  const delivered = d1 - d0;
  const per = (n: number): number => round(n / Math.max(1, delivered), 3);
  const b1 = backlog();
  return {
    // The window measures the offered load only if the hosts kept up with it: delivered
    // at the offered rate (not catching up a backlog) and the nodes' unacked frames not growing.
    keeping_up: Math.abs(delivered / dt / offeredPerS - 1) <= 0.1 && b1 - b0 <= offeredPerS,
    unacked_start: b0, unacked_end: b1,
    cpu_s: round(c1 - c0, 2), delivered, us_per_frame: round(((c1 - c0) / Math.max(1, delivered)) * 1e6, 1), frames_per_s: round(delivered / dt),
    // How many frames one system call carries: fewer calls per frame = more batching per wake-up.
    read_syscalls_per_frame: per(s1.r - s0.r), write_syscalls_per_frame: per(s1.w - s0.w),
  };
}

const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `bench-${i}`);

async function untilAcked(nodes: NodeFleet, boundS: number): Promise<boolean> {
  const by = performance.now() + boundS * 1000;
  while (performance.now() < by) {
    if (nodes.allAcked()) return true;
    await sleep(100);
  }
  return nodes.allAcked();
}

/** Waits until every node is connected and has had a frame acked (its tracker runs), bounded; then the warm-up. */
async function untilFlowing(nodes: NodeFleet, warmS: number, boundS = 60): Promise<void> {
  const by = performance.now() + boundS * 1000;
  while (performance.now() < by && !nodes.nodes.every((n) => n.connected && n.acked > 0)) await sleep(200);
  await sleep(warmS * 1000);
}

/** Waits until the tracker inputs stop growing (the dead host's trackers read their pipes to the end). */
async function deliveriesSettled(fleet: Fleet, boundS: number): Promise<void> {
  const by = performance.now() + boundS * 1000;
  let last = -1;
  while (performance.now() < by) {
    const n = deliveredNow(fleet);
    if (n === last) return;
    last = n;
    await sleep(1000);
  }
}

export const workload = defineWorkload({
  about: 'three hosts behind HAProxy with Redis: a kill and a drain under 300 nodes x 10 frames/s; acked frames lost, duplicates, takeover times, Redis ops/s, CPU per frame vs one host',
  options: OPTIONS,
  async run(o) {
    if (fleetSkip) throw new Error(fleetSkip);
    const head = header('cluster', o); // when the run started
    boundRun(o.duration + o.reps * (o.baseline + o.control + o.duration * 0.3 + 90) + 600);
    // The engines, HAProxy and Redis are child processes: never leave them behind (time bound, Ctrl-C).
    const live = new Set<Fleet>();
    process.once('exit', () => { for (const f of live) f.killNow(); });
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
    const ack = o.ackRing ? 'ring' : 'delivered';
    const maxNodes = o.nodes + 50;
    const warm = Math.min(5, o.duration * 0.1);
    const started = performance.now();
    const log = (s: string): void => { process.stderr.write(`cluster: [${round((performance.now() - started) / 1000, 1)} s] ${s}\n`); };

    type Cost = Awaited<ReturnType<typeof steadyCost>>;
    /** One steady cell: a fleet of `hosts` (with or without Redis) under the load, its cost per frame. */
    const cell = async (label: string, hosts: number, cluster: boolean, seconds: number): Promise<Cost> => {
      const f = await Fleet.start({ hosts, cluster, leaseMs: o.leaseMs, ack, maxNodes, logLevel: 'warn' });
      live.add(f);
      const nodes = new NodeFleet(ids(o.nodes), { host: '127.0.0.1', port: f.nodePort, token: FLEET_TOKEN, maxBuffered: 100000 });
      try {
        nodes.start(o.fps, 2000);
        await untilFlowing(nodes, warm);
        const c = await steadyCost(f, seconds, nodes, o.nodes * o.fps);
        log(`${label}: ${c.us_per_frame} us CPU per delivered frame, ${c.frames_per_s} frames/s, syscalls per frame ${c.read_syscalls_per_frame} read ${c.write_syscalls_per_frame} write${c.keeping_up ? '' : ' (NOT keeping up)'}`);
        return c;
      } finally {
        nodes.stop();
        await f.dispose();
        live.delete(f);
      }
    };

    // 1. Steady cells, interleaved: one host without Redis (the baseline), three hosts
    // without Redis (the control), three hosts with Redis (the fleet; the last rep's is
    // the steady window of the run below).
    const baselines: Cost[] = [];
    const controls: Cost[] = [];
    const fleets: Cost[] = [];
    const fleetSteadyS = Math.max(2, o.duration * 0.3 - Math.max(3, warm) - 1);
    for (let rep = 0; rep < o.reps; rep++) {
      if (o.baseline > 0) baselines.push(await cell(`rep ${rep + 1} baseline (1 host, no Redis)`, 1, false, o.baseline));
      if (o.control > 0) controls.push(await cell(`rep ${rep + 1} control (3 hosts, no Redis)`, 3, false, o.control));
      if (rep < o.reps - 1) fleets.push(await cell(`rep ${rep + 1} fleet (3 hosts, Redis)`, 3, true, fleetSteadyS));
    }

    // 2. The fleet: steady window, kill one host, start it again, drain another, start it again.
    const profDir = o.cpuProf ? mkdtempSync(join(tmpdir(), 'radar-ingest-prof-')) : null;
    const fleet = await Fleet.start({
      hosts: 3, cluster: true, leaseMs: o.leaseMs, ack, maxNodes, logLevel: 'warn',
      ...(profDir ? { nodeArgs: { 'host-b': ['--cpu-prof', '--cpu-prof-dir', profDir] } } : {}),
    });
    live.add(fleet);
    const nodes = new NodeFleet(ids(o.nodes), { host: '127.0.0.1', port: fleet.nodePort, token: FLEET_TOKEN, maxBuffered: 100000 });
    const redisPort = fleet.redis!.port;
    const cpu = new EngineCpu();
    try {
      const t0 = performance.now();
      const at = (frac: number): number => t0 + o.duration * 1000 * frac;
      const until = async (t: number): Promise<void> => { const d = t - performance.now(); if (d > 0) await sleep(d); };
      cpu.sample(fleet.hosts);
      nodes.start(o.fps, 2000);
      // Every 2 s: what the nodes generated, got acked, hold unacked, and how many are connected.
      const timeline: Array<Record<string, number>> = [];
      const gen0 = process.cpuUsage();
      const tick = setInterval(() => {
        const u = process.cpuUsage(gen0);
        timeline.push({
          t_s: round((performance.now() - t0) / 1000, 1), generated: nodes.generated, acked: nodes.ackedTotal,
          unacked: nodes.nodes.reduce((k, n) => k + n.buffered, 0), connected: nodes.nodes.filter((n) => n.connected).length,
          generator_cpu_s: round((u.user + u.system) / 1e6, 2),
        });
      }, 2000);
      tick.unref();
      await untilFlowing(nodes, warm);
      log('warm');
      const r0 = await commandCalls(redisPort);
      log('redis INFO');
      const rt0 = performance.now();
      const w0 = process.hrtime.bigint();
      const steady = await steadyCost(fleet, fleetSteadyS, nodes, o.nodes * o.fps);
      const w1 = process.hrtime.bigint();
      fleets.push(steady);
      const r1 = await commandCalls(redisPort);
      const redisSteadyS = (performance.now() - rt0) / 1000;
      log(`fleet steady (${round(redisSteadyS, 1)} s window): ${steady.us_per_frame} us CPU per delivered frame, ${steady.frames_per_s} frames/s, syscalls per frame ${steady.read_syscalls_per_frame} read ${steady.write_syscalls_per_frame} write${steady.keeping_up ? '' : ' (NOT keeping up)'}`);

      await until(at(0.3));
      const victim = fleet.hosts[0]!;
      const tKill = performance.now();
      cpu.sample(fleet.hosts);
      await victim.kill();
      log(`killed ${victim.id} at ${round((tKill - t0) / 1000, 1)} s`);
      await until(at(0.45));
      await victim.start(60000);
      await until(at(0.6));
      const drained = fleet.hosts[1]!;
      const tDrain = performance.now();
      cpu.sample(fleet.hosts);
      const drainCode = await drained.term();
      const tDrained = performance.now();
      log(`drained ${drained.id} in ${round((tDrained - tDrain) / 1000, 1)} s (exit ${drainCode})`);
      await until(at(0.8));
      await drained.start(60000);
      await until(at(1));
      cpu.sample(fleet.hosts);
      nodes.pause();
      clearInterval(tick);
      const rEnd = await commandCalls(redisPort);
      const allAcked = await untilAcked(nodes, 30);
      await deliveriesSettled(fleet, 20);
      const cpuTotal = cpu.sample(fleet.hosts);

      // The books: acked frames every tracker input lacks, frames delivered twice.
      const d = fleet.deliveries(TS0);
      let lost = 0;
      let acked = 0;
      const lostBy: Record<string, number> = {};
      for (const n of nodes.nodes) {
        const got = d.byNode.get(n.o.nodeId);
        acked += n.acked;
        for (let s = 1; s <= n.acked; s++) {
          if (!got?.has(s)) { lost++; lostBy[n.o.nodeId] = (lostBy[n.o.nodeId] ?? 0) + 1; }
        }
      }
      // Takeover: from the moment a node's connection closed to its first ack on the next one.
      const gaps = (from: number, to: number): number[] => nodes.nodes.flatMap((n) => n.outages
        .filter((x) => x.closedAt >= from && x.closedAt < to && x.resumedAt !== null).map((x) => x.resumedAt! - x.closedAt));
      const pending = (from: number, to: number): number => nodes.nodes.reduce((k, n) => k + n.outages.filter((x) => x.closedAt >= from && x.closedAt < to && x.resumedAt === null).length, 0);
      // A connection closes only when its host goes (the restarts close none): every close
      // between the kill and the drain is the kill's, every later one the drain's.
      const tEnd = performance.now();
      const kill = gaps(tKill, tDrain);
      const drain = gaps(tDrain, tEnd);
      const sum = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);
      const redisOps = r0 && r1 ? sum(r1) - sum(r0) : null;
      const byCmd = r0 && r1 ? Object.fromEntries(Object.entries(r1).map(([k, v]) => [k, round((v - (r0[k] ?? 0)) / redisSteadyS, 1)]).filter(([, v]) => (v as number) > 0)) : null;
      // Ratios of medians over the reps (one rep: of the one measurement each).
      // Cells that fell behind the load (a loaded machine) measure catching up, not the load: left out when others kept up.
      const medUs = (all: Cost[]): number | null => {
        const xs = all.some((x) => x.keeping_up) ? all.filter((x) => x.keeping_up) : all;
        return xs.length > 0 ? round(median(xs.map((x) => x.us_per_frame)), 1) : null;
      };
      const [bUs, cUs, fUs] = [medUs(baselines), medUs(controls), medUs(fleets)];
      const pct = (a: number | null, b: number | null): number | null => (a !== null && b !== null ? round((a / b - 1) * 100, 1) : null);
      const overhead = pct(fUs, bUs);
      const profile = profDir ? breakdownDir(profDir, Number(w0 / 1000n), Number(w1 / 1000n)) : null;
      if (profDir) rmSync(profDir, { recursive: true, force: true });
      const result = {
        ...head,
        note: 'three engines, HAProxy, Redis, the node generator and the trackers share this machine; other jobs may load it too',
        hosts: 3, nodes: o.nodes, fps: o.fps, ack, duration_s: o.duration,
        frames: { generated: nodes.generated, acked, all_acked: allAcked, delivered_lines: d.total },
        acked_lost: lost, acked_lost_by_node: Object.fromEntries(Object.entries(lostBy).slice(0, 10)),
        duplicates_delivered: d.duplicates,
        resent_by_nodes: nodes.nodes.reduce((k, n) => k + n.resent, 0),
        takeover_ms: {
          after_kill: { ...percentiles(kill.map((x) => round(x, 1))), still_waiting: pending(tKill, tDrain) },
          after_drain: { ...percentiles(drain.map((x) => round(x, 1))), still_waiting: pending(tDrain, tEnd), drain_s: round((tDrained - tDrain) / 1000, 2), exit_code: drainCode },
        },
        redis: {
          ops_per_s_steady: redisOps === null ? null : round(redisOps / redisSteadyS, 1), by_command_per_s: byCmd,
          ops_whole_run: r0 && rEnd ? sum(rEnd) - sum(r0) : null,
        },
        cpu: {
          reps: o.reps,
          cells_keeping_up: { baseline: baselines.filter((x) => x.keeping_up).length, control: controls.filter((x) => x.keeping_up).length, fleet: fleets.filter((x) => x.keeping_up).length },
          median_us_per_frame: { baseline_one_host_no_redis: bUs, control_three_hosts_no_redis: cUs, fleet_three_hosts_redis: fUs },
          cluster_overhead_pct: overhead, goal_pct: 15,
          // Three processes vs one (no Redis in either), and Redis coordination on top of three processes.
          control_vs_baseline_pct: pct(cUs, bUs), fleet_vs_control_pct: pct(fUs, cUs),
          baseline_one_host_no_redis: baselines, control_three_hosts_no_redis: controls, fleet_steady: fleets,
          fleet_steady_profiled: o.cpuProf,
          fleet_whole_run: { cpu_s: round(cpuTotal, 2), us_per_delivered_frame: round((cpuTotal / Math.max(1, d.total)) * 1e6, 1) },
        },
        cpu_profile_host_b_steady: profile,
        crashes: fleet.crashes,
        timeline,
        node_errors: Object.fromEntries([...nodes.nodes.reduce((m, n) => { for (const [k, v] of n.errors) m.set(k, (m.get(k) ?? 0) + v); return m; }, new Map<string, number>())]),
      };
      const summary = `cluster: acked lost ${lost} (goal 0), duplicates ${d.duplicates}, takeover p50/p99 kill ${result.takeover_ms.after_kill.p50}/${result.takeover_ms.after_kill.p99} ms, `
        + `drain ${result.takeover_ms.after_drain.p50}/${result.takeover_ms.after_drain.p99} ms, Redis ${result.redis.ops_per_s_steady} ops/s, `
        + `CPU/frame (median of ${o.reps}) fleet ${fUs ?? '-'} us vs one host ${bUs ?? '-'} us (${overhead ?? '-'} %, goal < 15 %); `
        + `3 hosts without Redis ${cUs ?? '-'} us (${pct(cUs, bUs) ?? '-'} % over one host; the fleet ${pct(fUs, cUs) ?? '-'} % over it)`;
      report('cluster', result, summary, !o.noSave);
    } finally {
      nodes.stop();
      await fleet.dispose();
    }
  },
});
