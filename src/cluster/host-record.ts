// What a host says about itself in the fleet's registry, and what it publishes of its
// trackers. Everything read back from Redis was written by another process (or anyone
// with access to that Redis), so it is checked like client input: bounded sizes,
// exact types, and a record that fails is skipped and counted, never trusted.
import { hostname } from 'node:os';

const HOST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Hosts listed at most (the newest heartbeats first): a bound on what one read returns. */
export const MAX_HOSTS = 256;
/** A host record is a few hundred bytes; anything longer is not one. */
export const MAX_RECORD_BYTES = 4096;
/** Tracker entries per published snapshot; more are cut off (the snapshot says so). */
export const MAX_SNAPSHOT_TRACKERS = 5000;
/** A snapshot longer than this is refused as a whole when read. */
export const MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024;
/** All snapshots one fleet-wide read takes together; the hosts beyond it are left out (and said to be). */
export const MAX_FLEET_SNAPSHOT_BYTES = 32 * 1024 * 1024;
/** Strings in a record or snapshot entry (node ids, names, times, addresses). */
const MAX_STRING = 256;

/** A host's record as stored: its own view of itself. */
export interface HostRecord {
  id: string;
  /** host:port of its HTTP API, for operators and tools. */
  address: string;
  /** When this process started (ms since the epoch, its own clock). */
  started: number;
  nodes_owned: number;
  draining: boolean;
  /** After this long without a heartbeat the host counts as down. */
  ttl_ms: number;
}

/** A record as listed: with the heartbeat's time on Redis's clock, one clock for the whole fleet. */
export interface HostEntry extends HostRecord {
  last_seen: number;
  up: boolean;
}

/** One tracker of a host, as the fleet sees it (a subset of GET /api/v1/trackers' entries). */
export interface FleetTracker {
  node_id: string;
  name: string;
  state: string;
  node_connected: boolean;
  pid: number | null;
  port: number | null;
  restarts: number;
  frames_fed: number;
  tracks_written: number;
  active_tracks: number;
  since: string | null;
  last_frame_at: string | null;
}

export interface TrackerSnapshot {
  host: string;
  /** When it was taken (ms, the publishing host's clock). */
  at: number;
  /** Entries beyond MAX_SNAPSHOT_TRACKERS were left out. */
  truncated: boolean;
  trackers: FleetTracker[];
}

