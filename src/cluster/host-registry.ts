// The fleet's host registry in Redis: the I/O shell around host-record.ts. Keys
// (prefix cluster.key_prefix):
//   {prefix}hosts           sorted set: host id -> its last heartbeat, in ms on Redis's clock
//   {prefix}host:{id}       the host's record (JSON), expiring `forget_ms` after its last heartbeat
//   {prefix}trackers:{id}   the host's tracker snapshot (JSON), expiring a few seconds after its last publish
// Every step is one Lua script, so a reader never sees a set member without a
// record being cleaned up half-way, and every heartbeat is stamped with one clock
// (Redis's TIME) whatever the hosts' clocks say. Reads are bounded in Lua: at most
// MAX_HOSTS members, ids of at most 64 bytes, values of a size limit and of type
// string (anything else is reported as invalid, not fetched).
import { Redis } from 'ioredis';
import { failFastOptions } from './redis-options.js';
import {
  MAX_FLEET_SNAPSHOT_BYTES, MAX_HOSTS, MAX_RECORD_BYTES, MAX_SNAPSHOT_BYTES, decodeHostRecord, decodeSnapshot, encodeHostRecord, hostEntry,
  type HostEntry, type HostRecord, type TrackerSnapshot,
} from './host-record.js';

/** KEYS: hosts, record. ARGV: id, record, forget_ms, max_hosts, ttl_ms. Reply: {redis now, hosts seen within ttl_ms}. */
export const HEARTBEAT_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
local n = redis.call('ZCARD', KEYS[1])
local max = tonumber(ARGV[4])
if n > max then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - max - 1) end
return {now, redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[5]), '+inf')}
`;

/**
 * KEYS: hosts. ARGV: prefix, max_hosts, max_bytes. Reply: {redis now, id, last_seen, record|false, ...}.
 * Members whose record expired are removed; an id too long to be one, or a record
 * that is not a string of bounded size, comes back as false.
 */
export const LIST_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
local out = {now}
for i = 1, #ids, 2 do
  local id = ids[i]
  if #id > 64 then
    redis.call('ZREM', KEYS[1], id)
  else
    local k = ARGV[1] .. 'host:' .. id
    local ty = redis.call('TYPE', k).ok
    if ty == 'none' then
      redis.call('ZREM', KEYS[1], id)
    else
      out[#out + 1] = id
      out[#out + 1] = ids[i + 1]
      if ty == 'string' and redis.call('STRLEN', k) <= tonumber(ARGV[3]) then
        out[#out + 1] = redis.call('GET', k)
      else
        out[#out + 1] = false
      end
    end
  end
end
return out
`;

/**
 * KEYS: the snapshot keys. ARGV: max_bytes each, max_bytes in all. Reply: per key its value, or
 * false (absent, not a string, too long, or over the budget of the whole read).
 */
export const READ_BOUNDED_LUA = `
local out = {}
local left = tonumber(ARGV[2])
for i = 1, #KEYS do
  local k = KEYS[i]
  out[i] = false
  if redis.call('TYPE', k).ok == 'string' then
    local n = redis.call('STRLEN', k)
    if n <= tonumber(ARGV[1]) and n <= left then
      left = left - n
      out[i] = redis.call('GET', k)
    end
  end
end
return out
`;

