// Which program runs as a node's tracker: config `tracker.command` resolved to an
// argv (placeholders left in), a working directory and extra environment. The
// memory ceiling `tracker.max_memory_mb` is enforced for every command by the
// supervisor's resident-memory watchdog (memory-watchdog.ts); the built-in
// tracker also gets it as its V8 heap limit (--max-old-space-size), which holds
// even where there is no /proc to watch.
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import type { Config } from '../config.js';

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

const TCP_ARGS = ['--tcp', '--tcp-host', '127.0.0.1', '--tcp-port', '{port}', '-s', '-', '-c', '{config}'];

export function resolveTrackerCommand(config: Config): TrackerCommand {
  const t = config.tracker;
  const env = { ...t.env };
  const mb = t.max_memory_mb;
  if (t.command === 'reference') {
    const heap = mb > 0 ? [`--max-old-space-size=${mb}`] : [];
    return {
      argv: [process.execPath, ...heap, REFERENCE_TRACKER_JS, '--exit-with-stdin', ...TCP_ARGS], cwd: t.cwd, env, kind: 'reference', parentPipe: true,
    };
  }
  if (t.command === 'retina') {
    // tracker-host ran `python -m retina_tracker.track_detections` from its
    // retina_tracker_path checkout: the module resolves from there.
    const path = resolve(config.retina_tracker_path);
    env.PYTHONPATH ??= path;
    return { argv: ['python3', '-m', 'retina_tracker.track_detections', ...TCP_ARGS], cwd: t.cwd ?? path, env, kind: 'retina' };
  }
  return { argv: [...t.command], cwd: t.cwd, env, kind: 'custom' };
}
