// Helpers around an in-process Engine under load: settling, counters, a speed index.
import { performance } from 'node:perf_hooks';
import { C_ACKS_SENT, parseConfig, type Engine, type Totals } from './engine-api.js';
import { sleep } from './probes.js';


/** A config on loopback ports the system picks, with the bench token and silent logs; `raw` on top, `tcp` into tcp_server. */
export function benchConfig(token: string, raw: Record<string, unknown>, tcp: Record<string, unknown> = {}): ReturnType<typeof parseConfig> {
  return parseConfig({
    tcp_server: { enabled: true, host: '127.0.0.1', port: 0, token, ...tcp },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'silent' },
    ...raw,
  }, {}); // {}: RADAR_INGEST_TOKEN must not override the bench token
}

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

/** The entries that are not zero. */
export const nonZero = (r: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== 0));

/**
 * The books of a run with a sink: every frame sent was received and is in a ring, in the sink,
 * delivered or dropped, and dropped only as `discarded` by the drain-only sink, which drains them all.
 */
export function sinkViolations(sent: number, t: Totals, drainOnly: boolean): string[] {
  const v: string[] = [];
  if (t.received !== t.inRings + t.inSink + t.delivered + t.droppedTotal) {
    v.push(`received ${t.received} != inRings ${t.inRings} + inSink ${t.inSink} + delivered ${t.delivered} + dropped ${t.droppedTotal}`);
  }
  if (sent !== t.received) v.push(`generator sent ${sent} != engine received ${t.received}`);
  const discarded = drainOnly ? (t.dropped.discarded ?? 0) : 0;
  if (t.droppedTotal !== discarded) v.push(`dropped ${t.droppedTotal - discarded} frames: ${JSON.stringify(nonZero(t.dropped))}`);
  if (drainOnly && discarded !== t.received) v.push(`the drain-only sink drained ${discarded} of ${t.received} frames`);
  return v;
}

/** A counter summed over the main thread and every shard. */
export function counterSum(engine: Engine, i: number): number {
  return engine.pool.slots.reduce((n, s) => n + s.counters[i]!, engine.counters[i]!);
}

/** Ack messages sent by the main thread and every shard. */
export const acksSent = (engine: Engine): number => counterSum(engine, C_ACKS_SENT);

/** What the feeders wrote into the trackers so far, summed over every tracker. */
export function feederTotals(engine: Engine): { batches: number; bytes: number; stalls: number; fed: number } {
  const f = { batches: 0, bytes: 0, stalls: 0, fed: 0 };
  for (const i of (engine.trackers?.instances.values() ?? [])) {
    f.batches += i.feeder.batches;
    f.bytes += i.feeder.bytes;
    f.stalls += i.feeder.stalls;
    f.fed += i.feeder.framesFed;
  }
  return f;
}

/** Bytes in all rings. */
export function ringsUsed(engine: Engine): number {
  let n = 0;
  for (const r of engine.nodes.byRing) n += r.reader.usedBytes;
  return n;
}

/** The pids of the running tracker processes. */
export function trackerPids(engine: Engine): number[] {
  const out: number[] = [];
  for (const i of (engine.trackers?.instances.values() ?? [])) if (i.proc?.pid !== undefined) out.push(i.proc.pid);
  return out;
}

/**
 * Polls (bounded) until every node has its tracker running and `handedOn` frames were
 * handed on (the drain-only sink: every node has a ring); `each` sees every poll's trackers.
 */
export async function untilUp(engine: Engine, nodes: number, o: { drainOnly: boolean; handedOn: number; timeoutS: number; each?: (inst: Array<{ up: boolean }>) => void }): Promise<void> {
  const upBy = performance.now() + o.timeoutS * 1000;
  for (;;) {
    const inst = [...(engine.trackers?.instances.values() ?? [])];
    o.each?.(inst);
    const t = engine.totals();
    if (o.drainOnly ? engine.nodes.nodes.size === nodes && t.consumed >= o.handedOn : inst.length === nodes && inst.every((i) => i.up) && t.delivered >= o.handedOn) return;
    if (performance.now() > upBy) {
      const down = inst.filter((i) => !i.up).slice(0, 5).map((i) => `${i.spec.nodeId}:${i.shownState}${i.state.lastError ? ` (${i.state.lastError})` : ''}`);
      throw new Error(`not all up after ${o.timeoutS} s: ${engine.nodes.nodes.size}/${nodes} rings, ${inst.length} tracker instances, ${inst.filter((i) => i.up).length} up; ${down.join(', ')}`);
    }
    await sleep(50);
  }
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
