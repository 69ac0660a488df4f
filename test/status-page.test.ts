// The status view an operator opens first: `radar-ingest status` (tables, --json)
// and the page at GET / rendered by a real headless browser (Debian's chromium;
// those tests are skipped, saying so, where it is not installed). A real engine
// with the built-in tracker and frames pushed over TCP.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, lineFrame, httpGet, getJson, until, freePort, startTrackerEngine, type TrackerEngine } from './helpers.js';
import { buildSnapshot, renderStatus } from '../src/cli/status-table.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const PAGE = fileURLToPath(new URL('../../static/status.html', import.meta.url));
const API_TOKEN = 'status-api-token';
const NODES = ['node-status-a', 'node-status-b'];
const FRAMES = 40;

/** The first chromium-like browser on PATH, or null. */
function findChromium(): string | null {
  for (const bin of ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']) {
    const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 20000 });
    if (r.status === 0) return bin;
  }
  return null;
}
const CHROMIUM = findChromium();

/** Loads `url` headless and returns the DOM after `budgetMs` of (virtual) time: the page's script has run its refreshes. */
function dumpDom(url: string, budgetMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const profile = mkdtempSync(join(tmpdir(), 'radar-chromium-'));
    const p = spawn(CHROMIUM!, [
      '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-extensions', `--user-data-dir=${profile}`,
      `--virtual-time-budget=${budgetMs}`, '--dump-dom', url,
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 90000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      rmSync(profile, { recursive: true, force: true });
      if (code === 0 && out.includes('</html>')) resolve(out);
      else reject(new Error(`chromium exited ${code}: ${err.slice(-2000)}`));
    });
  });
}

