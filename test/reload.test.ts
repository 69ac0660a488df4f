// Reload on SIGHUP: valid changes to tokens, limits and trackers apply without
// dropping connections; an invalid file is rejected with the key path and the
// old config stays; radar_ingest_config_reloads_total{result} counts both.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, TOKEN, lineFrame, httpGet, scrape, until, startEngine, testConfig, freePort, FAKE_TRACKER } from './helpers.js';
import type { Engine } from '../src/engine/engine.js';
import { parseConfig } from '../src/config.js';
import { reloadedConfig } from '../src/engine/reload.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'radar-reload-'));

describe('config reload', () => {
  const engines: Engine[] = [];
  after(async () => {
    await Promise.all(engines.map((e) => e.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  test('SIGHUP: a new token applies to new connections, open ones stay; an invalid file is rejected and the old config stays', async () => {
    const file = join(dir, 'hup.yaml');
    const write = (token: string, extra = ''): void => writeFileSync(file, [
      'tcp_server:', '  enabled: true', '  host: 127.0.0.1', '  port: 0', `  token: ${token}`,
      'http:', '  host: 127.0.0.1', '  port: 0', 'shards: 1', 'sink: discard',
      'agents:', `  key_file: ${join(dir, 'key.pem')}`, `output_dir: ${join(dir, 'out')}`, extra,
    ].join('\n'));
    write('alpha');
    const child = spawn(process.execPath, [CLI, '--config', file], { env: { ...process.env, RADAR_INGEST_TOKEN: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      const started = await until(() => out.split('\n').find((l) => l.includes('radar-ingest started')), 'start log', 10000);
      const info = JSON.parse(started);
      const tcpPort = Number(String(info.tcp).split(':').pop());
      const httpPort = Number(String(info.http).split(':').pop());
      const metric = async (name: string): Promise<number> => {
        const line = (await httpGet(httpPort, '/metrics')).body.split('\n').find((l) => l.startsWith(`${name} `));
        return line ? Number(line.split(' ')[1]) : NaN;
      };
      const old = await Client.open(tcpPort);
      await old.send(lineFrame('n-old', 1, 2, 'alpha'));
      await until(async () => (await metric('radar_ingest_frames_written_total')) === 1, 'first frame');

      write('beta');
      child.kill('SIGHUP');
      await until(async () => (await metric('radar_ingest_config_reloads_total{result="ok"}')) === 1, 'reload ok');
      // The open connection stays and keeps delivering.
      await old.send(lineFrame('n-old', 2, 2, 'alpha'));
      await until(async () => (await metric('radar_ingest_frames_written_total')) === 2, 'frame on the old connection');
      assert.equal(old.closed, false);
      // New connections need the new token.
      const wrong = await Client.open(tcpPort);
      await wrong.send(lineFrame('n-a', 1, 2, 'alpha'));
      await wrong.closedP;
      const right = await Client.open(tcpPort);
      await right.send(lineFrame('n-b', 1, 2, 'beta'));
      await until(async () => (await metric('radar_ingest_frames_written_total')) === 3, 'new token accepted');

      // An invalid file: rejected with the key path, counted; the config in force stays.
      write('gamma', 'limits:\n  max_conections: 5');
      child.kill('SIGHUP');
      await until(async () => (await metric('radar_ingest_config_reloads_total{result="error"}')) === 1, 'reload rejected');
      assert.match(out, /limits\.max_conections: unknown key/);
      const still = await Client.open(tcpPort);
      await still.send(lineFrame('n-c', 1, 2, 'beta'));
      await until(async () => (await metric('radar_ingest_frames_written_total')) === 4, 'old config still in force');
      assert.equal(await metric('radar_ingest_config_reloads_total{result="ok"}'), 1);
      for (const c of [old, right, still]) c.destroy();
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exit, 0);
  });

  test('reload: limits apply to new connections; keys that need a restart are reported and keep their value', async () => {
    const engine = await startEngine();
    engines.push(engine);
    const port = engine.tcpAddress!.port;
    const a = await Client.open(port);
    await a.send(lineFrame('lim-a', 1));
    await until(() => engine.totals().written === 1, 'frame');
    const r = engine.reload(testConfig({ limits: { max_connections: 1 }, http: { port: 1 }, shards: 2 }));
    assert.deepEqual(r.restartRequired.sort(), ['http', 'shards']);
    assert.equal(engine.config.shards, 1);
    // One connection is open: the next is refused by the new limit; the open one stays.
    const b = await Client.open(port);
    await b.closedP;
    assert.equal(a.closed, false);
    await a.send(lineFrame('lim-a', 2));
    await until(() => engine.totals().written === 2, 'old connection still delivers');
    a.destroy();
  });

  test('reload: a frame limit the running rings cannot hold waits for the restart with ring.size_bytes', async () => {
    const engine = await startEngine({ ring: { size_bytes: 65536 }, limits: { max_frame_bytes: 16384 } });
    engines.push(engine);
    // Valid as a file (its rings would be 1 MiB), but the rings in use stay 64 KiB until a restart.
    const r = engine.reload(testConfig({ ring: { size_bytes: 1 << 20 }, limits: { max_frame_bytes: 262144, max_connections: 7 } }));
    assert.deepEqual(r.restartRequired.sort(), ['limits.max_frame_bytes', 'ring']);
    assert.equal(engine.config.limits.max_frame_bytes, 16384);
    assert.equal(engine.config.limits.max_connections, 7, 'the rest of limits applies');
    // A limit the rings can hold applies at once.
    const r2 = engine.reload(testConfig({ ring: { size_bytes: 65536 }, limits: { max_frame_bytes: 8192 } }));
    assert.deepEqual(r2.restartRequired, []);
    assert.equal(engine.config.limits.max_frame_bytes, 8192);
    // Frames over the kept limit are still refused as too large, the connection carries on.
    const c = await Client.open(engine.tcpAddress!.port);
    await c.send(lineFrame('rl-a', 1, 2, TOKEN, { pad: 'p'.repeat(9000) }));
    await c.send(lineFrame('rl-a', 2));
    await until(() => engine.totals().written === 1, 'the small frame written');
    assert.equal((await scrape(engine)).get('radar_ingest_frames_dropped_total{reason="frame_too_large"}'), 1);
    c.destroy();
  });

  test('reload: trackers added, changed and removed are reconciled at once; provisioned ones stay', async () => {
    const base = 20000 + Math.floor(Math.random() * 20000);
    const p1 = await freePort();
    const p2 = await freePort();
    const over = (trackers: unknown[]): Record<string, unknown> => ({
      sink: 'trackers', output_dir: join(dir, 'tracks'), startup_delay_sec: 0, tcp_retry_delay_sec: 0.02,
      tcp_server: { auto_provision_port_start: base, auto_provision_port_end: base + 5 },
      tracker: { command: [process.execPath, FAKE_TRACKER, '--tcp-port', '{port}', '--echo'], reconcile_interval_ms: 50, stop_grace_ms: 500 },
      trackers,
    });
    const engine = await startEngine(over([]));
    engines.push(engine);
    const sup = engine.trackers!;
    assert.equal(sup.instances.size, 0);
    engine.reload(testConfig(over([{ name: 'cfg-1', tcp_port: p1 }])));
    await until(() => sup.get('cfg-1')?.view().pid, 'configured tracker started');
    const pid1 = sup.get('cfg-1')!.view().pid!;
    // Changed port: the old process is stopped, a new one started on the new port.
    engine.reload(testConfig(over([{ name: 'cfg-1', tcp_port: p2 }])));
    await until(() => { const v = sup.get('cfg-1')?.view(); return v && v.port === p2 && v.pid !== null && v.pid !== pid1; }, 'replaced on the new port');
    assert.throws(() => process.kill(pid1, 0), { code: 'ESRCH' });
    // Removed: stopped and gone.
    const pid2 = sup.get('cfg-1')!.view().pid!;
    engine.reload(testConfig(over([])));
    await until(() => !sup.get('cfg-1'), 'removed');
    await until(() => { try { process.kill(pid2, 0); return false; } catch { return true; } }, 'old tracker gone');
  });
});

test('reload policy: log.format and cluster wait for a restart and are reported; log.level applies at once', () => {
  const prev = parseConfig({}, {});
  const next = parseConfig({ log: { level: 'debug', format: 'pretty' }, cluster: { redis_url: 'redis://127.0.0.1:6379' } }, {});
  const r = reloadedConfig(prev, next);
  assert.deepEqual(r.restartRequired.sort(), ['cluster', 'log.format']);
  assert.equal(r.applied.log.level, 'debug');
  assert.equal(r.applied.log.format, prev.log.format);
  assert.equal(r.applied.cluster, undefined);
});

test('reload policy: tcp_server.ack waits for a restart and is reported (the shards keep their ack mode)', () => {
  const prev = parseConfig({}, {});
  const next = parseConfig({ tcp_server: { ack: 'ring' } }, {});
  const r = reloadedConfig(prev, next);
  assert.deepEqual(r.restartRequired, ['tcp_server.ack']);
  assert.equal(r.applied.tcp_server.ack, 'delivered');
});
