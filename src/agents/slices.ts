// Work over many items in slices of a few ms, yielding to the event loop between
// slices, so a broadcast to 10,000 agents never holds node sockets and /healthz.
import { performance } from 'node:perf_hooks';

/** Longest run of work between two turns of the event loop. */
const SLICE_MS = 4;

export async function inSlices<T>(items: readonly T[], each: (item: T) => void, sliceMs = SLICE_MS): Promise<void> {
  let i = 0;
  while (i < items.length) {
    const until = performance.now() + sliceMs;
    do each(items[i++]!);
    while (i < items.length && performance.now() < until);
    if (i < items.length) await new Promise<void>((r) => setImmediate(r));
  }
}
