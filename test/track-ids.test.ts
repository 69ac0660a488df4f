// Tracks a consumer can trust: track ids that no restart reuses, `deleted`
// events for every live track when a tracker is stopped, and counts of tracks
// (tracks_active, tracks_started) next to the count of events (tracks_written).
// The real engine runs the built-in tracker as its subprocess; nodes are real TCP
// clients; what is checked is the track file, the API and /metrics.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Engine } from '../src/engine/engine.js';
import { EPOCH_FILE, claimEpoch } from '../src/tracker/run-id.js';
import { Client, freePort, getJson, scrape, startTrackerEngine, until, type TrackerEngine } from './helpers.js';
import { twoTargetFrames } from './track-fixtures.js';

const REFERENCE = fileURLToPath(new URL('../src/tracker/reference-tracker.js', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'radar-track-ids-'));
const engines: Engine[] = [];
const clients: Client[] = [];
after(async () => {
  for (const c of clients) c.destroy();
  await Promise.all(engines.map((e) => e.stop().catch(() => undefined)));
  rmSync(root, { recursive: true, force: true });
});

const T0 = 1_757_400_000_000;
const NODE = 'ids-node';
const DEADLINE = 20_000;

const { frames } = twoTargetFrames(NODE, T0);

type Event = Record<string, any>;
/** Every complete line of the node's track files (one per day; a test run crossing midnight reads both). */
function trackLines(out: string): Event[] {
  const files = existsSync(out) ? readdirSync(out).filter((f) => f.startsWith(`${NODE}_`) && f.endsWith('.jsonl')).sort() : [];
  const lines: Event[] = [];
  for (const f of files) {
    const parts = readFileSync(join(out, f), 'utf8').split('\n');
    parts.pop();
    for (const p of parts) lines.push(JSON.parse(p) as Event);
  }
  return lines;
}

async function view(t: TrackerEngine): Promise<Record<string, any>> {
  return (await getJson(t.http, `/api/v1/trackers/${NODE}`)).json;
}

async function start(out: string): Promise<TrackerEngine> {
  const t = await startTrackerEngine(out, [], {
    tracker: { command: 'reference', stop_grace_ms: 3000 },
    retry: { extended_outage_sec: 0.4 },
  });
  engines.push(t.e);
  return t;
}

/** Lines this tracker process wrote end with a `deleted` event for every track it reported, none after. */
function assertEndsDeleted(seg: Event[], what: string): void {
  const ids = [...new Set(seg.map((e) => e.track_id))];
  assert.ok(ids.length >= 2, `${what}: tracks reported (${ids.length})`);
  const tail = seg.slice(seg.length - ids.length);
  assert.deepEqual(tail.map((e) => e.state), ids.map(() => 'deleted'), `${what}: the segment ends with one deleted event per track`);
  assert.deepEqual(new Set(tail.map((e) => e.track_id)), new Set(ids), `${what}: every track it reported is deleted`);
  for (const id of ids) assert.equal(seg.filter((e) => e.track_id === id && e.state === 'deleted').length, 1, `${what}: ${id} deleted once`);
}

