// Tracker provisioning, end to end: the real engine with sink "trackers", real
// tracker subprocesses (the reference tracker, or the fake tracker with --echo),
// real TCP nodes, real HTTP (API, /metrics, a polled detection_url), real track
// files. Covers: auto-provisioning (naming, ports in order, busy ports skipped,
// exhaustion and refusal, DELETE freeing a port), reattaching on reconnect,
// configured trackers (mode tcp and http), auto_provision false, the tracker API,
// the tracker metrics, and duplicate / out-of-order frames.
import { test, describe, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { createServer as createHttpServer, request, type Server as HttpServer } from 'node:http';
import { startEngine, Client, TOKEN, until, scrape, assertAccounting, freePortRange, getJson, FAKE_TRACKER } from './helpers.js';
import type { Engine } from '../src/engine/engine.js';
import type { InstanceView } from '../src/tracker/tracker-instance.js';
import { TRACKER_STATES } from '../src/tracker/supervisor.js';
import { portIsFree } from '../src/tracker/port-allocator.js';

const FAKE_ECHO = [process.execPath, FAKE_TRACKER, '--tcp-port', '{port}', '--echo'];
const API_TOKEN = 'api-secret';
const DEADLINE = 10_000;
/** Frame timestamps: 500 ms apart from here. */
const T0 = 1757400000000;

// ---------------------------------------------------------------------------
// fixtures
// ---------------------------------------------------------------------------

const engines: Engine[] = [];
const dirs: string[] = [];
const blockers: NetServer[] = [];
const httpServers: HttpServer[] = [];
after(async () => {
  await Promise.all(engines.map((e) => e.stop()));
  for (const s of blockers) s.close();
  for (const s of httpServers) s.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});


const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = isObj(v) && isObj(out[k]) ? { ...(out[k] as object), ...v } : v;
  return out;
}

interface Fixture {
  engine: Engine;
  /** output_dir */
  dir: string;
  /** The provisioning range, in order (and extra ports asked for, after it). */
  ports: number[];
  /** The node port. */
  tcp: number;
  /** The HTTP port (API, /metrics). */
  http: number;
}

/**
 * An engine with sink "trackers", small timings, its own output_dir and its own
 * provisioning range of `rangeSize` ports (plus `extraPorts` free ports after it,
 * e.g. for configured trackers). `build(ports)` returns config overrides (merged
 * one level deep). The engine is stopped when the test ends.
 */
async function setup(t: TestContext, opts: {
  rangeSize?: number;
  extraPorts?: number;
  fake?: boolean;
  build?: (ports: number[]) => Record<string, unknown>;
} = {}): Promise<Fixture> {
  const rangeSize = opts.rangeSize ?? 3;
  const ports = await freePortRange(rangeSize + (opts.extraPorts ?? 0));
  const dir = mkdtempSync(join(tmpdir(), 'ri-provisioning-'));
  dirs.push(dir);
  const base: Record<string, unknown> = {
    sink: 'trackers',
    output_dir: dir,
    startup_delay_sec: 0,
    // The tracker needs a moment to listen on a loaded machine: many short retries.
    tcp_connect_retries: 500,
    tcp_retry_delay_sec: 0.02,
    tcp_server: { auto_provision: true, auto_provision_port_start: ports[0]!, auto_provision_port_end: ports[rangeSize - 1]! },
    http: { api_token: API_TOKEN },
    tracker: { reconcile_interval_ms: 25, stop_grace_ms: 2000, ...(opts.fake ? { command: FAKE_ECHO } : {}) },
  };
  const engine = await startEngine(merge(base, opts.build?.(ports) ?? {}));
  engines.push(engine);
  t.after(() => engine.stop());
  return { engine, dir, ports, tcp: engine.tcpAddress!.port, http: engine.httpAddress!.port };
}

/** A line-protocol frame with one detection drifting slowly in delay (the reference tracker confirms a track). */
function frame(node: string, i: number, ts = T0 + 500 * i): string {
  return `${JSON.stringify({ node_id: node, token: TOKEN, timestamp: ts, delay: [40 + 0.1 * i], doppler: [-28], snr: [15], adsb: [null] })}\n`;
}
function frames(node: string, from: number, to: number): string {
  let s = '';
  for (let i = from; i < to; i++) s += frame(node, i);
  return s;
}

