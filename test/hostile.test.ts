// Hostile peers against a real engine over real TCP: slow-loris, a connection flood,
// absurd length prefixes, deeply nested msgpack, megabyte lines, and oversized /
// malformed / mistyped HTTP bodies on every control endpoint that reads one. Each
// attack runs while an honest binary node keeps sending frames (it must keep being
// acked), and ends with the accounting identity from /metrics.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import type { Engine } from '../src/engine/engine.js';
import { startEngine, Client, CollectingSink, until, scrape, assertAccounting, httpGet, lineFrame, parseHttpHead, TOKEN } from './helpers.js';
import { encodeHello, encodeFrame, encodeMessage } from '../src/protocol/binary-protocol.js';

const MIB = 1024 * 1024;
const API = 'api-secret';

// ---- helpers ------------------------------------------------------------------

const engines: Engine[] = [];
after(async () => {
  await Promise.all(engines.map((e) => e.stop()));
});

async function engine(over: Record<string, unknown>, sink?: CollectingSink): Promise<Engine> {
  const e = await startEngine(over, sink ? { sink } : {});
  engines.push(e);
  return e;
}

async function metric(e: Engine, name: string): Promise<number> {
  const v = (await scrape(e)).get(name);
  assert.notEqual(v, undefined, `metric ${name} exists`);
  return v!;
}

function prefix(b: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(b.length, 0);
  return Buffer.concat([h, b]);
}

const rejected = (r: string): string => `radar_ingest_connections_rejected_total{reason="${r}"}`;
const dropped = (r: string): string => `radar_ingest_frames_dropped_total{reason="${r}"}`;

/** A binary node that sends a frame every 20 ms and records the acks. */
class HonestNode {
  seq = 0;
  private timer: NodeJS.Timeout | null = null;
  private constructor(readonly c: Client, readonly node: string) {}

  static async start(port: number, node: string): Promise<HonestNode> {
    const c = await Client.open(port);
    await c.send(encodeHello(node, TOKEN));
    const w = await until(() => c.messages().find((m) => m.t === 'welcome' || m.t === 'error'), `${node} welcome`);
    assert.equal(w.t, 'welcome', `honest node ${node} welcomed`);
    const h = new HonestNode(c, node);
    h.timer = setInterval(() => h.send(), 20);
    return h;
  }

  private send(): void {
    if (this.c.closed) return;
    this.seq++;
    this.c.socket.write(encodeFrame({ seq: this.seq, timestamp: 1757400000000 + this.seq, delay: [40.5], doppler: [-27.25], snr: [12.5] }));
  }

  acked(): number {
    let a = 0;
    for (const m of this.c.messages()) if (m.t === 'ack' && m.seq > a) a = m.seq;
    return a;
  }

  /** Frames keep being acked: at least `more` new ones after now, and every one sent so far. */
  async flowing(more = 3): Promise<void> {
    const target = this.seq + more;
    await until(() => this.acked() >= target, `${this.node} acked through ${target}`, 10000);
    assert.equal(this.c.closed, false, `${this.node} still connected`);
    assert.equal(this.c.messages().filter((m) => m.t === 'error').length, 0, `${this.node} got no errors`);
  }

