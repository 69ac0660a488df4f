// Hostile input aimed at the trackers, end to end over real sockets, real tracker
// subprocesses and real track files: frames with absurd detection counts or
// timestamps (line, binary, HTTP-polled), a tracker that blows its memory
// ceiling, a feeder that must recover from one bogus future timestamp, two nodes
// competing for one track file, and a tracker instance that cannot be built.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  engineFixtures, startTrackerEngine, Client, until, scrape, assertAccounting, getJson, httpGet, lineFrame, freePortRange,
  TOKEN, type TrackerEngine,
} from './helpers.js';
import { encodeHello, encodeFrame } from '../src/protocol/binary-protocol.js';
import { RESYNC_AFTER } from '../src/tracker/ring-feeder.js';
import { checkFrameLimits } from '../src/protocol/frame-limits.js';
import type { InstanceView } from '../src/tracker/tracker-instance.js';

const T0 = 1757400000000;
const DEADLINE = 15_000;
const dirs: string[] = [];
const engines: TrackerEngine[] = [];
const servers: HttpServer[] = [];
after(async () => {
  await Promise.all(engines.map((t) => t.e.stop()));
  for (const s of servers) s.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'ri-hostile-trackers-'));
  dirs.push(d);
  return d;
}

async function trackerEngine(fakeArgs: string[], over: Record<string, any> = {}, // eslint-disable-line @typescript-eslint/no-explicit-any
  opts: Parameters<typeof startTrackerEngine>[3] = {}, command?: string[]): Promise<TrackerEngine> {
  const t = await startTrackerEngine(tempDir(), fakeArgs, over, opts, command);
  engines.push(t);
  return t;
}

function binFrame(seq: number, ts: number, n: number): Buffer {
  const d = Array.from({ length: n }, (_, i) => 10 + i + 0.25);
  return encodeFrame({ seq, timestamp: ts, delay: d, doppler: d.map((x) => -x), snr: d.map((x) => x / 2) });
}

/** Every line of a tracker's track files in `dir` (name prefix `name_`). */
function trackLines(dir: string, name: string): string[] {
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith(`${name}_`) && f.endsWith('.jsonl')) : [];
  return files.flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n').filter((l) => l !== ''));
}

/** Timestamps of the frames the fake tracker (--echo) received, and its RESET lines. */
function echoed(dir: string, name: string): { ts: number[]; resets: number } {
  const ts: number[] = [];
  let resets = 0;
  for (const l of trackLines(dir, name)) {
    const e = (JSON.parse(l) as { echo: Record<string, unknown> }).echo;
    if (e.type === 'RESET') resets++;
    else ts.push(e.timestamp as number);
  }
  return { ts, resets };
}

async function trackers(http: number): Promise<InstanceView[]> {
  return (await getJson(http, '/api/v1/trackers')).json.trackers as InstanceView[];
}

test('checkFrameLimits: detections above the limit, timestamps ahead beyond the skew (not behind), 0 turns the skew check off', () => {
  const limits = { maxDetections: 10, maxClockSkewMs: 1000 };
  const now = Date.now();
  assert.equal(checkFrameLimits(now, 10, limits), null);
  assert.equal(checkFrameLimits(now, 11, limits)?.reason, 'too_many_detections');
  assert.equal(checkFrameLimits(now + 500, 1, limits), null);
  assert.equal(checkFrameLimits(now + 60_000, 1, limits)?.reason, 'clock_skew');
  assert.equal(checkFrameLimits(1e15, 1, limits)?.reason, 'clock_skew');
  assert.equal(checkFrameLimits(T0 - 1e9, 1, limits), null, 'old timestamps are accepted');
  assert.equal(checkFrameLimits(1e15, 1, { maxDetections: 10, maxClockSkewMs: 0 }), null);
});

