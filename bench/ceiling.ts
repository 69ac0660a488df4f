// Workload `ceiling`: the push generator against a bare server that reads and
// discards (no engine): what the generator and loopback TCP deliver on this machine.
import { performance } from 'node:perf_hooks';
import { Loadgen } from './lib/loadgen.js';
import { snapshot, delta, sleep, genCpu } from './lib/probes.js';
import { RawServer } from './lib/raw-server.js';
import { defineWorkload } from './lib/options.js';
import { boundRun, header, report } from './lib/results.js';
import { fmt, round } from './lib/stats.js';
import { CELL_OPTIONS, TOKEN, baseOf, loadOptions, type CellSpec } from './ingest.js';

export async function runCeiling(spec: CellSpec) {
  const raw = new RawServer();
  const { port } = await raw.listen();
  let lg: Loadgen | null = null;
  try {
    lg = await Loadgen.start({
      host: '127.0.0.1', port, protocol: spec.protocol, connections: spec.connections, token: TOKEN,
      detections: spec.detections, maxSeconds: spec.warmupS + spec.durationS + 60, stamped: spec.stamped === true,
    });
    // The bare server never acks: the generator's end-of-run ack wait is bounded.
    lg.go();
    await sleep(spec.warmupS * 1000);
    const p0 = snapshot([]);
    const g0 = await lg.mark();
    const by0 = raw.bytes;
    await sleep(spec.durationS * 1000);
    const p1 = snapshot([]);
    const g1 = await lg.mark();
    const by1 = raw.bytes;
    const genS = (g1.childAt - g0.childAt) / 1000;
    await lg.stop(30000);
    lg = null;
    const d = delta(p0, p1);
    return {
      protocol: spec.protocol,
      window_s: round(genS, 3),
      frames_per_s: Math.round((g1.sent - g0.sent) / genS),
      detections_per_s: Math.round((g1.detections - g0.detections) / genS),
      mbytes_per_s: round((by1 - by0) / d.seconds / 1e6, 1),
      server_main_elu: round(d.mainElu, 4),
      generator_cpu: round(genCpu(g0, g1), 3),
      generator_elu: round((g1.eluActiveMs - g0.eluActiveMs) / 1000 / genS, 3),
      machine_cpu_busy: d.machineBusy === null ? null : round(d.machineBusy, 3),
      machine_cpu: d.machine,
    };
  } finally {
    lg?.kill();
    await raw.stop();
  }
}
export type CeilingResult = Awaited<ReturnType<typeof runCeiling>>;

const options = { ...loadOptions(5, 1), protocols: CELL_OPTIONS.protocols, detections: CELL_OPTIONS.detections };

export const workload = defineWorkload({
  about: 'the generator against a bare read-and-discard server (no engine)',
  options,
  run: async (o) => {
    const base = baseOf(o);
    const started = performance.now();
    boundRun((base.warmupS + base.durationS + 30) * o.reps * o.protocols.length + 60);
    const head = header('ceiling', { ...base, reps: o.reps, protocols: o.protocols, binary_detections: o.detections, line_detections: '1-5 cycling' });
    const results: CeilingResult[] = [];
    const lines: string[] = [];
    for (const protocol of o.protocols) {
      const spec: CellSpec = { ...base, protocol, mode: 'default', detections: protocol === 'binary' ? o.detections : 3 };
      const runs: CeilingResult[] = [];
      for (let r = 0; r < o.reps; r++) {
        const res = await runCeiling(spec);
        runs.push(res);
        lines.push(`ceiling ${protocol} rep ${r + 1}: ${fmt(res.frames_per_s)} frames/s, ${fmt(res.mbytes_per_s, 1)} MB/s, generator CPU ${fmt(res.generator_cpu, 2)} cores`);
      }
      results.push(runs.sort((a, b) => a.frames_per_s - b.frames_per_s)[runs.length >> 1]!);
    }
    report('ceiling', { ...head, duration_s: round((performance.now() - started) / 1000, 1), results }, lines.join('\n'), !o.noSave);
  },
});