function utcDate(): string {
  return new Date().toISOString().slice(0, 10);
}
function trackFile(dir: string, name: string): string {
  return join(dir, `${name}_${utcDate()}.jsonl`);
}
/** The complete (newline-terminated) lines of a track file, parsed. */
function trackLines(dir: string, name: string): Record<string, any>[] {
  const f = trackFile(dir, name);
  if (!existsSync(f)) return [];
  const parts = readFileSync(f, 'utf8').split('\n');
  parts.pop(); // '' after the last newline, or a line still being written
  return parts.map((l) => JSON.parse(l) as Record<string, any>);
}

function httpReq(port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, json: body === '' ? null : JSON.parse(body) });
      });
    });
    req.on('error', reject);
    req.end();
  });
}
const auth = { authorization: `Bearer ${API_TOKEN}` };

interface TrackerList {
  trackers: InstanceView[];
  command: string;
  ports: { start: number; end: number; in_use: number };
  supervisor: { passes: number; pass_errors: number; probe_errors: number; last_pass_error: string | null };
}
async function list(f: Fixture): Promise<TrackerList> {
  const r = await getJson(f.http, '/api/v1/trackers');
  assert.equal(r.status, 200);
  return r.json as TrackerList;
}
/** GET one tracker; null on 404. */
async function view(f: Fixture, id: string): Promise<InstanceView | null> {
  const r = await getJson(f.http, `/api/v1/trackers/${encodeURIComponent(id)}`);
  if (r.status === 404) return null;
  assert.equal(r.status, 200);
  return r.json as InstanceView;
}
/** Polls the API until the node's tracker satisfies `ok`; returns its view. */
function untilView(f: Fixture, id: string, ok: (v: InstanceView) => boolean, what: string): Promise<InstanceView> {
  return until(async () => {
    const v = await view(f, id);
    return v !== null && ok(v) ? v : null;
  }, `${id}: ${what}`, DEADLINE);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Listens on 127.0.0.1:port (a port "in use by another program"). */
function block(port: number): Promise<NetServer> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      blockers.push(s);
      resolve(s);
    });
  });
}

/**
 * Opens a connection, sends `data` (frames of one node), and expects a refusal: every
 * frame counted node_refused, no byte back, the connection kept open (a gateway's other
 * nodes would carry on); then closes it.
 */
async function expectRefused(f: Fixture, data: string): Promise<void> {
  const refused = async (): Promise<number> => (await scrape(f.engine)).get('radar_ingest_frames_dropped_total{reason="node_refused"}') ?? 0;
  const before = await refused();
  const n = data.split('\n').filter((l) => l !== '').length;
  const c = await Client.open(f.tcp);
  await c.send(data);
  await until(async () => (await refused()) === before + n, `${n} frames refused`, DEADLINE);
  assert.equal(c.closed, false, 'a refused node does not close its line connection');
  assert.equal(c.bytes().length, 0, 'a refused line-protocol node gets no bytes');
  c.destroy();
  await c.closedP;
}

// ---------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------

