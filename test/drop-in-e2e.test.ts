// The whole drop-in, end to end: a tracker-host style config.yaml, unchanged, run by the real
// CLI with tracker-host's flags; nodes speaking the line protocol as retina nodes do (one
// gateway connection carrying two nodes, a RESET mid-stream); an HTTP-polled node; api_forward
// to real HTTP receivers that accept exactly one JSON object per POST, as receivers written
// for tracker-host do. Every output is compared line by line with what tracker-host's
// documented behaviour produces.
//
// retina-tracker itself is not installed here: the test writes a stand-in checkout whose
// `retina_tracker.track_detections` module speaks retina's streaming interface (TCP input,
// {"type":"RESET"}, one JSON event per line on stdout, progress text that is not JSON). It is
// a stand-in, not a tracker: it emits one event per frame, numbered since the last RESET.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { Client, freePort, freePortRange, getJson, httpGet, until } from './helpers.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const TOKEN = 'shared-secret';
const HAS_PYTHON = spawnSync('python3', ['--version']).status === 0;

const STANDIN = String.raw`
import argparse, json, socket, sys
p = argparse.ArgumentParser()
p.add_argument('--tcp', action='store_true')
p.add_argument('--tcp-host', default='0.0.0.0')
p.add_argument('--tcp-port', type=int, default=3012)
p.add_argument('-s', '--stream-output')
p.add_argument('-c', '--config')
a = p.parse_args()
label = None
if a.config:
    with open(a.config) as f:
        label = f.readline().strip()
print('Listening on %s:%d' % (a.tcp_host, a.tcp_port), flush=True)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((a.tcp_host, a.tcp_port))
srv.listen(1)
conn, _ = srv.accept()
n = 0
epoch = 0
buf = b''
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    buf += chunk
    *lines, buf = buf.split(b'\n')
    for line in lines:
        if not line.strip():
            continue
        msg = json.loads(line)
        if msg.get('type') == 'RESET':
            epoch += 1
            n = 0
            continue
        n += 1
        ev = {'track_id': 'E%d-T%04d' % (epoch, n), 'timestamp': msg['timestamp'], 'length': n,
              'detections': len(msg.get('delay', [])), 'adsb_hex': None, 'config': label}
        sys.stdout.write(json.dumps(ev) + '\n')
    sys.stdout.flush()
`;

interface Post { body: string; headers: IncomingHttpHeaders }

/** A receiver written for tracker-host: one JSON object per POST, anything else is a 400. */
function receiver(): Promise<{ server: Server; url: string; posts: Post[] }> {
  const posts: Post[] = [];
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let ok = req.method === 'POST';
      try {
        const v: unknown = JSON.parse(body);
        ok &&= v !== null && typeof v === 'object' && !Array.isArray(v);
      } catch {
        ok = false;
      }
      if (ok) posts.push({ body, headers: req.headers });
      res.writeHead(ok ? 200 : 400).end();
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/tracks`, posts });
  }));
}

/** blah2's /api/detection: the latest frame; the test advances it one frame per request, up to `frames`. */
function detectionServer(frames: number, t0: number): Promise<{ server: Server; url: string; served: () => number[] }> {
  let i = 0;
  const stamps: number[] = [];
  const server = createHttpServer((_req, res) => {
    if (i < frames) stamps.push(t0 + i * 500);
    const ts = stamps[stamps.length - 1]!;
    if (i < frames) i++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ timestamp: ts, delay: [10.5, 20.25], doppler: [-3.5, 4], snr: [12, 9] }));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/detection`, served: () => [...stamps] });
  }));
}

/** The events the stand-in prints for these frame timestamps, with a RESET before index `resetAt`. */
function expectedEvents(stamps: number[], config: string | null, resetAt = -1): Record<string, unknown>[] {
  let epoch = 0;
  let n = 0;
  return stamps.map((ts, i) => {
    if (i === resetAt) { epoch++; n = 0; }
    n++;
    return { track_id: `E${epoch}-T${String(n).padStart(4, '0')}`, timestamp: ts, length: n, detections: 2, adsb_hex: null, config };
  });
}

