// The tracker supervisor: one reconcile loop over the
// desired set (configured trackers + auto-provisioned nodes). Each pass stops
// what left the set, creates instances for new members, and runs every member's
// watcher (TrackerInstance.probe: process alive, input open, source up, then one
// lifecycle step). The trackers' resident memory is sampled against
// tracker.max_memory_mb (memory-watchdog.ts) in slices between passes
// (memory-sampler.ts). A watcher that throws leaves its
// tracker in `probe_error` with the message, and is run again on the next pass;
// a pass that throws is logged and counted, and the loop carries on. wakeup()
// runs a pass at once.
//
// It is also the engine's ring sink (onData feeds the node's tracker) and its
// provisioning hook (provisioning.ts); HTTP-polled nodes' frames reach their
// rings through local-producer.ts.
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { NodeEntry, NodeHooks, NodeTable } from '../nodes/node-table.js';
import type { EngineProbe, RingSink, SinkAccounting } from '../nodes/ring-sink.js';
import { createGeolocatorShared, geolocatorMetrics, geolocatorReservedPorts, retireTotals, type GeolocatorMetrics } from './geolocator.js';
import { nextDue, type LifecycleRules, type TrackerPhase } from './lifecycle.js';
import { procReader, type ProcReader } from './memory-watchdog.js';
import { MemorySampler } from './memory-sampler.js';
import type { PortAllocator } from './port-allocator.js';
import { Provisioning, type ProvisionRefusedReason } from './provisioning.js';
import { LocalProducer } from './local-producer.js';
import { CONFIG_POLL_FAILURES, type ConfigPollFailure } from './config-poller.js';
import { drainRings } from './shutdown-drain.js';
import { sumConsumption, type InputConsumption } from './input-report.js';
import type { TrackSummary } from './active-tracks.js';
import { addOutputCounts, zeroOutputCounts, type OutputCounts } from './output-counts.js';
import { resolveTrackerCommand, type TrackerCommand } from './tracker-command.js';
import { TrackerInstance, type InstanceContext, type InstanceSpec, type InstanceView } from './tracker-instance.js';
import { RunIds } from './run-id.js';
import { runIdFor } from './track-provenance.js';

export const TRACKER_STATES: readonly (TrackerPhase | 'probe_error')[] = [
  'idle', 'starting', 'running', 'outage', 'stopping', 'stopped', 'backoff', 'failed', 'probe_error',
];

export interface SupervisorOptions {
  config: Config;
  nodes: NodeTable;
  log: Logger;
  now?: () => number;
  /** Test-only fault injection: called inside each watcher and each pass (may throw). */
  faults?: { probe?(nodeId: string): void; pass?(): void; build?(nodeId: string): void };
  /** Replaces the OS check of provisioned ports (tests). */
  portIsFree?: (port: number) => Promise<boolean>;
  /** Replaces /proc for the memory ceiling (tests); null = no /proc. */
  procReader?: ProcReader | null;
  probe?: EngineProbe;
}

export interface TrackerMetrics {
  states: Record<string, number>;
  up: Array<[string, number]>;
  restarts: Array<[string, number]>;
  tracksWritten: number;
  /** Tracks seen for the first time (active-tracks.ts), over every instance, removed ones included. */
  tracksStarted: number;
  /** Live tracks now, summed over instances. */
  tracksActive: number;
  /** RESET lines sent to trackers to follow their node's clock again (ring-feeder.ts). */
  resets: number;
  /** RESETs nodes sent, passed on to their trackers. */
  nodeResets: number;
  /** Per node with a config_url: changes of its fetched config (config-poller.ts). */
  configChanges: Array<[string, number]>;
  /** Failed config_url polls by reason, over every instance (removed ones included). */
  configPollFailures: Record<ConfigPollFailure, number>;
  provisionRefused: Record<ProvisionRefusedReason, number>;
  passes: number;
  passErrors: number;
  probeErrors: number;
  /** Trackers killed for passing tracker.max_memory_mb. */
  memoryKills: number;
  geolocators: GeolocatorMetrics;
  /** stdout lines skipped (not track events) and events forwarded, summed over instances. */
  output: OutputCounts;
}

