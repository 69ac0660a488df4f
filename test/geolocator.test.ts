// Geolocators end to end: the real engine with sink "trackers", a stand-in
// tracker (test/fixtures/fake-tracker.js --echo: one track event per frame), and
// a stand-in for retina-geolocator's streaming solver written to a temp dir below
// (retina-geolocator itself needs numpy/scipy and a radar): it takes the same
// command line (`--tcp --tcp-port P --radar-config FILE [--config F]`), listens
// on P, reads track events as JSON lines and prints one JSON solution per event
// on stdout. The node's radar config is served by a real HTTP server (config_url).
// Each test observes what an operator sees: the solutions file, the tracker API,
// /metrics, process ids.
import { test, describe, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { Engine } from '../src/engine/engine.js';
import { EventQueue } from '../src/tracker/geolocator-queue.js';
import { geolocatorWanted } from '../src/tracker/geolocator.js';
import {
  Client, freePortRange, getJson, lineFrame, pidAlive, scrape, startTrackerEngine, until, type TrackerEngine,
} from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'radar-geolocator-'));

/**
 * The stand-in geolocator. Flags besides retina's:
 *   --crash-once-after N  exit with code 3 after N events, the first time only (a marker file remembers)
 *   --hold                print nothing until the input ends, then one solution per event and exit 0
 *   --no-read             accept the connection and never read from it (a hung solver)
 * At start it prints a line that is not JSON (a progress message), which the host must skip.
 */
const STANDIN = join(dir, 'stand-in-geolocator.cjs');
writeFileSync(STANDIN, `
const net = require('node:net');
const fs = require('node:fs');
const args = process.argv.slice(2);
const val = (f) => { const i = args.indexOf(f); return i < 0 ? undefined : args[i + 1]; };
if (!args.includes('--tcp')) { fs.writeSync(2, 'stand-in: --tcp is required\\n'); process.exit(2); }
const port = Number(val('--tcp-port'));
const radar = fs.readFileSync(val('--radar-config'), 'utf8');
const config = val('--config') ?? null;
const crashAfter = val('--crash-once-after');
const marker = crashAfter !== undefined ? val('--marker') : undefined;
const hold = args.includes('--hold');
const out = (o) => fs.writeSync(1, JSON.stringify(o) + '\\n');
fs.writeSync(1, 'stand-in geolocator: loading solver\\n');
let n = 0;
const held = [];
const solve = (ev) => out({ solution_for: ev, n: ++n, pid: process.pid, radar, config });
const server = net.createServer((sock) => {
  if (args.includes('--no-read')) { sock.pause(); return; }
  let rest = '';
  sock.setEncoding('utf8');
  sock.on('data', (s) => {
    rest += s;
    let i;
    while ((i = rest.indexOf('\\n')) >= 0) {
      const ev = JSON.parse(rest.slice(0, i));
      rest = rest.slice(i + 1);
      if (hold) { held.push(ev); continue; }
      solve(ev);
      if (crashAfter !== undefined && n >= Number(crashAfter) && !fs.existsSync(marker)) {
        fs.writeFileSync(marker, 'crashed');
        process.exit(3);
      }
    }
  });
  sock.on('end', () => {
    if (hold) { for (const ev of held) solve(ev); process.exit(0); }
  });
  sock.on('error', () => undefined);
});
server.listen(port, '127.0.0.1');
setInterval(() => undefined, 60000);
`);

const RADAR = { name: 'radar-geo', location: { rx: { latitude: -34.9, longitude: 138.6, altitude: 50 }, tx: { latitude: -34.8, longitude: 138.7, altitude: 400 } }, capture: { fc: 204640000 } };

let radarServer: Server;
let radarUrl = '';
/** While true the radar config endpoint answers 404. */
let radarFailing = false;
const engines: Engine[] = [];
const clients: Client[] = [];

