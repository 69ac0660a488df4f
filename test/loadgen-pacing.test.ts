// The bench generator's staggered pacing (bench/lib/loadgen.ts staggeredDue): each
// connection owes, at its own phase, everything up to its next period boundary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { staggeredDue } from '../bench/lib/loadgen.js';

test('before its phase a connection owes nothing', () => {
  assert.equal(staggeredDue(1000, 5, -0.1), 0);
});

test('at its phase a connection owes one period, and the next period only at the next boundary', () => {
  assert.equal(staggeredDue(1000, 5, 0), 5);
  assert.equal(staggeredDue(1000, 5, 4.99), 5);
  assert.equal(staggeredDue(1000, 5, 5), 10);
});

test('over many periods the rate is the requested one', () => {
  // 4,700 frames/s per node, one write every 5 ms: 1 s after the phase, 1 s + one period owed.
  assert.equal(staggeredDue(4700, 5, 999.9), 4700);
  assert.equal(staggeredDue(4700, 5, 1000), Math.floor(4700 * 1.005));
});