describe('trackers: auto-provisioning', () => {
  test('a new node gets a tracker named after it on the first port; its frames become track events in its track file', async (t) => {
    const f = await setup(t);
    const c = await Client.open(f.tcp);
    t.after(() => c.destroy());
    await c.send(frames('node-1', 0, 6));

    const v = await untilView(f, 'node-1', (x) => x.state === 'running' && x.frames_fed === 6, 'running with 6 frames fed');
    assert.equal(v.name, 'node-1');
    assert.equal(v.node_id, 'node-1');
    assert.equal(v.mode, 'tcp');
    assert.equal(v.origin, 'provisioned');
    assert.equal(v.port, f.ports[0]);
    assert.equal(v.node_connected, true);
    assert.equal(v.restarts, 0);
    assert.ok(typeof v.pid === 'number' && v.pid > 0);
    assert.equal(process.kill(v.pid, 0), true, 'the tracker pid is a live process');
    // The tracker really listens on the provisioned port.
    assert.equal(await portIsFree(f.ports[0]!), false);
    if (existsSync(`/proc/${v.pid}/cmdline`)) {
      const argv = readFileSync(`/proc/${v.pid}/cmdline`, 'utf8').split('\0');
      assert.ok(argv.some((a) => a.endsWith('reference-tracker.js')), argv.join(' '));
      assert.equal(argv[argv.indexOf('--tcp-port') + 1], String(f.ports[0]));
    }

    // 6 frames, one detection each: the track is confirmed at the 3rd (min_length 3), then one event per frame.
    const lines = await until(() => {
      const l = trackLines(f.dir, 'node-1');
      return l.length >= 4 && l;
    }, 'track events in the track file', DEADLINE);
    assert.equal(lines.length, 4);
    // The track id carries the tracker process's run id ({epoch}.{spawn}-T0001).
    const id = lines[0]!.track_id as string;
    assert.match(id, /^\d+\.\d+-T0001$/);
    assert.deepEqual(lines.map((e) => [e.track_id, e.length, e.timestamp, e.state]), [
      [id, 3, T0 + 1000, 'confirmed'],
      [id, 4, T0 + 1500, 'confirmed'],
      [id, 5, T0 + 2000, 'confirmed'],
      [id, 6, T0 + 2500, 'confirmed'],
    ]);
    // Each event carries the detections not reported before: the frames, in order.
    assert.deepEqual(lines.flatMap((e) => e.detections.map((d: any) => d.timestamp)), [0, 1, 2, 3, 4, 5].map((i) => T0 + 500 * i));
    assert.deepEqual(readdirSync(f.dir).filter((n) => n.endsWith('.jsonl')), [`node-1_${utcDate()}.jsonl`]);

    await until(async () => (await view(f, 'node-1'))?.tracks_written === 4, 'tracks_written 4', DEADLINE);
    const m = await assertAccounting(f.engine);
    assert.equal(m.get('radar_ingest_tracker_up{node="node-1"}'), 1);
    assert.equal(m.get('radar_ingest_trackers{state="running"}'), 1);
    assert.equal(m.get('radar_ingest_frames_delivered_total'), 6);
    assert.equal(m.get('radar_ingest_frames_received_total'), 6);
    assert.equal(m.get('radar_ingest_tracks_written_total'), 4);
    assert.equal(m.get('radar_ingest_frames_in_sink'), 0);
    assert.equal(m.get('radar_ingest_tracker_restarts_total{node="node-1"}'), 0);
  });

  test('three nodes connecting one after another get start, start+1, start+2', async (t) => {
    const f = await setup(t, { rangeSize: 3 });
    const ids = ['node-a', 'node-b', 'node-c'];
    for (const [i, id] of ids.entries()) {
      const c = await Client.open(f.tcp);
      t.after(() => c.destroy());
      await c.send(frame(id, 0) + frame(id, 1));
      const v = await untilView(f, id, (x) => x.state === 'running' && x.frames_fed === 2, 'running, 2 frames fed');
      assert.equal(v.port, f.ports[i], `${id} gets port #${i} of the range`);
      assert.equal(v.origin, 'provisioned');
    }
    const l = await list(f);
    assert.deepEqual(l.trackers.map((x) => [x.node_id, x.port]), ids.map((id, i) => [id, f.ports[i]]));
    assert.deepEqual(l.ports, { start: f.ports[0], end: f.ports[2], in_use: 3 });
    const pids = new Set(l.trackers.map((x) => x.pid));
    assert.equal(pids.size, 3, 'one tracker process per node');

    const m = await assertAccounting(f.engine);
    assert.equal(m.get('radar_ingest_trackers{state="running"}'), 3);
    for (const id of ids) assert.equal(m.get(`radar_ingest_tracker_up{node="${id}"}`), 1);
    assert.equal(m.get('radar_ingest_frames_delivered_total'), 6);
  });

  test('a port of the range that another program listens on is skipped (and used once it is free)', async (t) => {
    const f = await setup(t, { rangeSize: 3 });
    const blocker = await block(f.ports[1]!);
    const a = await Client.open(f.tcp);
    t.after(() => a.destroy());
    await a.send(frame('node-a', 0));
    assert.equal((await untilView(f, 'node-a', (x) => x.state === 'running', 'running')).port, f.ports[0]);
    const b = await Client.open(f.tcp);
    t.after(() => b.destroy());
    await b.send(frame('node-b', 0));
    assert.equal((await untilView(f, 'node-b', (x) => x.state === 'running', 'running')).port, f.ports[2], 'the busy port is skipped');
    // The busy port is not written off: once free, the next node gets it.
    await new Promise<void>((r) => blocker.close(() => r()));
    const c = await Client.open(f.tcp);
    t.after(() => c.destroy());
    await c.send(frame('node-c', 0));
    assert.equal((await untilView(f, 'node-c', (x) => x.state === 'running' && x.frames_fed === 1, 'running')).port, f.ports[1]);
    assert.equal((await list(f)).ports.in_use, 3);
    await assertAccounting(f.engine);
  });

  test('a one-port range provisions one node and refuses the next (counted per attempt); DELETE frees the port for it', async (t) => {
    const f = await setup(t, { rangeSize: 1 });
    const a = await Client.open(f.tcp);
    t.after(() => a.destroy());
    await a.send(frames('node-a', 0, 3));
    const va = await untilView(f, 'node-a', (x) => x.state === 'running' && x.frames_fed === 3, 'running, 3 frames fed');
    assert.equal(va.port, f.ports[0]);

    // Two attempts by node-b, five frames each: two refusals, not ten.
    await expectRefused(f, frames('node-b', 0, 5));
    await expectRefused(f, frames('node-b', 5, 10));
    let m = await assertAccounting(f.engine);
    assert.equal(m.get('radar_ingest_provision_refused_total{reason="ports_exhausted"}'), 2);
    assert.equal(m.get('radar_ingest_provision_refused_total{reason="disabled"}'), 0);
    assert.equal(m.get('radar_ingest_frames_dropped_total{reason="node_refused"}'), 10);
    let l = await list(f);
    assert.deepEqual(l.trackers.map((x) => x.node_id), ['node-a']);
    assert.deepEqual(l.ports, { start: f.ports[0], end: f.ports[0], in_use: 1 });
    assert.equal(await view(f, 'node-b'), null);

    // node-a leaves; its tracker is removed over the API.
    a.end();
    await untilView(f, 'node-a', (x) => !x.node_connected && x.state === 'outage', 'disconnected, outage');
    const del = await httpReq(f.http, 'DELETE', '/api/v1/trackers/node-a', auth);
    assert.equal(del.status, 200);
    assert.deepEqual(del.json, { removed: 'node-a' });
    l = await until(async () => {
      const x = await list(f);
      return x.ports.in_use === 0 && x.trackers.length === 0 && x;
    }, 'port released, instance gone', DEADLINE);
    assert.deepEqual(l.ports, { start: f.ports[0], end: f.ports[0], in_use: 0 });
    await until(() => !alive(va.pid!), 'node-a tracker process gone', DEADLINE);
    m = await scrape(f.engine);
    assert.equal(m.has('radar_ingest_tracker_up{node="node-a"}'), false);

    // node-b tries again and gets the freed port; its frames reach its tracker.
    const b = await Client.open(f.tcp);
    t.after(() => b.destroy());
    await b.send(frames('node-b', 10, 14));
    const vb = await untilView(f, 'node-b', (x) => x.state === 'running' && x.frames_fed === 4, 'running, 4 frames fed');
    assert.equal(vb.port, f.ports[0]);
    assert.equal(vb.origin, 'provisioned');
    assert.equal(b.closed, false);
    l = await list(f);
    assert.deepEqual(l.trackers.map((x) => x.node_id), ['node-b']);
    assert.equal(l.ports.in_use, 1);
    m = await assertAccounting(f.engine);
    assert.equal(m.get('radar_ingest_provision_refused_total{reason="ports_exhausted"}'), 2);
    // Delivered is a running total: node-a's 3 frames stay counted after its instance was removed.
    assert.equal(m.get('radar_ingest_frames_delivered_total'), 7);
  });

  test('a reconnecting node is reattached to the same tracker (same pid, same port, no restart)', async (t) => {
    const f = await setup(t);
    const c1 = await Client.open(f.tcp);
    t.after(() => c1.destroy());
    await c1.send(frames('node-r', 0, 3));
    const v1 = await untilView(f, 'node-r', (x) => x.state === 'running' && x.frames_fed === 3, 'running, 3 frames fed');
    c1.end();
    const v2 = await untilView(f, 'node-r', (x) => x.state === 'outage' && !x.node_connected, 'outage');
    assert.equal(v2.pid, v1.pid, 'the tracker is kept alive during the outage');
    assert.equal(alive(v1.pid!), true);
    assert.equal((await scrape(f.engine)).get('radar_ingest_tracker_up{node="node-r"}'), 1);

    const c2 = await Client.open(f.tcp);
    t.after(() => c2.destroy());
    await c2.send(frames('node-r', 3, 7));
    const v3 = await untilView(f, 'node-r', (x) => x.state === 'running' && x.frames_fed === 7, 'running again, 7 frames fed');
    assert.equal(v3.pid, v1.pid);
    assert.equal(v3.port, v1.port);
    assert.equal(v3.port, f.ports[0]);
    assert.equal(v3.restarts, 0);
    assert.equal(v3.node_connected, true);
    const l = await list(f);
    assert.equal(l.trackers.length, 1);
    assert.equal(l.ports.in_use, 1);
    // One tracker saw all 7 frames in order: one track, confirmed at frame 3, an event per frame after.
    const lines = await until(() => {
      const x = trackLines(f.dir, 'node-r');
      return x.length >= 5 && x;
    }, '5 track events', DEADLINE);
    const id = lines[0]!.track_id as string;
    assert.match(id, /^\d+\.\d+-T0001$/);
    assert.deepEqual(lines.map((e) => [e.track_id, e.length]), [[id, 3], [id, 4], [id, 5], [id, 6], [id, 7]]);
    await until(async () => (await view(f, 'node-r'))?.tracks_written === 5, 'tracks_written 5', DEADLINE);
    const m = await assertAccounting(f.engine);
    assert.equal(m.get('radar_ingest_frames_delivered_total'), 7);
    assert.equal(m.get('radar_ingest_tracks_written_total'), 5);
    assert.equal(m.get('radar_ingest_tracker_restarts_total{node="node-r"}'), 0);
  });

  test('frames with a repeated or an older timestamp are skipped and counted; the others reach the tracker', async (t) => {
    const f = await setup(t, { fake: true });
    const c = await Client.open(f.tcp);
    t.after(() => c.destroy());
    const tss = [T0, T0 + 500, T0 + 500, T0 + 200, T0 + 1000, T0 + 1000, T0 + 1500];
    await c.send(tss.map((ts, i) => frame('node-d', i, ts)).join(''));
    const v = await untilView(f, 'node-d', (x) => x.frames_fed === 4 && x.frames_skipped.duplicate + x.frames_skipped.out_of_order === 3, 'all frames handled');
    assert.deepEqual(v.frames_skipped, { duplicate: 2, out_of_order: 1 });
    const echoed = await until(() => {
      const x = trackLines(f.dir, 'node-d');
      return x.length >= 4 && x;
    }, '4 echoed frames', DEADLINE);
    assert.deepEqual(echoed.map((e) => e.echo.timestamp), [T0, T0 + 500, T0 + 1000, T0 + 1500]);
    // The first of two frames with one timestamp is the one fed (delay 40 + 0.1 * index).
    assert.deepEqual(echoed.map((e) => e.echo.delay), [[40], [40.1], [40 + 0.1 * 4], [40 + 0.1 * 6]]);
    const m = await assertAccounting(f.engine);
    assert.equal(m.get('radar_ingest_frames_dropped_total{reason="duplicate"}'), 2);
    assert.equal(m.get('radar_ingest_frames_dropped_total{reason="out_of_order"}'), 1);
    assert.equal(m.get('radar_ingest_frames_delivered_total'), 4);
    assert.equal(m.get('radar_ingest_frames_received_total'), 7);
  });
});