  /** Stops sending, waits for every frame to be acked, disconnects. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await until(() => this.acked() === this.seq, `${this.node} all ${this.seq} frames acked`, 10000);
    assert.equal(this.c.closed, false, `${this.node} still connected`);
    this.c.destroy();
    await this.c.closedP;
  }
}

/** Waits for a client's close, failing after `ms`. Returns the time it took from `t0`. */
async function closedWithin(c: Client, ms: number, t0 = Date.now()): Promise<number> {
  await until(() => c.closed, 'connection closed', ms);
  return Date.now() - t0;
}

/** Every frame the engine took is in a ring, the sink, delivered or dropped: waits for the rings to drain first. */
async function settledAccounting(e: Engine): Promise<void> {
  await until(async () => (await scrape(e)).get('radar_ingest_frames_in_rings') === 0, 'rings drained');
  await assertAccounting(e);
}

function rss(): number {
  return process.memoryUsage.rss();
}

// ---- slow-loris and the first-message deadline ------------------------------------

describe('slow-loris: trickled bytes do not extend the first-message deadline', () => {
  let e: Engine;
  let port: number;
  let honest: HonestNode;
  before(async () => {
    e = await engine({ limits: { first_message_timeout_ms: 500 } });
    port = e.tcpAddress!.port;
    honest = await HonestNode.start(port, 'honest-loris');
  });
  after(async () => {
    await honest.stop();
    await settledAccounting(e);
  });

  for (const proto of ['line', 'binary'] as const) {
    test(`${proto}: one byte every 50 ms of an unfinished first message: closed at ~500 ms, counted first_message_timeout`, async () => {
      const before = await metric(e, rejected('first_message_timeout'));
      const msg = proto === 'line'
        ? Buffer.from(`{"node_id":"loris","token":"${TOKEN}","timestamp":1757400000000,"delay":[1],"doppler":[1],"snr":[1],"pad":"${'x'.repeat(200)}"}\n`)
        : encodeHello('loris', TOKEN, { name: 'x'.repeat(200) });
      const c = await Client.open(port);
      const t0 = Date.now();
      let sent = 0;
      // 60 bytes take 3 s: if trickling extended the deadline, nothing would close before the trickle ends.
      const trickle = setInterval(() => {
        if (c.closed || sent >= 60) return;
        c.socket.write(msg.subarray(sent, sent + 1));
        sent++;
      }, 50);
      try {
        const took = await closedWithin(c, 2500, t0);
        assert.ok(took >= 450, `closed after ${took} ms: not before the deadline`);
        assert.ok(sent >= 5 && sent < 60, `trickled ${sent} bytes, then closed while still trickling`);
      } finally {
        clearInterval(trickle);
      }
      assert.equal(c.bytes().length, 0, 'nothing is sent back (no hello was completed)');
      await until(async () => (await metric(e, rejected('first_message_timeout'))) === before + 1, 'first_message_timeout counted');
      await honest.flowing();
    });
  }

  test('0xFFFFFFFF as the very first bytes: the line protocol by its first byte (docs/protocol.md), no allocation, closed at the deadline', async () => {
    const r0 = rss();
    const before = await scrape(e);
    const c = await Client.open(port);
    const t0 = Date.now();
    await c.send(Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.alloc(256 * 1024, 0xff)]));
    const took = await closedWithin(c, 3000, t0);
    assert.ok(took >= 450, `closed after ${took} ms`);
    assert.equal(c.bytes().length, 0, 'no binary error: the host took it for an (unfinished, invalid) line');
    await until(async () => (await metric(e, rejected('first_message_timeout'))) === before.get(rejected('first_message_timeout'))! + 1, 'first_message_timeout counted');
    const after = await scrape(e);
    assert.equal(after.get(rejected('frame_too_large')), before.get(rejected('frame_too_large')), 'no frame_too_large close');
    assert.ok(rss() - r0 < 256 * MIB, `RSS grew by ${((rss() - r0) / MIB).toFixed(0)} MiB`);
    await honest.flowing();
  });

  test('0x00FFFFFF as the first message (16 MiB - 1, the largest a binary stream can start with): a fatal FRAME_TOO_LARGE, closed at once', async () => {
    const r0 = rss();
    const before = await scrape(e);
    const c = await Client.open(port);
    const t0 = Date.now();
    await c.send(Buffer.concat([Buffer.from([0x00, 0xff, 0xff, 0xff]), Buffer.alloc(2 * MIB, 0x91)])).catch(() => undefined);
    const err = await until(() => c.messages().find((m) => m.t === 'error'), 'error message');
    assert.equal(err.code, 'RADAR_ERR_FRAME_TOO_LARGE');
    // Before the hello nothing is skipped: oversize is fatal (docs/protocol.md).
    assert.equal(err.fatal, true);
    await closedWithin(c, 3000, t0);
    await until(async () => (await metric(e, rejected('frame_too_large'))) === before.get(rejected('frame_too_large'))! + 1, 'frame_too_large counted');
    const after = await scrape(e);
    assert.equal(after.get(dropped('frame_too_large')), before.get(dropped('frame_too_large'))! + 1);
    assert.ok(rss() - r0 < 256 * MIB, `RSS grew by ${((rss() - r0) / MIB).toFixed(0)} MiB`);
    await honest.flowing();
  });
});

// ---- connection flood ------------------------------------------------------------------

