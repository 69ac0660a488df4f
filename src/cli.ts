#!/usr/bin/env node
// radar-ingest [-c|--config PATH] [-v|--verbose] [--server]: runs the engine until SIGTERM/SIGINT.
// radar-ingest COMMAND ...: a subcommand (cli/subcommands.ts: check, status).
// The flags are tracker-host's, so its service files run unchanged.
// Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or configuration.
import { loadConfigFile, type Config } from './config.js';
import { ConfigError } from './protocol/errors.js';
import { Engine } from './engine/engine.js';
import { installProcessGuard, installTestFault } from './engine/process-guard.js';
import { didYouMean } from './util/did-you-mean.js';
import { EXIT_CONFIG, EXIT_USAGE, newCommand, parseArgv } from './cli/parser.js';
import { findSubcommand, SUBCOMMANDS } from './cli/subcommands.js';
import { helpEpilogue } from './cli/help.js';
import { VERSION } from './cli/package-info.js';
import { ListenError } from './engine/listen-error.js';

interface Args {
  config: string;
  /** -v: debug logs, over log.level. */
  verbose: boolean;
  /** --server: tracker-host's server mode, whose routes are always served here. */
  server: boolean;
}

const out = (s: string): void => void process.stdout.write(s);
const err = (s: string): void => void process.stderr.write(s);

/** The engine's flags; an exit code when there is nothing to run (--help, --version, bad usage). */
function parseArgs(argv: string[]): Args | number {
  const program = newCommand('radar-ingest', out, err)
    .description('Ingest host for passive-radar networks: nodes push detection frames over TCP, each node\'s ' +
      'frames feed its tracker, tracks are written to files and forwarded. Runs until SIGTERM/SIGINT.')
    .usage('[options]          run the engine (default config: ./config.yaml)\n       radar-ingest COMMAND [options]')
    .version(VERSION, '-V, --version', 'print the version and exit')
    .option('-c, --config <path>', 'the config file', 'config.yaml')
    .option('-v, --verbose', 'debug logs (overrides log.level)')
    .option('--server', "accepted for tracker-host's service files: the server-mode routes are always served")
    .allowExcessArguments(true)
    .addHelpText('after', helpEpilogue(SUBCOMMANDS));
  const code = parseArgv(program, argv);
  if (code !== null) return code;
  const stray = program.args[0];
  if (stray !== undefined) {
    // A subcommand goes first (`radar-ingest check -c F`); anything else is a typo.
    const near = didYouMean(stray, SUBCOMMANDS.map((c) => c.name));
    const what = findSubcommand(stray) ? `'${stray}' is a command: it goes first (radar-ingest ${stray} [options])`
      : `unknown command '${stray}'${near ? ` (did you mean ${near}?)` : ''}`;
    err(`radar-ingest: ${what}\n(run 'radar-ingest --help' for usage)\n`);
    return EXIT_USAGE;
  }
  const o = program.opts<{ config: string; verbose?: boolean; server?: boolean }>();
  return { config: o.config, verbose: o.verbose === true, server: o.server === true };
}

/** The config file with the command line's overrides (a reload keeps them). */
function load(args: Args): Config {
  const c = loadConfigFile(args.config);
  return args.verbose ? { ...c, log: { ...c.log, level: 'debug' } } : c;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  // `radar-ingest help [COMMAND]` is `--help` (of that command).
  if (argv[0] === 'help') argv.splice(0, 2, ...(findSubcommand(argv[1]) ? [argv[1]!, '--help'] : ['--help']));
  // `radar-ingest COMMAND ...`: a subcommand (a client of a running engine, a check...), not the engine.
  const sub = findSubcommand(argv[0]);
  if (sub) {
    process.exitCode = await sub.run(argv.slice(1));
    return;
  }
  const parsed = parseArgs(argv);
  if (typeof parsed === 'number') {
    process.exitCode = parsed;
    return;
  }
  const args = parsed;
  let engine: Engine;
  try {
    engine = new Engine({ config: load(args) });
  } catch (err) {
    if (err instanceof ConfigError) {
      // A key's error may not be the file's only one: check lists them all.
      const more = err.path === '' ? '' : `(run 'radar-ingest check --config ${args.config}' to list every error)\n`;
      process.stderr.write(`radar-ingest: config error: ${err.message}\n${more}`);
      process.exit(EXIT_CONFIG);
    }
    throw err;
  }
  if (args.server) engine.log.info('--server accepted for compatibility: the server-mode routes are always served');
  installProcessGuard(engine, engine.config.shutdown.deadline_ms);
  installTestFault(process.env);
  // Signal handlers go in before start-up: until a process installs one, SIGTERM and
  // SIGINT kill it outright, so a supervisor that signals as soon as it sees the
  // start-up log line could otherwise skip the drain. A signal during start-up
  // stops the engine once start() has settled.
  let startup: Promise<unknown> = Promise.resolve();
  let signals = 0;
  const onSignal = (sig: string): void => {
    signals++;
    if (signals > 1) {
      engine.log.warn({ signal: sig }, 'second signal: exiting now');
      process.exit(1);
    }
    engine.log.info({ signal: sig }, 'stopping');
    // The engine keeps to shutdown.deadline_ms by itself; this is the backstop if something hangs.
    setTimeout(() => {
      engine.log.error({ deadline_ms: engine.config.shutdown.deadline_ms }, 'shutdown deadline passed: exiting now');
      process.exit(1);
    }, engine.config.shutdown.deadline_ms + 2000).unref();
    void startup.catch(() => undefined).then(() => engine.stop()).then(() => process.exit(0), (err: Error) => {
      engine.log.error({ err: err.message }, 'stop failed');
      process.exit(1);
    });
  };
  // SIGHUP: re-read the file; an invalid one is rejected (with the key path) and the old config stays.
  process.on('SIGHUP', () => {
    let next;
    try {
      next = load(args);
    } catch (err) {
      engine.reloadFailed(err as Error);
      return;
    }
    engine.reload(next);
  });
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  try {
    startup = engine.start();
    await startup;
  } catch (err) {
    // Stop first, so the last line is the reason (with the key to change), not a clean-stop message.
    await engine.stop().catch(() => undefined);
    const e = err as Error;
    const where = e instanceof ListenError ? { key: e.key, address: e.address, code: e.code } : {};
    engine.log.fatal({ err: e.message, ...where }, `start-up failed: ${e.message}`);
    process.exit(1);
  }
}

void main();
