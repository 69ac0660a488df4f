// Hostile peers on the node port, through real sockets into the engine: token
// bypasses on the line protocol, peers that never read their replies, huge seqs,
// oversize hello fields, one refused node on a gateway connection, and every
// binary message type sent malformed, mistyped and oversize before and after the
// hello. Each case checks what the peer sees, the counters, and that the books
// balance and other connections carry on.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { request } from 'node:http';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Engine, EngineOptions } from '../src/engine/engine.js';
import {
  startEngine, Client, CollectingSink, until, scrape, assertAccounting, lineFrame, binaryMessages, TOKEN,
} from './helpers.js';
import {
  encodeHello, encodeFrame, encodeMessage, MESSAGE_TYPES, T_HELLO, T_FRAME, T_HEARTBEAT, T_RESET,
} from '../src/protocol/binary-protocol.js';
import { ErrorCodes } from '../src/protocol/errors.js';
import { MAX_ERROR_STREAK } from '../src/shard/binary/binary-handler.js';
import { MAX_REFUSED_NODES } from '../src/shard/shard.js';

const API = 'ctl-secret';
const VICTIM = 'victim-secret';
const MIB = 1024 * 1024;

const engines: Engine[] = [];
after(async () => {
  await Promise.all(engines.map((e) => e.stop()));
});

async function eng(over: Record<string, unknown> = {}, opts: Partial<EngineOptions> = {}): Promise<Engine> {
  const e = await startEngine({ http: { api_token: API }, ...over }, opts);
  engines.push(e);
  return e;
}

const rejected = (r: string): string => `radar_ingest_connections_rejected_total{reason="${r}"}`;
const dropped = (r: string): string => `radar_ingest_frames_dropped_total{reason="${r}"}`;

async function metric(e: Engine, name: string): Promise<number> {
  return (await scrape(e)).get(name) ?? 0;
}

/** A frame line with no token at all. */
function forged(node: string, ts: number): string {
  return `${JSON.stringify({ node_id: node, timestamp: ts, delay: [1.5], doppler: [2.5], snr: [3.5] })}\n`;
}

function frame(seq: number, ts = seq): Buffer {
  return encodeFrame({ seq, timestamp: ts, delay: [1.5], doppler: [2.5], snr: [3.5] });
}

/** The host closed the connection (bounded: a test fails rather than hangs). */
async function closed(c: Client): Promise<void> {
  await until(() => c.closed, 'the host closes the connection');
}

async function welcomed(c: Client): Promise<Record<string, any>> {
  return until(() => c.messages().find((m) => m.t === 'welcome'), 'welcome');
}

function post(port: number, path: string, body?: unknown, token: string | null = API): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? '' : JSON.stringify(body);
    const headers: Record<string, string | number> = { 'content-length': Buffer.byteLength(text) };
    if (text !== '') headers['content-type'] = 'application/json';
    if (token !== null) headers.authorization = `Bearer ${token}`;
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null') }));
    });
    req.on('error', reject);
    req.end(text);
  });
}

/** A binary node that keeps sending frames while an attack runs; checks they all arrive in order. */
class Honest {
  private seq = 0;
  private timer: NodeJS.Timeout | null = null;
  private constructor(readonly c: Client, readonly node: string, private readonly sink: CollectingSink) {}
  static async start(port: number, node: string, sink: CollectingSink): Promise<Honest> {
    const c = await Client.open(port);
    await c.send(encodeHello(node, TOKEN));
    await welcomed(c);
    const h = new Honest(c, node, sink);
    h.timer = setInterval(() => void h.c.send(frame(++h.seq)).catch(() => undefined), 10);
    return h;
  }
  async stop(): Promise<void> {
    clearInterval(this.timer!);
    const n = this.seq;
    await until(() => this.sink.of(this.node).length === n, `all ${n} honest frames delivered`);
    assert.deepEqual(this.sink.of(this.node).map((f) => f.timestamp), Array.from({ length: n }, (_, i) => i + 1));
    assert.equal(this.c.closed, false, 'the honest connection stayed open');
    this.c.destroy();
  }
}

