// The tracker memory ceiling (`tracker.max_memory_mb`): the supervisor samples
// each running tracker's resident memory from /proc (Linux) at most once a
// second and SIGKILLs a tracker past its ceiling; it is then restarted like a
// crash. Resident memory, not address space: node and Python with OpenBLAS
// reserve far more address space than they touch, so an address-space limit
// could stop a healthy tracker from starting at all.
//
// Counted: the tracker process and its descendants found through the children
// of each process's main thread (/proc/<pid>/task/<pid>/children: one read per
// process, where listing every thread of a many-core OpenBLAS tracker would be
// dozens). A child forked by another thread is not counted. VmRSS includes
// shared pages, so a tracker and its children sharing pages are counted twice,
// which errs on the side of the ceiling.
//
// The reads are synchronous: /proc text is generated in the kernel, ~30 us per
// tracker for status + children, where the asynchronous route costs several
// times that in thread-pool round trips. They run in slices of a few
// trackers spread over each second (memory-sampler.ts), so each slice stays well
// under a millisecond however many trackers there are.
import { existsSync, readFileSync } from 'node:fs';

export const MIB = 1 << 20;
/** How often one tracker is sampled. */
export const SAMPLE_INTERVAL_MS = 1000;
/** Processes counted per tracker at most (a fork bomb must not make a sample unbounded). */
export const MAX_PROCESSES = 64;

export interface ProcReader {
  /** The text of a /proc file, or null when it cannot be read (the process is gone). */
  read(path: string): string | null;
}

export interface ResidentSample {
  /** VmRSS of the tracker and its descendants, in bytes. */
  bytes: number;
  /** The descendants counted (not the tracker itself), to kill with it. */
  descendants: number[];
}

/** VmRSS of a /proc/<pid>/status text, in bytes; null when absent (a zombie has none). */
export function parseVmRss(status: string): number | null {
  const m = /^VmRSS:\s*(\d+)\s*kB\s*$/m.exec(status);
  return m ? Number(m[1]) * 1024 : null;
}

/** The pids in a /proc/<pid>/task/<tid>/children text (space-separated). */
export function parseChildren(text: string): number[] {
  const pids: number[] = [];
  for (const w of text.split(/\s+/)) {
    const n = Number(w);
    if (w !== '' && Number.isInteger(n) && n > 0) pids.push(n);
  }
  return pids;
}

/**
 * The memory ceiling's decision: the reason to kill a tracker resident at
 * `bytes`, or null while it is within `maxMb` (0 = no ceiling).
 */
export function memoryVerdict(bytes: number, maxMb: number): string | null {
  if (maxMb <= 0 || bytes <= maxMb * MIB) return null;
  return `killed: resident memory ${Math.round(bytes / MIB)} MiB over tracker.max_memory_mb ${maxMb}`;
}

/**
 * Resident memory of `pid` and its descendants; null when `pid` itself cannot
 * be read (gone). A descendant that vanished mid-walk counts as 0.
 */
export function sampleResident(pid: number, reader: ProcReader): ResidentSample | null {
  const top = reader.read(`/proc/${pid}/status`);
  const topRss = top === null ? null : parseVmRss(top);
  if (topRss === null) return null;
  let bytes = topRss;
  const descendants: number[] = [];
  const seen = new Set<number>([pid]);
  const queue = [pid];
  while (queue.length > 0 && seen.size < MAX_PROCESSES) {
    const p = queue.shift()!;
    const kids = reader.read(`/proc/${p}/task/${p}/children`);
    for (const c of kids === null ? [] : parseChildren(kids)) {
      if (seen.has(c) || seen.size >= MAX_PROCESSES) continue;
      seen.add(c);
      const s = reader.read(`/proc/${c}/status`);
      const rss = s === null ? null : parseVmRss(s);
      if (rss === null) continue;
      bytes += rss;
      descendants.push(c);
      queue.push(c);
    }
  }
  return { bytes, descendants };
}

/** The real /proc, or null where there is none (not Linux): then only the built-in tracker's V8 heap limit applies. */
export function procReader(): ProcReader | null {
  if (!existsSync('/proc/self/status')) return null;
  return {
    read: (path) => {
      try {
        return readFileSync(path, 'utf8');
      } catch {
        return null;
      }
    },
  };
}
