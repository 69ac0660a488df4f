// A tracker's geolocator: the second stage after the tracker, for trackers with
// `geolocator.enabled`. Every track event the tracker writes to its track file
// is queued here and sent, one JSON line each, to the geolocator's TCP port; what
// the geolocator prints on stdout (solutions) goes to
// `{output_dir}/{name}_solutions_{date}.jsonl`.
//
// It follows its tracker: it is wanted once the tracker runs and for as long as
// the tracker is running, restarting after a crash or being stopped; it is stopped
// when the tracker is stopped for good (extended outage, removal, shutdown) or
// parked by the flapping guard, after the tracker's last events reached it.
// Its own process has the tracker's lifecycle rules (lifecycle.ts: start, crash
// restart with backoff, flapping guard) and the same process handling
// (tracker-process.ts: output always read, input with back-pressure, stop with
// EOF first). The tracker never waits for it: events go through a bounded queue
// whose overflow is counted.
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { RateLimit } from '../telemetry/rate-limit.js';
import { EventQueue } from './geolocator-queue.js';
import { geolocatorConfigPath, resolveGeolocatorCommand, usesRadarConfig, withRadarConfig } from './geolocator-command.js';
import { fetchRadarConfig, writeRadarConfig } from './geolocator-radar-config.js';
import { initialState, nextDue, step, type LifecycleEvent, type LifecycleRules, type LifecycleState, type TrackerPhase } from './lifecycle.js';
import { PortAllocator, portIsFree } from './port-allocator.js';
import { TrackerProcess } from './tracker-process.js';
import { TrackFileWriter } from './track-output.js';

export const GEOLOCATOR_DROP_REASONS = ['queue_full', 'not_running', 'lost', 'shutdown'] as const;
export type GeolocatorDropReason = (typeof GEOLOCATOR_DROP_REASONS)[number];

/** Events queued per geolocator at most (and bytes): beyond, the oldest are dropped (queue_full). */
export const MAX_QUEUED_EVENTS = 10_000;
export const MAX_QUEUED_BYTES = 32 << 20;
/** One write to the geolocator carries at most this much. */
const BATCH_EVENTS = 256;
const BATCH_BYTES = 256 << 10;

export interface GeolocatorSpec {
  /** trackers[].geolocator.tcp_port; 0: one is allocated (server.geolocator_tcp_port_base upward). */
  port: number;
  /** trackers[].geolocator.geolocator_config_path. */
  configPath?: string | undefined;
  /** The tracker's config_url: where the node's radar config is fetched. */
  configUrl?: string | undefined;
}

/** Shared by the geolocators of one supervisor. */
export interface GeolocatorShared {
  /** Ports for geolocators whose tcp_port is 0. */
  ports: PortAllocator;
  /** Counters of removed geolocators, so totals never go down. */
  retired: GeolocatorTotals;
}

export interface GeolocatorTotals {
  received: number;
  fed: number;
  dropped: Record<GeolocatorDropReason, number>;
  solutions: number;
}

export const emptyTotals = (): GeolocatorTotals => ({ received: 0, fed: 0, dropped: { queue_full: 0, not_running: 0, lost: 0, shutdown: 0 }, solutions: 0 });

/** The part of the tracker instance's context a geolocator uses (read at each use: a reload replaces it). */
export interface GeolocatorContext {
  config: Config;
  rules: LifecycleRules;
  now: () => number;
  log: Logger;
}

/** GET /api/v1/trackers/{id} → `geolocator`. */
export interface GeolocatorView {
  state: TrackerPhase;
  since: string;
  pid: number | null;
  port: number | null;
  radar_config: string | null;
  events_received: number;
  events_fed: number;
  events_queued: number;
  events_dropped: Record<GeolocatorDropReason, number>;
  solutions_written: number;
  solutions_skipped: number;
  last_solution_at: string | null;
  restarts: number;
  retry_at: string | null;
  cooldown_until: string | null;
  last_error: string | null;
}

/**
 * Whether a tracker's geolocator is wanted, given whether it was (`paired`) and
 * the tracker's lifecycle state. It starts once the tracker runs; it stays through
 * the tracker's crash restarts and its stop (whose last events it must still get);
 * it goes when the tracker is stopped for good, idle, or parked by the flapping guard.
 */
export function geolocatorWanted(paired: boolean, tracker: TrackerPhase): boolean {
  switch (tracker) {
    case 'running':
    case 'outage':
      return true;
    case 'starting':
    case 'backoff':
    case 'stopping':
      return paired;
    case 'idle':
    case 'stopped':
    case 'failed':
      return false;
  }
}