/** One instance's line in the status log: its state and active tracks. */
export interface InstanceTracks extends TrackSummary {
  name: string;
  /** The node id the tracker serves. */
  node: string;
  state: string;
}

/** New instances started per reconcile pass (each spawns a process: 5-8 ms of main thread). */
const SPAWNS_PER_PASS = 8;

/** A spec's identity for change detection, computed once per spec object (passes run every second). */
const specKeys = new WeakMap<InstanceSpec, string>();
function specKey(spec: InstanceSpec): string {
  let k = specKeys.get(spec);
  if (k === undefined) specKeys.set(spec, (k = JSON.stringify(spec)));
  return k;
}

/** Feeder counters of removed instances, so totals never go down. */
interface Retired { fed: number; duplicate: number; outOfOrder: number; lost: number; bad: number; tracks: number; started: number; resets: number; nodeResets: number; output: OutputCounts }

/** A desired instance whose construction threw: shown as probe_error, retried every pass. */
interface Unbuilt { spec: InstanceSpec; error: string; since: number }

export class TrackerSupervisor implements RingSink {
  readonly instances = new Map<string, TrackerInstance>();
  /** HTTP-polled nodes' ring producer. */
  private readonly local = new LocalProducer((node) => this.instances.get(node.id)?.pump());
  /** Main-thread counters for HTTP-polled frames (summed with the shards' at scrape time). */
  readonly counters = this.local.counters;
  private readonly provisioning: Provisioning;
  command: TrackerCommand;
  private readonly retired: Retired = { fed: 0, duplicate: 0, outOfOrder: 0, lost: 0, bad: 0, tracks: 0, started: 0, resets: 0, nodeResets: 0, output: zeroOutputCounts() };
  private readonly configPollFailures = zeroPollFailures();
  /** Desired instances that could not be built (by node id). */
  readonly unbuilt = new Map<string, Unbuilt>();
  /** Node ids whose instance waits because its name is held by another instance (logged once). */
  private readonly nameHeld = new Set<string>();
  /** performance.now() at the end of the last pass that did not throw (readiness). */
  private lastPassOkAt = performance.now();
  private lastPassFailed = false;
  private readonly ctx: InstanceContext;
  /** /proc for the memory ceiling; null where there is none. */
  private readonly proc: ProcReader | null;
  private readonly memory: MemorySampler<TrackerInstance> | null;
  private rules: LifecycleRules;
  private config: Config;
  /** Node ids whose old instance is still stopping: the new one waits (same port). */
  private readonly retiring = new Set<string>();
  /** Instances being removed: still counted until their totals move to `retired`. */
  private readonly leaving = new Set<TrackerInstance>();
  private readonly now: () => number;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | null = null;
  private wakePending = false;
  private running = false;
  private closed = false;
  /** Instances being removed (stop in progress). */
  private readonly removing = new Set<Promise<void>>();
  /** Shutdown leftovers: frames still in rings when the deadline came. */
  private lostAtShutdown = 0;
  passes = 0;
  passErrors = 0;
  memoryKills = 0;
  probeErrors = 0;
  lastPassError: string | null = null;

  constructor(private readonly opts: SupervisorOptions) {
    const c = (this.config = opts.config);
    this.now = opts.now ?? Date.now;
    this.log = opts.log;
    this.proc = opts.procReader !== undefined ? opts.procReader : procReader();
    const reader = this.proc;
    this.memory = reader && new MemorySampler(() => this.instances.values(), (i) => this.sampleMemory(i, reader), this.now);
    this.command = resolveTrackerCommand(c);
    this.rules = rulesOf(c);
    this.provisioning = new Provisioning({
      config: c, log: this.log, wake: () => this.wakeup(), ...(opts.portIsFree ? { portIsFree: opts.portIsFree } : {}),
    });
    this.ctx = {
      config: c, command: this.command, rules: this.rules, now: this.now, log: this.log,
      wake: () => this.wakeup(),
      writeFrame: (node, line, ts, n) => this.local.write(node, line, ts, n),
      dropFrame: (reason) => this.local.drop(reason),
      memoryKilled: () => {
        this.memoryKills++;
      },
      configPollFailed: (reason) => {
        this.configPollFailures[reason]++;
      },
      ...(opts.probe ? { probe: opts.probe } : {}),
      geolocators: createGeolocatorShared(c, opts.portIsFree),
      nextRunId: (node) => runIdFor(this.config.cluster, node.fence, this.runIds.next()),
    };
  }

