// A tracker's output as tracker-host handled it: every track event POSTed on
// its own (the body is that one JSON object) to api_forward.url; stdout lines
// that are not JSON objects skipped (counted, warned), neither stored nor
// forwarded; the active tracks and their lengths per instance in the status
// log and the API.
//
// Where retina-tracker is needed, the tests run a stand-in: a small node
// script written to a temp dir that speaks retina-tracker's interface (listens
// on --tcp-port, reads frame lines, prints track events on stdout), printing a
// scripted output once the first frame arrives.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { Client, lineFrame, startTrackerEngine, until, assertAccounting, scrape, getJson, freePortRange, type TrackerEngine } from './helpers.js';
import { ApiForwarder } from '../src/tracker/api-forwarder.js';
import { ActiveTracks, MAX_ID_CHARS } from '../src/tracker/active-tracks.js';
import { classifyTrackLine } from '../src/tracker/track-line.js';

const root = mkdtempSync(join(tmpdir(), 'radar-dropin-out-'));
const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(root, { recursive: true, force: true });
});

// ---- the stand-in tracker ----

const STAND_IN = join(root, 'stand-in-tracker.mjs');
writeFileSync(STAND_IN, `// Stand-in for retina-tracker (see the test file's header).
import { createServer } from 'node:net';
import { readFileSync } from 'node:fs';
const a = process.argv.slice(2);
const port = Number(a[a.indexOf('--tcp-port') + 1]);
const script = a[a.indexOf('--print') + 1];
process.on('SIGTERM', () => process.exit(0));
createServer((sock) => {
  let printed = false;
  sock.on('data', (d) => {
    if (printed || !d.includes(10)) return;
    printed = true;
    process.stdout.write(readFileSync(script, 'utf8'));
  });
  sock.on('end', () => sock.end());
}).listen(port, '127.0.0.1');
`);

let scripts = 0;
/** The stand-in's argv, printing `output` (verbatim) after the first frame. */
function standIn(output: string): string[] {
  const file = join(root, `out-${scripts++}.txt`);
  writeFileSync(file, output);
  return [process.execPath, STAND_IN, '--tcp-port', '{port}', '--print', file];
}

// ---- a receiver written for tracker-host ----

interface Post { headers: IncomingHttpHeaders; body: string; status: number }

