// Unit tests of the tracker lifecycle state machine under a fake clock: step() is
// a pure function of (state, event, now, rules), so every timing rule is tested
// at its exact edge in milliseconds. Every input state is deep-frozen and checked
// unchanged after the step (see go()), so each test also proves step() is pure.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  initialState, step, wanted, backoffMs, nextDue,
  type LifecycleEvent, type LifecycleRules, type LifecycleState, type Transition,
} from '../src/tracker/lifecycle.js';

const T0 = Date.UTC(2030, 0, 1);
const EXT = 1000;
const BASE = 100;
const MAX = 800;
const FLAP_MAX = 3;
const FLAP_WIN = 1000;
const COOLDOWN = 5000;
const STABLE = 2000;

const RULES: LifecycleRules = {
  extendedOutageMs: EXT,
  backoffBaseMs: BASE,
  backoffMaxMs: MAX,
  flapMaxRestarts: FLAP_MAX,
  flapWindowMs: FLAP_WIN,
  flapCooldownMs: COOLDOWN,
  stableAfterMs: STABLE,
};

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as Record<string, unknown>)) deepFreeze(v);
  }
  return o;
}

/** step() on a deep-frozen copy of the input, asserting the input is unchanged afterwards. */
function go(s: LifecycleState, ev: LifecycleEvent, now: number, rules: LifecycleRules = RULES): Transition {
  const before = structuredClone(s);
  deepFreeze(s);
  const r = step(s, ev, now, rules);
  assert.deepEqual(s, before, `step mutated its input on ${ev.type}`);
  return r;
}

const up: LifecycleEvent = { type: 'tick', sourceUp: true };
const down: LifecycleEvent = { type: 'tick', sourceUp: false };
const started: LifecycleEvent = { type: 'started' };
const stoppedEv: LifecycleEvent = { type: 'stopped' };
const exited = (error = 'exit code 1'): LifecycleEvent => ({ type: 'exited', error });
const startFailed = (error = 'spawn ENOENT'): LifecycleEvent => ({ type: 'start_failed', error });

/** startedAt of a state whose input has opened (fails the test if it is null). */
function startedAtOf(s: LifecycleState): number {
  if (s.startedAt === null) assert.fail(`startedAt is null in ${s.phase}`);
  return s.startedAt;
}

/** A tracker spawned at `at` (source up) whose input opened at `at`. */
function runningAt(at: number, rules: LifecycleRules = RULES): LifecycleState {
  const sp = go(initialState(at, true), up, at, rules);
  assert.equal(sp.action, 'spawn');
  const r = go(sp.state, started, at, rules);
  assert.equal(r.state.phase, 'running');
  return r.state;
}

/** From `backoff`, tick at retryAt (spawn) then `started`: running again. */
function restartAt(s: LifecycleState, rules: LifecycleRules = RULES): LifecycleState {
  assert.equal(s.phase, 'backoff');
  const sp = go(s, up, s.retryAt, rules);
  assert.equal(sp.action, 'spawn');
  const r = go(sp.state, started, s.retryAt, rules);
  assert.equal(r.state.phase, 'running');
  return r.state;
}

describe('tracker lifecycle: start', () => {
  test('idle + tick(sourceUp) spawns into starting; started -> running', () => {
    const s0 = initialState(T0, true);
    assert.equal(s0.phase, 'idle');
    assert.equal(s0.downSince, null);
    const sp = go(s0, up, T0 + 7);
    assert.equal(sp.action, 'spawn');
    assert.equal(sp.state.phase, 'starting');
    assert.equal(sp.state.since, T0 + 7);
    assert.equal(sp.state.startedAt, null, 'startedAt is set when the input opens, not at the spawn');
    assert.equal(sp.state.restarts, 0);
    assert.deepEqual(sp.state.recent, []);
    // Ticks while starting do nothing.
    const wait = go(sp.state, up, T0 + 50);
    assert.equal(wait.action, 'none');
    assert.equal(wait.state.phase, 'starting');
    const run = go(sp.state, started, T0 + 60);
    assert.equal(run.action, 'none');
    assert.equal(run.state.phase, 'running');
    assert.equal(run.state.since, T0 + 60);
    assert.equal(run.state.startedAt, T0 + 60);
    assert.equal(run.state.lastError, null);
    // A tick with the source still up keeps it running, `since` unchanged.
    const t = go(run.state, up, T0 + 5000);
    assert.equal(t.action, 'none');
    assert.equal(t.state.phase, 'running');
    assert.equal(t.state.since, T0 + 60);
  });

  test('configured tracker (initialState(now, false)) spawns at once and reaches outage on started', () => {
    const s0 = initialState(T0, false);
    assert.equal(s0.phase, 'idle');
    assert.equal(s0.downSince, T0);
    const sp = go(s0, down, T0);
    assert.equal(sp.action, 'spawn');
    assert.equal(sp.state.phase, 'starting');
    assert.equal(sp.state.downSince, T0, 'down since boot, not since the first tick');
    const r = go(sp.state, started, T0 + 20);
    assert.equal(r.action, 'none');
    assert.equal(r.state.phase, 'outage');
    assert.equal(r.state.restarts, 0);
  });

  test('configured tracker: the first tick spawns only before extendedOutageMs after boot', () => {
    const s0 = initialState(T0, false);
    const late = go(s0, down, T0 + EXT - 1);
    assert.equal(late.action, 'spawn');
    assert.equal(late.state.phase, 'starting');
    const tooLate = go(s0, down, T0 + EXT);
    assert.equal(tooLate.action, 'none');
    assert.equal(tooLate.state.phase, 'idle');
  });

  test('a never-connected configured tracker is stopped exactly extendedOutageMs after boot, then respawned when the source shows up', () => {
    let s = go(initialState(T0, false), down, T0).state;
    s = go(s, started, T0 + 30).state;
    assert.equal(s.phase, 'outage');
    const alive = go(s, down, T0 + EXT - 1);
    assert.equal(alive.action, 'none');
    assert.equal(alive.state.phase, 'outage');
    const stop = go(alive.state, down, T0 + EXT);
    assert.equal(stop.action, 'stop');
    assert.equal(stop.state.phase, 'stopping');
    assert.equal(stop.state.stopReason, 'outage');
    assert.equal(stop.state.since, T0 + EXT);
    const done = go(stop.state, stoppedEv, T0 + EXT + 15);
    assert.equal(done.action, 'none');
    assert.equal(done.state.phase, 'stopped');
    assert.equal(done.state.since, T0 + EXT + 15);
    // Still down: stays stopped.
    const still = go(done.state, down, T0 + 100 * EXT);
    assert.equal(still.action, 'none');
    assert.equal(still.state.phase, 'stopped');
    // The first tick with the source up respawns it; not a crash restart.
    const back = go(still.state, up, T0 + 100 * EXT + 1);
    assert.equal(back.action, 'spawn');
    assert.equal(back.state.phase, 'starting');
    assert.equal(back.state.downSince, null);
    assert.equal(back.state.restarts, 0);
    assert.deepEqual(back.state.recent, []);
    assert.equal(back.state.stopReason, null);
    assert.equal(back.state.startedAt, null);
    const run = go(back.state, started, T0 + 100 * EXT + 2);
    assert.equal(run.state.phase, 'running');
    assert.equal(run.state.startedAt, T0 + 100 * EXT + 2);
  });
});