// ---- per-node tokens ---------------------------------------------------------------------

describe('per-node tokens (line protocol)', () => {
  test('a node with its own token is claimed only with it, whatever the first message on the connection was', async () => {
    const sink = new CollectingSink();
    const e = await eng({ tcp_server: { tokens: { victim: VICTIM } }, limits: { reconnect_max: 3 } }, { sink });
    const port = e.tcpAddress!.port;
    const genuine = await Client.open(port);
    await genuine.send(lineFrame('victim', 1, 2, VICTIM));
    await until(() => sink.of('victim').length === 1, 'genuine frame');

    const firsts = [
      JSON.stringify({ token: TOKEN, type: 'heartbeat' }), // no node id
      `{"node_id":"vic\\u0074im","token":"${TOKEN}","type":"heartbeat"}`, // escaped id
      JSON.stringify({ node_id: '../x', token: TOKEN, type: 'heartbeat' }), // invalid id
      lineFrame('other', 1).trim(), // a legitimate node with the shared token
    ];
    const forgeries = [(ts: number) => forged('victim', ts), (ts: number) => lineFrame('victim', ts, 2, TOKEN)];
    let attacks = 0;
    for (const first of firsts) {
      for (const forge of forgeries) {
        const c = await Client.open(port);
        await c.send(`${first}\n${forge(100 + attacks)}`).catch(() => undefined);
        await until(() => c.closed, 'the forged claim closes the connection');
        attacks++;
      }
    }
    // The genuine connection was never superseded, the node never banned; it keeps delivering.
    await genuine.send(lineFrame('victim', 2, 2, VICTIM));
    await until(() => sink.of('victim').length === 2, 'genuine frame after the attacks');
    assert.deepEqual(sink.of('victim').map((f) => f.timestamp), [1, 2]);
    assert.equal(genuine.closed, false);
    assert.equal(e.nodes.get('victim')!.bannedUntil, 0);
    await until(async () => (await metric(e, rejected('auth_failed'))) === attacks, `${attacks} auth_failed closes`);
    const m = await assertAccounting(e);
    assert.equal(m.get(dropped('auth_failed')), attacks, 'every forged frame counted auth_failed');
    assert.equal(m.get('radar_ingest_connections_closed_total{reason="superseded"}'), 0);
    genuine.destroy();
  });

  test('a gateway authenticated with the shared token carries further nodes without repeating it; a node with its own token still needs its own', async () => {
    const sink = new CollectingSink();
    const e = await eng({ tcp_server: { tokens: { victim: VICTIM } } }, { sink });
    const port = e.tcpAddress!.port;
    const gw = await Client.open(port);
    await gw.send(lineFrame('g1', 1) + forged('g2', 1) + forged('g3', 1) + lineFrame('victim', 1, 2, VICTIM) + forged('g2', 2));
    await until(() => sink.frames.length === 5, 'five frames through the gateway');
    assert.equal(gw.closed, false);
    assert.deepEqual(sink.frames.map((f) => `${f.node}@${f.timestamp}`).sort(), ['g1@1', 'g2@1', 'g2@2', 'g3@1', 'victim@1']);
    // On another gateway, a further node with its own token, without it: the gateway is closed.
    const gw2 = await Client.open(port);
    await gw2.send(lineFrame('g5', 1) + forged('victim', 2)).catch(() => undefined);
    await closed(gw2);
    await until(() => sink.of('g5').length === 1, 'g5 delivered before the close');
    // A connection authenticated by a node's own token is not a shared-token gateway.
    const own = await Client.open(port);
    await own.send(lineFrame('victim', 3, 2, VICTIM) + forged('g4', 1)).catch(() => undefined);
    await closed(own);
    assert.equal(sink.of('g4').length, 0);
    await until(() => sink.of('victim').length === 2, 'the own-token frame arrived');
    const m = await assertAccounting(e);
    assert.equal(m.get(dropped('auth_failed')), 2);
  });

  test('with an empty shared token, a node with its own token still needs it (line and binary)', async () => {
    const sink = new CollectingSink();
    const e = await eng({ tcp_server: { token: '', tokens: { victim: VICTIM } } }, { sink });
    const port = e.tcpAddress!.port;
    // No node id first (the empty shared token passes), then a forged claim.
    const a = await Client.open(port);
    await a.send(`${JSON.stringify({ token: '', type: 'heartbeat' })}\n${forged('victim', 1)}`).catch(() => undefined);
    await closed(a);
    const b = await Client.open(port);
    await b.send(lineFrame('free', 1, 2, '') + forged('victim', 2)).catch(() => undefined);
    await closed(b);
    const c = await Client.open(port);
    await c.send(lineFrame('victim', 3, 2, 'wrong')).catch(() => undefined);
    await closed(c);
    const bin = await Client.open(port);
    await bin.send(encodeHello('victim', 'wrong'));
    await closed(bin);
    assert.equal(bin.messages()[0]?.code, ErrorCodes.AUTH_FAILED);
    assert.equal(sink.of('victim').length, 0);
    // The right token works on both protocols; nodes without a token of their own show the empty one.
    const ok = await Client.open(port);
    await ok.send(lineFrame('victim', 4, 2, VICTIM));
    const okBin = await Client.open(port);
    await okBin.send(encodeHello('free-bin', ''));
    await welcomed(okBin);
    await until(() => sink.of('victim').length === 1 && sink.of('free').length === 1, 'accepted frames');
    const m = await assertAccounting(e);
    assert.equal(m.get(rejected('auth_failed')), 4);
    ok.destroy();
    okBin.destroy();
  });
});