after(async () => {
  radarServer?.close();
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await Promise.all(engines.splice(0).map((e) => e.stop().catch(() => undefined)));
});

async function radarConfigServer(): Promise<void> {
  if (radarUrl) return;
  radarServer = createServer((req, res) => {
    if (req.url !== '/api/config' || radarFailing) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(RADAR));
  });
  await new Promise<void>((r) => radarServer.listen(0, '127.0.0.1', r));
  radarUrl = `http://127.0.0.1:${(radarServer.address() as { port: number }).port}/api/config`;
}

let dirs = 0;
function subdir(name: string): string {
  const d = join(dir, `${name}-${++dirs}`);
  mkdirSync(d, { recursive: true });
  return d;
}

interface GeoEngine extends TrackerEngine {
  node: string;
  geoBase: number;
}

/** An engine with one configured TCP tracker `node` whose geolocator is the stand-in (extra flags `geoArgs`). */
async function geoEngine(node: string, geoArgs: string[], over: Record<string, any> = {}, geo: Record<string, unknown> = {},
  trackerArgs: string[] = []): Promise<GeoEngine> {
  await radarConfigServer();
  const [trackerPort, geoBase] = await freePortRange(2);
  const t = await startTrackerEngine(subdir('out'), ['--echo', ...trackerArgs], {
    trackers: [{ name: node, tcp_port: trackerPort, config_url: radarUrl, geolocator: { enabled: true, tcp_port: 0, ...geo } }],
    geolocator: { command: [process.execPath, STANDIN, '--tcp', '--tcp-port', '{port}', '--radar-config', '{radar_config}', '--config', '{config}', ...geoArgs] },
    geolocator_startup_delay_sec: 0,
    server: { geolocator_tcp_port_base: geoBase },
    ...over,
  });
  engines.push(t.e);
  return { ...t, node, geoBase: geoBase! };
}

async function open(port: number): Promise<Client> {
  const c = await Client.open(port);
  clients.push(c);
  return c;
}

/** The JSON lines of every `{name}_solutions_*.jsonl` file in `out`. */
function solutions(out: string, name: string): any[] {
  const rows: any[] = [];
  if (!existsSync(out)) return rows;
  for (const f of readdirSync(out).filter((f) => f.startsWith(`${name}_solutions_`) && f.endsWith('.jsonl')).sort()) {
    const parts = readFileSync(join(out, f), 'utf8').split('\n');
    parts.pop();
    for (const l of parts) rows.push(JSON.parse(l));
  }
  return rows;
}
const solvedTimestamps = (rows: any[]): number[] => rows.map((r) => r.solution_for.echo.timestamp);
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const T0 = 1_757_400_000_000;
const frames = (node: string, from: number, to: number, n = 2): string => range(from, to).map((i) => lineFrame(node, T0 + i, n)).join('');

async function geoView(g: GeoEngine): Promise<any> {
  const { status, json } = await getJson(g.http, `/api/v1/trackers/${g.node}`);
  assert.equal(status, 200);
  return json.geolocator;
}

