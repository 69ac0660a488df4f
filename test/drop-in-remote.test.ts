// tracker-host drop-in: remote trackers (trackers[].spawn_tracker: false, fed at
// tcp_host:tcp_port with no subprocess) and the retry rule of HTTP-polled nodes.
//
// The remote tracker is a real TCP listener in this test (it speaks retina's
// input side: newline-delimited JSON frames); the HTTP-polled node is a real
// node:http detection server. The local tracker of the HTTP-polled node is the
// fake tracker stand-in (test/fixtures/fake-tracker.ts), since retina itself
// is not needed to see when the host stops and starts it.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { parseConfig } from '../src/config.js';
import { backoffAfterFailureMs, HTTP_RETRY_INITIAL, retryStep, type HttpRetryRules, type HttpRetryState } from '../src/tracker/http-retry.js';
import { initialState, step, type LifecycleRules } from '../src/tracker/lifecycle.js';
import { Client, freePort, getJson, lineFrame, startTrackerEngine, assertAccounting, scrape, until, TOKEN } from './helpers.js';

const dirs: string[] = [];
after(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
async function outDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'drop-in-remote-'));
  dirs.push(d);
  return d;
}

// ---------------------------------------------------------------------------
// The retry rule of HTTP-polled nodes, as a pure function of the clock.
// ---------------------------------------------------------------------------

const RULES: HttpRetryRules = { backoffBaseSec: 2, pollIntervalMs: 500, extendedOutageMs: 60_000, healthCheckIntervalMs: 30_000 };

/** Runs failures back to back (each poll taking no time); returns each wait and the step that went DOWN. */
function failUntilDown(rules: HttpRetryRules, t0: number): { waits: number[]; times: number[]; downAt: number; state: HttpRetryState } {
  let s = HTTP_RETRY_INITIAL;
  let now = t0;
  const waits: number[] = [];
  const times: number[] = [];
  for (let i = 0; i < 100; i++) {
    times.push(now);
    const t = retryStep(s, 'fail', now, rules);
    s = t.state;
    if (t.change === 'down') return { waits, times, downAt: now, state: s };
    assert.equal(t.change, 'none');
    waits.push(t.waitMs);
    now += t.waitMs;
  }
  throw new Error('never went down');
}