// ---- one refused node on a gateway ------------------------------------------------------------

describe('a refused node on a gateway connection (line protocol)', () => {
  test('g2 refused: its frames are counted node_refused and logged once; g1 on the same connection keeps delivering and is not banned', async () => {
    const logs: string[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write(chunk, _enc, cb) { logs.push(String(chunk)); cb(); } }));
    const sink = new CollectingSink();
    const e = await eng({ limits: { reconnect_max: 2 } }, {
      sink, logger,
      hooks: { onUnknownNode: (i) => (i.node === 'g2' ? { accept: false, reason: 'ports_exhausted', message: 'no tracker port free for g2' } : { accept: true }) },
    });
    const gw = await Client.open(e.tcpAddress!.port);
    let text = '';
    for (let i = 1; i <= 50; i++) text += lineFrame('g1', i) + lineFrame('g2', i);
    await gw.send(text);
    await until(() => sink.of('g1').length === 50, 'all g1 frames');
    await gw.send(lineFrame('g2', 51) + lineFrame('g1', 51));
    await until(() => sink.of('g1').length === 51, 'g1 after more g2 frames');
    assert.deepEqual(sink.of('g1').map((f) => f.timestamp), Array.from({ length: 51 }, (_, i) => i + 1));
    assert.equal(sink.of('g2').length, 0);
    assert.equal(gw.closed, false);
    const m = await assertAccounting(e);
    assert.equal(m.get(dropped('node_refused')), 51);
    assert.equal(m.get(rejected('node_refused')), 0);
    assert.equal(e.nodes.get('g1')!.bannedUntil, 0);
    assert.equal(logs.filter((l) => l.includes('no tracker port free for g2')).length, 1, 'the refusal is logged once');
    gw.destroy();
  });

  test(`a line connection whose ${MAX_REFUSED_NODES + 1}th distinct node is refused is closed (an id flood, not a gateway)`, async () => {
    const e = await eng({}, { hooks: { onUnknownNode: (i) => (i.node.startsWith('x-') ? { accept: false, reason: 'disabled', message: 'no' } : { accept: true }) } });
    const c = await Client.open(e.tcpAddress!.port);
    let text = lineFrame('gw-ok', 1);
    for (let i = 1; i <= MAX_REFUSED_NODES; i++) text += lineFrame(`x-${i}`, 1);
    await c.send(text);
    await until(async () => (await metric(e, dropped('node_refused'))) === MAX_REFUSED_NODES, 'all refused');
    assert.equal(c.closed, false);
    await c.send(lineFrame(`x-${MAX_REFUSED_NODES + 1}`, 1)).catch(() => undefined);
    await closed(c);
    await until(async () => (await metric(e, rejected('node_refused'))) === 1, 'closed as node_refused');
    const m = await assertAccounting(e);
    assert.equal(m.get(dropped('node_refused')), MAX_REFUSED_NODES + 1);
  });

  test('binary: a refused node still gets a fatal RADAR_ERR_NODE_REFUSED and the close', async () => {
    const e = await eng({}, { hooks: { onUnknownNode: () => ({ accept: false, reason: 'disabled', message: 'no' }) } });
    const c = await Client.open(e.tcpAddress!.port);
    await c.send(encodeHello('b2', TOKEN));
    await closed(c);
    assert.deepEqual(c.messages().map((m) => [m.code, m.fatal]), [[ErrorCodes.NODE_REFUSED, true]]);
    await until(async () => (await metric(e, rejected('node_refused'))) === 1, 'counted');
  });
});

