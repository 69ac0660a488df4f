// One node's tracker: its lifecycle state (lifecycle.ts decides), the running
// subprocess, the feeder from the node's ring, the track file, the optional
// API forwarder, and for mode http the poller that produces the frames. The
// supervisor calls probe() on every pass; events (process exit, start result,
// node up/down) apply a lifecycle step at once and wake the supervisor.
import type { Logger } from 'pino';
import type { ApiForwardConfig, Config } from '../config.js';
import type { NodeEntry } from '../nodes/node-table.js';
import { RateLimit } from '../telemetry/rate-limit.js';
import { ActiveTracks, type TrackLength } from './active-tracks.js';
import { ApiForwarder } from './api-forwarder.js';
import { ConfigPoller, type ConfigPollFailure, type ConfigPollView } from './config-poller.js';
import { GeolocatorStage, type GeolocatorShared, type GeolocatorSpec, type GeolocatorView } from './geolocator.js';
import { HttpSource, type HttpSourceDrop } from './http-source.js';
import { initialState, step, type LifecycleEvent, type LifecycleRules, type LifecycleState, type TrackerPhase } from './lifecycle.js';
import { memoryVerdict, sampleResident, type ProcReader } from './memory-watchdog.js';
import { RingFeeder } from './ring-feeder.js';
import { trackerConfigPath, type TrackerCommand } from './tracker-command.js';
import { TrackerProcess } from './tracker-process.js';
import { RemoteTracker, type TrackerHandle } from './remote-tracker.js';
import { TrackFileWriter } from './track-output.js';
import { classifyTrackLine, type OutputSkipReason } from './track-line.js';
import { withProvenance } from './track-provenance.js';
import { zeroOutputCounts, type OutputCounts } from './output-counts.js';
import type { EngineProbe } from '../nodes/ring-sink.js';

export interface InstanceSpec {
  name: string;
  nodeId: string;
  mode: 'tcp' | 'http';
  /** The tracker's input port (TCP input), from the config or the provisioning range. */
  port: number | undefined;
  origin: 'configured' | 'provisioned';
  trackerConfig?: string | undefined;
  detectionUrl?: string | undefined;
  /** The node's radar config, polled every config_poll_interval_sec; a change restarts the tracker. */
  configUrl?: string | undefined;
  apiForward: ApiForwardConfig;
  /** Set for a tracker that runs elsewhere (spawn_tracker: false): the host only connects to remoteHost:port. */
  remoteHost?: string | undefined;
  /** trackers[].geolocator when enabled: the second stage (geolocator.ts). */
  geolocator?: GeolocatorSpec | undefined;
}

/** Shared by every instance; a config reload updates it in place. */
export interface InstanceContext {
  config: Config;
  command: TrackerCommand;
  rules: LifecycleRules;
  now: () => number;
  log: Logger;
  /** Ask for a reconcile pass soon (something changed). */
  wake(): void;
  /** mode http: write one polled frame into the node's ring; false = not written (counted by the callee). */
  writeFrame(node: NodeEntry, line: Buffer, timestamp: number, detections: number): boolean;
  /** mode http: a polled response that was not a frame. */
  dropFrame(reason: HttpSourceDrop): void;
  /** A tracker was killed for passing tracker.max_memory_mb (counted). */
  memoryKilled(): void;
  /** A config_url poll failed (counted). */
  configPollFailed?(reason: ConfigPollFailure): void;
  probe?: EngineProbe;
  /** Ports and retired counters of geolocators. */
  geolocators: GeolocatorShared;
  /** A run id for each tracker process spawned (run-id.ts; with a cluster, track-provenance.ts); none: no `{run_id}`. */
  nextRunId?(node: NodeEntry): string;
}

