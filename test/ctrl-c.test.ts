// Ctrl-C in a terminal: the terminal sends SIGINT to the whole foreground process
// group. The engine must still decide when its trackers stop (after the drain),
// so every frame it says it delivered reaches the track file; and its final log
// line says what the trackers read. The real CLI, the built-in tracker, real TCP.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, lineFrame, httpGet, getJson, until, freePort, freePortRange, pidAlive } from './helpers.js';
import { TrackerProcess } from '../src/tracker/tracker-process.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'radar-ctrlc-'));
const T0 = 1_757_400_000_000;

interface Cli { child: ChildProcess; out: () => string; exit: Promise<number | null>; tcp: number; http: number }

async function startCli(name: string): Promise<Cli> {
  const [portStart] = await freePortRange(4);
  const cfg = join(dir, `${name}.yaml`);
  writeFileSync(cfg, [
    'tcp_server:', '  enabled: true', '  host: 127.0.0.1', '  port: 0', '  token: t',
    '  auto_provision: true', `  auto_provision_port_start: ${portStart}`, `  auto_provision_port_end: ${portStart! + 3}`,
    'http:', '  host: 127.0.0.1', '  port: 0', 'shards: 1', 'sink: trackers',
    'startup_delay_sec: 0', 'tcp_retry_delay_sec: 0.05', 'tcp_connect_retries: 100',
    'tracker:', '  command: reference', '  reconcile_interval_ms: 50',
    'shutdown:', '  deadline_ms: 30000',
    'agents:', `  key_file: ${join(dir, 'key.pem')}`, `output_dir: ${join(dir, name)}`,
  ].join('\n'));
  // Its own process group, as a shell gives a foreground job: -pid reaches the group.
  const child = spawn(process.execPath, [CLI, '--config', cfg], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const started = await until(() => out.split('\n').find((l) => l.includes('radar-ingest started')), 'start log', 15000);
  const info = JSON.parse(started);
  return { child, out: () => out, exit, tcp: Number(String(info.tcp).split(':').pop()), http: Number(String(info.http).split(':').pop()) };
}

function metric(body: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(body);
  return m ? Number(m[1]) : NaN;
}

describe('Ctrl-C (SIGINT to the whole process group)', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('every frame received reaches the built-in tracker, whose events cover them all; the final log line says so; exit 0', async () => {
    const N = 20_000;
    const cli = await startCli('ctrlc');
    let exited = false;
    void cli.exit.then(() => (exited = true));
    try {
      const c = await Client.open(cli.tcp);
      // The tracker is up before the burst, so the burst is what is in flight at Ctrl-C.
      await c.send(lineFrame('node-ctrlc', T0, 2, 't'));
      await until(async () => (await getJson(cli.http, '/api/v1/trackers')).json.trackers?.some?.((t: { state: string }) => t.state === 'running'), 'tracker running', 15000);
      const lines: string[] = [];
      for (let i = 1; i < N; i++) lines.push(lineFrame('node-ctrlc', T0 + i * 100, 2, 't'));
      for (let i = 0; i < lines.length; i += 2000) await c.send(lines.slice(i, i + 2000).join(''));
      await until(async () => metric((await httpGet(cli.http, '/metrics')).body, 'radar_ingest_frames_received_total') === N, 'all frames received', 30000);
      // Ctrl-C: the whole group, while the tracker is still working through the burst.
      process.kill(-cli.child.pid!, 'SIGINT');
      assert.equal(await cli.exit, 0);
      c.destroy();
    } finally {
      if (!exited) process.kill(-cli.child.pid!, 'SIGKILL');
    }
    // The track file: a confirmed track reports on every frame, so its events' timestamps
    // are every frame's from the third (min_length 3) to the last.
    const out = join(dir, 'ctrlc');
    const files = readdirSync(out).filter((f) => f.endsWith('.jsonl'));
    assert.equal(files.length, 1, `one track file: ${files.join(', ')}`);
    const stamps = new Set<number>();
    for (const l of readFileSync(join(out, files[0]!), 'utf8').split('\n')) if (l) stamps.add((JSON.parse(l) as { timestamp: number }).timestamp);
    assert.equal(Math.max(...stamps), T0 + (N - 1) * 100, 'the last frame was tracked');
    assert.equal(stamps.size, N - 2, 'every frame from the third on produced events');
    const logs = cli.out().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const fin = logs.find((l) => 'tracker_fed' in l);
    assert.ok(fin, `a final drain line with tracker figures:\n${cli.out().slice(-3000)}`);
    assert.equal(fin.msg, 'rings drained to the trackers');
    assert.deepEqual(
      [fin.drained, fin.received, fin.delivered, fin.dropped, fin.tracker_fed, fin.tracker_read, fin.tracker_unread, fin.tracker_unconfirmed],
      [true, N, N, 0, N, N, 0, 0],
    );
  });

  test('the built-in tracker does not outlive an engine killed with SIGKILL', async () => {
    const cli = await startCli('sigkill');
    let exited = false;
    void cli.exit.then(() => (exited = true));
    let pid = 0;
    try {
      const c = await Client.open(cli.tcp);
      await c.send(lineFrame('node-kill', T0, 2, 't'));
      pid = await until(async () => (await getJson(cli.http, '/api/v1/trackers')).json.trackers?.find?.((t: { state: string; pid: number | null }) => t.state === 'running' && t.pid)?.pid as number, 'tracker pid', 15000);
      c.destroy();
      // The engine alone (its tracker is in another process group: nothing passes the signal on).
      cli.child.kill('SIGKILL');
      await cli.exit;
      await until(() => !pidAlive(pid), `tracker ${pid} exited after the engine died`, 5000);
    } finally {
      if (!exited) process.kill(-cli.child.pid!, 'SIGKILL');
      if (pid && pidAlive(pid)) process.kill(pid, 'SIGKILL');
    }
  });

  test('a tracker leads its own process group, and stopping it takes the helpers it started with it', async () => {
    // A stand-in tracker (retina may start helpers too): it starts `sleep`, says its pid on stderr, and listens.
    const script = `const h = require('node:child_process').spawn('sleep', ['300'], { stdio: 'ignore' });
      process.stderr.write('helper ' + h.pid + '\\n');
      require('node:net').createServer((s) => s.resume()).listen(Number(process.argv[1]), '127.0.0.1');
      process.on('SIGTERM', () => process.exit(0));`;
    let helper = 0;
    const proc = new TrackerProcess({
      command: [process.execPath, '-e', script, '{port}'], nodeId: 'node-group', port: await freePort(), input: 'tcp',
      startupDelayMs: 0, retryDelayMs: 50, connectRetries: 100,
      stderrLine: (l) => { const m = /^helper (\d+)$/.exec(l); if (m) helper = Number(m[1]); },
    });
    await proc.start();
    try {
      await until(() => helper, 'helper pid');
      const pgid = (pid: number): number => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[2]);
      assert.equal(pgid(proc.pid!), proc.pid, 'the tracker leads its own group');
      assert.notEqual(pgid(proc.pid!), pgid(process.pid), 'not the engine\'s group');
      assert.equal(pgid(helper), proc.pid, 'its helper is in its group');
      await proc.stop(500);
      // Gone, or a zombie waiting for a reaper that is not ours to be.
      const alive = (pid: number): boolean => {
        try {
          return !/^\S+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
        } catch {
          return false;
        }
      };
      await until(() => !alive(helper), `helper ${helper} stopped with its tracker`);
    } finally {
      await proc.stop(0);
      if (helper && pidAlive(helper)) process.kill(helper, 'SIGKILL');
    }
  });
});

describe('end-of-input reports', () => {
  test('the last well-formed EOF line counts; anything else is no report; trackers without one are unconfirmed', async () => {
    const { parseInputReport, sumConsumption } = await import('../src/tracker/input-report.js');
    assert.equal(parseInputReport('{"type":"EOF","frames_read":12}\n'), 12);
    assert.equal(parseInputReport('noise\n{"type":"EOF","frames_read":3}\n{"type":"EOF","frames_read":5}'), 5);
    for (const bad of ['', 'garbage', '{"frames_read":3}', '{"type":"EOF","frames_read":-1}', '{"type":"EOF","frames_read":"3"}', '{"type":"EOF","frames_read":1.5}']) {
      assert.equal(parseInputReport(bad), null, bad);
    }
    assert.deepEqual(sumConsumption([{ fed: 10, read: 10 }, { fed: 8, read: 5 }, { fed: 4, read: null }, { fed: 0, read: null }]),
      { fed: 22, read: 15, unread: 3, unconfirmed: 1 });
  });
});
