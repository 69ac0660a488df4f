// TrackerProcess against a real subprocess (test/fixtures/fake-tracker.js).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { TrackerProcess, expandCommand, type TrackerProcessOptions } from '../src/tracker/tracker-process.js';
import { until, freePort, FAKE_TRACKER } from './helpers.js';



const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const started: TrackerProcess[] = [];
after(async () => {
  await Promise.all(started.map((t) => t.stop(100)));
});

interface Run {
  t: TrackerProcess;
  out: string[];
  err: string[];
  exits: Array<[number | null, string | null]>;
}

/** A fake tracker on a fresh port with test-speed timings; `over` replaces options. */
async function fake(flags: string[], over: Partial<TrackerProcessOptions> = {}): Promise<Run> {
  const port = await freePort();
  const out: string[] = [];
  const err: string[] = [];
  const exits: Array<[number | null, string | null]> = [];
  const t = new TrackerProcess({
    command: [process.execPath, FAKE_TRACKER, '--tcp-port', '{port}', ...flags],
    nodeId: 'node-1',
    port,
    input: 'tcp',
    startupDelayMs: 20,
    retryDelayMs: 25,
    connectRetries: 80,
    failStopGraceMs: 500,
    trackLine: (l) => out.push(l),
    stderrLine: (l) => err.push(l),
    onExit: (code, signal) => exits.push([code, signal]),
    ...over,
  });
  started.push(t);
  return { t, out, err, exits };
}

test('expandCommand substitutes placeholders and drops an unset config with its -c', () => {
  const cmd = ['python', '-m', 'retina_tracker.track_detections', '--tcp', '--tcp-port', '{port}',
    '--name=tracker-{node_id}', '-c', '{config}'];
  assert.deepEqual(expandCommand(cmd, { port: 31000, nodeId: 'n7', configPath: '/etc/t.yaml' }),
    ['python', '-m', 'retina_tracker.track_detections', '--tcp', '--tcp-port', '31000', '--name=tracker-n7', '-c', '/etc/t.yaml']);
  assert.deepEqual(expandCommand(cmd, { port: 31000, nodeId: 'n7' }),
    ['python', '-m', 'retina_tracker.track_detections', '--tcp', '--tcp-port', '31000', '--name=tracker-n7']);
  assert.deepEqual(expandCommand(['x', '--config', '{config}', '--cfg={config}', 'y'], { nodeId: 'a' }), ['x', 'y']);
  assert.throws(() => expandCommand(['x', '{port}'], { nodeId: 'a' }), /no port/);
});

test('placeholders reach the real process; echo of written lines comes back as track lines', async () => {
  const { t, out } = await fake(['--node', '{node_id}', '-c', '{config}', '--print-args', '--echo'], { configPath: '/tmp/tracker.yaml' });
  assert.equal(t.state, 'new');
  await t.start();
  assert.equal(t.state, 'connected');
  assert.ok(t.pid && t.pid > 0);
  await until(() => out.length >= 1, 'args line');
  assert.deepEqual(JSON.parse(out[0]!).args, ['--tcp-port', String(t.port), '--node', 'node-1', '-c', '/tmp/tracker.yaml', '--print-args', '--echo']);
  assert.equal(t.write(Buffer.from('{"timestamp":1,"delay":[1]}\n{"timestamp":2,"delay":[]}\n')), true);
  await until(() => out.length >= 3, 'echoes');
  assert.deepEqual(out.slice(1), ['{"echo":{"timestamp":1,"delay":[1]}}', '{"echo":{"timestamp":2,"delay":[]}}']);
  assert.equal(t.writes, 1);
  assert.equal(t.stdoutLines, 3);
  const res = await t.stop(2000);
  assert.deepEqual(res, { code: null, signal: 'SIGTERM' });
  assert.equal(t.state, 'exited');
  assert.equal(t.killed, false);
});

test('no config: the -c pair is not passed', async () => {
  const { t, out } = await fake(['-c', '{config}', '--print-args']);
  await t.start();
  await until(() => out.length >= 1, 'args line');
  assert.deepEqual(JSON.parse(out[0]!).args, ['--tcp-port', String(t.port), '--print-args']);
  await t.stop(2000);
});