/** Accepts exactly one JSON object per POST (400 for an array or anything else); `reject(body)` answers 400 too. */
async function objectReceiver(reject: (body: string) => boolean = () => false): Promise<{ url: string; posts: Post[]; accepted: () => string[]; connections: () => number }> {
  const posts: Post[] = [];
  let connections = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      let status = 200;
      try {
        const v: unknown = JSON.parse(body);
        if (typeof v !== 'object' || v === null || Array.isArray(v) || reject(body)) status = 400;
      } catch {
        status = 400;
      }
      posts.push({ headers: req.headers, body, status });
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 200 ? 'ok' : 'one JSON object per request');
    });
  });
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  return {
    connections: () => connections,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/tracks`,
    posts,
    accepted: () => posts.filter((p) => p.status === 200).map((p) => p.body),
  };
}

/** Captures the engine's log records (JSON lines) at info and above. */
function captureLog(): { records: Array<Record<string, any>>; logger: Logger } { // eslint-disable-line @typescript-eslint/no-explicit-any
  const records: Array<Record<string, any>> = []; // eslint-disable-line @typescript-eslint/no-explicit-any
  const logger: Logger = pino({ level: 'info' }, { write: (s: string) => void records.push(JSON.parse(s)) });
  return { records, logger };
}

async function engineWith(output: string, over: Record<string, unknown>, logger?: Logger): Promise<TrackerEngine> {
  const out = join(root, `run-${scripts}`);
  mkdirSync(out);
  const te = await startTrackerEngine(out, [], over, logger ? { logger } : {}, standIn(output));
  cleanups.push(() => te.e.stop());
  return te;
}

/** The complete lines of the node's track file. */
function trackFile(out: string, name: string): string[] {
  const f = readdirSync(out).filter((n) => n.startsWith(`${name}_`) && n.endsWith('.jsonl'));
  if (f.length === 0) return [];
  return readFileSync(join(out, f[0]!), 'utf8').split('\n').slice(0, -1);
}

async function sendFrame(te: TrackerEngine, node: string): Promise<Client> {
  const c = await Client.open(te.tcp);
  cleanups.push(() => c.destroy());
  await c.send(lineFrame(node, Date.now()));
  return c;
}

const ev = (o: Record<string, unknown>): string => JSON.stringify(o);

// ---- api_forward ----

describe('api_forward in tracker-host\'s format', () => {
  test('each track event is its own POST, the body that one JSON object, with the configured headers', async () => {
    const events = Array.from({ length: 12 }, (_, i) => ev({ track_id: `T${i % 3}`, timestamp: 1757400000000 + i, length: i + 1, detections: [] }));
    const rx = await objectReceiver();
    const te = await engineWith(events.join('\n') + '\n', {
      api_forward: { enabled: true, url: rx.url, headers: { Authorization: 'Bearer fwd-secret', 'X-Site': 'north' } },
    });
    await sendFrame(te, 'fwd-one');
    await until(() => rx.posts.length >= events.length, 'every event POSTed', 15000);
    await until(() => trackFile(te.out, 'fwd-one').length === events.length, 'the track file', 5000);
    // Exactly the tracker's lines, one per request, in order, all accepted by a receiver that refuses arrays.
    assert.deepEqual(rx.posts.map((p) => p.body), events);
    assert.deepEqual(rx.posts.map((p) => p.status), events.map(() => 200));
    assert.deepEqual(trackFile(te.out, 'fwd-one'), rx.accepted());
    for (const p of rx.posts) {
      assert.equal(p.headers['content-type'], 'application/json');
      assert.equal(p.headers.authorization, 'Bearer fwd-secret');
      assert.equal(p.headers['x-site'], 'north');
    }
    // Requests reuse one kept-alive connection.
    assert.equal(rx.connections(), 1);
    const m = await scrape(te.e);
    assert.equal(m.get('radar_ingest_tracks_forwarded_total{result="sent"}'), events.length);
    assert.equal(m.get('radar_ingest_tracks_forwarded_total{result="failed"}'), 0);
    assert.equal(m.get('radar_ingest_tracks_forwarded_total{result="dropped"}'), 0);
    const view = (await getJson(te.http, '/api/v1/trackers/fwd-one')).json;
    assert.deepEqual(view.forward, { sent: events.length, failed: 0, dropped: 0, queued: 0 });
    await assertAccounting(te.e);
  });

  test('a tracker\'s own api_forward overrides the global one; a refused event is counted failed, the next still goes', async () => {
    const global = await objectReceiver();
    const own = await objectReceiver((body) => body.includes('"refuse-me"'));
    const events = [ev({ track_id: 'A', length: 1 }), ev({ track_id: 'refuse-me', length: 1 }), ev({ track_id: 'B', length: 2 })];
    const [port] = await freePortRange(1);
    const te = await engineWith(events.join('\n') + '\n', {
      api_forward: { enabled: true, url: global.url },
      trackers: [{ name: 'own-fwd', node_id: 'own-node', mode: 'tcp', tcp_port: port, api_forward: { enabled: true, url: own.url, headers: { 'x-own': '1' } } }],
    });
    await sendFrame(te, 'own-node');
    await until(() => own.posts.length === 3, 'three POSTs to the tracker\'s own URL', 15000);
    await until(async () => (await scrape(te.e)).get('radar_ingest_tracks_forwarded_total{result="failed"}') === 1, 'the refusal counted');
    assert.deepEqual(own.posts.map((p) => p.body), events);
    assert.deepEqual(own.accepted(), [events[0], events[2]]);
    assert.ok(own.posts.every((p) => p.headers['x-own'] === '1'));
    assert.equal(global.posts.length, 0);
    const m = await scrape(te.e);
    assert.equal(m.get('radar_ingest_tracks_forwarded_total{result="sent"}'), 2);
    // Every event is in the track file, forwarded or not.
    assert.deepEqual(trackFile(te.out, 'own-fwd'), events);
  });

  test('batching is an opt-in: batch_max_events > 1 sends JSON arrays of at most that many events', async () => {
    const bodies: unknown[] = [];
    const server = createServer((req, res) => {
      let b = '';
      req.on('data', (d) => (b += d));
      req.on('end', () => {
        bodies.push(JSON.parse(b));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }));
    const f = new ApiForwarder({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, batchMaxEvents: 3, batchWindowMs: 30 });
    cleanups.push(() => f.close(0));
    for (let i = 0; i < 7; i++) f.enqueue(ev({ track_id: `t${i}` }));
    await until(() => f.stats().sent === 7, 'seven sent');
    assert.ok(bodies.every((b) => Array.isArray(b) && b.length <= 3), JSON.stringify(bodies));
    assert.deepEqual(bodies.flat(), Array.from({ length: 7 }, (_, i) => ({ track_id: `t${i}` })));
  });
});

// ---- stdout that is not a JSON object ----

describe('tracker stdout that is not a JSON object', () => {
  test('is skipped: not in the track file, not forwarded, counted by reason, warned about (rate-limited)', async () => {
    const stdout = [
      ev({ track_id: 'a', length: 3 }),
      'Loading config from /etc/retina/config.yaml',
      '[1,2,3]',
      '42',
      '"a string"',
      'null',
      '   ',
      `  ${ev({ track_id: 'b', length: 7 })}  `,
      '{"track_id": "c", "length": ',
      'true',
      // Over the 4 MiB line limit: dropped whole (a cut record is not an event), counted too_long.
      ev({ track_id: 'huge', pad: 'x'.repeat(4 * 1024 * 1024) }),
      ev({ track_id: 'c', length: 1 }),
    ];
    const objects = [ev({ track_id: 'a', length: 3 }), ev({ track_id: 'b', length: 7 }), ev({ track_id: 'c', length: 1 })];
    const rx = await objectReceiver();
    const log = captureLog();
    const te = await engineWith(stdout.join('\n') + '\n', { api_forward: { enabled: true, url: rx.url } }, log.logger);
    await sendFrame(te, 'mixed');
    await until(() => rx.posts.length === 3 && trackFile(te.out, 'mixed').length === 3, 'three events stored and forwarded', 15000);
    const m = await until(async () => {
      const s = await scrape(te.e);
      return s.get('radar_ingest_tracker_output_skipped_total{reason="not_object"}') === 5 ? s : null;
    }, 'the skipped lines counted');
    assert.deepEqual(trackFile(te.out, 'mixed'), objects);
    assert.deepEqual(rx.posts.map((p) => p.body), objects);
    assert.equal(m.get('radar_ingest_tracker_output_skipped_total{reason="not_json"}'), 2);
    assert.equal(m.get('radar_ingest_tracker_output_skipped_total{reason="too_long"}'), 1);
    assert.equal(m.get('radar_ingest_tracks_written_total'), 3);
    const view = (await getJson(te.http, '/api/v1/trackers/mixed')).json;
    assert.deepEqual(view.output_skipped, { not_json: 2, not_object: 5, too_long: 1 });
    // Seven skipped lines, five warnings in 10 s: the rest are counted, not logged.
    const warns = log.records.filter((r) => r.msg === 'tracker output skipped: not a JSON object');
    assert.equal(warns.length, 5);
    assert.deepEqual(warns.map((w) => [w.tracker, w.reason, w.line]), [
      ['mixed', 'not_json', 'Loading config from /etc/retina/config.yaml'],
      ['mixed', 'not_object', '[1,2,3]'],
      ['mixed', 'not_object', '42'],
      ['mixed', 'not_object', '"a string"'],
      ['mixed', 'not_object', 'null'],
    ]);
    await assertAccounting(te.e);
  });

  test('classifyTrackLine: objects are events (trimmed); other JSON and non-JSON are skipped; blank lines are nothing', () => {
    assert.deepEqual(classifyTrackLine(' {"a":1}\t'), { kind: 'event', text: '{"a":1}', event: { a: 1 } });
    assert.deepEqual(classifyTrackLine('{"a":'), { kind: 'skip', reason: 'not_json' });
    assert.deepEqual(classifyTrackLine('Traceback (most recent call last):'), { kind: 'skip', reason: 'not_json' });
    for (const l of ['[]', '[{"a":1}]', '1', '"x"', 'null', 'false']) assert.deepEqual(classifyTrackLine(l), { kind: 'skip', reason: 'not_object' }, l);
    assert.deepEqual(classifyTrackLine(' \t '), { kind: 'blank' });
  });
});

// ---- status report ----

describe('active tracks per instance', () => {
  // length, else n_associated, else 0; the latest event of a track wins; no usable track_id, no track.
  const events = [
    ev({ track_id: 'a', length: 2 }),
    ev({ track_id: 'b', length: 4 }),
    ev({ track_id: 'a', length: 5 }),
    ev({ track_id: 'c', n_associated: 9 }),
    ev({ track_id: 'd', length: 0, n_associated: 0 }),
    ev({ no_track_id: 1, length: 50 }),
    ev({ track_id: '', length: 60 }),
  ];

  test('shown in GET /api/v1/trackers/{id} and in the status log line', async () => {
    const log = captureLog();
    const te = await engineWith(events.join('\n') + '\n', { status_interval_sec: 0.1 }, log.logger);
    await sendFrame(te, 'status-node');
    const view = await until(async () => {
      const v = (await getJson(te.http, '/api/v1/trackers/status-node')).json;
      return v.tracks_written === events.length ? v : null;
    }, 'the events written', 15000);
    assert.equal(view.active_tracks, 4);
    assert.deepEqual(view.longest_tracks, [
      { track_id: 'c', length: 9 }, { track_id: 'a', length: 5 }, { track_id: 'b', length: 4 }, { track_id: 'd', length: 0 },
    ]);
    const status = await until(() => log.records.findLast((r) => r.msg === 'status' && r.tracks?.['status-node']?.active === 4), 'a status line with the tracks');
    assert.deepEqual(status.tracks['status-node'], { state: 'running', active: 4, lengths: [9, 5, 4, 0] });
  });

  test('ActiveTracks: a track without an event for idleMs has ended; memory stays bounded whatever the ids', () => {
    let now = 1_000_000;
    const t = new ActiveTracks({ maxTracks: 100, idleMs: 60_000 });
    t.observe({ track_id: 'old', length: 99 }, now);
    now += 30_000;
    t.observe({ track_id: 'new', length: 1 }, now);
    assert.deepEqual(t.summary(now), { active: 2, longest: [{ track_id: 'old', length: 99 }, { track_id: 'new', length: 1 }] });
    now += 30_000; // 'old' is 60 s quiet: ended
    assert.deepEqual(t.summary(now), { active: 1, longest: [{ track_id: 'new', length: 1 }] });
    t.observe({ track_id: 'new', length: 2 }, now + 59_999);
    assert.equal(t.summary(now + 119_998).active, 1);
    // A tracker inventing ids: at most maxTracks kept, the least recently updated leave first; ids are cut.
    for (let i = 0; i < 100_000; i++) t.observe({ track_id: `x${i}`.padEnd(1000, 'y'), length: i }, now + 60_000);
    const s = t.summary(now + 60_000, 3);
    assert.equal(s.active, 100);
    assert.deepEqual(s.longest.map((l) => l.length), [99_999, 99_998, 99_997]);
    assert.ok(s.longest.every((l) => l.track_id.length === MAX_ID_CHARS));
    assert.equal(t.evicted, 100_000 - 100 + 1);
    t.clear();
    assert.deepEqual(t.summary(now + 60_000), { active: 0, longest: [] });
  });
});
