// Which nodes have a tracker: the configured ones, and the ones provisioned when an
// unknown node's first frame reaches its ring (a port from the range, a track-file
// name of its own).
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { NodeDecision, NodeInfo } from '../nodes/node-table.js';
import { PortAllocator } from './port-allocator.js';
import type { InstanceSpec } from './tracker-instance.js';

export const PROVISION_REFUSED_REASONS = ['disabled', 'ports_exhausted', 'name_taken'] as const;
export type ProvisionRefusedReason = (typeof PROVISION_REFUSED_REASONS)[number];

/** How soon a node admitted without a tracker (its port went to another node) is tried again. */
export const PROVISION_RETRY_MS = 5000;

/** The instance specs of the configured trackers, by node id. */
function configuredSpecs(c: Config): Map<string, InstanceSpec> {
  const m = new Map<string, InstanceSpec>();
  for (const t of c.trackers) {
    m.set(t.node_id, {
      name: t.name, nodeId: t.node_id, mode: t.mode, port: t.tcp_port, origin: 'configured',
      trackerConfig: t.tracker_config, detectionUrl: t.detection_url, apiForward: t.api_forward ?? c.api_forward,
      ...(t.spawn_tracker ? {} : { remoteHost: t.tcp_host }),
      ...(t.config_url ? { configUrl: t.config_url } : {}),
      ...(t.geolocator.enabled
        ? { geolocator: { port: t.geolocator.tcp_port, configPath: t.geolocator.geolocator_config_path, configUrl: t.config_url } }
        : {}),
    });
  }
  return m;
}

/** The trackers that should run, by node id. */
export interface DesiredSpecs extends Iterable<[string, InstanceSpec]> {
  get(id: string): InstanceSpec | undefined;
  has(id: string): boolean;
}

/** A provisioned tracker's name: the node id, unless a configured tracker already has that name. */
function provisionedName(id: string, configuredNames: ReadonlySet<string>): string {
  return configuredNames.has(id) ? `${id}-auto` : id;
}

export interface ProvisioningOptions {
  config: Config;
  log: Logger;
  /** Asks the reconcile loop for a pass (a node was provisioned). */
  wake(): void;
  /** Replaces the OS check of provisioned ports (tests). */
  portIsFree?: (port: number) => Promise<boolean>;
}

export class Provisioning {
  /** Configured trackers, by node id (replaced on reload). */
  configured = new Map<string, InstanceSpec>();
  /** Auto-provisioned trackers, by node id. */
  readonly provisioned = new Map<string, InstanceSpec>();
  readonly refused: Record<ProvisionRefusedReason, number> = { disabled: 0, ports_exhausted: 0, name_taken: 0 };
  readonly ports: PortAllocator;
  /** Admitted new nodes whose first frame has not reached their ring yet (bounded by the node table). */
  readonly awaiting = new Map<string, { remote: string; retryAt: number }>();
  /** Nodes whose provision() is running (one at a time per node; a second call joins it). */
  private readonly inFlight = new Map<string, Promise<void>>();
  private config: Config;

  constructor(private readonly opts: ProvisioningOptions) {
    const c = (this.config = opts.config);
    this.configured = configuredSpecs(c);
    this.ports = new PortAllocator(c.tcp_server.auto_provision_port_start, c.tcp_server.auto_provision_port_end,
      new Set(c.trackers.map((t) => t.tcp_port)), ...(opts.portIsFree ? [opts.portIsFree] : []));
  }

  /** A reloaded config: the configured set and the ports it reserves (the range is fixed until a restart). */
  reconfigure(c: Config): void {
    this.config = c;
    this.configured = configuredSpecs(c);
    this.ports.setReserved(new Set(c.trackers.map((t) => t.tcp_port)));
  }

  /** Configured and provisioned specs (a configured one wins): a view, not a copy (every pass reads it). */
  desired(): DesiredSpecs {
    const { configured, provisioned } = this;
    return {
      get: (id) => configured.get(id) ?? provisioned.get(id),
      has: (id) => configured.has(id) || provisioned.has(id),
      *[Symbol.iterator]() {
        yield* configured;
        for (const e of provisioned) if (!configured.has(e[0])) yield e;
      },
    };
  }

  has(id: string): boolean {
    return this.configured.has(id) || this.provisioned.has(id);
  }