describe('tracker lifecycle: outage', () => {
  test('source down -> outage; back before the limit -> running, no stop', () => {
    const s = runningAt(T0);
    const D = T0 + 500;
    const o = go(s, down, D);
    assert.equal(o.action, 'none');
    assert.equal(o.state.phase, 'outage');
    assert.equal(o.state.downSince, D);
    assert.equal(o.state.since, D);
    // Later down ticks do not move downSince.
    const o2 = go(o.state, down, D + EXT - 1);
    assert.equal(o2.action, 'none');
    assert.equal(o2.state.phase, 'outage');
    assert.equal(o2.state.downSince, D);
    const back = go(o2.state, up, D + EXT - 1);
    assert.equal(back.action, 'none');
    assert.equal(back.state.phase, 'running');
    assert.equal(back.state.downSince, null);
    assert.equal(back.state.since, D + EXT - 1);
    // A second outage is timed from its own start, not the first one's.
    const D2 = D + EXT + 10;
    const o3 = go(back.state, down, D2);
    assert.equal(o3.state.downSince, D2);
    assert.equal(go(o3.state, down, D2 + EXT - 1).state.phase, 'outage');
    assert.equal(go(o3.state, down, D2 + EXT).action, 'stop');
  });

  test('down for exactly extendedOutageMs -> stopping/stop; stopped -> stopped; source back -> spawn not counted as a restart', () => {
    const s = runningAt(T0);
    const D = T0 + 100;
    const o = go(s, down, D).state;
    const before = go(o, down, D + EXT - 1);
    assert.equal(before.action, 'none');
    assert.equal(before.state.phase, 'outage');
    const stop = go(before.state, down, D + EXT);
    assert.equal(stop.action, 'stop');
    assert.equal(stop.state.phase, 'stopping');
    assert.equal(stop.state.stopReason, 'outage');
    // Ticks while stopping do nothing, whatever the source does.
    assert.equal(go(stop.state, up, D + EXT + 1).action, 'none');
    assert.equal(go(stop.state, up, D + EXT + 1).state.phase, 'stopping');
    const done = go(stop.state, stoppedEv, D + EXT + 5);
    assert.equal(done.action, 'none');
    assert.equal(done.state.phase, 'stopped');
    assert.equal(done.state.restarts, 0);
    assert.equal(done.state.consecutiveFailures, 0);
    const later = go(done.state, up, D + 10 * EXT);
    assert.equal(later.action, 'spawn');
    assert.equal(later.state.phase, 'starting');
    assert.equal(later.state.restarts, 0);
    assert.deepEqual(later.state.recent, []);
    assert.equal(later.state.stopReason, null);
  });

  test('an outage that is first seen at the limit tick stops only extendedOutageMs after that tick', () => {
    // downSince is the first tick that saw the source down.
    const s = runningAt(T0);
    const o = go(s, down, T0 + 3 * EXT).state;
    assert.equal(o.phase, 'outage');
    assert.equal(go(o, down, T0 + 4 * EXT - 1).action, 'none');
    assert.equal(go(o, down, T0 + 4 * EXT).action, 'stop');
  });
});

