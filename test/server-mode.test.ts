// Server mode: nodes that run their own tracker push its output to the host over
// HTTP (POST /api/node/{name}/config, POST /api/node/{name}/tracks, GET /api/nodes).
// Real engines on port 0, real HTTP requests, a real node:http receiver for
// api_forward, the track files read back from a temp output_dir.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request, type IncomingHttpHeaders } from 'node:http';
import { mkdtempSync, readdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Engine } from '../src/engine/engine.js';
import { startEngine, startTrackerEngine, scrape, until, freePort, Client, lineFrame, TOKEN } from './helpers.js';
import { ForwardReceiver } from './track-fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'radar-server-mode-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Reply { status: number; headers: IncomingHttpHeaders; body: string }

/** One HTTP request; resolves with the response even when the server answers before reading all of the body. */
function send(port: number, method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', (err) => { if (!answered) reject(err); });
    req.end(body);
  });
}

const auth = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });
const json = (r: Reply): any => JSON.parse(r.body); // eslint-disable-line @typescript-eslint/no-explicit-any

function postConfig(port: number, name: string, body: string, token = TOKEN): Promise<Reply> {
  return send(port, 'POST', `/api/node/${name}/config`, body, { ...auth(token), 'content-type': 'application/json' });
}
function postTracks(port: number, name: string, body: string | Buffer, token = TOKEN): Promise<Reply> {
  return send(port, 'POST', `/api/node/${name}/tracks`, body, { ...auth(token), 'content-type': 'application/x-ndjson' });
}

