// Tracker lifecycle end to end: the real engine with sink "trackers", real
// tracker subprocesses (test/fixtures/fake-tracker.ts), real TCP node clients and
// millisecond timings. Each test observes what an operator sees: the tracker API,
// /metrics, the track files, process ids, log lines and exit codes.
import { test, describe, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Engine, EngineOptions } from '../src/engine/engine.js';
import type { Logger } from '../src/telemetry/logger.js';
import type { InstanceView } from '../src/tracker/tracker-instance.js';
import {
  Client, FAKE_TRACKER, TOKEN, assertAccounting, startTrackerEngine, type TrackerEngine, freePort, freePortRange, getJson, httpGet, lineFrame, pidAlive, scrape, until,
} from './helpers.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'radar-trackers-lifecycle-'));

// ---- fixtures --------------------------------------------------------------

const engines: Engine[] = [];
const clients: Client[] = [];
const children: ChildProcess[] = [];
/** Tracker pids started by CLI subprocesses (killed if a test left them behind). */
const strayPids: number[] = [];

async function cleanup(): Promise<void> {
  for (const c of clients.splice(0)) c.destroy();
  await Promise.all(engines.splice(0).map((e) => e.stop().catch(() => undefined)));
  for (const ch of children.splice(0)) if (ch.exitCode === null && ch.signalCode === null) ch.kill('SIGKILL');
  for (const pid of strayPids.splice(0)) if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
}

let dirs = 0;
function subdir(name: string): string {
  const d = join(dir, `${name}-${++dirs}`);
  mkdirSync(d, { recursive: true });
  return d;
}



/** A pino logger whose lines are parsed and kept (for the state-change timeline). */
function captureLogger(level = 'info'): { logger: Logger; lines: Record<string, any>[] } {
  const lines: Record<string, any>[] = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level }, dest) as unknown as Logger, lines };
}

/** An engine with sink "trackers" (helpers.startTrackerEngine), stopped after the tests. */
async function trackerEngine(fakeArgs: string[], over: Record<string, any> = {}, opts: Partial<EngineOptions> = {}): Promise<TrackerEngine> {
  const t = await startTrackerEngine(subdir('out'), fakeArgs, over, opts);
  engines.push(t.e);
  return t;
}

async function open(port: number): Promise<Client> {
  const c = await Client.open(port);
  clients.push(c);
  return c;
}

function view(e: Engine, node: string): InstanceView | undefined {
  return e.trackers!.get(node)?.view();
}


/** Timestamps of every `{"echo": frame}` line in the track files of tracker `name`, in file order. */
function echoes(outDir: string, name: string): number[] {
  const ts: number[] = [];
  let files: string[];
  try {
    files = readdirSync(outDir).filter((f) => f.startsWith(`${name}_`) && f.endsWith('.jsonl')).sort();
  } catch {
    return ts;
  }
  for (const f of files) {
    const parts = readFileSync(join(outDir, f), 'utf8').split('\n');
    parts.pop(); // '' after the last newline, or a line the writer has not finished
    for (const line of parts) {
      if (line === '') continue;
      const o = JSON.parse(line);
      if (o.echo && typeof o.echo.timestamp === 'number') ts.push(o.echo.timestamp);
    }
  }
  return ts;
}

const hasAll = (got: number[], want: number[]): boolean => {
  const s = new Set(got);
  return want.every((t) => s.has(t));
};
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const frames = (node: string, tss: number[], n = 2): string => tss.map((t) => lineFrame(node, t, n)).join('');

/**
 * Writes 100-frame chunks of `node` (50 detections each, timestamps from `ts`)
 * until `done()` holds or 2,000 chunks went, waiting (at most 50 ms) for the
 * socket to drain when it is back-pressured. Returns the next timestamp.
 */
async function fillUntil(c: Client, node: string, ts: number, done: () => boolean): Promise<number> {
  for (let i = 0; i < 2000 && !done(); i++) {
    const chunk = frames(node, range(ts, ts + 99), 50);
    ts += 100;
    if (!c.socket.write(chunk)) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        c.socket.once('drain', () => { clearTimeout(t); r(); });
      });
    }
  }
  return ts;
}

// ---- tests -------------------------------------------------------------------

