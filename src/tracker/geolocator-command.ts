// Which program runs as a tracker's geolocator: config `geolocator.command`
// resolved to an argv (placeholders left in), a working directory and extra
// environment. `{radar_config}` is the geolocator's own placeholder (the file the
// node's radar config is written to); `{port}`, `{node_id}` and `{config}` are
// the tracker command's, substituted by tracker-process.ts.
import { resolve } from 'node:path';
import type { Config } from '../config.js';

export interface GeolocatorCommand {
  argv: string[];
  /** Working directory ("retina": retina_geolocator_path); undefined: the engine's. */
  cwd: string | undefined;
  env: Record<string, string>;
  kind: 'retina' | 'custom';
}

export const RADAR_CONFIG_PLACEHOLDER = '{radar_config}';

export function resolveGeolocatorCommand(config: Config): GeolocatorCommand {
  const g = config.geolocator;
  const env = { ...g.env };
  if (g.command === 'retina') {
    // retina-geolocator's streaming entry point is a script module of its checkout:
    // it resolves from there, as tracker-host ran it.
    const path = resolve(config.retina_geolocator_path);
    env.PYTHONPATH ??= path;
    return {
      argv: [g.python, '-m', 'scripts.stream_solutions', '--tcp', '--tcp-port', '{port}', '--radar-config', RADAR_CONFIG_PLACEHOLDER, '--config', '{config}'],
      cwd: path, env, kind: 'retina',
    };
  }
  return { argv: [...g.command], cwd: undefined, env, kind: 'custom' };
}

/** Whether the command reads the node's radar config (only then is config_url needed). */
export function usesRadarConfig(argv: readonly string[]): boolean {
  return argv.some((a) => a.includes(RADAR_CONFIG_PLACEHOLDER));
}

/** Replaces `{radar_config}` in every element (substring, like the other placeholders). */
export function withRadarConfig(argv: readonly string[], path: string): string[] {
  return argv.map((a) => a.replaceAll(RADAR_CONFIG_PLACEHOLDER, path));
}

/**
 * `geolocator_config_path` made absolute: relative to the geolocator's working
 * directory, where tracker-host's geolocator resolved it.
 */
export function geolocatorConfigPath(path: string | undefined, cwd: string | undefined): string | undefined {
  if (path === undefined || path === '') return undefined;
  return resolve(cwd ?? process.cwd(), path);
}
