// The lifecycle of one node's tracker as an explicit, pure state machine. It
// decides; the tracker instance acts (spawns, stops) and reports back. Time is
// an input (`now`), so tests drive every timing rule in milliseconds.
//
//            source up                input open
//   idle ──────────────▶ starting ─────────────────▶ running ◀──┐ source back
//    ▲  ▲                  │ failed / exited            │ source down
//    │  │                  ▼                            ▼       │
//    │  │  retryAt    ┌─ backoff ◀──── exited ──────── outage ──┘
//    │  └─ (unwanted) │     │ too many restarts in the window       │ down for extended_outage
//    │                │     ▼                                        ▼
//    │                │  failed (cool-down) ─▶ starting          stopping ─▶ stopped (respawned when the source is back)
//    └── removed / shutdown: stopping ─▶ idle
//
// running/outage with the input closed (the process alive): stopping, then the
// same failure path as a crash (backoff, or failed when flapping).
//
// "Source up" is the node's connection for TCP nodes (or a successful poll for
// mode http). A tracker is wanted while the source is up and for
// extendedOutageMs after it went down; configured trackers are created with the
// source counted as down since boot, so they start at once and stop if their
// node never shows up.

export type TrackerPhase =
  | 'idle' // not running and not (yet) wanted
  | 'starting' // spawned, waiting for its input to open
  | 'running' // input open, source up
  | 'outage' // running, source down: kept alive for extendedOutageMs
  | 'stopping' // being stopped (outage, removal, shutdown, input lost)
  | 'stopped' // stopped after an extended outage; respawned when the source is back
  | 'backoff' // exited or failed to start: restarted at retryAt
  | 'failed'; // flapping guard: too many restarts in the window, parked until cooldownUntil

export interface LifecycleRules {
  /** Keep a tracker alive this long after its source went down. */
  extendedOutageMs: number;
  /** First restart delay; doubles per consecutive failure. */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** More than this many restarts within flapWindowMs parks the tracker in `failed`. */
  flapMaxRestarts: number;
  flapWindowMs: number;
  flapCooldownMs: number;
  /** A run that lasted this long resets the consecutive-failure count (and so the backoff). */
  stableAfterMs: number;
}

export type StopReason = 'outage' | 'removed' | 'shutdown' | 'input_lost' | 'reconfigure';

export interface LifecycleState {
  readonly phase: TrackerPhase;
  /** now() of the last phase change. */
  readonly since: number;
  /** Crash restarts (spawns after an unexpected exit or a failed start). */
  readonly restarts: number;
  /** now() of the recent restarts, within flapWindowMs (the flapping guard). */
  readonly recent: readonly number[];
  /** Failures in a row; the backoff doubles with each. */
  readonly consecutiveFailures: number;
  readonly retryAt: number;
  readonly cooldownUntil: number;
  /** now() when the source went down; null while it is up. */
  readonly downSince: number | null;
  /** Why the current/last stop was asked for. */
  readonly stopReason: StopReason | null;
  /** now() when the current process's input opened (null: none since the last spawn): a long run resets the backoff. */
  readonly startedAt: number | null;
  readonly lastError: string | null;
}

export type LifecycleEvent =
  /**
   * Periodic evaluation (reconcile pass) with the source's state. downSince: when
   * a source that is down went down, if it knows (default: this tick's now).
   */
  | { type: 'tick'; sourceUp: boolean; downSince?: number }
  /** The tracker's input opened. */
  | { type: 'started' }
  /** Spawning or connecting failed; the process is gone. */
  | { type: 'start_failed'; error: string }
  /** The process exited without being asked to (or its input closed, then it was stopped). */
  | { type: 'exited'; error: string }
  /** Stop the tracker (removal or shutdown). */
  | { type: 'stop'; reason: 'removed' | 'shutdown' }
  /** The tracker's input closed while the process runs: stop it and restart it like a crash. */
  | { type: 'input_lost'; error: string }
  /** A stop asked for has completed (the process is gone). */
  | { type: 'stopped' }
  /**
   * The node's config changed: a running tracker is stopped and started afresh
   * (not a crash: no backoff, not counted in restarts). A tracker that is not
   * running starts with the new config anyway.
   */
  | { type: 'reconfigure' };

