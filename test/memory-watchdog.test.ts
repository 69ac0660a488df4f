// The tracker memory ceiling's pure parts (the /proc status parser, the decision,
// the walk over a tracker's descendants) fed exact /proc text, the real /proc
// reader checked against this process and a child it spawns, and the host with
// an injected /proc: the kill decision end to end, and no /proc at all.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { startTrackerEngine, Client, until, scrape, getJson, lineFrame, type TrackerEngine } from './helpers.js';
import type { InstanceView } from '../src/tracker/tracker-instance.js';
import {
  MAX_PROCESSES, MIB, SAMPLE_INTERVAL_MS, memoryVerdict, parseChildren, parseVmRss, procReader, sampleResident, type ProcReader,
} from '../src/tracker/memory-watchdog.js';
import { nextSlice, SAMPLES_PER_SLICE } from '../src/tracker/memory-sampler.js';

const status = (rssKb: number | null): string => [
  'Name:\tnode', 'Umask:\t0022', 'State:\tS (sleeping)', 'Tgid:\t4242', 'Pid:\t4242', 'PPid:\t1',
  'VmPeak:\t 1234567 kB', 'VmSize:\t 1200000 kB', 'VmLck:\t       0 kB', 'VmHWM:\t  900000 kB',
  ...(rssKb === null ? [] : [`VmRSS:\t  ${rssKb} kB`]),
  'RssAnon:\t   30000 kB', 'RssFile:\t   20000 kB', 'VmData:\t  700000 kB', 'Threads:\t11', '',
].join('\n');

/** A fake /proc: status VmRSS (kB) and main-thread children per pid. */
function fakeProc(procs: Record<number, { rssKb: number | null; children?: number[] }>): ProcReader & { reads: string[] } {
  const reads: string[] = [];
  return {
    reads,
    read: (path) => {
      reads.push(path);
      const m = /^\/proc\/(\d+)\/(status|task\/(\d+)\/children)$/.exec(path);
      const p = m ? procs[Number(m[1])] : undefined;
      if (!m || !p) return null;
      if (m[2] === 'status') return status(p.rssKb);
      return (p.children ?? []).map((c) => `${c} `).join('');
    },
  };
}

test('parseVmRss reads VmRSS in bytes (not VmSize, VmPeak or VmHWM); none (a zombie) is null', () => {
  assert.equal(parseVmRss(status(51234)), 51234 * 1024);
  assert.equal(parseVmRss(status(0)), 0);
  assert.equal(parseVmRss(status(null)), null);
  assert.equal(parseVmRss(''), null);
  assert.equal(parseVmRss('VmRSS:\tgarbage kB\n'), null);
  assert.deepEqual(parseChildren('101 102 \n'), [101, 102]);
  assert.deepEqual(parseChildren(''), []);
});

test('memoryVerdict: a tracker at or under tracker.max_memory_mb is kept, one over it is killed with the reason, 0 = no ceiling', () => {
  assert.equal(memoryVerdict(0, 1024), null);
  assert.equal(memoryVerdict(1024 * MIB, 1024), null);
  assert.equal(memoryVerdict(1024 * MIB + 1, 1024), 'killed: resident memory 1024 MiB over tracker.max_memory_mb 1024');
  assert.equal(memoryVerdict(1100 * MIB, 1024), 'killed: resident memory 1100 MiB over tracker.max_memory_mb 1024');
  assert.equal(memoryVerdict(1e15, 0), null);
});

test('sampleResident sums the tracker and its descendants, skips the vanished, is bounded, and is null for a gone tracker', () => {
  const proc = fakeProc({
    100: { rssKb: 50_000, children: [101, 102, 104] },
    101: { rssKb: 20_000, children: [103] },
    103: { rssKb: 5_000 },
    104: { rssKb: null }, // a zombie: no VmRSS
    // 102 vanished between the children read and its status read
  });
  const s = sampleResident(100, proc);
  assert.deepEqual(s, { bytes: 75_000 * 1024, descendants: [101, 103] });
  assert.equal(sampleResident(999, proc), null);
  // A process listing itself or an ancestor as a child is not counted twice.
  assert.deepEqual(sampleResident(7, fakeProc({ 7: { rssKb: 10, children: [7, 8] }, 8: { rssKb: 1, children: [7] } })),
    { bytes: 11 * 1024, descendants: [8] });
  // A fork bomb: a long chain is cut at MAX_PROCESSES processes.
  const chain: Record<number, { rssKb: number; children: number[] }> = {};
  for (let i = 1; i <= 500; i++) chain[i] = { rssKb: 1, children: [i + 1] };
  const bomb = fakeProc(chain);
  const b = sampleResident(1, bomb);
  assert.equal(b!.bytes, MAX_PROCESSES * 1024);
  assert.ok(bomb.reads.length <= 2 * MAX_PROCESSES + 1, `${bomb.reads.length} reads`);
});

