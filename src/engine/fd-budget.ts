// The descriptor budget: node connections, HTTP connections and the trackers' pipes
// must fit under RLIMIT_NOFILE, or a flood on one port takes the other's descriptors.
// Node raises the soft limit to the hard limit by itself at start-up and has no API to
// go further (that needs privileges: systemd's LimitNOFILE=), so the engine reads the
// limit and warns with the numbers when it is too low.
import { readFileSync } from 'node:fs';
import type { Config } from '../config.js';
import type { Logger } from '../telemetry/logger.js';

/** Descriptors beyond the connection caps: listeners, log files, shards, signing key, ... */
const FD_MARGIN = 128;
/** Per tracker: stdin, stdout, stderr pipes and its input socket. */
const FDS_PER_TRACKER = 4;

interface FdBudget {
  needed: number;
  soft: number | null;
  hard: number | null;
  ok: boolean;
}

/** The "Max open files" soft and hard limits from /proc/self/limits text (null: unlimited or not found). */
function parseNofile(limitsText: string): { soft: number | null; hard: number | null } | null {
  const line = limitsText.split('\n').find((l) => l.startsWith('Max open files'));
  if (!line) return null;
  const [soft, hard] = line.slice('Max open files'.length).trim().split(/\s+/);
  const num = (v: string | undefined): number | null => (v === undefined || v === 'unlimited' ? null : Number(v));
  return { soft: num(soft), hard: num(hard) };
}

function fdBudget(needed: number, limits: { soft: number | null; hard: number | null } | null): FdBudget {
  const soft = limits?.soft ?? null;
  const hard = limits?.hard ?? null;
  return { needed, soft, hard, ok: soft === null || soft >= needed };
}

/** This process's limits (Linux); null where /proc is not available. */
function readNofile(): { soft: number | null; hard: number | null } | null {
  try {
    return parseNofile(readFileSync('/proc/self/limits', 'utf8'));
  } catch {
    return null;
  }
}

/** Warns (with the numbers) when RLIMIT_NOFILE cannot hold both ports' connection caps and the trackers. */
export function checkDescriptors(c: Config, log: Logger): void {
  const trackerSlots = c.sink === 'trackers'
    ? c.trackers.length + (c.tcp_server.auto_provision ? c.tcp_server.auto_provision_port_end - c.tcp_server.auto_provision_port_start + 1 : 0)
    : 0;
  const needed = c.limits.max_connections + c.http.max_connections + FDS_PER_TRACKER * trackerSlots + FD_MARGIN;
  const b = fdBudget(needed, readNofile());
  if (!b.ok) {
    log.warn({
      soft: b.soft, hard: b.hard, needed, node_max_connections: c.limits.max_connections, http_max_connections: c.http.max_connections,
      tracker_slots: trackerSlots,
    }, 'RLIMIT_NOFILE is below what the connection limits need: raise it (systemd LimitNOFILE=, ulimit -n) or lower limits.max_connections / http.max_connections');
  }
}
