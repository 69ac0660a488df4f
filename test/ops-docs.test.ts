// The operations docs against the real thing: every metric named in
// docs/operations.md, the Grafana dashboard and the Prometheus alert rules (and
// the other docs) must exist in a real engine's /metrics, label values they
// select must be values the engine exports, the rule file must be a valid rule
// file, the dashboard valid JSON, and the HAProxy and systemd examples must agree
// with the config defaults they depend on. promtool and haproxy, when installed,
// check the PromQL and the HAProxy config too.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { parse as parseYaml } from 'yaml';
import { startEngine, httpGet } from './helpers.js';
import { parseConfig } from '../src/config.js';
import { M, CLUSTER_M } from '../src/telemetry/metric-names.js';
import { ALL_DROP_REASONS } from '../src/telemetry/counters.js';
import type { Engine } from '../src/engine/engine.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DOCS = join(ROOT, 'docs');
const read = (...p: string[]): string => readFileSync(join(...p), 'utf8');
const DEFAULTS = parseConfig({}, {});

// ---- what a scrape says ----

interface Scrape {
  /** Family name (as in `# TYPE`) -> type. */
  types: Map<string, string>;
  /** Family -> label name -> values seen in samples. */
  labels: Map<string, Map<string, Set<string>>>;
  /** Families with at least one sample line. */
  sampled: Set<string>;
}

const SUFFIXES: Record<string, string[]> = { histogram: ['_bucket', '_sum', '_count'], summary: ['_sum', '_count'] };

function parseScrape(text: string): Scrape {
  const types = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(m[1]!, m[2]!);
  const s: Scrape = { types, labels: new Map(), sampled: new Set() };
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$/.exec(line);
    if (!m) continue;
    const fam = familyOf(s, m[1]!);
    if (fam === null) continue;
    s.sampled.add(fam);
    let byLabel = s.labels.get(fam);
    if (!byLabel) s.labels.set(fam, (byLabel = new Map()));
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      let vals = byLabel.get(l[1]!);
      if (!vals) byLabel.set(l[1]!, (vals = new Set()));
      vals.add(l[2]!);
    }
  }
  return s;
}

/** The family a series name belongs to: itself, or a histogram's/summary's _bucket/_sum/_count. */
function familyOf(s: Scrape, name: string): string | null {
  if (s.types.has(name)) return name;
  for (const [type, suffixes] of Object.entries(SUFFIXES)) {
    for (const suf of suffixes) {
      if (!name.endsWith(suf)) continue;
      const base = name.slice(0, -suf.length);
      if (s.types.get(base) === type) return base;
    }
  }
  return null;
}

// ---- what the docs say ----

const NAME_RE = /\b(?:radar_ingest|process|nodejs)_[a-z0-9_]*[a-z0-9]\b/g;

/** Every radar_ingest_*, process_*, nodejs_* name in `text`. */
function metricNames(text: string): Set<string> {
  return new Set(text.match(NAME_RE) ?? []);
}

/** Names in `text` that are not series of any family in the scrape. */
function unknownNames(s: Scrape, text: string): string[] {
  return [...metricNames(text)].filter((n) => familyOf(s, n) === null).sort();
}

/**
 * Label values selected with = or =~ (a plain alternation) that the engine never
 * exports for that family. Families without samples (per-node series before any
 * node, commands before any command) and the scrape's own labels are skipped.
 */
function unknownLabelValues(s: Scrape, text: string): string[] {
  const bad: string[] = [];
  for (const sel of text.matchAll(/\b((?:radar_ingest|process|nodejs)_[a-z0-9_]*[a-z0-9])\s*\{([^}]*)\}/g)) {
    const fam = familyOf(s, sel[1]!);
    if (fam === null || !s.sampled.has(fam)) continue;
    const byLabel = s.labels.get(fam)!;
    for (const m of sel[2]!.matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)) {
      const [, label, op, value] = m as unknown as [string, string, string, string];
      if (label === 'job' || label === 'instance' || value.includes('$')) continue;
      if (op !== '=' && op !== '=~') continue;
      if (op === '=~' && !/^[A-Za-z0-9_|]+$/.test(value)) continue;
      const have = byLabel.get(label);
      if (!have) {
        bad.push(`${sel[1]}: no label ${label}`);
        continue;
      }
      for (const v of op === '=' ? [value] : value.split('|')) {
        if (!have.has(v)) bad.push(`${sel[1]}{${label}="${v}"}`);
      }
    }
  }
  return bad;
}