test('stdin input: batches go to the child\'s stdin', async () => {
  const out: string[] = [];
  const t = new TrackerProcess({
    command: [process.execPath, FAKE_TRACKER, '--stdin', '--echo'], nodeId: 'n', input: 'stdin',
    trackLine: (l) => out.push(l),
  });
  started.push(t);
  await t.start();
  assert.equal(t.state, 'connected');
  assert.ok(t.write(Buffer.from('{"timestamp":5}\n')));
  await until(() => out.length === 1, 'echo over stdin');
  assert.equal(out[0], '{"echo":{"timestamp":5}}');
  await t.stop(2000);
});

test('a stderr flood of several MB does not block the tracker', async () => {
  const { t, out, err } = await fake(['--stderr-flood', '6144', '--stderr-per-line', '2000', '--echo']);
  await t.start(); // the fake only listens after writing its flood
  for (let i = 0; i < 200; i++) t.write(Buffer.from(`{"timestamp":${i}}\n`));
  await until(() => out.length === 200, '200 echoes while stderr keeps flowing');
  assert.equal(out[199], '{"echo":{"timestamp":199}}');
  await until(() => err.some((l) => l === 'fake-tracker: flood done'), 'flood end marker');
  assert.equal(err.filter((l) => l.length === 1023).length, 6144, '6 MiB of stderr, every line whole');
  // Per-line stderr (2000 B) is under the 4096 B cap: passed whole.
  await until(() => err.some((l) => l.length === 1999), 'a per-line stderr line'); // stderr is its own pipe
  await t.stop(2000);
});

test('over-long lines: stderr truncated, stdout dropped and counted', async () => {
  const { t, out, err } = await fake(['--stderr-per-line', '10000', '--echo'], { maxLineBytes: 64, maxStderrLineBytes: 100 });
  await t.start();
  t.write(Buffer.from(`{"timestamp":1,"pad":"${'p'.repeat(100)}"}\n{"timestamp":2}\n`));
  await until(() => out.length === 1 && t.stdoutLinesDropped === 1, 'short echo kept, long one dropped');
  assert.equal(out[0], '{"echo":{"timestamp":2}}');
  await until(() => t.stderrLinesTruncated === 2, 'two truncated stderr lines');
  const truncated = err.filter((l) => l.endsWith(' [truncated]'));
  assert.equal(truncated.length, 2);
  assert.equal(truncated[0], 'e'.repeat(100) + ' [truncated]');
  await t.stop(2000);
});

test('an unterminated last stdout line is a track line only when it is whole JSON', async () => {
  // The child prints, then waits for the end of its input (stop() ends it) and exits.
  const run = async (printed: string): Promise<{ out: string[]; t: TrackerProcess }> => {
    const out: string[] = [];
    const t = new TrackerProcess({
      command: [process.execPath, '-e', `process.stdout.write(${JSON.stringify(printed)}); process.stdin.resume(); process.stdin.on('end', () => process.exit(0));`],
      nodeId: 'node-1',
      input: 'stdin',
      startupDelayMs: 0,
      failStopGraceMs: 500,
      trackLine: (l) => out.push(l),
    });
    started.push(t);
    await t.start();
    await until(() => out.length >= 1, 'the first, terminated line');
    await t.stop(2000);
    return { out, t };
  };
  const whole = await run('{"a":1}\n{"b":2}');
  assert.deepEqual(whole.out, ['{"a":1}', '{"b":2}'], 'a whole record without its newline is kept');
  assert.equal(whole.t.stdoutLinesDropped, 0);
  const cut = await run('{"a":1}\n{"b":');
  assert.deepEqual(cut.out, ['{"a":1}'], 'a record cut by the end of the stream is not a track line');
  assert.equal(cut.t.stdoutLinesDropped, 1);
  assert.equal(cut.t.stdoutPartialDropped, 1);
});

test('a tracker that stops reading back-pressures write(); whenWritable() waits', async () => {
  const { t } = await fake(['--no-read']);
  await t.start();
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  // The first writes land in kernel buffers and drain at once; a paused reader fills them.
  for (let i = 0; ; i++) {
    if (i > 400) assert.fail('the input never stayed back-pressured');
    if (t.write(chunk)) continue;
    const drainedSoon = await Promise.race([t.whenWritable().then(() => true), sleep(100).then(() => false)]);
    if (!drainedSoon) break;
  }
  let drained = false;
  void t.whenWritable().then(() => { drained = true; });
  await sleep(200);
  assert.equal(drained, false, 'still back-pressured');
  assert.ok(t.queuedBytes > 0);
  assert.ok(t.backpressured >= 1);
  // Stopping releases the waiter (the input can never drain).
  await t.stop(2000);
  await until(() => drained, 'whenWritable resolves once the tracker is gone');
  assert.equal(t.writable, false);
});

