// A tracker-host config.yaml and command line run unchanged: retina is the tracker when the
// file names its checkout, track files carry the host's local date, an unknown node on a
// gateway's line connection is refused without closing it, an empty shared token is a
// token ("" exactly), and tracker-host's -c/-v/--server flags work. Real CLI subprocesses,
// real sockets, temp dirs. retina-tracker itself needs numpy and a checkout, so a small
// Python stand-in that speaks its command line and TCP interface plays it here.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { CONFIG_DEFAULTS, parseConfig } from '../src/config.js';
import { encodeHello, encodeFrame } from '../src/protocol/binary-protocol.js';
import { ErrorCodes } from '../src/protocol/errors.js';
import { dayOf } from '../src/tracker/file-date.js';
import { TrackFileWriter } from '../src/tracker/track-output.js';
import {
  Client, CollectingSink, FAKE_TRACKER, TEST_KEY_FILE, freePort, freePortRange, getJson, httpGet, lineFrame,
  startEngine, startTrackerEngine, assertAccounting, until,
} from './helpers.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const SHIPPED_CONFIG = fileURLToPath(new URL('../../config.yaml', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'radar-drop-in-'));
const children: ChildProcess[] = [];

after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

// ---- helpers -------------------------------------------------------------------------------------

interface Run {
  child: ChildProcess;
  out(): string;
  err(): string;
  /** stdout's JSON log lines. */
  logs(): Record<string, any>[];
  exit: Promise<number | null>;
}

function run(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const logs = (): Record<string, any>[] => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, any>);
  return { child, out: () => out, err: () => err, logs, exit };
}

/** The listeners' ports, from the start-up log line. */
async function started(r: Run): Promise<{ tcp: number; http: number }> {
  const line = await until(() => r.logs().find((l) => l.msg === 'radar-ingest started') ?? (r.child.exitCode !== null ? 'exited' : null),
    'start log', 15000);
  assert.notEqual(line, 'exited', `the engine exited: ${r.err()}`);
  const info = line as Record<string, any>;
  return { tcp: Number(String(info.tcp).split(':').pop()), http: Number(String(info.http).split(':').pop()) };
}

/** The exit code, within a deadline (a process that keeps running fails the test instead of hanging it). */
async function exitCode(r: Run, ms = 15000): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${ms} ms: ${r.out().slice(-500)}`)), ms);
  });
  try {
    return await Promise.race([r.exit, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function stop(r: Run): Promise<void> {
  r.child.kill('SIGTERM');
  assert.equal(await exitCode(r), 0, r.err());
}

function file(dir: string, name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** Each line of the one file in `dir` whose name starts with `prefix`, parsed; [] while there is none. */
function trackLines(dir: string, prefix: string): Record<string, any>[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.startsWith(prefix));
  } catch {
    return [];
  }
  return names.flatMap((n) => readFileSync(join(dir, n), 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, any>));
}

/**
 * Stand-in for retina-tracker's `python -m retina_tracker.track_detections --tcp --tcp-host H
 * --tcp-port P -s - [-c CONFIG]`: first prints where and how it was started (working directory,
 * argv, the config file's text, which interpreter wrapper ran it), then one track event per
 * frame it reads from its one TCP connection.
 */
const STANDIN_PY = `import json, os, socket, sys
args = sys.argv[1:]
port = int(args[args.index('--tcp-port') + 1])
cfg = args[args.index('-c') + 1] if '-c' in args else None
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('127.0.0.1', port))
srv.listen(1)
text = open(cfg).read() if cfg else None
print(json.dumps({"type": "started", "cwd": os.getcwd(), "argv": args, "config": cfg, "config_text": text,
                  "python": os.environ.get("STANDIN_PYTHON")}), flush=True)
conn, _ = srv.accept()
for line in conn.makefile('r'):
    m = json.loads(line)
    if m.get('type') == 'RESET':
        continue
    print(json.dumps({"track_id": "t-" + str(m["timestamp"]), "timestamp": m["timestamp"], "length": len(m["delay"])}), flush=True)