// ---- output a peer never reads ----------------------------------------------------------------

/** A raw socket that reads the welcome, then stops reading for good. */
async function nonReader(port: number, hello: Buffer | null): Promise<{ s: Socket; closed: Promise<void> }> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  const closed = new Promise<void>((r) => s.on('close', () => r()));
  await new Promise<void>((r) => s.once('connect', () => r()));
  if (hello) {
    const got: Buffer[] = [];
    s.write(hello);
    await new Promise<void>((r) => {
      const on = (d: Buffer): void => {
        got.push(d);
        if (binaryMessages(Buffer.concat(got)).some((m) => m.t === 'welcome')) {
          s.off('data', on);
          r();
        }
      };
      s.on('data', on);
    });
  }
  s.pause();
  return { s, closed };
}

function write(s: Socket, b: Buffer): Promise<boolean> {
  return new Promise((r) => s.write(b, (err) => r(!err)));
}

describe('replies a peer never reads', () => {
  test('a never-reading peer that draws error replies is closed with output_overflow; engine RSS stays bounded; other nodes carry on', async () => {
    const sink = new CollectingSink();
    const e = await eng({ limits: { max_output_bytes: 65536 } }, { sink });
    const port = e.tcpAddress!.port;
    const honest = await Honest.start(port, 'honest-1', sink);
    const rss0 = process.memoryUsage.rss();
    let peak = rss0;
    const { s, closed } = await nonReader(port, encodeHello('amp', TOKEN));
    // One frame the host accepts, then errors up to the streak limit: as many replies as the rules allow.
    const bad = encodeMessage({ t: T_FRAME, seq: 'x' });
    let seq = 0;
    let sent = 0;
    let done = false;
    void closed.then(() => { done = true; });
    const t0 = Date.now();
    while (!done && Date.now() - t0 < 60000) {
      const round = [frame(++seq)];
      for (let i = 0; i < MAX_ERROR_STREAK - 1; i++) round.push(bad);
      const b = Buffer.concat(round);
      if (!(await write(s, b))) break;
      sent += b.length;
      peak = Math.max(peak, process.memoryUsage.rss());
    }
    await until(() => done, 'the non-reader is closed', 10000);
    const growth = (peak - rss0) / MIB;
    console.log(`  non-reader: sent ${(sent / MIB).toFixed(1)} MiB in ${Date.now() - t0} ms before the close; RSS growth ${growth.toFixed(1)} MiB`);
    await until(async () => (await metric(e, rejected('output_overflow'))) === 1, 'output_overflow counted');
    assert.ok(growth < 100, `RSS grew by ${growth.toFixed(0)} MiB`);
    await honest.stop();
    await until(async () => (await scrape(e)).get('radar_ingest_frames_in_rings') === 0, 'rings drained');
    await assertAccounting(e);
    s.destroy();
  });

  test('before the hello, a malformed message is fatal: one error, then the close (an unauthenticated peer draws one reply)', async () => {
    const e = await eng();
    const port = e.tcpAddress!.port;
    const c = await Client.open(port);
    const junk = Buffer.concat(Array.from({ length: 1000 }, () => Buffer.from([0, 0, 0, 1, 0x81]))); // a map of one entry, cut short
    await c.send(junk).catch(() => undefined);
    await closed(c);
    assert.deepEqual(c.messages().map((m) => [m.code, m.fatal]), [[ErrorCodes.PROTOCOL, true]]);
    await until(async () => (await metric(e, rejected('protocol_error'))) === 1, 'protocol_error counted');
    const m = await assertAccounting(e);
    assert.equal(m.get(dropped('malformed')), 1);
  });

  test('a peer that keeps pumping after its fatal error is dropped within 64 KiB more, not read at line rate until the kill timer', async () => {
    const e = await eng();
    const s = connect(e.tcpAddress!.port, '127.0.0.1');
    await new Promise<void>((r) => s.once('connect', () => r()));
    let gone = false;
    s.on('error', () => undefined);
    s.on('close', () => { gone = true; });
    s.pause(); // never reads, as an amplifier does
    const t0 = Date.now();
    // A malformed first message (fatal), then 64 KiB chunks for as long as the host takes them.
    s.write(Buffer.from([0, 0, 0, 1, 0x81]));
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    let sent = 0;
    while (!gone && sent < 512 * MIB && Date.now() - t0 < 5000) {
      if (!s.write(chunk)) await new Promise((r) => { s.once('drain', r); setTimeout(r, 50); });
      sent += chunk.length;
    }
    await until(() => gone, 'the host drops the pumping peer', 5000);
    // Before, the host drained a closing peer for 2 s at line rate (hundreds of MB).
    const read = await metric(e, 'radar_ingest_bytes_received_total');
    assert.ok(read < 8 * MIB, `the host read ${(read / MIB).toFixed(1)} MiB from a peer it had closed`);
    assert.ok(Date.now() - t0 < 1900, `dropped after ${Date.now() - t0} ms (the kill timer is 2 s)`);
    await until(async () => (await metric(e, rejected('protocol_error'))) === 1, 'protocol_error counted');
    await assertAccounting(e);
  });

  test(`after the hello, ${MAX_ERROR_STREAK} errors in a row without an accepted frame are fatal (RADAR_ERR_PROTOCOL)`, async () => {
    const sink = new CollectingSink();
    const e = await eng({}, { sink });
    const c = await Client.open(e.tcpAddress!.port);
    await c.send(encodeHello('streak', TOKEN));
    await welcomed(c);
    // A frame resets the streak: MAX - 1 errors, a frame, then MAX errors stay open...
    const bad = encodeMessage({ t: 'nope' });
    await c.send(Buffer.concat([...Array(MAX_ERROR_STREAK - 1).fill(bad), frame(1), ...Array(MAX_ERROR_STREAK).fill(bad)]));
    await until(() => c.messages().filter((m) => m.t === 'error').length === 2 * MAX_ERROR_STREAK - 1, 'every error answered');
    assert.equal(c.closed, false);
    // ... and one more is the fatal one.
    await c.send(bad);
    await closed(c);
    const errs = c.messages().filter((m) => m.t === 'error');
    assert.equal(errs.length, 2 * MAX_ERROR_STREAK);
    assert.deepEqual([errs.at(-1)!.code, errs.at(-1)!.fatal], [ErrorCodes.PROTOCOL, true]);
    assert.ok(errs.slice(0, -1).every((m) => m.fatal === false));
    await until(async () => (await metric(e, rejected('protocol_error'))) === 1, 'counted');
    await until(() => sink.of('streak').length === 1, 'the one frame delivered');
    await assertAccounting(e);
  });
});

