// What a new operator sees in the first hour: the shipped config listens only on
// this machine, an engine that can receive nothing says so (/readyz, the log), the
// tracker API can be closed to readers without the API token, logs are coloured on
// a terminal and JSON in a pipe, a port in use names its key, shutdown says what it
// waits for, drop warnings name the node, and a node whose frames are all invalid
// gets no tracker (and no port) until its first valid frame. Real engines, the real
// CLI under a pseudo-terminal (util-linux `script`), real sockets.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import type { Logger } from '../src/telemetry/logger.js';
import { loadConfigFile } from '../src/config.js';
import { tokenWarnings } from '../src/engine/token-warnings.js';
import type { Engine } from '../src/engine/engine.js';
import {
  startEngine, startTrackerEngine, Client, lineFrame, httpGet, getJson, until, scrape, assertAccounting, freePort, TOKEN, TEST_KEY_FILE,
} from './helpers.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const SHIPPED = fileURLToPath(new URL('../../config.yaml', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'radar-first-hour-'));
const T0 = 1_757_400_000_000;
const DEADLINE = 15000;

/** A pino logger whose JSON lines land in `lines` (what an operator's log collector sees). */
function capture(): { logger: Logger; lines: Record<string, any>[] } { // eslint-disable-line @typescript-eslint/no-explicit-any
  const lines: Record<string, any>[] = []; // eslint-disable-line @typescript-eslint/no-explicit-any
  const logger: Logger = pino({ level: 'info' }, { write: (s: string) => { lines.push(JSON.parse(s)); } }) as unknown as Logger;
  return { logger, lines };
}

