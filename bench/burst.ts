// Workload `burst`: 64 nodes unpaced, both protocols, shards: 0 vs default; into rings
// (sink discard), end to end (sink trackers, one drain tracker per node) and the raw
// ceiling (bare server, same generator) in one run.
import { performance } from 'node:perf_hooks';
import { type BenchProtocol } from './lib/loadgen.js';
import { calibrate } from './lib/engine-run.js';
import { defineWorkload, num, type OptValues } from './lib/options.js';
import { boundRun, header, report, summaryLine } from './lib/results.js';
import { fmt, med, medianTree, round } from './lib/stats.js';
import { CELL_OPTIONS, baseOf, loadOptions, runOnce, shardsOf, type Mode, type RunResult } from './ingest.js';
import { runCeiling, type CeilingResult } from './ceiling.js';
import { runE2eOnce } from './e2e.js';

const options = { ...loadOptions(5, 3), ...CELL_OPTIONS, portStart: num(19000, 'first tracker port to provision', 1) };

async function runBurst(o: OptValues<typeof options>): Promise<void> {
  const base = baseOf(o);
  const { reps, protocols, modes, portStart } = o;
  const detFor = (p: BenchProtocol): number => (p === 'binary' ? o.detections : 3);
  const started = performance.now();
  const perRep = protocols.length * ((base.warmupS + base.durationS + 30) * (1 + 2 * modes.length) + 60 * modes.length);
  boundRun(perRep * reps + 60);
  const raw: Record<string, CeilingResult[]> = Object.fromEntries(protocols.map((p) => [p, []]));
  const runs: Record<string, Array<ReturnType<typeof cellOf>>> = {};
  const cellOf = (protocol: BenchProtocol, mode: Mode, ing: RunResult, e: Awaited<ReturnType<typeof runE2eOnce>>) => ({
    protocol, mode, shards: ing.shards,
    into_rings: { frames_per_s: ing.frames_per_s, detections_per_s: ing.detections_per_s, mbytes_per_s: ing.mbytes_per_s, process_cpu: ing.process_cpu, main_elu: ing.main_elu },
    e2e: {
      delivered_per_s: e.max.delivered_per_s, into_rings_per_s: e.max.into_rings_per_s, mbytes_per_s: round(e.max.bytes_received_per_s / 1e6, 1),
      process_cpu: e.max.cpu.process_cpu, trackers_cpu: e.max.cpu.trackers_cpu, main_elu: e.max.cpu.main_elu,
    },
  });
  for (let r = 0; r < reps; r++) {
    for (const protocol of protocols) {
      const detections = detFor(protocol);
      // Line: the stamped generator (increasing timestamps: a tracker skips repeats) into the
      // engine; the raw server gets the plain generator (same frame sizes: the stamped one does
      // not keep up with a server that never pushes back).
      const stamped = protocol === 'line';
      const c = await runCeiling({ ...base, protocol, mode: 'default', detections });
      raw[protocol]!.push(c);
      process.stderr.write(`raw  ${protocol.padEnd(6)}         rep ${r + 1}: ${fmt(c.frames_per_s).padStart(10)} frames/s ${fmt(c.mbytes_per_s, 1).padStart(7)} MB/s (bare server)\n`);
      for (const mode of modes) {
        const ing = await runOnce({ ...base, protocol, mode, detections, stamped });
        const e = await runE2eOnce({
          ...base, latencyWarmupS: 0, latencyS: 0, loadFraction: 0.5, pacedFps: 0, tickMs: 1, portStart, protocol, detections, shards: shardsOf(mode), maxOnly: true,
        }, calibrate);
        if (e.accounting.violations.length) process.stderr.write(`  e2e VIOLATIONS: ${e.accounting.violations.join('; ')}\n`);
        if (ing.accounting.violations.length) process.stderr.write(`  into-rings VIOLATIONS: ${ing.accounting.violations.join('; ')}\n`);
        const cell = cellOf(protocol, mode, ing, e);
        (runs[`${protocol}/${mode}`] ??= []).push(cell);
        process.stderr.write(`     ${protocol.padEnd(6)} ${mode.padEnd(8)} rep ${r + 1}: into rings ${fmt(cell.into_rings.frames_per_s).padStart(10)} frames/s ${fmt(cell.into_rings.mbytes_per_s, 1).padStart(7)} MB/s;  e2e delivered ${fmt(cell.e2e.delivered_per_s).padStart(10)} frames/s ${fmt(cell.e2e.mbytes_per_s, 1).padStart(7)} MB/s\n`);
      }
    }
  }
  const cells = Object.values(runs).map((cs) => medianTree(cs));
  const rawMed = Object.fromEntries(protocols.map((p) => [p, { frames_per_s: Math.round(med(raw[p]!.map((c) => c.frames_per_s))), mbytes_per_s: med(raw[p]!.map((c) => c.mbytes_per_s)) }]));
  const ratios = cells.map((c) => ({
    protocol: c.protocol, mode: c.mode,
    e2e_over_raw_bytes: round(c.e2e.mbytes_per_s / rawMed[c.protocol]!.mbytes_per_s, 3),
    into_rings_over_raw_bytes: round(c.into_rings.mbytes_per_s / rawMed[c.protocol]!.mbytes_per_s, 3),
    e2e_over_into_rings: round(c.e2e.delivered_per_s / c.into_rings.frames_per_s, 3),
  }));
  const target = ratios.filter((x) => x.mode === 'default').map((x) => ({ protocol: x.protocol, e2e_over_raw_bytes: x.e2e_over_raw_bytes, min: 0.5, pass: x.e2e_over_raw_bytes >= 0.5 }));
  const out = {
    ...header('burst', { ...base, reps, protocols, modes, binary_detections: detFor('binary'), line_detections: '1-5 cycling (stamped generator)', tracker: 'bench/lib/drain-tracker.ts (one process per node)' }),
    started_at: new Date(Date.now() - (performance.now() - started)).toISOString(),
    duration_s: round((performance.now() - started) / 1000, 1),
    raw: rawMed,
    cells,
    ratios,
    targets: { burst_e2e_at_least_half_of_raw_bytes: target },
    runs: { raw, cells: runs },
  };
  report('burst', out, summaryLine('burst', out), !o.noSave);
}

export const workload = defineWorkload({
  about: 'unpaced push: into rings, end to end and raw (bare server) in one run, by protocol and engine mode',
  options,
  run: runBurst,
});