test('the real /proc: this process resident memory, and a child counted as a descendant', { skip: procReader() === null }, async () => {
  const reader = procReader()!;
  const own = sampleResident(process.pid, reader);
  const rss = process.memoryUsage().rss;
  assert.ok(own && Math.abs(own.bytes - rss) < 64 * MIB, `${own?.bytes} vs ${rss}`);
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)'], { stdio: 'ignore' });
  try {
    await new Promise((r) => child.once('spawn', r));
    const withChild = sampleResident(process.pid, reader);
    assert.ok(withChild!.descendants.includes(child.pid!), JSON.stringify(withChild));
  } finally {
    child.kill('SIGKILL');
  }
});

const engines: TrackerEngine[] = [];
const dirs: string[] = [];
after(async () => {
  await Promise.all(engines.map((t) => t.e.stop()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function engineWith(reader: ProcReader | null, logs: string[] = []): Promise<TrackerEngine> {
  const dir = mkdtempSync(join(tmpdir(), 'ri-memory-watchdog-'));
  dirs.push(dir);
  const sink = new Writable({ write(chunk, _enc, cb) { logs.push(String(chunk)); cb(); } });
  const t = await startTrackerEngine(dir, ['--echo'], {}, { procReader: reader, logger: pino({ level: 'info' }, sink) });
  engines.push(t);
  return t;
}

async function view(t: TrackerEngine, node: string): Promise<InstanceView | undefined> {
  return ((await getJson(t.http, '/api/v1/trackers')).json.trackers as InstanceView[]).find((x) => x.node_id === node);
}

test('the host SIGKILLs a tracker only once its sampled VmRSS passes tracker.max_memory_mb, and restarts it like a crash', async () => {
  // Every pid reads 100 MiB until `over` names one: that one reads 1100 MiB.
  let over = 0;
  const statusReads = new Map<number, number>();
  const reader: ProcReader = {
    read: (path) => {
      const m = /^\/proc\/(\d+)\/(status|task\/\d+\/children)$/.exec(path);
      if (!m) return null;
      const pid = Number(m[1]);
      if (m[2] !== 'status') return '';
      statusReads.set(pid, (statusReads.get(pid) ?? 0) + 1);
      return status(pid === over ? 1100 * 1024 : 100 * 1024);
    },
  };
  const t = await engineWith(reader);
  const c = await Client.open(t.tcp);
  await c.send(lineFrame('wd-1', 1757400000000, 2));
  const first = await until(async () => {
    const v = await view(t, 'wd-1');
    return v?.state === 'running' && v.pid && (statusReads.get(v.pid) ?? 0) >= 3 ? v : null;
  }, 'three samples of the running tracker', 15_000);
  // Under the ceiling (1024 by default): sampled, shown, never killed.
  const under = (await view(t, 'wd-1'))!;
  assert.equal(under.pid, first.pid);
  assert.equal(under.rss_bytes, 100 * MIB);
  assert.equal(under.restarts, 0);
  assert.equal((await scrape(t.e)).get('radar_ingest_tracker_memory_kills_total'), 0);
  over = first.pid!;
  const next = await until(async () => {
    const v = await view(t, 'wd-1');
    return v && v.restarts === 1 && v.pid && v.pid !== first.pid && v.state === 'running' ? v : null;
  }, 'a new tracker process after the kill', 15_000);
  assert.equal(next.last_error, 'tracker killed: resident memory 1100 MiB over tracker.max_memory_mb 1024');
  const m = await scrape(t.e);
  assert.equal(m.get('radar_ingest_tracker_memory_kills_total'), 1);
  assert.equal(m.get('radar_ingest_tracker_restarts_total{node="wd-1"}'), 1);
  c.destroy();
});

test('without /proc the host logs once at start that tracker.max_memory_mb applies only to the built-in tracker', async () => {
  const logs: string[] = [];
  const t = await engineWith(null, logs);
  const c = await Client.open(t.tcp);
  await c.send(lineFrame('wd-2', 1757400000000, 2));
  await until(async () => (await view(t, 'wd-2'))?.state === 'running', 'tracker running without /proc', 15_000);
  const said = logs.filter((l) => l.includes('applies only to the built-in tracker'));
  assert.equal(said.length, 1, logs.join(''));
  assert.equal((await view(t, 'wd-2'))!.rss_bytes, null);
  c.destroy();
});

test('nextSlice: at most the slice size, due trackers only (sampleable, not sampled for a second), the longest unsampled first', () => {
  const t = (name: string, rssSampledAt: number, sampleable = true) => ({ name, rssSampledAt, sampleable });
  const items = [t('a', 5000), t('never-1', -Infinity), t('b', 1000), t('gone', -Infinity, false), t('fresh', 9500), t('c', 3000), t('never-2', -Infinity)];
  assert.deepEqual(nextSlice(items, 10_000, 4).map((i) => i.name), ['never-1', 'never-2', 'b', 'c']);
  assert.deepEqual(nextSlice(items, 10_000, 2).map((i) => i.name), ['never-1', 'never-2']);
  assert.deepEqual(nextSlice(items, 10_000, 10).map((i) => i.name), ['never-1', 'never-2', 'b', 'c', 'a']);
  // 'fresh' was sampled 500 ms ago: not due before SAMPLE_INTERVAL_MS.
  assert.deepEqual(nextSlice([t('fresh', 9500)], 10_499, 4), []);
  assert.deepEqual(nextSlice([t('fresh', 9500)], 9500 + SAMPLE_INTERVAL_MS, 4).map((i) => i.name), ['fresh']);
  assert.deepEqual(nextSlice(items, 10_000, 0), []);
});

test('the host reads /proc for the memory ceiling a few trackers at a time, spread over the second, each tracker about once a second', async () => {
  // The reads run on the main thread, where every connection decoded there waits for
  // them: eight trackers due at once are read in slices, never in one go.
  const reads: Array<[number, number]> = [];
  const reader: ProcReader = {
    read: (path) => {
      const m = /^\/proc\/(\d+)\/(status|task\/\d+\/children)$/.exec(path);
      if (!m) return null;
      if (m[2] !== 'status') return '';
      reads.push([performance.now(), Number(m[1])]);
      return status(100 * 1024);
    },
  };
  const dir = mkdtempSync(join(tmpdir(), 'ri-memory-slices-'));
  dirs.push(dir);
  const t = await startTrackerEngine(dir, [], { tracker: { input: 'stdin', reconcile_interval_ms: 1000 } },
    { procReader: reader, logger: pino({ level: 'warn' }) }, ['sh', '-c', 'exec cat >/dev/null']);
  engines.push(t);
  const ids = Array.from({ length: 8 }, (_, i) => `slices-${i}`);
  const clients = await Promise.all(ids.map(async (id) => {
    const c = await Client.open(t.tcp);
    await c.send(lineFrame(id, 1757400000000, 2));
    return c;
  }));
  const pids = await until(async () => {
    const vs = ((await getJson(t.http, '/api/v1/trackers')).json.trackers as InstanceView[]).filter((v) => ids.includes(v.node_id));
    return vs.length === 8 && vs.every((v) => v.state === 'running' && v.pid) ? vs.map((v) => v.pid!) : null;
  }, 'eight trackers running', 20_000);
  await until(() => pids.every((p) => reads.filter(([, q]) => q === p).length >= 3), 'three samples of every tracker', 20_000);
  // Reads less than 1 ms apart ran in one go.
  let burst = 1;
  let largest = 1;
  for (let i = 1; i < reads.length; i++) {
    burst = reads[i]![0] - reads[i - 1]![0] < 1 ? burst + 1 : 1;
    largest = Math.max(largest, burst);
  }
  assert.ok(largest <= SAMPLES_PER_SLICE, `${largest} trackers read in one go (at most ${SAMPLES_PER_SLICE}): ${JSON.stringify(reads.map(([at]) => Math.round(at)))}`);
  for (const p of pids) {
    const at = reads.filter(([, q]) => q === p).map(([x]) => x);
    for (let i = 1; i < at.length; i++) assert.ok(at[i]! - at[i - 1]! >= SAMPLE_INTERVAL_MS - 10, `pid ${p} sampled ${at[i]! - at[i - 1]!} ms after its last sample`);
  }
  const v = ((await getJson(t.http, '/api/v1/trackers')).json.trackers as InstanceView[]).find((x) => x.node_id === 'slices-0');
  assert.equal(v!.rss_bytes, 100 * MIB);
  for (const c of clients) c.destroy();
});