/** The API's view of an instance (GET /api/v1/trackers). */
export interface InstanceView {
  name: string;
  node_id: string;
  mode: 'tcp' | 'http';
  origin: 'configured' | 'provisioned';
  state: TrackerPhase | 'probe_error';
  since: string;
  /** local: a subprocess of this host; remote: a tracker elsewhere that the host only feeds (pid null). */
  process: 'local' | 'remote';
  pid: number | null;
  port: number | null;
  restarts: number;
  node_connected: boolean;
  last_frame_at: string | null;
  frames_fed: number;
  frames_skipped: { duplicate: number; out_of_order: number };
  frames_lost: number;
  /** RESET lines sent after a run of out-of-order frames (the tracker then follows the node's clock again). */
  resets: number;
  tracks_written: number;
  last_output_at: string | null;
  input_blocked: boolean;
  retry_at: string | null;
  cooldown_until: string | null;
  last_error: string | null;
  /** The node is refused until then for reconnecting too often (limits.reconnect_*). */
  banned_until: string | null;
  /** Resident memory of the running tracker (and its descendants) at the last sample, null when not sampled. */
  rss_bytes: number | null;
  /** RESETs the node sent, passed on to its tracker. */
  node_resets: number;
  /** Several hosts: the fence of this host's lease on the node (0: single host, or unfenced). */
  fence: number;
  /** The node's config from config_url (null: no config_url). */
  node_config: ConfigPollView | null;
  /** The tracker's geolocator (null without one). */
  geolocator: GeolocatorView | null;
  /** Tracks of the running tracker with an event in the last minute (active-tracks.ts). */
  active_tracks: number;
  /** The longest of them, longest first, at most 10. */
  longest_tracks: TrackLength[];
  /** Live tracks: the same count as active_tracks (a `deleted` event ends a track at once). */
  tracks_active: number;
  /** Tracks seen for the first time, over every process of this instance. */
  tracks_started: number;
  /** stdout lines that were not track events, by reason (not stored, not forwarded). */
  output_skipped: Record<OutputSkipReason, number>;
  /** api_forward: events sent, failed, dropped, and waiting now; null when forwarding is off. */
  forward: { sent: number; failed: number; dropped: number; queued: number } | null;
}

/** Warnings about skipped stdout lines (and, separately, failed forwards) per tracker per 10 s; the rest are counted only. */
const SKIP_WARNINGS_PER_10S = 5;
/** Characters of a skipped line quoted in its warning. */
const SKIP_QUOTE_CHARS = 100;

const iso = (ms: number): string | null => (ms > 0 ? new Date(ms).toISOString() : null);

export class TrackerInstance {
  readonly spec: InstanceSpec;
  readonly node: NodeEntry;
  readonly feeder: RingFeeder;
  readonly output: TrackFileWriter;
  readonly forwarder: ApiForwarder | null;
  readonly source: HttpSource | null;
  /**
   * Polls the node's config_url (null without one). Other stages read the latest
   * config (`configPoller.latest`) and hear the baseline and each change
   * (`configPoller.subscribe`).
   */
  readonly configPoller: ConfigPoller | null;
  /** The second stage: the geolocator fed with this tracker's events (null without one). */
  readonly geolocator: GeolocatorStage | null;
  private _state: LifecycleState;
  proc: TrackerHandle | null = null;
  /** The message of the probe that threw on the last pass (shown as state probe_error). */
  probeError: string | null = null;
  lastOutputAt = 0;
  /** Lines the tracker printed on stderr that the rate limit kept out of the log. */
  stderrSuppressed = 0;
  private readonly stderrLimit: RateLimit;
  /** Active tracks of the current process, from its track events. */
  readonly tracks = new ActiveTracks();
  /** stdout lines skipped as not JSON objects (lines the splitter dropped are counted by the process). */
  private readonly skipped = { not_json: 0, not_object: 0 };
  /** Lines the line splitter of earlier processes dropped: over-long, or an unterminated non-JSON tail. */
  private readonly pastDrops = { tooLong: 0, partial: 0 };
  /** Rate limit of the warnings about skipped lines and failed forwards (one key each). */
  private readonly warnLimit: RateLimit;
  private readonly ctx: InstanceContext;
  private stopWaiters: Array<() => void> = [];
  /** The running process's resident memory at the last sample (memory-watchdog.ts). */
  private rssBytes: number | null = null;
  /** now() of the last sample of the current process (-Infinity: none yet). */
  rssSampledAt = -Infinity;
  /** Why the host killed the current process (its memory ceiling), shown as its exit error. */
  private killedFor: string | null = null;

