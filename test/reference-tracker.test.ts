// The built-in reference tracker: the pure Tracker class, its parsers, and the
// compiled program as a real subprocess speaking TCP in and JSON lines out.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { freePort } from './helpers.js';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Tracker, parseMessage, loadConfig, parseArgs, DEFAULT_CONFIG, type Frame, type TrackEvent,
} from '../src/tracker/reference-tracker.js';

const PROGRAM = fileURLToPath(new URL('../src/tracker/reference-tracker.js', import.meta.url));
const T0 = 1757400000000;
const CPI = 500;

/** A frame at CPI index i with one detection per [delay, doppler] target. */
function frame(i: number, targets: [number, number][], adsb?: (Record<string, unknown> | null)[]): Frame {
  return {
    timestamp: T0 + i * CPI,
    delay: targets.map((t) => t[0]),
    doppler: targets.map((t) => t[1]),
    snr: targets.map(() => 12),
    ...(adsb ? { adsb } : {}),
  };
}
/** A target moving linearly in delay-doppler space. */
const mover = (delay0: number, doppler0: number, dDelay = 0.4, dDoppler = 0.5) =>
  (i: number): [number, number] => [delay0 + dDelay * i, doppler0 + dDoppler * i];

function run(tracker: Tracker, frames: Frame[]): TrackEvent[] {
  return frames.flatMap((f) => tracker.feed(f));
}

const last = <T>(xs: T[]): T => {
  assert.ok(xs.length > 0, 'expected at least one element');
  return xs[xs.length - 1]!;
};