describe('connection flood beyond limits.max_connections', () => {
  let e: Engine;
  let port: number;
  before(async () => {
    e = await engine({ limits: { max_connections: 20 } });
    port = e.tcpAddress!.port;
  });
  after(async () => {
    await settledAccounting(e);
  });

  test('60 connections against a limit of 20: 40 refused and counted, the 20 keep working, and after they close new ones are accepted', async () => {
    const honest = await HonestNode.start(port, 'honest-flood');
    const first: Client[] = [];
    for (let i = 0; i < 19; i++) first.push(await Client.open(port));
    await until(async () => (await metric(e, 'radar_ingest_connections_open')) === 20, '20 open');
    const before = await metric(e, rejected('max_connections'));

    const flood = await Promise.all(Array.from({ length: 40 }, () => Client.open(port)));
    await until(() => flood.every((c) => c.closed), 'the 40 over the limit closed');
    await until(async () => (await metric(e, rejected('max_connections'))) === before + 40, '40 max_connections rejections');
    assert.ok(flood.every((c) => c.bytes().length === 0), 'refused connections get no bytes');
    assert.equal(first.filter((c) => c.closed).length, 0, 'none of the first 20 was closed');

    // The accepted ones still work: the honest binary node, and a line node on one of the others.
    await honest.flowing();
    const written = await metric(e, 'radar_ingest_frames_written_total');
    await first[7]!.send(lineFrame('flood-line', 1757400000000));
    await until(async () => (await metric(e, 'radar_ingest_frames_written_total')) >= written + 1, 'line frame on an accepted connection written');

    // Everything closed: the slots are free again.
    await honest.stop();
    for (const c of first) c.destroy();
    await until(async () => (await metric(e, 'radar_ingest_connections_open')) === 0, 'all closed');
    const again = await Promise.all(Array.from({ length: 20 }, () => Client.open(port)));
    await Promise.all(again.map((c, i) => c.send(encodeHello(`again-${i}`, TOKEN))));
    await until(() => again.every((c) => c.messages().some((m) => m.t === 'welcome')), '20 new connections welcomed');
    assert.equal(await metric(e, rejected('max_connections')), before + 40, 'no more refusals');
    for (const c of again) c.destroy();
    await until(async () => (await metric(e, 'radar_ingest_connections_open')) === 0, 'all closed again');
  });
});

// ---- oversize, nested, megabyte lines (default 1 MiB frame limit) ----------------------