// ---- huge seq and the resume point -------------------------------------------------------------

describe('seq jumps and the resume point', () => {
  test('a seq more than limits.max_seq_jump ahead is a fatal RADAR_ERR_SEQ_JUMP (also on a fresh node); honest resends carry on', async () => {
    const sink = new CollectingSink();
    const e = await eng({}, { sink });
    const port = e.tcpAddress!.port;
    // A fresh node (resume point 0) cannot set seq 2^53-1.
    const a = await Client.open(port);
    await a.send(encodeHello('jumper', TOKEN));
    await welcomed(a);
    await a.send(frame(Number.MAX_SAFE_INTEGER));
    await closed(a);
    const err = a.messages().find((m) => m.t === 'error')!;
    assert.deepEqual([err.code, err.fatal], [ErrorCodes.SEQ_JUMP, true]);
    // Reconnected: still at 0; 1..3 accepted, then exactly max_seq_jump ahead is fine, one more is not.
    const b = await Client.open(port);
    await b.send(encodeHello('jumper', TOKEN));
    assert.equal((await welcomed(b)).last_seq, 0);
    await b.send(Buffer.concat([frame(1), frame(2), frame(3), frame(3 + 1_000_000, 4)]));
    await until(() => sink.of('jumper').length === 4, 'four frames');
    await b.send(frame(3 + 2_000_001, 5));
    await closed(b);
    const c = await Client.open(port);
    await c.send(encodeHello('jumper', TOKEN));
    assert.equal((await welcomed(c)).last_seq, 1_000_003);
    await until(async () => (await metric(e, rejected('seq_jump'))) === 2, 'two seq_jump closes');
    const m = await assertAccounting(e);
    assert.equal(m.get(dropped('seq_jump')), 2);
    assert.deepEqual(sink.of('jumper').map((f) => f.timestamp), [1, 2, 3, 4]);
    c.destroy();
  });

  test('POST /api/v1/nodes/{id}/resume-point: control token, 409 while connected, 404 unknown, 400 bad body; moves welcome.last_seq', async () => {
    const sink = new CollectingSink();
    const e = await eng({}, { sink });
    const port = e.tcpAddress!.port;
    const http = e.httpAddress!.port;
    const path = '/api/v1/nodes/rp/resume-point';
    const a = await Client.open(port);
    await a.send(encodeHello('rp', TOKEN));
    await welcomed(a);
    await a.send(Buffer.concat([frame(1), frame(2)]));
    await until(() => sink.of('rp').length === 2, 'two frames');
    assert.equal((await post(http, path, { last_seq: 0 }, null)).status, 401);
    assert.equal((await post(http, path, { last_seq: 0 }, 'wrong')).status, 401);
    assert.equal((await post(http, path, { last_seq: 0 })).status, 409, 'refused while a connection owns the node');
    assert.equal((await post(http, '/api/v1/nodes/nobody/resume-point', {})).status, 404);
    a.end();
    await until(() => e.nodes.get('rp')!.owner === null, 'released');
    for (const bad of [{ last_seq: -1 }, { last_seq: 1.5 }, { last_seq: 'x' }, { other: 1 }, [1]]) {
      const r = await post(http, path, bad);
      assert.equal(r.status, 400, JSON.stringify(bad));
    }
    // Reset to the start (no body: 0).
    const r0 = await post(http, path);
    assert.deepEqual([r0.status, r0.json], [200, { node: 'rp', last_seq: 0, previous: 2 }]);
    const b = await Client.open(port);
    await b.send(encodeHello('rp', TOKEN));
    assert.equal((await welcomed(b)).last_seq, 0);
    await b.send(frame(1, 10));
    await until(() => sink.of('rp').length === 3, 'seq 1 accepted again after the reset');
    b.end();
    await until(() => e.nodes.get('rp')!.owner === null, 'released again');
    // A node whose numbering is far ahead (the host lost its state): the operator sets the point.
    const r1 = await post(http, path, { last_seq: 5_000_000 });
    assert.deepEqual([r1.status, r1.json.previous], [200, 1]);
    const c = await Client.open(port);
    await c.send(encodeHello('rp', TOKEN));
    assert.equal((await welcomed(c)).last_seq, 5_000_000);
    await c.send(frame(5_000_001, 11));
    await until(() => sink.of('rp').length === 4, 'accepted after the move');
    await assertAccounting(e);
    c.destroy();
  });
});