describe('Tracker', () => {
  test('a target moving linearly over 10 frames is one confirmed track of length 10', () => {
    const a = mover(40, -28);
    const events = run(new Tracker(), Array.from({ length: 10 }, (_, i) => frame(i, [a(i)])));
    assert.deepEqual(new Set(events.map((e) => e.track_id)), new Set(['T0001']));
    // Tentative for the first two frames, reported from the third (min length 3) on.
    assert.equal(events.length, 8);
    assert.deepEqual(events.map((e) => e.length), [3, 4, 5, 6, 7, 8, 9, 10]);
    const e = last(events);
    assert.equal(e.state, 'confirmed');
    assert.equal(e.timestamp, T0 + 9 * CPI);
    assert.equal(e.adsb_hex, null);
    assert.deepEqual(e.detections, [{ timestamp: T0 + 9 * CPI, delay: a(9)[0], doppler: a(9)[1], snr: 12, adsb: null }]);
    // Each event carries only what is new: the first all three, then one each; together, every detection once.
    assert.deepEqual(events.map((ev) => ev.detections.length), [3, 1, 1, 1, 1, 1, 1, 1]);
    assert.deepEqual(events.flatMap((ev) => ev.detections.map((d) => [d.delay, d.doppler])), Array.from({ length: 10 }, (_, i) => a(i)));
  });

  test('the first event of a track carries at most detectionWindow detections', () => {
    const a = mover(40, -28);
    const events = run(new Tracker({ detectionWindow: 4, minLength: 6 }), Array.from({ length: 8 }, (_, i) => frame(i, [a(i)])));
    assert.deepEqual(events.map((e) => e.length), [6, 7, 8]);
    assert.deepEqual(events[0]!.detections.map((d) => d.timestamp), [2, 3, 4, 5].map((i) => T0 + i * CPI));
    assert.deepEqual(events.slice(1).map((e) => e.detections.map((d) => d.timestamp)), [[T0 + 6 * CPI], [T0 + 7 * CPI]]);
  });

  test('two well-separated targets are two tracks', () => {
    const a = mover(40, -28);
    const b = mover(120, 88, -0.3, -0.6);
    const events = run(new Tracker(), Array.from({ length: 10 }, (_, i) => frame(i, [a(i), b(i)])));
    const ids = [...new Set(events.map((e) => e.track_id))].sort();
    assert.deepEqual(ids, ['T0001', 'T0002']);
    for (const id of ids) {
      const mine = events.filter((e) => e.track_id === id);
      assert.equal(last(mine).length, 10);
      const delays = last(mine).detections.map((d) => d.delay);
      // Each track kept its own target: its delays all lie on one of the two lines.
      assert.ok(delays.every((d) => d < 80) || delays.every((d) => d > 80), `${id} mixed targets: ${delays}`);
    }
  });

  test('crossing targets keep their identities (constant-rate prediction)', () => {
    // Delays cross between frames 3 and 4, each moving 1.5 per frame: a track predicted to
    // stand still would be nearer the other target's detection after the crossing.
    const a = mover(50, 0, 1.5, 0.1);
    const b = mover(60, 2, -1.5, -0.1);
    const events = run(new Tracker(), Array.from({ length: 10 }, (_, i) => frame(i, [a(i), b(i)])));
    const byId = new Map<string, TrackEvent>();
    for (const e of events) byId.set(e.track_id, e);
    assert.equal(byId.size, 2);
    for (const e of byId.values()) {
      assert.equal(e.length, 10);
      const delays = e.detections.map((d) => d.delay);
      const rising = delays[1]! > delays[0]!;
      assert.ok(delays.every((d, i) => i === 0 || d > delays[i - 1]! === rising), `${e.track_id} switched targets: ${delays}`);
    }
  });

  test('a target that disappears coasts for maxMissed frames, then is deleted', () => {
    const a = mover(40, -28);
    const tracker = new Tracker();
    const frames = [...Array.from({ length: 5 }, (_, i) => frame(i, [a(i)])), ...Array.from({ length: 5 }, (_, i) => frame(5 + i, []))];
    const events = run(tracker, frames);
    const tail = events.slice(3); // 3 confirmed updates (frames 2..4), then the misses
    assert.deepEqual(tail.map((e) => [e.state, e.missed, e.length, e.detections.length]), [
      ['coasting', 1, 5, 0], ['coasting', 2, 5, 0], ['coasting', 3, 5, 0], ['deleted', 4, 5, 0],
    ]);
    assert.equal(last(tail).timestamp, T0 + 8 * CPI);
    assert.deepEqual(tracker.snapshot(), []);
  });

  test('a coasting track that finds its target again is confirmed again, same id', () => {
    const a = mover(40, -28);
    const frames = Array.from({ length: 10 }, (_, i) => frame(i, i === 5 || i === 6 ? [] : [a(i)]));
    const events = run(new Tracker(), frames);
    assert.deepEqual(new Set(events.map((e) => e.track_id)), new Set(['T0001']));
    assert.deepEqual(events.map((e) => e.state), ['confirmed', 'confirmed', 'confirmed', 'coasting', 'coasting', 'confirmed', 'confirmed', 'confirmed']);
    assert.equal(last(events).length, 8);
  });

  test('isolated clutter is never confirmed, and tentative tracks are never reported', () => {
    const tracker = new Tracker();
    const events = run(tracker, Array.from({ length: 20 }, (_, i) => frame(i, [[10 + i * 7, -200 + i * 30]])));
    assert.deepEqual(events, []);
    assert.ok(tracker.snapshot().every((t) => t.state === 'tentative' && t.id === null));
  });

  test('detections outside the gate start a new track instead of joining', () => {
    const tracker = new Tracker({ delayGate: 1, dopplerGate: 5 });
    tracker.feed(frame(0, [[40, 0]]));
    tracker.feed(frame(1, [[40, 6]])); // doppler 6 > gate 5
    assert.equal(tracker.snapshot().length, 2);
  });

  test('RESET drops every track, reports the confirmed ones deleted, and forgets the time order', () => {
    const a = mover(40, -28);
    const tracker = new Tracker();
    run(tracker, Array.from({ length: 5 }, (_, i) => frame(i, [a(i), [300, 100]])));
    const events = tracker.reset();
    assert.deepEqual(events.map((e) => [e.track_id, e.state, e.length]), [['T0001', 'deleted', 5], ['T0002', 'deleted', 5]]);
    assert.deepEqual(tracker.snapshot(), []);
    assert.equal(tracker.lastTimestamp, null);
    // An earlier timestamp is accepted again, and ids keep counting (unique per process).
    const again = run(tracker, Array.from({ length: 3 }, (_, i) => frame(i, [a(i)])));
    assert.deepEqual(again.map((e) => [e.track_id, e.length]), [['T0003', 3]]);
  });

  test('frames not after the previous one are ignored', () => {
    const a = mover(40, -28);
    const tracker = new Tracker();
    run(tracker, [0, 1, 2].map((i) => frame(i, [a(i)])));
    assert.deepEqual(tracker.feed(frame(1, [a(1), [500, 500]])), []); // earlier
    assert.equal(tracker.lastFeed, 'out-of-order');
    assert.deepEqual(tracker.feed(frame(2, [a(2), [500, 500]])), []); // same timestamp
    assert.equal(tracker.lastFeed, 'out-of-order');
    assert.equal(tracker.lastTimestamp, T0 + 2 * CPI);
    assert.deepEqual(tracker.snapshot(), [{ id: 'T0001', state: 'confirmed', length: 3, missed: 0 }]);
    const next = tracker.feed(frame(3, [a(3)]));
    assert.deepEqual(next.map((e) => [e.track_id, e.length]), [['T0001', 4]]);
  });

  test('after resyncAfter old frames in a row the tracker resets and follows the new clock', () => {
    const a = mover(40, -28);
    const tracker = new Tracker({ resyncAfter: 3 });
    run(tracker, [0, 1, 2, 3].map((i) => frame(i, [a(i)])));
    const jump = 1000; // the node's clock went back by 1000 frames
    const events: TrackEvent[][] = [0, 1, 2, 3].map((i) => tracker.feed(frame(i - jump, [a(i)])));
    assert.deepEqual(events.slice(0, 2), [[], []]);
    assert.deepEqual(events[2]!.map((e) => [e.track_id, e.state]), [['T0001', 'deleted']]);
    assert.equal(tracker.lastTimestamp, T0 + (3 - jump) * CPI);
    assert.deepEqual(tracker.snapshot().map((t) => t.length), [2], 'a new track from the frames taken since');
    assert.equal(tracker.lastFeed, 'accepted');
    // A single late frame among good ones never resyncs: the run is broken by each good frame.
    const steady = new Tracker({ resyncAfter: 2 });
    for (let i = 0; i < 10; i++) {
      steady.feed(frame(i, [a(i)]));
      steady.feed(frame(i - 5, []));
      assert.equal(steady.lastFeed, 'out-of-order');
    }
    assert.equal(steady.snapshot()[0]!.length, 10);
  });

  test('an ADS-B hex on an associated detection is carried as adsb_hex', () => {
    const a = mover(40, -28);
    const b = mover(120, 88);
    const adsb = { hex: 'a1b2c3', lat: 33.9, lon: -84.6, alt_baro: 31000 };
    const frames = Array.from({ length: 6 }, (_, i) => frame(i, [a(i), b(i)], i === 1 ? [null, adsb] : i === 4 ? [null, { hex: 'ffffff' }] : [null, null]));
    const events = run(new Tracker(), frames);
    const withHex = events.filter((e) => e.adsb_hex !== null);
    assert.ok(withHex.length > 0);
    assert.ok(withHex.every((e) => e.adsb_hex === 'a1b2c3' && e.adsb_initialized), 'the first hex sticks');
    assert.ok(events.filter((e) => e.track_id !== withHex[0]!.track_id).every((e) => e.adsb_hex === null && !e.adsb_initialized));
    const reported = events.filter((e) => e.track_id === withHex[0]!.track_id).flatMap((e) => e.detections);
    assert.deepEqual(reported.find((d) => d.timestamp === T0 + CPI)?.adsb, adsb);
  });

  test('bad detections (non-numbers, ragged arrays) are dropped, not fatal', () => {
    const tracker = new Tracker({ minLength: 1 });
    const events = tracker.feed({ timestamp: T0, delay: [1, 'x' as unknown as number, 3, 4], doppler: [1, 2, null as unknown as number], snr: [9, 9, 9, 9] });
    assert.deepEqual(events.map((e) => e.detections[0]!.delay), [1]);
  });
});