describe('tracker lifecycle: crash restarts and backoff', () => {
  test('exited while running -> backoff at now + base; tick before retryAt does nothing; at retryAt spawn with restarts=1', () => {
    const s = runningAt(T0);
    const C = T0 + 40;
    const b = go(s, exited('killed by SIGSEGV'), C);
    assert.equal(b.action, 'none');
    assert.equal(b.state.phase, 'backoff');
    assert.equal(b.state.retryAt, C + BASE);
    assert.equal(b.state.consecutiveFailures, 1);
    assert.equal(b.state.lastError, 'killed by SIGSEGV');
    assert.equal(b.state.restarts, 0);
    const wait = go(b.state, up, C + BASE - 1);
    assert.equal(wait.action, 'none');
    assert.equal(wait.state.phase, 'backoff');
    const sp = go(wait.state, up, C + BASE);
    assert.equal(sp.action, 'spawn');
    assert.equal(sp.state.phase, 'starting');
    assert.equal(sp.state.restarts, 1);
    assert.deepEqual(sp.state.recent, [C + BASE]);
    assert.equal(sp.state.startedAt, null, 'reset at every spawn');
    // started stamps startedAt; the last error stays visible (why it was restarted).
    const run = go(sp.state, started, C + BASE + 1);
    assert.equal(run.state.phase, 'running');
    assert.equal(run.state.lastError, 'killed by SIGSEGV');
    assert.equal(run.state.startedAt, C + BASE + 1);
  });

  test('exited while outage -> backoff too, and the restart at retryAt lands in outage', () => {
    const s = go(runningAt(T0), down, T0 + 10).state;
    assert.equal(s.phase, 'outage');
    const b = go(s, exited(), T0 + 20);
    assert.equal(b.state.phase, 'backoff');
    assert.equal(b.state.retryAt, T0 + 20 + BASE);
    const sp = go(b.state, down, T0 + 20 + BASE);
    assert.equal(sp.action, 'spawn');
    assert.equal(sp.state.restarts, 1);
    assert.equal(go(sp.state, started, T0 + 20 + BASE).state.phase, 'outage');
  });

  test('consecutive failures double the delay (base, 2base, 4base, ...) capped at backoffMaxMs', () => {
    const rules: LifecycleRules = { ...RULES, flapMaxRestarts: 1000 };
    let s = runningAt(T0, rules);
    let now = T0 + 10;
    const delays = [BASE, 2 * BASE, 4 * BASE, 8 * BASE, MAX, MAX, MAX];
    assert.equal(8 * BASE, MAX, 'the ladder reaches the cap exactly at the 4th failure');
    delays.forEach((d, i) => {
      const b = go(s, exited(), now, rules);
      assert.equal(b.state.phase, 'backoff');
      assert.equal(b.state.consecutiveFailures, i + 1);
      assert.equal(b.state.retryAt - now, d, `failure ${i + 1}`);
      const early = go(b.state, up, now + d - 1, rules);
      assert.equal(early.action, 'none');
      assert.equal(early.state.phase, 'backoff');
      const sp = go(b.state, up, now + d, rules);
      assert.equal(sp.action, 'spawn');
      assert.equal(sp.state.restarts, i + 1);
      s = go(sp.state, started, now + d, rules).state;
      now = now + d + 10; // each run lasts 10 ms
    });
  });

  test('a run lasting >= stableAfterMs (from its input opening) resets the backoff to base; stableAfterMs - 1 does not', () => {
    const rules: LifecycleRules = { ...RULES, flapMaxRestarts: 1000 };
    let s = runningAt(T0, rules);
    // Three quick failures: the next delay would be 8 * base.
    for (let i = 0; i < 3; i++) {
      s = go(s, exited(), startedAtOf(s) + 1, rules).state;
      s = restartAt(s, rules);
    }
    assert.equal(s.consecutiveFailures, 3);
    const openedAt = startedAtOf(s);
    const short = go(s, exited(), openedAt + STABLE - 1, rules);
    assert.equal(short.state.consecutiveFailures, 4);
    assert.equal(short.state.retryAt, openedAt + STABLE - 1 + 8 * BASE);
    const stable = go(s, exited(), openedAt + STABLE, rules);
    assert.equal(stable.state.consecutiveFailures, 1);
    assert.equal(stable.state.retryAt, openedAt + STABLE + BASE);
    // After the reset it doubles again from base.
    const again = go(restartAt(stable.state, rules), exited(), stable.state.retryAt + 1, rules);
    assert.equal(again.state.consecutiveFailures, 2);
    assert.equal(again.state.retryAt, stable.state.retryAt + 1 + 2 * BASE);
  });

  test('a start that hangs in starting for >= stableAfterMs and then fails does not reset the backoff', () => {
    const rules: LifecycleRules = { ...RULES, flapMaxRestarts: 1000 };
    let s = runningAt(T0, rules);
    for (let i = 0; i < 2; i++) {
      s = go(s, exited(), startedAtOf(s) + 1, rules).state;
      s = restartAt(s, rules);
    }
    const b = go(s, exited(), startedAtOf(s) + 1, rules).state;
    assert.equal(b.phase, 'backoff');
    assert.equal(b.consecutiveFailures, 3);
    const sp = go(b, up, b.retryAt, rules);
    assert.equal(sp.action, 'spawn');
    const starting = sp.state;
    assert.equal(starting.phase, 'starting');
    assert.equal(starting.startedAt, null, 'the previous run\'s startedAt does not leak into this spawn');
    // Failing long after the spawn, the input never having opened: not a stable run.
    for (const at of [b.retryAt + STABLE, b.retryAt + 10 * STABLE]) {
      for (const ev of [startFailed('connect ETIMEDOUT'), exited('exit code 1')]) {
        const f = go(starting, ev, at, rules);
        assert.equal(f.action, 'none');
        assert.equal(f.state.phase, 'backoff', `${ev.type} at +${at - b.retryAt}`);
        assert.equal(f.state.consecutiveFailures, 4, `${ev.type} at +${at - b.retryAt}`);
        assert.equal(f.state.retryAt, at + 8 * BASE, `${ev.type} at +${at - b.retryAt}`);
      }
    }
    // An input that opens only after stableAfterMs in starting: the run is timed from the opening.
    const late = go(starting, started, b.retryAt + STABLE, rules).state;
    assert.equal(late.phase, 'running');
    assert.equal(late.startedAt, b.retryAt + STABLE);
    const quick = go(late, exited(), b.retryAt + 2 * STABLE - 1, rules).state;
    assert.equal(quick.consecutiveFailures, 4);
    assert.equal(quick.retryAt, b.retryAt + 2 * STABLE - 1 + 8 * BASE);
    const long = go(late, exited(), b.retryAt + 2 * STABLE, rules).state;
    assert.equal(long.consecutiveFailures, 1);
    assert.equal(long.retryAt, b.retryAt + 2 * STABLE + BASE);
  });

  test('start_failed behaves like exited', () => {
    const run = runningAt(T0);
    const starting = go(initialState(T0, true), up, T0).state;
    const outage = go(run, down, T0 + 5).state;
    const stopping = go(run, { type: 'stop', reason: 'removed' }, T0 + 5).state;
    const backoff = go(run, exited(), T0 + 5).state;
    const idle = initialState(T0, true);
    for (const s of [starting, run, outage, stopping, backoff, idle]) {
      for (const at of [T0 + 6, T0 + STABLE, T0 + 3 * STABLE]) {
        assert.deepEqual(go(s, startFailed('E'), at), go(s, exited('E'), at), `${s.phase} at +${at - T0}`);
      }
    }
    // And concretely: a spawn that fails to start goes to backoff at now + base, then doubles.
    const b1 = go(starting, startFailed('spawn ENOENT'), T0 + 3);
    assert.equal(b1.action, 'none');
    assert.equal(b1.state.phase, 'backoff');
    assert.equal(b1.state.retryAt, T0 + 3 + BASE);
    assert.equal(b1.state.lastError, 'spawn ENOENT');
    const sp = go(b1.state, up, T0 + 3 + BASE);
    assert.equal(sp.action, 'spawn');
    assert.equal(sp.state.restarts, 1);
    const b2 = go(sp.state, startFailed('spawn ENOENT'), T0 + 3 + BASE + 1);
    assert.equal(b2.state.phase, 'backoff');
    assert.equal(b2.state.retryAt, T0 + 3 + BASE + 1 + 2 * BASE);
  });

  test('backoff while the source is gone for extendedOutageMs: at retryAt -> stopped without spawning', () => {
    const rules: LifecycleRules = { ...RULES, extendedOutageMs: 50 };
    const s = runningAt(T0, rules);
    const D = T0 + 10;
    const b = go(s, exited(), D, rules).state; // source still counted up
    assert.equal(b.retryAt, D + BASE);
    const seenDown = go(b, down, D + 1, rules).state; // goes down during backoff
    assert.equal(seenDown.phase, 'backoff');
    assert.equal(seenDown.downSince, D + 1);
    const early = go(seenDown, down, D + BASE - 1, rules);
    assert.equal(early.action, 'none');
    assert.equal(early.state.phase, 'backoff', 'the backoff waits for retryAt even when no longer wanted');
    const at = go(seenDown, down, D + BASE, rules);
    assert.equal(at.action, 'none');
    assert.equal(at.state.phase, 'stopped');
    assert.equal(at.state.restarts, 0);
    // Respawned when the source is back; not a crash restart.
    const back = go(at.state, up, D + 5 * BASE, rules);
    assert.equal(back.action, 'spawn');
    assert.equal(back.state.restarts, 0);
    // Contrast: down for less than extendedOutageMs at retryAt -> restart.
    const shortDown = go(b, down, D + BASE - 49, rules).state;
    const restart = go(shortDown, down, D + BASE, rules);
    assert.equal(restart.action, 'spawn');
    assert.equal(restart.state.restarts, 1);
    assert.equal(go(restart.state, started, D + BASE, rules).state.phase, 'outage');
    // And exactly extendedOutageMs at retryAt -> stopped.
    const exact = go(b, down, D + BASE - 50, rules).state;
    assert.equal(go(exact, down, D + BASE, rules).state.phase, 'stopped');
  });
});