describe('track ids and the end of tracks (built-in tracker, real engine)', () => {
  test('a tracker crash and an engine restart never reuse an id in the day\'s file; stops end every live track; counts of tracks', async () => {
    const out = join(root, 'restarts');
    // ---- engine 1, tracker process 1 ----
    const a = await start(out);
    const c1 = await Client.open(a.tcp);
    clients.push(c1);
    await c1.send(frames(0, 6));
    let v = await until(async () => {
      const x = await view(a);
      // Two tracks confirmed at frame 3, one event each per frame from then: 4 frames x 2 tracks = 8 events.
      return x.state === 'running' && x.frames_fed === 6 && x.tracks_active === 2 && x.tracks_written === 8 && x;
    }, 'two live tracks, their events written', DEADLINE);
    assert.equal(v.tracks_started, 2);
    let m = await scrape(a.e);
    assert.equal(m.get('radar_ingest_tracks_active'), 2);
    assert.equal(m.get('radar_ingest_tracks_started_total'), 2);
    assert.equal(m.get('radar_ingest_tracks_written_total'), 8, 'tracks_written counts events, not tracks');

    // ---- the tracker is killed from outside (SIGTERM to its pid): a crash, restarted ----
    const pid1 = v.pid as number;
    process.kill(pid1, 'SIGTERM');
    v = await until(async () => {
      const x = await view(a);
      return x.state === 'running' && x.restarts === 1 && x.pid !== pid1 && x.tracks_written === 10 && x;
    }, 'restarted after the crash, with the dying tracker\'s deleted events written', DEADLINE);
    assert.equal(v.tracks_active, 0, 'deleted events end the tracks');
    assert.equal(v.tracks_started, 2);
    await until(() => trackLines(out).length === 10, 'the first process\'s lines in the file', DEADLINE);
    const seg1 = trackLines(out);
    assertEndsDeleted(seg1, 'tracker killed by SIGTERM');

    // ---- tracker process 2 ----
    await c1.send(frames(6, 12));
    v = await until(async () => {
      const x = await view(a);
      return x.frames_fed === 12 && x.tracks_active === 2 && x.tracks_written === 18 && x;
    }, 'two tracks in the restarted tracker', DEADLINE);
    assert.equal(v.tracks_started, 4, 'the restarted tracker\'s tracks are new tracks');
    m = await scrape(a.e);
    assert.equal(m.get('radar_ingest_tracks_started_total'), 4);
    assert.equal(m.get('radar_ingest_tracks_active'), 2);

    // ---- shutdown of engine 1: the live tracks end with deleted events ----
    await a.e.stop();
    const afterShutdown = trackLines(out);
    const seg2 = afterShutdown.slice(seg1.length);
    assert.equal(seg2.length, 10, 'two tracks: 4 frames of events, then one deleted each');
    assertEndsDeleted(seg2, 'engine shutdown');
    assert.equal(seg2.at(-1)!.timestamp, T0 + 500 * 11, 'deleted at the last frame\'s time');

    // ---- engine 2 on the same output_dir ----
    const b = await start(out);
    const c2 = await Client.open(b.tcp);
    clients.push(c2);
    await c2.send(frames(20, 26));
    await until(async () => (await view(b)).tracks_active === 2, 'two tracks after the engine restart', DEADLINE);
    // The node goes away: outage, then the tracker is stopped; its tracks end.
    c2.end();
    v = await until(async () => {
      const x = await view(b);
      return x.state === 'stopped' && x.tracks_written === 10 && x;
    }, 'stopped after the outage, deleted events written', DEADLINE);
    assert.equal(v.tracks_active, 0);
    assert.equal(v.tracks_started, 2);
    m = await scrape(b.e);
    assert.equal(m.get('radar_ingest_tracks_active'), 0);
    assert.equal(m.get('radar_ingest_tracks_started_total'), 2);
    assert.equal(m.get('radar_ingest_tracks_written_total'), 10);
    await until(() => trackLines(out).length === afterShutdown.length + 10, 'the outage stop\'s lines in the file', DEADLINE);
    const all = trackLines(out);
    const seg3 = all.slice(afterShutdown.length);
    assertEndsDeleted(seg3, 'outage stop');

    // ---- no id is used by two processes ----
    const segments = [seg1, seg2, seg3];
    const owner = new Map<string, number>();
    segments.forEach((seg, k) => {
      for (const e of seg) {
        const prev = owner.get(e.track_id);
        assert.ok(prev === undefined || prev === k, `track id ${e.track_id} written by tracker process ${prev! + 1} and again by process ${k + 1}`);
        owner.set(e.track_id, k);
      }
    });
    assert.equal(owner.size, 6, 'six tracks, six ids');
    // The documented format: {epoch}.{spawn}-T{nnnn}; engine 2's epoch is the next one.
    const runs = segments.map((seg) => {
      const runIds = new Set(seg.map((e) => /^(\d+)\.(\d+)-T\d{4,}$/.exec(e.track_id)?.slice(1, 3).join('.') ?? `bad id ${e.track_id}`));
      assert.equal(runIds.size, 1, `one run id per process: ${[...runIds].join(', ')}`);
      return [...runIds][0]!.split('.').map(Number) as [number, number];
    });
    assert.equal(runs[0]![0], runs[1]![0], 'one epoch per engine');
    assert.ok(runs[1]![1] > runs[0]![1], 'the restarted tracker has the next spawn number');
    assert.equal(runs[2]![0], runs[0]![0] + 1, 'the restarted engine has the next epoch');
    assert.equal(readFileSync(join(out, EPOCH_FILE), 'utf8').trim(), String(runs[2]![0]));
  });
});