/** The lines of `name`'s track file in `out` ([] before it exists): one file, named for today (the local or the UTC date, whichever the trackers use). */
function trackLines(out: string, name: string): string[] {
  const files = readdirSync(out).filter((f) => f.startsWith(`${name}_`));
  if (files.length === 0) return [];
  assert.equal(files.length, 1, `one track file for ${name}: ${files.join(', ')}`);
  const now = new Date();
  const local = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}-${String(now.getDate()).padStart(2, '0')}`;
  const utc = now.toISOString().slice(0, 10);
  assert.ok([`${name}_${local}.jsonl`, `${name}_${utc}.jsonl`].includes(files[0]!), files[0]);
  return readFileSync(join(out, files[0]!), 'utf8').split('\n').filter((l) => l !== '');
}

function metric(m: Map<string, number>, name: string, labels: Record<string, string> = {}): number {
  for (const [k, v] of m) {
    if (k !== name && !k.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([l, val]) => k.includes(`${l}="${val}"`))) return v;
  }
  return Number.NaN;
}
const pushed = (m: Map<string, number>, route: string, result: string): number =>
  metric(m, 'radar_ingest_node_push_requests_total', { route, result });

describe('server mode routes', () => {
  let e: Engine;
  let port: number;
  let out: string;
  const receiver = new ForwardReceiver();

  before(async () => {
    await receiver.start();
    out = mkdtempSync(join(dir, 'out-'));
    e = await startEngine({
      output_dir: out,
      http: { max_body_bytes: 4096, max_track_body_bytes: 2048 },
      tcp_server: { tokens: { radar9: 'own-secret' } },
      api_forward: { enabled: true, url: `http://127.0.0.1:${receiver.port}/tracks`, headers: { 'x-site': 'lab' } },
    });
    port = e.httpAddress!.port;
  });
  after(async () => {
    await e.stop();
    await receiver.close();
  });

  test('a node posts its config: 200 {"status":"registered"}; GET /api/nodes lists it with has_config (false for {}) and active_tracks 0', async () => {
    const r = await postConfig(port, 'radar3', JSON.stringify({ location: { rx: { latitude: 33.9 } }, capture: { fc: 195000000 } }));
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(json(r), { status: 'registered', node: 'radar3' });
    const empty = await postConfig(port, 'radar4', '{}');
    assert.equal(empty.status, 200, empty.body);
    const list = json(await send(port, 'GET', '/api/nodes'));
    assert.equal(list.nodes.radar3.has_config, true);
    assert.equal(list.nodes.radar3.active_tracks, 0);
    assert.equal(list.nodes.radar4.has_config, false, 'an empty object is no config, as in tracker-host');
    assert.equal(e.push.configOf('radar3'), JSON.stringify({ location: { rx: { latitude: 33.9 } }, capture: { fc: 195000000 } }), 'the config is stored');
    // A new config replaces the old one.
    assert.equal((await postConfig(port, 'radar4', '{"capture":{"fc":1}}')).status, 200);
    assert.equal(json(await send(port, 'GET', '/api/nodes')).nodes.radar4.has_config, true);
    assert.ok(pushed(await scrape(e), 'config', 'accepted') >= 3);
  });

  test('tracks: each NDJSON line that is a JSON object is appended to {name}_{date}.jsonl and forwarded; other lines are skipped and counted; active_tracks counts distinct track ids', async () => {
    const before = await scrape(e);
    const ev = [
      { track_id: 't-001', length: 3, timestamp: 1000, detections: [{ delay: 1.5, doppler: -20 }] },
      { track_id: 't-002', length: 5, timestamp: 1001 },
      { track_id: 't-001', length: 4, timestamp: 1002 },
    ];
    const body = [JSON.stringify(ev[0]), 'not json', '', `  ${JSON.stringify(ev[1])}\r`, '[1,2]', JSON.stringify(ev[2]), ''].join('\n');
    const r = await postTracks(port, 'radar5', body);
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(json(r), { status: 'ok', accepted: 3, skipped: 2 });
    // The file: the three events, each line as sent (trimmed), in order.
    await until(() => trackLines(out, 'radar5').length === 3, 'three lines in the file');
    assert.deepEqual(trackLines(out, 'radar5'), ev.map((x) => JSON.stringify(x)));
    // Forwarded like a local tracker's events, with the configured headers.
    await until(() => receiver.events().length >= 3, 'three events forwarded');
    assert.deepEqual(receiver.events(), ev);
    assert.equal(receiver.posts[0]!.headers['x-site'], 'lab');
    assert.match(receiver.posts[0]!.headers['content-type'] ?? '', /^application\/json/);
    // Registered by its first tracks, without a config; two distinct tracks.
    const list = json(await send(port, 'GET', '/api/nodes')).nodes;
    assert.equal(list.radar5.has_config, false);
    assert.equal(list.radar5.active_tracks, 2);
    assert.equal(list.radar5.events_written, 3);
    assert.equal(list.radar5.invalid_lines, 2);
    // A second batch appends to the same file.
    assert.equal((await postTracks(port, 'radar5', `${JSON.stringify({ track_id: 't-003', length: 1 })}\n`)).status, 200);
    await until(() => trackLines(out, 'radar5').length === 4, 'the second batch appended');
    assert.equal(json(await send(port, 'GET', '/api/nodes')).nodes.radar5.active_tracks, 3);
    const m = await scrape(e);
    assert.equal(metric(m, 'radar_ingest_node_push_lines_total', { result: 'accepted' }) - metric(before, 'radar_ingest_node_push_lines_total', { result: 'accepted' }), 4);
    assert.equal(metric(m, 'radar_ingest_node_push_lines_total', { result: 'invalid' }) - metric(before, 'radar_ingest_node_push_lines_total', { result: 'invalid' }), 2);
    assert.equal(pushed(m, 'tracks', 'accepted') - pushed(before, 'tracks', 'accepted'), 2);
  });

  test('a body of invalid UTF-8 or only junk is answered 200 with nothing written: every line is checked on its own', async () => {
    const r = await postTracks(port, 'radar6', Buffer.concat([Buffer.from('{"track_id":"a"'), Buffer.from([0xff, 0xfe]), Buffer.from('}\n{"x":'), Buffer.from('\n' + '['.repeat(40) + ']'.repeat(40))]));
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(json(r), { status: 'ok', accepted: 0, skipped: 3 });
    assert.deepEqual(readdirSync(out).filter((f) => f.startsWith('radar6_')), [], 'no file for a node that sent no event');
  });

  test('names outside [A-Za-z0-9_-] (or over 64 characters) get 400 {"status":"error"} before anything touches the file system', async () => {
    const before = await scrape(e);
    const bad = ['bad%20name!', '..%2F..%2Fescape', '..%2Fradar5', 'a.b', 'a%2Fb', '%00x', '%E2%82%AC', 'x'.repeat(65)];
    // Dot segments are resolved by URL parsing before routing: no route, never a write.
    for (const name of ['..', '%2E%2E', '.']) {
      assert.equal((await postTracks(port, name, '{"track_id":"t"}\n')).status, 404, name);
    }
    for (const name of bad) {
      for (const r of [await postConfig(port, name, '{"a":1}'), await postTracks(port, name, '{"track_id":"t"}\n')]) {
        assert.equal(r.status, 400, `${name}: ${r.status} ${r.body}`);
        assert.equal(json(r).status, 'error');
        assert.match(json(r).message, /must match \[a-zA-Z0-9_-\]\+/);
      }
    }
    assert.ok(!existsSync(join(out, '..', 'escape_')), 'nothing outside the output directory');
    assert.deepEqual(readdirSync(out).filter((f) => !/^radar\d_/.test(f) && f !== '.radar-ingest-epoch'), [], 'no file for a refused name');
    assert.deepEqual(Object.keys(json(await send(port, 'GET', '/api/nodes')).nodes).filter((n) => !/^radar\d$/.test(n)), []);
    // Names that are object keys elsewhere are names like any other.
    assert.equal((await postConfig(port, '__proto__', '{"a":1}')).status, 200);
    assert.equal(json(await send(port, 'GET', '/api/nodes')).nodes.__proto__?.has_config, true, 'listed as its own entry');
    // 64 characters are fine.
    assert.equal((await postTracks(port, 'n'.repeat(64), '{"track_id":"t"}\n')).status, 200);
    const m = await scrape(e);
    assert.equal(pushed(m, 'config', 'bad_name') - pushed(before, 'config', 'bad_name'), bad.length);
    assert.equal(pushed(m, 'tracks', 'bad_name') - pushed(before, 'tracks', 'bad_name'), bad.length);
  });

  test('a config that is not JSON, empty or not an object gets 400 {"status":"error"}; a config over http.max_body_bytes gets 413', async () => {
    const before = await scrape(e);
    const r = await postConfig(port, 'radar7', 'not valid json');
    assert.equal(r.status, 400);
    assert.equal(json(r).status, 'error');
    assert.match(json(r).message, /^invalid JSON/);
    for (const b of ['', '[1]', '"x"', '42', 'null']) {
      assert.equal((await postConfig(port, 'radar7', b)).status, 400, JSON.stringify(b));
    }
    const big = await postConfig(port, 'radar7', JSON.stringify({ pad: 'x'.repeat(5000) }));
    assert.equal(big.status, 413, big.body);
    assert.equal(json(big).status, 'error');
    assert.equal(json(await send(port, 'GET', '/api/nodes')).nodes.radar7, undefined, 'nothing stored');
    const m = await scrape(e);
    assert.equal(pushed(m, 'config', 'bad_body') - pushed(before, 'config', 'bad_body'), 6);
    assert.equal(pushed(m, 'config', 'too_large') - pushed(before, 'config', 'too_large'), 1);
  });

  test('a tracks body over http.max_track_body_bytes gets 413 (declared or streamed) and nothing of it is written', async () => {
    const before = await scrape(e);
    const line = JSON.stringify({ track_id: 'big', length: 1, pad: 'x'.repeat(100) });
    const body = Array.from({ length: 30 }, () => line).join('\n'); // ~4 KiB, over the 2 KiB limit
    const r = await postTracks(port, 'radar8', body);
    assert.equal(r.status, 413, r.body);
    assert.equal(json(r).status, 'error');
    // Chunked, no declared length: refused once the bytes pass the limit.
    const chunked = await new Promise<Reply>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/api/node/radar8/tracks', method: 'POST', headers: { ...auth(TOKEN), 'transfer-encoding': 'chunked' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      });
      req.on('error', reject);
      req.write(body.slice(0, 1500));
      req.write(body.slice(1500));
      req.end();
    }).catch(() => null);
    if (chunked !== null) assert.equal(chunked.status, 413);
    assert.deepEqual(readdirSync(out).filter((f) => f.startsWith('radar8_')), []);
    // Just under the limit is accepted.
    const fits = Array.from({ length: 13 }, () => line).join('\n');
    assert.ok(Buffer.byteLength(fits) <= 2048);
    assert.equal((await postTracks(port, 'radar8', fits)).status, 200);
    await until(() => trackLines(out, 'radar8').length === 13, 'the batch that fits is written');
    const m = await scrape(e);
    assert.ok(pushed(m, 'tracks', 'too_large') - pushed(before, 'tracks', 'too_large') >= 1);
  });

  test('authentication: the node\'s own token, else the shared token, or its agent access token; anything else 401 and nothing stored', async () => {
    const before = await scrape(e);
    const ev = '{"track_id":"a1","length":1}\n';
    const noHeader = await send(port, 'POST', '/api/node/radar2/tracks', ev);
    assert.equal(noHeader.status, 401);
    for (const token of ['wrong', `${TOKEN}x`, '']) {
      assert.equal((await postTracks(port, 'radar2', ev, token)).status, 401, token);
      assert.equal((await postConfig(port, 'radar2', '{"a":1}', token)).status, 401, token);
    }
    // The token in the query is not read (it would end up in access logs).
    assert.equal((await send(port, 'POST', `/api/node/radar2/tracks?access_token=${TOKEN}`, ev)).status, 401);
    // A node with its own token: only that one.
    assert.equal((await postTracks(port, 'radar9', ev, TOKEN)).status, 401, 'the shared token does not speak for a node with its own');
    assert.equal((await postTracks(port, 'radar9', ev, 'own-secret')).status, 200);
    assert.equal((await postTracks(port, 'radar2', ev, 'own-secret')).status, 401, 'a node token speaks only for its node');
    // An agent access token, for its own name only.
    const reg = await send(port, 'POST', '/api/v1/agents/register',
      JSON.stringify({ id: 'radar1', name: 'Radar 1', group: 'g1', version: '1.0', capabilities: [] }), { ...auth(TOKEN), 'content-type': 'application/json' });
    assert.equal(reg.status, 200, reg.body);
    const access = json(reg).accessToken as string;
    assert.equal((await postTracks(port, 'radar1', ev, access)).status, 200);
    assert.equal((await postConfig(port, 'radar1', '{"a":1}', access)).status, 200);
    assert.equal((await postTracks(port, 'radar2', ev, access)).status, 401, 'another node\'s access token');
    const nodes = json(await send(port, 'GET', '/api/nodes')).nodes;
    assert.equal(nodes.radar2, undefined, 'nothing stored for refused requests');
    await until(() => trackLines(out, 'radar1').length === 1, 'the agent-authenticated line is written');
    const m = await scrape(e);
    assert.equal(pushed(m, 'tracks', 'unauthorized') - pushed(before, 'tracks', 'unauthorized'), 8);
    assert.equal(pushed(m, 'config', 'unauthorized') - pushed(before, 'config', 'unauthorized'), 3);
  });

  test('every push series exists from the start, at zero on a fresh engine', async () => {
    const fresh = await startEngine({ output_dir: mkdtempSync(join(dir, 'fresh-')) });
    try {
      const m = await scrape(fresh);
      for (const route of ['config', 'tracks']) {
        for (const result of ['accepted', 'unauthorized', 'bad_name', 'name_taken', 'bad_body', 'too_large']) {
          assert.equal(pushed(m, route, result), 0, `${route}/${result}`);
        }
      }
      assert.equal(metric(m, 'radar_ingest_node_push_lines_total', { result: 'accepted' }), 0);
      assert.equal(metric(m, 'radar_ingest_node_push_lines_total', { result: 'invalid' }), 0);
      assert.equal(metric(m, 'radar_ingest_node_push_nodes'), 0);
      assert.deepEqual(json(await send(fresh.httpAddress!.port, 'GET', '/api/nodes')), { nodes: {} });
    } finally {
      await fresh.stop();
    }
  });
});

