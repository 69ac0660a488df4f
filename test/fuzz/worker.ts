// Worker side: runs batches of cases and reports progress through shared memory.
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Harness } from './harness.js';
import { Stats, newStats, knownBug } from './oracles.js';
import { CURRENT, runCase } from './cases.js';

export interface BatchReq { from: number; to: number }
export type WorkerReply = { t: 'done'; stats: Stats } | { t: 'fail'; index: number; message: string; stream?: string };

function workerMain(): void {
  const { seed, progress } = workerData as { seed: number; progress: SharedArrayBuffer };
  const prog = new Int32Array(progress);
  const h = new Harness();
  parentPort!.on('message', (req: BatchReq) => {
    const st = newStats();
    for (let i = req.from; i < req.to; i++) {
      Atomics.store(prog, 0, i);
      try {
        runCase(h, seed, i, st);
      } catch (err) {
        const kb = knownBug(err);
        if (kb !== null) {
          st.knownBugEscapes[kb] = (st.knownBugEscapes[kb] ?? 0) + 1;
          if (st.firstKnownBugCase < 0) st.firstKnownBugCase = i;
          h.newShard(); // the thread would have died: start over, as piscina does
          h.finishCase();
          continue;
        }
        const e = err as Error;
        parentPort!.postMessage({ t: 'fail', index: i, message: `${e.message}\n${e.stack ?? ''}`, stream: CURRENT } satisfies WorkerReply);
        return;
      }
      h.finishCase();
    }
    parentPort!.postMessage({ t: 'done', stats: st } satisfies WorkerReply);
  });
}

export function merge(a: Stats, b: Stats): void {
  for (const k of ['cases', 'line', 'binary', 'valid', 'structural', 'raw', 'companions', 'sentinelsChecked', 'framesWritten', 'bytesFed', 'chunksFed'] as const) a[k] += b[k];
  for (const k of ['drops', 'closes', 'knownBugEscapes'] as const) for (const [x, n] of Object.entries(b[k])) a[k][x] = (a[k][x] ?? 0) + n;
  if (a.firstKnownBugCase < 0) a.firstKnownBugCase = b.firstKnownBugCase;
}

if (!isMainThread && (workerData as { fuzz?: boolean } | null)?.fuzz) workerMain();
