// The reload policy: what a reloaded config (SIGHUP) may change while connections stay
// open, and what keeps its old value until a restart.
import type { Config } from '../config.js';

/** Top-level config keys a reload cannot change (listeners, threads, rings, files): a restart applies them. */
const RESTART_KEYS = ['shards', 'sink', 'http', 'ring', 'agents', 'output_dir', 'output_date', 'status_interval_sec', 'cluster'] as const satisfies ReadonlyArray<keyof Config>;
/** tcp_server keys a reload cannot change (the listener and the provisioning range). */
const RESTART_TCP_KEYS = [
  'enabled', 'host', 'port', 'tls', 'proxy_protocol', 'proxy_trusted', 'auto_provision_port_start', 'auto_provision_port_end',
  'ack', // the shards' ack mode is fixed when they start
] as const satisfies ReadonlyArray<keyof Config['tcp_server']>;
/** log keys a reload cannot change: the destination (pretty or JSON) is chosen when the logger is made. */
const RESTART_LOG_KEYS = ['format'] as const satisfies ReadonlyArray<keyof Config['log']>;

/**
 * The config a reload puts in force: `next`, except the keys that need a restart,
 * which keep their values from `prev` and are listed (as dotted paths) when they differ.
 */
export function reloadedConfig(prev: Config, next: Config): { applied: Config; restartRequired: string[] } {
  const restartRequired: string[] = [];
  const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
  // Keep the fixed parts as they are; take everything else from the new file.
  const applied: Config = { ...next, tcp_server: { ...next.tcp_server }, log: { ...next.log } };
  const keep = <T extends object>(path: string, from: T, into: T, keys: ReadonlyArray<keyof T>): void => {
    for (const k of keys) {
      if (!same(from[k], into[k])) restartRequired.push(`${path}${String(k)}`);
      into[k] = from[k];
    }
  };
  keep('', prev, applied, RESTART_KEYS);
  keep('tcp_server.', prev.tcp_server, applied.tcp_server, RESTART_TCP_KEYS);
  keep('log.', prev.log, applied.log, RESTART_LOG_KEYS);
  // The rings keep their size until a restart: a frame limit they cannot hold
  // twice (config.ts checks this against the file's own ring size) waits for it too.
  if (2 * applied.limits.max_frame_bytes + 64 > applied.ring.size_bytes) {
    restartRequired.push('limits.max_frame_bytes');
    applied.limits = { ...applied.limits, max_frame_bytes: prev.limits.max_frame_bytes };
  }
  return { applied, restartRequired };
}
