// Small pieces every benchmark uses: rounding and medians for the reports, the
// quiet-machine wait, the git commit of the measured code, and waiting until an
// engine with the trackers sink has delivered everything.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import type { Engine } from '../src/engine/engine.js';
import type { RingReader } from '../src/ring/ring-reader.js';
import { TAIL64, posBytes } from '../src/ring/ring-layout.js';
import { machineCpu } from './probes.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function round(x: number, digits = 0): number {
  if (!Number.isFinite(x)) return x;
  const k = 10 ** digits;
  return Math.round(x * k) / k;
}

/** Median of the finite values (NaN when there are none). */
export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

/**
 * Waits (at most maxS) until the machine is quiet: less than `cores` of CPU busy
 * over 0.5 s, with nothing of ours running. Other jobs on a shared 2-core machine
 * (a test suite, a compiler) would otherwise be measured as engine slowness.
 * Returns the seconds waited and the busy cores seen last.
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
    if (busy < cores || waited >= maxS) return { waited_s: round(waited, 1), busy: round(busy, 2) };
  }
}

/** The commit measured, and whether src/ or workers/ had uncommitted changes. */
export function gitInfo(): { commit: string | null; dirty: boolean | null } {
  try {
    const cwd = fileURLToPath(new URL('../../', import.meta.url));
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'workers'], { cwd, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() !== '';
    return { commit, dirty };
  } catch {
    return { commit: null, dirty: null };
  }
}

/** Sink trackers: waits until nothing moves and the rings and the sink are empty (bounded). */
export async function deliveredAll(engine: Engine, boundMs = 30000): Promise<ReturnType<Engine['totals']>> {
  const deadline = Date.now() + boundMs;
  let last = engine.totals();
  let stable = 0;
  while (Date.now() < deadline) {
    await sleep(50);
    const t = engine.totals();
    if (t.received === last.received && t.delivered === last.delivered && t.inRings === 0 && t.inSink === 0) {
      if (++stable >= 3) return t;
    } else {
      stable = 0;
    }
    last = t;
  }
  return engine.totals();
}

/** The send-time marker of the stamped generators: `"t":"<hrtime ns, 19 digits>"` in a frame. */
const SEND_MARKER = Buffer.from('"t":"');

/** Calls `fn` with the send time (hrtime ns) of every marker in `buf`. */
export function forEachSendTime(buf: Buffer, fn: (sentNs: number) => void): void {
  for (let at = buf.indexOf(SEND_MARKER); at >= 0; at = buf.indexOf(SEND_MARKER, at + 24)) {
    fn(Number(buf.toString('latin1', at + 5, at + 24)));
  }
}

/**
 * A copy of the bytes a ring holds now (its records as published), or null when
 * it is empty: what a drain-only sink is about to free. Bench only: reads the
 * reader's internals.
 */
export function ringBytes(r: RingReader): Buffer | null {
  const x = r as unknown as { data: Buffer; h64: BigUint64Array };
  const n = r.usedBytes;
  if (n === 0) return null;
  const off = posBytes(Atomics.load(x.h64, TAIL64)) & (r.capacity - 1);
  const first = Math.min(n, r.capacity - off);
  const out = Buffer.allocUnsafe(n);
  x.data.copy(out, 0, off, off + first);
  if (first < n) x.data.copy(out, first, 0, n - first);
  return out;
}