function get(port: number, path: string, token?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A config file for the CLI on ephemeral ports; `extra` lines are appended. */
function cliConfig(name: string, extra: string[] = [], tcp: string[] = ['  port: 0'], http: string[] = ['  port: 0']): string {
  const f = join(dir, `${name}.yaml`);
  writeFileSync(f, [
    'shards: 1', 'sink: discard',
    'tcp_server:', '  enabled: true', '  host: 127.0.0.1', '  token: change-me', ...tcp,
    'http:', '  host: 127.0.0.1', ...http,
    'agents:', `  key_file: ${TEST_KEY_FILE}`,
    ...extra,
  ].join('\n'));
  return f;
}

const ANSI = /\u001b\[[0-9;]*m/;

describe('the operator\'s first hour', () => {
  const engines: Engine[] = [];
  after(async () => {
    await Promise.all(engines.map((e) => e.stop().catch(() => undefined)));
    rmSync(dir, { recursive: true, force: true });
  });

  test('the shipped config.yaml listens on 127.0.0.1 only, and its placeholder token is warned about', () => {
    const c = loadConfigFile(SHIPPED);
    assert.equal(c.tcp_server.host, '127.0.0.1');
    assert.equal(c.http.host, '127.0.0.1');
    assert.equal(c.http.open_reads, true);
    assert.equal(c.log.format, 'auto');
    assert.match(tokenWarnings(c.tcp_server).join('\n'), /tcp_server\.token is the placeholder "change-me"/);
  });

  test('no ingest source (TCP off, no HTTP-polled tracker): /readyz is 503 with an "ingest" check saying why, and a start-up warning', async () => {
    const cap = capture();
    const e = await startEngine({ tcp_server: { enabled: false } }, { logger: cap.logger });
    engines.push(e);
    const r = await getJson(e.httpAddress!.port, '/readyz');
    assert.equal(r.status, 503);
    assert.equal(r.json.status, 'not ready');
    assert.equal(r.json.checks.ingest.ok, false);
    assert.match(r.json.checks.ingest.detail, /no ingest source: tcp_server\.enabled is false/);
    const w = cap.lines.find((l) => l.level === 40 && /no ingest source/.test(l.msg));
    assert.ok(w, 'start-up warning');
    assert.equal(w.key, 'tcp_server.enabled');
    // /healthz (liveness) stays 200: the process is fine, it just cannot receive frames.
    assert.equal((await httpGet(e.httpAddress!.port, '/healthz')).status, 200);

    // The node port on: ready, and the check names the source.
    const on = await startEngine({});
    engines.push(on);
    const ok = await getJson(on.httpAddress!.port, '/readyz');
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json.checks.ingest, { ok: true, detail: 'tcp_server' });

    // TCP off but a tracker polls its node over HTTP: a source.
    const polled = await startEngine({
      tcp_server: { enabled: false }, sink: 'trackers', output_dir: join(dir, 'polled'),
      tracker: { command: 'reference' },
      trackers: [{ name: 'polled', tcp_port: 1, detection_url: 'http://127.0.0.1:9/api/detection' }],
    });
    engines.push(polled);
    const p = await getJson(polled.httpAddress!.port, '/readyz');
    assert.deepEqual(p.json.checks.ingest, { ok: true, detail: 'http-polled trackers' });
  });

  test('http.open_reads: false puts the tracker API and /api/nodes behind the API token; /metrics, /healthz, /readyz stay open', async () => {
    const closed = await startEngine({ sink: 'trackers', output_dir: join(dir, 'reads'), tracker: { command: 'reference' }, http: { api_token: 'k3y', open_reads: false } });
    engines.push(closed);
    const port = closed.httpAddress!.port;
    for (const path of ['/api/v1/trackers', '/api/v1/trackers/some-node', '/api/nodes']) {
      assert.equal(await get(port, path), 401, `${path} without a token`);
      assert.equal(await get(port, path, 'wrong'), 401, `${path} with a wrong token`);
    }
    assert.equal(await get(port, '/api/v1/trackers', 'k3y'), 200);
    assert.equal(await get(port, '/api/v1/trackers/some-node', 'k3y'), 404);
    assert.equal(await get(port, '/api/nodes', 'k3y'), 200);
    for (const path of ['/metrics', '/healthz', '/readyz']) assert.equal(await get(port, path), 200, path);

    // The default keeps them open (tracker-host's behaviour).
    const open = await startEngine({ sink: 'trackers', output_dir: join(dir, 'reads-open'), tracker: { command: 'reference' } });
    engines.push(open);
    assert.equal(await get(open.httpAddress!.port, '/api/v1/trackers'), 200);
    assert.equal(await get(open.httpAddress!.port, '/api/nodes'), 200);
  });

  test('logs: JSON lines when piped; coloured, non-JSON lines on a terminal (log.format auto)', async (t) => {
    const cfg = cliConfig('fmt');
    // Piped: every line is a JSON object, the placeholder token is a warning.
    const piped = spawn(process.execPath, [CLI, '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    piped.stdout.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => piped.on('exit', (c) => r(c)));
    await until(() => out.includes('radar-ingest started'), 'start line (piped)', DEADLINE);
    piped.kill('SIGTERM');
    assert.equal(await exited, 0);
    const lines = out.trim().split('\n');
    for (const l of lines) assert.doesNotThrow(() => JSON.parse(l), `not JSON: ${l}`);
    assert.doesNotMatch(out, ANSI);
    assert.ok(lines.map((l) => JSON.parse(l)).some((l) => l.level === 40 && l.key === 'tcp_server.token'));

    // Under a pseudo-terminal (util-linux script): pino-pretty, with colour.
    if (spawnSync('script', ['--version']).status !== 0) {
      t.skip('util-linux `script` is not installed');
      return;
    }
    // `exec`: the engine replaces script's shell, so Ctrl-C reaches the engine only. A
    // non-interactive shell that stayed in between would itself die of the SIGINT.
    const tty = spawn('script', ['-qfec', `exec ${process.execPath} ${CLI} --config ${cfg}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, TERM: 'xterm' } });
    let screen = '';
    tty.stdout.on('data', (d) => (screen += d));
    const ttyExit = new Promise<number | null>((r) => tty.on('exit', (c) => r(c)));
    try {
      await until(() => screen.includes('radar-ingest started'), 'start line (terminal)', DEADLINE);
    } finally {
      // Ctrl-C, as a person would press it: the terminal sends SIGINT.
      tty.stdin.write('\u0003');
    }
    assert.equal(await ttyExit, 0);
    assert.match(screen, ANSI, 'coloured');
    assert.match(screen, /WARN/);
    const started = screen.split(/\r?\n/).find((l) => l.includes('radar-ingest started'))!;
    assert.throws(() => JSON.parse(started.trim()), 'a pretty line is not JSON');
    assert.match(started, /INFO/);
  });

  test('a port in use: the CLI exits 1 and its last log line names the key and the address, not a clean stop', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const busy = (blocker.address() as { port: number }).port;
    try {
      for (const [key, cfg] of [
        ['http.port', cliConfig('busy-http', [], ['  port: 0'], [`  port: ${busy}`])],
        ['tcp_server.port', cliConfig('busy-tcp', [], [`  port: ${busy}`], ['  port: 0'])],
      ] as const) {
        const r = spawnSync(process.execPath, [CLI, '--config', cfg], { encoding: 'utf8', timeout: DEADLINE });
        assert.equal(r.status, 1, `${key}: exit code`);
        const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
        const last = lines.at(-1)!;
        assert.equal(last.level, 60, `${key}: the last line is the fatal one: ${JSON.stringify(last)}`);
        assert.equal(last.key, key);
        assert.equal(last.address, `127.0.0.1:${busy}`);
        assert.equal(last.code, 'EADDRINUSE');
        assert.match(last.msg, new RegExp(`start-up failed: ${key.replace('.', '\\.')}: 127\\.0\\.0\\.1:${busy} is already in use`));
      }
    } finally {
      blocker.close();
    }
  });

  test('shutdown says what it waits for (trackers, frames in rings, seconds left), again while it waits; the closes name the node', async () => {
    const cap = capture();
    // The tracker ignores SIGTERM, so the stop waits out stop_grace_ms.
    const f = await startTrackerEngine(join(dir, 'slow-stop'), ['--ignore-sigterm'],
      { tracker: { stop_grace_ms: 2600 }, shutdown: { deadline_ms: 9000 }, tcp_server: { token: TOKEN } }, { logger: cap.logger });
    const c = await Client.open(f.tcp);
    await c.send(lineFrame('slow-node', T0));
    await until(async () => (await getJson(f.http, '/api/v1/trackers/slow-node')).json.state === 'running', 'tracker running', DEADLINE);
    await f.e.stop();
    c.destroy();
    // The close of the node's connection names it.
    assert.ok(cap.lines.some((l) => l.code === 'RADAR_ERR_SHUTTING_DOWN' && l.node === 'slow-node'),
      JSON.stringify(cap.lines.filter((l) => l.code)));
    const waits = cap.lines.filter((l) => l.waiting_for === 'trackers');
    assert.ok(waits.length >= 2, `a line at the start and at least one while waiting: ${JSON.stringify(waits)}`);
    assert.equal(waits[0]!.trackers, 1);
    assert.equal(waits[0]!.in_rings, 0);
    assert.match(waits[0]!.msg, /^shutdown: waiting for 1 tracker to drain \(rings: 0 frames\), deadline in \d+ s$/);
    assert.ok(waits[0]!.deadline_in_s <= 9 && waits[0]!.deadline_in_s > waits[1]!.deadline_in_s, 'the deadline counts down');
    // The waiting lines come before the final one.
    const stopped = cap.lines.findIndex((l) => l.msg === 'radar-ingest stopped');
    assert.ok(stopped > cap.lines.indexOf(waits.at(-1)!));
  });

  test('a node whose frames are all invalid: drop warnings name it, and it gets no tracker and no port until its first valid frame', async () => {
    const cap = capture();
    const f = await startTrackerEngine(join(dir, 'invalid'), [], { tcp_server: { token: TOKEN } }, { logger: cap.logger });
    engines.push(f.e);
    const c = await Client.open(f.tcp);
    // No timestamp: invalid, dropped.
    const bad = (i: number): string => `${JSON.stringify({ node_id: 'bad-node', token: TOKEN, delay: [i], doppler: [1], snr: [10] })}\n`;
    for (let i = 0; i < 5; i++) await c.send(bad(i));
    await until(async () => (await scrape(f.e)).get('radar_ingest_frames_dropped_total{reason="invalid_frame"}') === 5, '5 invalid frames dropped', DEADLINE);
    // Several supervisor passes later, still nothing provisioned.
    const passes = (await getJson(f.http, '/api/v1/trackers')).json.supervisor.passes as number;
    const list = await until(async () => {
      const l = (await getJson(f.http, '/api/v1/trackers')).json;
      return l.supervisor.passes >= passes + 3 && l;
    }, 'three more supervisor passes', DEADLINE);
    assert.deepEqual(list.trackers, []);
    assert.equal(list.ports.in_use, 0);
    assert.equal((await httpGet(f.http, '/api/v1/trackers/bad-node')).status, 404);
    const drops = cap.lines.filter((l) => /^frame dropped/.test(l.msg));
    assert.ok(drops.length > 0);
    for (const d of drops) assert.equal(d.node, 'bad-node', JSON.stringify(d));

    // The first valid frame: now it gets its tracker and a port, and the frame reaches it.
    await c.send(lineFrame('bad-node', T0));
    const v = await until(async () => {
      const r = await getJson(f.http, '/api/v1/trackers/bad-node');
      return r.status === 200 && r.json.state === 'running' && r.json.frames_fed === 1 && r.json;
    }, 'tracker running with the valid frame', DEADLINE);
    assert.equal(v.port, f.portStart);
    assert.equal((await getJson(f.http, '/api/v1/trackers')).json.ports.in_use, 1);
    assert.ok(cap.lines.some((l) => l.node === 'bad-node' && /auto-provisioned/.test(l.msg)));
    c.destroy();
    await assertAccounting(f.e);
  });

  test('the status line names the node of a tracker whose name is not its node id', async () => {
    const cap = capture();
    const f = await startTrackerEngine(join(dir, 'status'), [], {
      status_interval_sec: 0.2, tcp_server: { token: TOKEN },
      trackers: [{ name: 'alpha', node_id: 'node-x', tcp_port: await freePort() }],
    }, { logger: cap.logger });
    engines.push(f.e);
    const line = await until(() => cap.lines.find((l) => l.msg === 'status' && l.tracks?.alpha), 'a status line listing alpha', DEADLINE);
    assert.equal(line.tracks.alpha.node, 'node-x');
  });
});