describe('Tracker output over a long mixed run', () => {
  // A fixed, seeded 3,000-frame run (movers with dropouts, clutter, ADS-B, old frames, a
  // clock jump back, a RESET): its events, byte for byte, must stay what the tracker
  // has always written, so that speeding up the per-frame path cannot change a track file.
  test('the events are the recorded ones (count and SHA-256 of the JSON lines)', () => {
    let seed = 12345;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const tracker = new Tracker({ idPrefix: '7.3' });
    const hash = createHash('sha256');
    let events = 0;
    let ts = T0;
    const write = (es: TrackEvent[]): void => {
      for (const e of es) {
        hash.update(`${JSON.stringify(e)}\n`);
        events++;
      }
    };
    for (let f = 0; f < 3000; f++) {
      ts += f === 2000 ? -600000 : CPI;
      const delay: number[] = [], doppler: number[] = [], snr: number[] = [], adsb: (Record<string, unknown> | null)[] = [];
      for (let k = 0; k < 8; k++) {
        if (rnd() < 0.1) continue;
        const phase = (f + k * 37) % 400;
        delay.push(10 + k * 6 + phase * 0.02 * (k % 2 ? 1 : -1) + (rnd() - 0.5) * 0.3);
        doppler.push(20 + k * 4 + (rnd() - 0.5) * 2);
        snr.push(Math.round(rnd() * 300) / 10);
        adsb.push(k === 3 ? { hex: ' a1b2c3 ' } : k === 5 && rnd() < 0.5 ? { hex: '' } : null);
      }
      for (let c = 0; c < 3; c++) {
        delay.push(rnd() * 100);
        doppler.push(rnd() * 200 - 100);
        snr.push(5);
        adsb.push(null);
      }
      write(tracker.feed({ timestamp: f % 97 === 50 ? ts - 1000 : ts, delay, doppler, snr, adsb }));
      if (f === 2500) write(tracker.reset());
    }
    assert.equal(events, 23770);
    assert.equal(hash.digest('hex'), '48401ff8ee3b46b945cd8b4856e0284405e0e6e5508c9e889dac7a622b0a1cfd');
  });
});