/** `YYYY-MM-DD` in UTC+14, the zone the engine runs in (local date != UTC date most of the day). */
function plus14Date(ms: number): string {
  return new Date(ms + 14 * 3600_000).toISOString().slice(0, 10);
}

/** All lines of every `{name}_{date}.jsonl` for the dates in `dates`, in date order. */
function trackLines(outDir: string, name: string, dates: string[]): string[] {
  const lines: string[] = [];
  for (const d of [...new Set(dates)].sort()) {
    const f = join(outDir, `${name}_${d}.jsonl`);
    if (existsSync(f)) lines.push(...readFileSync(f, 'utf8').split('\n').filter((l) => l !== ''));
  }
  return lines;
}

const dir = mkdtempSync(join(tmpdir(), 'radar-dropin-'));
const servers: Server[] = [];
let engine: ChildProcess | undefined;
after(async () => {
  if (engine && engine.exitCode === null) engine.kill('SIGKILL');
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a tracker-host config.yaml, unchanged: files, forwarded events and the API match tracker-host', { skip: HAS_PYTHON ? false : 'python3 not found: the retina stand-in needs it', timeout: 90_000 }, async () => {
  // A retina-tracker checkout as tracker-host expects it, with a tracker config beside it.
  const checkout = join(dir, 'retina-tracker');
  mkdirSync(join(checkout, 'retina_tracker'), { recursive: true });
  writeFileSync(join(checkout, 'retina_tracker', '__init__.py'), '');
  writeFileSync(join(checkout, 'retina_tracker', 'track_detections.py'), STANDIN);
  writeFileSync(join(checkout, 'radar-a.yaml'), 'config-of-radar-a\n');

  const global = await receiver();
  const own = await receiver();
  const t0 = Date.now() - 60_000;
  const det = await detectionServer(20, t0);
  servers.push(global.server, own.server, det.server);
  const [tcpPort, httpPort] = [await freePort(), await freePort()];
  const [portA, portC, ...provision] = await freePortRange(6);

  // tracker-host's keys only: no radar-ingest section at all.
  const yaml = `
output_dir: "./output"
poll_interval_sec: 0.05
status_interval_sec: 30
startup_delay_sec: 0.2
tcp_connect_retries: 100
tcp_retry_delay_sec: 0.1
retina_tracker_path: "./retina-tracker"
retry:
  backoff_base_sec: 2
  extended_outage_sec: 60
  health_check_interval_sec: 30
server:
  host: "127.0.0.1"
  port: ${httpPort}
api_forward:
  enabled: true
  url: "${global.url}"
  headers:
    X-Network: "north"
tcp_server:
  enabled: true
  host: "127.0.0.1"
  port: ${tcpPort}
  token: "${TOKEN}"
  auto_provision: true
  auto_provision_port_start: ${provision[0]}
  auto_provision_port_end: ${provision[3]}
trackers:
  - name: "radar-a"
    mode: "tcp"
    node_id: "ret-a"
    tcp_port: ${portA}
    tracker_config: "radar-a.yaml"
    api_forward:
      enabled: true
      url: "${own.url}"
  - name: "radar-c"
    detection_url: "${det.url}"
    tcp_port: ${portC}
`;
  writeFileSync(join(dir, 'config.yaml'), yaml);

  const started = Date.now();
  let stderr = '';
  engine = spawn(process.execPath, [CLI, '-c', 'config.yaml'], {
    cwd: dir, env: { ...process.env, TZ: 'Etc/GMT-14', RADAR_INGEST_TOKEN: '', RADAR_INGEST_API_TOKEN: '' }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  engine.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => engine!.on('exit', (code) => r(code)));
  await until(async () => (await httpGet(httpPort, '/readyz').catch(() => ({ status: 0 }))).status === 200, 'the engine ready', 20_000);

  // One gateway connection carries two nodes; the first message carries the token, as retina nodes send it.
  const tsA = Array.from({ length: 50 }, (_, i) => t0 + i * 100);
  const tsB = Array.from({ length: 40 }, (_, i) => t0 + i * 100 + 7);
  const frame = (node: string, ts: number) => JSON.stringify({
    node_id: node, token: TOKEN, timestamp: ts, delay: [40.46, 120.3], doppler: [-27.99, 88.1], snr: [12.08, 7.2], adsb: [null, null],
  });
  const gw = await Client.open(tcpPort);
  let lines = '';
  for (let i = 0; i < 50; i++) {
    if (i === 25) lines += JSON.stringify({ node_id: 'ret-a', token: TOKEN, type: 'RESET' }) + '\n';
    lines += frame('ret-a', tsA[i]!) + '\n';
    if (i < 40) lines += frame('ret-b', tsB[i]!) + '\n';
    if (i % 10 === 0) lines += JSON.stringify({ node_id: 'ret-a', token: TOKEN, type: 'heartbeat' }) + '\n';
  }
  await gw.send(lines);

  const out = join(dir, 'output');
  const dates = () => [plus14Date(started), plus14Date(Date.now())];
  const wantA = expectedEvents(tsA, 'config-of-radar-a', 25);
  const wantB = expectedEvents(tsB, null);
  await until(() => trackLines(out, 'radar-a', dates()).length >= 50 && trackLines(out, 'ret-b', dates()).length >= 40
    && trackLines(out, 'radar-c', dates()).length >= 20, 'every track event in its file', 40_000);

  // Files: named by the host's local date, one JSON event per line, nothing that was not JSON.
  const files = readdirSync(out).filter((f) => !f.startsWith('.')); // not the track-id epoch file
  for (const f of files) assert.match(f, /^(radar-a|ret-b|radar-c)_\d{4}-\d{2}-\d{2}\.jsonl$/);
  assert.ok(files.every((f) => dates().includes(f.slice(-16, -6))), `local (UTC+14) dates: ${files.join(', ')}`);
  assert.deepEqual(trackLines(out, 'radar-a', dates()).map((l) => JSON.parse(l)), wantA);
  assert.deepEqual(trackLines(out, 'ret-b', dates()).map((l) => JSON.parse(l)), wantB);
  const polled = det.served();
  assert.deepEqual(trackLines(out, 'radar-c', dates()).map((l) => JSON.parse(l)), expectedEvents(polled, null));

  // api_forward: one object per POST, the tracker's line as the body; a tracker's own api_forward replaces the global one.
  await until(() => own.posts.length >= 50 && global.posts.length >= 60, 'every event forwarded', 20_000);
  assert.deepEqual(own.posts.map((p) => JSON.parse(p.body)), wantA);
  const globalEvents = global.posts.map((p) => JSON.parse(p.body) as { config: unknown; timestamp: number });
  assert.equal(globalEvents.length, 60);
  assert.deepEqual(globalEvents.filter((e) => tsB.includes(e.timestamp) && !polled.includes(e.timestamp)), wantB);
  for (const p of global.posts) {
    assert.match(String(p.headers['content-type']), /^application\/json/);
    assert.equal(p.headers['x-network'], 'north');
  }

  // The API says retina runs, as tracker-host ran it.
  const { json } = await getJson(httpPort, '/api/v1/trackers');
  assert.equal(json.command, 'retina');
  assert.deepEqual(json.trackers.map((t: { name: string }) => t.name).sort(), ['radar-a', 'radar-c', 'ret-b']);

  // The stand-in's progress text is not JSON: skipped and counted, once per tracker process; the node's RESET counted.
  const metrics = (await httpGet(httpPort, '/metrics')).body;
  assert.match(metrics, /^radar_ingest_tracker_output_skipped_total\{reason="not_json"\} 3$/m);
  assert.match(metrics, /^radar_ingest_tracker_resets_total\{source="node"\} 1$/m);

  engine.kill('SIGTERM');
  assert.equal(await exited, 0, stderr.slice(-2000));
});