  /** Run ids of the tracker processes (track ids unique across restarts). */
  private readonly runIds = new RunIds(() => this.config.output_dir, (claim) => {
    if (claim.problem !== null) this.log.warn({ epoch: claim.epoch, problem: claim.problem }, 'track id epoch: the counter in output_dir could not be used; the clock is the epoch');
    else this.log.info({ epoch: claim.epoch, output_dir: this.config.output_dir }, 'track id epoch claimed');
  });

  /** The port range of provisioned trackers. */
  get ports(): PortAllocator {
    return this.provisioning.ports;
  }

  /**
   * A reloaded config: the configured set is reconciled at once (added trackers
   * start, removed ones stop, changed ones are replaced); tracker settings
   * (command, timings, output) apply to every start from now on; lifecycle rules
   * at once. Auto-provisioned instances stay. The provisioning port range is fixed
   * until a restart.
   */
  reconfigure(c: Config): void {
    this.config = c;
    this.command = resolveTrackerCommand(c);
    this.rules = rulesOf(c);
    this.ctx.config = c;
    this.ctx.command = this.command;
    this.ctx.rules = this.rules;
    const before = [...this.provisioning.configured.keys()];
    this.provisioning.reconfigure(c);
    this.ctx.geolocators.ports.setReserved(geolocatorReservedPorts(c));
    for (const id of before) {
      const node = this.opts.nodes.get(id);
      if (node && !this.provisioning.configured.has(id)) {
        // No longer configured: a TCP node by that id goes through provisioning again.
        node.local = false;
        node.admitted = false;
      }
    }
    this.admitConfigured();
    this.runPass();
  }

  /** Configured nodes are known in advance (no provisioning); HTTP-polled ones take no TCP pushes. */
  private admitConfigured(): void {
    for (const spec of this.provisioning.configured.values()) {
      const node = this.opts.nodes.ensure(spec.nodeId);
      node.admitted = true;
      node.local = spec.mode === 'http';
    }
  }

  /** Hooks for the node table: provisioning and node up/down. */
  readonly hooks: NodeHooks = {
    onUnknownNode: (info) => this.provisioning.decide(info),
    onNodeConnected: (node) => {
      // A node admitted without a tracker yet: its first frame rings the doorbell (onData provisions it).
      if (this.provisioning.awaiting.has(node.id) && !node.reader.arm()) void this.provisioning.provision(node.id).catch(() => undefined);
      this.wakeup();
    },
    onNodeDisconnected: () => this.wakeup(),
  };

  /** Creates the configured instances (their trackers start on the first pass) and starts the loop. */
  start(): void {
    if (this.proc === null && this.config.tracker.max_memory_mb > 0) {
      this.log.warn({ max_memory_mb: this.config.tracker.max_memory_mb },
        'no /proc on this host: tracker.max_memory_mb applies only to the built-in tracker (its V8 heap limit)');
    }
    this.admitConfigured();
    this.runPass();
    this.memory?.start();
  }

  /** Runs a pass as soon as possible (coalesced). */
  wakeup(): void {
    if (this.wakePending || this.closed) return;
    this.wakePending = true;
    setImmediate(() => {
      this.wakePending = false;
      if (!this.closed) this.runPass();
    });
  }

  /** Whether a node's ring is still read or written here (configured, provisioned or its tracker not yet stopped). */
  usesRing(id: string): boolean {
    return this.provisioning.has(id) || this.instances.has(id) || this.retiring.has(id) || this.local.has(id);
  }

  // ---- ring sink ----