describe('parsers', () => {
  test('parseMessage: frames, RESET, and the reasons a line is skipped', () => {
    assert.deepEqual(parseMessage('{"type":"RESET"}'), { kind: 'reset' });
    const m = parseMessage('{"node_id":"n","timestamp":5,"delay":[1],"doppler":[2],"snr":[3],"adsb":[null]}');
    assert.deepEqual(m, { kind: 'frame', frame: { timestamp: 5, delay: [1], doppler: [2], snr: [3], adsb: [null] } });
    assert.deepEqual(parseMessage('{"timestamp":5}'), { kind: 'frame', frame: { timestamp: 5, delay: [], doppler: [], snr: [], adsb: [] } });
    assert.match((parseMessage('{"timestamp":5,') as { error: string }).error, /malformed JSON/);
    assert.match((parseMessage('[1,2]') as { error: string }).error, /not a JSON object/);
    assert.match((parseMessage('{"delay":[1],"doppler":[2],"snr":[3]}') as { error: string }).error, /without a numeric timestamp/);
    assert.match((parseMessage('{"timestamp":"5"}') as { error: string }).error, /without a numeric timestamp/);
    assert.match((parseMessage('{"timestamp":5,"delay":7}') as { error: string }).error, /delay is not an array/);
  });

  test('loadConfig: flat keys, retina-tracker YAML keys, and bad values', () => {
    assert.deepEqual(loadConfig('{"delay_gate": 3.5, "max_missed": 0, "min_length": 2}'), { delayGate: 3.5, maxMissed: 0, minLength: 2 });
    const retina = 'tracker:\n  m_threshold: 4\n  n_delete: 10\n  detection_window: 5\n  gate_threshold: 9.0\ntracklet:\n  max_delay_residual: 2.5\n  max_doppler_residual: 12\nradar:\n  center_frequency: 177000000\n';
    assert.deepEqual(loadConfig(retina), { delayGate: 2.5, dopplerGate: 12, maxMissed: 10, minLength: 4, detectionWindow: 5 });
    assert.deepEqual(loadConfig('delay_gate: 1\ntracklet:\n  max_delay_residual: 2.5\n'), { delayGate: 1 }, 'flat keys win');
    assert.deepEqual(loadConfig(''), {});
    assert.deepEqual(loadConfig('resync_after: 0\ndoppler_to_delay_rate: -0.0015\n'), { resyncAfter: 0, dopplerToDelayRate: -0.0015 });
    assert.throws(() => loadConfig('{"delay_gate": 0}'), /delay_gate: expected a number > 0/);
    assert.throws(() => loadConfig('{"min_length": 1.5}'), /min_length: expected an integer >= 1/);
    assert.throws(() => loadConfig('{"max_missed": "3"}'), /max_missed: expected an integer >= 0/);
    assert.throws(() => loadConfig('[1]'), /mapping/);
  });

  test('parseArgs: the retina-tracker command line, and bad usage', () => {
    assert.deepEqual(parseArgs(['--tcp', '--tcp-host', '127.0.0.1', '--tcp-port', '31000', '-s', '-']), {
      host: '127.0.0.1', port: 31000, stream: '-', config: null, detectionWindow: null, help: false,
    });
    const o = parseArgs(['--tcp', '--tcp-port=0', '-c', 'x.yaml', '--detection-window', '7', '-s', 'out.jsonl']);
    assert.deepEqual([o.port, o.config, o.detectionWindow, o.stream], [0, 'x.yaml', 7, 'out.jsonl']);
    assert.throws(() => parseArgs(['--tcp', '--bogus']), /unknown argument "--bogus"/);
    assert.throws(() => parseArgs(['--tcp', '--tcp-port', '70000']), /--tcp-port: bad value/);
    assert.throws(() => parseArgs(['--tcp', '-c']), /-c needs a value/);
    assert.throws(() => parseArgs(['frames.json']), /unknown argument/);
    assert.throws(() => parseArgs([]), /--tcp is required/);
    assert.equal(DEFAULT_CONFIG.delayGate, 2.0);
  });
});

