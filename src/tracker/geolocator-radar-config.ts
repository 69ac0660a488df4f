// The node's radar config for its geolocator: fetched from the tracker's
// `config_url` (a JSON document, as blah2 serves it) and written as YAML to
// `{output_dir}/.{name}_config.yml`, the file retina-geolocator reads with
// `--radar-config`. Fetching is one bounded GET (timeout, body size); whoever
// already polls config_url can hand its value over instead (GeolocatorStage.setRadarConfig).
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { readCapped } from '../util/read-capped.js';

export interface RadarConfigFetchOptions {
  /** Whole request, body included. */
  timeoutMs: number;
  /** Larger bodies are refused (reading stops there). */
  maxBodyBytes: number;
}

export const RADAR_CONFIG_FETCH_DEFAULTS: RadarConfigFetchOptions = { timeoutMs: 10_000, maxBodyBytes: 1 << 20 };

/** GETs `url` and parses the body as JSON. Rejects with a message that says what went wrong. */
export async function fetchRadarConfig(url: string, opts: RadarConfigFetchOptions = RADAR_CONFIG_FETCH_DEFAULTS): Promise<unknown> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), opts.timeoutMs);
  try {
    const res = await fetch(url, { method: 'GET', headers: { accept: 'application/json' }, signal: ac.signal });
    if (res.status < 200 || res.status > 299) {
      await res.body?.cancel().catch(() => undefined);
      throw new Error(`HTTP ${res.status}`);
    }
    const body = await readCapped(res, opts.maxBodyBytes);
    if (body === null) throw new Error(`the response is larger than ${opts.maxBodyBytes} bytes`);
    try {
      return JSON.parse(body.toString('utf8'));
    } catch {
      throw new Error('the response is not JSON');
    }
  } catch (err) {
    if (ac.signal.aborted) throw new Error(`timeout after ${opts.timeoutMs} ms`);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** `{outputDir}/.{name}_config.yml`, absolute. */
export function radarConfigPath(outputDir: string, name: string): string {
  return resolve(join(outputDir, `.${name}_config.yml`));
}

/**
 * Writes the radar config as YAML (through a temporary file and a rename, so a
 * geolocator starting at that moment never reads half a file); returns the path.
 */
export function writeRadarConfig(outputDir: string, name: string, value: unknown): string {
  const path = radarConfigPath(outputDir, name);
  mkdirSync(resolve(outputDir), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, stringify(value ?? null));
  renameSync(tmp, path);
  return path;
}