// ---- hello fields -----------------------------------------------------------------------------

describe('binary hello fields', () => {
  test('a 500 KB group (and every other bad hello string) is a fatal RADAR_ERR_INVALID_HELLO and is never stored', async () => {
    const e = await eng({ limits: { max_frame_bytes: MIB }, ring: { size_bytes: 4 * MIB } });
    const port = e.tcpAddress!.port;
    const bad: Record<string, unknown>[] = [
      { group: 'g'.repeat(500_000) },
      { group: 'a/b' },
      { group: 7 },
      { token: 't'.repeat(2000) },
      { name: 'x\u0000y' },
      { name: 'n'.repeat(129) },
      { caps: 'det-f64' },
      { caps: [1] },
      { caps: ['c'.repeat(65)] },
      { caps: Array(65).fill('c') },
    ];
    for (const extra of bad) {
      const c = await Client.open(port);
      await c.send(encodeHello('hello-x', TOKEN, extra)).catch(() => undefined);
      await closed(c);
      const msgs = c.messages();
      assert.deepEqual(msgs.map((m) => [m.code, m.fatal]), [[ErrorCodes.INVALID_HELLO, true]], JSON.stringify(extra).slice(0, 80));
      assert.ok(JSON.stringify(msgs).length < 300, 'the error does not echo the field');
    }
    assert.equal(e.nodes.get('hello-x'), undefined, 'never claimed');
    const list = await new Promise<string>((resolve) => {
      request({ host: '127.0.0.1', port: e.httpAddress!.port, path: '/api/v1/agents', headers: { authorization: `Bearer ${API}` } }, (res) => {
        let s = '';
        res.on('data', (d) => { s += d; });
        res.on('end', () => resolve(s));
      }).end();
    });
    assert.ok(!list.includes('hello-x') && list.length < 1000, 'nothing stored or served');
    await until(async () => (await metric(e, rejected('protocol_error'))) === bad.length, 'each refusal counted');
    // The same rule as the HTTP registration API: a hello with a valid group is welcome.
    const ok = await Client.open(port);
    await ok.send(encodeHello('hello-ok', TOKEN, { group: 'north-1', name: 'Site Nord', caps: ['det-f64'] }));
    await welcomed(ok);
    assert.equal(e.agents.registry.get('hello-ok')?.group, 'north-1');
    const reg = await post(e.httpAddress!.port, '/api/v1/agents/register',
      { id: 'hello-ok', name: 'x', group: 'a/b', version: '1', capabilities: [] }, TOKEN);
    assert.equal(reg.status, 400);
    ok.destroy();
  });
});