  onData(node: NodeEntry): void {
    const inst = this.instances.get(node.id);
    if (inst) inst.pump();
    // A new node's first frame is in its ring: now it gets its tracker.
    else if (this.provisioning.awaiting.has(node.id)) void this.provisioning.provision(node.id).catch(() => undefined);
  }

  accounting(): SinkAccounting {
    const r = this.retired;
    let delivered = r.fed;
    let inFlight = 0;
    const dropped = { duplicate: r.duplicate, out_of_order: r.outOfOrder, tracker_lost: r.lost, bad_record: r.bad, shutdown: this.lostAtShutdown };
    for (const i of [...this.instances.values(), ...this.leaving]) {
      const f = i.feeder;
      delivered += f.framesFed;
      inFlight += f.inFlight;
      dropped.duplicate += f.duplicate;
      dropped.out_of_order += f.outOfOrder;
      dropped.tracker_lost += f.lostInFlight;
      dropped.bad_record += f.badRecords;
    }
    return { delivered, inFlight, dropped };
  }

  // ---- the loop ----

  /** The last pass left desired instances for the next one (SPAWNS_PER_PASS). */
  private morePending = false;

  private runPass(): void {
    if (this.running || this.closed) return;
    this.running = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const t0 = process.hrtime.bigint();
    try {
      this.passes++;
      this.opts.faults?.pass?.();
      this.provisioning.sweep((id) => this.opts.nodes.get(id)?.reader.usedBytes);
      this.reconcile();
      this.lastPassFailed = false;
      this.lastPassOkAt = performance.now();
    } catch (err) {
      this.lastPassFailed = true;
      this.passErrors++;
      this.lastPassError = (err as Error).message;
      this.log.error({ err: (err as Error).message }, 'tracker supervisor pass failed; carrying on');
    } finally {
      this.running = false;
      this.opts.probe?.onReconcilePass?.(Number(t0), Number(process.hrtime.bigint()));
      if (!this.closed) {
        this.timer = setTimeout(() => this.runPass(), this.nextPassIn());
        this.timer.unref();
      }
    }
  }

  /** The pass interval, or sooner when a lifecycle deadline (outage limit, restart, cool-down) comes first. */
  private nextPassIn(): number {
    if (this.morePending) {
      this.morePending = false;
      return 0;
    }
    let ms = this.config.tracker.reconcile_interval_ms;
    const now = this.now();
    for (const i of this.instances.values()) {
      const due = nextDue(i.state, this.rules);
      if (due !== null) ms = Math.min(ms, Math.max(1, due - now));
    }
    return ms;
  }

  private reconcile(): void {
    const desired = this.provisioning.desired();
    for (const id of this.unbuilt.keys()) if (!desired.has(id)) this.unbuilt.delete(id);
    for (const id of this.nameHeld) if (!desired.has(id)) this.nameHeld.delete(id);
    for (const [id, inst] of this.instances) {
      const want = desired.get(id);
      // Gone from the set, or its configuration changed: stop it (a changed one is recreated once stopped).
      if (!want || (want !== inst.spec && specKey(want) !== specKey(inst.spec))) this.retire(id, inst);
    }
    // New instances spawn their process in this pass (probe below); a few per pass, so
    // that provisioning 1,000 nodes (5-8 ms of main thread per spawn) does not stall
    // every connection for seconds: the rest follow in the next passes, at once.
    let added = 0;
    for (const [id, spec] of desired) {
      if (this.instances.has(id) || this.retiring.has(id)) continue;
      if (added++ === SPAWNS_PER_PASS) {
        this.morePending = true;
        break;
      }
      if (this.nameInUse(spec.name, id)) {
        // Two instances must never share a track file: this one waits until the other is gone.
        if (!this.nameHeld.has(id)) {
          this.nameHeld.add(id);
          this.log.warn({ tracker: spec.name, node: id }, 'tracker name is used by another tracker instance; this one waits until it is free');
        }
        continue;
      }
      this.nameHeld.delete(id);
      const node = this.opts.nodes.ensure(id);
      let inst: TrackerInstance;
      try {
        this.opts.faults?.build?.(id);
        inst = new TrackerInstance(spec, node, this.ctx);
      } catch (err) {
        // One bad instance must not stop the others: it shows as probe_error and is retried.
        this.probeErrors++;
        const msg = (err as Error)?.message ?? String(err);
        const prev = this.unbuilt.get(id);
        if (prev?.error !== msg) this.log.error({ tracker: spec.name, node: id, err: msg }, 'tracker instance could not be built (probe_error)');
        this.unbuilt.set(id, { spec, error: msg, since: prev?.since ?? this.now() });
        continue;
      }
      this.unbuilt.delete(id);
      this.instances.set(id, inst);
      inst.start();
      this.log.info({ tracker: spec.name, node: id, port: spec.port, mode: spec.mode, origin: spec.origin }, 'tracker instance added');
    }
    for (const [id, inst] of this.instances) {
      try {
        this.opts.faults?.probe?.(id);
        inst.probe();
        if (inst.probeError !== null) {
          this.log.info({ tracker: inst.spec.name }, 'tracker probe recovered');
          inst.probeError = null;
        }
      } catch (err) {
        this.probeErrors++;
        const msg = (err as Error)?.message ?? String(err);
        if (inst.probeError !== msg) this.log.error({ tracker: inst.spec.name, err: msg }, 'tracker probe failed (probe_error)');
        inst.probeError = msg;
      }
    }
  }