describe('trackers: configured', () => {
  test('mode tcp runs at boot (outage until its node comes) and mode http polls its detection_url; neither takes a provisioned port', async (t) => {
    // The detection endpoint: one new frame per request, then the last one again.
    const served = [0, 1, 2, 3, 4].map((i) => ({ timestamp: T0 + 100 * i, delay: [10 + i], doppler: [5], snr: [20], adsb: [null] }));
    let polls = 0;
    const hs = createHttpServer((_req, res) => {
      const fr = served[Math.min(polls++, served.length - 1)];
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(fr));
    });
    httpServers.push(hs);
    await new Promise<void>((r) => hs.listen(0, '127.0.0.1', () => r()));
    t.after(() => hs.close());
    const hp = (hs.address() as { port: number }).port;

    // Range of 3 ports; the configured trackers use the first two (inside the range: they are reserved).
    const f = await setup(t, {
      rangeSize: 3,
      fake: true,
      build: (p) => ({
        poll_interval_sec: 0.02,
        trackers: [
          { name: 'cfg-tcp', node_id: 'node-cfg', mode: 'tcp', tcp_port: p[0] },
          { name: 'cfg-http', node_id: 'node-http', mode: 'http', tcp_port: p[1], detection_url: `http://127.0.0.1:${hp}/api/detection` },
        ],
      }),
    });

    // At boot, before node-cfg ever connected: its tracker runs on its configured port, in outage.
    const vt = await untilView(f, 'node-cfg', (x) => x.state === 'outage' && x.pid !== null, 'started at boot (outage)');
    assert.equal(vt.name, 'cfg-tcp');
    assert.equal(vt.origin, 'configured');
    assert.equal(vt.mode, 'tcp');
    assert.equal(vt.port, f.ports[0]);
    assert.equal(vt.node_connected, false);
    assert.equal(alive(vt.pid!), true);
    assert.equal(vt.frames_fed, 0);

    // The http tracker: every served frame reaches it, in order, as the served JSON.
    const vh = await untilView(f, 'node-http', (x) => x.state === 'running' && x.frames_fed === 5, 'running, 5 polled frames fed');
    assert.equal(vh.name, 'cfg-http');
    assert.equal(vh.origin, 'configured');
    assert.equal(vh.mode, 'http');
    assert.equal(vh.port, f.ports[1]);
    assert.equal(vh.node_connected, true);
    const echoedHttp = await until(() => {
      const x = trackLines(f.dir, 'cfg-http');
      return x.length >= 5 && x;
    }, 'http frames echoed', DEADLINE);
    assert.deepEqual(echoedHttp.map((e) => e.echo), served);
    // Polling goes on; the repeated last frame is not fed again.
    const seen = polls;
    await until(() => polls >= seen + 3, 'more polls', DEADLINE);
    assert.equal((await view(f, 'node-http'))!.frames_fed, 5);

    // Neither configured tracker holds a provisioning port.
    let l = await list(f);
    assert.equal(l.ports.in_use, 0);
    assert.deepEqual(l.trackers.map((x) => [x.node_id, x.origin, x.port]), [['node-cfg', 'configured', f.ports[0]], ['node-http', 'configured', f.ports[1]]]);

    // node-cfg connects: running, and its frames reach its (already running) tracker.
    const c = await Client.open(f.tcp);
    t.after(() => c.destroy());
    await c.send(frames('node-cfg', 0, 3));
    const vt2 = await untilView(f, 'node-cfg', (x) => x.state === 'running' && x.frames_fed === 3, 'running, 3 frames fed');
    assert.equal(vt2.pid, vt.pid);
    const echoedTcp = await until(() => {
      const x = trackLines(f.dir, 'cfg-tcp');
      return x.length >= 3 && x;
    }, 'tcp frames echoed', DEADLINE);
    assert.deepEqual(echoedTcp.map((e) => e.echo.timestamp), [T0, T0 + 500, T0 + 1000]);

    // A TCP node using the http node's id is refused (it is polled, not pushed).
    await expectRefused(f, frames('node-http', 0, 2));
    assert.equal((await view(f, 'node-http'))!.frames_fed, 5);

    // A new node skips the two configured ports of the range.
    const n = await Client.open(f.tcp);
    t.after(() => n.destroy());
    await n.send(frame('node-new', 0));
    const vn = await untilView(f, 'node-new', (x) => x.state === 'running' && x.frames_fed === 1, 'provisioned, running');
    assert.equal(vn.port, f.ports[2]);
    l = await list(f);
    assert.equal(l.ports.in_use, 1);
    await until(() => trackLines(f.dir, 'node-new').length === 1, 'node-new frame echoed', DEADLINE);
    assert.deepEqual(readdirSync(f.dir).filter((n) => n.endsWith('.jsonl')).sort(), [`cfg-http_${utcDate()}.jsonl`, `cfg-tcp_${utcDate()}.jsonl`, `node-new_${utcDate()}.jsonl`]);

    const m = await assertAccounting(f.engine);
    assert.equal(m.get('radar_ingest_frames_delivered_total'), 5 + 3 + 1);
    assert.equal(m.get('radar_ingest_trackers{state="running"}'), 3);
    assert.equal(m.get('radar_ingest_tracker_up{node="node-http"}'), 1);
    assert.equal(m.get('radar_ingest_tracker_up{node="node-cfg"}'), 1);
    assert.equal(m.get('radar_ingest_provision_refused_total{reason="ports_exhausted"}'), 0);
    assert.equal(m.get('radar_ingest_tracks_written_total'), 5 + 3 + 1);
  });

  test('a new node whose id is a configured tracker\'s name gets "<id>-auto": the track files do not collide', async (t) => {
    const f = await setup(t, {
      rangeSize: 2,
      extraPorts: 1,
      fake: true,
      build: (p) => ({ trackers: [{ name: 'node-z', node_id: 'radar-z', tcp_port: p[2] }] }),
    });
    const c = await Client.open(f.tcp);
    t.after(() => c.destroy());
    await c.send(frames('node-z', 0, 2));
    const v = await untilView(f, 'node-z', (x) => x.state === 'running' && x.frames_fed === 2, 'running, 2 frames fed');
    assert.equal(v.name, 'node-z-auto');
    assert.equal(v.origin, 'provisioned');
    assert.equal(v.port, f.ports[0]);
    const echoed = await until(() => {
      const x = trackLines(f.dir, 'node-z-auto');
      return x.length >= 2 && x;
    }, 'echoes in node-z-auto\'s file', DEADLINE);
    assert.deepEqual(echoed.map((e) => e.echo.timestamp), [T0, T0 + 500]);
    assert.deepEqual(trackLines(f.dir, 'node-z'), [], 'the configured tracker\'s file gets nothing');
    const cfg = (await view(f, 'radar-z'))!;
    assert.equal(cfg.name, 'node-z');
    assert.equal(cfg.frames_fed, 0);
    await assertAccounting(f.engine);
  });

  test('auto_provision false: an unknown node is refused (reason disabled), a configured node is accepted', async (t) => {
    const f = await setup(t, {
      rangeSize: 2,
      extraPorts: 1,
      build: (p) => ({
        tcp_server: { auto_provision: false },
        trackers: [{ name: 'node-ok', tcp_port: p[2] }],
      }),
    });
    await expectRefused(f, frames('node-x', 0, 3));
    let m = await scrape(f.engine);
    assert.equal(m.get('radar_ingest_provision_refused_total{reason="disabled"}'), 1);
    assert.equal(m.get('radar_ingest_provision_refused_total{reason="ports_exhausted"}'), 0);
    assert.equal(await view(f, 'node-x'), null);

    const c = await Client.open(f.tcp);
    t.after(() => c.destroy());
    await c.send(frames('node-ok', 0, 4));
    const v = await untilView(f, 'node-ok', (x) => x.state === 'running' && x.frames_fed === 4, 'running, 4 frames fed');
    assert.equal(v.origin, 'configured');
    assert.equal(v.port, f.ports[2]);
    assert.equal(c.closed, false);
    const l = await list(f);
    assert.deepEqual(l.trackers.map((x) => x.node_id), ['node-ok']);
    assert.equal(l.ports.in_use, 0);

    await expectRefused(f, frame('node-x', 9));
    m = await assertAccounting(f.engine);
    assert.equal(m.get('radar_ingest_provision_refused_total{reason="disabled"}'), 2);
    assert.equal(m.get('radar_ingest_frames_delivered_total'), 4);
  });
});