// ---- every binary message type, before and after the hello ---------------------------------------

type Variant = 'empty' | 'mistyped' | 'oversize' | 'malformed';
const VARIANTS: Variant[] = ['empty', 'mistyped', 'oversize', 'malformed'];
const MAX_FRAME = 65536;

/** One hostile message of type `t`. Mistyped: every field any message has, with the wrong type. */
function hostile(t: string, v: Variant): Buffer {
  const mistyped = {
    t, v: 'one', node: 5, token: ['x'], caps: 'c', group: { g: 1 }, seq: 'x', ts: [], det: 'blob', adsb: 9,
    last_seq: 'x', max_frame: null, hb_ms: {}, code: 1, message: 2, fatal: 'no',
  };
  switch (v) {
    case 'empty': return encodeMessage({ t });
    case 'mistyped': return encodeMessage(mistyped);
    case 'oversize': return encodeMessage({ t, pad: Buffer.alloc(MAX_FRAME + 1) });
    case 'malformed': {
      // The body cut short: the map announces more than it holds.
      const body = encodeMessage({ t, seq: 1, ts: 1 }).subarray(4);
      const cut = body.subarray(0, body.length - 2);
      const out = Buffer.alloc(4 + cut.length);
      out.writeUInt32BE(cut.length, 0);
      cut.copy(out, 4);
      return out;
    }
  }
}