// ---- the files ----

interface Rule { alert?: unknown; record?: unknown; expr?: unknown; for?: unknown; labels?: Record<string, unknown>; annotations?: Record<string, unknown> }

function rulesOf(doc: unknown): Rule[] {
  const groups = (doc as { groups?: unknown }).groups;
  assert.ok(Array.isArray(groups) && groups.length > 0, 'groups: a non-empty list');
  const rules: Rule[] = [];
  for (const g of groups as Array<{ name?: unknown; rules?: unknown }>) {
    assert.equal(typeof g.name, 'string', 'every group has a name');
    assert.ok(Array.isArray(g.rules) && g.rules.length > 0, `group ${String(g.name)} has rules`);
    rules.push(...(g.rules as Rule[]));
  }
  return rules;
}

interface Panel { id?: number; type?: string; title?: string; datasource?: { type?: string; uid?: string }; gridPos?: { h: number; w: number; x: number; y: number }; targets?: Array<{ expr?: string; datasource?: { uid?: string } }>; panels?: Panel[] }

function allPanels(ps: Panel[] = []): Panel[] {
  return ps.flatMap((p) => [p, ...allPanels(p.panels)]);
}

function dashboardExprs(d: { panels: Panel[] }): string[] {
  return allPanels(d.panels).flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? ''));
}

/** `180s`, `3m`, `2h`, or a bare number (HAProxy: milliseconds) -> ms. */
function haproxyMs(v: string): number {
  const m = /^(\d+)(us|ms|s|m|h|d)?$/.exec(v);
  assert.ok(m, `duration ${v}`);
  const mult: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000 };
  return Number(m[1]) * mult[m[2] ?? 'ms']!;
}

/** A systemd unit as key -> values (a key may repeat). */
function unitOf(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';') || line.startsWith('[')) continue;
    const i = line.indexOf('=');
    assert.ok(i > 0, `unit line without "=": ${line}`);
    const k = line.slice(0, i);
    out.set(k, [...(out.get(k) ?? []), line.slice(i + 1)]);
  }
  return out;
}