test('connect retries succeed when the tracker listens late', async () => {
  const { t } = await fake(['--listen-delay', '300']);
  await t.start();
  assert.equal(t.state, 'connected');
  assert.ok(t.connectAttempts > 1, `attempts ${t.connectAttempts}`);
  await t.stop(2000);
});

test('connect fails clearly when the tracker never listens, and the process is stopped', async () => {
  const { t, exits } = await fake(['--no-listen'], { connectRetries: 3, retryDelayMs: 20 });
  await assert.rejects(t.start(), (e: Error) => {
    assert.match(e.message, /node node-1: could not connect to 127\.0\.0\.1:\d+ after 3 attempts \(last error: ECONNREFUSED\)/);
    return true;
  });
  assert.equal(t.connectAttempts, 3);
  assert.equal(t.state, 'exited');
  assert.deepEqual(exits, [[null, 'SIGTERM']]);
});

test('a tracker that exits at once fails start() with its exit code', async () => {
  const { t, err, exits } = await fake(['--crash-on-start'], { startupDelayMs: 2000 });
  const t0 = Date.now();
  await assert.rejects(t.start(), /exited \(code 1\) before accepting a connection/);
  assert.ok(Date.now() - t0 < 1500, 'the startup delay is cut short by the exit');
  assert.equal(t.state, 'exited');
  assert.deepEqual(exits, [[1, null]], 'onExit was called before start() rejected');
  assert.ok(err.includes('fake-tracker: crashing on start'));
});

test('a command that cannot be spawned rejects start()', async () => {
  const t = new TrackerProcess({ command: ['/nonexistent/tracker-binary'], nodeId: 'n', input: 'stdin' });
  await assert.rejects(t.start(), /cannot start "\/nonexistent\/tracker-binary": .*ENOENT/);
  assert.equal(t.state, 'exited');
  assert.deepEqual(await t.stop(10), { code: null, signal: null });
});

test('--exit-after: onExit gets the code, the input stops being writable', async () => {
  const { t, out, exits } = await fake(['--echo', '--exit-after', '2']);
  await t.start();
  t.write(Buffer.from('{"timestamp":1}\n{"timestamp":2}\n{"timestamp":3}\n'));
  await until(() => exits.length === 1, 'exit');
  assert.deepEqual(exits[0], [3, null]);
  assert.equal(out.length, 2, 'every line written before the exit was delivered before onExit');
  assert.equal(t.state, 'exited');
  assert.equal(t.writable, false);
  assert.throws(() => t.write(Buffer.from('x\n')), /input is not open/);
  assert.deepEqual(await t.stop(100), { code: 3, signal: null });
});

test('stop(): SIGTERM, then SIGKILL after the grace for a tracker that ignores SIGTERM', async () => {
  const { t, err, exits } = await fake(['--ignore-sigterm']);
  await t.start();
  const t0 = Date.now();
  const res = await t.stop(300);
  const took = Date.now() - t0;
  assert.deepEqual(res, { code: null, signal: 'SIGKILL' });
  assert.ok(took >= 290, `waited the grace (${took} ms)`);
  assert.ok(took < 3000, `then killed (${took} ms)`);
  assert.equal(t.killed, true);
  assert.deepEqual(exits, [[null, 'SIGKILL']]);
  assert.ok(err.includes('fake-tracker: ignoring SIGTERM'));
  // Idempotent.
  assert.deepEqual(await t.stop(300), res);
});

test('stop() before start() and during the connect loop', async () => {
  const idle = new TrackerProcess({ command: ['true'], nodeId: 'n', input: 'stdin' });
  assert.deepEqual(await idle.stop(10), { code: null, signal: null });

  const { t } = await fake(['--no-listen'], { connectRetries: 1000, retryDelayMs: 20 });
  const starting = t.start().then(() => null, (e: Error) => e);
  await until(() => t.connectAttempts >= 2, 'a few attempts');
  const res = await t.stop(2000);
  assert.equal(res.signal, 'SIGTERM');
  const e = await starting;
  assert.match(String(e?.message), /stopped before accepting a connection/);
  assert.equal(t.state, 'exited');
});