// ---------------------------------------------------------------------------
// The compiled program as a subprocess.
// ---------------------------------------------------------------------------

async function until<T>(fn: () => T, what: string, timeoutMs = 5000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}


interface Proc { child: ChildProcess; port: number; lines: () => string[]; events: () => TrackEvent[]; err: () => string; exit: Promise<number | null> }
const procs: ChildProcess[] = [];
after(() => procs.forEach((c) => c.exitCode === null && c.kill('SIGKILL')));

function spawnTracker(args: string[], port = 0): Proc {
  const child = spawn(process.execPath, [PROGRAM, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(child);
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const lines = () => out.split('\n').slice(0, -1);
  return { child, port, lines, events: () => lines().map((l) => JSON.parse(l) as TrackEvent), err: () => err, exit };
}

async function startTracker(extra: string[] = []): Promise<Proc> {
  const port = await freePort();
  const p = spawnTracker(['--tcp', '--tcp-host', '127.0.0.1', '--tcp-port', String(port), '-s', '-', ...extra], port);
  await until(() => p.err().includes('listening on'), 'the tracker to listen');
  return p;
}

/** Connects, retrying while the port refuses; resolves with the open socket. */
async function connectTo(port: number, timeoutMs = 5000): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = connect(port, '127.0.0.1', () => {
          s.off('error', reject).on('error', () => {}); // a refused-after-accept reset is expected
          resolve(s);
        });
        s.once('error', reject);
      });
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

const closed = (s: Socket) => new Promise<void>((r) => (s.destroyed && !s.connecting ? r() : s.once('close', () => r())));
const line = (v: unknown) => JSON.stringify(v) + '\n';

/** Writes `text` in pieces of `size` bytes, one write each. */
async function writeSplit(s: Socket, text: string, size: number): Promise<void> {
  const b = Buffer.from(text);
  for (let i = 0; i < b.length; i += size) {
    await new Promise<void>((r, j) => s.write(b.subarray(i, i + size), (e) => (e ? j(e) : r())));
  }
}

