// Reads V8 CPU profiles (node --cpu-prof) and breaks one time window of them down:
// self time per function, and the share of every sample's stack by what it serves
// (a stack is charged to the first category, in the order of CATEGORIES, that any of
// its frames matches). The window is on the monotonic clock (process.hrtime), which
// is the clock V8 stamps its samples with.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { round } from './stats.js';

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface ProfNode { id: number; callFrame: CallFrame; children?: number[] }
interface CpuProfile { nodes: ProfNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

/** Stack categories, first match wins: [name, test on one frame's url and function]. */
const CATEGORIES: Array<[string, (url: string, fn: string) => boolean]> = [
  ['resume writes', (u, f) => /cluster\/resume-store\./.test(u) || (/engine\/cluster-ownership\./.test(u) && /flushResume|writeFinal|tick/.test(f))],
  ['lease renew/acquire', (u) => /cluster\/(lease-keeper|lease-table|node-lease|lease-scripts)\./.test(u)],
  ['ownership (other)', (u) => /engine\/cluster-ownership\./.test(u)],
  ['fleet view (ping, heartbeat, snapshots)', (u) => /cluster\/(host-registry|host-record|fleet-metrics)\.|engine\/cluster-view\./.test(u)],
  ['agents fleet store (touches)', (u) => /agents\/fleet-|engine\/cluster-agents\./.test(u)],
  ['ioredis (socket, replies, unattributed)', (u) => /node_modules\/(ioredis|redis-parser|denque|cluster-key-slot|@ioredis)\//.test(u)],
  ['garbage collector', (_u, f) => f === '(garbage collector)'],
  ['idle', (_u, f) => f === '(idle)'],
  ['program (native, unattributed)', (_u, f) => f === '(program)'],
  ['metrics (prom-client)', (u) => /node_modules\/prom-client\//.test(u)],
  ['agents (local)', (u) => /src\/agents\//.test(u)],
  ['tracker feed/supervisor', (u) => /src\/tracker\//.test(u)],
  ['ring', (u) => /src\/ring\//.test(u)],
  ['shard/ingress (data path)', (u) => /src\/(shard|ingress|protocol)\//.test(u)],
  ['nodes', (u) => /src\/nodes\//.test(u)],
  ['engine (other)', (u) => /src\/engine\//.test(u)],
  ['http', (u) => /src\/http\//.test(u)],
  ['node internals (net, streams, timers)', (u) => u.startsWith('node:')],
];

export interface ProfileBreakdown {
  file: string;
  window_ms: number;
  sampled_ms: number;
  busy_ms: number;
  /** ms and % of busy time (idle excluded) per category. */
  categories: Array<{ category: string; ms: number; pct_of_busy: number }>;
  top_self: Array<{ fn: string; at: string; ms: number; pct_of_busy: number }>;
}

const short = (url: string): string => url.replace(/^file:\/\/.*?\/(dist\/|node_modules\/)/, '$1').replace(/^file:\/\//, '');

/** The breakdown of one profile between t0 and t1 (microseconds, monotonic); null when it does not cover them. */
export function breakdown(file: string, t0Us: number, t1Us: number, top = 25): ProfileBreakdown | null {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  if (p.startTime > t0Us || p.endTime < t1Us) return null;
  const byId = new Map<number, ProfNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const catOf = new Map<number, string>();
  const category = (id: number): string => {
    const known = catOf.get(id);
    if (known !== undefined) return known;
    const frames: CallFrame[] = [];
    for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) frames.push(byId.get(x)!.callFrame);
    let found = 'other';
    for (const [name, test] of CATEGORIES) {
      if (frames.some((f) => test(f.url, f.functionName))) { found = name; break; }
    }
    catOf.set(id, found);
    return found;
  };
  const cats = new Map<string, number>();
  const self = new Map<number, number>();
  let t = p.startTime;
  let sampled = 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    if (t < t0Us || t > t1Us) continue;
    // A sample stands for the time until the next one (bounded: a gap is not all this frame's).
    const w = Math.min(Math.max(0, p.timeDeltas[i + 1] ?? 0), 10000) / 1000;
    const id = p.samples[i]!;
    sampled += w;
    cats.set(category(id), (cats.get(category(id)) ?? 0) + w);
    self.set(id, (self.get(id) ?? 0) + w);
  }
  const idle = cats.get('idle') ?? 0;
  const busy = sampled - idle;
  const bySelf = new Map<string, { fn: string; at: string; ms: number }>();
  for (const [id, ms] of self) {
    const f = byId.get(id)!.callFrame;
    if (f.functionName === '(idle)') continue;
    const at = f.url ? `${short(f.url)}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName}@${at}`;
    const e = bySelf.get(key) ?? { fn: f.functionName || '(anonymous)', at, ms: 0 };
    e.ms += ms;
    bySelf.set(key, e);
  }
  const pct = (ms: number): number => round((ms / Math.max(1e-9, busy)) * 100, 1);
  return {
    file, window_ms: round((t1Us - t0Us) / 1000, 1), sampled_ms: round(sampled, 1), busy_ms: round(busy, 1),
    categories: [...cats].filter(([c]) => c !== 'idle').sort((a, b) => b[1] - a[1]).map(([category, ms]) => ({ category, ms: round(ms, 1), pct_of_busy: pct(ms) })),
    top_self: [...bySelf.values()].sort((a, b) => b.ms - a.ms).slice(0, top).map((e) => ({ ...e, ms: round(e.ms, 1), pct_of_busy: pct(e.ms) })),
  };
}

/** Every profile in `dir` that covers the window, broken down (main thread and workers each). */
export function breakdownDir(dir: string, t0Us: number, t1Us: number): ProfileBreakdown[] {
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort();
  } catch {
    return [];
  }
  return files.map((f) => breakdown(join(dir, f), t0Us, t1Us)).filter((b): b is ProfileBreakdown => b !== null);
}
