// Which program runs as a node's tracker: config `tracker.command` resolved to an
// argv (placeholders left in), a working directory and extra environment, with
// the memory ceiling `tracker.max_memory_mb` applied: the built-in tracker gets a
// V8 heap limit (--max-old-space-size); any other command runs under an
// address-space limit set by /bin/sh (`ulimit -v`) just before it execs the
// program. A tracker that passes its ceiling fails an allocation and dies; the
// supervisor restarts it like any crash.
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import type { Config } from '../config.js';

export interface TrackerCommand {
  argv: string[];
  cwd: string | undefined;
  env: Record<string, string>;
  /** "reference", "retina" or "custom": for logs and the API. */
  kind: 'reference' | 'retina' | 'custom';
}

/** The built-in tracker, compiled next to this file. */
export const REFERENCE_TRACKER_JS = fileURLToPath(new URL('./reference-tracker.js', import.meta.url));

const TCP_ARGS = ['--tcp', '--tcp-host', '127.0.0.1', '--tcp-port', '{port}', '-s', '-', '-c', '{config}'];

/**
 * Runs `argv` under an address-space limit of `mb` MiB. The program and its
 * arguments stay separate positional parameters ("$@"), so no quoting is
 * involved; a limit the shell cannot set (a lower hard limit) is reported on
 * stderr and the program runs without it.
 */
export function withAddressSpaceLimit(argv: readonly string[], mb: number): string[] {
  const script = 'ulimit -v "$1" 2>/dev/null || echo "radar-ingest: cannot set an address-space limit of $1 KiB; the tracker runs without it" >&2; shift; exec "$@"';
  return ['/bin/sh', '-c', script, 'radar-ingest-tracker', String(mb * 1024), ...argv];
}

export function resolveTrackerCommand(config: Config): TrackerCommand {
  const t = config.tracker;
  const env = { ...t.env };
  const mb = t.max_memory_mb;
  if (t.command === 'reference') {
    // V8 reserves far more address space than it uses, so node gets a heap limit instead.
    const heap = mb > 0 ? [`--max-old-space-size=${mb}`] : [];
    return { argv: [process.execPath, ...heap, REFERENCE_TRACKER_JS, ...TCP_ARGS], cwd: t.cwd, env, kind: 'reference' };
  }
  const limit = (argv: string[]): string[] => (mb > 0 ? withAddressSpaceLimit(argv, mb) : argv);
  if (t.command === 'retina') {
    // tracker-host ran `python -m retina_tracker.track_detections` from its
    // retina_tracker_path checkout: the module resolves from there.
    const path = resolve(config.retina_tracker_path);
    env.PYTHONPATH ??= path;
    return { argv: limit(['python3', '-m', 'retina_tracker.track_detections', ...TCP_ARGS]), cwd: t.cwd ?? path, env, kind: 'retina' };
  }
  return { argv: limit([...t.command]), cwd: t.cwd, env, kind: 'custom' };
}