describe('absurd lengths, deep nesting and megabyte lines', () => {
  let e: Engine;
  let port: number;
  let honest: HonestNode;
  const sink = new CollectingSink();
  before(async () => {
    e = await engine({}, sink);
    port = e.tcpAddress!.port;
    honest = await HonestNode.start(port, 'honest-big');
  });
  after(async () => {
    await honest.stop();
    assert.equal(await metric(e, 'radar_ingest_shard_restarts_total'), 0, 'no shard crashed');
    await settledAccounting(e);
  });

  /** {t:'f', seq, ts, det, adsb: [{d: <depth nested arrays>}]} by hand: msgpackr cannot encode 100k levels. */
  function frameWithDeepAdsb(seq: number, depth: number): Buffer {
    const head = encodeMessage({ t: 'f', seq, ts: 7000 + seq, det: Buffer.alloc(24) }).subarray(4);
    return prefix(Buffer.concat([Buffer.from([head[0]! + 1]), head.subarray(1), Buffer.from([0xa4, ...Buffer.from('adsb'), 0x91, 0x81, 0xa1, 0x64]),
      Buffer.alloc(depth, 0x91), Buffer.from([0xc0])]));
  }

  async function welcomed(node: string): Promise<Client> {
    const c = await Client.open(port);
    await c.send(encodeHello(node, TOKEN));
    await until(() => c.messages().some((m) => m.t === 'welcome'), `${node} welcomed`);
    return c;
  }

  for (const [what, len] of [['4 GiB (0xFFFFFFFF)', 0xffffffff], ['16 MiB + 1 (just over 16 x max_frame_bytes)', 16 * MIB + 1]] as const) {
    test(`a ${what} length prefix after a valid hello: RADAR_ERR_FRAME_TOO_LARGE, then close; counted; nothing allocated`, async () => {
      const before = await scrape(e);
      const r0 = rss();
      const c = await welcomed(`huge-${len}`);
      const h = Buffer.alloc(4);
      h.writeUInt32BE(len, 0);
      c.socket.write(h);
      c.socket.write(Buffer.alloc(4 * MIB, 0x42)); // a body that never fits: must not be buffered
      await closedWithin(c, 5000);
      const errs = c.messages().filter((m) => m.t === 'error');
      assert.equal(errs.length, 1, JSON.stringify(errs));
      assert.equal(errs[0]!.code, 'RADAR_ERR_FRAME_TOO_LARGE');
      assert.equal(errs[0]!.fatal, true);
      await until(async () => (await metric(e, rejected('frame_too_large'))) === before.get(rejected('frame_too_large'))! + 1, 'close counted frame_too_large');
      const after = await scrape(e);
      assert.equal(after.get(dropped('frame_too_large')), before.get(dropped('frame_too_large'))! + 1);
      assert.ok(rss() - r0 < 256 * MIB, `RSS grew by ${((rss() - r0) / MIB).toFixed(0)} MiB`);
      await honest.flowing();
    });
  }

  test('a 2 MiB message (over max_frame_bytes, under 16x): skipped unread with a non-fatal error; the next frame is acked', async () => {
    const before = await scrape(e);
    const c = await welcomed('skip-2m');
    const h = Buffer.alloc(4);
    h.writeUInt32BE(2 * MIB, 0);
    await c.send(Buffer.concat([h, Buffer.alloc(2 * MIB, 0xc1)]));
    await c.send(encodeFrame({ seq: 1, timestamp: 5000, delay: [1], doppler: [2], snr: [3] }));
    await until(() => c.messages().some((m) => m.t === 'ack' && m.seq === 1), 'frame after the oversize message acked');
    const err = c.messages().find((m) => m.t === 'error');
    assert.equal(err?.code, 'RADAR_ERR_FRAME_TOO_LARGE');
    assert.equal(err?.fatal, false);
    assert.equal(c.closed, false);
    await until(() => sink.of('skip-2m').length === 1, 'frame delivered');
    assert.deepEqual(sink.of('skip-2m').map((f) => f.timestamp), [5000]);
    const after = await scrape(e);
    assert.equal(after.get(dropped('frame_too_large')), before.get(dropped('frame_too_large'))! + 1);
    c.destroy();
    await honest.flowing();
  });

  test('deeply nested msgpack (100k arrays, 100k maps, an adsb entry 100k deep): rejected and counted, no crash, the connection and shard carry on', async () => {
    const before = await scrape(e);
    const c = await welcomed('deep');
    const deepArrays = Buffer.concat([Buffer.alloc(100_000, 0x91), Buffer.from([0xc0])]);
    const deepMaps = Buffer.concat([Buffer.alloc(300_000).fill(Buffer.from([0x81, 0xa1, 0x61])), Buffer.from([0xc0])]);
    c.socket.write(prefix(deepArrays));
    c.socket.write(prefix(deepMaps));
    c.socket.write(frameWithDeepAdsb(1, 100_000));
    await c.send(encodeFrame({ seq: 3, timestamp: 9000, delay: [1], doppler: [2], snr: [3] }));
    await until(() => c.messages().some((m) => m.t === 'ack' && m.seq === 3), 'the valid frame after them acked');
    const errs = c.messages().filter((m) => m.t === 'error');
    assert.deepEqual(errs.map((m) => [m.code, m.fatal]), [['RADAR_ERR_MALFORMED', false], ['RADAR_ERR_MALFORMED', false], ['RADAR_ERR_MALFORMED', false]],
      JSON.stringify(errs.map((m) => [m.code, m.message.slice(0, 80)])));
    assert.equal(c.closed, false);
    await until(() => sink.of('deep').length === 1, 'frame delivered');
    assert.deepEqual(sink.of('deep').map((f) => f.timestamp), [9000]);
    const after = await scrape(e);
    assert.equal(after.get(dropped('malformed')), before.get(dropped('malformed'))! + 3);
    assert.equal(after.get('radar_ingest_shard_restarts_total'), 0);
    c.destroy();
    await honest.flowing();
  });

  describe('regression: deep adsb', () => {
    // Was a bug: an adsb entry 100 or 3000 levels deep reached the ring, and retina-tracker's
    // json.loads raises RecursionError on it; the line protocol rejects more than 32 levels.
    test('an adsb entry nested deeper than the line protocol allows is rejected, not handed to the tracker', async () => {
      const before = await scrape(e);
      const c = await welcomed('deep-adsb');
      await c.send(Buffer.concat([frameWithDeepAdsb(1, 100), frameWithDeepAdsb(2, 3000)]));
      await until(() => c.messages().some((m) => m.t === 'ack' && m.seq === 2), 'both settled');
      const errs = c.messages().filter((m) => m.t === 'error');
      assert.deepEqual(errs.map((m) => [m.code, m.seq, m.fatal]), [['RADAR_ERR_INVALID_FRAME', 1, false], ['RADAR_ERR_INVALID_FRAME', 2, false]]);
      assert.equal(sink.of('deep-adsb').length, 0, 'nothing the tracker cannot parse reaches it');
      const after = await scrape(e);
      assert.equal(after.get(dropped('invalid_frame')), before.get(dropped('invalid_frame'))! + 2);
      c.destroy();
    });
  });

  test('line protocol: 1 MiB of "[" is malformed, 1 MiB + 1 is frame_too_large, 1 MiB of nesting is malformed; the connection stays open and the next frame is delivered', async () => {
    const before = await scrape(e);
    const c = await Client.open(port);
    // Before authentication (junk lines are skipped, counted) ...
    await c.send(Buffer.concat([Buffer.alloc(MIB, '['), Buffer.from('\n')]));
    await c.send(Buffer.concat([Buffer.alloc(MIB + 1, '['), Buffer.from('\n')]));
    // ... and after it.
    await c.send(lineFrame('big-line', 1757400000001));
    const nest = Buffer.concat([Buffer.from('{"node_id":"big-line","x":'), Buffer.alloc(MIB - 26, '['), Buffer.from('\n')]);
    assert.equal(nest.length, MIB + 1);
    await c.send(nest);
    await c.send(lineFrame('big-line', 1757400000002));
    await until(() => sink.of('big-line').length === 2, 'both valid frames delivered');
    assert.deepEqual(sink.of('big-line').map((f) => f.timestamp), [1757400000001, 1757400000002]);
    assert.equal(c.closed, false, 'the connection stays open');
    const after = await scrape(e);
    assert.equal(after.get(dropped('malformed')), before.get(dropped('malformed'))! + 2);
    assert.equal(after.get(dropped('frame_too_large')), before.get(dropped('frame_too_large'))! + 1);
    c.destroy();
    await honest.flowing();
  });
});