function runStatus(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const { RADAR_INGEST_API_TOKEN: _drop, ...base } = process.env;
    const p = spawn(process.execPath, [CLI, 'status', ...args], { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

/** The text of the cells of each row of the table inside the element with id `id`. */
function rowsOf(html: string, id: string): string[][] {
  const start = html.indexOf(`id="${id}"`);
  assert.ok(start >= 0, `element #${id} in the page`);
  const body = html.slice(start, html.indexOf('</table>', start));
  return [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((r) => [...r[1]!.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((c) => c[1]!))
    .filter((cells) => cells.length > 0); // the header row has <th> cells
}

describe('status view', () => {
  let t: TrackerEngine;
  let dir: string;
  let url: string;
  let client: Client;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'radar-status-'));
    t = await startTrackerEngine(dir, [], { tracker: { command: 'reference' }, http: { api_token: API_TOKEN } });
    url = `http://127.0.0.1:${t.http}`;
    client = await Client.open(t.tcp);
    const lines: string[] = [];
    for (const node of NODES) for (let i = 0; i < FRAMES; i++) lines.push(lineFrame(node, 1_757_400_000_000 + i * 100, 2, 'test-secret'));
    await client.send(lines.join(''));
    await until(async () => {
      const v = (await getJson(t.http, '/api/v1/trackers')).json.trackers as { state: string; frames_fed: number }[];
      return v.length === NODES.length && v.every((x) => x.state === 'running' && x.frames_fed === FRAMES);
    }, 'both trackers running and fed', 20000);
  });
  after(async () => {
    client?.destroy();
    await t?.e.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('`radar-ingest status` prints nodes, trackers (state, port, frames fed), agents and frames as tables', async () => {
    const r = await runStatus(['--url', url]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`^radar-ingest at ${url}: ready$`, 'm'));
    assert.match(r.out, /^NODES {2}known 2 {2}connected 2 {2}connections open 1$/m);
    const views = (await getJson(t.http, '/api/v1/trackers')).json.trackers as { node_id: string; port: number }[];
    for (const v of views) {
      // NODE STATE PORT PID FRAMES-FED LOST ACTIVE EVENTS RESTARTS LAST-ERROR
      assert.match(r.out, new RegExp(`^${v.node_id} +running +${v.port} +\\d+ +${FRAMES} +0 +\\S+ +\\d+ +0 +-$`, 'm'), r.out);
      assert.match(r.out, new RegExp(`^${v.node_id} +yes +\\d+s ago$`, 'm'), 'in the nodes table');
    }
    assert.match(r.out, /^AGENTS {2}unavailable: no API token/m);
    assert.match(r.out, new RegExp(`^FRAMES {2}received ${2 * FRAMES} {2}delivered ${2 * FRAMES} {2}in rings 0 {2}dropped 0$`, 'm'));
  });

  test('with the API token the agents are listed; a wrong one is named; --json is one object', async () => {
    const ok = await runStatus(['--url', url], { RADAR_INGEST_API_TOKEN: API_TOKEN });
    assert.equal(ok.code, 0, ok.err);
    for (const n of NODES) assert.match(ok.out, new RegExp(`^${n} +LIVE +default +`, 'm'));
    const bad = await runStatus(['--url', url, '--token', 'wrong']);
    assert.equal(bad.code, 0);
    assert.match(bad.out, /^AGENTS {2}unavailable: HTTP 401 \(the API token was refused\)$/m);
    const j = await runStatus(['--url', url, '--json', `--token=${API_TOKEN}`]);
    assert.equal(j.code, 0, j.err);
    const s = JSON.parse(j.out);
    assert.equal(s.ready, true);
    assert.deepEqual(s.trackers.rows.map((x: { node_id: string; state: string; frames_fed: number }) => [x.node_id, x.state, x.frames_fed]).sort(),
      NODES.map((n) => [n, 'running', FRAMES]));
    assert.deepEqual(s.agents.rows.map((a: { id: string }) => a.id).sort(), NODES);
    assert.equal(s.frames.received, 2 * FRAMES);
    assert.equal(s.frames.dropped, 0);
  });

  test('an engine that cannot be reached exits 1 and says why; a bad flag exits 2 naming it', async () => {
    const port = await freePort();
    const down = await runStatus(['--url', `http://127.0.0.1:${port}`]);
    assert.equal(down.code, 1);
    assert.match(down.err, new RegExp(`cannot reach http://127\\.0\\.0\\.1:${port}: ECONNREFUSED`));
    const bad = await runStatus(['--bogus']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /unknown argument "--bogus"/);
  });

  test('the table renderer: drops by reason, a tracker error cut to the column, sections that are unavailable', () => {
    const s = buildSnapshot({
      url: 'http://h:8080',
      readyz: { ok: true, value: { status: 'not ready', checks: { listening: { ok: false, detail: 'node port not listening' }, config: { ok: true } } } },
      trackers: { ok: true, value: { command: 'retina', trackers: [{ node_id: 'n1', state: 'backoff', port: 31000, pid: null, frames_fed: 7, last_error: `x${'y'.repeat(100)}` }] } },
      agents: { ok: false, error: 'no API token (--token or RADAR_INGEST_API_TOKEN)' },
      metrics: { ok: true, value: 'radar_ingest_frames_dropped_total{reason="ring_full"} 5\nradar_ingest_frames_dropped_total{reason="shutdown"} 0\nradar_ingest_nodes 1\n' },
    });
    const text = renderStatus(s, Date.now());
    assert.match(text, /: NOT READY \(listening: node port not listening\)$/m);
    assert.match(text, /^n1 +backoff +31000 +- +7 +0 +n\/a +0 +0 +xy+…$/m);
    assert.match(text, /^ring_full +5$/m);
    assert.doesNotMatch(text, /^shutdown /m);
    assert.match(text, /dropped 5$/m);
  });

  test('GET / is the self-contained status page with a strict Content-Security-Policy', async () => {
    const r = await new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>((resolve, reject) => {
      import('node:http').then(({ get }) => get(`${url}/`, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      }).on('error', reject), reject);
    });
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/html/);
    const csp = String(r.headers['content-security-policy']);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/=]+'(;|$)/);
    assert.match(csp, /connect-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:|\*/);
    assert.equal(r.body, readFileSync(PAGE, 'utf8'));
    // Nothing from another host: no external script, style, font or image.
    assert.doesNotMatch(r.body, /(src|href)\s*=\s*["']?(https?:)?\/\//i);
    assert.doesNotMatch(r.body, /@import|url\(/i);
    assert.equal((await httpGet(t.http, '/nope')).status, 404, 'only / is the page');
  });

  const skip = CHROMIUM ? false : 'chromium not installed (apt-get install chromium): the browser tests are skipped';

  test('in a headless browser the page shows the nodes, tracker states and frame counts of the engine, and refreshes', { skip, timeout: 120000 }, async () => {
    // 7 s of virtual time: the first load plus at least two 3 s refreshes.
    const html = await dumpDom(`${url}/`, 7000);
    const refreshes = Number(/data-refreshes="(\d+)"/.exec(html)?.[1] ?? 0);
    assert.ok(refreshes >= 2, `the page refreshed itself (${refreshes} renders)`);
    assert.match(html, /<span id="ready" class="badge ok">ready<\/span>/);
    const views = (await getJson(t.http, '/api/v1/trackers')).json.trackers as { node_id: string; port: number; pid: number }[];
    const trackers = rowsOf(html, 'trackers');
    assert.deepEqual(
      trackers.map((c) => c.slice(0, 5)).sort(),
      views.map((v) => [v.node_id, 'running', String(v.port), String(v.pid), String(FRAMES)]).sort(),
    );
    assert.deepEqual(rowsOf(html, 'nodes').map((c) => c.slice(0, 2)).sort(), NODES.map((n) => [n, 'yes']));
    assert.match(html, new RegExp(`id="frames-received">${2 * FRAMES}<`));
    assert.match(html, /id="nodes-connected">2</);
    assert.match(html, /id="frames-dropped">0</);
    assert.match(html, /Enter the API token/);
  });
});
