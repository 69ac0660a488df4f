// The pollers' shell: one poll at a time, the next scheduled by what the last returned,
// stop() aborts the poll in flight and resolves only once nothing runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PollLoop } from '../src/util/poll-loop.js';
import { until } from './helpers.js';

test('each poll schedules the next by its answer; null ends the loop; never two at once', async () => {
  let running = 0;
  let most = 0;
  let n = 0;
  const loop = new PollLoop(async () => {
    running++;
    most = Math.max(most, running);
    await new Promise((r) => setTimeout(r, 2));
    running--;
    return ++n < 5 ? 0 : null;
  }, () => null);
  loop.start();
  loop.start(); // idempotent
  await until(() => n === 5, 'five polls');
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(n, 5, 'null ended the loop');
  assert.equal(most, 1, 'one poll at a time');
  await loop.stop(new Error('done'));
});

test('stop() aborts the poll in flight with its reason and resolves after it settled; nothing runs after', async () => {
  let polls = 0;
  let settled = false;
  let reason: unknown = null;
  const loop = new PollLoop((signal) => new Promise((resolve) => {
    polls++;
    signal.addEventListener('abort', () => {
      reason = signal.reason;
      setTimeout(() => { settled = true; resolve(0); }, 10);
    });
  }), () => 0);
  loop.start();
  await until(() => polls === 1, 'the first poll');
  await loop.stop(new Error('stopping'));
  assert.equal(settled, true, 'stop() waited for the poll in flight');
  assert.equal((reason as Error).message, 'stopping');
  assert.equal(loop.stopped, true);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(polls, 1, 'no poll after stop');
  loop.start();
  assert.equal(polls, 1, 'start() after stop() does nothing');
});

test('a poll that rejects goes to onError, whose answer schedules the next poll', async () => {
  let polls = 0;
  const errors: string[] = [];
  const loop = new PollLoop(async () => {
    polls++;
    if (polls === 1) throw new Error('bug');
    return null;
  }, (err) => {
    errors.push((err as Error).message);
    return 1;
  });
  loop.start();
  await until(() => polls === 2, 'the poll after the failure');
  assert.deepEqual(errors, ['bug']);
  await loop.stop(new Error('done'));
});