  /** The memory ceiling for one tracker (a slice of the MemorySampler); an error is logged and counted. */
  private sampleMemory(i: TrackerInstance, reader: ProcReader): void {
    try {
      i.sampleMemory(reader);
    } catch (err) {
      this.probeErrors++;
      this.log.error({ tracker: i.spec.name, err: (err as Error)?.message ?? String(err) }, 'tracker memory sample failed');
    }
  }

  /** True when an instance of another node (running or still stopping) writes the track file `name`. */
  private nameInUse(name: string, nodeId: string): boolean {
    for (const i of this.instances.values()) if (i.spec.name === name && i.spec.nodeId !== nodeId) return true;
    for (const i of this.leaving) if (i.spec.name === name && i.spec.nodeId !== nodeId) return true;
    return false;
  }

  /**
   * Readiness: the reconcile loop completes passes. Fails while passes throw or
   * when none has completed for 5 intervals (at least 5 s); instances in
   * probe_error are reported but do not fail it (the other nodes are served).
   */
  health(): { ok: boolean; detail?: string } {
    if (this.lastPassFailed) return { ok: false, detail: `tracker supervisor pass failing: ${this.lastPassError ?? 'unknown error'}` };
    const age = performance.now() - this.lastPassOkAt;
    const limit = Math.max(5000, 5 * this.config.tracker.reconcile_interval_ms);
    if (age > limit) return { ok: false, detail: `no tracker supervisor pass completed for ${Math.round(age)} ms` };
    let bad = this.unbuilt.size;
    for (const i of this.instances.values()) if (i.probeError !== null) bad++;
    return bad > 0 ? { ok: true, detail: `${bad} tracker instance(s) in probe_error` } : { ok: true };
  }

  /** Stops and forgets an instance that left the desired set; releases its port. */
  private retire(id: string, inst: TrackerInstance): void {
    this.instances.delete(id);
    this.retiring.add(id);
    this.leaving.add(inst);
    const p = inst.stop('removed').then(() => inst.close(1000)).catch(() => undefined).then(() => {
      const f = inst.feeder;
      const r = this.retired;
      r.fed += f.framesFed;
      r.duplicate += f.duplicate;
      r.outOfOrder += f.outOfOrder;
      r.lost += f.lostInFlight + f.inFlight;
      r.bad += f.badRecords;
      r.tracks += inst.output.stats().linesWritten;
      r.started += inst.tracks.started;
      r.resets += f.resets;
      r.nodeResets += f.nodeResets;
      if (inst.geolocator) {
        retireTotals(this.ctx.geolocators.retired, inst.geolocator);
        inst.geolocator.release();
      }
      addOutputCounts(r.output, inst.outputCounts());
      this.leaving.delete(inst);
      if (inst.spec.origin === 'provisioned' && inst.spec.port !== undefined) this.ports.release(inst.spec.port);
      this.log.info({ tracker: inst.spec.name, node: id }, 'tracker instance removed');
      this.removing.delete(p);
      this.retiring.delete(id);
      this.wakeup();
    });
    this.removing.add(p);
  }