describe('trackers: API', () => {
  test('GET list and one, 404, and DELETE refusals (401 without token, 409 configured, 409 connected, 404 unknown)', async (t) => {
    const f = await setup(t, {
      rangeSize: 2,
      extraPorts: 1,
      build: (p) => ({ trackers: [{ name: 'cfg', node_id: 'node-cfg', tcp_port: p[2] }] }),
    });
    const c = await Client.open(f.tcp);
    t.after(() => c.destroy());
    await c.send(frames('node-p', 0, 3));
    // 3 frames: the reference tracker confirms the track at the third and writes one event.
    await untilView(f, 'node-p', (x) => x.state === 'running' && x.frames_fed === 3 && x.tracks_written === 1, 'running, 3 frames fed, 1 track event');
    await untilView(f, 'node-cfg', (x) => x.state === 'outage' && x.pid !== null, 'configured tracker up');

    const l = await list(f);
    assert.equal(l.command, 'reference');
    assert.deepEqual(l.ports, { start: f.ports[0], end: f.ports[1], in_use: 1 });
    assert.ok(Number.isInteger(l.supervisor.passes) && l.supervisor.passes > 0);
    assert.equal(l.supervisor.pass_errors, 0);
    assert.equal(l.supervisor.probe_errors, 0);
    assert.equal(l.supervisor.last_pass_error, null);
    assert.deepEqual(l.trackers.map((x) => x.node_id), ['node-cfg', 'node-p']);

    const one = (await view(f, 'node-p'))!;
    const keys = ['name', 'node_id', 'mode', 'origin', 'state', 'since', 'pid', 'port', 'restarts', 'node_connected', 'last_frame_at',
      'frames_fed', 'frames_skipped', 'frames_lost', 'tracks_written', 'last_output_at', 'input_blocked', 'retry_at', 'cooldown_until', 'last_error'];
    // Every documented field is there (the view may grow: a superset is fine).
    for (const k of keys) {
      assert.ok(k in one, `GET one has ${k}`);
      assert.ok(k in l.trackers[1]!, `GET list has ${k}`);
    }
    assert.deepEqual(l.trackers[1], one, 'the list shows the same view');
    assert.ok(Number.isInteger(one.pid) && one.pid! > 0 && alive(one.pid!));
    assert.equal(one.port, f.ports[0]);
    assert.equal(one.restarts, 0);
    assert.equal(one.frames_fed, 3);
    assert.equal(one.state, 'running');
    assert.ok((TRACKER_STATES as readonly string[]).includes(one.state));
    assert.equal(typeof one.node_connected, 'boolean');
    assert.ok(!Number.isNaN(Date.parse(one.since)) && one.since.endsWith('Z'));
    assert.ok(one.last_frame_at !== null && !Number.isNaN(Date.parse(one.last_frame_at)));
    assert.deepEqual(one.frames_skipped, { duplicate: 0, out_of_order: 0 });
    assert.equal(one.frames_lost, 0);
    assert.equal(one.tracks_written, 1);
    assert.ok(one.last_output_at !== null && !Number.isNaN(Date.parse(one.last_output_at)));
    assert.equal(one.input_blocked, false);
    assert.equal(one.retry_at, null);
    assert.equal(one.cooldown_until, null);
    assert.equal(one.last_error, null);
    const cfg = (await view(f, 'node-cfg'))!;
    assert.equal(cfg.name, 'cfg');
    assert.equal(cfg.origin, 'configured');
    assert.equal(cfg.port, f.ports[2]);
    assert.equal(cfg.last_frame_at, null);

    const missing = await getJson(f.http, '/api/v1/trackers/nope');
    assert.equal(missing.status, 404);
    assert.match(missing.json.error, /nope/);

    // DELETE: token first, then the instance's kind.
    assert.equal((await httpReq(f.http, 'DELETE', '/api/v1/trackers/node-p')).status, 401);
    assert.equal((await httpReq(f.http, 'DELETE', '/api/v1/trackers/node-p', { authorization: 'Bearer wrong' })).status, 401);
    const conf = await httpReq(f.http, 'DELETE', '/api/v1/trackers/node-cfg', auth);
    assert.equal(conf.status, 409);
    assert.match(conf.json.error, /configured/);
    const conn = await httpReq(f.http, 'DELETE', '/api/v1/trackers/node-p', auth);
    assert.equal(conn.status, 409);
    assert.match(conn.json.error, /connected/);
    assert.equal((await httpReq(f.http, 'DELETE', '/api/v1/trackers/nope', auth)).status, 404);
    assert.equal((await httpReq(f.http, 'POST', '/api/v1/trackers/node-p', auth)).status, 405);

    // Nothing was removed.
    const after2 = await list(f);
    assert.deepEqual(after2.trackers.map((x) => [x.node_id, x.state]), [['node-cfg', 'outage'], ['node-p', 'running']]);
    assert.equal(after2.ports.in_use, 1);
    assert.equal((await view(f, 'node-p'))!.pid, one.pid);
    const m = await assertAccounting(f.engine);
    assert.equal(m.get('radar_ingest_trackers{state="running"}'), 1);
    assert.equal(m.get('radar_ingest_trackers{state="outage"}'), 1);
    assert.equal(TRACKER_STATES.reduce((sum, st) => sum + m.get(`radar_ingest_trackers{state="${st}"}`)!, 0), 2);
    assert.equal(m.get('radar_ingest_tracker_up{node="node-cfg"}'), 1, 'a tracker in outage is up (running, input open)');
    assert.equal(m.get('radar_ingest_frames_delivered_total'), 3);
  });
});