function tool(cmd: string, args: string[]): { missing: boolean; status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') return { missing: true, status: null, out: '' };
  return { missing: false, status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('operations docs', () => {
  let engine: Engine;
  let scrape: Scrape;
  const operations = read(DOCS, 'operations.md');
  const rulesText = read(DOCS, 'prometheus-alerts.yaml');
  const dashText = read(DOCS, 'grafana-dashboard.json');
  const tmp = mkdtempSync(join(tmpdir(), 'radar-ops-docs-'));

  before(async () => {
    engine = await startEngine();
    const r = await httpGet(engine.httpAddress!.port, '/metrics');
    assert.equal(r.status, 200);
    scrape = parseScrape(r.body);
  });
  after(async () => {
    await engine?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('the checker itself: real names pass, invented ones and wrong suffixes fail', () => {
    // prom-client prints counters with their _total name in # TYPE lines.
    assert.equal(scrape.types.get(M.framesReceived), 'counter');
    assert.equal(scrape.types.get('process_cpu_seconds_total'), 'counter');
    assert.equal(scrape.types.get('nodejs_gc_duration_seconds'), 'histogram');
    const text = [
      'rate(radar_ingest_frames_received_total[5m])', 'nodejs_gc_duration_seconds_bucket', 'nodejs_gc_duration_seconds_count',
      'radar_ingest_bogus_total', 'radar_ingest_frames_received', 'radar_ingest_frames_received_total_count',
      'nodejs_eventloop_lag_p95_seconds', 'process_resident_memory', 'RADAR_INGEST_TOKEN', 'radar_ingest_*',
    ].join('\n');
    assert.deepEqual(unknownNames(scrape, text), [
      'nodejs_eventloop_lag_p95_seconds', 'process_resident_memory', 'radar_ingest_bogus_total',
      'radar_ingest_frames_received', 'radar_ingest_frames_received_total_count',
    ]);
    assert.deepEqual(unknownLabelValues(scrape, [
      'radar_ingest_frames_dropped_total{reason=~"ring_overflow|tracker_lots"}', 'radar_ingest_trackers{state="failed"}',
      'radar_ingest_agents{state="STALE", job="$job"}', 'radar_ingest_agents{status="LIVE"}', 'radar_ingest_tracker_up{node="x"}',
    ].join('\n')), ['radar_ingest_frames_dropped_total{reason="tracker_lots"}', 'radar_ingest_agents: no label status']);
  });

  test('every metric of src/telemetry/metric-names.ts is in /metrics', () => {
    for (const name of Object.values(M)) assert.ok(scrape.types.has(name), `${name} missing from /metrics`);
  });

  test('docs/operations.md names only metrics and label values that exist', () => {
    const names = metricNames(operations);
    assert.ok(names.size >= 20, `operations.md names ${names.size} metrics`);
    assert.deepEqual(unknownNames(scrape, operations), []);
    assert.deepEqual(unknownLabelValues(scrape, operations), []);
  });

  test('docs/operations.md: its YAML blocks parse and its drop-reason table lists every reason', () => {
    const blocks = [...operations.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
    assert.ok(blocks.length >= 2);
    for (const b of blocks) assert.doesNotThrow(() => parseYaml(b), b);
    const scrapeBlock = blocks.map((b) => parseYaml(b) as Record<string, unknown>).find((b) => b && 'scrape_configs' in b);
    assert.ok(scrapeBlock, 'a Prometheus scrape config');
    const job = (scrapeBlock.scrape_configs as Array<Record<string, any>>).find((j) => j.job_name === 'radar-ingest')!;
    assert.equal(job.scrape_interval, '15s');
    assert.equal(job.metrics_path, '/metrics');
    for (const t of job.static_configs[0].targets as string[]) assert.ok(t.endsWith(`:${DEFAULTS.http.port}`), t);
    const table = operations.slice(operations.indexOf('Which drop reasons alert'));
    for (const r of ALL_DROP_REASONS) assert.ok(table.includes(`\`${r}\``), `drop reason ${r} is not in the table`);
    for (const f of ['haproxy.cfg', 'radar-ingest.service', 'prometheus-alerts.yaml', 'grafana-dashboard.json']) {
      assert.ok(operations.includes(`](${f})`), `operations.md links ${f}`);
    }
  });

  test('docs/prometheus-alerts.yaml is a rule file whose expressions use real metrics and label values', () => {
    const rules = rulesOf(parseYaml(rulesText));
    const names = new Set<string>();
    for (const r of rules) {
      assert.equal(typeof r.alert, 'string', 'every rule is an alert');
      assert.ok(!names.has(r.alert as string), `duplicate alert ${String(r.alert)}`);
      names.add(r.alert as string);
      assert.ok(typeof r.expr === 'string' && r.expr.trim() !== '', `${String(r.alert)}: expr`);
      assert.match(String(r.for), /^\d+[smhd]$/, `${String(r.alert)}: for`);
      assert.ok(['critical', 'warning', 'info'].includes(String(r.labels?.severity)), `${String(r.alert)}: labels.severity`);
      assert.equal(typeof r.annotations?.summary, 'string', `${String(r.alert)}: annotations.summary`);
      assert.equal(typeof r.annotations?.description, 'string', `${String(r.alert)}: annotations.description`);
      assert.deepEqual(unknownNames(scrape, r.expr as string), [], `${String(r.alert)}: unknown metric`);
      assert.deepEqual(unknownLabelValues(scrape, r.expr as string), [], `${String(r.alert)}: unknown label value`);
    }
    // The whole file, comments included.
    assert.deepEqual(unknownNames(scrape, rulesText), []);
    // The failure modes an operator must be alerted to.
    const exprs = rules.map((r) => String(r.expr)).join('\n');
    for (const needle of [M.trackerUp, `${M.trackers}{state="failed"}`, M.trackerRestarts, `${M.ringBytesUsed} / ${M.ringBytesCapacity}`,
      M.framesDropped, `${M.agents}{state="STALE"}`, M.shardRestarts, M.provisionRefused, M.supervisorErrors, `${M.configReloads}{result="error"}`, 'up{']) {
      assert.ok(exprs.includes(needle), `no alert uses ${needle}`);
    }
    // Every alert is in the operations table.
    for (const n of names) assert.ok(operations.includes(`\`${n}\``), `${n} is not documented in operations.md`);
  });

  test('docs/grafana-dashboard.json parses, every panel queries the templated data source, every metric exists', () => {
    const d = JSON.parse(dashText) as { schemaVersion: number; uid: string; title: string; panels: Panel[]; templating: { list: Array<{ name: string; type: string; query: unknown }> } };
    assert.ok(d.schemaVersion >= 36 && d.schemaVersion <= 41, `schemaVersion ${d.schemaVersion}`);
    assert.equal(d.uid, 'radar-ingest');
    const ds = d.templating.list.find((v) => v.name === 'datasource');
    assert.ok(ds && ds.type === 'datasource' && ds.query === 'prometheus', 'a Prometheus data source variable');
    const panels = allPanels(d.panels);
    const ids = panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    let queries = 0;
    for (const p of panels) {
      assert.ok(p.gridPos && p.gridPos.x + p.gridPos.w <= 24 && p.gridPos.w > 0 && p.gridPos.h > 0, `${p.title}: gridPos`);
      if (p.type === 'row') continue;
      assert.equal(p.datasource?.uid, '${datasource}', `${p.title}: datasource`);
      assert.ok((p.targets ?? []).length > 0, `${p.title}: no query`);
      for (const t of p.targets!) {
        assert.ok(t.expr && t.expr.trim() !== '', `${p.title}: empty expr`);
        assert.equal(t.datasource?.uid, '${datasource}', `${p.title}: target datasource`);
        assert.deepEqual(unknownNames(scrape, t.expr), [], `${p.title}: unknown metric in ${t.expr}`);
        assert.deepEqual(unknownLabelValues(scrape, t.expr), [], `${p.title}: unknown label value in ${t.expr}`);
        queries++;
      }
    }
    assert.ok(queries >= 30, `${queries} queries`);
    // Descriptions and variable queries too.
    assert.deepEqual(unknownNames(scrape, dashText), []);
    // The panels an operator needs.
    const all = dashboardExprs(d).join('\n');
    for (const name of [M.framesReceived, M.framesDelivered, M.framesDropped, M.framesInRings, M.framesInSink, M.connectionsOpen,
      M.connectionsRejected, M.ringBytesUsed, M.trackers, M.trackerUp, M.trackerRestarts, M.tracksWritten, M.agents, M.sseStreamsOpen,
      M.commands, M.configReloads, 'nodejs_eventloop_lag_p99_seconds', 'process_cpu_seconds_total', 'process_resident_memory_bytes']) {
      assert.ok(all.includes(name), `no panel shows ${name}`);
    }
  });

  test('README.md and the other docs name only radar_ingest_ metrics that exist', () => {
    // Only the engine's own prefix here: elsewhere process_ starts other words (a tracker's process_noise).
    const files = ['README.md', ...readdirSync(DOCS).filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];
    for (const f of files) {
      // The cluster's metrics are registered only with a `cluster` section, which this engine has not.
      const clusterOnly = new Set<string>(Object.values(CLUSTER_M));
      assert.deepEqual(unknownNames(scrape, read(ROOT, f)).filter((n) => n.startsWith('radar_ingest_') && !clusterOnly.has(n)), [], f);
    }
  });

  test('docs/haproxy.cfg agrees with the engine defaults it depends on', () => {
    const cfg = read(DOCS, 'haproxy.cfg').split('\n').map((l) => l.replace(/#.*/, '').trim()).filter((l) => l !== '');
    const value = (prefix: string): string => {
      const l = cfg.find((x) => x.startsWith(`${prefix} `));
      assert.ok(l, `haproxy.cfg has no "${prefix}"`);
      return l.slice(prefix.length).trim();
    };
    for (const k of ['timeout client', 'timeout server']) {
      assert.ok(haproxyMs(value(k)) > DEFAULTS.limits.idle_timeout_ms, `${k} must be above limits.idle_timeout_ms`);
    }
    assert.equal(value('mode'), 'tcp');
    assert.equal(value('bind'), `:${DEFAULTS.tcp_server.port}`);
    assert.equal(value('balance'), 'source');
    assert.equal(value('hash-type'), 'consistent');
    assert.match(value('http-check send'), /meth GET uri \/readyz\b/);
    const server = value('default-server');
    assert.match(server, new RegExp(`\\bcheck port ${DEFAULTS.http.port}\\b`));
    assert.match(server, /\bsend-proxy-v2\b/);
    assert.match(server, new RegExp(`\\bmaxconn ${DEFAULTS.limits.max_connections}\\b`));
    assert.ok(!cfg.some((l) => l.includes('shutdown-sessions')), 'the host drains its own connections');
    const r = tool('haproxy', ['-c', '-f', join(DOCS, 'haproxy.cfg')]);
    if (!r.missing) assert.equal(r.status, 0, r.out);
  });

  test('docs/radar-ingest.service: stop, reload and limits fit the engine', () => {
    const u = unitOf(read(DOCS, 'radar-ingest.service'));
    const one = (k: string): string => {
      const v = u.get(k);
      assert.ok(v && v.length === 1, `${k} set once`);
      return v[0]!;
    };
    assert.match(one('ExecStart'), /^\/usr\/bin\/node \S+\/dist\/src\/cli\.js --config \S+$/);
    assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
    assert.equal(one('KillSignal'), 'SIGTERM');
    assert.equal(one('KillMode'), 'mixed', 'the engine stops its trackers itself, after draining the rings');
    // The CLI force-exits 2 s after shutdown.deadline_ms.
    assert.ok(Number(one('TimeoutStopSec')) * 1000 > DEFAULTS.shutdown.deadline_ms + 2000, 'TimeoutStopSec');
    assert.equal(one('Restart'), 'on-failure');
    assert.match(one('RestartPreventExitStatus'), /\b2\b/, 'no restart loop on a config error');
    assert.ok(Number(one('LimitNOFILE')) > DEFAULTS.limits.max_connections, 'LimitNOFILE');
    assert.ok(one('EnvironmentFile').length > 0);
    assert.notEqual(one('User'), 'root');
    assert.ok(one('WorkingDirectory').startsWith('/'));
    assert.notEqual(u.get('MemoryDenyWriteExecute')?.[0], 'yes', 'V8 needs writable+executable memory');
    const families = u.get('RestrictAddressFamilies')?.[0];
    if (families !== undefined) assert.match(families, /\bAF_UNIX\b/, 'child-process pipes are Unix socket pairs');
  });

  test('promtool: the rule file and every dashboard query are valid PromQL', (t) => {
    const r = tool('promtool', ['check', 'rules', join(DOCS, 'prometheus-alerts.yaml')]);
    if (r.missing) {
      t.skip('promtool is not installed');
      return;
    }
    assert.equal(r.status, 0, r.out);
    // Dashboard queries as recording rules, with Grafana's variables replaced.
    const d = JSON.parse(dashText) as { panels: Panel[] };
    const exprs = dashboardExprs(d).map((e) => e.replace(/\$__rate_interval/g, '1m').replace(/\$\w+/g, '.*'));
    const file = join(tmp, 'dashboard-rules.yaml');
    writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${exprs.map((e, i) => `      - record: dashboard_${i}\n        expr: ${JSON.stringify(e)}\n`).join('')}`);
    const r2 = tool('promtool', ['check', 'rules', file]);
    assert.equal(r2.status, 0, r2.out);
  });
});