describe('reference-tracker subprocess', () => {
  test('tracks over TCP; skips bad lines and old frames; one connection at a time; SIGTERM exits 0', async () => {
    const p = await startTracker();
    const s = await connectTo(p.port);
    s.setNoDelay(true);
    const a = mover(40.46, -27.99);
    let input = '';
    for (let i = 0; i < 10; i++) {
      input += line({ node_id: 'node-1', ...frame(i, [a(i), [900 + i * 40, 300]], [null, null]) });
      if (i === 3) input += '{"timestamp": 1757400000000, "delay": [\n'; // malformed
      if (i === 4) input += line({ token: 'shared-secret', delay: [1], doppler: [2], snr: [3] }); // no timestamp
      if (i === 5) input += line(frame(2, [a(2)])); // out of order
    }
    await writeSplit(s, input.slice(0, 700), 7); // split reads
    await writeSplit(s, input.slice(700), 1 << 16); // coalesced lines

    await until(() => p.events().some((e) => e.length === 10), 'a track of length 10');
    const events = p.events();
    assert.deepEqual(new Set(events.map((e) => e.track_id)), new Set(['T0001']));
    assert.deepEqual(events.map((e) => e.length), [3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(Object.keys(events[0]!).slice(0, 6), ['track_id', 'adsb_hex', 'adsb_initialized', 'timestamp', 'length', 'detections']);
    // stderr is a pipe of its own: it may be read after the events on stdout.
    const outOfOrder = new RegExp(`skipping frame ${T0 + 2 * CPI}: not after ${T0 + 5 * CPI}`);
    await until(() => outOfOrder.test(p.err()), 'the out-of-order frame reported on stderr');
    assert.match(p.err(), /skipping a line of \d+ chars: malformed JSON/);
    assert.match(p.err(), /skipping a line of \d+ chars: frame without a numeric timestamp/);
    assert.ok(!p.err().includes('shared-secret'), 'a skipped line is not echoed to stderr');

    // A second connection while the first is open is closed at once.
    const second = await connectTo(p.port);
    await closed(second);
    await until(() => p.err().includes('refusing a second connection'), 'the refusal on stderr');

    // After the first closes, a new connection is served; the tracker state carries over until RESET.
    s.end();
    await until(() => p.err().includes('connection closed'), 'the close on stderr');
    const s2 = await connectTo(p.port);
    await writeSplit(s2, line({ type: 'RESET' }) + [0, 1, 2].map((i) => line(frame(i, [a(i)]))).join(''), 1 << 16);
    await until(() => p.events().some((e) => e.track_id === 'T0002'), 'a new track after RESET');
    assert.deepEqual(p.events().slice(8).map((e) => [e.track_id, e.state, e.length]), [['T0001', 'deleted', 10], ['T0002', 'confirmed', 3]]);
    assert.match(p.err(), /tracker state reset/);

    p.child.kill('SIGTERM');
    assert.equal(await p.exit, 0);
    s2.destroy();
  });

  test('no output is lost when stdout is not being read (back-pressure)', async () => {
    const p = await startTracker();
    p.child.stdout!.pause(); // nothing drains the pipe until resumed
    const s = await connectTo(p.port);
    const targets = Array.from({ length: 10 }, (_, k) => mover(10 + k * 30, -100 + k * 20));
    const n = 300;
    let input = '';
    for (let i = 0; i < n; i++) input += line(frame(i, targets.map((t) => t(i))));
    await writeSplit(s, input, 1 << 16);
    p.child.stdout!.resume();
    await until(() => p.lines().length >= targets.length * (n - 2), 'every event', 15000);
    const events = p.events();
    assert.equal(events.length, targets.length * (n - 2));
    assert.deepEqual(events.filter((e) => e.length === n).map((e) => e.track_id).sort(), targets.map((_, k) => `T${String(k + 1).padStart(4, '0')}`));
    p.child.kill('SIGTERM');
    assert.equal(await p.exit, 0);
    s.destroy();
  });

  test('a config file is applied; a bad one exits 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ref-tracker-'));
    try {
      const good = join(dir, 'good.json');
      writeFileSync(good, '{"min_length": 1, "detection_window": 1}');
      const p = await startTracker(['-c', good]);
      const s = await connectTo(p.port);
      s.write(line(frame(0, [[40, 0]])));
      await until(() => p.events().length === 1, 'an event on the first detection');
      assert.equal(p.events()[0]!.detections.length, 1);
      p.child.kill('SIGTERM');
      assert.equal(await p.exit, 0);
      s.destroy();

      const bad = join(dir, 'bad.json');
      writeFileSync(bad, '{"delay_gate": -1}');
      const q = spawnTracker(['--tcp', '--tcp-port', '0', '-c', bad]);
      assert.equal(await q.exit, 2);
      assert.match(q.err(), /delay_gate: expected a number > 0/);
      assert.equal(q.lines().length, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an unknown flag prints usage on stderr and exits 2, with nothing on stdout', async () => {
    const p = spawnTracker(['--tcp', '--frobnicate']);
    assert.equal(await p.exit, 2);
    assert.match(p.err(), /unknown argument "--frobnicate"/);
    assert.match(p.err(), /usage: reference-tracker --tcp/);
    assert.equal(p.lines().length, 0);
  });

  test('-s with a path is accepted with a warning; output still goes to stdout', async () => {
    const p = await startTracker(['-s', 'tracks.jsonl']);
    assert.match(p.err(), /-s tracks\.jsonl: only "-" \(stdout\) is supported/);
    const s = await connectTo(p.port);
    s.write([0, 1, 2].map((i) => line(frame(i, [[40 + i, 0]]))).join(''));
    await until(() => p.events().length === 1, 'an event on stdout');
    p.child.kill('SIGTERM');
    assert.equal(await p.exit, 0);
    s.destroy();
  });
});
