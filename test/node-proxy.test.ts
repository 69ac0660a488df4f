// PROXY protocol on the node port, engine level: byte-exact v1/v2 headers from a
// trusted loopback client, malformed and untrusted headers, deadlines and limits.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { engineFixtures, startEngine, CollectingSink, Client, lineFrame, heartbeat, until, scrape, assertAccounting, TOKEN } from './helpers.js';
import { encodeHello, encodeFrame } from '../src/protocol/binary-protocol.js';
import { closeIndex } from '../src/telemetry/counters.js';
import type { Engine } from '../src/engine/engine.js';

const TCP = { enabled: true, host: '127.0.0.1', port: 0, token: TOKEN };

function v2Header(verCmd: number, fam: number, block: Buffer): Buffer {
  const h = Buffer.from('0d0a0d0a000d0a515549540a00000000', 'hex');
  h[12] = verCmd;
  h[13] = fam;
  h.writeUInt16BE(block.length, 14);
  return Buffer.concat([h, block]);
}
// [2001:db8::7]:40001 -> [2001:db8::1]:30050, plus an ALPN TLV.
const V2_TCP6 = v2Header(0x21, 0x21, Buffer.from(
  '20010db8000000000000000000000007 20010db8000000000000000000000001 9c41 7562 01 0002 6832'.replace(/ /g, ''), 'hex'));
// 198.51.100.23:40002 -> 192.0.2.1:30050
const V2_TCP4 = v2Header(0x21, 0x11, Buffer.from('c6336417 c0000201 9c42 7562'.replace(/ /g, ''), 'hex'));
const V2_LOCAL = v2Header(0x20, 0x00, Buffer.alloc(0));