/** What docs/protocol.md says the node gets. */
function expected(t: string, v: Variant, afterHello: boolean): { code: string | null; fatal: boolean } {
  if (!afterHello) {
    if (v === 'oversize') return { code: ErrorCodes.FRAME_TOO_LARGE, fatal: true };
    if (v === 'malformed') return { code: ErrorCodes.PROTOCOL, fatal: true };
    if (t !== T_HELLO) return { code: ErrorCodes.PROTOCOL, fatal: true };
    return { code: ErrorCodes.UNSUPPORTED_VERSION, fatal: true }; // no or a mistyped v
  }
  if (v === 'oversize') return { code: ErrorCodes.FRAME_TOO_LARGE, fatal: false };
  if (v === 'malformed') return { code: ErrorCodes.MALFORMED, fatal: false };
  if (t === T_HELLO) return { code: ErrorCodes.PROTOCOL, fatal: true }; // hello twice
  if (t === T_FRAME || t === T_RESET) return { code: ErrorCodes.INVALID_FRAME, fatal: false }; // no valid seq
  if (t === T_HEARTBEAT) return { code: null, fatal: false }; // answered with an ack
  return { code: ErrorCodes.PROTOCOL, fatal: false }; // a host-to-node type: unknown here
}

describe('every binary message type, malformed, mistyped and oversize, before and after the hello', () => {
  test('documented reply for each; no crash; other connections carry on; counters and books balance', async () => {
    const sink = new CollectingSink();
    const e = await eng({ limits: { max_frame_bytes: MAX_FRAME }, ring: { size_bytes: 4 * MAX_FRAME } }, { sink });
    const port = e.tcpAddress!.port;
    const honest = await Honest.start(port, 'honest-2', sink);
    let cases = 0;
    let fatalCount = 0;
    for (const afterHello of [false, true]) {
      for (const t of MESSAGE_TYPES) {
        for (const v of VARIANTS) {
          const node = `h-${cases++}`;
          const want = expected(t, v, afterHello);
          const c = await Client.open(port);
          if (afterHello) {
            await c.send(encodeHello(node, TOKEN));
            await welcomed(c);
          }
          const before = c.messages().length;
          await c.send(hostile(t, v)).catch(() => undefined);
          const what = `${afterHello ? 'after' : 'before'} hello: ${t} ${v}`;
          if (want.fatal) {
            await until(() => c.closed, `${what}: closed`);
            fatalCount++;
          } else {
            // The next frame still gets through: the connection is usable.
            await c.send(frame(1));
            await until(() => sink.of(node).length === 1, `${what}: the next frame is delivered`);
            assert.equal(c.closed, false, what);
          }
          const replies = c.messages().slice(before);
          const errs = replies.filter((m) => m.t === 'error');
          if (want.code === null) {
            assert.equal(errs.length, 0, `${what}: no error`);
            assert.ok(replies.some((m) => m.t === 'ack'), `${what}: acked`);
          } else {
            assert.deepEqual(errs.map((m) => [m.code, m.fatal]), [[want.code, want.fatal]], what);
          }
          c.destroy();
        }
      }
    }
    assert.equal(cases, MESSAGE_TYPES.length * VARIANTS.length * 2);
    await honest.stop();
    await until(async () => {
      const m = await scrape(e);
      let closes = 0;
      for (const r of ['protocol_error', 'frame_too_large', 'unsupported_version', 'auth_failed']) closes += m.get(rejected(r)) ?? 0;
      return closes === fatalCount;
    }, 'every fatal close counted with a reason');
    await until(async () => (await scrape(e)).get('radar_ingest_frames_in_rings') === 0, 'rings drained');
    await assertAccounting(e);
  });
});
