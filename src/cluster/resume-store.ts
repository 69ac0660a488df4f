// The fleet's resume point per node (welcome.last_seq), kept in Redis under the owner's
// fence:  {prefix}resume:{node} = "seq|fence". Only the host whose grant is the node's
// current lease may write it (one script: compare the lease, then set), so a host that
// lost the node without knowing it cannot move its successor's resume point.
import type { Redis } from 'ioredis';
import { leaseValue } from './lease-scripts.js';
import { NodeLeases } from './node-lease.js';


/**
 * Writes resume points, each only under its node's current lease (compare, then set), many
 * nodes in one call. KEYS: lease 1, resume 1, lease 2, resume 2, ...
 * ARGV: "host|fence" 1, seq 1, fence 1, ... Reply: per node 1 written, 0 fenced (nothing written).
 */
export const RESUME_WRITE_MANY_LUA = `
local out = {}
for i = 1, #KEYS / 2 do
  if redis.call('GET', KEYS[2 * i - 1]) == ARGV[3 * i - 2] then
    redis.call('SET', KEYS[2 * i], ARGV[3 * i - 1] .. '|' .. ARGV[3 * i])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
`;

/** Resume points per script call at most, so one call holds Redis only briefly. */
export const RESUME_BATCH_MAX = 256;

export interface ResumeWrite {
  node: string;
  fence: number;
  seq: number;
}

export type ResumeWriteResult = 'ok' | 'fenced' | 'error';
export type ResumeRead = { seq: number; fence: number } | 'none' | 'invalid';

const VALUE = /^(\d{1,16})\|(\d{1,16})$/;

/** A stored value, checked as any input (another host, or anyone with Redis access, wrote it). */
export function decodeResume(v: string | null): ResumeRead {
  if (v === null) return 'none';
  const m = v.length <= 40 ? VALUE.exec(v) : null;
  if (!m) return 'invalid';
  const seq = Number(m[1]);
  const fence = Number(m[2]);
  if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(fence)) return 'invalid';
  return { seq, fence };
}

interface ResumeCommands {
  radarResumeWriteMany(...args: (string | number)[]): Promise<number[]>;
}

export class ResumeStore {
  private readonly redis: Redis & ResumeCommands;
  private readonly keys: NodeLeases;

  constructor(redis: Redis, readonly hostId: string, readonly prefix: string) {
    const r = redis as Redis & Partial<ResumeCommands>;
    if (typeof r.radarResumeWriteMany !== 'function') {
      redis.defineCommand('radarResumeWriteMany', { lua: RESUME_WRITE_MANY_LUA });
    }
    this.redis = r as Redis & ResumeCommands;
    this.keys = new NodeLeases(redis, hostId, 0, prefix);
  }

  resumeKey(node: string): string {
    return `${this.prefix}resume:${node}`;
  }

  /** Writes many resume points in one round trip (one script call per RESUME_BATCH_MAX); one result per entry, in order. */
  async write(entries: readonly ResumeWrite[]): Promise<ResumeWriteResult[]> {
    if (entries.length === 0) return [];
    const p = this.redis.pipeline() as unknown as ResumeCommands & { exec(): Promise<[Error | null, unknown][] | null> };
    for (let i = 0; i < entries.length; i += RESUME_BATCH_MAX) {
      const chunk = entries.slice(i, i + RESUME_BATCH_MAX);
      const keys = chunk.flatMap((e) => [this.keys.leaseKey(e.node), this.resumeKey(e.node)]);
      const args = chunk.flatMap((e) => [leaseValue(this.hostId, e.fence), String(e.seq), String(e.fence)]);
      p.radarResumeWriteMany(keys.length, ...keys, ...args);
    }
    let replies: [Error | null, unknown][] | null;
    try {
      replies = await p.exec();
    } catch {
      return entries.map(() => 'error');
    }
    return entries.map((_, i) => {
      const r = replies?.[Math.floor(i / RESUME_BATCH_MAX)];
      if (!r || r[0] || !Array.isArray(r[1])) return 'error';
      const v = Number((r[1] as unknown[])[i % RESUME_BATCH_MAX]);
      return v === 1 ? 'ok' : v === 0 ? 'fenced' : 'error';
    });
  }

  /** The node's fleet resume point. Throws when Redis does not answer. */
  async read(node: string): Promise<ResumeRead> {
    return decodeResume(await this.redis.get(this.resumeKey(node)));
  }
}