describe('tracker lifecycle: flapping guard', () => {
  // Constant 10 ms backoff so restarts are packed into the window.
  const rules: LifecycleRules = { ...RULES, backoffBaseMs: 10, backoffMaxMs: 10 };

  /** Running after 3 crash restarts at T0+10, T0+20, T0+30. */
  function threeRestarts(): LifecycleState {
    let s = runningAt(T0, rules);
    for (let i = 0; i < FLAP_MAX; i++) {
      const b = go(s, exited(), startedAtOf(s), rules);
      assert.equal(b.state.phase, 'backoff', `failure ${i + 1} is not parked`);
      s = restartAt(b.state, rules);
    }
    assert.equal(s.restarts, 3);
    assert.deepEqual(s.recent, [T0 + 10, T0 + 20, T0 + 30]);
    return s;
  }

  test('the failure that would be the 4th restart within the window parks it in failed', () => {
    const s = threeRestarts();
    const F = T0 + 10 + FLAP_WIN - 1; // the first restart is still inside the window
    const f = go(s, exited('exit code 2'), F, rules);
    assert.equal(f.action, 'none');
    assert.equal(f.state.phase, 'failed');
    assert.equal(f.state.since, F);
    assert.equal(f.state.cooldownUntil, F + COOLDOWN);
    assert.equal(f.state.restarts, 3);
    assert.ok(f.state.lastError?.startsWith('exit code 2'), f.state.lastError ?? '');
    assert.match(f.state.lastError ?? '', /\b3 times\b/);
    assert.match(f.state.lastError ?? '', /parked/);
    assert.equal(f.state.lastError, 'exit code 2; restarted 3 times within 1 s: parked for 5 s');
  });

  test('a restart exactly flapWindowMs before the failure has left the window: backoff, not failed', () => {
    const s = threeRestarts();
    const F = T0 + 10 + FLAP_WIN;
    const b = go(s, exited(), F, rules);
    assert.equal(b.state.phase, 'backoff');
    assert.deepEqual(b.state.recent, [T0 + 20, T0 + 30]);
    assert.equal(b.state.retryAt, F + 10);
  });

  test('start_failed also trips the guard', () => {
    const s = threeRestarts();
    assert.equal(go(s, exited(), T0 + 31, rules).state.phase, 'failed');
    const starting = go({ ...s, phase: 'starting' }, startFailed(), T0 + 31, rules);
    assert.equal(starting.state.phase, 'failed');
  });

  test('during the cool-down ticks do nothing; at cooldownUntil a tick spawns with the window cleared', () => {
    const F = T0 + 500;
    const f = go(threeRestarts(), exited(), F, rules).state;
    assert.equal(f.phase, 'failed');
    const CU = F + COOLDOWN;
    for (const at of [F, F + 1, CU - 1]) {
      const t = go(f, up, at, rules);
      assert.equal(t.action, 'none', `tick at +${at - F}`);
      assert.equal(t.state.phase, 'failed');
      assert.equal(t.state, f, 'nothing changes at all');
    }
    const sp = go(f, up, CU, rules);
    assert.equal(sp.action, 'spawn');
    assert.equal(sp.state.phase, 'starting');
    assert.equal(sp.state.since, CU);
    assert.equal(sp.state.startedAt, null);
    assert.deepEqual(sp.state.recent, []);
    assert.equal(sp.state.consecutiveFailures, 0);
    assert.equal(sp.state.restarts, 4);
    // One more immediate crash goes to backoff (at base), not failed.
    const run = go(sp.state, started, CU, rules).state;
    const b = go(run, exited(), CU + 1, rules);
    assert.equal(b.state.phase, 'backoff');
    assert.equal(b.state.consecutiveFailures, 1);
    assert.equal(b.state.retryAt, CU + 1 + 10);
  });

  test('a cool-down that ends while the source has been gone for extendedOutageMs -> stopped, no spawn', () => {
    const F = T0 + 500;
    const f = go(threeRestarts(), exited(), F, rules).state;
    const d = go(f, down, F + 1, rules);
    assert.equal(d.action, 'none');
    assert.equal(d.state.phase, 'failed');
    assert.equal(d.state.downSince, F + 1);
    const end = go(d.state, down, F + COOLDOWN, rules);
    assert.equal(end.action, 'none');
    assert.equal(end.state.phase, 'stopped');
    assert.deepEqual(end.state.recent, []);
    assert.equal(end.state.consecutiveFailures, 0);
    const back = go(end.state, up, F + COOLDOWN + 1, rules);
    assert.equal(back.action, 'spawn');
    assert.equal(back.state.restarts, 3, 'a respawn after stopped is not a crash restart');
  });

  test('restarts spaced wider than the window never park it', () => {
    let s = runningAt(T0, rules);
    for (let i = 1; i <= 20; i++) {
      // Each run lasts exactly the window (but less than stableAfterMs), so the
      // previous restart has just left the window when it crashes.
      const b = go(s, exited(), startedAtOf(s) + FLAP_WIN, rules);
      assert.equal(b.state.phase, 'backoff', `failure ${i}`);
      assert.deepEqual(b.state.recent, []);
      assert.equal(b.state.consecutiveFailures, i);
      s = restartAt(b.state, rules);
      assert.equal(s.restarts, i);
    }
  });
});

