// Workload `floor`: the latency floor of the design on this machine. The e2e paced
// generator into a bare server (read), + one worker hop per read (hop), + the
// shard's decode cost as a busy wait (decode), and the real engine (engine).
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { Loadgen } from './lib/loadgen.js';
import { runE2eOnce } from './e2e.js';
import { forEachSendTime } from './lib/frames.js';
import { sleep, genCpu } from './lib/probes.js';
import { calibrate } from './lib/engine-run.js';
import { defineWorkload, flag, list, num, nums, SAVE_OPTION } from './lib/options.js';
import { header, report } from './lib/results.js';
import { latencyStats, round } from './lib/stats.js';

/** The cells, in the order of the data path; `engine` is the real engine under the same load. */
export const FLOOR_CELLS = ['read', 'hop', 'decode', 'engine'] as const;
export type FloorCell = (typeof FLOOR_CELLS)[number];

/** One cell: `nsPerByte` is the decode cell's simulated cost in the worker. */
interface FloorSpec {
  cell: FloorCell; fps: number; tickMs: number; stagger: boolean; connections: number; nice: number; nsPerByte: number; warmupS: number; durationS: number;
}
/** Frames/s the generator sent in the window, this process's CPU (main + worker) and the generator's, cores; the latency. */
type FloorResult = Awaited<ReturnType<typeof runBare>>;

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const nsPerByte = workerData.nsPerByte;
parentPort.on('message', (bufs) => {
  let n = 0;
  for (const b of bufs) n += b.byteLength;
  // Simulated decode: a busy wait proportional to the bytes, like the shard's parse.
  const end = process.hrtime.bigint() + BigInt(Math.round(n * nsPerByte));
  while (process.hrtime.bigint() < end);
  parentPort.postMessage(bufs, bufs.map((b) => b.buffer));
});`;

/** One cell. `calibrate` is the caller's machine speed index (the engine cell records it). */
export function runFloor(spec: FloorSpec, calibrate: () => number): Promise<FloorResult> {
  return spec.cell === 'engine' ? runEngineCell(spec, calibrate) : runBare(spec);
}

/** The real engine, drain-only sink, latency where it drains the ring (bench/e2e.ts, paced phase only matters). */
async function runEngineCell(spec: FloorSpec, calibrate: () => number): Promise<FloorResult> {
  const e = await runE2eOnce({
    connections: spec.connections, warmupS: 0.5, durationS: 1, latencyWarmupS: spec.warmupS, latencyS: spec.durationS,
    loadFraction: 0, pacedFps: spec.fps, tickMs: spec.tickMs, stagger: spec.stagger, portStart: 19000, tracker: 'none', nice: spec.nice,
  }, calibrate);
  const h = e.half!;
  return { spec, sent_per_s: h.sent_per_s, process_cpu: h.cpu.process_cpu, generator_cpu: h.cpu.generator_cpu!, latency: h.latency };
}

async function runBare(spec: FloorSpec) {
  let measuring = false;
  /** Latency samples, ns. */
  const lat: number[] = [];
  const record = (buf: Buffer): void => {
    const now = Number(process.hrtime.bigint());
    forEachSendTime(buf, (sent) => lat.push(now - sent));
  };
  const worker = spec.cell === 'read' ? null
    : new Worker(WORKER, { eval: true, workerData: { nsPerByte: spec.cell === 'decode' ? spec.nsPerByte : 0 } });
  worker?.on('message', (bufs: Uint8Array[]) => {
    if (measuring) for (const b of bufs) record(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  });
  let queue: Uint8Array[] = [];
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    const q = queue;
    queue = [];
    worker!.postMessage(q, q.map((b) => b.buffer as ArrayBuffer));
  };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.setNoDelay(true);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    s.on('data', (b: Buffer) => {
      if (worker === null) {
        if (measuring) record(b);
        return;
      }
      const own = b.byteOffset === 0 && b.buffer.byteLength === b.length ? b : Buffer.from(b);
      queue.push(new Uint8Array(own.buffer, own.byteOffset, own.length));
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const lg = await Loadgen.start({
    host: '127.0.0.1', port, protocol: 'line', stamped: true, connections: spec.connections, token: 'floor',
    maxSeconds: spec.warmupS + spec.durationS + 60, nice: spec.nice,
  });
  try {
    lg.go({ fps: spec.fps, tickMs: spec.tickMs, stagger: spec.stagger });
    await sleep(spec.warmupS * 1000);
    const g0 = await lg.mark();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    measuring = true;
    await sleep(spec.durationS * 1000);
    measuring = false;
    const dt = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    const g1 = await lg.mark();
    return {
      spec,
      sent_per_s: Math.round((g1.sent - g0.sent) / ((g1.at - g0.at) / 1000)),
      process_cpu: round((c.user + c.system) / 1e6 / dt, 3),
      generator_cpu: round(genCpu(g0, g1), 3),
      latency: latencyStats(Float64Array.from(lat)),
    };
  } finally {
    await lg.stop();
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await worker?.terminate();
  }
}

export function floorLine(r: FloorResult): string {
  const s = r.spec;
  const l = r.latency;
  return `floor ${s.cell.padEnd(6)} ${String(s.fps).padStart(7)} frames/s tick ${s.tickMs}${s.stagger ? ' staggered' : ''}: `
    + `p50 ${l.p50_ms} ms  p90 ${l.p90_ms}  p99 ${l.p99_ms}  max ${l.max_ms} (${l.samples} samples)  `
    + `process CPU ${r.process_cpu}  generator CPU ${r.generator_cpu}  sent ${r.sent_per_s}/s`;
}

const options = {
  cells: list<FloorCell>([...FLOOR_CELLS], 'cells to run', FLOOR_CELLS),
  rates: nums([40000, 180000, 360000], 'paced rates, frames/s'),
  tickMs: num(1, 'pacing period of the generator, ms'),
  stagger: flag('each node writes once per tick at its own phase'),
  connections: num(64, 'nodes (TCP connections)', 1),
  nice: num(10, 'nice value of the generator'),
  nsPerByte: num(12.5, "the decode cell's busy wait per byte received, ns"),
  warmup: num(2, 'paced load before the window, seconds'),
  duration: num(6, 'measured window, seconds'),
  reps: num(1, 'runs per cell', 1),
  ...SAVE_OPTION,
};

export const workload = defineWorkload({
  about: "the design's latency floor without the engine: bare server (read), + a worker hop (hop), + the decode cost (decode), and the engine",
  options,
  run: async (o) => {
    const head = header('floor');
    const runs: FloorResult[] = [];
    const lines: string[] = [];
    for (let r = 0; r < o.reps; r++) {
      for (const fps of o.rates) {
        for (const cell of o.cells) {
          const res = await runFloor({
            cell, fps, tickMs: o.tickMs, stagger: o.stagger, connections: o.connections, nice: o.nice, nsPerByte: o.nsPerByte,
            warmupS: o.warmup, durationS: o.duration,
          }, calibrate);
          runs.push(res);
          lines.push(floorLine(res));
        }
      }
    }
    report('floor', { ...head, runs }, lines.join('\n'), !o.noSave);
  },
});
