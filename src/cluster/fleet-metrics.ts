// Health of this host's link to the fleet: Redis reachable, degraded to local, hosts
// up, round-trip time, records from other hosts that failed their checks. Registered
// only by a host that has a `cluster` section; every series starts at zero.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { CLUSTER_M } from '../telemetry/metric-names.js';

export type InvalidRecordKind = 'host' | 'trackers';
export const INVALID_RECORD_KINDS: readonly InvalidRecordKind[] = ['host', 'trackers'];

/** What the gauges read at scrape time. */
export interface FleetState {
  up(): boolean;
  degraded(): boolean;
  hostsUp(): number;
}

export interface FleetMetrics {
  rtt(seconds: number): void;
  invalid(kind: InvalidRecordKind, n: number): void;
}

export function registerFleetMetrics(reg: Registry, state: FleetState): FleetMetrics {
  new Gauge({
    name: CLUSTER_M.clusterUp, help: '1 while this host\'s Redis connection answers its PING (every second).', registers: [reg],
    collect() { this.set(state.up() ? 1 : 0); },
  });
  new Gauge({
    name: CLUSTER_M.clusterDegraded, help: '1 while Redis is unreachable: registry and commands run locally, new nodes follow cluster.on_redis_down.',
    registers: [reg], collect() { this.set(state.degraded() ? 1 : 0); },
  });
  new Gauge({
    name: CLUSTER_M.clusterHosts, help: 'Hosts in the fleet whose heartbeat is younger than their ttl, this one included (as of the last heartbeat).',
    registers: [reg], collect() { this.set(state.hostsUp()); },
  });
  const rtt = new Histogram({
    name: CLUSTER_M.clusterRedisRtt, help: 'Round-trip time of the PING this host sends Redis every second.', registers: [reg],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
  });
  const invalid = new Counter({
    name: CLUSTER_M.clusterRecordsInvalid, help: 'Records read from Redis that failed their checks and were skipped: host records, tracker snapshots or their entries.',
    labelNames: ['kind'], registers: [reg],
  });
  for (const k of INVALID_RECORD_KINDS) invalid.inc({ kind: k }, 0);
  return {
    rtt: (s) => rtt.observe(s),
    invalid: (kind, n) => { if (n > 0) invalid.inc({ kind }, n); },
  };
}
