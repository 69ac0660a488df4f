// tracker-host drop-in: a node's {"type":"RESET"} reaches its tracker in order
// with the frames (line and binary protocols), and a tracker's config_url is
// polled, a changed config restarting the tracker.
//
// The tracker is a stand-in for retina-tracker (a small node script written to a
// temp dir): it speaks retina's interface (TCP input on {port}, or stdin; JSON
// lines in; one JSON event per frame on stdout) and records every input line it
// reads, and a `#start <pid>` line when it starts, to a file the test reads.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startTrackerEngine, Client, until, scrape, assertAccounting, getJson, lineFrame, freePort, TOKEN, type TrackerEngine,
} from './helpers.js';
import { encodeHello, encodeFrame, encodeReset } from '../src/protocol/binary-protocol.js';
import { canonicalJson, failureDelayMs, initialPollState, onAnswer, onFailure, MAX_BACKOFF_MS } from '../src/tracker/config-poller.js';
import type { InstanceView } from '../src/tracker/tracker-instance.js';
import { initialState, step, type LifecycleRules } from '../src/tracker/lifecycle.js';
import { parseConfig } from '../src/config.js';

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
  const d = mkdtempSync(join(tmpdir(), 'ri-drop-in-reset-'));
  dirs.push(d);
  return d;
}

const STAND_IN = `
const fs = require('node:fs');
const net = require('node:net');
const [mode, arg, rec] = process.argv.slice(2);
fs.appendFileSync(rec, '#start ' + process.pid + '\\n');
let n = 0;
function feed(stream) {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.trim() === '') continue;
      fs.appendFileSync(rec, line + '\\n');
      const m = JSON.parse(line);
      if (m.type !== 'RESET') process.stdout.write(JSON.stringify({ track_id: 't' + (++n), timestamp: m.timestamp, length: 1 }) + '\\n');
    }
  });
}
if (mode === '--stdin') feed(process.stdin);
else net.createServer((s) => feed(s)).listen(Number(arg), '127.0.0.1');
`;

/** The stand-in tracker's argv and the file it records to. */
function standIn(dir: string, input: 'tcp' | 'stdin'): { command: string[]; rec: string } {
  const script = join(dir, 'stand-in-tracker.cjs');
  writeFileSync(script, STAND_IN);
  const rec = join(dir, 'tracker-input.log');
  return { command: [process.execPath, script, input === 'tcp' ? '--tcp' : '--stdin', input === 'tcp' ? '{port}' : '-', rec], rec };
}

function recorded(rec: string): string[] {
  return existsSync(rec) ? readFileSync(rec, 'utf8').split('\n').filter((l) => l !== '') : [];
}
/** The input lines the tracker read (its start marks left out). */
function inputLines(rec: string): string[] {
  return recorded(rec).filter((l) => !l.startsWith('#start'));
}
/** Each input line as the test compares it: a frame's timestamp, or 'RESET'. */
function shape(rec: string): Array<number | string> {
  return inputLines(rec).map((l) => {
    const m = JSON.parse(l) as { type?: string; timestamp?: number };
    return m.type === 'RESET' ? 'RESET' : m.timestamp!;
  });
}

async function engine(dir: string, command: string[], over: Record<string, any> = {}): Promise<TrackerEngine> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const t = await startTrackerEngine(join(dir, 'out'), [], over, {}, command);
  engines.push(t);
  return t;
}

async function view(http: number, node: string): Promise<InstanceView> {
  const r = await getJson(http, `/api/v1/trackers/${node}`);
  assert.equal(r.status, 200);
  return r.json as InstanceView;
}

