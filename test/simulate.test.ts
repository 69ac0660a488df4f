// `radar-ingest simulate`: the seeded scene model (sim-targets.ts) on its own, and
// the real CLI in a subprocess pushing to a real engine whose built-in reference
// tracker turns the simulated targets into track files.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import { Scene, WAVELENGTH_M, type SceneOptions } from '../src/cli/sim-targets.js';
import { getJson, scrape, startTrackerEngine, until, freePort, TOKEN, type TrackerEngine } from './helpers.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));

function runCli(args: string[], env: Record<string, string> = {}, cwd?: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const env0 = { ...process.env };
    delete env0.RADAR_INGEST_TOKEN;
    const p = spawn(process.execPath, [CLI, 'simulate', ...args], { env: { ...env0, ...env }, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

const opts = (over: Partial<SceneOptions> = {}): SceneOptions => ({ targets: 3, rateHz: 10, seed: 7, nodeIndex: 0, clutterPerFrame: 2, adsb: true, ...over });

describe('simulated scene (pure model)', () => {
  test('the same seed and node give the same frames; another seed or node gives others', () => {
    const frames = (o: SceneOptions): unknown[] => {
      const s = new Scene(o);
      return Array.from({ length: 50 }, () => s.nextFrame());
    };
    assert.deepEqual(frames(opts()), frames(opts()));
    assert.notDeepEqual(frames(opts()), frames(opts({ seed: 8 })));
    assert.notDeepEqual(frames(opts()), frames(opts({ nodeIndex: 1 })));
  });

  test('targets move smoothly: delay drifts as -doppler x wavelength, measurements stay near the truth', () => {
    const s = new Scene(opts({ targets: 5, rateHz: 2, clutterPerFrame: 0, detectionProbability: 1 }));
    const dt = 0.5;
    for (const target of s.targets) {
      for (let k = 0; k < 100; k++) {
        const a = s.truth(target, k * dt);
        const b = s.truth(target, (k + 1) * dt);
        // An aircraft at <= 260 m/s changes its bistatic range by <= 2 x 260 m/s.
        assert.ok(Math.abs(b.delay - a.delay) <= (2 * 260 * dt) / 1000, `delay step ${b.delay - a.delay}`);
        const rate = (b.delay - a.delay) / dt;
        const predicted = (-((a.doppler + b.doppler) / 2) * WAVELENGTH_M) / 1000;
        assert.ok(Math.abs(rate - predicted) < 0.002, `delay rate ${rate} km/s vs -doppler*lambda ${predicted}`);
        assert.ok(Math.abs(b.doppler - a.doppler) < 5, `doppler step ${b.doppler - a.doppler} Hz`);
      }
    }
    // Every target detected in every frame (pd 1, no clutter): each measurement is within 5 sigma of its target's truth.
    for (let k = 0; k < 20; k++) {
      const f = s.nextFrame();
      assert.equal(f.delay.length, 5);
      assert.equal(f.clutterDetections, 0);
      for (let i = 0; i < f.delay.length; i++) {
        const hex = f.adsb[i]!.hex;
        const target = s.targets.find((t) => t.hex === hex)!;
        const tr = s.truth(target, k * dt);
        assert.ok(Math.abs(f.delay[i]! - tr.delay) < 0.1, `delay ${f.delay[i]} vs ${tr.delay}`);
        assert.ok(Math.abs(f.doppler[i]! - tr.doppler) < 1.5, `doppler ${f.doppler[i]} vs ${tr.doppler}`);
        assert.ok(f.snr[i]! >= 3);
      }
    }
  });

  test('clutter: Poisson false alarms with null adsb; targets carry ADS-B objects with hex/lat/lon/alt_baro/gs/track', () => {
    const s = new Scene(opts({ targets: 2, clutterPerFrame: 4 }));
    let clutter = 0;
    let targets = 0;
    const N = 2000;
    for (let k = 0; k < N; k++) {
      const f = s.nextFrame();
      assert.equal(f.delay.length, f.targetDetections + f.clutterDetections);
      assert.equal(f.adsb.filter((x) => x === null).length, f.clutterDetections);
      for (const x of f.adsb) if (x) assert.deepEqual(Object.keys(x).sort(), ['alt_baro', 'gs', 'hex', 'lat', 'lon', 'track']);
      assert.deepEqual([...f.delay].sort((a, b) => a - b), f.delay, 'in delay order');
      clutter += f.clutterDetections;
      targets += f.targetDetections;
    }
    assert.ok(Math.abs(clutter / N - 4) < 0.3, `mean clutter ${clutter / N}`);
    assert.ok(targets / N > 2 * 0.9 && targets / N < 2 * 0.99, `detection probability ${targets / (2 * N)}`);
    const none = new Scene(opts({ clutterPerFrame: 0, adsb: false }));
    for (let k = 0; k < 50; k++) {
      const f = none.nextFrame();
      assert.equal(f.clutterDetections, 0);
      assert.ok(f.adsb.every((x) => x === null));
    }
  });
});

interface Summary {
  ok: boolean;
  frames_sent: number;
  frames_acked: number | null;
  detections: number;
  nodes: { node_id: string; frames_sent: number; frames_acked: number | null; detections: number; error: string | null }[];
}

/** Confirmed track events per track id from the node's track file(s). */
function tracksOf(dir: string, node: string): Map<string, { adsb_hex: string | null; length: number }> {
  const m = new Map<string, { adsb_hex: string | null; length: number }>();
  for (const f of readdirSync(dir).filter((n) => n.startsWith(`${node}_`) && n.endsWith('.jsonl'))) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (!line) continue;
      const e = JSON.parse(line) as { track_id: string; adsb_hex: string | null; length: number; state: string };
      if (e.state !== 'confirmed') continue;
      m.set(e.track_id, { adsb_hex: e.adsb_hex, length: Math.max(e.length, m.get(e.track_id)?.length ?? 0) });
    }
  }
  return m;
}

describe('radar-ingest simulate against a real engine with the reference tracker', () => {
  let t: TrackerEngine;
  let dir: string;
  const RATE = 10;
  const DURATION = 2;
  const FRAMES = RATE * DURATION;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'radar-simulate-'));
    t = await startTrackerEngine(dir, [], { tracker: { command: 'reference' } });
  });
  after(async () => {
    await t?.e.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function check(protocol: 'line' | 'binary', prefix: string, seed: number): Promise<void> {
    const before = await scrape(t.e);
    const r = await runCli(['--host', '127.0.0.1', '--port', String(t.tcp), '--token', TOKEN, '--nodes', '2', '--rate', String(RATE),
      '--targets', '3', '--duration', String(DURATION), '--protocol', protocol, '--adsb', '--seed', String(seed), '--prefix', prefix, '--json']);
    assert.equal(r.code, 0, r.err + r.out);
    const s = JSON.parse(r.out) as Summary;
    assert.equal(s.ok, true);
    assert.equal(s.frames_sent, 2 * FRAMES);
    assert.deepEqual(s.nodes.map((n) => [n.node_id, n.frames_sent, n.error]), [[`${prefix}1`, FRAMES, null], [`${prefix}2`, FRAMES, null]]);
    if (protocol === 'binary') assert.equal(s.frames_acked, s.frames_sent);
    else assert.equal(s.frames_acked, null);
    assert.match(r.err, /^simulate \d+s: sent \d+ frames \(\d+\.\d\/s\)/m, 'a progress line on stderr');
    if (protocol === 'binary') assert.match(r.err, /^simulate \d+s: sent \d+ frames \(\d+\.\d\/s\), acked \d+, \d\/2 nodes connected$/m);

    // The engine counted exactly what the summary says.
    const m = await until(async () => {
      const now = await scrape(t.e);
      return now.get('radar_ingest_frames_received_total')! - before.get('radar_ingest_frames_received_total')! === s.frames_sent && now;
    }, 'the engine to count every simulated frame');
    assert.equal(m.get('radar_ingest_detections_received_total')! - before.get('radar_ingest_detections_received_total')!, s.detections);
    const views = await until(async () => {
      const v = (await getJson(t.http, '/api/v1/trackers')).json.trackers as { node_id: string; frames_fed: number }[];
      const mine = v.filter((x) => x.node_id.startsWith(prefix));
      return mine.length === 2 && mine.every((x) => x.frames_fed === FRAMES) && mine;
    }, 'both trackers fed every frame', 20000);
    assert.equal(views.length, 2);

    // The tracker confirmed a long track for every simulated aircraft, identified by its ADS-B hex.
    for (let i = 0; i < 2; i++) {
      const node = `${prefix}${i + 1}`;
      const hexes = new Scene({ targets: 3, rateHz: RATE, seed, nodeIndex: i, clutterPerFrame: 2, adsb: true }).targets.map((x) => x.hex).sort();
      const tracks = await until(() => {
        const long = [...tracksOf(dir, node).values()].filter((x) => x.length >= FRAMES / 2);
        return long.length >= 3 && long;
      }, `three long tracks of ${node}`, 10000);
      assert.deepEqual([...new Set(tracks.map((x) => x.adsb_hex))].sort(), hexes);
    }
  }

  test('line protocol: 2 nodes for 2 s; every frame counted, every target tracked, exit 0', async () => {
    await check('line', 'simline-', 7);
  });

  test('binary protocol: 2 nodes for 2 s; every frame acked and counted, every target tracked, exit 0', async () => {
    await check('binary', 'simbin-', 11);
  });

  test('without --duration it runs until Ctrl-C (SIGINT), then settles, prints the summary and exits 0', async () => {
    const before = await scrape(t.e);
    const env0 = { ...process.env };
    delete env0.RADAR_INGEST_TOKEN;
    const p = spawn(process.execPath, [CLI, 'simulate', '--port', String(t.tcp), '--token', TOKEN, '--protocol', 'binary', '--rate', '20', '--prefix', 'simint-', '--json'],
      { env: env0, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const code = new Promise<number | null>((r) => p.on('close', r));
    await until(() => /^simulate 1s: sent [1-9]/m.test(err), 'the first progress line', 10000);
    p.kill('SIGINT');
    assert.equal(await code, 0, err);
    const s = JSON.parse(out) as Summary & { stopped_by_signal: boolean };
    assert.equal(s.stopped_by_signal, true);
    assert.ok(s.frames_sent >= 20);
    assert.equal(s.frames_acked, s.frames_sent);
    await until(async () => (await scrape(t.e)).get('radar_ingest_frames_received_total')! - before.get('radar_ingest_frames_received_total')! === s.frames_sent,
      'the engine to count every frame sent');
  });

  test('a wrong token: exit 1 with a message that says why (line) or the host\'s error (binary)', async () => {
    const line = await runCli(['--host', '127.0.0.1', '--port', String(t.tcp), '--token', 'wrong', '--duration', '2', '--prefix', 'badline-']);
    assert.equal(line.code, 1, line.err);
    assert.match(line.err, /badline-1: the host closed the connection after \d+ frames; .*check the token/);
    assert.match(line.out, /FAILED/);
    const bin = await runCli(['--host', '127.0.0.1', '--port', String(t.tcp), '--token', 'wrong', '--duration', '2', '--protocol', 'binary', '--prefix', 'badbin-', '--json']);
    assert.equal(bin.code, 1, bin.err);
    assert.match(bin.err, /badbin-1: the host refused the node \(RADAR_ERR_AUTH_FAILED: /);
    const s = JSON.parse(bin.out) as Summary;
    assert.equal(s.ok, false);
    assert.equal(s.frames_sent, 0);
  });

  test('host, port and token come from the config\'s node listener (0.0.0.0 means loopback; RADAR_INGEST_TOKEN wins)', async () => {
    const cfg = join(dir, 'sim-config.yaml');
    writeFileSync(cfg, `tcp_server:\n  enabled: true\n  host: 0.0.0.0\n  port: ${t.tcp}\n  token: not-the-token\n`);
    const r = await runCli(['--config', cfg, '--rate', '20', '--duration', '0.5', '--prefix', 'simcfg-', '--json'], { RADAR_INGEST_TOKEN: TOKEN });
    assert.equal(r.code, 0, r.err);
    const s = JSON.parse(r.out) as Summary & { host: string; port: number };
    assert.equal(s.host, '127.0.0.1');
    assert.equal(s.port, t.tcp);
    assert.equal(s.frames_sent, 10);
    // Without the environment's token, the file's token is presented and refused.
    const refused = await runCli(['--config', cfg, '--duration', '1', '--prefix', 'simcfg2-']);
    assert.equal(refused.code, 1);
  });
});

describe('radar-ingest simulate usage', () => {
  test('a bad flag or value exits 2 naming it; nothing listening exits 1 naming the address', async () => {
    const bad = await runCli(['--bogus']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /radar-ingest simulate: Unknown option '--bogus'/);
    assert.match(bad.err, /^usage: radar-ingest simulate/m);
    const proto = await runCli(['--protocol', 'udp', '--port', '1']);
    assert.equal(proto.code, 2);
    assert.match(proto.err, /--protocol: expected line or binary, got "udp"/);
    const rate = await runCli(['--rate', '0', '--port', '1']);
    assert.equal(rate.code, 2);
    assert.match(rate.err, /--rate: expected frames per second/);
    const missing = await runCli(['--config', '/nonexistent/config.yaml']);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /config error: config file not found: \/nonexistent\/config\.yaml/);
    const port = await freePort();
    const down = await runCli(['--port', String(port), '--token', 'x', '--duration', '1']);
    assert.equal(down.code, 1);
    assert.match(down.err, new RegExp(`cannot connect to 127\\.0\\.0\\.1:${port}: ECONNREFUSED`));
    // A host that is not radar-ingest (here: answers the hello with a 4 GiB length prefix) is not buffered.
    const fake = createServer((c) => {
      c.on('error', () => undefined);
      c.once('data', () => c.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x80])));
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    try {
      const odd = await runCli(['--port', String((fake.address() as { port: number }).port), '--token', 'x', '--protocol', 'binary', '--duration', '1']);
      assert.equal(odd.code, 1);
      assert.match(odd.err, /sim-1: the host sent a 4294967295-byte message: not the radar-ingest binary protocol/);
    } finally {
      fake.close();
    }
    const help = await runCli(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.out, /--protocol P/);
  });
});
