// The radar-ingest command as an operator runs it: a real subprocess.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, lineFrame, httpGet, until } from './helpers.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'radar-cli-'));

function run(args: string[], env: Record<string, string> = {}): { child: ChildProcess; out: () => string; err: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, out: () => out, err: () => err, exit };
}

function configFile(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('cli', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('an unknown key stops start-up with the key path and exit code 2', async () => {
    const p = configFile('bad-key.yaml', 'tcp_server:\n  enabled: true\n  prot: 30050\n');
    const r = run(['--config', p]);
    assert.equal(await r.exit, 2);
    assert.match(r.err(), /tcp_server\.prot: unknown key/);
  });

  test('a wrong type names the key path, exit code 2', async () => {
    const p = configFile('bad-type.yaml', 'tcp_server:\n  port: "abc"\n');
    const r = run(['--config', p]);
    assert.equal(await r.exit, 2);
    assert.match(r.err(), /tcp_server\.port/);
  });

  test('an impossible port range names the key path, exit code 2', async () => {
    const p = configFile('bad-range.yaml', 'tcp_server:\n  auto_provision_port_start: 31100\n  auto_provision_port_end: 31000\n');
    const r = run(['--config', p]);
    assert.equal(await r.exit, 2);
    assert.match(r.err(), /tcp_server\.auto_provision_port_start/);
  });

  test('a missing file and bad arguments exit 2', async () => {
    const r1 = run(['--config', join(dir, 'nope.yaml')]);
    assert.equal(await r1.exit, 2);
    assert.match(r1.err(), /not found/);
    const r2 = run(['--bogus']);
    assert.equal(await r2.exit, 2);
    assert.match(r2.err(), /usage/);
  });

  test('runs on a config file, ingests, serves /metrics, and exits 0 on SIGTERM', async () => {
    const p = configFile('ok.yaml', [
      'tcp_server:', '  enabled: true', '  host: 127.0.0.1', '  port: 0', '  token: from-file',
      'http:', '  host: 127.0.0.1', '  port: 0', 'shards: 1',
      'agents:', `  key_file: ${join(dir, 'key.pem')}`,
      `output_dir: ${join(dir, 'out')}`, 'sink: discard',
    ].join('\n'));
    // The token comes from the environment, overriding the file.
    const r = run(['--config', p], { RADAR_INGEST_TOKEN: 'from-env' });
    const started = await until(() => r.out().split('\n').find((l) => l.includes('radar-ingest started')), 'start log', 10000);
    const info = JSON.parse(started);
    const tcpPort = Number(String(info.tcp).split(':').pop());
    const httpPort = Number(String(info.http).split(':').pop());
    const c = await Client.open(tcpPort);
    await c.send(lineFrame('node-cli', 1, 2, 'from-env'));
    await until(async () => /radar_ingest_frames_written_total 1\b/.test((await httpGet(httpPort, '/metrics')).body), 'frame counted');
    const bad = await Client.open(tcpPort);
    await bad.send(lineFrame('node-cli2', 1, 2, 'from-file'));
    await bad.closedP;
    c.destroy();
    r.child.kill('SIGTERM');
    assert.equal(await r.exit, 0);
  });

  test('a node port already in use: start-up fails, says so, exit code 1', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as AddressInfo).port;
    try {
      const p = configFile('busy.yaml', [
        'tcp_server:', '  enabled: true', '  host: 127.0.0.1', `  port: ${port}`, '  token: t',
        'http:', '  host: 127.0.0.1', '  port: 0', `output_dir: ${join(dir, 'out-busy')}`, 'sink: discard',
        'agents:', `  key_file: ${join(dir, 'key-busy.pem')}`,
      ].join('\n'));
      const r = run(['--config', p]);
      assert.equal(await r.exit, 1);
      const text = r.out() + r.err();
      assert.match(text, /start-up failed/);
      assert.match(text, new RegExp(`EADDRINUSE[^\\n]*${port}|${port}[^\\n]*EADDRINUSE`));
      assert.doesNotMatch(text, /radar-ingest started/);
    } finally {
      await new Promise<void>((r) => busy.close(() => r()));
    }
  });

  describe('draining behind a load balancer', () => {
    async function startCli(name: string, extra: string[]): Promise<{ r: ReturnType<typeof run>; tcpPort: number; httpPort: number }> {
      const p = configFile(name, [
        'tcp_server:', '  enabled: true', '  host: 127.0.0.1', '  port: 0', '  token: t',
        'http:', '  host: 127.0.0.1', '  port: 0', 'shards: 1', 'sink: discard',
        'agents:', `  key_file: ${join(dir, 'key.pem')}`, `output_dir: ${join(dir, 'out')}`, ...extra,
      ].join('\n'));
      const r = run(['--config', p]);
      const started = await until(() => r.out().split('\n').find((l) => l.includes('radar-ingest started')), 'start log', 10000);
      const info = JSON.parse(started);
      return { r, tcpPort: Number(String(info.tcp).split(':').pop()), httpPort: Number(String(info.http).split(':').pop()) };
    }

    test('SIGTERM: /readyz 503 at once, /healthz 200, new connections still accepted during the grace, refused after it, exit 0', async () => {
      const { r, tcpPort, httpPort } = await startCli('drain.yaml', ['shutdown:', '  drain_grace_ms: 3000', '  deadline_ms: 15000']);
      assert.equal((await httpGet(httpPort, '/readyz')).status, 200);
      const t0 = Date.now();
      r.child.kill('SIGTERM');
      await until(async () => (await httpGet(httpPort, '/readyz')).status === 503, 'readyz 503');
      const readyz = JSON.parse((await httpGet(httpPort, '/readyz')).body);
      assert.equal(readyz.checks.draining.ok, false);
      assert.equal((await httpGet(httpPort, '/healthz')).status, 200);
      // Within the grace period a node can still connect and deliver.
      const c = await Client.open(tcpPort);
      await c.send(lineFrame('late-node', 1, 2, 't'));
      await until(async () => /radar_ingest_frames_written_total 1\b/.test((await httpGet(httpPort, '/metrics')).body), 'frame written during the grace');
      assert.ok(Date.now() - t0 < 3000, 'the grace period was still running');
      // After the grace: the node port is closed, the existing connection is closed, the process exits 0.
      await c.closedP;
      assert.ok(Date.now() - t0 >= 2900, `connections were closed after the grace (${Date.now() - t0} ms)`);
      assert.equal(await r.exit, 0);
      assert.ok(Date.now() - t0 < 15000);
    });

    test('a second SIGTERM during the drain exits at once with code 1', async () => {
      const { r, httpPort } = await startCli('drain2.yaml', ['shutdown:', '  drain_grace_ms: 20000', '  deadline_ms: 30000']);
      const t0 = Date.now();
      r.child.kill('SIGTERM');
      // A reused keep-alive socket can be reset under load; a dead process fails the wait anyway.
      await until(async () => (await httpGet(httpPort, '/readyz').catch(() => null))?.status === 503, 'readyz 503');
      r.child.kill('SIGTERM');
      assert.equal(await r.exit, 1);
      assert.ok(Date.now() - t0 < 5000, 'did not wait for the grace period');
      assert.match(r.out(), /second signal: exiting now/);
    });
  });
});
