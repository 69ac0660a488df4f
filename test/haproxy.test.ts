// A real HAProxy (mode tcp) in front of the engine: `send-proxy` (v1) and
// `send-proxy-v2`, with TLS passed through in the last case. Nodes connect from
// 127.0.0.2 so the address the engine records can only come from the header
// (HAProxy itself connects from 127.0.0.1). Skipped when haproxy is not installed.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { binaryMessages, engineFixtures, freePort, lineFrame, until, TOKEN } from './helpers.js';
import { encodeHello, encodeFrame } from '../src/protocol/binary-protocol.js';
import { haveOpenssl, makeCerts, type TestCerts } from './certs.js';

// Debian installs it in /usr/sbin, which is not on every user's PATH.
const PATH = `${process.env.PATH ?? ''}:/usr/sbin:/usr/local/sbin:/sbin`;
const version = spawnSync('haproxy', ['-v'], { env: { ...process.env, PATH }, encoding: 'utf8' });
const HAPROXY = version.status === 0 ? version.stdout.split('\n')[0]! : null;
const NODE_ADDR = '127.0.0.2';

interface Haproxy {
  port: number;
  proc: ChildProcess;
  stderr: string[];
}

describe(`behind HAProxy (${HAPROXY ?? 'not installed'})`, () => {
  const procs: ChildProcess[] = [];
  const sockets: Socket[] = [];
  const dirs: string[] = [];
  let certs: TestCerts | null = null;
  after(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(procs.map((p) => p.exitCode !== null || p.signalCode !== null ? undefined
      : new Promise((r) => { p.once('exit', r); p.kill('SIGTERM'); })));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    certs?.cleanup();
  });
  const setup = engineFixtures();

  /** Starts haproxy: a tcp frontend on a free port, the engine's node port as the only server. */
  async function haproxy(enginePort: number, serverOpts: string): Promise<Haproxy> {
    const dir = mkdtempSync(join(tmpdir(), 'radar-ingest-haproxy-'));
    dirs.push(dir);
    const port = await freePort();
    writeFileSync(join(dir, 'haproxy.cfg'), [
      'global',
      '  maxconn 256',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 60s',
      '  timeout server 60s',
      'frontend nodes',
      `  bind 127.0.0.1:${port}`,
      '  default_backend engine',
      'backend engine',
      `  server engine 127.0.0.1:${enginePort} ${serverOpts}`,
      '',
    ].join('\n'));
    const proc = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { env: { ...process.env, PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(proc);
    const stderr: string[] = [];
    proc.stdout!.on('data', (d) => stderr.push(String(d)));
    proc.stderr!.on('data', (d) => stderr.push(String(d)));
    // Ready when the frontend accepts (the probe closes at once; the engine sees a PROXY header, then a close).
    await until(() => {
      if (proc.exitCode !== null) throw new Error(`haproxy exited with ${proc.exitCode}: ${stderr.join('')}`);
      return new Promise<boolean>((r) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => { s.destroy(); r(true); });
        s.once('error', () => r(false));
      });
    }, 'haproxy listening', 10000);
    return { port, proc, stderr };
  }

  function connectNode(port: number): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1', localAddress: NODE_ADDR }, () => resolve(s));
      sockets.push(s);
      s.once('error', reject);
    });
  }

  function messages(chunks: Buffer[]): Record<string, any>[] {
    return binaryMessages(Buffer.concat(chunks));
  }

  const skip = HAPROXY ? false : 'haproxy not installed';

  test('send-proxy (v1): line frames flow, the engine sees the node address', { skip }, async () => {
    const { engine, sink, port } = await setup({ tcp_server: { enabled: true, host: '127.0.0.1', port: 0, token: TOKEN, proxy_protocol: 'v1' } });
    const hp = await haproxy(port, 'send-proxy');
    const s = await connectNode(hp.port);
    s.write(lineFrame('node-hp1', 1) + lineFrame('node-hp1', 2));
    await until(() => sink.of('node-hp1').length === 2, 'frames through haproxy');
    assert.equal(engine.nodes.get('node-hp1')!.remote, `${NODE_ADDR}:${s.localPort}`);
    assert.deepEqual(sink.of('node-hp1').map((f) => f.timestamp), [1, 2]);
  });

  test('send-proxy-v2: binary hello, frames and acks flow, the engine sees the node address', { skip }, async () => {
    const { engine, sink, port } = await setup({ tcp_server: { enabled: true, host: '127.0.0.1', port: 0, token: TOKEN, proxy_protocol: 'v2' } });
    const hp = await haproxy(port, 'send-proxy-v2');
    const s = await connectNode(hp.port);
    const got: Buffer[] = [];
    s.on('data', (d) => got.push(d));
    s.write(encodeHello('node-hp2', TOKEN));
    await until(() => messages(got).some((m) => m.t === 'welcome'), 'welcome through haproxy');
    s.write(Buffer.concat([1, 2].map((seq) => encodeFrame({ seq, timestamp: seq, delay: [1], doppler: [2], snr: [3] }))));
    await until(() => sink.of('node-hp2').length === 2 && messages(got).some((m) => m.t === 'ack' && m.seq === 2), 'frames acked');
    assert.equal(engine.nodes.get('node-hp2')!.remote, `${NODE_ADDR}:${s.localPort}`);
  });

  test('send-proxy-v2 with TLS passed through: client certificate identity and node address', {
    skip: skip || (haveOpenssl() ? false : 'openssl not installed (needed to make test certificates)'),
  }, async () => {
    certs = makeCerts(['node-a']);
    const { engine, sink, port } = await setup({
      tcp_server: {
        enabled: true, host: '127.0.0.1', port: 0, token: TOKEN, proxy_protocol: 'auto',
        tls: { enabled: true, cert_file: certs.server.certFile, key_file: certs.server.keyFile, ca_file: certs.ca.certFile, client_cert: 'require' },
      },
    });
    const hp = await haproxy(port, 'send-proxy-v2');
    const c = certs;
    const raw = await connectNode(hp.port);
    const s = await new Promise<ReturnType<typeof tlsConnect>>((resolve, reject) => {
      const t = tlsConnect({ socket: raw, servername: 'localhost', ca: c.ca.cert,
        cert: c.clients['node-a']!.cert, key: c.clients['node-a']!.key }, () => resolve(t));
      sockets.push(t);
      t.once('error', reject);
    });
    s.write(lineFrame('node-a', 1));
    await until(() => sink.of('node-a').length === 1, 'frame through haproxy and TLS');
    assert.equal(engine.nodes.get('node-a')!.remote, `${NODE_ADDR}:${raw.localPort}`);
    // The certificate still binds the connection to node-a.
    s.write(lineFrame('node-b', 2));
    await new Promise((r) => s.on('close', r));
    assert.equal(engine.nodes.get('node-b'), undefined);
  });
});