describe('tracker lifecycle: input lost', () => {
  test('input_lost in running -> stopping/stop; stopped -> backoff at now + base like a crash; at retryAt spawn counts a restart', () => {
    const s = runningAt(T0);
    const L = T0 + 300;
    const l = go(s, { type: 'input_lost', error: 'input closed' }, L);
    assert.equal(l.action, 'stop');
    assert.equal(l.state.phase, 'stopping');
    assert.equal(l.state.since, L);
    assert.equal(l.state.stopReason, 'input_lost');
    assert.equal(l.state.lastError, 'input closed');
    assert.equal(l.state.consecutiveFailures, 0, 'the failure is counted when the stop completes');
    // Ticks while stopping do nothing.
    const wait = go(l.state, up, L + 10);
    assert.equal(wait.action, 'none');
    assert.equal(wait.state.phase, 'stopping');
    const b = go(l.state, stoppedEv, L + 20);
    assert.equal(b.action, 'none');
    assert.equal(b.state.phase, 'backoff');
    assert.equal(b.state.since, L + 20);
    assert.equal(b.state.consecutiveFailures, 1);
    assert.equal(b.state.retryAt, L + 20 + BASE);
    assert.equal(b.state.lastError, 'input closed');
    assert.equal(b.state.restarts, 0);
    assert.deepEqual(b.state.recent, []);
    const early = go(b.state, up, L + 20 + BASE - 1);
    assert.equal(early.action, 'none');
    assert.equal(early.state.phase, 'backoff');
    const sp = go(b.state, up, L + 20 + BASE);
    assert.equal(sp.action, 'spawn');
    assert.equal(sp.state.phase, 'starting');
    assert.equal(sp.state.restarts, 1);
    assert.deepEqual(sp.state.recent, [L + 20 + BASE]);
    assert.equal(sp.state.stopReason, null);
    assert.equal(sp.state.startedAt, null);
    const run = go(sp.state, started, L + 20 + BASE + 1);
    assert.equal(run.state.phase, 'running');
    assert.equal(run.state.lastError, 'input closed');
  });

  test('input_lost in outage also stops; an exited / start_failed while stopping for input_lost completes to the same backoff', () => {
    const o = go(runningAt(T0), down, T0 + 1).state;
    const l = go(o, { type: 'input_lost', error: 'x' }, T0 + 2);
    assert.equal(l.action, 'stop');
    assert.equal(l.state.phase, 'stopping');
    assert.equal(l.state.stopReason, 'input_lost');
    const viaStopped = go(l.state, stoppedEv, T0 + 3);
    for (const ev of [exited('killed'), startFailed('gone')]) {
      const b = go(l.state, ev, T0 + 3);
      assert.equal(b.action, 'none');
      assert.equal(b.state.phase, 'backoff');
      assert.equal(b.state.retryAt, T0 + 3 + BASE);
      assert.equal(b.state.consecutiveFailures, 1);
      assert.equal(b.state.lastError, 'x', 'the exit is the stop we asked for: the input_lost error is kept');
      assert.deepEqual(b, viaStopped);
    }
    // The restart at retryAt lands in outage (the source is still down).
    const sp = go(viaStopped.state, down, T0 + 3 + BASE);
    assert.equal(sp.action, 'spawn');
    assert.equal(go(sp.state, started, T0 + 3 + BASE).state.phase, 'outage');
  });

  test('an input_lost after a stable run counts as a first failure (backoff at base); after a short run it doubles', () => {
    const rules: LifecycleRules = { ...RULES, flapMaxRestarts: 1000 };
    let s = runningAt(T0, rules);
    for (let i = 0; i < 3; i++) {
      s = go(s, exited(), startedAtOf(s) + 1, rules).state;
      s = restartAt(s, rules);
    }
    assert.equal(s.consecutiveFailures, 3);
    const openedAt = startedAtOf(s);
    const lost: LifecycleEvent = { type: 'input_lost', error: 'input closed' };
    const short = go(go(s, lost, openedAt + 10, rules).state, stoppedEv, openedAt + 20, rules).state;
    assert.equal(short.phase, 'backoff');
    assert.equal(short.consecutiveFailures, 4);
    assert.equal(short.retryAt, openedAt + 20 + 8 * BASE);
    const long = go(go(s, lost, openedAt + STABLE, rules).state, stoppedEv, openedAt + STABLE + 20, rules).state;
    assert.equal(long.phase, 'backoff');
    assert.equal(long.consecutiveFailures, 1);
    assert.equal(long.retryAt, openedAt + STABLE + 20 + BASE);
  });

  test('repeated input_lost failures back off exponentially (capped) and then park the tracker in failed', () => {
    const rules: LifecycleRules = { ...RULES, flapMaxRestarts: 5, flapWindowMs: 10_000 };
    let s = runningAt(T0, rules);
    const delays = [BASE, 2 * BASE, 4 * BASE, MAX, MAX];
    const restartsAt: number[] = [];
    delays.forEach((d, i) => {
      const L = startedAtOf(s) + 30; // each run lasts 30 ms: never stable
      const l = go(s, { type: 'input_lost', error: `input closed #${i + 1}` }, L, rules);
      assert.equal(l.action, 'stop');
      assert.equal(l.state.phase, 'stopping');
      // The stop completes by `stopped`, or by the process exiting.
      const done = i % 2 === 0 ? stoppedEv : exited('killed by SIGTERM');
      const b = go(l.state, done, L + 5, rules);
      assert.equal(b.action, 'none');
      assert.equal(b.state.phase, 'backoff', `failure ${i + 1}`);
      assert.equal(b.state.consecutiveFailures, i + 1);
      assert.equal(b.state.retryAt - (L + 5), d, `failure ${i + 1}`);
      assert.equal(b.state.lastError, `input closed #${i + 1}`);
      assert.deepEqual(b.state.recent, restartsAt);
      assert.equal(go(b.state, up, b.state.retryAt - 1, rules).action, 'none');
      restartsAt.push(b.state.retryAt);
      s = restartAt(b.state, rules);
      assert.equal(s.restarts, i + 1);
      assert.deepEqual(s.recent, restartsAt);
    });
    // The 6th failure: 5 restarts within the window -> parked in failed for the cool-down.
    const L = startedAtOf(s) + 30;
    const l = go(s, { type: 'input_lost', error: 'input closed #6' }, L, rules);
    assert.equal(l.action, 'stop');
    const F = L + 5;
    const f = go(l.state, stoppedEv, F, rules);
    assert.equal(f.action, 'none');
    assert.equal(f.state.phase, 'failed');
    assert.equal(f.state.since, F);
    assert.equal(f.state.cooldownUntil, F + COOLDOWN);
    assert.equal(f.state.consecutiveFailures, 6);
    assert.equal(f.state.restarts, 5);
    assert.equal(f.state.lastError, 'input closed #6; restarted 5 times within 10 s: parked for 5 s');
    const parked = go(f.state, up, F + COOLDOWN - 1, rules);
    assert.equal(parked.action, 'none');
    assert.equal(parked.state, f.state);
    // After the cool-down: a fresh start with the window and the backoff cleared.
    const sp = go(f.state, up, F + COOLDOWN, rules);
    assert.equal(sp.action, 'spawn');
    assert.equal(sp.state.phase, 'starting');
    assert.equal(sp.state.consecutiveFailures, 0);
    assert.deepEqual(sp.state.recent, []);
    assert.equal(sp.state.restarts, 6);
  });

  test('a stop (removed) while stopping for input_lost takes over: idle, no failure counted', () => {
    const l = go(runningAt(T0), { type: 'input_lost', error: 'x' }, T0 + 5).state;
    const rm = go(l, { type: 'stop', reason: 'removed' }, T0 + 6);
    assert.equal(rm.action, 'none', 'no second stop action');
    assert.equal(rm.state.stopReason, 'removed');
    const done = go(rm.state, stoppedEv, T0 + 7);
    assert.equal(done.state.phase, 'idle');
    assert.equal(done.state.consecutiveFailures, 0);
    assert.equal(done.state.retryAt, 0);
  });

  test('input_lost outside running/outage changes nothing', () => {
    const starting = go(initialState(T0, true), up, T0).state;
    const backoff = go(runningAt(T0), exited(), T0 + 1).state;
    for (const s of [initialState(T0, true), starting, backoff]) {
      const r = go(s, { type: 'input_lost', error: 'x' }, T0 + 5);
      assert.equal(r.action, 'none');
      assert.equal(r.state, s);
    }
  });
});