  constructor(spec: InstanceSpec, node: NodeEntry, ctx: InstanceContext) {
    this.spec = spec;
    this.node = node;
    this.ctx = ctx;
    const now = ctx.now();
    // A configured TCP tracker starts at boot: its source counts as down since now,
    // so it runs for extended_outage and is then stopped if its node never came.
    this._state = initialState(now, spec.mode === 'tcp' ? node.healthy : true);
    const probe = ctx.probe?.onTrackerWrite?.bind(ctx.probe);
    this.feeder = new RingFeeder({ reader: node.reader, now: ctx.now, ...(probe ? { onWrite: (b: Buffer) => probe(node.id, b) } : {}) });
    this.output = new TrackFileWriter({
      outputDir: ctx.config.output_dir,
      name: spec.name,
      now: ctx.now,
      date: ctx.config.output_date,
      host: ctx.config.cluster?.host_id,
      onError: (err) => ctx.log.error({ tracker: spec.name, err: err.message }, 'track file error'),
    });
    this.warnLimit = new RateLimit(SKIP_WARNINGS_PER_10S, 10_000, ctx.now);
    this.forwarder = spec.apiForward.enabled
      ? new ApiForwarder({
        url: spec.apiForward.url,
        headers: spec.apiForward.headers,
        batchMaxEvents: spec.apiForward.batch_max_events,
        batchWindowMs: spec.apiForward.batch_max_ms,
        onError: (err) => {
          // One event per request: a receiver refusing every event must not put a log line per event.
          const n = this.warnLimit.take('forward');
          if (n >= 0) ctx.log.warn({ tracker: spec.name, status: err.status, events: err.events, attempts: err.attempts, ...(n > 0 ? { suppressed: n } : {}) }, `track forwarding failed: ${err.message}`);
        },
      })
      : null;
    this.stderrLimit = new RateLimit(Math.max(1, ctx.config.tracker.stderr_lines_per_10s), 10_000, ctx.now);
    this.source = spec.mode === 'http'
      ? new HttpSource({
        url: spec.detectionUrl!,
        pollIntervalMs: ctx.config.poll_interval_sec * 1000,
        backoffBaseSec: ctx.config.retry.backoff_base_sec,
        extendedOutageMs: ctx.config.retry.extended_outage_sec * 1000,
        healthCheckIntervalMs: ctx.config.retry.health_check_interval_sec * 1000,
        // tracker-host's request timeout: a node slower than that is failing.
        requestTimeoutMs: 10_000,
        now: ctx.now,
        onFrame: (line, ts, n) => ctx.writeFrame(node, line, ts, n),
        limits: () => ({ maxDetections: ctx.config.limits.max_detections_per_frame, maxClockSkewMs: ctx.config.limits.max_clock_skew_ms }),
        onDrop: (reason) => ctx.dropFrame(reason),
        onStateChange: (up, error) => {
          ctx.log[up ? 'info' : 'warn']({ tracker: spec.name, url: spec.detectionUrl, error }, up ? 'detection source back' : 'detection source down');
          ctx.wake();
        },
      })
      : null;
    this.configPoller = spec.configUrl
      ? new ConfigPoller({
        url: spec.configUrl,
        intervalMs: ctx.config.config_poll_interval_sec * 1000,
        now: ctx.now,
        onFailure: (reason, error) => {
          ctx.configPollFailed?.(reason);
          ctx.log.warn({ tracker: spec.name, node: spec.nodeId, url: spec.configUrl, reason, error }, 'node config poll failed');
        },
      })
      : null;
    this.configPoller?.subscribe((ev) => {
      // One fetch of the node's config serves both stages.
      this.geolocator?.setRadarConfig(ev.value);
      if (ev.first) {
        ctx.log.info({ tracker: spec.name, node: spec.nodeId, url: spec.configUrl }, 'node config baseline fetched');
        return;
      }
      // The tracker takes the node's geometry at start: restart it (a tracker that
      // is not running starts with the new config anyway).
      ctx.log.warn({ tracker: spec.name, node: spec.nodeId, url: spec.configUrl, state: this._state.phase },
        'node config changed: restarting its tracker');
      this.apply({ type: 'reconfigure' });
      ctx.wake();
    });
    this.geolocator = spec.geolocator
      ? new GeolocatorStage(spec.name, spec.nodeId, spec.geolocator, ctx, ctx.geolocators, () => this.geolocator?.follow(this._state))
      : null;
  }