export type LifecycleAction = 'none' | 'spawn' | 'stop';

export interface Transition {
  state: LifecycleState;
  action: LifecycleAction;
}

export function initialState(now: number, sourceUp: boolean): LifecycleState {
  return {
    phase: 'idle', since: now, restarts: 0, recent: [], consecutiveFailures: 0, retryAt: 0, cooldownUntil: 0,
    downSince: sourceUp ? null : now, stopReason: null, startedAt: null, lastError: null,
  };
}

/** Is a tracker wanted: the source is up, or has been down for less than extendedOutageMs. */
export function wanted(s: LifecycleState, now: number, rules: LifecycleRules): boolean {
  return s.downSince === null || now - s.downSince < rules.extendedOutageMs;
}

/**
 * The next time a tick would change something without any event (the outage
 * limit, a restart, the end of a cool-down); null when only events can. The
 * supervisor schedules its next pass no later than this, so timing rules hold
 * to the millisecond rather than to the pass interval.
 */
export function nextDue(s: LifecycleState, rules: LifecycleRules): number | null {
  switch (s.phase) {
    case 'running':
    case 'outage':
      return s.downSince === null ? null : s.downSince + rules.extendedOutageMs;
    case 'backoff':
      return s.retryAt;
    case 'failed':
      return s.cooldownUntil;
    default:
      return null;
  }
}

/** Delay before restart number `failures` (1 = first failure). */
export function backoffMs(failures: number, rules: LifecycleRules): number {
  const exp = Math.min(30, Math.max(0, failures - 1));
  return Math.min(rules.backoffMaxMs, rules.backoffBaseMs * 2 ** exp);
}

// A tick that changes nothing keeps the state object: every pass ticks every tracker.
const to = (s: LifecycleState, phase: TrackerPhase, now: number, patch?: Partial<LifecycleState>): LifecycleState =>
  (patch === undefined && phase === s.phase ? s : { ...s, ...patch, phase, since: phase === s.phase ? s.since : now });

/** The next state and what to do, for one event at time `now`. Pure. */
export function step(s: LifecycleState, ev: LifecycleEvent, now: number, rules: LifecycleRules): Transition {
  switch (ev.type) {
    case 'tick':
      return tick(s, ev.sourceUp, now, rules, ev.downSince);
    case 'started':
      if (s.phase !== 'starting') return { state: s, action: 'none' };
      return { state: to(s, s.downSince === null ? 'running' : 'outage', now, { startedAt: now }), action: 'none' };
    case 'start_failed':
    case 'exited':
      if (s.phase === 'stopping') return stopped(s, now, rules);
      if (s.phase !== 'starting' && s.phase !== 'running' && s.phase !== 'outage') return { state: s, action: 'none' };
      return failure(s, ev.error, now, rules);
    case 'input_lost': {
      if (s.phase !== 'running' && s.phase !== 'outage') return { state: s, action: 'none' };
      // Judge the run's stability now, when the input died, not when the stop completes.
      const stable = s.startedAt !== null && now - s.startedAt >= rules.stableAfterMs;
      return {
        state: to(s, 'stopping', now, {
          stopReason: 'input_lost', lastError: ev.error, startedAt: null, ...(stable ? { consecutiveFailures: 0 } : {}),
        }),
        action: 'stop',
      };
    }
    case 'stop':
      if (s.phase === 'stopping') return { state: { ...s, stopReason: ev.reason }, action: 'none' };
      if (s.phase === 'starting' || s.phase === 'running' || s.phase === 'outage') {
        return { state: to(s, 'stopping', now, { stopReason: ev.reason }), action: 'stop' };
      }
      return { state: to(s, 'idle', now, { stopReason: ev.reason }), action: 'none' };
    case 'stopped':
      return s.phase === 'stopping' ? stopped(s, now, rules) : { state: s, action: 'none' };
    case 'reconfigure':
      if (s.phase !== 'starting' && s.phase !== 'running' && s.phase !== 'outage') return { state: s, action: 'none' };
      return { state: to(s, 'stopping', now, { stopReason: 'reconfigure', startedAt: null }), action: 'stop' };
  }
}