describe('tracker lifecycle: stop (removed / shutdown)', () => {
  for (const reason of ['removed', 'shutdown'] as const) {
    test(`stop ${reason} from running -> stopping/stop, then stopped -> idle`, () => {
      const s = runningAt(T0);
      const st = go(s, { type: 'stop', reason }, T0 + 10);
      assert.equal(st.action, 'stop');
      assert.equal(st.state.phase, 'stopping');
      assert.equal(st.state.stopReason, reason);
      assert.equal(st.state.since, T0 + 10);
      const done = go(st.state, stoppedEv, T0 + 30);
      assert.equal(done.action, 'none');
      assert.equal(done.state.phase, 'idle');
      assert.equal(done.state.since, T0 + 30);
      assert.equal(done.state.stopReason, reason);
      assert.equal(done.state.restarts, 0);
    });
  }

  test('stop from starting and outage -> stopping/stop', () => {
    const starting = go(initialState(T0, true), up, T0).state;
    const outage = go(runningAt(T0), down, T0 + 1).state;
    for (const s of [starting, outage]) {
      const r = go(s, { type: 'stop', reason: 'shutdown' }, T0 + 2);
      assert.equal(r.action, 'stop', s.phase);
      assert.equal(r.state.phase, 'stopping');
    }
  });

  test('stop from backoff / idle / stopped / failed -> idle with action none', () => {
    const backoff = go(runningAt(T0), exited(), T0 + 1).state;
    const idle = initialState(T0, true);
    const stopped = go(go(go(runningAt(T0), down, T0 + 1).state, down, T0 + 1 + EXT).state, stoppedEv, T0 + 2 + EXT).state;
    assert.equal(stopped.phase, 'stopped');
    const failed: LifecycleState = { ...backoff, phase: 'failed', cooldownUntil: T0 + COOLDOWN };
    for (const s of [backoff, idle, stopped, failed]) {
      const r = go(s, { type: 'stop', reason: 'removed' }, T0 + 3 + EXT);
      assert.equal(r.action, 'none', s.phase);
      assert.equal(r.state.phase, 'idle');
      assert.equal(r.state.stopReason, 'removed');
    }
    // idle -> idle keeps `since`.
    assert.equal(go(idle, { type: 'stop', reason: 'removed' }, T0 + 99).state.since, T0);
    assert.equal(go(backoff, { type: 'stop', reason: 'removed' }, T0 + 99).state.since, T0 + 99);
  });

  test('an exited (or start_failed) while stopping completes the stop: idle, no restart counted', () => {
    const st = go(runningAt(T0), { type: 'stop', reason: 'removed' }, T0 + 10).state;
    for (const ev of [exited('SIGTERM'), startFailed('gone')]) {
      const r = go(st, ev, T0 + 11);
      assert.equal(r.action, 'none');
      assert.equal(r.state.phase, 'idle');
      assert.equal(r.state.restarts, 0);
      assert.equal(r.state.consecutiveFailures, 0);
      assert.equal(r.state.retryAt, 0);
    }
  });

  test('an exited while stopping for an outage completes to stopped', () => {
    const o = go(runningAt(T0), down, T0 + 1).state;
    const st = go(o, down, T0 + 1 + EXT).state;
    assert.equal(st.stopReason, 'outage');
    const r = go(st, exited('SIGTERM'), T0 + 2 + EXT);
    assert.equal(r.state.phase, 'stopped');
    assert.equal(r.state.restarts, 0);
  });

  test('stop while stopping for an outage takes over the reason: the stop ends in idle, not stopped', () => {
    const o = go(runningAt(T0), down, T0 + 1).state;
    const st = go(o, down, T0 + 1 + EXT).state;
    const rm = go(st, { type: 'stop', reason: 'removed' }, T0 + 2 + EXT);
    assert.equal(rm.action, 'none', 'no second stop action');
    assert.equal(rm.state.phase, 'stopping');
    assert.equal(rm.state.stopReason, 'removed');
    assert.equal(go(rm.state, stoppedEv, T0 + 3 + EXT).state.phase, 'idle');
  });
});