describe('frame limits at ingest', () => {
  const setup = engineFixtures({ shards: 1 });

  test('line protocol: too many detections and a far-future timestamp are refused and counted; 0 turns the skew check off', async () => {
    const { engine, sink, port } = await setup({ limits: { max_detections_per_frame: 50 } });
    const c = await Client.open(port);
    const now = Date.now();
    await c.send(lineFrame('lim-1', now, 50));
    await c.send(lineFrame('lim-1', now + 1, 51));
    await c.send(lineFrame('lim-1', 1e15, 2));
    await c.send(lineFrame('lim-1', now + 2, 2));
    await until(() => sink.of('lim-1').length === 2, 'the two frames within the limits');
    const m = await until(async () => {
      const s = await scrape(engine);
      return s.get('radar_ingest_frames_dropped_total{reason="clock_skew"}') === 1 ? s : null;
    }, 'clock_skew counted');
    assert.equal(m.get('radar_ingest_frames_dropped_total{reason="too_many_detections"}'), 1);
    assert.deepEqual(sink.of('lim-1').map((f) => f.timestamp), [now, now + 2]);
    assert.equal(c.closed, false, 'refusals are per frame, the connection stays');
    c.destroy();
    await assertAccounting(engine);

    const off = await setup({ limits: { max_clock_skew_ms: 0 } });
    const c2 = await Client.open(off.port);
    await c2.send(lineFrame('lim-2', 1e15, 2));
    await until(() => off.sink.of('lim-2').length === 1, 'the future frame with the check off');
    c2.destroy();
    await assertAccounting(off.engine);
  });

  test('binary protocol: refusals are non-fatal errors with the seq (RADAR_ERR_TOO_MANY_DETECTIONS, RADAR_ERR_CLOCK_SKEW), settled and acked', async () => {
    const { engine, sink, port } = await setup({ limits: { max_detections_per_frame: 50 } });
    const c = await Client.open(port);
    await c.send(encodeHello('lim-b', TOKEN));
    await until(() => c.messages().find((m) => m.t === 'welcome'), 'welcome');
    const now = Date.now();
    await c.send(Buffer.concat([binFrame(1, now, 50), binFrame(2, now + 1, 51), binFrame(3, 1e15, 3), binFrame(4, now + 2, 3)]));
    await until(() => c.messages().some((m) => m.t === 'ack' && m.seq === 4), 'ack 4');
    const errors = c.messages().filter((m) => m.t === 'error');
    assert.deepEqual(errors.map((e) => [e.code, e.seq, e.fatal]), [
      ['RADAR_ERR_TOO_MANY_DETECTIONS', 2, false],
      ['RADAR_ERR_CLOCK_SKEW', 3, false],
    ]);
    await until(() => sink.of('lim-b').length === 2, 'the two frames within the limits');
    assert.deepEqual(sink.of('lim-b').map((f) => f.timestamp), [now, now + 2]);
    const m = await scrape(engine);
    assert.equal(m.get('radar_ingest_frames_dropped_total{reason="too_many_detections"}'), 1);
    assert.equal(m.get('radar_ingest_frames_dropped_total{reason="clock_skew"}'), 1);
    assert.equal(c.closed, false);
    c.destroy();
    await assertAccounting(engine);
  });
});

