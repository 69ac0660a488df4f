// Node ownership in Redis: one holder per node id in the whole fleet, each grant with
// a fence that is higher than every grant before it. Stateless operations over one
// command connection; LeaseKeeper keeps the leases a host holds alive.
import type { Redis } from 'ioredis';
import { ACQUIRE_LUA, CHECK_LUA, RELEASE_LUA, RENEW_MANY_LUA, leaseValue } from './lease-scripts.js';

export type AcquireResult =
  | { acquired: true; fence: number }
  | { acquired: false; holder: string; fence: number };

/** The scripts as client commands (EVALSHA, falling back to EVAL once per connection). */
interface LeaseCommands {
  radarLeaseAcquire(lease: string, fence: string, host: string, leaseMs: number, floor: number): Promise<[number, string, number]>;
  radarLeaseRenewMany(...args: (string | number)[]): Promise<number[]>;
  radarLeaseRelease(lease: string, value: string): Promise<number>;
  radarLeaseCheck(lease: string, value: string): Promise<number>;
}

function withScripts(redis: Redis): Redis & LeaseCommands {
  const r = redis as Redis & Partial<LeaseCommands>;
  if (typeof r.radarLeaseAcquire !== 'function') {
    redis.defineCommand('radarLeaseAcquire', { numberOfKeys: 2, lua: ACQUIRE_LUA });
    redis.defineCommand('radarLeaseRenewMany', { lua: RENEW_MANY_LUA });
    redis.defineCommand('radarLeaseRelease', { numberOfKeys: 1, lua: RELEASE_LUA });
    redis.defineCommand('radarLeaseCheck', { numberOfKeys: 1, lua: CHECK_LUA });
  }
  return r as Redis & LeaseCommands;
}

/** A handover request's message: who asks. Bounded and checked, as anything read from Redis. */
export const MAX_HANDOVER_MESSAGE = 256;
const HOST_ID = /^[A-Za-z0-9._-]{1,64}$/;

export function encodeHandover(from: string): string {
  return JSON.stringify({ from });
}

/** The requesting host, or null for a message that is not a handover request. */
export function decodeHandover(message: string): string | null {
  if (message.length > MAX_HANDOVER_MESSAGE) return null;
  try {
    const v = JSON.parse(message) as unknown;
    if (v === null || typeof v !== 'object') return null;
    const from = (v as { from?: unknown }).from;
    return typeof from === 'string' && HOST_ID.test(from) ? from : null;
  } catch {
    return null;
  }
}

export class NodeLeases {
  private readonly redis: Redis & LeaseCommands;

  constructor(redis: Redis, readonly hostId: string, readonly leaseMs: number, readonly prefix: string) {
    this.redis = withScripts(redis);
  }

  leaseKey(node: string): string {
    return `${this.prefix}lease:${node}`;
  }

  fenceKey(node: string): string {
    return `${this.prefix}fence:${node}`;
  }

  /** The channel the holder of `node` listens on for handover requests. */
  handoverChannel(node: string): string {
    return `${this.prefix}handover:${node}`;
  }

  /** Grants the node to this host unless another grant holds; `floor`: the lowest fence acceptable. */
  async acquire(node: string, floor = 0): Promise<AcquireResult> {
    const [ok, holder, fence] = await this.redis.radarLeaseAcquire(
      this.leaseKey(node), this.fenceKey(node), this.hostId, this.leaseMs, floor);
    return ok === 1 ? { acquired: true, fence: Number(fence) } : { acquired: false, holder: String(holder), fence: Number(fence) };
  }

  /** Extends this host's grant `fence` by lease_ms; false when it is no longer the grant in Redis. */
  async renew(node: string, fence: number): Promise<boolean> {
    return (await this.renewMany([{ node, fence }]))[0]!;
  }

  /** renew() of many grants in one call (keep it to RENEW_BATCH_MAX); per grant whether it was extended. */
  async renewMany(grants: readonly { node: string; fence: number }[]): Promise<boolean[]> {
    if (grants.length === 0) return [];
    const r = await this.redis.radarLeaseRenewMany(grants.length, ...grants.map((g) => this.leaseKey(g.node)), this.leaseMs,
      ...grants.map((g) => leaseValue(this.hostId, g.fence)));
    return grants.map((_, i) => Number(r[i]) === 1);
  }

  /** Deletes this host's grant `fence`; false when it is no longer the grant in Redis. */
  async release(node: string, fence: number): Promise<boolean> {
    return (await this.redis.radarLeaseRelease(this.leaseKey(node), leaseValue(this.hostId, fence))) === 1;
  }

  /** Before a write that matters: the ms this host's grant `fence` has left, 0 when it no longer holds. */
  async check(node: string, fence: number): Promise<number> {
    return Number(await this.redis.radarLeaseCheck(this.leaseKey(node), leaseValue(this.hostId, fence)));
  }

  /** Asks the node's holder to hand it over; the number of hosts that received the request (0: none listens). */
  async requestHandover(node: string): Promise<number> {
    return this.redis.publish(this.handoverChannel(node), encodeHandover(this.hostId));
  }
}