describe('tracker lifecycle: events that do not apply', () => {
  test('started / stopped while running change nothing', () => {
    const s = runningAt(T0);
    for (const ev of [started, stoppedEv]) {
      const r = go(s, ev, T0 + 100);
      assert.equal(r.action, 'none', ev.type);
      assert.equal(r.state, s, ev.type);
    }
  });

  test('started / stopped / exited in idle, backoff, stopped and failed change nothing', () => {
    const idle = initialState(T0, true);
    const backoff = go(runningAt(T0), exited(), T0 + 1).state;
    const stopped = go(go(go(runningAt(T0), down, T0 + 1).state, down, T0 + 1 + EXT).state, stoppedEv, T0 + 2 + EXT).state;
    const failed: LifecycleState = { ...backoff, phase: 'failed', cooldownUntil: T0 + COOLDOWN };
    const states: LifecycleState[] = [idle, backoff, stopped, failed];
    const evs: LifecycleEvent[] = [started, stoppedEv, exited(), startFailed()];
    for (const s of states) {
      for (const ev of evs) {
        const r = go(s, ev, T0 + 3 + EXT);
        assert.equal(r.action, 'none', `${ev.type} in ${s.phase}`);
        assert.equal(r.state, s, `${ev.type} in ${s.phase}`);
      }
    }
  });

  test('stopped while starting / outage changes nothing', () => {
    const starting = go(initialState(T0, true), up, T0).state;
    const outage = go(runningAt(T0), down, T0 + 1).state;
    for (const s of [starting, outage]) {
      const r = go(s, stoppedEv, T0 + 2);
      assert.equal(r.action, 'none');
      assert.equal(r.state, s);
    }
  });
});