describe('a node\'s RESET reaches its tracker in order with its frames', () => {
  test('line protocol (tracker input over TCP): {"type":"RESET"} between the right frames, a new timestamp base, counted', async () => {
    const dir = tempDir();
    const { command, rec } = standIn(dir, 'tcp');
    const t = await engine(dir, command);
    const c = await Client.open(t.tcp);
    const reset = (extra: Record<string, unknown> = {}): string => `${JSON.stringify({ node_id: 'r1', token: TOKEN, type: 'RESET', ...extra })}\n`;
    // One write: the RESET must keep its place among frames that arrive with it.
    await c.send(lineFrame('r1', T0 + 1000) + lineFrame('r1', T0 + 2000) + reset() + lineFrame('r1', T0 + 500) + lineFrame('r1', T0 + 600)
      // An escaped "RESET" is RESET to any JSON parser (and to retina); its other members are not passed on.
      + `{"node_id":"r1","token":"${TOKEN}","type":"RES\\u0045T","timestamp":1}\n` + lineFrame('r1', T0 + 100));
    await until(() => inputLines(rec).length === 7, 'seven lines at the tracker', DEADLINE);
    assert.deepEqual(shape(rec), [T0 + 1000, T0 + 2000, 'RESET', T0 + 500, T0 + 600, 'RESET', T0 + 100]);
    // Exactly retina's reset line: the node's id and token never reach the tracker.
    const lines = inputLines(rec);
    assert.equal(lines[2], '{"type":"RESET"}');
    assert.equal(lines[5], '{"type":"RESET"}');
    const m = await scrape(t.e);
    assert.equal(m.get('radar_ingest_tracker_resets_total{source="node"}'), 2);
    assert.equal(m.get('radar_ingest_tracker_resets_total{source="resync"}'), 0);
    assert.equal(m.get('radar_ingest_frames_dropped_total{reason="out_of_order"}'), 0);
    assert.equal(m.get('radar_ingest_frames_dropped_total{reason="invalid_frame"}'), 0);
    // A reset counts as a frame received and delivered (docs/trackers.md), so the books balance.
    assert.equal(m.get('radar_ingest_frames_received_total'), 7);
    assert.equal(m.get('radar_ingest_detections_received_total'), 10);
    const v = await view(t.http, 'r1');
    assert.equal(v.node_resets, 2);
    assert.equal(v.resets, 0);
    c.destroy();
    await assertAccounting(t.e);
  });

  test('binary protocol (tracker input on stdin): a "reset" message is acked, ordered, and a resend after a reconnect is a duplicate', async () => {
    const dir = tempDir();
    const { command, rec } = standIn(dir, 'stdin');
    const t = await engine(dir, command, { tracker: { input: 'stdin' } });
    const f = (seq: number, ts: number): Buffer => encodeFrame({ seq, timestamp: ts, delay: [40.5, 41.5], doppler: [-27.25, 3], snr: [12.5, 7] });
    const c = await Client.open(t.tcp);
    await c.send(encodeHello('b1', TOKEN));
    await until(() => c.messages().some((m) => m.t === 'welcome'), 'welcome');
    await c.send(Buffer.concat([f(1, T0 + 1000), f(2, T0 + 2000), encodeReset(3), f(4, T0 + 10)]));
    await until(() => c.messages().some((m) => m.t === 'ack' && m.seq === 4), 'ack of seq 4', DEADLINE);
    assert.ok(!c.messages().some((m) => m.t === 'error'), 'no error reply');
    await until(() => inputLines(rec).length === 4, 'four lines at the tracker', DEADLINE);
    assert.deepEqual(shape(rec), [T0 + 1000, T0 + 2000, 'RESET', T0 + 10]);
    assert.equal(inputLines(rec)[2], '{"type":"RESET"}');
    c.destroy();

    // The node is unsure what survived: it resends from seq 3. Nothing reaches the tracker twice.
    const c2 = await Client.open(t.tcp);
    await c2.send(encodeHello('b1', TOKEN));
    await until(() => c2.messages().some((m) => m.t === 'welcome'), 'welcome again');
    assert.equal(c2.messages().find((m) => m.t === 'welcome')!.last_seq, 4);
    await c2.send(Buffer.concat([encodeReset(3), f(4, T0 + 10), f(5, T0 + 20)]));
    await until(() => c2.messages().some((m) => m.t === 'ack' && m.seq === 5), 'ack of seq 5', DEADLINE);
    await until(() => inputLines(rec).length === 5, 'the new frame at the tracker', DEADLINE);
    assert.deepEqual(shape(rec), [T0 + 1000, T0 + 2000, 'RESET', T0 + 10, T0 + 20]);
    const m = await scrape(t.e);
    assert.equal(m.get('radar_ingest_frames_dropped_total{reason="duplicate"}'), 2);
    assert.equal(m.get('radar_ingest_tracker_resets_total{source="node"}'), 1);
    c2.destroy();
    await assertAccounting(t.e);
  });
});