export function validHostId(s: unknown): s is string {
  return typeof s === 'string' && HOST_ID.test(s);
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isCount = (v: unknown, max = 1e12): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
const isString = (v: unknown): v is string => typeof v === 'string' && v.length <= MAX_STRING;
const isStringOrNull = (v: unknown): v is string | null => v === null || (isString(v) && v.length > 0);
const isCountOrNull = (v: unknown): v is number | null => v === null || isCount(v, 1e9);

/** The parsed JSON, or null when it is too long or not JSON at all. */
function parseBounded(raw: string, maxBytes: number): unknown {
  if (raw.length > maxBytes) return null;
  try {
    return JSON.parse(raw);
  } catch {
    return null;
  }
}

/** A host record read from Redis under `id`, or null when it is not a valid one. */
export function decodeHostRecord(id: string, raw: string): HostRecord | null {
  const v = parseBounded(raw, MAX_RECORD_BYTES);
  if (!isObject(v) || v.id !== id || !validHostId(v.id)) return null;
  if (!isString(v.address) || v.address.length === 0) return null;
  if (!isCount(v.started, 1e14) || !isCount(v.nodes_owned, 1e7) || typeof v.draining !== 'boolean') return null;
  if (!isCount(v.ttl_ms, 3_600_000) || v.ttl_ms < 100) return null;
  return { id: v.id, address: v.address, started: v.started, nodes_owned: v.nodes_owned, draining: v.draining, ttl_ms: v.ttl_ms };
}

export function encodeHostRecord(r: HostRecord): string {
  return JSON.stringify({ id: r.id, address: r.address, started: r.started, nodes_owned: r.nodes_owned, draining: r.draining, ttl_ms: r.ttl_ms });
}

/** A listed host: up while its last heartbeat (Redis's clock) is younger than its ttl. */
export function hostEntry(r: HostRecord, lastSeen: number, redisNow: number): HostEntry {
  return { ...r, last_seen: lastSeen, up: redisNow - lastSeen <= r.ttl_ms };
}

function decodeTracker(v: unknown): FleetTracker | null {
  if (!isObject(v)) return null;
  if (!isString(v.node_id) || v.node_id.length === 0 || !isString(v.name) || !isString(v.state)) return null;
  if (typeof v.node_connected !== 'boolean' || !isCountOrNull(v.pid) || !isCountOrNull(v.port)) return null;
  if (!isCount(v.restarts) || !isCount(v.frames_fed) || !isCount(v.tracks_written) || !isCount(v.active_tracks)) return null;
  if (!isStringOrNull(v.since) || !isStringOrNull(v.last_frame_at)) return null;
  return {
    node_id: v.node_id, name: v.name, state: v.state, node_connected: v.node_connected, pid: v.pid, port: v.port,
    restarts: v.restarts, frames_fed: v.frames_fed, tracks_written: v.tracks_written, active_tracks: v.active_tracks,
    since: v.since, last_frame_at: v.last_frame_at,
  };
}

/**
 * A snapshot read from Redis for host `id`: null when it is not one at all; else
 * its valid entries and how many were not (skipped).
 */
export function decodeSnapshot(id: string, raw: string): { snapshot: TrackerSnapshot; invalid: number } | null {
  const v = parseBounded(raw, MAX_SNAPSHOT_BYTES);
  if (!isObject(v) || v.host !== id || !isCount(v.at, 1e14) || typeof v.truncated !== 'boolean') return null;
  if (!Array.isArray(v.trackers) || v.trackers.length > MAX_SNAPSHOT_TRACKERS) return null;
  const trackers: FleetTracker[] = [];
  let invalid = 0;
  for (const t of v.trackers) {
    const d = decodeTracker(t);
    if (d) trackers.push(d);
    else invalid++;
  }
  return { snapshot: { host: id, at: v.at, truncated: v.truncated, trackers }, invalid };
}

export function encodeSnapshot(host: string, at: number, trackers: FleetTracker[]): string {
  const truncated = trackers.length > MAX_SNAPSHOT_TRACKERS;
  return JSON.stringify({ host, at, truncated, trackers: truncated ? trackers.slice(0, MAX_SNAPSHOT_TRACKERS) : trackers });
}

/**
 * The address other hosts and operators reach this host's HTTP API at: the configured
 * one, else the bound host and port, with the machine's name for a wildcard address
 * (0.0.0.0 is nobody's address from elsewhere).
 */
export function defaultAddress(host: string, port: number, machine: string = hostname()): string {
  const h = host === '0.0.0.0' || host === '::' || host === '' ? machine : host;
  return h.includes(':') ? `[${h}]:${port}` : `${h}:${port}`;
}

export interface FleetTrackerEntry extends FleetTracker {
  /** The host whose supervisor holds this instance. */
  host: string;
  /** The host the node is connected to now (null: connected nowhere in the fleet). */
  owner: string | null;
}

/**
 * The fleet's trackers: every host's entries with the host that holds them, and the
 * node's owner (the host where it is connected). A node may show under two hosts for
 * a moment (the old host's instance after a handover); both entries name the owner.
 */
export function mergeTrackers(byHost: ReadonlyMap<string, readonly FleetTracker[]>): FleetTrackerEntry[] {
  const owner = new Map<string, string>();
  for (const [host, list] of byHost) {
    for (const t of list) if (t.node_connected && !owner.has(t.node_id)) owner.set(t.node_id, host);
  }
  const out: FleetTrackerEntry[] = [];
  for (const [host, list] of byHost) {
    for (const t of list) out.push({ ...t, host, owner: owner.get(t.node_id) ?? null });
  }
  return out.sort((a, b) => (a.node_id === b.node_id ? a.host.localeCompare(b.host) : a.node_id.localeCompare(b.node_id)));
}