  get state(): LifecycleState {
    return this._state;
  }
  /** The phase shown to operators: probe_error while the last probe threw. */
  get shownState(): TrackerPhase | 'probe_error' {
    return this.probeError !== null ? 'probe_error' : this._state.phase;
  }
  /** Process running with its input open. */
  get up(): boolean {
    return this.proc !== null && this.proc.writable && (this._state.phase === 'running' || this._state.phase === 'outage');
  }
  get sourceUp(): boolean {
    return this.source ? this.source.up : this.node.healthy;
  }
  /**
   * The lifecycle's tick. A polled source goes down only once its failures have
   * lasted extended_outage_sec, so its outage counts from its first failure.
   */
  private tickEvent(): LifecycleEvent {
    const downSince = this.source?.downSince ?? null;
    return { type: 'tick', sourceUp: this.sourceUp, ...(downSince !== null ? { downSince } : {}) };
  }

  start(): void {
    this.source?.start();
    this.configPoller?.start();
  }

  /**
   * The watcher's check, run by every reconcile pass: the process is alive, its
   * input is open, the source is up; then one lifecycle tick. May throw (the
   * supervisor turns that into probe_error).
   */
  probe(): void {
    const p = this.proc;
    const phase = this._state.phase;
    // A process the memory ceiling killed closes its input before its exit is
    // seen: the exit (with the reason) is what ends it, not the closed input.
    if (this.killedFor !== null) {
      this.apply(this.tickEvent());
      return;
    }
    if (p && (phase === 'running' || phase === 'outage') && !p.writable && p.state !== 'stopping' && p.state !== 'exited') {
      this.apply({ type: 'input_lost', error: `tracker input closed (${p.lastError?.message ?? 'connection closed by the tracker'})` });
    }
    // Alive but not reading: its input has not drained for stall_timeout_ms. A slow
    // tracker drains now and then; a hung one never does, and its node stays paused.
    const stallMs = this.ctx.config.tracker.stall_timeout_ms;
    const since = this.feeder.blockedSince;
    if (stallMs > 0 && since !== null && (this._state.phase === 'running' || this._state.phase === 'outage')
      && this.ctx.now() - since >= stallMs) {
      this.apply({ type: 'input_lost', error: `tracker has not read its input for ${this.ctx.now() - since} ms (tracker.stall_timeout_ms ${stallMs})` });
    }
    this.apply(this.tickEvent());
    this.geolocator?.follow(this._state);
    // Frames may be waiting from before the tracker was up.
    if (this.up && this.feeder.state === 'detached') this.pump();
  }

  /** A process the memory ceiling watches: spawned, not yet stopping or gone. */
  get sampleable(): boolean {
    const p = this.proc;
    return p !== null && p.pid !== undefined && this.killedFor === null && p.state !== 'new' && p.state !== 'stopping' && p.state !== 'exited';
  }

