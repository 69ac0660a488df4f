// Counters of the lease keeper. Registered only by a host that has a `cluster` section,
// so a single host's /metrics is unchanged; every series starts at zero.
import { Counter, type Registry } from 'prom-client';
import { CLUSTER_M } from '../telemetry/metric-names.js';
import type { LossReason } from './lease-table.js';

export type AcquireOutcome = 'acquired' | 'held' | 'error';
export type RenewOutcome = 'ok' | 'rejected' | 'error';
export type HandoverOutcome = 'received' | 'no_listener' | 'error';

export interface LeaseMetrics {
  acquisition(outcome: AcquireOutcome): void;
  renewal(outcome: RenewOutcome): void;
  loss(reason: LossReason): void;
  handoverRequested(outcome: HandoverOutcome): void;
  handoverReceived(): void;
}

export const NO_LEASE_METRICS: LeaseMetrics = {
  acquisition() {}, renewal() {}, loss() {}, handoverRequested() {}, handoverReceived() {},
};

function counter<L extends string>(reg: Registry, name: string, help: string, label: string, values: readonly L[]): Counter<string> {
  const c = new Counter({ name, help, labelNames: [label], registers: [reg] });
  for (const v of values) c.inc({ [label]: v }, 0);
  return c;
}

export function registerLeaseMetrics(reg: Registry): LeaseMetrics {
  const acq = counter(reg, CLUSTER_M.leaseAcquisitions, 'Node lease acquire attempts, by result (held: another grant holds the node).',
    'result', ['acquired', 'held', 'error'] as const);
  const ren = counter(reg, CLUSTER_M.leaseRenewals, 'Node lease renewals, by result (rejected: the grant was no longer ours).',
    'result', ['ok', 'rejected', 'error'] as const);
  const loss = counter(reg, CLUSTER_M.leaseLosses, 'Node leases lost: unrenewed (not renewed for two thirds of the lease) or superseded.',
    'reason', ['unrenewed', 'superseded'] as const);
  const req = counter(reg, CLUSTER_M.handoversRequested, 'Handover requests published, by result (no_listener: no host holds the node live).',
    'result', ['received', 'no_listener', 'error'] as const);
  const rcv = new Counter({ name: CLUSTER_M.handoverRequestsReceived, help: 'Handover requests received for nodes this host holds.', registers: [reg] });
  return {
    acquisition: (o) => acq.inc({ result: o }),
    renewal: (o) => ren.inc({ result: o }),
    loss: (r) => loss.inc({ reason: r }),
    handoverRequested: (o) => req.inc({ result: o }),
    handoverReceived: () => rcv.inc(),
  };
}