describe('geolocators', () => {
  test('every track event reaches the geolocator over TCP; its JSON stdout lines go to {name}_solutions_{date}.jsonl', async () => {
    const cfgDir = subdir('geo-cfg');
    const g = await geoEngine('geo-a', [], {}, { geolocator_config_path: join(cfgDir, 'geolocator_config.yml') });
    const c = await open(g.tcp);
    await c.send(frames('geo-a', 1, 5));
    const rows = await until(() => {
      const r = solutions(g.out, 'geo-a');
      return r.length >= 5 && r;
    }, 'five solutions', 10_000);
    // One solution per track event, in order; the stand-in's progress line (not JSON) is not in the file.
    assert.deepEqual(solvedTimestamps(rows), range(1, 5).map((i) => T0 + i));
    const trackLines = readdirSync(g.out).filter((f) => f.startsWith('geo-a_') && !f.includes('solutions'));
    assert.equal(trackLines.length, 1, 'the track file is still written');
    // The radar config from config_url, written as YAML, was handed to --radar-config.
    assert.deepEqual(parseYaml(rows[0].radar), RADAR);
    assert.equal(rows[0].config, join(cfgDir, 'geolocator_config.yml'));
    const v = await geoView(g);
    assert.equal(v.state, 'running');
    assert.ok(v.pid > 0 && pidAlive(v.pid));
    assert.equal(v.pid, rows[0].pid);
    // tcp_port 0: the first free port from server.geolocator_tcp_port_base.
    assert.equal(v.port, g.geoBase);
    assert.equal(v.radar_config, join(g.out, '.geo-a_config.yml'));
    await until(async () => (await geoView(g)).solutions_written === 5, 'solutions_written 5');
    const v2 = await geoView(g);
    assert.equal(v2.events_received, 5);
    assert.equal(v2.events_fed, 5);
    assert.equal(v2.events_queued, 0);
    assert.deepEqual(v2.events_dropped, { queue_full: 0, not_running: 0, lost: 0, shutdown: 0 });
    assert.equal(v2.solutions_skipped, 1);
    assert.equal(v2.restarts, 0);
    assert.equal(v2.last_error, null);
    const m = await scrape(g.e);
    assert.equal(m.get('radar_ingest_geolocator_up{node="geo-a"}'), 1);
    assert.equal(m.get('radar_ingest_geolocator_events_fed_total'), 5);
    assert.equal(m.get('radar_ingest_geolocator_solutions_written_total'), 5);
    assert.equal(m.get('radar_ingest_geolocator_restarts_total{node="geo-a"}'), 0);
    for (const r of ['queue_full', 'not_running', 'lost', 'shutdown']) assert.equal(m.get(`radar_ingest_geolocator_events_dropped_total{reason="${r}"}`), 0);
  });

  test('a crashed geolocator is restarted with backoff and gets the events that follow', async () => {
    const marker = join(subdir('marker'), 'crashed');
    const g = await geoEngine('geo-b', ['--crash-once-after', '3', '--marker', marker]);
    const c = await open(g.tcp);
    await c.send(frames('geo-b', 1, 3));
    await until(() => solutions(g.out, 'geo-b').length >= 3, 'three solutions before the crash', 10_000);
    const firstPid = solutions(g.out, 'geo-b')[0].pid;
    await until(async () => {
      const v = await geoView(g);
      return v.restarts === 1 && v.state === 'running' && v.pid !== firstPid && v;
    }, 'the geolocator restarted', 10_000);
    const v = await geoView(g);
    assert.match(v.last_error, /geolocator exited with code 3/);
    assert.equal(pidAlive(firstPid), false);
    await c.send(frames('geo-b', 4, 6));
    const rows = await until(() => {
      const r = solutions(g.out, 'geo-b');
      return r.length >= 6 && r;
    }, 'solutions after the restart', 10_000);
    assert.deepEqual(solvedTimestamps(rows), range(1, 6).map((i) => T0 + i));
    assert.notEqual(rows[5].pid, firstPid);
    const m = await scrape(g.e);
    assert.equal(m.get('radar_ingest_geolocator_restarts_total{node="geo-b"}'), 1);
    assert.equal(m.get('radar_ingest_tracker_restarts_total{node="geo-b"}'), 0, 'the tracker was not restarted');
  });

  test('a restart whose radar config fetch fails starts with the last config fetched', async () => {
    const marker = join(subdir('marker'), 'crashed');
    const g = await geoEngine('geo-i', ['--crash-once-after', '1', '--marker', marker]);
    const c = await open(g.tcp);
    await until(async () => (await geoView(g)).state === 'running', 'the geolocator running with a fetched config', 10_000);
    radarFailing = true;
    try {
      await c.send(frames('geo-i', 1, 1));
      await until(async () => {
        const v = await geoView(g);
        return v.restarts === 1 && v.state === 'running' && v;
      }, 'the geolocator restarted', 10_000);
      await c.send(frames('geo-i', 2, 2));
      const rows = await until(() => {
        const r = solutions(g.out, 'geo-i');
        return r.length >= 2 && r;
      }, 'a solution after the restart', 10_000);
      assert.notEqual(rows[1].pid, rows[0].pid);
      assert.deepEqual(parseYaml(rows[1].radar), RADAR);
    } finally {
      radarFailing = false;
    }
  });

  test('a tracker crash restarts the tracker, not its geolocator, which keeps getting the events', async () => {
    const g = await geoEngine('geo-j', [], {}, {}, ['--exit-after', '2']);
    const c = await open(g.tcp);
    await c.send(frames('geo-j', 1, 2));
    const first = await until(() => {
      const r = solutions(g.out, 'geo-j');
      return r.length >= 2 && r;
    }, 'two solutions', 10_000);
    await until(async () => {
      const { json } = await getJson(g.http, '/api/v1/trackers/geo-j');
      return json.restarts >= 1 && json.state === 'running';
    }, 'the tracker restarted', 10_000);
    await c.send(frames('geo-j', 3, 4));
    const rows = await until(() => {
      const r = solutions(g.out, 'geo-j');
      return r.length >= 4 && r;
    }, 'solutions after the tracker restart', 10_000);
    assert.deepEqual(solvedTimestamps(rows), range(1, 4).map((i) => T0 + i));
    assert.equal(rows[3].pid, first[0].pid, 'the same geolocator process');
    assert.equal((await geoView(g)).restarts, 0);
  });

  test('the geolocator is stopped with its tracker after an extended outage and started again with it', async () => {
    const g = await geoEngine('geo-c', [], { retry: { extended_outage_sec: 0.3 } });
    let c = await open(g.tcp);
    await c.send(frames('geo-c', 1, 2));
    await until(() => solutions(g.out, 'geo-c').length >= 2, 'two solutions', 10_000);
    const pid1 = (await geoView(g)).pid;
    c.destroy();
    const stopped = await until(async () => {
      const { json } = await getJson(g.http, '/api/v1/trackers/geo-c');
      return json.state === 'stopped' && json.geolocator.state === 'stopped' && json;
    }, 'tracker and geolocator stopped', 10_000);
    assert.equal(stopped.geolocator.pid, null);
    await until(() => !pidAlive(pid1), 'the geolocator process gone');
    assert.equal((await scrape(g.e)).get('radar_ingest_geolocator_up{node="geo-c"}'), 0);
    // The node is back: the tracker starts, then its geolocator (a new process).
    c = await open(g.tcp);
    await c.send(frames('geo-c', 3, 4));
    const rows = await until(() => {
      const r = solutions(g.out, 'geo-c');
      return r.length >= 4 && r;
    }, 'solutions after the return', 10_000);
    assert.deepEqual(solvedTimestamps(rows), range(1, 4).map((i) => T0 + i));
    assert.notEqual(rows[3].pid, pid1);
    const v = await geoView(g);
    assert.equal(v.state, 'running');
    assert.equal(v.restarts, 0, 'an outage stop is not a crash');
  });

  test('shutdown: the tracker\'s last events are sent to the geolocator, which ends its input, before it is stopped', async () => {
    const g = await geoEngine('geo-d', ['--hold']);
    const c = await open(g.tcp);
    await c.send(frames('geo-d', 1, 8));
    await until(async () => (await geoView(g)).events_fed === 8, 'eight events fed', 10_000);
    assert.equal(solutions(g.out, 'geo-d').length, 0, 'the stand-in holds its solutions until its input ends');
    const pid = (await geoView(g)).pid;
    c.destroy();
    await g.e.stop();
    engines.splice(engines.indexOf(g.e), 1);
    // After stop() resolves: every event solved and in the file, the process gone.
    assert.deepEqual(solvedTimestamps(solutions(g.out, 'geo-d')), range(1, 8).map((i) => T0 + i));
    assert.equal(pidAlive(pid), false);
  });

  test('a geolocator that never reads does not hold the tracker back: its oldest events are dropped, counted', async () => {
    const g = await geoEngine('geo-f', ['--no-read']);
    const c = await open(g.tcp);
    await until(async () => (await geoView(g)).state === 'running', 'geolocator running', 10_000);
    // 60 MB of events (~2.5 KB each, 50 detections): more than the socket buffers (here up to 36 MiB:
    // tcp_rmem max + tcp_wmem max) and the queue (32 MiB at most) can hold.
    const total = 24_000;
    for (let from = 1; from <= total; from += 500) await c.send(frames('geo-f', from, from + 499, 50));
    // The tracker's output is not held back: every event is in the track file.
    await until(async () => (await getJson(g.http, '/api/v1/trackers/geo-f')).json.tracks_written === total, 'every track written', 60_000);
    const v = await geoView(g);
    assert.equal(v.events_received, total);
    assert.ok(v.events_dropped.queue_full > 0, `queue_full drops: ${JSON.stringify(v)}`);
    assert.ok(v.events_queued <= 10_000 + 256, 'the queue stays within its bound (plus one batch in flight)');
    const dropped = Object.values(v.events_dropped as Record<string, number>).reduce((a, b) => a + b, 0);
    assert.equal(v.events_received, v.events_fed + v.events_queued + dropped, 'every event accounted for');
    const m = await scrape(g.e);
    assert.equal(m.get('radar_ingest_geolocator_events_dropped_total{reason="queue_full"}'), v.events_dropped.queue_full);
  });

  test('a radar config handed over (by a config_url poller) restarts a running geolocator with the new file', async () => {
    const g = await geoEngine('geo-g', []);
    const c = await open(g.tcp);
    await c.send(frames('geo-g', 1, 1));
    const first = (await until(() => solutions(g.out, 'geo-g')[0], 'a solution', 10_000));
    assert.deepEqual(parseYaml(first.radar), RADAR);
    const stage = g.e.trackers!.get('geo-g')!.geolocator!;
    stage.setRadarConfig(RADAR);
    assert.equal((await geoView(g)).pid, first.pid, 'the same config: no restart');
    const moved = { ...RADAR, location: { ...RADAR.location, rx: { latitude: -35, longitude: 138.5, altitude: 60 } } };
    stage.setRadarConfig(moved);
    await until(async () => {
      const v = await geoView(g);
      return v.state === 'running' && v.pid !== first.pid;
    }, 'the geolocator restarted with the new radar config', 10_000);
    await c.send(frames('geo-g', 2, 2));
    const rows = await until(() => {
      const r = solutions(g.out, 'geo-g');
      return r.length >= 2 && r;
    }, 'a solution from the new process', 10_000);
    assert.deepEqual(parseYaml(rows[1].radar), moved);
    const v = await geoView(g);
    assert.equal(v.restarts, 0, 'a new radar config is not a crash');
    assert.deepEqual(v.events_dropped, { queue_full: 0, not_running: 0, lost: 0, shutdown: 0 });
  });

  test('a geolocator port another program listens on fails the start with that reason; the tracker runs on', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const busy = (blocker.address() as { port: number }).port;
    try {
      const g = await geoEngine('geo-h', [], { tracker: { restart_backoff_ms: 10_000 } }, { tcp_port: busy });
      const c = await open(g.tcp);
      await c.send(frames('geo-h', 1, 2));
      const v = await until(async () => {
        const { json } = await getJson(g.http, '/api/v1/trackers/geo-h');
        return json.geolocator.last_error && json;
      }, 'the start failure', 10_000);
      assert.match(v.geolocator.last_error, new RegExp(`port ${busy} is already in use`));
      assert.equal(v.geolocator.port, busy);
      assert.equal(v.state, 'running');
      await until(async () => (await getJson(g.http, '/api/v1/trackers/geo-h')).json.tracks_written === 2, 'the track file written');
    } finally {
      blocker.close();
    }
  });

  test('without config_url the geolocator cannot start (last_error says why) and the tracker runs on', async () => {
    const [trackerPort, geoBase] = await freePortRange(2);
    const t = await startTrackerEngine(subdir('out'), ['--echo'], {
      trackers: [{ name: 'geo-e', tcp_port: trackerPort, geolocator: { enabled: true, tcp_port: 0 } }],
      geolocator: { command: [process.execPath, STANDIN, '--tcp', '--tcp-port', '{port}', '--radar-config', '{radar_config}'] },
      geolocator_startup_delay_sec: 0,
      server: { geolocator_tcp_port_base: geoBase },
      tracker: { restart_backoff_ms: 10_000 },
    });
    engines.push(t.e);
    const c = await open(t.tcp);
    await c.send(frames('geo-e', 1, 3));
    const v = await until(async () => {
      const { json } = await getJson(t.http, '/api/v1/trackers/geo-e');
      return json.geolocator.last_error && json;
    }, 'the geolocator start failure', 10_000);
    assert.equal(v.state, 'running');
    assert.match(v.geolocator.last_error, /no config_url/);
    assert.equal(v.geolocator.state, 'backoff');
    await until(async () => (await getJson(t.http, '/api/v1/trackers/geo-e')).json.tracks_written === 3, 'the track file written');
    assert.equal(solutions(t.out, 'geo-e').length, 0);
  });

  test('a tracker without a geolocator has geolocator: null in its view and no solutions file', async () => {
    const [trackerPort] = await freePortRange(1);
    const t = await startTrackerEngine(subdir('out'), ['--echo'], { trackers: [{ name: 'plain', tcp_port: trackerPort }] });
    engines.push(t.e);
    const c = await open(t.tcp);
    await c.send(frames('plain', 1, 2));
    await until(async () => (await getJson(t.http, '/api/v1/trackers/plain')).json.tracks_written === 2, 'tracks written');
    const { json } = await getJson(t.http, '/api/v1/trackers/plain');
    assert.equal(json.geolocator, null);
    assert.equal(solutions(t.out, 'plain').length, 0);
  });
});

