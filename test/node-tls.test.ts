// TLS on the node port: both protocols end to end, handshake failures counted as
// tls_failed (and never reaching a shard), client-certificate identity (CN = the
// only node id the connection may use), PROXY header before TLS.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect, type TLSSocket, type ConnectionOptions } from 'node:tls';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { binaryMessages, engineFixtures, Client, lineFrame, heartbeat, until, scrape, assertAccounting, TOKEN, type EngineFixture } from './helpers.js';
import { encodeHello, encodeFrame } from '../src/protocol/binary-protocol.js';
import { haveOpenssl, makeCerts, type TestCerts, type Pem } from './certs.js';
import type { Engine } from '../src/engine/engine.js';

/** A TLS client recording what the host sends, like helpers.Client. */
class TlsClient {
  readonly received: Buffer[] = [];
  closed = false;
  error: Error | null = null;
  readonly closedP: Promise<void>;
  constructor(readonly socket: TLSSocket) {
    socket.on('data', (d: Buffer) => this.received.push(d));
    socket.on('error', (e) => { this.error = e; });
    this.closedP = new Promise((r) => socket.on('close', () => { this.closed = true; r(); }));
  }
  static open(opts: ConnectionOptions): Promise<TlsClient> {
    return new Promise((resolve, reject) => {
      const s = tlsConnect(opts, () => resolve(c));
      const c = new TlsClient(s);
      s.once('error', reject);
    });
  }
  send(data: string | Uint8Array): Promise<void> {
    return new Promise((r, j) => this.socket.write(data, (e) => (e ? j(e) : r())));
  }
  messages(): Record<string, any>[] {
    return binaryMessages(Buffer.concat(this.received));
  }
  destroy(): void {
    this.socket.destroy();
  }
}

