// Measurement probes for the benchmarks: CPU of this process and of its main
// thread, of the whole machine, and event-loop utilisation of the main thread and
// of worker threads. Linux /proc gives per-thread CPU; elsewhere those fields are null.
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Worker } from 'node:worker_threads';
import { round } from './stats.js';

const CLK_TCK = 100; // USER_HZ on Linux

/** The fields after the command name of a /proc .../stat file (state is [0], utime [11], stime [12], rss pages [21]), or null. */
function statFields(path: string): string[] | null {
  try {
    const s = readFileSync(path, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) of this process's main thread, or null off Linux. */
function mainThreadCpuSeconds(): number | null {
  const f = statFields(`/proc/self/task/${process.pid}/stat`);
  return f ? (Number(f[11]) + Number(f[12])) / CLK_TCK : null;
}

/** Machine-wide CPU time in seconds (all cores): busy, total and by kind; null off Linux. */
function machineCpu() {
  try {
    const v = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map((x) => Number(x) / CLK_TCK);
    // user nice system idle iowait irq softirq steal
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - v[3]! - v[4]!, total, user: v[0]! + v[1]!, system: v[2]! + v[5]!, softirq: v[6]!, steal: v[7]! };
  } catch {
    return null;
  }
}

export type ProbeSnapshot = ReturnType<typeof snapshot>;

export function snapshot(workers: readonly Worker[]) {
  return {
    at: performance.now(),
    mainElu: performance.eventLoopUtilization(),
    workerElu: workers.map((w) => w.performance.eventLoopUtilization()),
    cpu: process.cpuUsage(),
    mainThreadCpu: mainThreadCpuSeconds(),
    machine: machineCpu(),
  };
}

/**
 * What happened between two snapshots: seconds, event-loop utilisation of the main
 * thread and of each worker (0..1), CPU in cores (1 = one core busy the whole window)
 * of the process and of its main thread (null off Linux), and of the machine: busy,
 * and by kind (user, system, softirq: loopback TCP, steal: the hypervisor).
 */
export function delta(a: ProbeSnapshot, b: ProbeSnapshot) {
  const seconds = (b.at - a.at) / 1000;
  const cpuS = (b.cpu.user - a.cpu.user + b.cpu.system - a.cpu.system) / 1e6;
  return {
    seconds,
    mainElu: performance.eventLoopUtilization(b.mainElu, a.mainElu).utilization,
    workerElu: b.workerElu.map((e, i) => (a.workerElu[i] ? performance.eventLoopUtilization(e, a.workerElu[i]).utilization : NaN)),
    processCpu: cpuS / seconds,
    mainThreadCpu: a.mainThreadCpu !== null && b.mainThreadCpu !== null ? (b.mainThreadCpu - a.mainThreadCpu) / seconds : null,
    machineBusy: a.machine && b.machine ? ((b.machine.busy - a.machine.busy) / (b.machine.total - a.machine.total)) * os.availableParallelism() : null,
    machine: a.machine && b.machine ? machineKinds(a.machine, b.machine) : null,
  };
}

type MachineCpu = NonNullable<ReturnType<typeof machineCpu>>;
function machineKinds(a: MachineCpu, b: MachineCpu): { user: number; system: number; softirq: number; steal: number } {
  const r = (x: number): number => round((x * os.availableParallelism()) / (b.total - a.total), 3);
  return { user: r(b.user - a.user), system: r(b.system - a.system), softirq: r(b.softirq - a.softirq), steal: r(b.steal - a.steal) };
}

export type ProbeDelta = ReturnType<typeof delta>;

/**
 * A window's CPU by where it went, cores: this process (all threads, the main thread),
 * event-loop utilisations, the machine by kind, the named `others` (trackers, the
 * generator), and `other_cpu`: machine CPU none of these nor softirq explain (other
 * jobs on the machine; near 0 in a clean run).
 */
export function cpuBreakdown<K extends string>(d: ProbeDelta, others: Record<K, number | null>) {
  const r = (x: number | null, k = 4): number | null => (x === null ? null : round(x, k));
  const known = Object.values<number | null>(others).reduce<number>((a, b) => a + (b ?? 0), 0);
  return {
    process_cpu: round(d.processCpu, 4), main_thread_cpu: r(d.mainThreadCpu), main_elu: round(d.mainElu, 4),
    worker_elu: d.workerElu.map((x) => round(x, 4)),
    ...(Object.fromEntries(Object.entries<number | null>(others).map(([k, v]) => [k, r(v)])) as Record<K, number | null>),
    machine_cpu_busy: r(d.machineBusy, 3), machine_cpu: d.machine,
    other_cpu: d.machineBusy === null || !d.machine ? null : round(d.machineBusy - d.processCpu - known - d.machine.softirq, 3),
  };
}

/** A generator's CPU, cores, between two of its samples (CPU µs and its own clock, epoch ms). */
export const genCpu = (a: { cpuUs: number; childAt: number }, b: { cpuUs: number; childAt: number }): number =>
  (b.cpuUs - a.cpuUs) / 1e3 / (b.childAt - a.childAt);

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Waits (at most maxS) until the machine is quiet: less than `cores` of CPU busy
 * over 0.5 s. Other jobs on a shared 2-core machine (a test suite, a compiler)
 * would otherwise be measured as engine slowness. Returns the seconds waited and
 * the busy cores seen last.
 */
export async function waitQuiet(maxS: number, cores = 0.3): Promise<{ waited_s: number; busy: number | null }> {
  const t0 = performance.now();
  for (;;) {
    const a = machineCpu();
    await sleep(500);
    const b = machineCpu();
    if (!a || !b) return { waited_s: 0, busy: null };
    const busy = ((b.busy - a.busy) / (b.total - a.total)) * os.availableParallelism();
    const waited = (performance.now() - t0) / 1000;
    if (busy < cores || waited >= maxS) return { waited_s: Math.round(waited * 10) / 10, busy: Math.round(busy * 100) / 100 };
  }
}

/**
 * CPU seconds and resident bytes of a process, or null when it is gone. With
 * `precise`, CPU from /proc/PID/schedstat (time on CPU, ns: a tracker woken twice
 * a second uses far less than the 10 ms tick of /proc/PID/stat).
 */
export function pidStat(pid: number, precise = false): { cpu: number; rss: number; zombie: boolean } | null {
  const f = statFields(`/proc/${pid}/stat`);
  if (!f) return null;
  let cpu = (Number(f[11]) + Number(f[12])) / CLK_TCK;
  if (precise) {
    try {
      const ns = Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ', 1)[0]);
      if (Number.isFinite(ns)) cpu = ns / 1e9;
    } catch {
      // no schedstat: the tick-based figure stays
    }
  }
  return { cpu, rss: Number(f[21]) * 4096, zombie: f[0] === 'Z' };
}

/** CPU seconds (schedstat, precise) and resident bytes of processes now, the gone ones left out; `at`: performance.now(). */
export function pidsStat(pids: number[]) {
  const cpu = new Map<number, number>();
  let rss = 0;
  for (const p of pids) {
    const s = pidStat(p, true);
    if (s) cpu.set(p, s.cpu), (rss += s.rss);
  }
  return { at: performance.now(), cpu, rss, alive: cpu.size };
}

/** The CPU of those processes between two `pidsStat`s, cores (the ones in both); null when there are none. */
export function pidsCpu(a: ReturnType<typeof pidsStat>, b: ReturnType<typeof pidsStat>): number | null {
  const ds = [...a.cpu].flatMap(([p, c0]) => (b.cpu.has(p) ? [b.cpu.get(p)! - c0] : []));
  return ds.length ? ds.reduce((x, y) => x + y, 0) / ((b.at - a.at) / 1000) : null;
}

/** Open file descriptors of a process (default this one), null off Linux. */
export function openFds(pid: number | 'self' = 'self'): number | null {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

/** /proc/PID/status fields (kB values in bytes), {} off Linux. */
export function procStatus(pid: number | 'self' = 'self'): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
      const m = /^(\w+):\s+(\d+)(?:\s+kB)?$/.exec(line);
      if (m) out[m[1]!] = Number(m[2]) * (line.endsWith('kB') ? 1024 : 1);
    }
  } catch {
    // not Linux
  }
  return out;
}

/** This process's limit on open files, null off Linux. */
export function fdLimit(): number | null {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    return line ? Number(line.split(/\s+/)[3]) : null;
  } catch {
    return null;
  }
}

/** The rate of a growing count, one value a second from `from`, until stop(); `each` runs at every tick too. */
export function perSecond(read: () => number, from = read(), each?: () => void): { stop(): number[] } {
  const rates: number[] = [];
  let last = from;
  let lastAt = performance.now();
  const timer = setInterval(() => {
    each?.();
    const v = read();
    const now = performance.now();
    rates.push(Math.round(((v - last) * 1000) / (now - lastAt)));
    last = v;
    lastAt = now;
  }, 1000);
  return { stop: () => (clearInterval(timer), rates) };
}
