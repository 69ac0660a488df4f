// Measurement probes for the benchmarks: CPU of this process and of its main
// thread, of the whole machine, and event-loop utilisation of the main thread and
// of worker threads. Linux /proc gives per-thread CPU; elsewhere those fields are null.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import type { Worker } from 'node:worker_threads';

const CLK_TCK = 100; // USER_HZ on Linux

/** CPU seconds (user + system) of one thread of this process, or null off Linux. */
export function threadCpuSeconds(tid: number = process.pid): number | null {
  try {
    const s = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // After the comm field: state(3) ... utime(14) stime(15) -> indices 11 and 12 here.
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

export interface MachineCpu {
  busy: number;
  total: number;
  user: number;
  system: number;
  softirq: number;
  steal: number;
}

/** Machine-wide CPU time in seconds (all cores), or null off Linux. */
export function machineCpu(): MachineCpu | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const v = line.trim().split(/\s+/).slice(1).map((x) => Number(x) / CLK_TCK);
    // user nice system idle iowait irq softirq steal
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: total - idle, total, user: v[0]! + v[1]!, system: v[2]! + v[5]!, softirq: v[6]!, steal: v[7]! };
  } catch {
    return null;
  }
}

export interface ProbeSnapshot {
  at: number;
  mainElu: EventLoopUtilization;
  workerElu: EventLoopUtilization[];
  cpu: NodeJS.CpuUsage;
  mainThreadCpu: number | null;
  machine: MachineCpu | null;
}

export function snapshot(workers: readonly Worker[]): ProbeSnapshot {
  return {
    at: performance.now(),
    mainElu: performance.eventLoopUtilization(),
    workerElu: workers.map((w) => w.performance.eventLoopUtilization()),
    cpu: process.cpuUsage(),
    mainThreadCpu: threadCpuSeconds(),
    machine: machineCpu(),
  };
}

export interface ProbeDelta {
  seconds: number;
  /** Main thread event-loop utilisation (0..1). */
  mainElu: number;
  /** Each worker thread's event-loop utilisation (0..1). */
  workerElu: number[];
  /** Whole process CPU, in cores (1 = one core busy for the whole window). */
  processCpu: number;
  /** Main thread CPU in cores (Linux), null elsewhere. */
  mainThreadCpu: number | null;
  /** Machine CPU busy, in cores, and the number of cores. */
  machineBusy: number | null;
  /** Machine CPU by kind, in cores: user, system, softirq (loopback TCP), steal (hypervisor). */
  machine: { user: number; system: number; softirq: number; steal: number } | null;
  cores: number;
}

export function delta(a: ProbeSnapshot, b: ProbeSnapshot): ProbeDelta {
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
    cores: os.availableParallelism(),
  };
}

function machineKinds(a: MachineCpu, b: MachineCpu): { user: number; system: number; softirq: number; steal: number } {
  const k = os.availableParallelism() / (b.total - a.total);
  const r = (x: number): number => Math.round(x * k * 1000) / 1000;
  return { user: r(b.user - a.user), system: r(b.system - a.system), softirq: r(b.softirq - a.softirq), steal: r(b.steal - a.steal) };
}