after(async () => {
  await cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe('tracker lifecycle (real engine, real tracker subprocesses)', () => {
  afterEach(cleanup);

  test('outage: kept alive for extended_outage, then stopped; respawned (not a restart) when the node returns', async () => {
    const { e, out, http, tcp } = await trackerEngine(['--echo'], { retry: { extended_outage_sec: 0.3 } });
    const node = 'n-outage';
    const c = await open(tcp);
    await c.send(frames(node, [1, 2]));
    await until(() => hasAll(echoes(out, node), [1, 2]), 'first frames echoed', 10000);
    const v0 = view(e, node)!;
    assert.equal(v0.state, 'running');
    const pid1 = v0.pid!;
    assert.ok(pid1 > 0 && pidAlive(pid1));

    const t0 = Date.now();
    c.destroy();
    const obs: Array<{ t: number; state: string; pid: number | null; alive: boolean }> = [];
    const stopped = await until(() => {
      const v = view(e, node)!;
      obs.push({ t: Date.now() - t0, state: v.state, pid: v.pid, alive: pidAlive(pid1) });
      return v.state === 'stopped' && v;
    }, 'tracker stopped after the extended outage', 10000);
    const tStop = Date.now() - t0;

    // Outage at once, with the same process alive.
    const firstOutage = obs.find((o) => o.state === 'outage');
    assert.ok(firstOutage, `never saw state outage: ${JSON.stringify(obs.slice(0, 5))}`);
    assert.ok(firstOutage.t < 200, `outage seen only after ${firstOutage.t} ms`);
    assert.equal(firstOutage.pid, pid1);
    // Alive and in outage for at least ~250 ms after the disconnect.
    for (const o of obs.filter((x) => x.t < 250)) {
      assert.ok(o.state === 'running' || o.state === 'outage', `state ${o.state} at ${o.t} ms`);
      assert.equal(o.pid, pid1, `pid at ${o.t} ms`);
      assert.ok(o.alive, `tracker process gone at ${o.t} ms`);
    }
    assert.ok(obs.some((o) => o.t >= 200 && o.state === 'outage' && o.alive), 'still in outage shortly before the deadline');
    // Stopped after extended_outage_sec (0.3 s), not much later.
    assert.ok(tStop >= 300, `stopped after ${tStop} ms (< 300)`);
    assert.ok(tStop < 300 + 1500, `stopped only after ${tStop} ms`);
    assert.equal(stopped.pid, null);
    assert.equal(pidAlive(pid1), false, 'the old tracker process is gone');
    assert.equal(stopped.restarts, 0);
    // The instance stays registered.
    const list = await getJson(http, '/api/v1/trackers');
    const listed = list.json.trackers.find((t: InstanceView) => t.node_id === node);
    assert.ok(listed, 'the stopped tracker is still listed');
    assert.equal(listed.state, 'stopped');
    assert.equal(listed.pid, null);

    // The node returns: a new process, frames sent from now on reach it, no crash restart counted.
    const c2 = await open(tcp);
    await c2.send(frames(node, [3, 4, 5]));
    const v2 = await until(() => {
      const v = view(e, node)!;
      return v.state === 'running' && v.pid !== null && v.pid !== pid1 && v;
    }, 'respawned tracker running', 10000);
    await until(() => hasAll(echoes(out, node), [3, 4, 5]), 'frames after the reconnect echoed', 10000);
    assert.ok(pidAlive(v2.pid!));
    const api = await getJson(http, `/api/v1/trackers/${node}`);
    assert.equal(api.status, 200);
    assert.equal(api.json.state, 'running');
    assert.equal(api.json.pid, v2.pid);
    assert.equal(api.json.restarts, 0);
    assert.equal(api.json.node_connected, true);
    assert.ok(api.json.frames_fed >= 5, `frames_fed ${api.json.frames_fed}`);
    const m = await scrape(e);
    assert.equal(m.get(`radar_ingest_tracker_restarts_total{node="${node}"}`), 0);
  });

  test('crash: a SIGKILLed tracker goes to backoff, is restarted once, and frames after the restart reach the new process', async () => {
    const { e, out, http, tcp } = await trackerEngine(['--echo'], { tracker: { restart_backoff_ms: 250 } });
    const node = 'n-crash';
    const c = await open(tcp);
    await c.send(frames(node, range(1, 50)));
    await until(() => echoes(out, node).length === 50, '50 frames echoed', 10000);
    const pid1 = (await getJson(http, `/api/v1/trackers/${node}`)).json.pid as number;
    assert.ok(pid1 > 0 && pidAlive(pid1));

    // Frames in flight at the kill.
    const inFlight = c.send(frames(node, range(51, 250)));
    process.kill(pid1, 'SIGKILL');
    await inFlight;
    const seen = new Set<string>();
    let backoffError: string | null = null;
    const v = await until(() => {
      const x = view(e, node)!;
      seen.add(x.state);
      if (x.state === 'backoff') backoffError = x.last_error;
      return x.state === 'running' && x.pid !== null && x.pid !== pid1 && x;
    }, 'restarted tracker running', 10000);
    assert.ok(seen.has('backoff'), `states seen: ${[...seen].join(', ')}`);
    assert.equal(v.restarts, 1);
    assert.equal(pidAlive(pid1), false);
    assert.match(backoffError ?? '', /SIGKILL|input closed/);
    const m1 = await scrape(e);
    assert.equal(m1.get(`radar_ingest_tracker_restarts_total{node="${node}"}`), 1);
    assert.equal(m1.get(`radar_ingest_tracker_up{node="${node}"}`), 1);

    // Frames after the restart: every one reaches the new process.
    const later = range(1000, 1019);
    await c.send(frames(node, later));
    await until(() => hasAll(echoes(out, node), later), 'frames sent after the restart echoed', 10000);
    // Nothing is left anywhere in between: every frame is delivered or counted as dropped.
    const m = await until(async () => {
      const s = await scrape(e);
      return s.get('radar_ingest_frames_in_rings') === 0 && s.get('radar_ingest_frames_in_sink') === 0 && s;
    }, 'rings and sink empty', 10000);
    assert.equal(m.get('radar_ingest_frames_received_total'), 270);
    await assertAccounting(e);
    assert.ok(m.get('radar_ingest_frames_dropped_total{reason="tracker_lost"}')! >= 0);
    // Everything the new process saw is in timestamp order, after the kill frames.
    const all = echoes(out, node);
    const tail = all.slice(all.indexOf(1000));
    assert.deepEqual(tail, later);
  });

  test('backoff: a tracker that exits after every line is restarted after 50, 100, 200 ms', async () => {
    const { logger, lines } = captureLogger();
    const { e, tcp } = await trackerEngine(['--echo', '--exit-after', '1'], {
      tracker: { restart_backoff_ms: 50, restart_backoff_max_ms: 10000, flap_max_restarts: 50, flap_window_ms: 60000 },
    }, { logger });
    const node = 'n-backoff';
    const c = await open(tcp);
    // A steady trickle of frames, so that every new process gets a line soon after it starts.
    let ts = 1;
    const sender = setInterval(() => void c.send(lineFrame(node, ts++)).catch(() => undefined), 10);
    try {
      await until(() => (view(e, node)?.restarts ?? 0) >= 4, '4 restarts', 10000);
    } finally {
      clearInterval(sender);
    }
    const states = lines.filter((l) => l.msg === 'tracker state' && l.node === node);
    const gaps: Array<{ retryIn: number; gap: number }> = [];
    for (let i = 0; i < states.length && gaps.length < 3; i++) {
      if (states[i]!.to !== 'backoff') continue;
      const next = states.slice(i + 1).find((s) => s.to === 'starting');
      assert.ok(next, 'a restart follows the backoff');
      gaps.push({ retryIn: states[i]!.retry_in_ms, gap: next.time - states[i]!.time });
    }
    assert.equal(gaps.length, 3, JSON.stringify(states));
    const want = [50, 100, 200];
    for (let i = 0; i < 3; i++) {
      const g = gaps[i]!;
      assert.ok(Math.abs(g.retryIn - want[i]!) <= 2, `backoff ${i + 1}: retry_in_ms ${g.retryIn}, want ${want[i]}`);
      assert.ok(g.gap >= want[i]! - 1, `restart ${i + 1} came ${g.gap} ms after the exit (< ${want[i]})`);
      assert.ok(g.gap < want[i]! + 150, `restart ${i + 1} came ${g.gap} ms after the exit (want ~${want[i]})`);
    }
    assert.ok(gaps[1]!.gap > gaps[0]!.gap && gaps[2]!.gap > gaps[1]!.gap, `gaps do not grow: ${JSON.stringify(gaps)}`);
    const m = await scrape(e);
    assert.ok(m.get(`radar_ingest_tracker_restarts_total{node="${node}"}`)! >= 4);
  });

  test('flapping guard: a tracker crashing on start is parked in failed for the cool-down, then tried again', async () => {
    const { e, http, tcp } = await trackerEngine(['--crash-on-start'], {
      tracker: { restart_backoff_ms: 10, flap_max_restarts: 3, flap_window_ms: 10000, flap_cooldown_ms: 1500 },
    });
    const node = 'n-flap';
    const c = await open(tcp);
    await c.send(lineFrame(node, 1));
    const failed = await until(async () => {
      const r = await getJson(http, `/api/v1/trackers/${node}`);
      return r.status === 200 && r.json.state === 'failed' && r.json;
    }, 'tracker parked in failed', 10000);
    assert.ok(failed.cooldown_until, 'cooldown_until is set');
    assert.match(failed.last_error, /parked/);
    assert.equal(failed.restarts, 3);
    assert.equal(failed.pid, null);
    const cooldownUntil = Date.parse(failed.cooldown_until);
    assert.ok(cooldownUntil > Date.now() + 500, `cool-down ends at ${failed.cooldown_until}, too soon`);
    const m = await scrape(e);
    assert.equal(m.get('radar_ingest_trackers{state="failed"}'), 1);
    assert.equal(m.get(`radar_ingest_tracker_restarts_total{node="${node}"}`), 3);

    // Stays parked while passes go by.
    const p0 = e.trackers!.passes;
    const during: string[] = [];
    await until(() => {
      during.push(view(e, node)!.state);
      return e.trackers!.passes >= p0 + 5;
    }, '5 more passes', 10000);
    assert.ok(Date.now() < cooldownUntil, 'the passes came within the cool-down');
    assert.deepEqual([...new Set(during)], ['failed']);
    assert.equal(view(e, node)!.restarts, 3);

    // After the cool-down: tried again.
    const obs: Array<{ t: number; restarts: number; state: string }> = [];
    await until(() => {
      const v = view(e, node)!;
      obs.push({ t: Date.now(), restarts: v.restarts, state: v.state });
      return v.restarts > 3;
    }, 'a new attempt after the cool-down', 10000);
    const firstRetry = obs.find((o) => o.restarts > 3)!;
    assert.ok(firstRetry.t >= cooldownUntil, `tried again ${cooldownUntil - firstRetry.t} ms before the cool-down ended`);
    for (const o of obs.filter((x) => x.t < cooldownUntil)) assert.equal(o.state, 'failed');
    // The connection stayed up throughout.
    assert.equal(c.closed, false);
  });

  test('a throwing probe shows probe_error for that node only; other nodes keep flowing; it recovers', async () => {
    let fault = false;
    const msg = 'injected probe failure for n-probe-a';
    const { e, out, http, tcp } = await trackerEngine(['--echo'], {}, {
      supervisorFaults: { probe: (id) => { if (fault && id === 'n-probe-a') throw new Error(msg); } },
    });
    const a = await open(tcp);
    const b = await open(tcp);
    await a.send(lineFrame('n-probe-a', 1));
    await b.send(lineFrame('n-probe-b', 1));
    await until(() => echoes(out, 'n-probe-a').length === 1 && echoes(out, 'n-probe-b').length === 1, 'both trackers echo', 10000);

    fault = true;
    const pa = await until(async () => {
      const r = await getJson(http, '/api/v1/trackers/n-probe-a');
      return r.json.state === 'probe_error' && r.json;
    }, 'A in probe_error', 10000);
    assert.equal(pa.last_error, msg);
    // B keeps getting frames while A's probe keeps throwing.
    const fedB0 = view(e, 'n-probe-b')!.frames_fed;
    await b.send(frames('n-probe-b', range(2, 21)));
    await until(() => hasAll(echoes(out, 'n-probe-b'), range(2, 21)), 'B frames echoed during the fault', 10000);
    const vb = (await getJson(http, '/api/v1/trackers/n-probe-b')).json;
    assert.equal(vb.state, 'running');
    assert.ok(vb.frames_fed >= fedB0 + 20);
    const m = await scrape(e);
    assert.ok(m.get('radar_ingest_supervisor_errors_total{where="probe"}')! > 0);
    assert.equal(m.get('radar_ingest_trackers{state="probe_error"}'), 1);
    assert.equal((await getJson(http, '/api/v1/trackers/n-probe-a')).json.state, 'probe_error');

    fault = false;
    const ra = await until(async () => {
      const r = await getJson(http, '/api/v1/trackers/n-probe-a');
      return r.json.state === 'running' && r.json;
    }, 'A back to running', 10000);
    assert.equal(ra.last_error, null);
    await a.send(lineFrame('n-probe-a', 2));
    await until(() => hasAll(echoes(out, 'n-probe-a'), [1, 2]), 'A frames after recovery echoed', 10000);
  });

  test('a throwing pass is counted and the loop carries on; a node connecting afterwards gets its tracker', async () => {
    let throws = 0;
    const { e, out, http, tcp } = await trackerEngine(['--echo'], {}, {
      supervisorFaults: { pass: () => { if (throws > 0) { throws--; throw new Error('injected pass failure'); } } },
    });
    const p0 = e.trackers!.passes;
    throws = 3;
    const m1 = await until(async () => {
      const m = await scrape(e);
      return m.get('radar_ingest_supervisor_errors_total{where="pass"}')! >= 3 && m;
    }, '3 pass errors', 10000);
    const passes1 = m1.get('radar_ingest_supervisor_passes_total')!;
    assert.ok(passes1 >= p0 + 3);
    await until(async () => (await scrape(e)).get('radar_ingest_supervisor_passes_total')! >= passes1 + 3, 'passes keep increasing', 10000);
    const sup = (await getJson(http, '/api/v1/trackers')).json.supervisor;
    assert.equal(sup.pass_errors, 3);
    assert.equal(sup.last_pass_error, 'injected pass failure');

    const node = 'n-after-pass';
    const c = await open(tcp);
    await c.send(frames(node, [1, 2, 3]));
    await until(() => hasAll(echoes(out, node), [1, 2, 3]), 'frames of a node connecting after the faults echoed', 10000);
    const v = (await getJson(http, `/api/v1/trackers/${node}`)).json;
    assert.equal(v.state, 'running');
    assert.equal(v.frames_fed, 3);
    assert.equal((await scrape(e)).get('radar_ingest_supervisor_errors_total{where="pass"}'), 3);
  });

  test('a tracker flooding stderr does not block: 2000 frames all arrive, the engine stays responsive, the log is rate-limited', async () => {
    const { logger, lines } = captureLogger();
    const { e, out, http, tcp } = await trackerEngine(['--echo', '--stderr-per-line', '4096'], {
      tracker: { stderr_lines_per_10s: 5 },
    }, { logger });
    const node = 'n-stderr';
    const c = await open(tcp);
    const N = 2000;
    let done = false;
    const health: Array<{ status: number; ms: number }> = [];
    const prober = (async () => {
      while (!done) {
        const t = Date.now();
        const r = await httpGet(http, '/healthz');
        health.push({ status: r.status, ms: Date.now() - t });
        await new Promise((r2) => setTimeout(r2, 20));
      }
    })();
    try {
      for (let i = 0; i < N; i += 200) await c.send(frames(node, range(i + 1, Math.min(N, i + 200))));
      await until(() => echoes(out, node).length === N, `${N} echo lines`, 10000);
    } finally {
      done = true;
      await prober;
    }
    assert.deepEqual(echoes(out, node), range(1, N));
    assert.ok(health.length >= 1);
    for (const h of health) assert.equal(h.status, 200);
    assert.ok(Math.max(...health.map((h) => h.ms)) < 1000, `slowest /healthz ${Math.max(...health.map((h) => h.ms))} ms`);
    const v = view(e, node)!;
    assert.equal(v.state, 'running');
    assert.equal(v.frames_fed, N);
    // 2000+ stderr lines were read; only the rate limit's share was logged.
    const logged = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('tracker stderr:') && l.node === node);
    assert.ok(logged.length >= 1 && logged.length <= 5, `${logged.length} stderr lines logged`);
  });

  test('a tracker that stops reading back-pressures only its own node', async () => {
    // '--{node_id}' becomes '--no-read' for node "no-read" only (the fake ignores unknown flags).
    const { e, out, http, tcp } = await trackerEngine(['--echo', '--{node_id}'], {
      ring: { size_bytes: 65536 },
      limits: { max_frame_bytes: 16384 },
      shutdown: { deadline_ms: 2000 },
    });
    const A = 'no-read';
    const B = 'n-flowing';
    const a = await open(tcp);
    const b = await open(tcp);
    await a.send(lineFrame(A, 1, 50));
    await b.send(lineFrame(B, 1, 50));
    await until(() => view(e, A)?.state === 'running' && echoes(out, B).length === 1, 'both trackers running', 10000);

    // Fill A: the tracker's socket, the feeder's queue, then A's ring.
    const blocked = (): boolean => view(e, A)!.input_blocked;
    await fillUntil(a, A, 2, blocked);
    await until(() => blocked(), 'A input_blocked', 10000);
    const ringA = e.nodes.get(A)!.reader;
    await until(() => ringA.usedBytes > ringA.capacity / 2, 'A ring filling', 10000);
    const fedA = view(e, A)!.frames_fed;

    // B keeps flowing, in several rounds.
    let bts = 2;
    for (let round = 0; round < 3; round++) {
      const before = view(e, B)!.frames_fed;
      const batch = range(bts, bts + 49);
      bts += 50;
      await b.send(frames(B, batch, 50));
      await until(() => hasAll(echoes(out, B), batch), `B round ${round} echoed`, 10000);
      assert.ok(view(e, B)!.frames_fed >= before + 50);
    }
    const apiA = (await getJson(http, `/api/v1/trackers/${A}`)).json;
    assert.equal(apiA.input_blocked, true);
    assert.equal(apiA.state, 'running');
    assert.equal(apiA.frames_fed, fedA, 'nothing more reached the tracker that does not read');
    const apiB = (await getJson(http, `/api/v1/trackers/${B}`)).json;
    assert.equal(apiB.input_blocked, false);
    assert.ok(ringA.usedBytes > ringA.capacity / 2, 'A ring still full');
    assert.ok(e.nodes.get(B)!.reader.usedBytes < ringA.capacity / 4, 'B ring not backed up');
  });

  test('shutdown with a tracker that does not read: frames left in its ring at the deadline are counted as shutdown; the books balance', async () => {
    const { e, tcp } = await trackerEngine(['--echo', '--{node_id}'], {
      ring: { size_bytes: 65536 },
      limits: { max_frame_bytes: 16384 },
      shutdown: { deadline_ms: 4000 },
    });
    const A = 'no-read';
    const a = await open(tcp);
    await a.send(lineFrame(A, 1, 50));
    await until(() => view(e, A)?.state === 'running', 'tracker running', 10000);
    const ringA = e.nodes.get(A)!.reader;
    await fillUntil(a, A, 2, () => view(e, A)!.input_blocked && ringA.frames > 0);
    await until(() => view(e, A)!.input_blocked && ringA.frames > 0, 'input blocked, frames waiting in the ring', 10000);
    const t0 = Date.now();
    await e.stop();
    assert.ok(Date.now() - t0 < 4000 + 1000, `stopped within the deadline (${Date.now() - t0} ms)`);
    const t = e.totals();
    assert.ok((t.dropped.shutdown ?? 0) > 0, `frames left in the ring counted as shutdown: ${JSON.stringify(t.dropped)}`);
    assert.equal(t.inRings, 0, 'nothing is left uncounted in the rings');
    assert.equal(t.received, t.inRings + t.inSink + t.delivered + t.droppedTotal, JSON.stringify(t));
  });

  test('a tracker alive but not reading for tracker.stall_timeout_ms is restarted like a crashed one; its queued frames are counted', async () => {
    const stall = 600;
    const { e, http, tcp } = await trackerEngine(['--echo', '--{node_id}'], {
      ring: { size_bytes: 65536 },
      limits: { max_frame_bytes: 16384 },
      tracker: { stall_timeout_ms: stall, restart_backoff_ms: 50 },
    });
    const A = 'no-read';
    const a = await open(tcp);
    await a.send(lineFrame(A, 1, 50));
    await until(() => view(e, A)?.state === 'running', 'tracker running', 10000);
    const pid1 = view(e, A)!.pid!;
    // Fill its input until the feeder is blocked.
    await fillUntil(a, A, 2, () => view(e, A)!.input_blocked);
    await until(() => view(e, A)!.input_blocked, 'input blocked', 10000);
    const t0 = Date.now();
    // Not before the stall timeout...
    await until(() => view(e, A)!.restarts >= 1 || view(e, A)!.pid !== pid1, 'restarted after the stall timeout', 10000);
    assert.ok(Date.now() - t0 >= stall - 100, `restarted ${Date.now() - t0} ms after the input filled (stall_timeout_ms ${stall})`);
    const api = (await getJson(http, `/api/v1/trackers/${A}`)).json;
    assert.match(String(api.last_error), /has not read its input .*stall_timeout_ms/);
    await until(() => !pidAlive(pid1), 'the hung process is gone', 5000);
    // ... and it comes back: a new process, running.
    await until(() => { const v = view(e, A)!; return v.state === 'running' && v.pid !== pid1; }, 'a new process runs', 10000);
    const m = await scrape(e);
    assert.ok((m.get('radar_ingest_frames_dropped_total{reason="tracker_lost"}') ?? 0) > 0, 'frames queued to the hung tracker are counted as tracker_lost');
    assert.ok((m.get(`radar_ingest_tracker_restarts_total{node="${A}"}`) ?? 0) >= 1);
  });
});

// ---- the CLI: SIGTERM drains the rings into the trackers, then exits 0 ----------

interface CliRun {
  child: ChildProcess;
  exit: Promise<{ code: number | null; at: number }>;
  out: () => string;
  err: () => string;
}

function runCli(configPath: string): CliRun {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('RADAR_INGEST_')) delete env[k];
  const child = spawn(process.execPath, [CLI, '--config', configPath], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exit = new Promise<{ code: number | null; at: number }>((r) => child.on('exit', (code) => r({ code, at: Date.now() })));
  return { child, exit, out: () => out, err: () => err };
}

async function cliSetup(name: string, fakeArgs: string[], tracker: Record<string, unknown> = {}): Promise<{ cfg: string; out: string; tcp: number; http: number }> {
  const d = subdir(name);
  const out = join(d, 'out');
  const tcp = await freePort();
  const http = await freePort();
  const portStart = (await freePortRange(8))[0]!;
  const config = {
    shards: 1,
    sink: 'trackers',
    output_dir: out,
    startup_delay_sec: 0,
    tcp_retry_delay_sec: 0.02,
    tcp_connect_retries: 200,
    tcp_server: {
      enabled: true, host: '127.0.0.1', port: tcp, token: TOKEN,
      auto_provision: true, auto_provision_port_start: portStart, auto_provision_port_end: portStart + 7,
    },
    http: { host: '127.0.0.1', port: http },
    agents: { key_file: join(d, 'key.pem') },
    log: { level: process.env.CLI_LOG ?? 'warn' },
    tracker: { command: [process.execPath, FAKE_TRACKER, '--tcp-port', '{port}', ...fakeArgs], reconcile_interval_ms: 20, ...tracker },
    shutdown: { deadline_ms: 10000 },
  };
  const cfg = join(d, 'config.yaml');
  writeFileSync(cfg, JSON.stringify(config, null, 2)); // JSON is YAML
  return { cfg, out, tcp, http };
}

async function readyz(http: number): Promise<boolean> {
  try {
    return (await httpGet(http, '/readyz')).status === 200;
  } catch {
    return false;
  }
}

async function metric(http: number, name: string): Promise<number | undefined> {
  const { body } = await httpGet(http, '/metrics');
  const line = body.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

/**
 * The CLI on a config file: a node sends N frames, they are all accepted, SIGTERM:
 * exit 0 within the deadline and every frame is in the track file. `waitRunning`:
 * the node's first frame is sent, and its tracker is running, before the N.
 */
async function drainScenario({ waitRunning }: { waitRunning: boolean }): Promise<void> {
  const { cfg, out, tcp, http } = await cliSetup('cli-drain', ['--echo']);
  const r = runCli(cfg);
  await until(() => readyz(http), `/readyz 200 (stderr: ${r.err()})`, 10000);
  const node = 'n-cli';
  const c = await open(tcp);
  const N = 500;
  let first = 1;
  if (waitRunning) {
    await c.send(lineFrame(node, 1));
    await until(async () => {
      const v = await getJson(http, `/api/v1/trackers/${node}`);
      return v.status === 200 && v.json.state === 'running';
    }, 'tracker running', 10000);
    first = 2;
  }
  const tss = range(first, first + N - 1);
  await c.send(frames(node, tss));
  const total = tss[tss.length - 1]!;
  await until(async () => (await metric(http, 'radar_ingest_frames_received_total')) === total, `${total} frames received`, 10000);
  // The tracker is provisioned with the node's first frame in its ring: wait for its process (still starting).
  const pid = await until(async () => (await getJson(http, `/api/v1/trackers/${node}`)).json.pid as number, 'tracker process spawned', 10000);
  if (pid) strayPids.push(pid);
  const t0 = Date.now();
  r.child.kill('SIGTERM');
  const { code, at } = await r.exit;
  if (process.env.CLI_LOG) console.log(r.out());
  assert.equal(code, 0, r.err());
  assert.ok(at - t0 < 10000, `exit after ${at - t0} ms`);
  assert.deepEqual(echoes(out, node), range(1, total));
  assert.ok(pid > 0 && !pidAlive(pid), 'the tracker is gone');
}

describe('cli shutdown drain with trackers', () => {
  afterEach(cleanup);

  test('SIGTERM: every accepted frame reaches the running tracker, exit 0 within shutdown.deadline_ms', async () => {
    await drainScenario({ waitRunning: true });
  });

  test('SIGTERM with a tracker that ignores SIGTERM: it is SIGKILLed after stop_grace_ms and the CLI still exits 0', async () => {
    const { cfg, out, tcp, http } = await cliSetup('cli-kill', ['--echo', '--ignore-sigterm'], { stop_grace_ms: 300 });
    const r = runCli(cfg);
    await until(() => readyz(http), `/readyz 200 (stderr: ${r.err()})`, 10000);
    const node = 'n-cli-kill';
    const c = await open(tcp);
    await c.send(frames(node, range(1, 20)));
    await until(() => echoes(out, node).length === 20, '20 frames echoed', 10000);
    const pid = (await getJson(http, `/api/v1/trackers/${node}`)).json.pid as number;
    assert.ok(pid > 0 && pidAlive(pid));
    strayPids.push(pid);
    const t0 = Date.now();
    r.child.kill('SIGTERM');
    const { code, at } = await r.exit;
    assert.equal(code, 0, r.err());
    assert.ok(at - t0 >= 300, `exited after ${at - t0} ms: before the grace, so the tracker was not waited for`);
    assert.ok(at - t0 < 5000, `exit after ${at - t0} ms`);
    assert.equal(pidAlive(pid), false, 'the tracker was SIGKILLed');
  });
});

describe('shutdown edge cases', () => {
  afterEach(cleanup);

  test('SIGTERM while the node\'s tracker is still starting: the accepted frames must still reach it', async () => {
    await drainScenario({ waitRunning: false });
  });

  test('shutdown: a tracker slower than the feed still gets to read every frame counted as delivered', async () => {
    // 64 KiB of stderr per line makes the tracker slower than the feeder: at stop time it has a backlog in its socket.
    const { e, out, tcp } = await trackerEngine(['--echo', '--stderr-per-line', '65536'], {
      shutdown: { deadline_ms: 10000 }, tracker: { stop_grace_ms: 3000 },
    });
    const node = 'n-slow';
    const c = await open(tcp);
    await c.send(lineFrame(node, 1));
    await until(() => view(e, node)?.state === 'running', 'tracker running', 10000);
    await c.send(frames(node, range(2, 501)));
    await until(async () => (await scrape(e)).get('radar_ingest_frames_received_total') === 501, '501 frames received', 10000);
    await e.stop();
    assert.equal(e.totals().delivered, 501);
    assert.deepEqual(echoes(out, node), range(1, 501));
  });
});