const iso = (ms: number): string | null => (ms > 0 ? new Date(ms).toISOString() : null);

/** TrackerProcess names itself a tracker; for a geolocator the message says so. */
const relabel = (msg: string): string => msg.replace(/^tracker for node /, 'geolocator for node ');

export class GeolocatorStage {
  readonly output: TrackFileWriter;
  private readonly queue = new EventQueue(MAX_QUEUED_EVENTS, MAX_QUEUED_BYTES);
  private _state: LifecycleState;
  private paired = false;
  private proc: TrackerProcess | null = null;
  /** The start in preparation (port, radar config); replaced or cleared when it no longer counts. */
  private launch: object | null = null;
  private allocatedPort: number | null = null;
  private radarPath: string | null = null;
  /** The last radar config obtained (fetched or handed over), and whether it was handed over. */
  private radar: { value: unknown; json: string } | null = null;
  private radarHandedOver = false;
  /** JSON of the radar config the current process was started with. */
  private radarInUse: string | null = null;
  private waitingWritable = false;
  private inFlight = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopWaiters: Array<() => void> = [];
  private closed = false;
  private readonly stderrLimit: RateLimit;
  private readonly skipLimit: RateLimit;
  readonly counters = { received: 0, fed: 0, solutionsSkipped: 0 };
  readonly dropped: Record<GeolocatorDropReason, number> = { queue_full: 0, not_running: 0, lost: 0, shutdown: 0 };
  lastSolutionAt = 0;

  constructor(
    readonly name: string,
    readonly nodeId: string,
    readonly spec: GeolocatorSpec,
    private readonly ctx: GeolocatorContext,
    private readonly shared: GeolocatorShared,
    /** Asks for the next lifecycle tick (from the owner: it passes the tracker's state). */
    private readonly requestTick: () => void,
  ) {
    this._state = initialState(ctx.now(), false);
    this.output = new TrackFileWriter({
      outputDir: ctx.config.output_dir,
      name: `${name}_solutions`,
      host: ctx.config.cluster?.host_id,
      now: ctx.now,
      onError: (err) => ctx.log.error({ tracker: name, err: err.message }, 'solutions file error'),
    });
    this.stderrLimit = new RateLimit(Math.max(1, ctx.config.tracker.stderr_lines_per_10s), 10_000, ctx.now);
    this.skipLimit = new RateLimit(1, 10_000, ctx.now);
  }

  get state(): LifecycleState {
    return this._state;
  }
  /** Process running with its input open. */
  get up(): boolean {
    return this.proc !== null && this.proc.writable && (this._state.phase === 'running' || this._state.phase === 'outage');
  }
  /** The port in use: the configured one, or the allocated one (null before the first start). */
  get port(): number | null {
    return this.spec.port > 0 ? this.spec.port : this.allocatedPort;
  }

  /** One lifecycle tick against the tracker's current state (after each of its transitions, and every pass). */
  follow(tracker: LifecycleState): void {
    if (this.closed) return;
    this.paired = geolocatorWanted(this.paired, tracker.phase);
    this.apply({ type: 'tick', sourceUp: this.paired });
  }

  /**
   * Events are kept while a geolocator runs or is on its way (starting, waiting to
   * restart, restarting for a new radar config); not while there is none to come.
   */
  private get accepting(): boolean {
    const p = this._state.phase;
    if (this.closed || p === 'failed') return false;
    return this.paired || (p !== 'idle' && p !== 'stopped' && p !== 'stopping');
  }

  /** One track event (a line of the track file). Never blocks: queued, or dropped and counted. */
  offer(line: string): void {
    this.counters.received++;
    if (!this.accepting) {
      this.dropped.not_running++;
      return;
    }
    this.dropped.queue_full += this.queue.push(Buffer.from(line.endsWith('\n') ? line : `${line}\n`, 'utf8'));
    this.pump();
  }

  /**
   * The node's radar config, from whoever already polls config_url: used for every
   * start from now on (no fetch of its own), and a running geolocator started with
   * a different one is restarted with it.
   */
  setRadarConfig(value: unknown): void {
    const json = JSON.stringify(value);
    this.radar = { value, json };
    this.radarHandedOver = true;
    const p = this._state.phase;
    if (this.radarInUse !== null && this.radarInUse !== json && (p === 'running' || p === 'outage' || p === 'starting')) {
      this.ctx.log.info({ tracker: this.name, node: this.nodeId }, 'radar config changed: restarting the geolocator');
      // Through idle: the next tick starts it again with the new file (not counted as a crash).
      this.apply({ type: 'stop', reason: 'removed' });
    }
  }