  /**
   * The memory ceiling (the supervisor calls this at most once a second per
   * tracker): reads the process's resident memory and SIGKILLs it, with its
   * descendants, when it is past tracker.max_memory_mb. The exit is then handled
   * like a crash, its last_error saying why.
   */
  sampleMemory(reader: ProcReader): void {
    const p = this.proc;
    if (!p || !this.sampleable) return;
    const pid = p.pid!;
    this.rssSampledAt = this.ctx.now();
    const sample = sampleResident(pid, reader);
    this.rssBytes = sample?.bytes ?? null;
    const maxMb = this.ctx.config.tracker.max_memory_mb;
    const verdict = sample ? memoryVerdict(sample.bytes, maxMb) : null;
    if (!sample || verdict === null) return;
    this.killedFor = verdict;
    this.ctx.memoryKilled();
    this.ctx.log.warn({
      tracker: this.spec.name, node: this.spec.nodeId, pid, rss_bytes: sample.bytes, max_memory_mb: maxMb, descendants: sample.descendants.length,
    }, `tracker ${verdict}`);
    p.kill();
    // Its children would outlive it and keep the memory: they go with it.
    for (const c of sample.descendants) {
      try {
        process.kill(c, 'SIGKILL');
      } catch { /* already gone */ }
    }
  }

  /** Moves ring data to the tracker if it is up (the ring sink's onData). */
  pump(): void {
    if (this.proc && this.proc.writable) this.feeder.pump();
  }

  /** Stop for good (removal or shutdown); resolves when the process is gone. */
  async stop(reason: 'removed' | 'shutdown'): Promise<void> {
    await Promise.all([this.source?.stop(), this.configPoller?.stop()]);
    this.apply({ type: 'stop', reason });
    if (this._state.phase === 'stopping') await new Promise<void>((r) => this.stopWaiters.push(r));
    // After the tracker: its last events are queued for the geolocator, which gets them before it stops.
    await this.geolocator?.stop(reason);
  }

  /** The current process's input: frames handed over, and what it reported reading (null: no report). */
  inputConsumption(): { fed: number; read: number | null } {
    const p = this.proc;
    return p ? { fed: p.framesHanded, read: p.framesReadReported } : { fed: 0, read: null };
  }

  /** Closes the output side (after stop()): flushes the track file and the forwarder. */
  async close(forwardDeadlineMs: number): Promise<void> {
    this.feeder.close();
    await Promise.all([this.output.close(), this.forwarder?.close(forwardDeadlineMs), this.geolocator?.close()]);
  }

  private apply(ev: LifecycleEvent): void {
    const before = this._state;
    const t = step(before, ev, this.ctx.now(), this.ctx.rules);
    this._state = t.state;
    if (t.state.phase !== before.phase) {
      const level = t.state.phase === 'failed' || t.state.phase === 'backoff' ? 'warn' : 'info';
      this.ctx.log[level]({
        tracker: this.spec.name, node: this.spec.nodeId, from: before.phase, to: t.state.phase, event: ev.type,
        ...(t.state.lastError && t.state.lastError !== before.lastError ? { error: t.state.lastError } : {}),
        ...(t.state.phase === 'backoff' ? { retry_in_ms: t.state.retryAt - this.ctx.now() } : {}),
      }, 'tracker state');
    }
    if (t.state.phase !== 'stopping') {
      const ws = this.stopWaiters;
      this.stopWaiters = [];
      for (const w of ws) w();
    }
    if (t.action === 'spawn') this.spawn();
    else if (t.action === 'stop') this.stopProcess();
    if (t.state.phase !== before.phase) this.geolocator?.follow(this._state);
  }

