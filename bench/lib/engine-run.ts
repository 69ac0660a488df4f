// Helpers around an in-process Engine under load: settling, counters, a speed index.
import { performance } from 'node:perf_hooks';
import { C_ACKS_SENT, type Engine } from './engine-api.js';
import { sleep } from './probes.js';

type Totals = ReturnType<Engine['totals']>;

/** Waits (bounded) until the counters stop moving and the rings (and, with `sink`, the sink) are empty. */
async function settled(engine: Engine, boundMs: number, same: (a: Totals, b: Totals) => boolean): Promise<Totals> {
  const deadline = Date.now() + boundMs;
  let last = engine.totals();
  let stable = 0;
  while (Date.now() < deadline) {
    await sleep(50);
    const t = engine.totals();
    if (same(last, t) && t.inRings === 0) {
      if (++stable >= 3) return t;
    } else {
      stable = 0;
    }
    last = t;
  }
  return engine.totals();
}

/** Sink discard: nothing received, written or consumed any more, rings empty. */
export const drained = (engine: Engine, boundMs = 10000): Promise<Totals> =>
  settled(engine, boundMs, (a, b) => a.received === b.received && a.written === b.written && a.consumed === b.consumed);

/** Sink trackers: nothing received or delivered any more, rings and sink empty. */
export const deliveredAll = (engine: Engine, boundMs = 30000): Promise<Totals> =>
  settled(engine, boundMs, (a, b) => a.received === b.received && a.delivered === b.delivered && b.inSink === 0);

/** Ack messages sent by the main thread and every shard. */
export function acksSent(engine: Engine): number {
  return engine.pool.slots.reduce((n, s) => n + s.counters[C_ACKS_SENT]!, engine.counters[C_ACKS_SENT]!);
}

/** A fixed CPU-bound task for 200 ms: millions of small JSON.parse per second (shows host drift between runs). */
export function calibrate(): number {
  const line = '{"timestamp":1757400000000,"delay":[40.46,120.3,77.1],"doppler":[-27.99,88.1,3.5],"snr":[12.08,7.2,9.9]}';
  const end = performance.now() + 200;
  let n = 0;
  let t = performance.now();
  const t0 = t;
  while (t < end) {
    for (let i = 0; i < 200; i++) JSON.parse(line);
    n += 200;
    t = performance.now();
  }
  return n / (t - t0) / 1000;
}