  /** Stop for good (removal or shutdown): pending events are sent first. Resolves when the process is gone. */
  async stop(reason: 'removed' | 'shutdown'): Promise<void> {
    this.paired = false;
    this.apply({ type: 'stop', reason });
    if (this._state.phase === 'stopping') await new Promise<void>((r) => this.stopWaiters.push(r));
  }

  /** After stop(): flushes the solutions file; no more starts. */
  async close(): Promise<void> {
    this.closed = true;
    this.launch = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const left = this.queue.clear();
    this.dropped.shutdown += left;
    await this.output.close();
  }

  /** Frees an allocated port (the instance is gone). */
  release(): void {
    if (this.allocatedPort !== null) this.shared.ports.release(this.allocatedPort);
    this.allocatedPort = null;
  }

  totals(): GeolocatorTotals {
    return { received: this.counters.received, fed: this.counters.fed, dropped: { ...this.dropped }, solutions: this.output.stats().linesWritten };
  }

  view(): GeolocatorView {
    const s = this._state;
    return {
      state: s.phase,
      since: new Date(s.since).toISOString(),
      pid: this.proc && this.proc.state !== 'exited' ? this.proc.pid ?? null : null,
      port: this.port,
      radar_config: this.radarPath,
      events_received: this.counters.received,
      events_fed: this.counters.fed,
      events_queued: this.queue.length + this.inFlight,
      events_dropped: { ...this.dropped },
      solutions_written: this.output.stats().linesWritten,
      solutions_skipped: this.counters.solutionsSkipped,
      last_solution_at: iso(this.lastSolutionAt),
      restarts: s.restarts,
      retry_at: s.phase === 'backoff' ? iso(s.retryAt) : null,
      cooldown_until: s.phase === 'failed' ? iso(s.cooldownUntil) : null,
      last_error: s.lastError,
    };
  }

  // ---- lifecycle ----

  private rules(): LifecycleRules {
    // Its "source" is its tracker: once that is gone for good there is nothing to wait for.
    return { ...this.ctx.rules, extendedOutageMs: 0 };
  }

  private apply(ev: LifecycleEvent): void {
    const before = this._state;
    const rules = this.rules();
    const t = step(before, ev, this.ctx.now(), rules);
    this._state = t.state;
    const phase = t.state.phase;
    if (phase !== before.phase) {
      const level = phase === 'failed' || phase === 'backoff' ? 'warn' : 'info';
      this.ctx.log[level]({
        tracker: this.name, node: this.nodeId, from: before.phase, to: phase, event: ev.type,
        ...(t.state.lastError && t.state.lastError !== before.lastError ? { error: t.state.lastError } : {}),
        ...(phase === 'backoff' ? { retry_in_ms: t.state.retryAt - this.ctx.now() } : {}),
      }, 'geolocator state');
      if ((phase === 'idle' || phase === 'stopped' || phase === 'failed') && !this.accepting) {
        // Nothing will read them: counted, not kept.
        const n = this.queue.clear();
        if (t.state.stopReason === 'shutdown') this.dropped.shutdown += n;
        else this.dropped.not_running += n;
      }
    }
    if (phase !== 'stopping') {
      const ws = this.stopWaiters;
      this.stopWaiters = [];
      for (const w of ws) w();
    }
    if (t.action === 'spawn') this.spawn();
    else if (t.action === 'stop') this.stopProcess();
    this.schedule(rules);
  }

