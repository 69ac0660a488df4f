// The retry rule of an HTTP-polled node (mode http), as a pure function of the
// poll results and the clock, so that it can be tested to the millisecond and
// so that a tracker-host config keeps its timings:
//
//   - the n-th failure in a row waits min(backoff_base_sec ** n, 30) s, then
//     the normal poll interval, before the next poll (a power of the base, not a
//     doubling: base 3 gives 3, 9, 27, 30, ... s; a base below 1 gives shrinking
//     waits, as it did in tracker-host);
//   - the failure that comes when failures have lasted extended_outage_sec
//     (since the first failure of the streak) takes the source DOWN: its tracker
//     is stopped;
//   - while DOWN the source is probed every health_check_interval_sec, and any
//     2xx answer brings it UP again (the tracker is started again);
//   - a success resets the streak.
//
// retry.max_attempts plays no part: tracker-host read it and never used it.

/** The longest wait after a failure (tracker-host's fixed cap). */
export const HTTP_BACKOFF_CAP_MS = 30_000;

export interface HttpRetryRules {
  /** retry.backoff_base_sec: the n-th failure in a row waits this ** n seconds (at most the cap). */
  backoffBaseSec: number;
  /** poll_interval_sec, in ms: the normal period, also added after every backoff wait. */
  pollIntervalMs: number;
  /** retry.extended_outage_sec, in ms. */
  extendedOutageMs: number;
  /** retry.health_check_interval_sec, in ms: the probe period while DOWN. */
  healthCheckIntervalMs: number;
  /** Default HTTP_BACKOFF_CAP_MS. */
  backoffCapMs?: number;
}

export interface HttpRetryState {
  readonly phase: 'up' | 'down';
  /** Failed polls (or probes) in a row. */
  readonly failures: number;
  /** now() of the first failure of the current streak; null after a success. */
  readonly firstFailureAt: number | null;
}

/**
 * ok: a usable frame; http_ok: a 2xx answer whose body is not a usable frame
 * (enough to end an outage, a failure otherwise); fail: no 2xx answer
 * (an error status, a refused connection, a timeout).
 */
export type PollResult = 'ok' | 'http_ok' | 'fail';

export interface HttpRetryStep {
  state: HttpRetryState;
  /** Wait before the next poll, counted from the end of this one. */
  waitMs: number;
  /** down: stop the tracker; up: start it again. */
  change: 'none' | 'down' | 'up';
}

export const HTTP_RETRY_INITIAL: HttpRetryState = { phase: 'up', failures: 0, firstFailureAt: null };

/** The wait after the n-th failure in a row (n >= 1), before the poll interval is added. */
export function backoffAfterFailureMs(n: number, backoffBaseSec: number, capMs = HTTP_BACKOFF_CAP_MS): number {
  const ms = backoffBaseSec ** n * 1000;
  // A large base overflows to Infinity, which the cap also covers.
  return Number.isFinite(ms) ? Math.min(ms, capMs) : capMs;
}

/** The next state and wait after a poll that ended at `now`. Pure. */
export function retryStep(s: HttpRetryState, result: PollResult, now: number, rules: HttpRetryRules): HttpRetryStep {
  if (s.phase === 'down') {
    if (result !== 'fail') return { state: HTTP_RETRY_INITIAL, waitMs: rules.pollIntervalMs, change: 'up' };
    return { state: { ...s, failures: s.failures + 1 }, waitMs: rules.healthCheckIntervalMs, change: 'none' };
  }
  if (result === 'ok') return { state: HTTP_RETRY_INITIAL, waitMs: rules.pollIntervalMs, change: 'none' };
  const first = s.firstFailureAt ?? now;
  const failures = s.failures + 1;
  if (now - first >= rules.extendedOutageMs) {
    return { state: { phase: 'down', failures, firstFailureAt: first }, waitMs: rules.healthCheckIntervalMs, change: 'down' };
  }
  const wait = backoffAfterFailureMs(failures, rules.backoffBaseSec, rules.backoffCapMs) + rules.pollIntervalMs;
  return { state: { phase: 'up', failures, firstFailureAt: first }, waitMs: wait, change: 'none' };
}
