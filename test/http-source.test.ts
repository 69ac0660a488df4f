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
    backoffBaseSec: 0.01,
    extendedOutageMs: 60_000,
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

  test('waits base ** n s plus the poll interval; DOWN once failures have lasted extendedOutageMs; probed; UP at any 2xx', async () => {
    let healthy = false;
    // Recovery answers 200 with a body that is not a frame: any 2xx ends the outage.
    const s = await startServer((_n, _req, res) => (healthy ? json(res, { status: 'booting' }) : res.writeHead(503).end('busy')));
    let failuresAtDown = -1;
    let downAt = 0;
    const r = source(s.url, {
      pollIntervalMs: 20,
      backoffBaseSec: 0.1,
      extendedOutageMs: 200,
      healthCheckIntervalMs: 100,
      onStateChange: (up, error) => {
        r.states.push([up, error]);
        if (!up) {
          failuresAtDown = r.src.stats().consecutiveFailures;
          downAt = Date.now();
        }
      },
    });
    const { src, states } = r;
    await until(() => !src.up && s.count() >= failuresAtDown + 3, 'DOWN and three probes', 10_000);
    assert.deepEqual(states, [[false, 'HTTP 503']]);
    assert.equal(src.lastError, 'HTTP 503');
    // downSince is the first failure of the streak: before the second request left.
    assert.ok(src.downSince !== null && src.downSince <= s.arrivals[1]!.wall, `downSince ${src.downSince}`);
    // DOWN at the first failure at or after 200 ms of failures, not before.
    assert.ok(downAt - src.downSince! >= 200, `down after ${downAt - src.downSince!} ms of failures`);
    const at = s.arrivals.map((a) => a.at);
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    // 0.1 ** 1 s = 100 ms, then 0.1 ** 2 s = 10 ms (a power, not a doubling: 200 ms), each plus the 20 ms poll interval.
    assert.ok(gaps[0]! >= 119, `first wait ${gaps[0]!.toFixed(1)} ms`);
    assert.ok(gaps[1]! >= 29 && gaps[1]! < 100, `second wait ${gaps[1]!.toFixed(1)} ms (doubling would be >= 220)`);
    // The probes, after DOWN, every 100 ms.
    for (let i = failuresAtDown - 1; i < gaps.length; i++) assert.ok(gaps[i]! >= 99, `probe gap ${i} = ${gaps[i]!.toFixed(1)}`);

    healthy = true;
    await until(() => src.up, 'UP after a 2xx');
    assert.equal(src.downSince, null);
    assert.deepEqual(states, [[false, 'HTTP 503'], [true, null]]);
    assert.equal(src.stats().consecutiveFailures, 0);
    assert.equal(src.stats().dropped.invalid_frame, 1, 'the probe body was not a frame');
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
    const b = source(silent.url, { requestTimeoutMs: 60, backoffBaseSec: 0.03, healthCheckIntervalMs: 60 });
    await until(() => b.src.stats().failures >= 3, 'three timeouts');
    assert.ok(performance.now() - t0 >= 3 * 60, 'not before the timeouts');
    assert.equal(b.src.lastError, 'timeout after 60 ms');
    assert.deepEqual(b.src.stats().dropped, { malformed: 0, invalid_frame: 0, frame_too_large: 0, too_many_detections: 0, clock_skew: 0 });
    await until(() => silent.aborted >= 3, 'the timed-out requests abandoned');
    assert.equal(silent.maxConcurrent, 1);
  });

  test('connection refused counts as failures', async () => {
    const port = await freePort();
    const { src, drops } = source(`http://127.0.0.1:${port}/api/detection`, { extendedOutageMs: 0 });
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
    const failing = source(`${base}/fail`, { backoffBaseSec: 0.005, healthCheckIntervalMs: 10 });
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
    const opts = { pollIntervalMs: 500, backoffBaseSec: 2, extendedOutageMs: 60_000, healthCheckIntervalMs: 30_000, onFrame: () => true };
    assert.throws(() => new HttpSource({ ...opts, url: 'ftp://node-1.local/api/detection' }), (e: unknown) => e instanceof TypeError && e.message.includes('ftp://node-1.local/api/detection'));
    assert.throws(() => new HttpSource({ ...opts, url: 'node-1:3000/api/detection' }), TypeError);
    assert.throws(() => new HttpSource({ ...opts, url: 'not a url' }), (e: unknown) => e instanceof TypeError && e.message.includes('not a url'));
    assert.doesNotThrow(() => new HttpSource({ ...opts, url: 'https://node-1.local/api/detection' }));
  });
});