describe('frame limits on an HTTP-polled node', () => {
  test('a polled frame with too many detections or a far-future timestamp is refused and counted, the next good one is fed', async () => {
    let body = '';
    const srv = createHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    });
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/api/detection`;
    const frame = (ts: number, n: number): string => JSON.stringify({
      timestamp: ts, delay: Array.from({ length: n }, (_, i) => i), doppler: Array.from({ length: n }, () => 1), snr: Array.from({ length: n }, () => 9),
    });
    const [port] = await freePortRange(1);
    const t = await trackerEngine(['--echo'], {
      poll_interval_sec: 0.02,
      limits: { max_detections_per_frame: 50 },
      trackers: [{ name: 'polled', node_id: 'polled', tcp_port: port, detection_url: url }],
    });
    const now = Date.now();
    body = frame(now, 51);
    await until(async () => (await scrape(t.e)).get('radar_ingest_frames_dropped_total{reason="too_many_detections"}')! >= 1, 'too_many_detections', DEADLINE);
    body = frame(1e15, 2);
    await until(async () => (await scrape(t.e)).get('radar_ingest_frames_dropped_total{reason="clock_skew"}')! >= 1, 'clock_skew', DEADLINE);
    body = frame(now + 1, 2);
    await until(() => echoed(t.out, 'polled').ts.includes(now + 1), 'the good frame in the track file', DEADLINE);
    assert.deepEqual(echoed(t.out, 'polled').ts, [now + 1]);
    await assertAccounting(t.e);
  });
});

describe('tracker memory ceiling', () => {
  test('a tracker command that allocates past tracker.max_memory_mb dies and is restarted like a crash', async () => {
    // The fake tracker (node, ~50 MiB resident) keeps 48 MiB per received line. An
    // address-space limit of 160 MiB would not even let node start (it reserves far
    // more than it touches); the ceiling is on resident memory, sampled each second.
    const MAX_MB = 160;
    const t = await trackerEngine(['--alloc-mb-per-line', '48', '--echo'], { tracker: { max_memory_mb: MAX_MB } });
    const c = await Client.open(t.tcp);
    let ts = T0;
    await c.send(lineFrame('mem-1', ts++, 2));
    // One line in (~100 MiB): under its ceiling it runs, its resident memory shown, nothing killed.
    const first = await until(async () => {
      const v = (await trackers(t.http)).find((x) => x.node_id === 'mem-1');
      return v && v.state === 'running' && v.pid && echoed(t.out, 'mem-1').ts.length === 1 && v.rss_bytes !== null
        && v.rss_bytes > 48 * 2 ** 20 ? v : null;
    }, 'tracker running with its resident memory sampled after one line', DEADLINE);
    assert.ok(first.rss_bytes! < MAX_MB * 2 ** 20, `${first.rss_bytes}`);
    assert.equal((await scrape(t.e)).get('radar_ingest_tracker_memory_kills_total'), 0);
    // Three more (~250 MiB): the host kills it within a sample and a new process starts.
    for (let i = 0; i < 3; i++) await c.send(lineFrame('mem-1', ts++, 2));
    const restarted = await until(async () => {
      const v = (await trackers(t.http)).find((x) => x.node_id === 'mem-1');
      return v && v.restarts >= 1 && v.pid !== null && v.pid !== first.pid ? v : null;
    }, 'a restart after the tracker passed its memory ceiling', 30_000);
    assert.match(restarted.last_error ?? '', new RegExp(`^tracker killed: resident memory \\d+ MiB over tracker.max_memory_mb ${MAX_MB}$`));
    const over = Number(/memory (\d+) MiB/.exec(restarted.last_error!)![1]);
    assert.ok(over > MAX_MB && over < 400, restarted.last_error!);
    const m = await scrape(t.e);
    assert.equal(m.get('radar_ingest_tracker_memory_kills_total'), 1);
    assert.ok(m.get('radar_ingest_tracker_restarts_total{node="mem-1"}')! >= 1);
    // The new process starts afresh (what the old one held is gone with it) and stays under its ceiling.
    const again = await until(async () => {
      const v = (await trackers(t.http)).find((x) => x.node_id === 'mem-1');
      return v && v.state === 'running' && v.pid === restarted.pid && v.rss_bytes !== null ? v : null;
    }, 'the new tracker sampled', DEADLINE);
    assert.ok(again.rss_bytes! < MAX_MB * 2 ** 20);
    assert.equal((await scrape(t.e)).get('radar_ingest_tracker_memory_kills_total'), 1);
    c.destroy();
    await assertAccounting(t.e);
  });

  test('the built-in tracker runs with a V8 heap limit of tracker.max_memory_mb, a 1 MiB young-generation semi-space and a 16x optimisation budget', async () => {
    const t = await trackerEngine([], { tracker: { command: 'reference', max_memory_mb: 96 } });
    const c = await Client.open(t.tcp);
    await c.send(lineFrame('mem-ref', T0, 2));
    const v = await until(async () => (await trackers(t.http)).find((x) => x.node_id === 'mem-ref' && x.state === 'running' && x.pid), 'reference tracker running', DEADLINE);
    const argv = readFileSync(`/proc/${v.pid}/cmdline`, 'utf8').split('\0');
    assert.ok(argv.includes('--max-old-space-size=96'), argv.join(' '));
    assert.ok(argv.includes('--max-semi-space-size=1'), argv.join(' '));
    assert.ok(argv.includes('--interrupt-budget=1081344'), argv.join(' '));
    c.destroy();
  });
});

describe('one bogus future timestamp', () => {
  const sendRun = async (c: Client, node: string, from: number, n: number): Promise<void> => {
    let s = '';
    for (let i = 0; i < n; i++) s += lineFrame(node, from + i * 100, 2);
    await c.send(s);
  };

  test('with the clock-skew check on, the future frame is refused and every later frame reaches the tracker', async () => {
    const t = await trackerEngine(['--echo']);
    const c = await Client.open(t.tcp);
    const now = Date.now() - 60_000;
    await sendRun(c, 'skew-on', now, 3);
    await c.send(lineFrame('skew-on', 1e15, 2));
    await sendRun(c, 'skew-on', now + 1000, RESYNC_AFTER + 5);
    await until(() => echoed(t.out, 'skew-on').ts.length === RESYNC_AFTER + 8, 'every normal frame in the track file', DEADLINE);
    assert.equal(echoed(t.out, 'skew-on').resets, 0);
    const m = await scrape(t.e);
    assert.equal(m.get('radar_ingest_frames_dropped_total{reason="clock_skew"}'), 1);
    assert.equal(m.get('radar_ingest_frames_dropped_total{reason="out_of_order"}'), 0);
    c.destroy();
    await assertAccounting(t.e);
  });

  test('with the check off (0), the feeder resets the tracker after 20 out-of-order frames and later frames reach the track file', async () => {
    assert.equal(RESYNC_AFTER, 20);
    const t = await trackerEngine(['--echo'], { limits: { max_clock_skew_ms: 0 } });
    const c = await Client.open(t.tcp);
    await sendRun(c, 'skew-off', T0, 3);
    await c.send(lineFrame('skew-off', 1e15, 2));
    await sendRun(c, 'skew-off', T0 + 1000, RESYNC_AFTER + 5);
    // 3 + the bogus one, then RESYNC_AFTER skipped, then the rest after a RESET.
    await until(() => echoed(t.out, 'skew-off').ts.length === 4 + 5, 'frames after the reset in the track file', DEADLINE);
    const e = echoed(t.out, 'skew-off');
    assert.equal(e.resets, 1);
    assert.deepEqual(e.ts.slice(4), [0, 1, 2, 3, 4].map((i) => T0 + 1000 + (RESYNC_AFTER + i) * 100));
    const m = await scrape(t.e);
    assert.equal(m.get('radar_ingest_frames_dropped_total{reason="out_of_order"}'), RESYNC_AFTER);
    assert.equal(m.get('radar_ingest_tracker_resets_total{source="resync"}'), 1);
    const v = (await trackers(t.http)).find((x) => x.node_id === 'skew-off')!;
    assert.equal(v.resets, 1);
    c.destroy();
    await assertAccounting(t.e);
  });
});

describe('tracker names', () => {
  test('a node whose tracker name is taken is refused and counted; two nodes never share a track file', async () => {
    const [cfgPort] = await freePortRange(1);
    const t = await trackerEngine(['--echo'], { trackers: [{ name: 'n1', node_id: 'other', tcp_port: cfgPort }] });
    // n1 collides with the configured tracker's name: it becomes n1-auto.
    const a = await Client.open(t.tcp);
    await a.send(lineFrame('n1', T0, 2));
    await until(() => echoed(t.out, 'n1-auto').ts.length === 1, 'n1 in n1-auto_<date>.jsonl', DEADLINE);
    // A node literally called n1-auto would get the same name: refused (its frames
    // are dropped; a line connection stays open for the other nodes it may carry).
    const b = await Client.open(t.tcp);
    await b.send(lineFrame('n1-auto', T0 + 5000, 2));
    await until(async () => (await scrape(t.e)).get('radar_ingest_frames_dropped_total{reason="node_refused"}') === 1, 'n1-auto refused', DEADLINE);
    await a.send(lineFrame('n1', T0 + 100, 2));
    await until(() => echoed(t.out, 'n1-auto').ts.length === 2, 'n1 still served', DEADLINE);
    assert.deepEqual(echoed(t.out, 'n1-auto').ts, [T0, T0 + 100]);
    const m = await scrape(t.e);
    assert.equal(m.get('radar_ingest_provision_refused_total{reason="name_taken"}'), 1);
    assert.equal(m.get('radar_ingest_frames_dropped_total{reason="node_refused"}'), 1);
    const views = await trackers(t.http);
    assert.deepEqual(views.filter((v) => v.name === 'n1-auto').map((v) => v.node_id), ['n1']);
    a.destroy();
    b.destroy();
    await assertAccounting(t.e);
  });
});

describe('tracker instances that cannot be built', () => {
  const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));

  test('a tracker name that is not a safe file name stops start-up with exit code 2 and the key path', async () => {
    const p = join(tempDir(), 'slash.yaml');
    writeFileSync(p, 'trackers:\n  - name: site/a\n    tcp_port: 31999\n');
    const child = spawn(process.execPath, [CLI, '--config', p], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    assert.equal(code, 2);
    assert.match(err, /trackers\[0\]\.name: must be 1-64 characters/);
  });

  test('one instance that throws while being built is probe_error; the others run; /readyz reflects the supervisor loop', async () => {
    let failPass = false;
    const t = await trackerEngine(['--echo'], {}, {
      supervisorFaults: {
        build: (id) => {
          if (id === 'bad') throw new Error('injected build failure');
        },
        pass: () => {
          if (failPass) throw new Error('injected pass failure');
        },
      },
    });
    const good = await Client.open(t.tcp);
    const bad = await Client.open(t.tcp);
    await bad.send(lineFrame('bad', T0, 2));
    await good.send(lineFrame('good', T0, 2));
    await until(() => echoed(t.out, 'good').ts.length === 1, 'the good node served', DEADLINE);
    const v = await until(async () => (await trackers(t.http)).find((x) => x.node_id === 'bad'), 'bad listed', DEADLINE);
    assert.equal(v.state, 'probe_error');
    assert.equal(v.last_error, 'injected build failure');
    assert.equal((await getJson(t.http, '/api/v1/trackers/bad')).json.state, 'probe_error');
    const m = await scrape(t.e);
    assert.equal(m.get('radar_ingest_trackers{state="probe_error"}'), 1);
    assert.ok(m.get('radar_ingest_supervisor_errors_total{where="probe"}')! >= 1);
    const ready = await getJson(t.http, '/readyz');
    assert.equal(ready.status, 200);
    assert.equal(ready.json.checks.trackers.ok, true);
    assert.match(ready.json.checks.trackers.detail, /1 tracker instance\(s\) in probe_error/);

    failPass = true;
    const notReady = await until(async () => {
      const r = await getJson(t.http, '/readyz');
      return r.status === 503 ? r : null;
    }, '/readyz 503 while passes throw', DEADLINE);
    assert.equal(notReady.json.checks.trackers.ok, false);
    assert.match(notReady.json.checks.trackers.detail, /injected pass failure/);
    failPass = false;
    await until(async () => (await httpGet(t.http, '/readyz')).status === 200, '/readyz 200 once passes complete again', DEADLINE);
    good.destroy();
    bad.destroy();
  });
});