  private spawn(): void {
    const c = this.ctx.config;
    const spec = this.spec;
    // Taken at spawn: with a cluster it holds the fence this process runs under.
    const runId = spec.remoteHost === undefined && this.ctx.nextRunId ? this.ctx.nextRunId(this.node) : undefined;
    const opts = {
      command: this.ctx.command.argv,
      ...(this.ctx.command.cwd !== undefined ? { cwd: this.ctx.command.cwd } : {}),
      env: this.ctx.command.env,
      nodeId: spec.nodeId,
      ...(spec.port !== undefined ? { port: spec.port } : {}),
      ...(spec.trackerConfig ? { configPath: trackerConfigPath(this.ctx.command, spec.trackerConfig) } : {}),
      ...(runId !== undefined ? { runId } : {}),
      input: c.tracker.input,
      ...(this.ctx.command.parentPipe === true && c.tracker.input === 'tcp' ? { parentPipe: true } : {}),
      connectRetries: c.tcp_connect_retries,
      retryDelayMs: c.tcp_retry_delay_sec * 1000,
      startupDelayMs: c.startup_delay_sec * 1000,
      failStopGraceMs: c.tracker.stop_grace_ms,
      now: this.ctx.now,
      trackLine: (line: string) => this.trackLine(line, runId ?? null),
      stderrLine: (line: string) => this.stderrLine(line),
      onExit: (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.proc !== proc) return;
        this.feeder.detach();
        this.tracks.clear();
        const why = this.killedFor ?? (signal ? `exited on ${signal}` : `exited with code ${code}`);
        this.apply(this._state.phase === 'stopping' ? { type: 'stopped' } : { type: 'exited', error: `tracker ${why}` });
        this.ctx.wake();
      },
    };
    let proc: TrackerHandle;
    try {
      proc = spec.remoteHost !== undefined ? this.remote(spec.remoteHost) : new TrackerProcess(opts);
    } catch (err) {
      this.apply({ type: 'start_failed', error: (err as Error).message });
      return;
    }
    this.retireProcessCounts(this.proc);
    this.tracks.clear();
    this.proc = proc;
    this.rssBytes = null;
    this.rssSampledAt = -Infinity;
    this.killedFor = null;
    this.feeder.detach();
    proc.start().then(() => {
      if (this.proc !== proc) return;
      this.feeder.attach(proc);
      this.apply({ type: 'started' });
      this.ctx.log.info({ tracker: spec.name, node: spec.nodeId, pid: proc.pid, port: spec.port, ...(spec.remoteHost !== undefined ? { remote: spec.remoteHost } : {}) }, 'tracker running');
      this.pump();
    }, (err: Error) => {
      if (this.proc !== proc) return;
      // start() rejects only after the process is gone (onExit already ran if it had spawned).
      this.apply(this._state.phase === 'stopping' ? { type: 'stopped' } : { type: 'start_failed', error: err.message });
      this.ctx.wake();
    });
  }

  /** A tracker elsewhere: connected to and fed, nothing spawned (its input closing is a crash). */
  private remote(host: string): RemoteTracker {
    const c = this.ctx.config;
    return new RemoteTracker({
      nodeId: this.spec.nodeId,
      host,
      port: this.spec.port!,
      connectRetries: c.tcp_connect_retries,
      retryDelayMs: c.tcp_retry_delay_sec * 1000,
      onClose: () => this.ctx.wake(),
    });
  }

  private stopProcess(): void {
    const proc = this.proc;
    if (!proc) {
      this.apply({ type: 'stopped' });
      return;
    }
    // Frames queued for the old process are lost with it (counted by the feeder);
    // what is still in the ring stays there for the next process.
    proc.stop(this.ctx.config.tracker.stop_grace_ms).then(() => {
      if (this.proc !== proc) return;
      this.feeder.detach();
      this.apply({ type: 'stopped' });
      this.ctx.wake();
    }, () => undefined);
  }

  /**
   * One stdout line: a JSON object is a track event (stored, forwarded, folded
   * into the active tracks); anything else is skipped, counted and warned about.
   */
  private trackLine(line: string, runId: string | null): void {
    const t = classifyTrackLine(line);
    if (t.kind === 'blank') return;
    if (t.kind === 'skip') {
      this.skipped[t.reason]++;
      this.warnSkipped(t.reason, line);
      return;
    }
    const now = this.ctx.now();
    this.lastOutputAt = now;
    // With a cluster, the host's fence on the node now (it may have changed since the spawn).
    const host = this.ctx.config.cluster?.host_id;
    const text = host === undefined ? t.text : withProvenance(t.text, t.event, { nodeId: this.spec.nodeId, host, fence: this.node.fence, runId });
    this.output.write(text);
    this.forwarder?.enqueueJson(text);
    this.geolocator?.offer(t.text);
    this.tracks.observe(t.event, now);
  }

  private warnSkipped(reason: OutputSkipReason, line: string): void {
    const n = this.warnLimit.take('skip');
    if (n < 0) return;
    this.ctx.log.warn({
      tracker: this.spec.name, node: this.spec.nodeId, reason, line: line.slice(0, SKIP_QUOTE_CHARS), ...(n > 0 ? { suppressed: n } : {}),
    }, 'tracker output skipped: not a JSON object');
  }

  /** A replaced process's line-splitter drops stay counted. */
  private retireProcessCounts(p: TrackerHandle | null): void {
    if (!p) return;
    this.pastDrops.tooLong += p.stdoutLinesDropped - p.stdoutPartialDropped;
    this.pastDrops.partial += p.stdoutPartialDropped;
  }

  /** Skipped lines and forwarded events so far (every process of this instance). */
  outputCounts(): OutputCounts {
    const c = zeroOutputCounts();
    const p = this.proc;
    c.skipped.not_json = this.skipped.not_json + this.pastDrops.partial + (p ? p.stdoutPartialDropped : 0);
    c.skipped.not_object = this.skipped.not_object;
    c.skipped.too_long = this.pastDrops.tooLong + (p ? p.stdoutLinesDropped - p.stdoutPartialDropped : 0);
    if (this.forwarder) {
      const f = this.forwarder.stats();
      c.forwarded.sent = f.sent;
      c.forwarded.failed = f.failed;
      c.forwarded.dropped = f.dropped;
    }
    return c;
  }

  private stderrLine(line: string): void {
    const n = this.stderrLimit.take('stderr');
    if (n < 0) {
      this.stderrSuppressed++;
      return;
    }
    this.ctx.log.info({ tracker: this.spec.name, node: this.spec.nodeId, ...(n > 0 ? { suppressed: n } : {}) }, `tracker stderr: ${line}`);
  }

  view(): InstanceView {
    const s = this._state;
    const f = this.feeder;
    return {
      name: this.spec.name,
      node_id: this.spec.nodeId,
      mode: this.spec.mode,
      origin: this.spec.origin,
      state: this.shownState,
      since: new Date(s.since).toISOString(),
      process: this.spec.remoteHost !== undefined ? 'remote' : 'local',
      pid: this.proc && this.proc.state !== 'exited' ? this.proc.pid ?? null : null,
      port: this.spec.port ?? null,
      restarts: s.restarts,
      node_connected: this.sourceUp,
      last_frame_at: iso(f.lastFrameAt),
      frames_fed: f.framesFed,
      frames_skipped: { duplicate: f.duplicate, out_of_order: f.outOfOrder },
      frames_lost: f.lostInFlight,
      resets: f.resets,
      tracks_written: this.output.stats().linesWritten,
      last_output_at: iso(this.lastOutputAt),
      input_blocked: f.state === 'blocked',
      retry_at: s.phase === 'backoff' ? iso(s.retryAt) : null,
      cooldown_until: s.phase === 'failed' ? iso(s.cooldownUntil) : null,
      last_error: this.probeError ?? s.lastError,
      banned_until: this.node.bannedUntil > Date.now() ? iso(this.node.bannedUntil) : null,
      rss_bytes: this.proc && this.proc.state !== 'exited' ? this.rssBytes : null,
      node_resets: f.nodeResets,
      fence: this.node.fence,
      node_config: this.configPoller?.view() ?? null,
      geolocator: this.geolocator?.view() ?? null,
      ...this.trackFields(),
    };
  }

  /** The view's fields about the tracker's output: active tracks, skipped lines, forwarding. */
  private trackFields(): Pick<InstanceView, 'active_tracks' | 'longest_tracks' | 'tracks_active' | 'tracks_started' | 'output_skipped' | 'forward'> {
    const t = this.tracks.summary(this.ctx.now());
    const f = this.forwarder?.stats();
    return {
      active_tracks: t.active,
      longest_tracks: t.longest,
      tracks_active: t.active,
      tracks_started: this.tracks.started,
      output_skipped: this.outputCounts().skipped,
      forward: f ? { sent: f.sent, failed: f.failed, dropped: f.dropped, queued: f.queued + f.inFlight } : null,
    };
  }
}
