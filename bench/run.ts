// The benchmark entry point: `npm run bench -- <workload> [--flags]` (after a build).
// Each workload is one file of bench/ with its own options table; `--help` lists them.
// Output: one JSON object on stdout (also saved as bench/results/<workload>-latest.json
// unless --no-save) and a human summary on stderr. See docs/benchmarks.md.
import { parseOptions, usage, type Workload } from './lib/options.js';

const WORKLOADS: Record<string, () => Promise<{ workload: Workload }>> = {
  ingest: () => import('./ingest.js'),
  ceiling: () => import('./ceiling.js'),
  e2e: () => import('./e2e.js'),
  burst: () => import('./burst.js'),
  fleet: () => import('./fleet.js'),
  growth: () => import('./growth.js'),
  connections: () => import('./connections.js'),
  floor: () => import('./floor.js'),
  hostile: () => import('./hostile.js'),
  forward: () => import('./forward.js'),
  cluster: () => import('./cluster.js'),
  acks: () => import('./acks.js'),
  memory: () => import('./memory.js'),
  decode: () => import('./decode.js'),
};

async function main(argv: string[]): Promise<void> {
  const name = argv[0] === undefined || argv[0].startsWith('--') ? 'ingest' : argv[0];
  const args = name === argv[0] ? argv.slice(1) : argv;
  const load = WORKLOADS[name];
  if (!load) throw new Error(`unknown workload ${name} (${Object.keys(WORKLOADS).join(', ')})`);
  const { workload } = await load();
  if (args.includes('--help') || args.includes('-h')) {
    process.stderr.write(`usage: npm run bench -- ${name} [options]\n${name}: ${workload.about}\n${usage(workload.options)}\n`);
    if (argv[0] === undefined || argv[0].startsWith('--')) process.stderr.write(`workloads: ${Object.keys(WORKLOADS).join(', ')}\n`);
    return;
  }
  await workload.run(parseOptions(workload.options, args));
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