describe('HTTP retry rule (pure)', () => {
  test('the n-th failure waits backoff_base_sec ** n s, at most 30 s, plus the poll interval', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 10].map((n) => backoffAfterFailureMs(n, 2)), [2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
    assert.deepEqual([1, 2, 3, 4, 5].map((n) => backoffAfterFailureMs(n, 3)), [3000, 9000, 27_000, 30_000, 30_000]);
    // Below 1 the waits shrink (a power, as tracker-host computed it), and a huge base stays capped.
    assert.deepEqual([1, 2, 3].map((n) => backoffAfterFailureMs(n, 0.5)), [500, 250, 125]);
    assert.equal(backoffAfterFailureMs(2000, 10), 30_000);

    const two = failUntilDown(RULES, 1_000_000);
    assert.deepEqual(two.waits, [2500, 4500, 8500, 16_500, 30_500]);
    const three = failUntilDown({ ...RULES, backoffBaseSec: 3 }, 1_000_000);
    assert.deepEqual(three.waits, [3500, 9500, 27_500, 30_500]);
  });

  test('the tracker stops at the failure that comes once failures have lasted extended_outage_sec', () => {
    const t0 = 5_000_000;
    // Base 2: failures at +0, +2.5, +7, +15.5, +32, +62.5 s: the one at +62.5 s is the first at or past 60 s.
    const two = failUntilDown(RULES, t0);
    assert.deepEqual(two.times.map((t) => t - t0), [0, 2500, 7000, 15_500, 32_000, 62_500]);
    assert.equal(two.downAt, t0 + 62_500);
    assert.deepEqual(two.state, { phase: 'down', failures: 6, firstFailureAt: t0 });
    // Base 3: +0, +3.5, +13, +40.5, +71 s.
    assert.equal(failUntilDown({ ...RULES, backoffBaseSec: 3 }, t0).downAt, t0 + 71_000);

    // The boundary: a failure 1 ms short of the limit keeps polling; one exactly at it goes down.
    const first = retryStep(HTTP_RETRY_INITIAL, 'fail', t0, RULES).state;
    assert.equal(retryStep(first, 'fail', t0 + 59_999, RULES).change, 'none');
    const down = retryStep(first, 'fail', t0 + 60_000, RULES);
    assert.equal(down.change, 'down');
    assert.equal(down.waitMs, 30_000, 'the first probe comes health_check_interval_sec later');
    // extended_outage_sec 0: the first failure stops it.
    assert.equal(retryStep(HTTP_RETRY_INITIAL, 'fail', t0, { ...RULES, extendedOutageMs: 0 }).change, 'down');
    // A 2xx with a body that is not a frame is a failure while up.
    assert.equal(retryStep(HTTP_RETRY_INITIAL, 'http_ok', t0, RULES).state.failures, 1);
  });

  test('a success resets the streak; while down, a probe every health_check_interval_sec until any 2xx', () => {
    const t0 = 9_000_000;
    let s = retryStep(HTTP_RETRY_INITIAL, 'fail', t0, RULES).state;
    s = retryStep(s, 'fail', t0 + 2500, RULES).state;
    const ok = retryStep(s, 'ok', t0 + 7000, RULES);
    assert.deepEqual(ok, { state: HTTP_RETRY_INITIAL, waitMs: 500, change: 'none' });
    // The streak starts again from the next failure: its first wait is base ** 1 again.
    assert.equal(retryStep(ok.state, 'fail', t0 + 7500, RULES).waitMs, 2500);

    let d = failUntilDown(RULES, t0).state;
    for (let i = 0; i < 3; i++) {
      const p = retryStep(d, 'fail', t0 + 100_000 + i * 30_000, RULES);
      assert.equal(p.change, 'none');
      assert.equal(p.waitMs, 30_000);
      d = p.state;
    }
    assert.equal(d.phase, 'down');
    assert.equal(d.firstFailureAt, t0, 'the outage still counts from its first failure');
    for (const r of ['ok', 'http_ok'] as const) {
      const up = retryStep(d, r, t0 + 200_000, RULES);
      assert.deepEqual(up, { state: HTTP_RETRY_INITIAL, waitMs: 500, change: 'up' });
    }
  });

  test('the lifecycle counts a polled source\'s outage from its first failure: the tracker stops at once', () => {
    const rules: LifecycleRules = {
      extendedOutageMs: 60_000, backoffBaseMs: 1000, backoffMaxMs: 60_000, flapMaxRestarts: 5, flapWindowMs: 60_000, flapCooldownMs: 60_000, stableAfterMs: 60_000,
    };
    const t0 = 1_000_000;
    let s = step(initialState(t0, true), { type: 'tick', sourceUp: true }, t0, rules).state;
    s = step(s, { type: 'started' }, t0 + 10, rules).state;
    assert.equal(s.phase, 'running');
    const down = step(s, { type: 'tick', sourceUp: false, downSince: t0 + 1000 }, t0 + 62_500, rules);
    assert.equal(down.action, 'stop');
    assert.equal(down.state.phase, 'stopping');
    assert.equal(down.state.downSince, t0 + 1000);
    // Without a known start the outage counts from the tick (a TCP node leaving).
    const tcp = step(s, { type: 'tick', sourceUp: false }, t0 + 62_500, rules);
    assert.equal(tcp.state.phase, 'outage');
    assert.equal(tcp.state.downSince, t0 + 62_500);
  });
});

// ---------------------------------------------------------------------------
// End to end: an HTTP-polled node that fails, then recovers.
// ---------------------------------------------------------------------------