  /**
   * The unknown-node decision. A node with a tracker is accepted; a new one is
   * accepted if a tracker could be provisioned for it (a port is free, its name is
   * not taken), but nothing is taken yet: the port and the tracker wait for its
   * first frame in the ring (provision()), so a node whose frames are all invalid
   * holds neither.
   */
  async decide(info: NodeInfo): Promise<NodeDecision> {
    const id = info.node;
    if (this.configured.has(id) || this.provisioned.has(id)) return { accept: true };
    if (!this.config.tcp_server.auto_provision) {
      return this.refuse('disabled', `node ${id} has no tracker configured and tcp_server.auto_provision is false`);
    }
    const taken = this.nameProblem(id);
    if (taken) return taken;
    const got = await this.ports.allocate();
    if (got.port === null) return this.exhausted(id, got.busy);
    this.ports.release(got.port);
    this.awaiting.set(id, { remote: info.remote, retryAt: 0 });
    return { accept: true };
  }

  /**
   * An admitted node's first frame reached its ring: its tracker is provisioned now.
   * If the port it was admitted with went to another node meanwhile, this is retried
   * (at most every PROVISION_RETRY_MS) while its frames wait in the ring.
   */
  provision(id: string, now = Date.now()): Promise<void> {
    const running = this.inFlight.get(id);
    if (running) return running;
    const wait = this.awaiting.get(id);
    if (!wait || now < wait.retryAt) return Promise.resolve();
    const p = this.provisionNow(id, wait, now).finally(() => this.inFlight.delete(id));
    this.inFlight.set(id, p);
    return p;
  }

  private async provisionNow(id: string, wait: { remote: string; retryAt: number }, now: number): Promise<void> {
    const taken = this.nameProblem(id);
    const got = taken ? null : await this.ports.allocate();
    if (this.provisioned.has(id) || this.configured.has(id) || !this.awaiting.has(id)) {
      if (got?.port != null) this.ports.release(got.port);
      return;
    }
    if (taken || got === null || got.port === null) {
      wait.retryAt = now + PROVISION_RETRY_MS;
      const d = taken ?? this.exhausted(id, got && got.port === null ? got.busy : []);
      this.opts.log.warn({ node: id, reason: d.accept ? undefined : d.reason }, `${d.accept ? '' : d.message}; its frames wait in its ring, retried in ${PROVISION_RETRY_MS / 1000} s`);
      return;
    }
    const configuredNames = new Set([...this.configured.values()].map((s) => s.name));
    const spec: InstanceSpec = {
      name: provisionedName(id, configuredNames), nodeId: id, mode: 'tcp', port: got.port, origin: 'provisioned',
      apiForward: this.config.api_forward,
    };
    this.awaiting.delete(id);
    this.provisioned.set(id, spec);
    this.opts.log.info({ node: id, port: got.port, remote: wait.remote }, 'auto-provisioned a tracker for a new node (its first frame arrived)');
    this.opts.wake();
  }

  /**
   * Each pass: forgets admitted nodes gone from the node table before their first
   * frame, and provisions those whose ring holds frames (a ring's wake-up can be
   * missed: the consumer-idle flag belongs to a tracker that does not exist yet).
   */
  sweep(ringBytes: (id: string) => number | undefined): void {
    for (const id of this.awaiting.keys()) {
      const n = ringBytes(id);
      if (n === undefined) this.awaiting.delete(id);
      else if (n > 0) void this.provision(id).catch(() => undefined);
    }
  }

  /** A provisioned tracker's name clashes with a configured or provisioned one: the refusal, else null. */
  private nameProblem(id: string): NodeDecision | null {
    const configuredNames = new Set([...this.configured.values()].map((s) => s.name));
    const name = provisionedName(id, configuredNames);
    if (configuredNames.has(name) || [...this.provisioned.values()].some((s) => s.name === name)) {
      return this.refuse('name_taken',
        `node ${id} cannot get a tracker: its tracker name "${name}" (track file ${name}_<date>.jsonl) belongs to another tracker`);
    }
    return null;
  }

  private exhausted(id: string, busy: number[]): NodeDecision {
    const ts = this.config.tcp_server;
    const onOs = busy.length > 0 ? `, ${busy.length} in use by other programs on this host` : '';
    return this.refuse('ports_exhausted',
      `no free tracker port for node ${id}: auto_provision_port_start..end (${ts.auto_provision_port_start}..${ts.auto_provision_port_end}) ` +
      `is exhausted (${this.ports.inUse} held by trackers${onOs})`);
  }

  private refuse(reason: ProvisionRefusedReason, message: string): NodeDecision {
    this.refused[reason]++;
    // Not logged here: the node table logs every refusal under one rate limit.
    return { accept: false, reason, message };
  }
}
