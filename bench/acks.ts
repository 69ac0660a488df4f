// Workload `acks`: what acks that mean delivered cost. The e2e binary cell (node
// sockets -> shards -> rings -> one drain tracker per node on TCP, unpaced push,
// 50 detections a frame) run with tcp_server.ack: ring and ack: delivered,
// alternating in one invocation; medians per mode and the delivered/ring ratios of
// frames/s delivered to the trackers and of engine CPU per delivered frame.
import { performance } from 'node:perf_hooks';
import { runE2eOnce, type E2eSpec } from './e2e.js';
import { baseOf, loadOptions } from './ingest.js';
import { calibrate } from './lib/engine-run.js';
import { waitQuiet } from './lib/probes.js';
import { defineWorkload, num, optNum, type OptValues } from './lib/options.js';
import { boundRun, header, report, summaryLine } from './lib/results.js';
import { fmt, medianTree, round } from './lib/stats.js';

type AckMode = 'ring' | 'delivered';
const MODES: AckMode[] = ['ring', 'delivered'];

const options = {
  ...loadOptions(6, 3),
  detections: num(50, 'binary detections per frame', 1),
  shards: optNum("the engine's shards (default auto; 0 = one shard on the main thread)"),
  portStart: num(19200, 'first tracker port to provision (100 ports; keep it out of the ephemeral range)', 1),
  quietWait: num(10, 'before each cell, wait up to S s for the machine to be idle (0 = never)'),
};

async function runAcks(o: OptValues<typeof options>): Promise<void> {
  const base = baseOf(o);
  const spec = (ack: AckMode): E2eSpec => ({
    ...base, latencyWarmupS: 0, latencyS: 0, loadFraction: 0.5, pacedFps: 0, tickMs: 1, portStart: o.portStart,
    tracker: 'drain', protocol: 'binary', detections: o.detections, shards: o.shards ?? 'auto', maxOnly: true, ack,
  });
  boundRun((base.warmupS + base.durationS + 120 + o.quietWait) * 2 * o.reps + 60);
  const started = performance.now();
  const head = header('acks', { ...base, reps: o.reps, detections: o.detections, shards: o.shards ?? 'auto', tracker: 'bench/lib/drain-tracker.ts (one process per node, TCP)' });
  const runs: Record<AckMode, Array<Awaited<ReturnType<typeof runE2eOnce>>>> = { ring: [], delivered: [] };
  const busy: Array<{ cell: string; busy: number | null }> = [];
  for (let r = 0; r < o.reps; r++) {
    // Alternate the order per rep so a drifting machine load does not favour one mode.
    for (const ack of r % 2 === 0 ? MODES : [...MODES].reverse()) {
      if (o.quietWait > 0) busy.push({ cell: `${ack} rep ${r + 1}`, busy: (await waitQuiet(o.quietWait)).busy });
      const e = await runE2eOnce(spec(ack), calibrate);
      runs[ack].push(e);
      const m = e.max;
      process.stderr.write(`ack ${ack.padEnd(9)} rep ${r + 1}: ${fmt(m.delivered_per_s).padStart(10)} frames/s delivered  engine ${fmt(m.cost_ns_per_frame.engine)} ns/frame  main ${fmt(m.cost_ns_per_frame.main_thread ?? NaN)} ns/frame  proc CPU ${fmt(m.cpu.process_cpu, 2)}  other CPU ${fmt(m.cpu.other_cpu ?? NaN, 2)}${e.accounting.violations.length ? `  VIOLATIONS: ${e.accounting.violations.join('; ')}` : ''}\n`);
    }
  }
  const pick = (ack: AckMode) => medianTree(runs[ack].map((e) => ({
    delivered_per_s: e.max.delivered_per_s, into_rings_per_s: e.max.into_rings_per_s, engine_ns_per_frame: e.max.cost_ns_per_frame.engine,
    main_ns_per_frame: e.max.cost_ns_per_frame.main_thread ?? NaN, process_cpu: e.max.cpu.process_cpu, other_cpu: e.max.cpu.other_cpu ?? NaN,
  })));
  const medians = { ring: pick('ring'), delivered: pick('delivered') };
  const ratios = {
    /** Frames/s delivered to the trackers, delivered over ring (1 = free). */
    delivered_per_s: round(medians.delivered.delivered_per_s / medians.ring.delivered_per_s, 4),
    /** Engine CPU per delivered frame, delivered over ring (1 = free). */
    engine_ns_per_frame: round(medians.delivered.engine_ns_per_frame / medians.ring.engine_ns_per_frame, 4),
  };
  const violations = MODES.flatMap((ack) => runs[ack].flatMap((e, i) => e.accounting.violations.map((v) => `${ack} rep ${i + 1}: ${v}`)));
  const out = {
    ...head, duration_s: round((performance.now() - started) / 1000, 1), ratios, medians,
    accounting: { ok: violations.length === 0, violations }, machine_busy_before: busy, runs,
  };
  process.stderr.write(`delivered/ring: frames/s ${fmt(ratios.delivered_per_s, 3)}, engine CPU per frame ${fmt(ratios.engine_ns_per_frame, 3)}\n`);
  report('acks', out, summaryLine('acks', out), !o.noSave);
}

export const workload = defineWorkload({
  about: 'binary e2e cell with tcp_server.ack ring vs delivered in one run: frames/s delivered and engine CPU per frame, and their ratios',
  options,
  run: runAcks,
});
