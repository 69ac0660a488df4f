// Counters of node ownership across hosts (takeovers, nodes given up, unfenced nodes,
// resume points). Registered only by a host that has a `cluster` section; every series
// starts at zero.
import { Counter, Gauge, type Registry } from 'prom-client';
import { CLUSTER_M } from '../telemetry/metric-names.js';
import type { ResumeWriteResult } from './resume-store.js';

/** How this host came to own a node another host held: it handed it over, or its lease expired. */
export const TAKEOVER_REASONS = ['handover', 'expired'] as const;
export type TakeoverReason = (typeof TAKEOVER_REASONS)[number];
/**
 * Why this host stopped feeding a node it owned: another host asked (handover), the host
 * drains, the lease was lost (not renewed in time, or superseded), or a node served
 * unfenced while Redis was down turned out to be owned elsewhere when it came back (conflict).
 */
export const GIVE_UP_REASONS = ['handover', 'drain', 'lost', 'conflict'] as const;
export type GiveUpReason = (typeof GIVE_UP_REASONS)[number];
export type ResumeReadResult = 'found' | 'none' | 'invalid' | 'error';

export interface OwnershipMetrics {
  takeover(reason: TakeoverReason): void;
  givenUp(reason: GiveUpReason): void;
  resumeWrites(result: ResumeWriteResult, n: number): void;
  resumeRead(result: ResumeReadResult): void;
}

export const NO_OWNERSHIP_METRICS: OwnershipMetrics = { takeover() {}, givenUp() {}, resumeWrites() {}, resumeRead() {} };

function counter(reg: Registry, name: string, help: string, label: string, values: readonly string[]): Counter<string> {
  const c = new Counter({ name, help, labelNames: [label], registers: [reg] });
  for (const v of values) c.inc({ [label]: v }, 0);
  return c;
}

/** `unfenced`: the nodes served without a lease right now (read at scrape time). */
export function registerOwnershipMetrics(reg: Registry, unfenced: () => number): OwnershipMetrics {
  const take = counter(reg, CLUSTER_M.takeovers, 'Nodes this host took over from another host, by reason (handover: the holder handed it over; expired: its lease ran out).',
    'reason', TAKEOVER_REASONS);
  const gave = counter(reg, CLUSTER_M.nodesGivenUp, 'Nodes this host stopped feeding, by reason (handover, drain, lost lease, conflict after a Redis outage).',
    'reason', GIVE_UP_REASONS);
  const writes = counter(reg, CLUSTER_M.resumeWrites, 'Resume points written to Redis, by result (fenced: this host no longer held the lease).',
    'result', ['ok', 'fenced', 'error']);
  const reads = counter(reg, CLUSTER_M.resumeReads, 'Resume points read from Redis at acquire, by result (invalid: a malformed value, ignored).',
    'result', ['found', 'none', 'invalid', 'error']);
  new Gauge({ name: CLUSTER_M.unfencedNodes, help: 'Nodes served without a lease because Redis was unreachable when they connected (cluster.on_redis_down: accept).',
    registers: [reg], collect() { this.set(unfenced()); } });
  return {
    takeover: (r) => take.inc({ reason: r }),
    givenUp: (r) => gave.inc({ reason: r }),
    resumeWrites: (r, n) => { if (n > 0) writes.inc({ result: r }, n); },
    resumeRead: (r) => reads.inc({ result: r }),
  };
}