describe('HTTP-polled node end to end', () => {
  test('failures back off, the tracker stops once they have lasted extended_outage_sec, probes, restart on a 2xx', async () => {
    let failing = false;
    let ts = 1_757_400_000_000;
    const arrivals: { wall: number; failing: boolean }[] = [];
    const server: HttpServer = createHttpServer((_req, res) => {
      arrivals.push({ wall: Date.now(), failing });
      if (failing) return void res.writeHead(503).end('busy');
      ts += 100;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ timestamp: ts, delay: [40.5], doppler: [-27.25], snr: [12.5] }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    after(() => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/detection`;
    const trackerPort = await freePort();
    const out = await outDir();
    const { e, http } = await startTrackerEngine(out, ['--echo'], {
      poll_interval_sec: 0.05,
      retry: { backoff_base_sec: 0.1, extended_outage_sec: 0.6, health_check_interval_sec: 0.3, max_attempts: 50 },
      trackers: [{ name: 'polled', mode: 'http', detection_url: url, tcp_port: trackerPort }],
    });
    try {
      const view = async (): Promise<any> => (await getJson(http, '/api/v1/trackers/polled')).json; // eslint-disable-line @typescript-eslint/no-explicit-any
      await until(async () => (await view()).frames_fed >= 3, 'frames polled and fed', 10_000);
      const v1 = await view();
      assert.equal(v1.state, 'running');
      assert.equal(v1.process, 'local');
      const pid1 = v1.pid as number;

      failing = true;
      const stopped = await until(async () => {
        const v = await view();
        return v.state === 'stopped' || v.state === 'stopping' ? v : null;
      }, 'the tracker stopped after the extended outage', 10_000);
      const firstFail = arrivals.find((a) => a.failing)!.wall;
      const stopAt = Date.parse(stopped.since);
      // tracker-host: stopped at the first failure at or after 600 ms of failures. The
      // waits are 0.1 ** n s + 50 ms, so that failure comes within ~100 ms of the mark.
      assert.ok(stopAt - firstFail >= 600, `stopped ${stopAt - firstFail} ms after the first failure (not before 600)`);
      assert.ok(stopAt - firstFail < 1100, `stopped ${stopAt - firstFail} ms after the first failure (max_attempts does not delay it; old rule: ~1.5 s)`);
      const fails = arrivals.filter((a) => a.failing).map((a) => a.wall);
      // 0.1 ** 1 s + 50 ms, then 0.1 ** 2 s + 50 ms: a power of the base (doubling would give 250 ms).
      assert.ok(fails[1]! - fails[0]! >= 149, `first wait ${fails[1]! - fails[0]!} ms`);
      assert.ok(fails[2]! - fails[1]! >= 59 && fails[2]! - fails[1]! < 200, `second wait ${fails[2]! - fails[1]!} ms`);

      // Probes every health_check_interval_sec while stopped.
      const nBefore = arrivals.length;
      await until(() => arrivals.length >= nBefore + 3, 'three probes', 10_000);
      const probes = arrivals.slice(nBefore - 1).map((a) => a.wall);
      for (let i = 1; i < probes.length; i++) assert.ok(probes[i]! - probes[i - 1]! >= 299, `probe gap ${probes[i]! - probes[i - 1]!} ms`);
      assert.equal((await view()).state, 'stopped');
      assert.equal((await view()).pid, null);

      failing = false;
      const back = await until(async () => {
        const v = await view();
        return v.state === 'running' && v.pid !== null ? v : null;
      }, 'the tracker started again after a 2xx', 10_000);
      assert.notEqual(back.pid, pid1);
      const fed = back.frames_fed as number;
      await until(async () => (await view()).frames_fed >= fed + 3, 'frames fed to the new tracker', 10_000);
      await assertAccounting(e);
    } finally {
      await e.stop();
    }
  });
});

// ---------------------------------------------------------------------------
// Remote trackers.
// ---------------------------------------------------------------------------

/** A stand-in for a retina-tracker running on another machine: a TCP listener that records each connection's lines. */
class RemoteListener {
  readonly conns: { socket: Socket; lines: string[]; ended: boolean }[] = [];
  private server: Server | null = null;
  constructor(readonly port: number) {}
  async listen(): Promise<void> {
    const server = createServer((socket) => {
      const c = { socket, lines: [] as string[], ended: false };
      this.conns.push(c);
      let buf = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => {
        buf += d;
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          c.lines.push(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
      socket.on('end', () => {
        c.ended = true;
        socket.end();
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r, j) => {
      server.once('error', j);
      server.listen(this.port, '127.0.0.1', () => r());
    });
    this.server = server;
  }
  timestamps(): number[] {
    return this.conns.flatMap((c) => c.lines.map((l) => (JSON.parse(l) as { timestamp: number }).timestamp));
  }
  async close(): Promise<void> {
    for (const c of this.conns) c.socket.destroy();
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}

describe('remote trackers (spawn_tracker: false)', () => {
  test('config: tracker.input must be tcp; tcp_host must be an address or a host name; ports clash only on one host', () => {
    const base = { trackers: [{ name: 'far', tcp_port: 30001, spawn_tracker: false, tcp_host: '10.1.2.3' }] };
    assert.throws(() => parseConfig({ ...base, tracker: { input: 'stdin' } }, {}), /trackers\[0\]\.spawn_tracker: .*tracker\.input "tcp"/);
    assert.throws(() => parseConfig({ trackers: [{ name: 'far', tcp_port: 30001, spawn_tracker: false, tcp_host: 'not a host!' }] }, {}),
      /trackers\[0\]\.tcp_host: must be an IP address or a DNS host name/);
    for (const h of ['10.1.2.3', 'fd00::7', 'tracker-7.example.net', 'localhost']) {
      assert.equal(parseConfig({ trackers: [{ name: 'far', tcp_port: 30001, spawn_tracker: false, tcp_host: h }] }, {}).trackers[0]!.tcp_host, h);
    }
    const two = parseConfig({
      trackers: [
        { name: 'a', tcp_port: 30001, spawn_tracker: false, tcp_host: '10.0.0.1' },
        { name: 'b', tcp_port: 30001, spawn_tracker: false, tcp_host: '10.0.0.2' },
      ],
    }, {});
    assert.equal(two.trackers.length, 2);
    assert.throws(() => parseConfig({
      trackers: [
        { name: 'a', tcp_port: 30001, spawn_tracker: false, tcp_host: '10.0.0.1' },
        { name: 'b', tcp_port: 30001, spawn_tracker: false, tcp_host: '10.0.0.1' },
      ],
    }, {}), /trackers\[1\]\.tcp_port: duplicate/);
  });

  test('absent at start: retried, then fed in order; a dropped connection is reconnected and the ring frames follow', async () => {
    const port = await freePort();
    const remote = new RemoteListener(port);
    after(() => remote.close());
    const out = await outDir();
    const node = 'far-node';
    const { e, http, tcp } = await startTrackerEngine(out, [], {
      tcp_connect_retries: 2,
      tcp_retry_delay_sec: 0.05,
      tracker: { restart_backoff_ms: 50, restart_backoff_max_ms: 200, flap_max_restarts: 1000 },
      trackers: [{ name: node, tcp_port: port, spawn_tracker: false, tcp_host: '127.0.0.1' }],
    }, {}, ['/nonexistent/never-spawned']);
    const view = async (): Promise<any> => (await getJson(http, `/api/v1/trackers/${node}`)).json; // eslint-disable-line @typescript-eslint/no-explicit-any
    const client = await Client.open(tcp);
    try {
      // Nothing listens: the host retries (a failed connect is a failed start, restarted with backoff).
      const failing = await until(async () => {
        const v = await view();
        return v.restarts >= 2 ? v : null;
      }, 'connection attempts retried', 10_000);
      assert.equal(failing.process, 'remote');
      assert.equal(failing.pid, null);
      assert.match(failing.last_error, new RegExp(`could not connect to the remote tracker at 127\\.0\\.0\\.1:${port} after 2 attempts`));
      assert.equal(remote.conns.length, 0);

      // Frames sent now wait in the ring.
      let ts = 1_757_400_000_000;
      const sent: number[] = [];
      const send = async (n: number): Promise<void> => {
        let s = '';
        for (let i = 0; i < n; i++) {
          ts += 100;
          sent.push(ts);
          s += lineFrame(node, ts, 2, TOKEN);
        }
        await client.send(s);
      };
      await send(10);

      await remote.listen();
      await until(() => remote.timestamps().length === 10, 'the ring frames arrive once the tracker listens', 10_000);
      const up = await view();
      assert.equal(up.state, 'running');
      assert.equal(up.process, 'remote');
      assert.equal(up.pid, null);
      await send(20);
      await until(() => remote.timestamps().length === 30, 'frames fed', 10_000);
      assert.deepEqual(remote.timestamps(), sent, 'every frame, in order');
      const line = JSON.parse(remote.conns[0]!.lines[0]!) as Record<string, unknown>;
      assert.deepEqual(Object.keys(line).sort(), ['adsb', 'delay', 'doppler', 'snr', 'timestamp']);

      // The remote side drops the connection: the host sees it, backs off and reconnects.
      const restarts = up.restarts as number;
      remote.conns[0]!.socket.destroy();
      await until(async () => (await view()).restarts > restarts, 'the dropped connection counted as a crash', 10_000);
      // Sent while the host is reconnecting: they wait in the ring and go to the next connection.
      await send(15);
      await until(() => remote.conns.length === 2 && remote.timestamps().length === 45, 'reconnected and fed', 10_000);
      assert.deepEqual(remote.timestamps(), sent, 'no ring frame lost, in order');
      const v = await view();
      assert.equal(v.state, 'running');
      assert.match(v.last_error, /tracker input closed/);
      assert.equal(v.frames_lost, 0);
      await assertAccounting(e);

      // Shutdown: what the node sent is delivered, then the connection is ended (the tracker reads to EOF).
      await send(5);
      await until(async () => (await scrape(e)).get('radar_ingest_frames_received_total') === 50, 'the last frames received');
      await e.stop();
      await until(() => remote.timestamps().length === 50, 'the last frames delivered at shutdown');
      assert.deepEqual(remote.timestamps(), sent);
      await until(() => remote.conns[1]!.ended, 'the connection ended at shutdown');
    } finally {
      client.destroy();
      await e.stop();
    }
  });

  test('node away: after extended_outage_sec the connection is closed and the tracker stopped; node back: reconnected', async () => {
    const port = await freePort();
    const remote = new RemoteListener(port);
    after(() => remote.close());
    await remote.listen();
    const out = await outDir();
    const node = 'far-outage';
    const { e, http, tcp } = await startTrackerEngine(out, [], {
      retry: { extended_outage_sec: 0.4 },
      trackers: [{ name: node, tcp_port: port, spawn_tracker: false, tcp_host: 'localhost' }],
    }, {}, ['/nonexistent/never-spawned']);
    const view = async (): Promise<any> => (await getJson(http, `/api/v1/trackers/${node}`)).json; // eslint-disable-line @typescript-eslint/no-explicit-any
    try {
      const c1 = await Client.open(tcp);
      await c1.send(lineFrame(node, 1_757_400_000_000));
      await until(() => remote.timestamps().length === 1, 'first frame', 10_000);
      const k = remote.conns.findIndex((c) => c.lines.length === 1);
      c1.destroy();
      await until(() => remote.conns[k]!.ended, 'the host closed the connection after the outage', 10_000);
      await until(async () => (await view()).state === 'stopped', 'stopped', 10_000);
      assert.equal((await view()).restarts, 0, 'an outage stop is not a crash');

      const c2 = await Client.open(tcp);
      await c2.send(lineFrame(node, 1_757_400_000_100));
      await until(() => remote.conns.length > k + 1 && remote.timestamps().length === 2, 'reconnected when the node came back', 10_000);
      assert.equal((await view()).state, 'running');
      c2.destroy();
      await assertAccounting(e);
    } finally {
      await e.stop();
    }
  });
});
