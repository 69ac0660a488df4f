// The radar-ingest command as an operator runs it: a real subprocess.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
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
});