describe('the built-in tracker on its own', () => {
  /** Spawns the tracker; collects stdout events and stderr. */
  function spawnRef(args: string[]): { events: () => Event[]; err: () => string; exit: Promise<number | null>; kill: (s: NodeJS.Signals) => void } {
    const child = spawn(process.execPath, [REFERENCE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exit = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    return {
      events: () => out.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Event),
      err: () => err,
      exit,
      kill: (s) => child.kill(s),
    };
  }
  const plain = (i: number): string => `${JSON.stringify({ timestamp: T0 + 500 * i, delay: [40 + 0.1 * i, 90], doppler: [-28, 31], snr: [15, 14] })}\n`;

  test('--id-prefix puts the run id in front of every id; a tracker stopped by SIGTERM or SIGINT reports its live tracks deleted', async () => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      const port = await freePort();
      const p = spawnRef(['--tcp', '--tcp-port', String(port), '--id-prefix', '7.3']);
      await until(() => p.err().includes('listening on'), 'listening', DEADLINE);
      const s = createConnection(port, '127.0.0.1');
      s.on('error', () => undefined);
      s.write([0, 1, 2, 3].map(plain).join(''));
      await until(() => p.events().length === 4, 'two tracks, two events each', DEADLINE);
      // The end of the input is not the end of the tracks (a sender may reconnect, as with retina).
      s.end();
      await until(() => p.err().includes('connection closed'), 'the input closed', DEADLINE);
      assert.equal(p.events().length, 4, 'no deleted event at the end of the input');
      p.kill(sig);
      assert.equal(await p.exit, 0);
      const ev = p.events();
      assert.deepEqual(ev.map((e) => e.track_id), ['7.3-T0001', '7.3-T0002', '7.3-T0001', '7.3-T0002', '7.3-T0001', '7.3-T0002']);
      assert.deepEqual(ev.slice(4).map((e) => [e.state, e.timestamp]), [['deleted', T0 + 1500], ['deleted', T0 + 1500]]);
      assert.match(p.err(), new RegExp(`${sig}: exiting \\(2 live tracks reported deleted\\)`));
    }
  });

  test('a bad --id-prefix exits 2 with the reason', async () => {
    const p = spawnRef(['--tcp', '--tcp-port', '0', '--id-prefix', 'a-b"']);
    assert.equal(await p.exit, 2);
    assert.match(p.err(), /--id-prefix: bad value/);
  });
});

describe('the epoch counter in output_dir', () => {
  test('raised by one per claim; a file that is not a counter, or a directory that cannot be written, falls back to the clock', () => {
    const dir = join(root, 'epoch');
    assert.deepEqual(claimEpoch(dir, 5e12), { epoch: 1, problem: null });
    assert.deepEqual(claimEpoch(dir, 5e12), { epoch: 2, problem: null });
    assert.equal(readFileSync(join(dir, EPOCH_FILE), 'utf8'), '2\n');
    writeFileSync(join(dir, EPOCH_FILE), 'garbage');
    const g = claimEpoch(dir, 5e12);
    assert.equal(g.epoch, 5e12);
    assert.match(g.problem!, /does not hold a counter/);
    assert.equal(claimEpoch(dir, 6e12).epoch, 5e12 + 1, 'counting on from the clock');
    if (process.getuid?.() !== 0) {
      const ro = join(root, 'read-only');
      mkdirSync(ro);
      chmodSync(ro, 0o500);
      const r = claimEpoch(ro, 7e12);
      assert.equal(r.epoch, 7e12);
      assert.match(r.problem!, /cannot write/);
    }
  });
});