describe('removal', () => {
  // A removed instance stays in the accounting while its process stops, so the books still balance.
  test('removing a tracker keeps frames_delivered_total and the accounting identity while its process stops', async (t) => {
    // A tracker that ignores SIGTERM: its removal takes stop_grace_ms (SIGKILL then).
    const f = await setup(t, {
      build: () => ({ tracker: { command: [...FAKE_ECHO, '--ignore-sigterm'], stop_grace_ms: 1500 } }),
    });
    const c = await Client.open(f.tcp);
    t.after(() => c.destroy());
    await c.send(frames('node-k', 0, 3));
    await untilView(f, 'node-k', (x) => x.state === 'running' && x.frames_fed === 3, 'running, 3 frames fed');
    await until(() => trackLines(f.dir, 'node-k').length === 3, '3 echoes', DEADLINE);
    await until(async () => (await view(f, 'node-k'))?.tracks_written === 3, 'tracks_written 3', DEADLINE);
    c.end();
    await untilView(f, 'node-k', (x) => x.state === 'outage', 'outage');
    assert.equal((await httpReq(f.http, 'DELETE', '/api/v1/trackers/node-k', auth)).status, 200);

    // While the process is being stopped: counters must not go down, and the identity must hold.
    const m = await assertAccounting(f.engine);
    assert.equal(m.get('radar_ingest_frames_delivered_total'), 3);
    assert.equal(m.get('radar_ingest_tracks_written_total'), 3);

    await until(async () => (await list(f)).ports.in_use === 0, 'removed', DEADLINE);
    const m2 = await assertAccounting(f.engine);
    assert.equal(m2.get('radar_ingest_frames_delivered_total'), 3);
    assert.equal(m2.get('radar_ingest_tracks_written_total'), 3);
  });
});