// ---- HTTP bodies -----------------------------------------------------------------------

interface RawResp { status: number; headers: Record<string, string>; body: string }

/**
 * One HTTP/1.1 request on a raw socket: headers, then `body` (or `total` bytes in
 * 16 KiB pieces, chunked or not) without waiting for the server to read it; resolves
 * with the first complete response. Write errors after the server answered and
 * closed are expected (it refuses before reading everything).
 */
function rawHttp(port: number, method: string, path: string, headers: Record<string, string>,
  body: Buffer | { total: number; chunked: boolean }): Promise<RawResp> {
  return new Promise((resolve, reject) => {
    const s: Socket = connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    let done = false;
    const timer = setTimeout(() => finish(new Error(`no complete response to ${method} ${path} (got ${Buffer.concat(got).toString('latin1').slice(0, 200)})`)), 10000);
    const finish = (r: RawResp | Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      if (r instanceof Error) reject(r);
      else resolve(r);
    };
    const parse = (): void => {
      const b = Buffer.concat(got);
      const he = b.indexOf('\r\n\r\n');
      if (he < 0) return;
      const { status, headers: hs } = parseHttpHead(b, he);
      const n = Number(hs['content-length'] ?? 0);
      if (b.length - he - 4 < n) return;
      finish({ status, headers: hs, body: b.subarray(he + 4, he + 4 + n).toString('utf8') });
    };
    s.on('data', (d: Buffer) => {
      got.push(d);
      parse();
    });
    s.on('error', () => undefined); // EPIPE / ECONNRESET once the server refused and closed
    s.on('close', () => {
      parse();
      finish(new Error(`connection closed before a complete response to ${method} ${path}`));
    });
    s.on('connect', () => {
      const h = { host: '127.0.0.1', ...headers };
      s.write(`${method} ${path} HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
      if (Buffer.isBuffer(body)) {
        if (body.length) s.write(body);
        return;
      }
      let sent = 0;
      const piece = Buffer.alloc(16 * 1024, 0x20);
      const pump = (): void => {
        while (!done && !s.destroyed && sent < body.total) {
          const n = Math.min(piece.length, body.total - sent);
          sent += n;
          const ok = body.chunked ? s.write(`${n.toString(16)}\r\n`) && s.write(piece.subarray(0, n)) && s.write('\r\n') : s.write(piece.subarray(0, n));
          if (!ok) {
            s.once('drain', pump);
            return;
          }
        }
        if (!done && !s.destroyed && body.chunked && sent >= body.total) s.write('0\r\n\r\n');
      };
      pump();
    });
  });
}

describe('HTTP bodies: huge, malformed, mistyped on every control endpoint that reads one', () => {
  let e: Engine;
  let port: number;
  let honest: HonestNode;
  let agentToken = '';
  const MAX_BODY = 65536;
  const reg = (id: string): Buffer => Buffer.from(JSON.stringify({ id, name: 'n', group: 'g1', version: '1', capabilities: [] }));

  before(async () => {
    e = await engine({ http: { api_token: API, max_body_bytes: MAX_BODY } });
    port = e.httpAddress!.port;
    honest = await HonestNode.start(e.tcpAddress!.port, 'honest-http');
    const r = await rawHttp(port, 'POST', '/api/v1/agents/register',
      { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'content-length': String(reg('agent-ok').length) }, reg('agent-ok'));
    assert.equal(r.status, 200, r.body);
    agentToken = (JSON.parse(r.body) as { accessToken: string }).accessToken;
  });
  after(async () => {
    await honest.stop();
    await settledAccounting(e);
  });

  const endpoints = (): { name: string; path: string; auth: string; valid: Buffer }[] => [
    { name: 'POST /register', path: '/api/v1/agents/register', auth: TOKEN, valid: reg('agent-x') },
    { name: 'POST /commands', path: '/api/v1/agents/commands', auth: API, valid: Buffer.from('{"type":"replay"}') },
    { name: 'POST /groups/g1/commands', path: '/api/v1/agents/groups/g1/commands', auth: API, valid: Buffer.from('{"type":"replay"}') },
    { name: 'POST /agent-ok/commands', path: '/api/v1/agents/agent-ok/commands', auth: API, valid: Buffer.from('{"type":"replay"}') },
    { name: 'POST /agent-ok/commands/c-1/ack', path: '/api/v1/agents/agent-ok/commands/c-1/ack', auth: agentToken, valid: Buffer.from('{}') },
  ];

  function jsonError(r: RawResp, status: number, what: string): Record<string, unknown> {
    assert.equal(r.status, status, `${what}: ${r.status} ${r.body}`);
    assert.match(r.headers['content-type'] ?? '', /^application\/json/, `${what}: JSON error`);
    const b = JSON.parse(r.body) as Record<string, unknown>;
    assert.equal(typeof b.error, 'string', `${what}: {"error": ...}`);
    return b;
  }

  async function agentIds(): Promise<string[]> {
    const list = await rawHttp(port, 'GET', '/api/v1/agents', { authorization: `Bearer ${API}` }, Buffer.alloc(0));
    assert.equal(list.status, 200);
    return (JSON.parse(list.body) as { agents: { id: string }[] }).agents.map((a) => a.id).sort();
  }

  test('every attack on every endpoint: 413 / 400 / 415 with a JSON error; nothing registered, no command created, the server stays up', async () => {
    const t0 = honest.acked();
    const agentsBefore = await agentIds(); // agent-ok, and the honest TCP node (nodes are agents)
    assert.ok(agentsBefore.includes('agent-ok'));
    for (const ep of endpoints()) {
      const auth = { authorization: `Bearer ${ep.auth}` };
      const json = { ...auth, 'content-type': 'application/json' };
      // Huge, declared: refused before the body is read (only 64 KiB of the 10 MiB are sent).
      let r = await rawHttp(port, 'POST', ep.path, { ...json, 'content-length': String(10 * MIB) }, { total: 64 * 1024, chunked: false });
      jsonError(r, 413, `${ep.name} content-length 10 MiB`);
      assert.equal(r.headers.connection, 'close', `${ep.name}: the connection is not kept for the rest of the body`);
      // Huge, chunked without a length: refused once the limit is passed.
      r = await rawHttp(port, 'POST', ep.path, { ...json, 'transfer-encoding': 'chunked' }, { total: 4 * MAX_BODY, chunked: true });
      jsonError(r, 413, `${ep.name} chunked ${4 * MAX_BODY} bytes`);
      // Exactly one byte over, declared.
      r = await rawHttp(port, 'POST', ep.path, { ...json, 'content-length': String(MAX_BODY + 1) }, Buffer.alloc(MAX_BODY + 1, 0x20));
      jsonError(r, 413, `${ep.name} max_body_bytes + 1`);
      // Malformed JSON.
      for (const bad of ['{"id":', '{', 'nul', '{"a":1}}', '\xff\xfe', '[1,2']) {
        const b = Buffer.from(bad, 'latin1');
        r = await rawHttp(port, 'POST', ep.path, { ...json, 'content-length': String(b.length) }, b);
        const body = jsonError(r, 400, `${ep.name} malformed ${JSON.stringify(bad)}`);
        assert.match(String(body.error), /invalid JSON/);
      }
      // Well-formed JSON of the wrong shape.
      for (const bad of ['[]', '"x"', '42', '{"type":"nope","id":5}']) {
        if (ep.name.endsWith('/ack') && bad === '{"type":"nope","id":5}') continue; // {result?} takes any object
        r = await rawHttp(port, 'POST', ep.path, { ...json, 'content-length': String(bad.length) }, Buffer.from(bad));
        const body = jsonError(r, 400, `${ep.name} wrong shape ${bad}`);
        assert.equal(body.error, 'invalid request body');
      }
      // Wrong content type (and none at all), with a body that would otherwise be valid.
      for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'application/jsonp', null]) {
        const h: Record<string, string> = { ...auth, 'content-length': String(ep.valid.length) };
        if (ct !== null) h['content-type'] = ct;
        r = await rawHttp(port, 'POST', ep.path, h, ep.valid);
        jsonError(r, 415, `${ep.name} content-type ${ct}`);
      }
      // Wrong content type on a huge chunked body: refused without reading it.
      r = await rawHttp(port, 'POST', ep.path, { ...auth, 'content-type': 'text/plain', 'transfer-encoding': 'chunked' }, { total: 4 * MAX_BODY, chunked: true });
      jsonError(r, 415, `${ep.name} text/plain chunked`);
    }

    // Still up, nothing happened.
    assert.equal((await httpGet(port, '/healthz')).status, 200);
    assert.deepEqual(await agentIds(), agentsBefore, 'nothing registered');
    const cmds = await rawHttp(port, 'GET', '/api/v1/agents/agent-ok/commands', { authorization: `Bearer ${API}` }, Buffer.alloc(0));
    assert.deepEqual((JSON.parse(cmds.body) as { commands: unknown[] }).commands, [], 'no command created');
    for (const [k, v] of await scrape(e)) if (k.startsWith('radar_ingest_commands_total{')) assert.equal(v, 0, k);
    assert.ok(honest.acked() > t0, 'the honest node kept flowing');
    await honest.flowing();
  });

  test('endpoints that take no body stay well-behaved when sent one (heartbeat, DELETE, PUT)', async () => {
    const agentsBefore = await agentIds();
    const auth = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` });
    // A heartbeat reads no body (docs/agents.md): answered at once, whatever follows.
    let r = await rawHttp(port, 'POST', '/api/v1/agents/agent-ok/heartbeat',
      { ...auth(agentToken), 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, { total: 4 * MAX_BODY, chunked: true });
    assert.equal(r.status, 200, r.body);
    r = await rawHttp(port, 'POST', '/api/v1/agents/agent-ok/heartbeat', { ...auth(agentToken), 'content-type': 'text/plain', 'content-length': '7' }, Buffer.from('{"id":'));
    assert.equal(r.status, 200, r.body);
    // DELETE of an unknown agent with a huge body: 404 without reading it.
    r = await rawHttp(port, 'DELETE', '/api/v1/agents/nobody', { ...auth(API), 'content-type': 'application/json', 'content-length': String(10 * MIB) }, { total: 64 * 1024, chunked: false });
    jsonError(r, 404, 'DELETE unknown agent with a body');
    // PUT where only POST exists: 405.
    r = await rawHttp(port, 'PUT', '/api/v1/agents/register', { ...auth(TOKEN), 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, { total: 4 * MAX_BODY, chunked: true });
    jsonError(r, 405, 'PUT /register');
    assert.equal((await httpGet(port, '/healthz')).status, 200);
    assert.deepEqual(await agentIds(), agentsBefore, 'nothing registered');
    await honest.flowing();
  });
});
