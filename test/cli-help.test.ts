// The command as a newcomer meets it: --help, --version, a mistyped flag, and
// `radar-ingest check` on good and bad config files. Real subprocesses of the
// built CLI; what is asserted is what the terminal shows and the exit code.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { didYouMean, editDistance } from '../src/util/did-you-mean.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string> };
const dir = mkdtempSync(join(tmpdir(), 'radar-cli-help-'));

interface Run { code: number | null; out: string; err: string }

/** Runs the CLI to its end (none of these start the engine). */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const base = { ...process.env };
    delete base.RADAR_INGEST_TOKEN;
    delete base.RADAR_INGEST_API_TOKEN;
    const p = spawn(process.execPath, [CLI, ...args], { cwd: dir, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const VALID = ['tcp_server:', '  enabled: true', '  host: 127.0.0.1', '  port: 30050', '  token: a-real-secret',
  'http:', '  host: 127.0.0.1', '  port: 8080', 'sink: discard', 'shards: 2'].join('\n');

// Three different problems: a misspelt key (with a close known key), a wrong type, a value outside its set.
const THREE_ERRORS = ['tcp_server:', '  enabled: true', '  prot: 30050', 'http:', '  port: "eighty"',
  'log:', '  level: loud'].join('\n');

after(() => rmSync(dir, { recursive: true, force: true }));

describe('radar-ingest --help, --version and bad flags', () => {
  test('--help shows usage, every flag, the commands, environment, signals, exit codes and the docs; exit 0', async () => {
    for (const args of [['--help'], ['-h'], ['help']]) {
      const r = await cli(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
      assert.equal(r.err, '');
      const h = r.out;
      assert.match(h, /^Usage: radar-ingest \[options\]/);
      for (const flag of ['-c, --config <path>', '-v, --verbose', '--server', '-V, --version', '-h, --help']) assert.ok(h.includes(flag), `flag ${flag}`);
      assert.match(h, /^Commands[^\n]*\n {2}check +validate a config file/m);
      assert.match(h, /^ {2}status +a running engine/m);
      assert.match(h, /^Environment:\n/m);
      for (const v of ['RADAR_INGEST_TOKEN ', 'RADAR_INGEST_API_TOKEN ', 'RADAR_INGEST_URL ']) assert.ok(h.includes(v), v);
      assert.match(h, /^Signals:\n {2}SIGTERM, SIGINT +drain and stop/m);
      assert.match(h, /^ {2}SIGHUP +reload the config file/m);
      assert.match(h, /^Exit codes:\n {2}0 +stopped cleanly[\s\S]*\n {2}1 +runtime failure[\s\S]*\n {2}2 +bad usage[^\n]*invalid config/m);
      // The docs are named by paths that exist in the installed package.
      const docs = [...h.matchAll(/^ {2}(\/\S+\.md) /gm)].map((m) => m[1]!);
      assert.ok(docs.some((d) => d.endsWith('docs/operations.md')), h);
      for (const d of docs) assert.ok(existsSync(d), `${d} exists`);
    }
  });

  test('a subcommand has its own --help; `help check` is the same', async () => {
    const r = await cli(['check', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.out, /^Usage: radar-ingest check \[options\] \[file\]/);
    assert.match(r.out, /--json/);
    assert.equal((await cli(['help', 'check'])).out, r.out);
  });

  test('--version and -V print the package version and exit 0', async () => {
    for (const flag of ['--version', '-V']) {
      const r = await cli([flag]);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, `${PKG.version}\n`);
      assert.equal(r.err, '');
    }
  });

  test('a mistyped flag is named with the closest real one, exit 2, nothing started', async () => {
    const r = await cli(['--confg', 'x.yaml']);
    assert.equal(r.code, 2);
    assert.match(r.err, /^radar-ingest: unknown option '--confg' \(did you mean --config\?\)\n/);
    assert.match(r.err, /radar-ingest --help/);
    assert.equal(r.out, '');
    const v = await cli(['--verbos']);
    assert.equal(v.code, 2);
    assert.match(v.err, /unknown option '--verbos' \(did you mean --verbose\?\)/);
    const missing = await cli(['--config']);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /--config <path>' argument missing/);
    const sub = await cli(['check', '--jsno']);
    assert.equal(sub.code, 2);
    assert.match(sub.err, /^radar-ingest check: unknown option '--jsno' \(did you mean --json\?\)/);
    const st = await cli(['status', '--jsn']);
    assert.equal(st.code, 2);
    assert.match(st.err, /unknown argument "--jsn" \(did you mean --json\?\)/);
  });

  test('a mistyped command is named with the closest command, exit 2', async () => {
    const r = await cli(['chek']);
    assert.equal(r.code, 2);
    assert.match(r.err, /^radar-ingest: unknown command 'chek' \(did you mean check\?\)/);
    const late = await cli(['-c', 'x.yaml', 'check']);
    assert.equal(late.code, 2);
    assert.match(late.err, /'check' is a command: it goes first/);
  });

  test('the bin entry is the built CLI with a node shebang (npx radar-ingest, npm link)', () => {
    const bin = PKG.bin['radar-ingest'];
    assert.equal(bin, 'dist/src/cli.js');
    assert.equal(readFileSync(join(ROOT, bin), 'utf8').split('\n')[0], '#!/usr/bin/env node');
  });
});

describe('radar-ingest check', () => {
  test('a valid file: exit 0 and a one-line summary on stdout', async () => {
    const p = file('valid.yaml', VALID);
    for (const args of [['check', '--config', p], ['check', p], ['check', '-c', p]]) {
      const r = await cli(args);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, `${p}: valid (nodes 127.0.0.1:30050, http 127.0.0.1:8080, sink discard, tracker reference, 0 trackers configured, shards 2)\n`);
      assert.equal(r.err, '');
    }
  });

  test('a file with three different errors: all three with their key paths, the unknown key with a did-you-mean; exit 2', async () => {
    const p = file('three.yaml', THREE_ERRORS);
    const r = await cli(['check', '--config', p]);
    assert.equal(r.code, 2);
    assert.equal(r.out, '');
    const lines = r.err.trimEnd().split('\n');
    assert.equal(lines[0], `${p}: 3 errors`);
    assert.deepEqual(lines.slice(1).sort(), [
      '  http.port: expected integer, got string',
      '  log.level: must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent"',
      '  tcp_server.prot: unknown key (did you mean "port"?)',
    ]);
  });

  test('the engine, started on the same file, stops at the first error, with the suggestion, and points to check; exit 2', async () => {
    const p = file('three-start.yaml', THREE_ERRORS);
    const r = await cli(['--config', p]);
    assert.equal(r.code, 2);
    assert.match(r.err, /^radar-ingest: config error: [^\n]+\n/);
    assert.match(r.err, /tcp_server\.prot: unknown key \(did you mean "port"\?\)/);
    assert.match(r.err, new RegExp(`run 'radar-ingest check --config ${p.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}' to list every error`));
  });

  test('--json: one object for scripts, with path, message and did_you_mean per error; exit codes as without it', async () => {
    const bad = await cli(['check', '--json', '--config', file('three-json.yaml', `${THREE_ERRORS}\nshardz: 2\n`)]);
    assert.equal(bad.code, 2);
    const j = JSON.parse(bad.out) as { valid: boolean; errors: { path: string; message: string; did_you_mean?: string }[]; summary: unknown };
    assert.equal(j.valid, false);
    assert.equal(j.summary, null);
    assert.deepEqual(j.errors.map((e) => e.path).sort(), ['http.port', 'log.level', 'shardz', 'tcp_server.prot']);
    assert.deepEqual(j.errors.find((e) => e.path === 'tcp_server.prot'), { path: 'tcp_server.prot', message: 'unknown key (did you mean "port"?)', did_you_mean: 'port' });
    assert.equal(j.errors.find((e) => e.path === 'shardz')?.did_you_mean, 'shards');
    assert.equal(j.errors.find((e) => e.path === 'http.port')?.did_you_mean, undefined);

    const ok = await cli(['check', '--json', file('valid-json.yaml', VALID)]);
    assert.equal(ok.code, 0);
    const k = JSON.parse(ok.out) as { valid: boolean; errors: unknown[]; summary: Record<string, unknown> };
    assert.equal(k.valid, true);
    assert.deepEqual(k.errors, []);
    assert.equal(k.summary.tcp_server, '127.0.0.1:30050');
    assert.equal(k.summary.shards, 2);
  });

  test('every unknown key of one mapping, in lists too, each with its own suggestion or none', async () => {
    const p = file('keys.yaml', ['tcp_server:', '  enabld: true', '  bogus_thing: 1', 'trackers:', '  - name: n1', '    tcp_prot: 31000'].join('\n'));
    const r = await cli(['check', '--json', p]);
    assert.equal(r.code, 2);
    const errs = (JSON.parse(r.out) as { errors: { path: string; message: string }[] }).errors;
    const byPath = Object.fromEntries(errs.map((e) => [e.path, e.message]));
    assert.equal(byPath['tcp_server.enabld'], 'unknown key (did you mean "enabled"?)');
    assert.equal(byPath['tcp_server.bogus_thing'], 'unknown key');
    assert.equal(byPath['trackers[0].tcp_prot'], 'unknown key (did you mean "tcp_port"?)');
    assert.equal(byPath['trackers[0].tcp_port'], 'is required');
  });

  test("start-up's retina checks: a missing retina-tracker checkout is an error of retina_tracker_path", async () => {
    const p = file('retina.yaml', `retina_tracker_path: ${join(dir, 'no-such-checkout')}\n`);
    const r = await cli(['check', p]);
    assert.equal(r.code, 2);
    assert.match(r.err, /^ {2}retina_tracker_path: retina-tracker checkout not found: \S*no-such-checkout/m);
  });

  test('a missing file, a YAML error: exit 2 with the reason; a placeholder token: valid, with a warning', async () => {
    const missing = await cli(['check', join(dir, 'nope.yaml')]);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /config file not found: \S*nope\.yaml/);
    const yaml = await cli(['check', file('broken.yaml', 'a: [\n')]);
    assert.equal(yaml.code, 2);
    assert.match(yaml.err, /broken\.yaml:\d+:\d+: invalid YAML/);
    const placeholder = await cli(['check', file('placeholder.yaml', 'tcp_server:\n  enabled: true\n  token: change-me\n')]);
    assert.equal(placeholder.code, 0);
    assert.match(placeholder.out, /valid/);
    assert.match(placeholder.err, /warning: tcp_server\.token is the placeholder "change-me"/);
  });
});

describe('did you mean', () => {
  test('edit distance counts a swap of neighbours as one edit', () => {
    assert.equal(editDistance('prot', 'port'), 1);
    assert.equal(editDistance('confg', 'config'), 1);
    assert.equal(editDistance('', 'abc'), 3);
    assert.equal(editDistance('kitten', 'sitting'), 3);
  });

  test('the closest known name when close, none when far', () => {
    assert.equal(didYouMean('shardz', ['sink', 'shards', 'http']), 'shards');
    assert.equal(didYouMean('max_conections', ['max_connections', 'max_frame_bytes']), 'max_connections');
    assert.equal(didYouMean('auto-provision', ['auto_provision']), 'auto_provision');
    assert.equal(didYouMean('Port', ['port']), 'port');
    assert.equal(didYouMean('bogus', ['port', 'host', 'token']), undefined);
  });
});