  /**
   * Removes an auto-provisioned instance: its tracker is stopped, its port released,
   * and the node goes through provisioning again if it comes back.
   */
  remove(nodeId: string): 'removed' | 'not_found' | 'configured' | 'connected' {
    const { provisioned, configured } = this.provisioning;
    const spec = provisioned.get(nodeId);
    const node = this.opts.nodes.get(nodeId);
    if (!spec) {
      if (configured.has(nodeId)) return 'configured';
      // Admitted but its tracker not provisioned yet (waiting for its first frame or a
      // port): the wait is dropped, so no tracker starts for it after this.
      if (!node?.healthy && this.provisioning.awaiting.delete(nodeId)) {
        if (node) node.admitted = false;
        return 'removed';
      }
      return 'not_found';
    }
    if (node?.healthy) return 'connected';
    provisioned.delete(nodeId);
    if (node) node.admitted = false;
    this.runPass();
    return 'removed';
  }

  // ---- views and metrics ----

  get(nodeId: string): TrackerInstance | undefined {
    return this.instances.get(nodeId);
  }

  /** The API's view of one node's tracker, built or not. */
  view(nodeId: string): InstanceView | undefined {
    const u = this.unbuilt.get(nodeId);
    return u ? unbuiltView(u) : this.instances.get(nodeId)?.view();
  }

  /** Every instance's view (those that could not be built as probe_error), by node id. */
  views(): InstanceView[] {
    return [...[...this.instances.values()].map((i) => i.view()), ...[...this.unbuilt.values()].map(unbuiltView)]
      .sort((a, b) => a.node_id.localeCompare(b.node_id));
  }

  metrics(): TrackerMetrics {
    const states: Record<string, number> = {};
    for (const s of TRACKER_STATES) states[s] = 0;
    states.probe_error! += this.unbuilt.size;
    let resets = this.retired.resets;
    let nodeResets = this.retired.nodeResets;
    const configChanges: Array<[string, number]> = [];
    const up: Array<[string, number]> = [];
    const restarts: Array<[string, number]> = [];
    let tracks = this.retired.tracks;
    let started = this.retired.started;
    let active = 0;
    const now = this.now();
    const output = addOutputCounts(zeroOutputCounts(), this.retired.output);
    for (const i of [...this.instances.values(), ...this.leaving]) addOutputCounts(output, i.outputCounts());
    for (const i of this.instances.values()) {
      states[i.shownState] = (states[i.shownState] ?? 0) + 1;
      up.push([i.spec.nodeId, i.up ? 1 : 0]);
      restarts.push([i.spec.nodeId, i.state.restarts]);
      tracks += i.output.stats().linesWritten;
      started += i.tracks.started;
      active += i.tracks.count(now);
      resets += i.feeder.resets;
      nodeResets += i.feeder.nodeResets;
      if (i.configPoller) configChanges.push([i.spec.nodeId, i.configPoller.state.changes]);
    }
    for (const i of this.leaving) {
      tracks += i.output.stats().linesWritten;
      started += i.tracks.started;
      resets += i.feeder.resets;
      nodeResets += i.feeder.nodeResets;
    }
    return {
      states, up, restarts, tracksWritten: tracks, tracksStarted: started, tracksActive: active, resets, nodeResets, configChanges, configPollFailures: { ...this.configPollFailures }, provisionRefused: { ...this.provisioning.refused },
      passes: this.passes, passErrors: this.passErrors, probeErrors: this.probeErrors, memoryKills: this.memoryKills,
      geolocators: geolocatorMetrics(stagesOf(this.instances.values()), this.ctx.geolocators.retired, stagesOf(this.leaving)), output,
    };
  }

  /** Per instance, its state and active tracks (the status log). */
  trackSummaries(): InstanceTracks[] {
    const now = this.now();
    return [...this.instances.values()].map((i) => ({ name: i.spec.name, node: i.spec.nodeId, state: i.shownState, ...i.tracks.summary(now) }));
  }