describe('tracker lifecycle: helpers', () => {
  test('wanted(): always while the source is up; for exactly extendedOutageMs after it went down', () => {
    const upState = initialState(T0, true);
    assert.equal(wanted(upState, T0, RULES), true);
    assert.equal(wanted(upState, T0 + 1e9, RULES), true);
    const downState = initialState(T0, false);
    assert.equal(wanted(downState, T0, RULES), true);
    assert.equal(wanted(downState, T0 + EXT - 1, RULES), true);
    assert.equal(wanted(downState, T0 + EXT, RULES), false);
    assert.equal(wanted(downState, T0 + 10 * EXT, RULES), false);
    assert.equal(wanted({ ...upState, downSince: T0 + 50 }, T0 + 50 + EXT - 1, RULES), true);
    assert.equal(wanted({ ...upState, downSince: T0 + 50 }, T0 + 50 + EXT, RULES), false);
    assert.equal(wanted(downState, T0 + EXT, { ...RULES, extendedOutageMs: EXT + 1 }), true);
  });

  test('backoffMs(): base, doubling, capped; below 1 counts as the first failure; huge counts do not overflow', () => {
    assert.equal(backoffMs(1, RULES), BASE);
    assert.equal(backoffMs(2, RULES), 2 * BASE);
    assert.equal(backoffMs(3, RULES), 4 * BASE);
    assert.equal(backoffMs(4, RULES), 8 * BASE);
    assert.equal(backoffMs(5, RULES), MAX);
    assert.equal(backoffMs(1000, RULES), MAX);
    assert.equal(backoffMs(0, RULES), BASE);
    assert.equal(backoffMs(-3, RULES), BASE);
    const capless = { ...RULES, backoffMaxMs: Number.POSITIVE_INFINITY };
    assert.equal(backoffMs(31, capless), BASE * 2 ** 30);
    assert.equal(backoffMs(1000, capless), BASE * 2 ** 30, 'the exponent is capped at 30');
    assert.ok(Number.isFinite(backoffMs(1e9, capless)));
    assert.equal(backoffMs(3, { ...RULES, backoffMaxMs: 350 }), 350);
  });
});

describe('tracker lifecycle: purity', () => {
  test('step() never mutates a deep-frozen input and returns fresh states', () => {
    const rules: LifecycleRules = { ...RULES, backoffBaseMs: 10, backoffMaxMs: 10 };
    // A scenario touching every event type and every phase, each input frozen.
    const events: [LifecycleEvent, number][] = [
      [up, T0], [started, T0 + 1], [down, T0 + 2], [up, T0 + 3],
      [exited(), T0 + 4], [up, T0 + 14], [startFailed(), T0 + 15], [up, T0 + 35], [started, T0 + 35],
      [exited(), T0 + 36], [up, T0 + 46], [started, T0 + 46], [exited(), T0 + 47], // 3 restarts -> failed
      [up, T0 + 47 + COOLDOWN], [started, T0 + 48 + COOLDOWN],
      [{ type: 'input_lost', error: 'closed' }, T0 + 49 + COOLDOWN], [stoppedEv, T0 + 50 + COOLDOWN], // backoff to +60
      [up, T0 + 60 + COOLDOWN], [started, T0 + 61 + COOLDOWN],
      [down, T0 + 62 + COOLDOWN], [down, T0 + 62 + COOLDOWN + EXT], [stoppedEv, T0 + 63 + COOLDOWN + EXT],
      [up, T0 + 64 + COOLDOWN + EXT], [{ type: 'stop', reason: 'shutdown' }, T0 + 65 + COOLDOWN + EXT],
      [stoppedEv, T0 + 66 + COOLDOWN + EXT],
    ];
    const phases: string[] = [];
    let s = initialState(T0, true);
    for (const [ev, at] of events) {
      const frozen = deepFreeze(structuredClone(s));
      assert.ok(Object.isFrozen(frozen) && Object.isFrozen(frozen.recent));
      const snapshot = JSON.stringify(frozen);
      const r = step(frozen, ev, at, rules);
      assert.equal(JSON.stringify(frozen), snapshot, `${ev.type} mutated its input`);
      assert.ok(r.state === frozen || !Object.isFrozen(r.state), 'a changed state is a new object');
      if (r.state.recent !== frozen.recent) assert.ok(!Object.isFrozen(r.state.recent));
      // The same step on an unfrozen copy gives the same result.
      assert.deepEqual(step(structuredClone(s), ev, at, rules), r);
      phases.push(r.state.phase);
      s = r.state;
    }
    assert.deepEqual(phases, [
      'starting', 'running', 'outage', 'running',
      'backoff', 'starting', 'backoff', 'starting', 'running',
      'backoff', 'starting', 'running', 'failed',
      'starting', 'running',
      'stopping', 'backoff',
      'starting', 'running',
      'outage', 'stopping', 'stopped',
      'starting', 'stopping',
      'idle',
    ]);
    assert.equal(s.restarts, 5);
  });
});

describe('nextDue: when the supervisor must run its next pass', () => {
  test('outage limit, restart time, end of cool-down; none while running with the node up', () => {
    const r = runningAt(T0);
    assert.equal(nextDue(r, RULES), null);
    const o = go(r, down, T0 + 10).state;
    assert.equal(o.phase, 'outage');
    assert.equal(nextDue(o, RULES), T0 + 10 + EXT);
    // At exactly that time a tick stops it.
    assert.equal(go(o, down, T0 + 10 + EXT).action, 'stop');
    const b = go(r, exited(), T0 + 50).state;
    assert.equal(b.phase, 'backoff');
    assert.equal(nextDue(b, RULES), b.retryAt);
    assert.equal(nextDue(initialState(T0, true), RULES), null);
    let s = runningAt(T0);
    for (let i = 0; i < FLAP_MAX + 1 && s.phase !== 'failed'; i++) {
      s = go(s, exited(), s.since + 1).state;
      if (s.phase === 'backoff') s = go(go(s, up, s.retryAt).state, started, s.retryAt).state;
    }
    assert.equal(s.phase, 'failed');
    assert.equal(nextDue(s, RULES), s.cooldownUntil);
  });
});