describe('TLS on the node port', { skip: haveOpenssl() ? false : 'openssl not installed (needed to make test certificates)' }, () => {
  let certs: TestCerts;
  const clients: { destroy(): void }[] = [];
  const servers: Server[] = [];
  before(() => {
    certs = makeCerts(['node-a']);
  });
  after(() => {
    for (const c of clients) c.destroy();
    for (const s of servers) s.close();
    certs?.cleanup();
  });
  const fixture = engineFixtures();
  function setup(tls: Record<string, unknown> = {}, over: Record<string, unknown> = {}, top: Record<string, unknown> = {}): Promise<EngineFixture> {
    return fixture({
      ...top,
      tcp_server: {
        enabled: true, host: '127.0.0.1', port: 0, token: TOKEN,
        tls: { enabled: true, cert_file: certs.server.certFile, key_file: certs.server.keyFile, ...tls },
        ...over,
      },
    });
  }
  async function open(port: number, client?: Pem, extra: ConnectionOptions = {}): Promise<TlsClient> {
    const c = await TlsClient.open({
      host: '127.0.0.1', port, ca: certs.ca.cert, servername: 'localhost',
      ...(client ? { cert: client.cert, key: client.key } : {}), ...extra,
    });
    clients.push(c);
    return c;
  }
  /** Opens a TLS connection the host is expected to refuse; resolves when it is closed. */
  async function refused(port: number, client?: Pem): Promise<void> {
    const s = tlsConnect({ host: '127.0.0.1', port, ca: certs.ca.cert, servername: 'localhost', ...(client ? { cert: client.cert, key: client.key } : {}) });
    s.on('error', () => undefined);
    clients.push(s);
    // TLS 1.3: the client finishes its side before the host checks the certificate, so
    // write something, as a node would; the host's alert or close ends the connection.
    s.on('secureConnect', () => s.write(lineFrame('node-a', 1)));
    await new Promise((r) => s.on('close', r));
  }
  async function tlsFailed(engine: Engine, n: number): Promise<void> {
    await until(async () => (await scrape(engine)).get('radar_ingest_connections_rejected_total{reason="tls_failed"}') === n, `${n} tls_failed`);
    const m = await scrape(engine);
    assert.equal(m.get('radar_ingest_connections_closed_total{reason="tls_failed"}'), n);
    // A failed handshake never reaches a shard.
    assert.equal(m.get('radar_ingest_connections_accepted_total'), 0);
    assert.equal(m.get('radar_ingest_frames_received_total'), 0);
  }

  test('line protocol over TLS: frames reach the ring, the node address is the client', async () => {
    const { engine, sink, port } = await setup();
    const c = await open(port);
    await c.send(lineFrame('node-t1', 1) + lineFrame('node-t1', 2));
    await until(() => sink.of('node-t1').length === 2, 'frames over TLS');
    assert.deepEqual(JSON.parse(sink.of('node-t1')[1]!.line), { timestamp: 2, delay: [40.5, 41.5], doppler: [-27.25, -26.25], snr: [12.5, 13.5], adsb: [null, null] });
    assert.equal(engine.nodes.get('node-t1')!.remote, `127.0.0.1:${c.socket.localPort}`);
    await assertAccounting(engine);
  });

  test('binary protocol over TLS: hello, frames, acks', async () => {
    const { sink, port } = await setup();
    const c = await open(port);
    await c.send(encodeHello('node-t2', TOKEN));
    await until(() => c.messages().some((m) => m.t === 'welcome'), 'welcome');
    await c.send(Buffer.concat([1, 2, 3].map((seq) => encodeFrame({ seq, timestamp: seq, delay: [1, 2], doppler: [3, 4], snr: [5, 6] }))));
    await until(() => sink.of('node-t2').length === 3 && c.messages().some((m) => m.t === 'ack' && m.seq === 3), 'frames acked');
  });

  test('a plain TCP client on the TLS port fails the handshake: tls_failed, no shard sees it', async () => {
    const { engine, sink, port } = await setup();
    const c = await Client.open(port);
    clients.push(c);
    await c.send(lineFrame('node-plain', 1));
    await c.closedP;
    await tlsFailed(engine, 1);
    assert.equal(sink.frames.length, 0);
    assert.equal(engine.nodes.get('node-plain'), undefined);
  });

  test('a handshake that does not finish within the first-message deadline is closed', async () => {
    const { engine, port } = await setup({}, {}, { limits: { first_message_timeout_ms: 300 } });
    const c = await Client.open(port);
    clients.push(c);
    await c.send(Buffer.from([0x16, 0x03, 0x01])); // the start of a ClientHello, then nothing
    await c.closedP;
    const m = await scrape(engine);
    assert.equal(m.get('radar_ingest_connections_rejected_total{reason="first_message_timeout"}'), 1);
  });

  test('client_cert require: no certificate, or one from another CA, fails (tls_failed)', async () => {
    const { engine, sink, port } = await setup({ client_cert: 'require', ca_file: certs.ca.certFile });
    await refused(port);
    await refused(port, certs.foreign);
    await tlsFailed(engine, 2);
    assert.equal(sink.frames.length, 0);
    // The right certificate works.
    const ok = await open(port, certs.clients['node-a']);
    await ok.send(lineFrame('node-a', 1));
    await until(() => sink.of('node-a').length === 1, 'frame with a valid certificate');
  });

  test('client certificate CN=node-a: node-a frames flow, a node-b message closes the connection (auth_failed)', async () => {
    const { engine, sink, port } = await setup({ client_cert: 'require', ca_file: certs.ca.certFile });
    const c = await open(port, certs.clients['node-a']);
    await c.send(heartbeat('node-a') + lineFrame('node-a', 1) + lineFrame('node-a', 2));
    await until(() => sink.of('node-a').length === 2, 'node-a frames');
    await c.send(lineFrame('node-b', 3) + lineFrame('node-a', 4));
    await c.closedP;
    const m = await assertAccounting(engine);
    assert.equal(m.get('radar_ingest_connections_rejected_total{reason="auth_failed"}'), 1);
    assert.equal(m.get('radar_ingest_frames_dropped_total{reason="auth_failed"}'), 1);
    assert.equal(engine.nodes.get('node-b'), undefined);
    assert.deepEqual(sink.of('node-a').map((f) => f.timestamp), [1, 2]);
    // First message for another node (right token): refused at once too.
    const d = await open(port, certs.clients['node-a']);
    await d.send(lineFrame('node-b', 1));
    await d.closedP;
    assert.equal(engine.nodes.get('node-b'), undefined);
    // Binary: a hello naming another node gets an error, then the close.
    const b = await open(port, certs.clients['node-a']);
    await b.send(encodeHello('node-b', TOKEN));
    await b.closedP;
    const err = b.messages().find((x) => x.t === 'error');
    assert.equal(err?.code, 'RADAR_ERR_AUTH_FAILED');
    assert.match(String(err?.message), /CN=node-a/);
    const good = await open(port, certs.clients['node-a']);
    await good.send(encodeHello('node-a', TOKEN));
    await until(() => good.messages().some((x) => x.t === 'welcome'), 'node-a hello welcomed');
    assert.equal((await scrape(engine)).get('radar_ingest_connections_rejected_total{reason="auth_failed"}'), 3);
  });

  test('client_cert request: without a certificate any node by token; a foreign certificate is refused', async () => {
    const { engine, sink, port } = await setup({ client_cert: 'request', ca_file: certs.ca.certFile });
    const anon = await open(port);
    await anon.send(lineFrame('node-b', 1));
    await until(() => sink.of('node-b').length === 1, 'frame without a certificate');
    await refused(port, certs.foreign);
    await until(async () => (await scrape(engine)).get('radar_ingest_connections_rejected_total{reason="tls_failed"}') === 1, 'foreign certificate refused');
    const withCert = await open(port, certs.clients['node-a']);
    await withCert.send(lineFrame('node-c', 1));
    await withCert.closedP;
    assert.equal(engine.nodes.get('node-c'), undefined);
  });

  test('PROXY header before TLS, in the same TCP segment as the ClientHello: the header names the node', async () => {
    const { engine, sink, port } = await setup({}, { proxy_protocol: 'v1' });
    // A one-connection relay that prepends the header to the client's first bytes (one write).
    const relay = createServer((down: Socket) => {
      const up = netConnect(port, '127.0.0.1');
      up.on('error', () => undefined);
      down.on('error', () => undefined);
      down.once('data', (hello: Buffer) => {
        up.write(Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.5 192.0.2.1 40404 30050\r\n'), hello]));
        down.pipe(up);
        up.pipe(down);
      });
      down.on('close', () => up.destroy());
      up.on('close', () => down.destroy());
    });
    servers.push(relay);
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()));
    const c = await open((relay.address() as { port: number }).port);
    await c.send(lineFrame('node-pt', 1));
    await until(() => sink.of('node-pt').length === 1, 'frame through PROXY + TLS');
    assert.equal(engine.nodes.get('node-pt')!.remote, '203.0.113.5:40404');
  });
});