function stopped(s: LifecycleState, now: number, rules: LifecycleRules): Transition {
  switch (s.stopReason) {
    case 'outage':
      return { state: to(s, 'stopped', now), action: 'none' };
    case 'input_lost':
      // The process was alive but useless: a failure like any other (backoff and the flapping guard apply).
      return failure(s, s.lastError ?? 'tracker input closed', now, rules);
    default:
      return { state: to(s, 'idle', now), action: 'none' };
  }
}

function failure(s: LifecycleState, error: string, now: number, rules: LifecycleRules): Transition {
  const stable = s.startedAt !== null && now - s.startedAt >= rules.stableAfterMs;
  const consecutive = (stable ? 0 : s.consecutiveFailures) + 1;
  const recent = s.recent.filter((t) => now - t < rules.flapWindowMs);
  if (recent.length >= rules.flapMaxRestarts) {
    const secs = (ms: number): string => `${Math.round(ms / 100) / 10} s`;
    return {
      state: to(s, 'failed', now, {
        consecutiveFailures: consecutive, recent, cooldownUntil: now + rules.flapCooldownMs,
        lastError: `${error}; restarted ${recent.length} times within ${secs(rules.flapWindowMs)}: parked for ${secs(rules.flapCooldownMs)}`,
      }),
      action: 'none',
    };
  }
  return {
    state: to(s, 'backoff', now, { consecutiveFailures: consecutive, recent, retryAt: now + backoffMs(consecutive, rules), lastError: error }),
    action: 'none',
  };
}

function tick(s0: LifecycleState, sourceUp: boolean, now: number, rules: LifecycleRules, downSince?: number): Transition {
  const s = sourceUp ? (s0.downSince === null ? s0 : { ...s0, downSince: null }) : (s0.downSince === null ? { ...s0, downSince: Math.min(now, downSince ?? now) } : s0);
  const want = wanted(s, now, rules);
  const spawn = (restart: boolean): Transition => ({
    state: to(s, 'starting', now, {
      startedAt: null, stopReason: null,
      ...(restart ? { restarts: s.restarts + 1, recent: [...s.recent.filter((t) => now - t < rules.flapWindowMs), now] } : {}),
    }),
    action: 'spawn',
  });
  switch (s.phase) {
    case 'idle':
    case 'stopped':
      return want ? spawn(false) : { state: s, action: 'none' };
    case 'running':
    case 'outage':
      if (!want) return { state: to(s, 'stopping', now, { stopReason: 'outage' }), action: 'stop' };
      return { state: to(s, sourceUp ? 'running' : 'outage', now), action: 'none' };
    case 'backoff':
      if (now < s.retryAt) return { state: s, action: 'none' };
      return want ? spawn(true) : { state: to(s, 'stopped', now), action: 'none' };
    case 'failed':
      if (now < s.cooldownUntil) return { state: s, action: 'none' };
      // The cool-down is over: start afresh (the window is cleared so one more crash does not park it again).
      if (!want) return { state: to(s, 'stopped', now, { recent: [], consecutiveFailures: 0 }), action: 'none' };
      return {
        state: to(s, 'starting', now, { startedAt: null, stopReason: null, recent: [], consecutiveFailures: 0, restarts: s.restarts + 1 }),
        action: 'spawn',
      };
    case 'starting':
    case 'stopping':
      return { state: s, action: 'none' };
  }
}