describe('PROXY protocol on the node port', () => {
  const clients: Client[] = [];
  const engines: Engine[] = [];
  after(async () => {
    for (const c of clients) c.destroy();
    await Promise.all(engines.map((e) => e.stop()));
  });
  const setup = engineFixtures();
  async function open(port: number): Promise<Client> {
    const c = await Client.open(port);
    clients.push(c);
    return c;
  }
  const counted = async (engine: Engine, reason: string): Promise<void> => {
    await until(async () => (await scrape(engine)).get(`radar_ingest_connections_rejected_total{reason="${reason}"}`) === 1, `${reason} counted`);
    const m = await scrape(engine);
    assert.equal(m.get(`radar_ingest_connections_closed_total{reason="${reason}"}`), 1);
  };

  test('v1 TCP4 from a trusted client: the header source is the node address (node table, log)', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write(chunk, _e, cb) { lines.push(JSON.parse(String(chunk))); cb(); } }));
    const sink = new CollectingSink();
    const engine = await startEngine({ tcp_server: { ...TCP, proxy_protocol: 'v1' }, http: { api_token: 'ctl' } }, { logger, sink });
    engines.push(engine);
    const c = await open(engine.tcpAddress!.port);
    await c.send('PROXY TCP4 192.0.2.10 198.51.100.1 51234 30050\r\n');
    await c.send(lineFrame('node-p1', 1));
    await until(() => sink.of('node-p1').length === 1, 'frame through the PROXY connection');
    assert.equal(engine.nodes.get('node-p1')!.remote, '192.0.2.10:51234');
    const log = await until(() => lines.find((l) => l.msg === 'node connected'), 'node connected log');
    assert.equal(log.remote, '192.0.2.10:51234');
    // ... and in the agent registry.
    const agent = await until(async () => {
      const r = await fetch(`http://127.0.0.1:${engine.httpAddress!.port}/api/v1/agents/node-p1`, { headers: { authorization: 'Bearer ctl' } });
      return r.status === 200 && (await r.json()) as any;
    }, 'agent node-p1');
    assert.equal(agent.remote, '192.0.2.10:51234');
    // The node's own bytes are intact after the header.
    assert.deepEqual(JSON.parse(sink.of('node-p1')[0]!.line).delay, [40.5, 41.5]);
    await assertAccounting(engine);
  });

  test('v2 over IPv6 with a TLV, header and hello in one write: binary protocol works, source from the header', async () => {
    const { engine, sink, port } = await setup({ tcp_server: { ...TCP, proxy_protocol: 'v2' } });
    const c = await open(port);
    await c.send(Buffer.concat([V2_TCP6, encodeHello('node-p2', TOKEN)]));
    await until(() => c.messages().some((m) => m.t === 'welcome'), 'welcome');
    await c.send(encodeFrame({ seq: 1, timestamp: 5, delay: [1], doppler: [2], snr: [3] }));
    await until(() => sink.of('node-p2').length === 1 && c.messages().some((m) => m.t === 'ack' && m.seq === 1), 'frame acked');
    assert.equal(engine.nodes.get('node-p2')!.remote, '2001:db8::7:40001');
  });

  test('auto takes either version; v2 IPv4 header sent byte by byte', async () => {
    const { engine, sink, port } = await setup({ tcp_server: { ...TCP, proxy_protocol: 'auto' } });
    const a = await open(port);
    for (const b of V2_TCP4) await a.send(Buffer.from([b]));
    await a.send(lineFrame('node-p3', 1));
    const b = await open(port);
    await b.send(`PROXY TCP6 2001:db8::9 2001:db8::1 40003 30050\r\n${lineFrame('node-p4', 1)}`);
    await until(() => sink.of('node-p3').length === 1 && sink.of('node-p4').length === 1, 'frames on both');
    assert.equal(engine.nodes.get('node-p3')!.remote, '198.51.100.23:40002');
    assert.equal(engine.nodes.get('node-p4')!.remote, '2001:db8::9:40003');
  });

  test('v1 UNKNOWN and v2 LOCAL: the socket address is used', async () => {
    const { engine, sink, port } = await setup({ tcp_server: { ...TCP, proxy_protocol: 'auto' } });
    const a = await open(port);
    await a.send(`PROXY UNKNOWN\r\n${lineFrame('node-u1', 1)}`);
    const b = await open(port);
    await b.send(Buffer.concat([V2_LOCAL, Buffer.from(lineFrame('node-u2', 1))]));
    await until(() => sink.of('node-u1').length === 1 && sink.of('node-u2').length === 1, 'frames');
    assert.equal(engine.nodes.get('node-u1')!.remote, `127.0.0.1:${a.socket.localPort}`);
    assert.equal(engine.nodes.get('node-u2')!.remote, `127.0.0.1:${b.socket.localPort}`);
  });

  test('a malformed header is closed and counted (proxy_malformed); nothing reaches a shard', async () => {
    const { engine, sink, port } = await setup({ tcp_server: { ...TCP, proxy_protocol: 'v1' } });
    const c = await open(port);
    await c.send(`PROXY TCP4 192.0.2.10 198.51.100.1 70000 30050\r\n${lineFrame('node-m', 1)}`);
    await c.closedP;
    await counted(engine, 'proxy_malformed');
    assert.equal(sink.frames.length, 0);
    assert.equal(engine.nodes.get('node-m'), undefined);
    const m = await assertAccounting(engine);
    assert.equal(m.get('radar_ingest_frames_received_total'), 0);
    assert.equal(m.get('radar_ingest_connections_accepted_total'), 0);
  });

  test('a trusted client without a header, or with the other version, is closed as proxy_malformed', async () => {
    const { engine, sink, port } = await setup({ tcp_server: { ...TCP, proxy_protocol: 'v1' } });
    const a = await open(port);
    await a.send(lineFrame('node-nh', 1));
    await a.closedP;
    const b = await open(port);
    await b.send(V2_TCP4);
    await b.closedP;
    await until(async () => (await scrape(engine)).get('radar_ingest_connections_rejected_total{reason="proxy_malformed"}') === 2, 'both counted');
    assert.equal(sink.frames.length, 0);
  });

  test('untrusted source: a header closes it as proxy_untrusted; no header works as a direct connection', async () => {
    const { engine, sink, port } = await setup({ tcp_server: { ...TCP, proxy_protocol: 'auto', proxy_trusted: ['10.9.9.9', '10.10.0.0/16'] } });
    const spoof = await open(port);
    await spoof.send(`PROXY TCP4 192.0.2.66 198.51.100.1 51234 30050\r\n${lineFrame('node-spoof', 1)}`);
    await spoof.closedP;
    const spoof2 = await open(port);
    await spoof2.send(V2_TCP4.subarray(0, 3)); // a signature arriving in pieces
    await spoof2.send(V2_TCP4.subarray(3));
    await spoof2.closedP;
    await until(async () => (await scrape(engine)).get('radar_ingest_connections_rejected_total{reason="proxy_untrusted"}') === 2, 'both counted');
    assert.equal(engine.nodes.get('node-spoof'), undefined);
    const direct = await open(port);
    await direct.send(lineFrame('node-direct', 1));
    const bin = await open(port);
    await bin.send(encodeHello('node-direct-bin', TOKEN));
    await until(() => sink.of('node-direct').length === 1 && bin.messages().some((m) => m.t === 'welcome'), 'direct connections work');
    assert.equal(engine.nodes.get('node-direct')!.remote, `127.0.0.1:${direct.socket.localPort}`);
    assert.equal(spoof.closed && spoof2.closed, true);
  });

  test('header bytes count against the first-message deadline', async () => {
    const { engine, port } = await setup({ tcp_server: { ...TCP, proxy_protocol: 'v1' }, limits: { first_message_timeout_ms: 600 } });
    // A header trickled byte by byte never completes in time.
    const slow = await open(port);
    const header = 'PROXY TCP4 192.0.2.10 198.51.100.1 51234 30050\r\n';
    let i = 0;
    const trickle = setInterval(() => { if (!slow.closed && i < header.length) slow.socket.write(header[i++]!); }, 40);
    const t0 = Date.now();
    await slow.closedP;
    clearInterval(trickle);
    assert.ok(Date.now() - t0 < 1500, 'closed at the deadline');
    assert.ok(i < header.length);
    // A header sent late leaves only the rest of the deadline for the first message.
    const late = await open(port);
    const t1 = Date.now();
    await until(() => Date.now() - t1 >= 400, '400 ms into the deadline', 2000);
    await late.send(header);
    await late.closedP;
    const took = Date.now() - t1;
    assert.ok(took < 950, `closed ${took} ms after connecting: the deadline restarted after the header`);
    await until(async () => (await scrape(engine)).get('radar_ingest_connections_rejected_total{reason="first_message_timeout"}') === 2, 'both counted');
  });

  test('connections still reading their header count against max_connections', async () => {
    const { engine, port } = await setup({ tcp_server: { ...TCP, proxy_protocol: 'v1' }, limits: { max_connections: 1 } });
    const a = await open(port);
    await a.send('PROXY TCP4 192.0.2.10');
    const b = await open(port);
    await b.closedP;
    assert.equal(a.closed, false);
    await counted(engine, 'max_connections');
    await a.send(` 198.51.100.1 51234 30050\r\n${heartbeat('node-mc')}`);
    await until(() => engine.nodes.get('node-mc')?.remote === '192.0.2.10:51234', 'the waiting one gets through');
  });

  test('shutdown closes connections still reading their header', async () => {
    const engine = await startEngine({ tcp_server: { ...TCP, proxy_protocol: 'v2' } });
    const c = await open(engine.tcpAddress!.port);
    await c.send(V2_TCP4.subarray(0, 10));
    await until(() => (engine.handoff.upstream?.pendingCount ?? 0) === 1, 'connection in the listener');
    await engine.stop();
    await c.closedP;
    assert.equal(engine.counters[closeIndex('shutdown')], 1);
  });
});