`;

/** A retina-tracker checkout holding the stand-in module. */
function retinaCheckout(dir: string): string {
  const ckpt = join(dir, 'retina-tracker');
  mkdirSync(join(ckpt, 'retina_tracker'), { recursive: true });
  writeFileSync(join(ckpt, 'retina_tracker', '__init__.py'), '');
  writeFileSync(join(ckpt, 'retina_tracker', 'track_detections.py'), STANDIN_PY);
  return ckpt;
}

/** A "virtualenv" interpreter: marks the environment, then runs python3. */
function venvPython(dir: string): string {
  mkdirSync(join(dir, 'venv', 'bin'), { recursive: true });
  const p = file(join(dir, 'venv', 'bin'), 'python', '#!/bin/sh\nSTANDIN_PYTHON=venv exec python3 "$@"\n');
  chmodSync(p, 0o755);
  return p;
}

/** A logger whose lines the test reads. */
function capturingLogger() { // eslint-disable-line @typescript-eslint/explicit-function-return-type
  const lines: Record<string, any>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, any>);
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

// ---- retina is the tracker of a tracker-host config ------------------------------------------------

describe('an unchanged tracker-host config runs retina-tracker', () => {
  test('the command follows retina_tracker_path; the shipped config.yaml says "reference" itself; defaults unchanged', () => {
    assert.equal(parseConfig({ retina_tracker_path: '/opt/retina-tracker' }, {}).tracker.command, 'retina');
    assert.equal(parseConfig({ retina_tracker_path: '/opt/retina-tracker', tracker: { python: '/venv/bin/python' } }, {}).tracker.command, 'retina');
    assert.equal(parseConfig({ retina_tracker_path: '/opt/retina-tracker', tracker: { command: 'reference' } }, {}).tracker.command, 'reference');
    assert.equal(parseConfig({}, {}).tracker.command, 'reference');
    assert.equal(parseConfig({ retina_tracker_path: null }, {}).tracker.command, 'reference');
    assert.equal(CONFIG_DEFAULTS.tracker.command, 'reference');
    assert.equal(CONFIG_DEFAULTS.retina_tracker_path, '../retina-tracker');
    assert.match(readFileSync(SHIPPED_CONFIG, 'utf8'), /^tracker:\n(?: {2}.*\n)*? {2}command: reference\b/m);
  });

  test('retina runs in its checkout with tracker.python, finds a relative tracker_config there; the API names it; a reload with a bad path is refused', async () => {
    const dir = mkdtempSync(join(root, 'retina-'));
    const ckpt = retinaCheckout(dir);
    writeFileSync(join(ckpt, 'radar-a.yaml'), 'standin: radar-a\n');
    const python = venvPython(dir);
    const out = join(dir, 'out');
    const port = await freePort();
    const yaml = (checkout: string): string => [
      '# tracker-host configuration, as a site runs it (plus test ports)',
      `output_dir: "${out}"`,
      `retina_tracker_path: "${checkout}"`,
      'startup_delay_sec: 0',
      'tcp_retry_delay_sec: 0.05',
      'tcp_connect_retries: 200',
      'tcp_server:', '  enabled: true', '  host: 127.0.0.1', '  port: 0', '  token: site-secret', '  auto_provision: false',
      'trackers:', '  - name: radar-a', '    node_id: radar-a', `    tcp_port: ${port}`, '    tracker_config: ./radar-a.yaml',
      'tracker:', `  python: "${python}"`,
      'http:', '  host: 127.0.0.1', '  port: 0',
      'shards: 1', 'agents:', `  key_file: "${TEST_KEY_FILE}"`, '',
    ].join('\n');
    const cfg = file(dir, 'config.yaml', yaml(ckpt));
    const r = run(['-c', cfg]);
    const { tcp, http } = await started(r);
    const list = await getJson(http, '/api/v1/trackers');
    assert.equal(list.json.command, 'retina');

    const startLine = await until(() => trackLines(out, 'radar-a_').find((l) => l.type === 'started'), 'the stand-in started', 15000);
    assert.equal(startLine.cwd, ckpt);
    assert.equal(startLine.config, join(ckpt, 'radar-a.yaml'));
    assert.equal(startLine.config_text, 'standin: radar-a\n');
    assert.equal(startLine.python, 'venv');
    assert.deepEqual(startLine.argv, ['--tcp', '--tcp-host', '127.0.0.1', '--tcp-port', String(port), '-s', '-', '-c', join(ckpt, 'radar-a.yaml')]);

    const node = await Client.open(tcp);
    for (let ts = 1; ts <= 3; ts++) await node.send(lineFrame('radar-a', 1757400000000 + ts, 2, 'site-secret'));
    await until(() => trackLines(out, 'radar-a_').filter((l) => l.track_id !== undefined).length === 3, 'three track events', 15000);

    // A reload naming a checkout that is not there is refused; retina keeps running as it was.
    writeFileSync(cfg, yaml(join(dir, 'gone')));
    r.child.kill('SIGHUP');
    await until(async () => /radar_ingest_config_reloads_total\{result="error"\} 1\b/.test((await httpGet(http, '/metrics')).body), 'reload refused');
    const refused = r.logs().find((l) => l.msg?.startsWith('config reload rejected'));
    assert.match(String(refused?.err), new RegExp(`^retina_tracker_path: retina-tracker checkout not found: ${join(dir, 'gone')}`));
    const view = await getJson(http, '/api/v1/trackers/radar-a');
    assert.equal(view.json.state, 'running');
    assert.equal((await getJson(http, '/api/v1/trackers')).json.command, 'retina');
    await node.send(lineFrame('radar-a', 1757400000004, 2, 'site-secret'));
    await until(() => trackLines(out, 'radar-a_').filter((l) => l.track_id !== undefined).length === 4, 'still tracking after the refused reload', 15000);
    node.destroy();
    await stop(r);
  });

  test('a missing checkout, a checkout without the module, or a missing interpreter stop start-up with the key and the path (exit 2)', async () => {
    const dir = mkdtempSync(join(root, 'missing-'));
    const base = ['tcp_server:', '  enabled: true', '  host: 127.0.0.1', '  port: 0', 'http:', '  host: 127.0.0.1', '  port: 0',
      'shards: 1', 'agents:', `  key_file: "${TEST_KEY_FILE}"`, `output_dir: "${join(dir, 'out')}"`];
    const gone = join(dir, 'no-such-checkout');
    const r1 = run(['--config', file(dir, 'a.yaml', [...base, `retina_tracker_path: "${gone}"`, ''].join('\n'))]);
    assert.equal(await exitCode(r1), 2);
    assert.match(r1.err(), new RegExp(`config error: retina_tracker_path: retina-tracker checkout not found: ${gone} `));
    assert.doesNotMatch(r1.out(), /radar-ingest started/);

    const empty = join(dir, 'empty-checkout');
    mkdirSync(empty);
    const r2 = run(['--config', file(dir, 'b.yaml', [...base, `retina_tracker_path: "${empty}"`, ''].join('\n'))]);
    assert.equal(await exitCode(r2), 2);
    assert.match(r2.err(), new RegExp(`config error: retina_tracker_path: ${empty} has no retina_tracker/track_detections.py`));

    const ckpt = retinaCheckout(dir);
    const r3 = run(['--config', file(dir, 'c.yaml', [...base, `retina_tracker_path: "${ckpt}"`, 'tracker:', '  python: /nonexistent/venv/bin/python', ''].join('\n'))]);
    assert.equal(await exitCode(r3), 2);
    assert.match(r3.err(), /config error: tracker\.python: interpreter not found or not executable: \/nonexistent\/venv\/bin\/python/);

    // The same file with an explicit command needs no checkout.
    const r4 = run(['--config', file(dir, 'd.yaml', [...base, `retina_tracker_path: "${gone}"`, 'tracker:', '  command: reference', ''].join('\n'))]);
    const { http } = await started(r4);
    assert.equal((await getJson(http, '/api/v1/trackers')).json.command, 'reference');
    await stop(r4);
  });
});

// ---- track file dates -------------------------------------------------------------------------------

describe('track files are named by the local date by default', () => {
  test('the date and its span, for any zone (pure)', () => {
    const t = Date.UTC(2025, 8, 9, 12, 0, 0); // 12:00 UTC: already the 10th at UTC+14
    assert.deepEqual(dayOf(t, 'local', 'Pacific/Kiritimati'),
      { date: '2025-09-10', start: Date.UTC(2025, 8, 9, 10), end: Date.UTC(2025, 8, 10, 10) });
    assert.deepEqual(dayOf(t, 'local', 'Etc/GMT+12'), { date: '2025-09-09', start: Date.UTC(2025, 8, 9, 12), end: Date.UTC(2025, 8, 10, 12) });
    assert.deepEqual(dayOf(t, 'utc'), { date: '2025-09-09', start: Date.UTC(2025, 8, 9), end: Date.UTC(2025, 8, 10) });
    // A 23-hour day (DST starts in New York on 2025-03-09).
    const dst = dayOf(Date.UTC(2025, 2, 9, 12), 'local', 'America/New_York');
    assert.deepEqual(dst, { date: '2025-03-09', start: Date.UTC(2025, 2, 9, 5), end: Date.UTC(2025, 2, 10, 4) });
    // The last and first millisecond of a day.
    assert.equal(dayOf(Date.UTC(2025, 8, 9, 9, 59, 59, 999), 'local', 'Pacific/Kiritimati').date, '2025-09-09');
    assert.equal(dayOf(Date.UTC(2025, 8, 9, 10), 'local', 'Pacific/Kiritimati').date, '2025-09-10');
  });

  test('the writer switches files at local midnight', async () => {
    const dir = mkdtempSync(join(root, 'writer-'));
    let t = Date.UTC(2025, 8, 9, 9, 59, 59, 900);
    const w = new TrackFileWriter({ outputDir: dir, name: 'n', now: () => t, timeZone: 'Pacific/Kiritimati' });
    w.write('{"a":1}');
    t += 100; // 10:00 UTC = midnight in Kiritimati
    w.write('{"a":2}');
    await w.close();
    assert.deepEqual(readdirSync(dir).sort(), ['n_2025-09-09.jsonl', 'n_2025-09-10.jsonl']);
    assert.equal(w.stats().rotations, 1);
  });

  for (const rule of ['local', 'utc'] as const) {
    test(`engine subprocess with TZ set and output_date ${rule === 'local' ? 'left out (local)' : 'utc'}: the file carries the ${rule} date`, async () => {
      // A zone whose date differs from UTC's right now: UTC-12 before noon UTC, UTC+14 after.
      const hour = new Date().getUTCHours();
      const [tz, offsetH] = hour < 12 ? ['Etc/GMT+12', -12] : ['Etc/GMT-14', 14];
      const dir = mkdtempSync(join(root, `tz-${rule}-`));
      const out = join(dir, 'out');
      const [start] = await freePortRange(2);
      const cfg = file(dir, 'config.yaml', [
        `output_dir: "${out}"`, ...(rule === 'utc' ? ['output_date: utc'] : []),
        'startup_delay_sec: 0', 'tcp_retry_delay_sec: 0.02', 'tcp_connect_retries: 200',
        'tcp_server:', '  enabled: true', '  host: 127.0.0.1', '  port: 0', '  token: tz-secret',
        `  auto_provision_port_start: ${start}`, `  auto_provision_port_end: ${start! + 1}`,
        'tracker:', `  command: ["${process.execPath}", "${FAKE_TRACKER}", "--tcp-port", "{port}", "--echo"]`,
        'http:', '  host: 127.0.0.1', '  port: 0', 'shards: 1', 'agents:', `  key_file: "${TEST_KEY_FILE}"`, '',
      ].join('\n'));
      const before = Date.now();
      const r = run(['-c', cfg], { TZ: tz });
      const { tcp, http } = await started(r);
      const node = await Client.open(tcp);
      await node.send(lineFrame('tz-node', 1757400000000, 2, 'tz-secret'));
      await until(() => trackLines(out, 'tz-node_').length === 1, 'the echoed frame in a track file', 15000);
      const after = Date.now();
      const dateAt = (ms: number): string => new Date(ms + (rule === 'local' ? offsetH * 3_600_000 : 0)).toISOString().slice(0, 10);
      const names = readdirSync(out).filter((n) => !n.startsWith('.')); // not the track-id epoch file
      assert.equal(names.length, 1);
      assert.ok([dateAt(before), dateAt(after)].some((d) => names[0] === `tz-node_${d}.jsonl`), `${names[0]} for ${rule} date in ${tz}`);
      // A custom command is reported as its argv.
      assert.deepEqual((await getJson(http, '/api/v1/trackers')).json.command, [process.execPath, FAKE_TRACKER, '--tcp-port', '{port}', '--echo']);
      node.destroy();
      await stop(r);
    });
  }
});

// ---- auto_provision: false on a gateway's line connection --------------------------------------------

describe('auto_provision: false refuses an unknown node, not the connection', () => {
  test('line: the configured node keeps delivering; the unknown one is counted and logged once; binary: fatal NODE_REFUSED', async () => {
    const dir = mkdtempSync(join(root, 'refuse-'));
    const { logger, lines } = capturingLogger();
    const port = await freePort();
    const te = await startTrackerEngine(dir, ['--echo'], {
      tcp_server: { auto_provision: false },
      trackers: [{ name: 'known', node_id: 'known', tcp_port: port }],
    }, { logger });
    try {
      const gw = await Client.open(te.tcp);
      // The unknown node speaks first (it authenticates the connection), then both interleave.
      await gw.send(lineFrame('stranger', 1000));
      for (let ts = 1; ts <= 5; ts++) await gw.send(lineFrame('known', ts) + lineFrame('stranger', 1000 + ts));
      await until(() => trackLines(dir, 'known_').length === 5, 'five frames of the configured node at its tracker', 15000);
      const m = await until(async () => {
        const s = await assertAccounting(te.e);
        return s.get('radar_ingest_frames_dropped_total{reason="node_refused"}') === 6 ? s : null;
      }, 'the unknown node\'s six frames dropped as node_refused');
      assert.equal(m.get('radar_ingest_node_claims_refused_total{reason="node_refused"}'), 1);
      assert.equal(m.get('radar_ingest_provision_refused_total{reason="disabled"}'), 1);
      assert.equal(lines.filter((l) => l.level === 40 && l.node === 'stranger').length, 1);
      // Still open, still delivering.
      await gw.send(lineFrame('known', 6));
      await until(() => trackLines(dir, 'known_').length === 6, 'the sixth frame', 15000);
      assert.equal(gw.closed, false);
      assert.deepEqual(trackLines(dir, 'known_').map((l) => l.echo.timestamp), [1, 2, 3, 4, 5, 6]);
      assert.equal(trackLines(dir, 'stranger').length, 0);

      // The binary protocol has a reply channel: the refusal is fatal and says why.
      const bin = await Client.open(te.tcp);
      await bin.send(encodeHello('stranger-bin', 'test-secret'));
      await until(() => bin.closed, 'closed');
      const err = bin.messages().find((x) => x.t === 'error');
      assert.equal(err?.code, ErrorCodes.NODE_REFUSED);
      assert.equal(err?.fatal, true);
      gw.destroy();
    } finally {
      await te.e.stop();
    }
  });
});

// ---- empty shared token ------------------------------------------------------------------------------

describe('an empty shared token is the token ""', () => {
  test('line and binary: "" authenticates, a missing or other token is refused; a loud warning at start', async () => {
    const { logger, lines } = capturingLogger();
    const sink = new CollectingSink();
    const e = await startEngine({ tcp_server: { token: '' } }, { sink, logger });
    try {
      const port = e.tcpAddress!.port;
      const frame = (node: string, ts: number, token?: string): string => {
        const f = JSON.parse(lineFrame(node, ts)) as Record<string, unknown>;
        if (token === undefined) delete f.token;
        else f.token = token;
        return `${JSON.stringify(f)}\n`;
      };
      const missing = await Client.open(port);
      await missing.send(frame('no-token', 1)).catch(() => undefined);
      await until(() => missing.closed, 'closed');
      const other = await Client.open(port);
      await other.send(frame('other-token', 1, 'anything')).catch(() => undefined);
      await until(() => other.closed, 'closed');
      const ok = await Client.open(port);
      // Only the first message is checked, as tracker-host does: a gateway's further node needs no token.
      await ok.send(frame('empty-token', 1, '') + frame('empty-token', 2) + frame('gw-node', 3));
      const binBad = await Client.open(port);
      await binBad.send(encodeHello('bin-other', 'anything'));
      await until(() => binBad.closed, 'closed');
      assert.equal(binBad.messages()[0]?.code, ErrorCodes.AUTH_FAILED);
      const binOk = await Client.open(port);
      await binOk.send(encodeHello('bin-empty', ''));
      await until(() => binOk.messages().some((x) => x.t === 'welcome'), 'welcome for token ""');
      await binOk.send(encodeFrame({ seq: 1, timestamp: 1757400000000, delay: [40.5], doppler: [-27.25], snr: [12.5] }));
      await until(() => sink.of('empty-token').length === 2 && sink.of('gw-node').length === 1 && sink.of('bin-empty').length === 1, 'accepted frames');
      assert.equal(sink.of('no-token').length + sink.of('other-token').length + sink.of('bin-other').length, 0);
      const m = await assertAccounting(e);
      assert.equal(m.get('radar_ingest_connections_rejected_total{reason="auth_failed"}'), 3);
      assert.equal(ok.closed, false);
      const warn = lines.find((l) => l.level === 40 && l.key === 'tcp_server.token');
      assert.match(String(warn?.msg), /tcp_server\.token is EMPTY.*"token": ""/);
      ok.destroy();
      binOk.destroy();
    } finally {
      await e.stop();
    }
  });

  test('the shipped placeholder token is warned about at start', async () => {
    const { logger, lines } = capturingLogger();
    const e = await startEngine({ tcp_server: { token: 'change-me' } }, { logger });
    await e.stop();
    assert.match(String(lines.find((l) => l.level === 40 && l.key === 'tcp_server.token')?.msg), /placeholder "change-me"/);
    const { logger: l2, lines: quiet } = capturingLogger();
    const e2 = await startEngine({}, { logger: l2 });
    await e2.stop();
    assert.equal(quiet.filter((l) => l.key === 'tcp_server.token').length, 0);
  });
});

// ---- tracker-host's command line -------------------------------------------------------------------

describe('cli: tracker-host flags', () => {
  test('-c FILE, -v (debug logs over log.level) and --server (accepted, said once)', async () => {
    const dir = mkdtempSync(join(root, 'cli-'));
    const cfg = file(dir, 'config.yaml', [
      'tcp_server:', '  enabled: true', '  host: 127.0.0.1', '  port: 0', '  token: cli-secret',
      'http:', '  host: 127.0.0.1', '  port: 0', 'shards: 1', 'sink: discard', 'log:', '  level: warn',
      'agents:', `  key_file: "${TEST_KEY_FILE}"`, `output_dir: "${join(dir, 'out')}"`, '',
    ].join('\n'));
    const r = run(['-c', cfg, '-v', '--server']);
    // "radar-ingest started" is an info line: log.level warn alone would hide it.
    const { tcp } = await started(r);
    const c = await Client.open(tcp);
    c.destroy();
    await until(() => r.logs().some((l) => l.level === 20), 'a debug line');
    assert.equal(r.logs().filter((l) => /--server/.test(String(l.msg))).length, 1);
    await stop(r);

    const r2 = run(['--config', cfg, '--verbose']);
    await started(r2);
    await stop(r2);
  });
});