  /** A timer for the next rule that falls due (a restart, the end of a cool-down). */
  private schedule(rules: LifecycleRules): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const due = nextDue(this._state, rules);
    if (due === null || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.requestTick();
    }, Math.max(1, due - this.ctx.now()));
    this.timer.unref();
  }

  private spawn(): void {
    const token = {};
    this.launch = token;
    this.prepare().then((prep) => {
      if (this.launch !== token) return;
      this.launch = null;
      this.startProcess(prep);
    }, (err: Error) => {
      if (this.launch !== token) return;
      this.launch = null;
      this.apply({ type: 'start_failed', error: relabel(err.message) });
    });
  }

  /** What a start needs before the process: the command, a port, the radar config file. */
  private async prepare(): Promise<{ argv: string[]; cwd: string | undefined; env: Record<string, string>; port: number; configPath: string | undefined }> {
    const c = this.ctx.config;
    const cmd = resolveGeolocatorCommand(c);
    if (cmd.cwd !== undefined && !existsSync(cmd.cwd)) {
      throw new Error(`geolocator for node ${this.nodeId}: retina_geolocator_path ${cmd.cwd} does not exist`);
    }
    const port = await this.ensurePort();
    if (!(await portIsFree(port))) {
      throw new Error(`geolocator for node ${this.nodeId}: port ${port} is already in use on 127.0.0.1`);
    }
    let argv = cmd.argv;
    if (usesRadarConfig(argv)) {
      const radar = await this.radarConfig();
      this.radarPath = writeRadarConfig(c.output_dir, this.name, radar.value);
      this.radarInUse = radar.json;
      argv = withRadarConfig(argv, this.radarPath);
    }
    return { argv, cwd: cmd.cwd, env: cmd.env, port, configPath: geolocatorConfigPath(this.spec.configPath, cmd.cwd) };
  }

  private async ensurePort(): Promise<number> {
    if (this.spec.port > 0) return this.spec.port;
    if (this.allocatedPort !== null) return this.allocatedPort;
    const got = await this.shared.ports.allocate();
    if (got.port === null) {
      throw new Error(`geolocator for node ${this.nodeId}: no free port from server.geolocator_tcp_port_base (${this.shared.ports.start}) upward`);
    }
    if (this.closed) {
      this.shared.ports.release(got.port);
      throw new Error(`geolocator for node ${this.nodeId}: removed while starting`);
    }
    this.allocatedPort = got.port;
    return got.port;
  }

  /** Fetched at every start (as tracker-host did), unless handed over; the last good one covers a failed fetch. */
  private async radarConfig(): Promise<{ value: unknown; json: string }> {
    if (this.radarHandedOver && this.radar) return this.radar;
    const url = this.spec.configUrl;
    if (url === undefined || url === '') {
      throw new Error(`geolocator for node ${this.nodeId}: the tracker has no config_url (the geolocator needs the node's radar config)`);
    }
    try {
      const value = await fetchRadarConfig(url);
      this.radar = { value, json: JSON.stringify(value) };
    } catch (err) {
      const msg = `radar config from ${url}: ${(err as Error).message}`;
      if (!this.radar) throw new Error(`geolocator for node ${this.nodeId}: ${msg}`);
      this.ctx.log.warn({ tracker: this.name, node: this.nodeId, err: msg }, 'radar config fetch failed; the geolocator starts with the last one fetched');
    }
    return this.radar!;
  }

  private startProcess(prep: { argv: string[]; cwd: string | undefined; env: Record<string, string>; port: number; configPath: string | undefined }): void {
    const c = this.ctx.config;
    let proc: TrackerProcess;
    try {
      proc = new TrackerProcess({
        command: prep.argv,
        ...(prep.cwd !== undefined ? { cwd: prep.cwd } : {}),
        env: prep.env,
        nodeId: this.nodeId,
        port: prep.port,
        ...(prep.configPath !== undefined ? { configPath: prep.configPath } : {}),
        input: 'tcp',
        connectRetries: c.tcp_connect_retries,
        retryDelayMs: c.tcp_retry_delay_sec * 1000,
        startupDelayMs: c.geolocator_startup_delay_sec * 1000,
        failStopGraceMs: c.tracker.stop_grace_ms,
        now: this.ctx.now,
        trackLine: (line) => this.solution(line),
        stderrLine: (line) => this.stderrLine(line),
        onExit: (code, signal) => {
          if (this.proc !== proc) return;
          const why = signal ? `exited on ${signal}` : `exited with code ${code}`;
          this.apply(this._state.phase === 'stopping' ? { type: 'stopped' } : { type: 'exited', error: `geolocator ${why}` });
          this.requestTick();
        },
      });
    } catch (err) {
      this.apply({ type: 'start_failed', error: relabel((err as Error).message) });
      return;
    }
    this.proc = proc;
    this.waitingWritable = false;
    proc.start().then(() => {
      if (this.proc !== proc) return;
      this.apply({ type: 'started' });
      this.ctx.log.info({ tracker: this.name, node: this.nodeId, pid: proc.pid, port: prep.port, radar_config: this.radarPath }, 'geolocator running');
      this.pump();
    }, (err: Error) => {
      if (this.proc !== proc) return;
      this.apply(this._state.phase === 'stopping' ? { type: 'stopped' } : { type: 'start_failed', error: relabel(err.message) });
      this.requestTick();
    });
  }

  /** Asked to stop (its tracker is gone, removal, shutdown, a new radar config): pending events first. */
  private stopProcess(): void {
    this.launch = null;
    const proc = this.proc;
    if (!proc || proc.state === 'exited') {
      this.apply({ type: 'stopped' });
      this.requestTick();
      return;
    }
    // Everything queued goes into the input before it is ended: the geolocator reads
    // to EOF (up to 2 s) before it is sent SIGTERM (tracker-process.ts).
    this.pump(true);
    proc.stop(this.ctx.config.tracker.stop_grace_ms).then(() => {
      if (this.proc !== proc) return;
      this.apply({ type: 'stopped' });
      this.requestTick();
    }, () => undefined);
  }

  // ---- feeding ----

  /** Moves queued events to the geolocator's input, one batch per write, until it is back-pressured (`all`: regardless). */
  private pump(all = false): void {
    const proc = this.proc;
    if (!proc || !proc.writable) return;
    if (this.waitingWritable && !all) return;
    for (;;) {
      const batch = this.queue.take(BATCH_EVENTS, BATCH_BYTES);
      if (!batch) return;
      const n = batch.count;
      this.inFlight += n;
      const ok = proc.write(batch.buf, (err) => {
        this.inFlight -= n;
        if (err) this.dropped.lost += n;
        else this.counters.fed += n;
      });
      if (!ok && !all) {
        this.waitingWritable = true;
        proc.whenWritable().then(() => {
          this.waitingWritable = false;
          if (this.proc === proc) this.pump();
        }, () => undefined);
        return;
      }
    }
  }

  // ---- output ----

  private solution(line: string): void {
    // Solutions are JSON lines; anything else (a progress message) is not one.
    try {
      JSON.parse(line);
    } catch {
      this.counters.solutionsSkipped++;
      const n = this.skipLimit.take('skip');
      if (n >= 0) this.ctx.log.warn({ tracker: this.name, node: this.nodeId, line: line.slice(0, 200) }, 'geolocator stdout line is not JSON; skipped');
      return;
    }
    this.lastSolutionAt = this.ctx.now();
    this.output.write(line);
  }

  private stderrLine(line: string): void {
    const n = this.stderrLimit.take('stderr');
    if (n < 0) return;
    this.ctx.log.info({ tracker: this.name, node: this.nodeId, ...(n > 0 ? { suppressed: n } : {}) }, `geolocator stderr: ${line}`);
  }
}