describe('server mode bounds and conflicts', () => {
  test('without any node token configured the push routes refuse every request (tracker-host had no authentication)', async () => {
    const e = await startEngine({ output_dir: mkdtempSync(join(dir, 'open-')), tcp_server: { token: '' } });
    try {
      const port = e.httpAddress!.port;
      assert.equal((await send(port, 'POST', '/api/node/radar3/tracks', '{"track_id":"a"}\n')).status, 401);
      assert.equal((await postTracks(port, 'radar3', '{"track_id":"a"}\n', 'anything')).status, 401);
    } finally {
      await e.stop();
    }
  });

  test('at most 1024 names are held: a flood of new names forgets the least recently active ones, and each stays served', async () => {
    const out = mkdtempSync(join(dir, 'flood-'));
    const e = await startEngine({ output_dir: out });
    try {
      const port = e.httpAddress!.port;
      assert.equal((await postTracks(port, 'first', '{"track_id":"a"}\n')).status, 200);
      for (let i = 0; i < 1100; i++) {
        const r = await postConfig(port, `flood-${i}`, '{"a":1}');
        assert.equal(r.status, 200, r.body);
      }
      const m = await scrape(e);
      assert.equal(metric(m, 'radar_ingest_node_push_nodes'), 1024);
      const nodes = json(await send(port, 'GET', '/api/nodes')).nodes;
      assert.equal(Object.keys(nodes).length, 1024);
      assert.equal(nodes.first, undefined, 'the least recently active name was forgotten');
      assert.ok(nodes['flood-1099'], 'the newest is held');
      // A forgotten node comes back: its file is appended to, not replaced.
      assert.equal((await postTracks(port, 'first', '{"track_id":"b"}\n')).status, 200);
      await until(() => trackLines(out, 'first').length === 2, 'both lines in the file');
      assert.deepEqual(trackLines(out, 'first'), ['{"track_id":"a"}', '{"track_id":"b"}']);
    } finally {
      await e.stop();
    }
  });

  test('a name that a tracker of this host writes is refused with 409: one writer per track file', async () => {
    const out = mkdtempSync(join(dir, 'taken-'));
    const { e, http } = await startTrackerEngine(out, [], { trackers: [{ name: 'local1', tcp_port: await freePort() }] });
    try {
      const before = await scrape(e);
      const r = await postTracks(http, 'local1', '{"track_id":"a"}\n');
      assert.equal(r.status, 409, r.body);
      assert.equal(json(r).status, 'error');
      assert.equal((await postConfig(http, 'local1', '{"a":1}')).status, 409);
      assert.equal((await postTracks(http, 'remote1', '{"track_id":"a"}\n')).status, 200, 'another name is fine');
      const m = await scrape(e);
      assert.equal(pushed(m, 'tracks', 'name_taken') - pushed(before, 'tracks', 'name_taken'), 1);
      assert.equal(pushed(m, 'config', 'name_taken') - pushed(before, 'config', 'name_taken'), 1);
      assert.equal(json(await send(http, 'GET', '/api/nodes')).nodes.local1, undefined);
    } finally {
      await e.stop();
    }
  });

  test('an api_forward that cannot be used (no url) does not fail a push: the lines are still written', async () => {
    const out = mkdtempSync(join(dir, 'nourl-'));
    const e = await startEngine({ output_dir: out, api_forward: { enabled: true, url: '' } });
    try {
      const r = await postTracks(e.httpAddress!.port, 'radar3', '{"track_id":"a"}\n');
      assert.equal(r.status, 200, r.body);
      await until(() => trackLines(out, 'radar3').length === 1, 'the line written');
    } finally {
      await e.stop();
    }
  });

  test('a pushed track file is named by the same date rule as a local tracker\'s (output_date local and utc), also where the local date is not the UTC date', async () => {
    const saved = process.env.TZ;
    // UTC+14 or UTC-12: at any instant one of them is on another date than UTC.
    const utcDay = new Date().toISOString().slice(0, 10);
    process.env.TZ = 'Etc/GMT-14';
    if (new Date().toLocaleDateString('en-CA') === utcDay) process.env.TZ = 'Etc/GMT+12';
    try {
      assert.notEqual(new Date().toLocaleDateString('en-CA'), utcDay, 'the local date differs from the UTC date');
      for (const outputDate of ['local', 'utc']) {
        const out = mkdtempSync(join(dir, `date-${outputDate}-`));
        const { e, http, tcp } = await startTrackerEngine(out, ['--echo'], { output_date: outputDate });
        const c = await Client.open(tcp);
        try {
          await c.send(lineFrame('n1', Date.now()));
          const local = await until(() => readdirSync(out).find((f) => f.startsWith('n1_')), 'the local tracker\'s track file');
          assert.equal((await postTracks(http, 'remote1', '{"track_id":"a"}\n')).status, 200);
          const pushedFile = await until(() => readdirSync(out).find((f) => f.startsWith('remote1_')), 'the pushed track file');
          assert.equal(pushedFile.slice('remote1'.length), local.slice('n1'.length), `output_date ${outputDate}: ${pushedFile} vs ${local}`);
        } finally {
          c.destroy();
          await e.stop();
        }
      }
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });

  test('at shutdown every accepted line is in the file and every forwarded event reached the receiver', async () => {
    const receiver = new ForwardReceiver();
    await receiver.start();
    const out = mkdtempSync(join(dir, 'stop-'));
    const e = await startEngine({
      output_dir: out,
      api_forward: { enabled: true, url: `http://127.0.0.1:${receiver.port}/`, batch_max_events: 1 },
    });
    try {
      const port = e.httpAddress!.port;
      const lines = Array.from({ length: 50 }, (_, i) => JSON.stringify({ track_id: `t${i % 7}`, length: i, timestamp: i }));
      for (let i = 0; i < 50; i += 10) {
        assert.equal((await postTracks(port, 'radar3', lines.slice(i, i + 10).join('\n'))).status, 200);
      }
      await e.stop();
      assert.deepEqual(trackLines(out, 'radar3'), lines);
      assert.deepEqual(receiver.events(), lines.map((l) => JSON.parse(l)));
    } finally {
      await e.stop();
      await receiver.close();
    }
  });
});