  // ---- shutdown ----

  /**
   * Delivers what is in the rings to the trackers that are up, until `drainUntil`
   * (a now() time); then stops every tracker (SIGTERM, SIGKILL after the grace),
   * flushes track files and forwarders, and counts frames still in rings as lost
   * (reason `shutdown`). The caller has stopped the producers first.
   */
  async shutdown(drainUntil: number, forwardDeadlineMs: number): Promise<{ drained: boolean; leftInRings: number; consumption: InputConsumption }> {
    // No new frames polled, and no config change restarting a tracker during the drain.
    await Promise.all([...this.instances.values()].flatMap((i) => [i.source?.stop(), i.configPoller?.stop()]));
    // New nodes whose first frames are in their rings but whose tracker is not provisioned
    // yet get it now (it starts like any other), so the drain reaches their frames too.
    const early = [...this.provisioning.awaiting.keys()].filter((id) => (this.opts.nodes.get(id)?.reader.usedBytes ?? 0) > 0);
    if (early.length > 0) {
      await Promise.all(early.map((id) => this.provisioning.provision(id).catch(() => undefined)));
      this.runPass();
    }
    const drained = await drainRings(() => this.instances.values(), this.now, drainUntil);
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.memory?.stop();
    const all = [...this.instances.values()];
    await Promise.all(all.map((i) => i.stop('shutdown')));
    const consumption = sumConsumption(all.map((i) => i.inputConsumption()));
    await Promise.all([...this.removing]);
    await Promise.all(all.map((i) => i.close(forwardDeadlineMs)));
    let left = 0;
    for (const n of this.opts.nodes.byRing) left += n.reader.frames;
    for (const n of this.opts.nodes.byRing) n.reader.discard(false); // lost at shutdown: not delivered
    this.lostAtShutdown += left;
    return { drained: drained && left === 0, leftInRings: left, consumption };
  }

  /** Stops without draining (an engine that never started its loop, or tests). */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.shutdown(this.now(), 1000);
  }
}

function zeroPollFailures(): Record<ConfigPollFailure, number> {
  return Object.fromEntries(CONFIG_POLL_FAILURES.map((r) => [r, 0])) as Record<ConfigPollFailure, number>;
}

function unbuiltView(u: Unbuilt): InstanceView {
  return {
    name: u.spec.name, node_id: u.spec.nodeId, mode: u.spec.mode, origin: u.spec.origin, state: 'probe_error',
    since: new Date(u.since).toISOString(), process: u.spec.remoteHost !== undefined ? 'remote' : 'local', pid: null, port: u.spec.port ?? null, restarts: 0, node_connected: false,
    last_frame_at: null, frames_fed: 0, frames_skipped: { duplicate: 0, out_of_order: 0 }, frames_lost: 0, resets: 0, tracks_written: 0,
    last_output_at: null, input_blocked: false, retry_at: null, cooldown_until: null, last_error: u.error, banned_until: null,
    rss_bytes: null, node_resets: 0, fence: 0, node_config: null, geolocator: null,
    active_tracks: 0, longest_tracks: [], tracks_active: 0, tracks_started: 0, output_skipped: zeroOutputCounts().skipped, forward: null,
  };
}

function* stagesOf(list: Iterable<TrackerInstance>): Iterable<NonNullable<TrackerInstance['geolocator']>> {
  for (const i of list) if (i.geolocator) yield i.geolocator;
}

function rulesOf(c: Config): LifecycleRules {
  return {
    extendedOutageMs: c.retry.extended_outage_sec * 1000,
    backoffBaseMs: c.tracker.restart_backoff_ms,
    backoffMaxMs: c.tracker.restart_backoff_max_ms,
    flapMaxRestarts: c.tracker.flap_max_restarts,
    flapWindowMs: c.tracker.flap_window_ms,
    flapCooldownMs: c.tracker.flap_cooldown_ms,
    // A run as long as the flap window counts as healthy: the backoff starts over.
    stableAfterMs: c.tracker.flap_window_ms,
  };
}
