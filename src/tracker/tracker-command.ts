// Which program runs as a node's tracker: config `tracker.command` resolved to an
// argv (placeholders left in), a working directory and extra environment. The
// memory ceiling `tracker.max_memory_mb` is enforced for every command by the
// supervisor's resident-memory watchdog (memory-watchdog.ts); the built-in
// tracker also gets it as its V8 heap limit (--max-old-space-size), which holds
// even where there is no /proc to watch, and a small young generation.
import { fileURLToPath } from 'node:url';
import { delimiter, join, resolve } from 'node:path';
import { accessSync, constants, statSync } from 'node:fs';
import type { Config } from '../config.js';
import { ConfigError } from '../protocol/errors.js';

export interface TrackerCommand {
  argv: string[];
  cwd: string | undefined;
  env: Record<string, string>;
  /** "reference", "retina" or "custom": for logs and the API. */
  kind: 'reference' | 'retina' | 'custom';
  /** The tracker exits at EOF on a stdin pipe the engine holds (TrackerProcessOptions.parentPipe). */
  parentPipe?: boolean;
}

/** The built-in tracker, compiled next to this file. */
const REFERENCE_TRACKER_JS = fileURLToPath(new URL('./reference-tracker.js', import.meta.url));

/** V8's optimisation budget for the built-in tracker: 16 times its default (67,584). */
export const TRACKER_INTERRUPT_BUDGET = 16 * 67584;

const TCP_ARGS = ['--tcp', '--tcp-host', '127.0.0.1', '--tcp-port', '{port}', '-s', '-', '-c', '{config}'];

/** The retina-tracker module inside a retina_tracker_path checkout. */
export const RETINA_MODULE_FILE = join('retina_tracker', 'track_detections.py');

export function resolveTrackerCommand(config: Config): TrackerCommand {
  const t = config.tracker;
  const env = { ...t.env };
  const mb = t.max_memory_mb;
  if (t.command === 'reference') {
    const heap = mb > 0 ? [`--max-old-space-size=${mb}`] : [];
    // One process per node, so every MiB counts a thousand times (figures: docs/benchmarks.md,
    // "Memory per node"). V8 grows the young generation to several MiB it does not need at a
    // few frames a second: capped at 1 MiB a semi-space it stays ~1 MiB smaller, no slower.
    // A 16x interrupt budget: at 2 frames/s the optimising compiler would otherwise compile
    // the per-frame path within the first minute, ~0.7 MiB of code and feedback a tracker
    // (private 8,351 -> 7,615 KiB at 2 Hz) for no useful speed at that rate; a fast node's
    // tracker still gets it within a fraction of a second (max frames/s x0.98, median of 3).
    // --lite-mode saves as much but halves a fast tracker (x0.44); --single-threaded saves
    // ~0.2 MiB at x0.77; --optimize-for-size, --max-lazy, --no-sparkplug saved nothing.
    heap.unshift('--max-semi-space-size=1', `--interrupt-budget=${TRACKER_INTERRUPT_BUDGET}`);
    return {
      // --id-prefix: track ids unique across restarts (run-id.ts).
      argv: [process.execPath, ...heap, REFERENCE_TRACKER_JS, '--exit-with-stdin', '--id-prefix', '{run_id}', ...TCP_ARGS], cwd: t.cwd, env, kind: 'reference', parentPipe: true,
    };
  }
  if (t.command === 'retina') {
    // tracker-host ran `python -m retina_tracker.track_detections` from its
    // retina_tracker_path checkout: the module resolves from there.
    const path = resolve(config.retina_tracker_path);
    env.PYTHONPATH ??= path;
    return { argv: [t.python, '-m', 'retina_tracker.track_detections', ...TCP_ARGS], cwd: t.cwd ?? path, env, kind: 'retina' };
  }
  return { argv: [...t.command], cwd: t.cwd, env, kind: 'custom' };
}

/** How the API names the command: "reference", "retina", or a custom command's argv. */
export function describeCommand(command: TrackerCommand): string | string[] {
  return command.kind === 'custom' ? command.argv : command.kind;
}

/**
 * A tracker's `tracker_config` as the tracker will open it: a relative path is
 * relative to the tracker's working directory (for retina, retina_tracker_path,
 * where tracker-host ran it), so an unchanged tracker-host config finds its files.
 */
export function trackerConfigPath(command: TrackerCommand, trackerConfig: string): string {
  return resolve(command.cwd ?? '.', trackerConfig);
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return isFile(p);
  } catch {
    return false;
  }
}

/** Is `program` runnable: a path to an executable (relative to the child's cwd), or a name found on PATH? */
function findProgram(program: string, env: NodeJS.ProcessEnv, cwd: string): boolean {
  if (program.includes('/')) return isExecutable(resolve(cwd, program));
  return (env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && isExecutable(join(dir, program)));
}

/**
 * The checks a start-up (or reload) must pass before retina can be spawned: its
 * checkout, its module and the interpreter exist. Without them every spawn would
 * fail later as ENOENT or an import error, far from the key to fix. Null when
 * nothing is wrong (or the command is not retina).
 */
export function trackerCommandProblem(config: Config, env: NodeJS.ProcessEnv = process.env): ConfigError | null {
  const t = config.tracker;
  if (config.sink !== 'trackers' || t.command !== 'retina') return null;
  const path = resolve(config.retina_tracker_path);
  if (!isDirectory(path)) {
    return new ConfigError('retina_tracker_path', `retina-tracker checkout not found: ${path} (tracker.command is "retina")`);
  }
  const module = join(path, RETINA_MODULE_FILE);
  if (!isFile(module)) {
    return new ConfigError('retina_tracker_path', `${path} has no ${RETINA_MODULE_FILE}: not a retina-tracker checkout (tracker.command is "retina")`);
  }
  if (!findProgram(t.python, { ...env, ...t.env }, resolveTrackerCommand(config).cwd ?? '.')) {
    return new ConfigError('tracker.python', `interpreter not found or not executable: ${t.python}`);
  }
  return null;
}
