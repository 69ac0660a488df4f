// HttpSource against a real HTTP server on 127.0.0.1:0: the retina line format,
// deduplication, drops, backoff and DOWN/UP, timeouts, one request at a time,
// connection refused, stop().
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpSource, type HttpSourceDrop, type HttpSourceOptions } from '../src/tracker/http-source.js';
import { freePort, until } from './helpers.js';

/** What to do with the n-th request (0-based): answer it, or leave it hanging (return nothing). */
type Handler = (n: number, req: IncomingMessage, res: ServerResponse) => void;

interface TestServer {
  url: string;
  /** performance.now() and Date.now() of each request's arrival, by path. */
  arrivals: { path: string; at: number; wall: number; headers: IncomingMessage['headers'] }[];
  count(path?: string): number;
  /** Most requests open at once. */
  maxConcurrent: number;
  /** Requests whose connection went away before an answer was finished. */
  aborted: number;
  close(): Promise<void>;
}

const servers: TestServer[] = [];
const sources: HttpSource[] = [];
after(async () => {
  await Promise.all(sources.map((s) => s.stop()));
  await Promise.all(servers.map((s) => s.close()));
});

async function startServer(handler: Handler): Promise<TestServer> {
  let active = 0;
  const server: Server = createServer((req, res) => {
    active++;
    ts.maxConcurrent = Math.max(ts.maxConcurrent, active);
    res.on('close', () => {
      active--;
      if (!res.writableFinished) ts.aborted++;
    });
    ts.arrivals.push({ path: req.url ?? '', at: performance.now(), wall: Date.now(), headers: req.headers });
    handler(ts.arrivals.length - 1, req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const ts: TestServer = {
    url: `http://127.0.0.1:${port}/api/detection`,
    arrivals: [],
    count: (path) => (path === undefined ? ts.arrivals.length : ts.arrivals.filter((a) => a.path === path).length),
    maxConcurrent: 0,
    aborted: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  servers.push(ts);
  return ts;
}

function json(res: ServerResponse, body: unknown, status = 200): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(typeof body === 'string' ? body : JSON.stringify(body));
}

function frame(ts: number, n = 2, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const delay: number[] = [];
  const doppler: number[] = [];
  const snr: number[] = [];
  for (let i = 0; i < n; i++) {
    delay.push(40.5 + i);
    doppler.push(-27.25 + i);
    snr.push(12.5 + i);
  }
  return { timestamp: ts, delay, doppler, snr, ...extra };
}

interface Recorded {
  src: HttpSource;
  frames: { line: string; timestamp: number; detections: number }[];
  drops: [HttpSourceDrop, string][];
  states: [boolean, string | null][];
}

/** A started source with test-friendly timings; stopped in after(). */
function source(url: string, over: Partial<HttpSourceOptions> = {}): Recorded {
  const r: Recorded = { src: undefined as unknown as HttpSource, frames: [], drops: [], states: [] };
  r.src = new HttpSource({
    url,
    pollIntervalMs: 20,
    backoffBaseMs: 10,
    maxAttempts: 100,
    healthCheckIntervalMs: 50,
    requestTimeoutMs: 2000,
    onFrame: (line, timestamp, detections) => {
      r.frames.push({ line: line.toString('utf8'), timestamp, detections });
      return true;
    },
    onDrop: (reason, detail) => r.drops.push([reason, detail]),
    onStateChange: (up, error) => r.states.push([up, error]),
    ...over,
  });
  sources.push(r.src);
  r.src.start();
  return r;
}

describe('HttpSource', () => {
  test('emits frames as retina lines and skips unchanged timestamps', async () => {
    let body: unknown = {
      timestamp: 1757400000000, nDetections: 2, delay: [40.46, 120.3], doppler: [-27.99, 88.1], snr: [12.08, 7.2], detections_constant: 3,
    };
    const s = await startServer((_n, _req, res) => json(res, body));
    const { src, frames, drops } = source(s.url, { headers: { authorization: 'Bearer x' } });
    await until(() => src.stats().unchanged >= 3, 'the same frame polled again');
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.line, '{"timestamp":1757400000000,"delay":[40.46,120.3],"doppler":[-27.99,88.1],"snr":[12.08,7.2],"adsb":[null,null]}\n');
    assert.equal(frames[0]!.timestamp, 1757400000000);
    assert.equal(frames[0]!.detections, 2);
    assert.equal(s.arrivals[0]!.headers.accept, 'application/json');
    assert.equal(s.arrivals[0]!.headers.authorization, 'Bearer x');

    const adsb = [{ hex: 'abc123', lat: 51.5, lon: -0.1, alt_baro: 3000 }, null];
    body = { ...frame(1757400000500), adsb, extra: 'dropped' };
    await until(() => frames.length === 2, 'the next frame');
    assert.equal(frames[1]!.line, `${JSON.stringify({ timestamp: 1757400000500, delay: [40.5, 41.5], doppler: [-27.25, -26.25], snr: [12.5, 13.5], adsb })}\n`);
    const st = src.stats();
    assert.equal(st.frames, 2);
    assert.equal(st.successes, st.frames + st.unchanged);
    assert.equal(st.failures, 0);
    assert.deepEqual(drops, []);
    assert.ok(src.lastFrameAt > 0);
  });

  test('an older timestamp is still emitted', async () => {
    let ts = 2000;
    const s = await startServer((_n, _req, res) => json(res, frame(ts)));
    const { src, frames } = source(s.url);
    await until(() => frames.length === 1, 'first frame');
    ts = 1000;
    await until(() => frames.length === 2, 'older frame');
    assert.deepEqual(frames.map((f) => f.timestamp), [2000, 1000]);
    assert.equal(src.stats().failures, 0);
  });

  test('malformed, invalid and oversize bodies are dropped with their reason; polling carries on', async () => {
    let oversizeClosed = false;
    const bad: ((res: ServerResponse) => void)[] = [
      (res) => json(res, '{"timestamp": 1, "delay": ['),
      (res) => json(res, { ...frame(10), snr: [1] }),
      (res) => json(res, { delay: [], doppler: [], snr: [] }),
      (res) => json(res, { ...frame(10), delay: ['x', 1] }),
      (res) => json(res, { ...frame(10), timestamp: '10' }),
      // An endless chunked body: only a reader that stops at the cap gets past it (no timeout here).
      (res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"timestamp":10,"delay":[');
        const t = setInterval(() => res.write('1,'.repeat(512)), 2);
        res.on('close', () => {
          clearInterval(t);
          oversizeClosed = true;
        });
      },
    ];
    const s = await startServer((n, _req, res) => (n < bad.length ? bad[n]!(res) : json(res, frame(5000))));
    const { src, frames, drops } = source(s.url, { maxBodyBytes: 4096, requestTimeoutMs: 10_000 });
    await until(() => frames.length === 1, 'the good frame after the bad ones');
    assert.deepEqual(drops.map((d) => d[0]), ['malformed', 'invalid_frame', 'invalid_frame', 'invalid_frame', 'invalid_frame', 'frame_too_large']);
    assert.match(drops[1]![1], /delay and snr differ in length/);
    assert.match(drops[2]![1], /timestamp missing/);
    assert.match(drops[3]![1], /delay is not an array of finite numbers/);
    const st = src.stats();
    assert.deepEqual(st.dropped, { malformed: 1, invalid_frame: 4, frame_too_large: 1, too_many_detections: 0, clock_skew: 0 });
    assert.equal(st.failures, 6);
    assert.equal(st.consecutiveFailures, 0);
    assert.equal(frames[0]!.timestamp, 5000);
    assert.match(src.lastError ?? '', /body over 4096 bytes/);
    await until(() => oversizeClosed, 'the oversize response abandoned by the client');
  });

  test('backoff grows, caps at the health-check interval; DOWN after maxAttempts, UP at the first success', async () => {
    let healthy = false;
    const s = await startServer((_n, _req, res) => (healthy ? json(res, frame(7000)) : res.writeHead(503).end('busy')));
    const t0 = Date.now();
    let failuresAtDown = -1;
    // Slower than the other tests' timings so that scheduling noise stays well below the steps.
    const r = source(s.url, {
      maxAttempts: 6,
      backoffBaseMs: 20,
      healthCheckIntervalMs: 100,
      onStateChange: (up, error) => {
        r.states.push([up, error]);
        if (!up) failuresAtDown = r.src.stats().consecutiveFailures;
      },
    });
    const { src, states, frames } = r;
    await until(() => s.count() >= 10, '10 polls against 503', 10_000);
    assert.equal(src.up, false);
    assert.deepEqual(states, [[false, 'HTTP 503']]);
    assert.equal(failuresAtDown, 6);
    assert.equal(src.lastError, 'HTTP 503');
    // downSince is the first failure of the streak: before the second request left.
    assert.ok(src.downSince !== null && src.downSince >= t0 && src.downSince <= s.arrivals[1]!.wall, `downSince ${src.downSince}`);

    const at = s.arrivals.map((a) => a.at);
    const gaps = at.slice(1, 10).map((t, i) => t - at[i]!);
    // Timers never fire early: lower bounds are exact (1 ms of rounding); upper bounds are loose on a noisy machine.
    const expected = [20, 40, 80, 100, 100, 100, 100, 100, 100];
    gaps.forEach((g, i) => assert.ok(g >= expected[i]! - 1, `gap ${i} = ${g.toFixed(1)} ms, expected >= ${expected[i]}; gaps ${gaps.map((x) => x.toFixed(0))}`));
    assert.ok(gaps[0]! < gaps[2]!, `growth: ${gaps.map((x) => x.toFixed(0))}`);
    // Uncapped, failures 4 and 5 would wait 160 and 320 ms.
    assert.ok(gaps[3]! + gaps[4]! < 340, `capped before DOWN: ${gaps.map((x) => x.toFixed(0))}`);
    const down = gaps.slice(5).sort((a, b) => a - b);
    assert.ok(down[Math.floor(down.length / 2)]! < 160, `health-check period while DOWN: ${gaps.map((x) => x.toFixed(0))}`);

    healthy = true;
    await until(() => frames.length === 1, 'frames after recovery');
    assert.equal(src.up, true);
    assert.equal(src.downSince, null);
    assert.deepEqual(states, [[false, 'HTTP 503'], [true, null]]);
    assert.equal(src.stats().consecutiveFailures, 0);
    await until(() => src.stats().unchanged >= 2, 'polling at the normal period again');
    assert.equal(states.length, 2, 'one callback per transition');
  });

  test('a slow answer delays the next poll, a silent one times out; never two requests at once', async () => {
    let n = 0;
    const slow = await startServer((_i, _req, res) => {
      const ts = ++n;
      setTimeout(() => json(res, frame(ts)), 40);
    });
    const a = source(slow.url, { pollIntervalMs: 5 });
    await until(() => a.frames.length >= 4, 'four slow frames');
    assert.equal(slow.maxConcurrent, 1);
    const at = slow.arrivals.map((x) => x.at);
    for (let i = 1; i < 4; i++) assert.ok(at[i]! - at[i - 1]! >= 39, `poll ${i} waited for the answer before`);
    await a.src.stop();

    const silent = await startServer(() => undefined);
    const t0 = performance.now();
    const b = source(silent.url, { requestTimeoutMs: 60, backoffBaseMs: 30, healthCheckIntervalMs: 60 });
    await until(() => b.src.stats().failures >= 3, 'three timeouts');
    assert.ok(performance.now() - t0 >= 3 * 60, 'not before the timeouts');
    assert.equal(b.src.lastError, 'timeout after 60 ms');
    assert.deepEqual(b.src.stats().dropped, { malformed: 0, invalid_frame: 0, frame_too_large: 0, too_many_detections: 0, clock_skew: 0 });
    await until(() => silent.aborted >= 3, 'the timed-out requests abandoned');
    assert.equal(silent.maxConcurrent, 1);
  });

  test('connection refused counts as failures', async () => {
    const port = await freePort();
    const { src, drops } = source(`http://127.0.0.1:${port}/api/detection`, { maxAttempts: 2 });
    await until(() => src.stats().failures >= 3, 'three failures');
    assert.match(src.lastError ?? '', /ECONNREFUSED/);
    assert.equal(src.up, false);
    assert.equal(src.stats().polls, src.stats().failures);
    assert.deepEqual(drops, []);
  });

  test('stop() aborts a hanging request, or a backoff wait, and no request follows', async () => {
    const s = await startServer((_n, req, res) => {
      if (req.url === '/hang') return;
      if (req.url === '/fail') return void res.writeHead(500).end();
      json(res, frame(1));
    });
    const base = s.url.replace('/api/detection', '');
    const hanging = source(`${base}/hang`, { requestTimeoutMs: 10_000 });
    const failing = source(`${base}/fail`, { backoffBaseMs: 5, healthCheckIntervalMs: 10 });
    await until(() => s.count('/hang') === 1 && s.count('/fail') >= 3, 'requests at the server');
    const t0 = performance.now();
    await Promise.all([hanging.src.stop(), failing.src.stop()]);
    assert.ok(performance.now() - t0 < 1000, 'stop() did not wait for the request timeout');
    await until(() => s.aborted >= 1, 'the hanging request abandoned');
    assert.equal(hanging.src.stats().failures, 0, 'an aborted poll is not a failure');
    await hanging.src.stop(); // idempotent
    const failed = s.count('/fail');

    // A witness polling the same server at a similar pace: once it has polled a
    // few times, the stopped sources would have polled too.
    const witness = source(s.url, { pollIntervalMs: 10 });
    await until(() => s.count('/api/detection') >= 10, 'witness polls');
    await witness.src.stop();
    assert.equal(s.count('/hang'), 1);
    assert.equal(s.count('/fail'), failed);
  });

  test('a throwing callback does not stop the poller', async () => {
    let ts = 0;
    const s = await startServer((_n, _req, res) => json(res, frame(++ts)));
    const { src } = source(s.url, {
      onFrame: () => {
        throw new Error('boom');
      },
    });
    await until(() => src.stats().frames >= 3, 'frames keep coming');
    assert.equal(src.lastError, 'onFrame threw: boom');
    assert.equal(src.stats().failures, 0);
  });

  test('the constructor rejects a URL that is not http(s)', () => {
    const opts = { pollIntervalMs: 500, backoffBaseMs: 2000, maxAttempts: 5, healthCheckIntervalMs: 30_000, onFrame: () => true };
    assert.throws(() => new HttpSource({ ...opts, url: 'ftp://node-1.local/api/detection' }), (e: unknown) => e instanceof TypeError && e.message.includes('ftp://node-1.local/api/detection'));
    assert.throws(() => new HttpSource({ ...opts, url: 'node-1:3000/api/detection' }), TypeError);
    assert.throws(() => new HttpSource({ ...opts, url: 'not a url' }), (e: unknown) => e instanceof TypeError && e.message.includes('not a url'));
    assert.doesNotThrow(() => new HttpSource({ ...opts, url: 'https://node-1.local/api/detection' }));
  });
});
