// The subcommands of radar-ingest: `radar-ingest NAME ARGS...` runs `run(ARGS)` and
// exits with the code it resolves to. Each parses its own arguments (and its own
// --help); the root --help lists them from here. A new subcommand is one entry.
import { runCheck } from './check-command.js';
import { runStatus } from './status-command.js';
import { runSimulate } from './simulate-command.js';

export interface Subcommand {
  name: string;
  /** One line for the root --help. */
  summary: string;
  run(argv: string[]): Promise<number>;
}

const out = (s: string): void => void process.stdout.write(s);
const err = (s: string): void => void process.stderr.write(s);

export const SUBCOMMANDS: readonly Subcommand[] = [
  { name: 'check', summary: 'validate a config file: every error at once, exit 0 if valid, 2 if not (--json)', run: (argv) => runCheck(argv, process.env, out, err) },
  { name: 'status', summary: "a running engine's nodes, trackers, agents and drops (--url, --json)", run: (argv) => runStatus(argv, process.env, out, err) },
  { name: 'simulate', summary: 'simulated nodes pushing moving targets to a host (--nodes, --rate, --targets, --protocol; --help)', run: (argv) => runSimulate(argv) },
];

export function findSubcommand(name: string | undefined): Subcommand | undefined {
  return SUBCOMMANDS.find((c) => c.name === name);
}
