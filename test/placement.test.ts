// The placement state machine (ingress/placement.ts) on an injected clock: a
// connection moves up only after its rate stayed high, back only after it stayed
// low four times as long, and a rate hovering around the threshold does not flap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PlacementState, placementPolicy, DEFAULT_PLACEMENT, type Placement } from '../src/ingress/placement.js';

const policy = placementPolicy({ upBytesPerS: 100_000, upForMs: 1000, tickMs: 250 });

/** Feeds `rate` bytes/s for `ms` in 250 ms ticks, completing any move at once; returns the moves made. */
function run(p: PlacementState, clock: { t: number }, rate: number, ms: number): Placement[] {
  const moves: Placement[] = [];
  for (let i = 0; i < ms / 250; i++) {
    clock.t += 250;
    const to = p.tick(clock.t, rate / 4);
    if (to !== null) {
      p.begin();
      p.end(clock.t, to);
      moves.push(to);
    }
  }
  return moves;
}

test('defaults: down threshold a quarter of the up one, held four times as long', () => {
  const d = placementPolicy();
  assert.equal(d.downBytesPerS, DEFAULT_PLACEMENT.upBytesPerS / 4);
  assert.equal(d.downForMs, DEFAULT_PLACEMENT.upForMs * 4);
  assert.equal(policy.downBytesPerS, 25_000);
  assert.equal(policy.downForMs, 4000);
});

test('a fast connection moves to a shard only after its rate stayed above the threshold for upForMs', () => {
  const clock = { t: 0 };
  const p = new PlacementState(policy, clock.t);
  assert.deepEqual(run(p, clock, 200_000, 750), []);
  assert.equal(p.placement, 'main');
  assert.deepEqual(run(p, clock, 200_000, 250), ['shard']);
  assert.equal(p.placement, 'shard');
  assert.deepEqual(p.moves, { main: 0, shard: 1 });
});

test('a short burst does not move; a dip resets the clock', () => {
  const clock = { t: 0 };
  const p = new PlacementState(policy, clock.t);
  for (let i = 0; i < 20; i++) {
    assert.deepEqual(run(p, clock, 500_000, 750), []);
    assert.deepEqual(run(p, clock, 90_000, 250), []);
  }
  assert.equal(p.placement, 'main');
});

test('back to main only after the rate stayed below a quarter of the threshold for 4 x upForMs', () => {
  const clock = { t: 0 };
  const p = new PlacementState(policy, clock.t, 'shard');
  // Below the up threshold but above the down one: stays on the shard however long.
  assert.deepEqual(run(p, clock, 50_000, 20_000), []);
  assert.deepEqual(run(p, clock, 10_000, 3750), []);
  assert.deepEqual(run(p, clock, 10_000, 250), ['main']);
  assert.equal(p.placement, 'main');
});

test('a rate hovering around the threshold does not flap', () => {
  const clock = { t: 0 };
  const p = new PlacementState(policy, clock.t);
  const moves: Placement[] = [];
  // 60 s alternating 1.3 s above and 1.3 s below the threshold (+-10 %).
  for (let i = 0; i < 23; i++) {
    moves.push(...run(p, clock, 110_000, 1250));
    moves.push(...run(p, clock, 90_000, 1250));
  }
  assert.deepEqual(moves, ['shard'], 'one move up, never back: 90 % of the threshold is far above the down threshold');
});

test('a move declined by the shard is retried at the next tick', () => {
  const clock = { t: 0 };
  const p = new PlacementState(policy, clock.t);
  let to: Placement | null = null;
  for (let i = 0; i < 4; i++) to = p.tick((clock.t += 250), 50_000);
  assert.equal(to, 'shard');
  p.begin();
  assert.equal(p.tick((clock.t += 250), 50_000), null, 'no decision while a move is under way');
  p.end(clock.t, null);
  assert.equal(p.placement, 'main');
  assert.equal(p.tick((clock.t += 250), 50_000), 'shard');
});

test('alternateMs (test hook) moves every period whatever the rate', () => {
  const clock = { t: 0 };
  const p = new PlacementState(placementPolicy({ alternateMs: 500 }), clock.t);
  const moves = run(p, clock, 0, 2000);
  assert.deepEqual(moves, ['shard', 'main', 'shard', 'main']);
});

test('a saturated main thread lowers the up threshold; the way back is a quarter of the threshold moved up at', () => {
  const clock = { t: 0 };
  const p = new PlacementState(policy, clock.t); // up 100 KB/s, busy factor 8: 12.5 KB/s while busy
  for (let i = 0; i < 8; i++) assert.equal(p.tick((clock.t += 250), 5_000), null, '20 KB/s, main thread not busy: stays');
  let to: Placement | null = null;
  for (let i = 0; i < 4 && to === null; i++) to = p.tick((clock.t += 250), 5_000, true);
  assert.equal(to, 'shard');
  p.begin();
  p.end(clock.t, 'shard');
  // 20 KB/s is below the usual down threshold (25 KB/s) but above 12.5 / 4: stays on the worker.
  for (let i = 0; i < 40; i++) assert.equal(p.tick((clock.t += 250), 5_000), null);
  to = null;
  for (let i = 0; i < 16 && to === null; i++) to = p.tick((clock.t += 250), 500);
  assert.equal(to, 'main');
});