/** KEYS: hosts, record, snapshot. ARGV: id. */
export const DEREGISTER_LUA = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return 1
`;

interface RegistryCommands {
  radarHostBeat(hosts: string, record: string, id: string, value: string, forgetMs: number, maxHosts: number, ttlMs: number): Promise<[number, number]>;
  radarHostList(hosts: string, prefix: string, maxHosts: number, maxBytes: number): Promise<(string | number | null)[]>;
  radarReadBounded(...args: (string | number)[]): Promise<(string | null)[]>;
  radarHostDeregister(hosts: string, record: string, snapshot: string, id: string): Promise<number>;
}

export interface HostList {
  /** Redis's clock when it was read. */
  now: number;
  hosts: HostEntry[];
  /** Members whose record was not a valid one (skipped). */
  invalid: number;
}

export interface RegistryOptions {
  redisUrl: string;
  keyPrefix: string;
  /** How long a host's record outlives its last heartbeat (listed as down meanwhile). */
  forgetMs: number;
  /** Per command: a Redis slower than this counts as unreachable. */
  commandTimeoutMs: number;
  onRedisError?: (err: Error) => void;
  /** The connection is (again) ready for commands. */
  onReady?: () => void;
}

export class HostRegistry {
  private readonly redis: Redis & RegistryCommands;

  constructor(private readonly opts: RegistryOptions) {
    // The callers run on timers and simply try again.
    const redis = new Redis(opts.redisUrl, failFastOptions({
      commandTimeoutMs: opts.commandTimeoutMs, connectTimeoutMs: Math.max(200, opts.commandTimeoutMs), retryMs: 500,
    }));
    redis.on('error', (err: Error) => opts.onRedisError?.(err));
    redis.on('ready', () => opts.onReady?.());
    redis.defineCommand('radarHostBeat', { numberOfKeys: 2, lua: HEARTBEAT_LUA });
    redis.defineCommand('radarHostList', { numberOfKeys: 1, lua: LIST_LUA });
    redis.defineCommand('radarReadBounded', { lua: READ_BOUNDED_LUA });
    redis.defineCommand('radarHostDeregister', { numberOfKeys: 3, lua: DEREGISTER_LUA });
    this.redis = redis as Redis & RegistryCommands;
  }

  private key(kind: 'host' | 'trackers', id: string): string {
    return `${this.opts.keyPrefix}${kind}:${id}`;
  }

  private get hostsKey(): string {
    return `${this.opts.keyPrefix}hosts`;
  }

  /** Starts connecting (and reconnecting for as long as it lives); never throws. */
  connect(): void {
    this.redis.connect().catch(() => {});
  }

  /** Whether the connection is up now (a command may still fail). */
  get connected(): boolean {
    return this.redis.status === 'ready';
  }

  /** One PING: its round trip in seconds. Throws when Redis does not answer in time. */
  async ping(): Promise<number> {
    const t0 = process.hrtime.bigint();
    await this.redis.ping();
    return Number(process.hrtime.bigint() - t0) / 1e9;
  }

  /** Writes this host's record; the hosts whose heartbeat is younger than its ttl, this one included. */
  async beat(r: HostRecord): Promise<{ now: number; hostsUp: number }> {
    const [now, up] = await this.redis.radarHostBeat(this.hostsKey, this.key('host', r.id), r.id, encodeHostRecord(r),
      this.opts.forgetMs, MAX_HOSTS, r.ttl_ms);
    return { now: Number(now), hostsUp: Number(up) };
  }

  /** The listed hosts, newest heartbeat first, each checked. */
  async list(): Promise<HostList> {
    const reply = await this.redis.radarHostList(this.hostsKey, this.opts.keyPrefix, MAX_HOSTS, MAX_RECORD_BYTES);
    const now = Number(reply[0]);
    const hosts: HostEntry[] = [];
    let invalid = 0;
    for (let i = 1; i + 2 < reply.length; i += 3) {
      const id = String(reply[i]);
      const seen = Number(reply[i + 1]);
      const raw = reply[i + 2];
      const rec = typeof raw === 'string' && Number.isFinite(seen) ? decodeHostRecord(id, raw) : null;
      if (rec) hosts.push(hostEntry(rec, seen, now));
      else invalid++;
    }
    return { now, hosts, invalid };
  }

  /** Publishes this host's tracker snapshot (already encoded), kept for `ttlMs`. */
  async publishTrackers(id: string, encoded: string, ttlMs: number): Promise<void> {
    await this.redis.set(this.key('trackers', id), encoded, 'PX', ttlMs);
  }

  /** The snapshots of `ids`: per id the snapshot, or null (none, or not a valid one: counted in invalid). */
  async readTrackers(ids: readonly string[]): Promise<{ snapshots: Map<string, TrackerSnapshot>; invalid: number; missing: string[] }> {
    const snapshots = new Map<string, TrackerSnapshot>();
    const missing: string[] = [];
    let invalid = 0;
    if (ids.length === 0) return { snapshots, invalid, missing };
    const keys = ids.map((id) => this.key('trackers', id));
    const reply = await this.redis.radarReadBounded(keys.length, ...keys, MAX_SNAPSHOT_BYTES, MAX_FLEET_SNAPSHOT_BYTES);
    ids.forEach((id, i) => {
      const raw = reply[i];
      if (typeof raw !== 'string') {
        missing.push(id);
        return;
      }
      const d = decodeSnapshot(id, raw);
      if (!d) {
        invalid++;
        missing.push(id);
        return;
      }
      invalid += d.invalid;
      snapshots.set(id, d.snapshot);
    });
    return { snapshots, invalid, missing };
  }

  /** Removes this host from the fleet at once (a clean stop). */
  async deregister(id: string): Promise<void> {
    await this.redis.radarHostDeregister(this.hostsKey, this.key('host', id), this.key('trackers', id), id);
  }

  /** Closes the connection (quit when Redis answers, then no reconnects). */
  async close(): Promise<void> {
    await Promise.race([this.redis.quit().catch(() => {}), new Promise((r) => setTimeout(r, 500).unref())]);
    this.redis.disconnect();
  }

  /** Drops the connection without a word (as a crashed host would). */
  abandon(): void {
    this.redis.disconnect();
  }
}
