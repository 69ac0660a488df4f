#!/usr/bin/env node
// radar-ingest [-c|--config PATH] [-v|--verbose] [--server]: runs the engine until SIGTERM/SIGINT.
// The flags are tracker-host's, so its service files run unchanged.
// Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or configuration.
import { loadConfigFile, type Config } from './config.js';
import { ConfigError } from './protocol/errors.js';
import { Engine } from './engine/engine.js';
import { installProcessGuard, installTestFault } from './engine/process-guard.js';
import { runStatus } from './cli/status-command.js';
import { ListenError } from './engine/listen-error.js';

const USAGE = 'usage: radar-ingest [-c|--config PATH] [-v|--verbose] [--server]   (default config: ./config.yaml)\n       radar-ingest status [--url URL] [--token TOKEN] [--json]';

interface Args {
  config: string;
  /** -v: debug logs, over log.level. */
  verbose: boolean;
  /** --server: tracker-host's server mode, whose routes are always served here. */
  server: boolean;
}

function parseArgs(argv: string[]): Args | null {
  const args: Args = { config: 'config.yaml', verbose: false, server: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config' || a === '-c') {
      const v = argv[++i];
      if (v === undefined) return null;
      args.config = v;
    } else if (a.startsWith('--config=')) {
      args.config = a.slice('--config='.length);
    } else if (a === '-v' || a === '--verbose') {
      args.verbose = true;
    } else if (a === '--server') {
      args.server = true;
    } else if (a === '--help' || a === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else {
      return null;
    }
  }
  return args;
}

/** The config file with the command line's overrides (a reload keeps them). */
function load(args: Args): Config {
  const c = loadConfigFile(args.config);
  return args.verbose ? { ...c, log: { ...c.log, level: 'debug' } } : c;
}

async function main(): Promise<void> {
  // `radar-ingest status ...`: a client of a running engine, not the engine.
  if (process.argv[2] === 'status') {
    process.exitCode = await runStatus(process.argv.slice(3), process.env, (s) => process.stdout.write(s), (s) => process.stderr.write(s));
    return;
  }
  const parsed = parseArgs(process.argv.slice(2));
  if (!parsed) {
    process.stderr.write(`${USAGE}\n`);
    process.exit(2);
  }
  const args = parsed;
  let engine: Engine;
  try {
    engine = new Engine({ config: load(args) });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`radar-ingest: config error: ${err.message}\n`);
      process.exit(2);
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