describe('config_url polling', () => {
  test('the rules: canonical compare, baseline, change, failure keeps the config and backs off (bounded)', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } }), '{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}');
    let s = initialPollState(0);
    let r = onAnswer(s, { a: 1, b: 2 }, 10, 1000);
    assert.equal(r.verdict, 'baseline');
    assert.equal(r.state.nextAt, 1010);
    r = onAnswer(r.state, { b: 2, a: 1 }, 1010, 1000);
    assert.equal(r.verdict, 'same');
    s = onFailure(r.state, 'HTTP 500', 2000, 1000);
    assert.deepEqual(s.value, { a: 1, b: 2 });
    assert.equal(s.nextAt, 3000);
    s = onFailure(s, 'HTTP 500', 3000, 1000);
    assert.equal(s.nextAt, 5000);
    r = onAnswer(s, { a: 1, b: 3 }, 5000, 1000);
    assert.equal(r.verdict, 'changed');
    assert.equal(r.state.changes, 1);
    assert.equal(r.state.failuresInRow, 0);
    assert.equal(failureDelayMs(40, 1000), MAX_BACKOFF_MS);
    assert.equal(failureDelayMs(40, 10 * MAX_BACKOFF_MS), 10 * MAX_BACKOFF_MS);
  });

  test('a config_url that is not an http(s) URL is a config error naming the key; "" means none', () => {
    assert.throws(() => parseConfig({ trackers: [{ name: 'a', tcp_port: 30012, config_url: 'radar3/api/config' }] }, {}),
      /trackers\[0\]\.config_url: must be an http or https URL/);
    assert.equal(parseConfig({ trackers: [{ name: 'a', tcp_port: 30012, config_url: '' }] }, {}).trackers[0]!.config_url, '');
  });

  test('lifecycle: a config change stops a running tracker and starts it afresh, not as a crash; a tracker not running is left alone', () => {
    const rules: LifecycleRules = {
      extendedOutageMs: 60_000, backoffBaseMs: 100, backoffMaxMs: 1000, flapMaxRestarts: 3, flapWindowMs: 10_000, flapCooldownMs: 5000, stableAfterMs: 10_000,
    };
    let t = step(initialState(0, true), { type: 'tick', sourceUp: true }, 0, rules);
    t = step(t.state, { type: 'started' }, 10, rules);
    assert.equal(t.state.phase, 'running');
    t = step(t.state, { type: 'reconfigure' }, 20, rules);
    assert.deepEqual([t.state.phase, t.action], ['stopping', 'stop']);
    t = step(t.state, { type: 'stopped' }, 30, rules);
    assert.equal(t.state.phase, 'idle');
    t = step(t.state, { type: 'tick', sourceUp: true }, 31, rules);
    assert.deepEqual([t.state.phase, t.action, t.state.restarts, t.state.consecutiveFailures], ['starting', 'spawn', 0, 0]);
    const crashed = step(step(t.state, { type: 'started' }, 40, rules).state, { type: 'exited', error: 'boom' }, 50, rules).state;
    assert.equal(crashed.phase, 'backoff');
    assert.deepEqual(step(crashed, { type: 'reconfigure' }, 60, rules), { state: crashed, action: 'none' });
  });

  test('a changed answer restarts the tracker (new pid, fresh start); reordered keys, errors and oversize answers do not', async () => {
    const dir = tempDir();
    const { command, rec } = standIn(dir, 'tcp');
    // The node's config endpoint: the test changes what it serves.
    let answer: { status: number; body: string } = { status: 200, body: JSON.stringify({ location: { rx: { lat: 1, lon: 2 } }, capture: { fc: 204640000 } }) };
    let gets = 0;
    const srv = createHttpServer((_req, res) => {
      gets++;
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(answer.body);
    });
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/api/config`;
    const t = await engine(dir, command, {
      config_poll_interval_sec: 0.1,
      trackers: [{ name: 'radar3', node_id: 'cfg-node', mode: 'tcp', tcp_port: await freePort(), config_url: url }],
    });

    const v1 = await until(async () => {
      const v = await view(t.http, 'cfg-node');
      return v.state === 'outage' && v.pid !== null && v.node_config?.fetched_at ? v : null;
    }, 'tracker running with its baseline config (its node not yet connected: outage)', DEADLINE);
    assert.deepEqual(v1.node_config!.config, { location: { rx: { lat: 1, lon: 2 } }, capture: { fc: 204640000 } });
    assert.equal(v1.node_config!.url, url);
    const pid1 = v1.pid!;
    assert.ok(pid1 > 0);

    // The same config, keys reordered and re-indented: not a change.
    answer = { status: 200, body: JSON.stringify({ capture: { fc: 204640000 }, location: { rx: { lon: 2, lat: 1 } } }, null, 2) };
    const g = gets;
    await until(() => gets >= g + 3, 'three more polls');

    // An error answer and an oversize one: the config in force stays, the tracker too.
    answer = { status: 500, body: 'boom' };
    await until(async () => (await view(t.http, 'cfg-node')).node_config?.last_error === 'HTTP 500', 'the error shown', DEADLINE);
    answer = { status: 200, body: JSON.stringify({ pad: 'x'.repeat(1024 * 1024 + 1) }) };
    await until(async () => /over 1048576 bytes/.test((await view(t.http, 'cfg-node')).node_config?.last_error ?? ''), 'the oversize answer refused', DEADLINE);
    let m = await scrape(t.e);
    assert.ok(m.get('radar_ingest_node_config_poll_failures_total{reason="http_status"}')! >= 1);
    assert.ok(m.get('radar_ingest_node_config_poll_failures_total{reason="too_large"}')! >= 1);
    assert.equal(m.get('radar_ingest_node_config_poll_failures_total{reason="timeout"}'), 0);
    assert.equal(m.get('radar_ingest_node_config_changes_total{node="cfg-node"}'), 0);
    let v = await view(t.http, 'cfg-node');
    assert.equal(v.pid, pid1);
    assert.equal(v.node_config!.changes, 0);
    assert.deepEqual(v.node_config!.config, { location: { rx: { lat: 1, lon: 2 } }, capture: { fc: 204640000 } });
    assert.equal(recorded(rec).filter((l) => l.startsWith('#start')).length, 1);

    // The geometry changes: the tracker is stopped and started afresh with it.
    answer = { status: 200, body: JSON.stringify({ location: { rx: { lat: 5, lon: 2 } }, capture: { fc: 204640000 } }) };
    v = await until(async () => {
      const x = await view(t.http, 'cfg-node');
      return (x.state === 'running' || x.state === 'outage') && x.pid !== null && x.pid !== pid1 ? x : null;
    }, 'a new tracker process running', DEADLINE);
    assert.equal(v.node_config!.changes, 1);
    assert.deepEqual(v.node_config!.config, { location: { rx: { lat: 5, lon: 2 } }, capture: { fc: 204640000 } });
    assert.ok(v.node_config!.changed_at !== null);
    assert.equal(v.restarts, 0, 'a config restart is not a crash restart');
    assert.deepEqual(recorded(rec).filter((l) => l.startsWith('#start')), [`#start ${pid1}`, `#start ${v.pid}`]);
    m = await scrape(t.e);
    assert.equal(m.get('radar_ingest_node_config_changes_total{node="cfg-node"}'), 1);
    assert.equal(m.get('radar_ingest_tracker_restarts_total{node="cfg-node"}'), 0);

    // The new tracker is fed: a frame from the node reaches it.
    const c = await Client.open(t.tcp);
    await c.send(lineFrame('cfg-node', T0));
    await until(() => inputLines(rec).length === 1, 'the frame at the new tracker', DEADLINE);
    c.destroy();
    await assertAccounting(t.e);
  });
});