describe('geolocator building blocks', () => {
  test('the event queue drops the oldest events beyond its bounds', () => {
    const q = new EventQueue(3, 1000);
    const ev = (i: number): Buffer => Buffer.from(`{"i":${i}}\n`);
    assert.equal(q.push(ev(1)), 0);
    assert.equal(q.push(ev(2)), 0);
    assert.equal(q.push(ev(3)), 0);
    assert.equal(q.push(ev(4)), 1);
    assert.equal(q.take(10, 1 << 20)!.buf.toString(), '{"i":2}\n{"i":3}\n{"i":4}\n');
    const small = new EventQueue(100, 20);
    small.push(ev(1));
    small.push(ev(2));
    assert.equal(small.push(ev(3)), 1, 'the byte bound drops too');
    assert.equal(small.length, 2);
  });

  test('a geolocator follows its tracker: starts when it runs, stays through its restarts, goes when it is stopped', () => {
    assert.equal(geolocatorWanted(false, 'starting'), false);
    assert.equal(geolocatorWanted(false, 'running'), true);
    assert.equal(geolocatorWanted(true, 'backoff'), true);
    assert.equal(geolocatorWanted(true, 'starting'), true);
    assert.equal(geolocatorWanted(true, 'stopping'), true);
    assert.equal(geolocatorWanted(true, 'stopped'), false);
    assert.equal(geolocatorWanted(true, 'failed'), false);
    assert.equal(geolocatorWanted(true, 'idle'), false);
  });
});