/** Per node and summed, for /metrics: live stages plus the retired totals. */
export interface GeolocatorMetrics {
  up: Array<[string, number]>;
  restarts: Array<[string, number]>;
  fed: number;
  dropped: Record<GeolocatorDropReason, number>;
  solutions: number;
}

export function geolocatorMetrics(stages: Iterable<GeolocatorStage>, retired: GeolocatorTotals, leaving: Iterable<GeolocatorStage> = []): GeolocatorMetrics {
  const m: GeolocatorMetrics = { up: [], restarts: [], fed: retired.fed, dropped: { ...retired.dropped }, solutions: retired.solutions };
  const add = (s: GeolocatorStage): void => {
    const t = s.totals();
    m.fed += t.fed;
    m.solutions += t.solutions;
    for (const r of GEOLOCATOR_DROP_REASONS) m.dropped[r] += t.dropped[r];
  };
  for (const s of stages) {
    m.up.push([s.nodeId, s.up ? 1 : 0]);
    m.restarts.push([s.nodeId, s.state.restarts]);
    add(s);
  }
  for (const s of leaving) add(s);
  return m;
}

/** Moves a removed stage's counters into the retired totals. */
export function retireTotals(retired: GeolocatorTotals, s: GeolocatorStage): void {
  const t = s.totals();
  retired.received += t.received;
  retired.fed += t.fed;
  retired.solutions += t.solutions;
  for (const r of GEOLOCATOR_DROP_REASONS) retired.dropped[r] += t.dropped[r];
}

/**
 * Ports never allocated to a geolocator: every configured tracker's and
 * geolocator's tcp_port, and the whole auto-provisioning range (tracker ports
 * handed out later must not be found taken by a geolocator).
 */
export function geolocatorReservedPorts(c: Config): Set<number> {
  const r = new Set<number>();
  for (const t of c.trackers) {
    r.add(t.tcp_port);
    if (t.geolocator.tcp_port > 0) r.add(t.geolocator.tcp_port);
  }
  for (let p = c.tcp_server.auto_provision_port_start; p <= c.tcp_server.auto_provision_port_end; p++) r.add(p);
  return r;
}

export function createGeolocatorShared(c: Config, isFree?: (port: number) => Promise<boolean>): GeolocatorShared {
  return {
    ports: new PortAllocator(c.server.geolocator_tcp_port_base, 65535, geolocatorReservedPorts(c), ...(isFree ? [isFree] : [])),
    retired: emptyTotals(),
  };
}
