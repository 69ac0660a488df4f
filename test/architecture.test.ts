// The source tree's shape, checked from its import statements: files never import
// each other in a circle, and each folder imports only from its own stage or the
// ones below it, so the data path (socket -> shard -> ring -> tracker) reads from
// the tree and a change in a late stage cannot reach back into an early one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SRC = join(ROOT, 'src');

/**
 * The layers, lowest first. A folder (or a top-level file, by its name) may import
 * from itself and from any layer below its own; folders sharing a layer are
 * independent of each other. The first four are the foundation: no stage in them.
 */
const LAYERS: readonly (readonly string[])[] = [
  ['util'], //                    generic data structures
  ['protocol'], //                wire formats, error codes, close reasons, thread messages, shared rules
  ['telemetry'], //               counters (derived from the close-reason table), metric names, logging
  ['ring', 'http', 'config'], //  the per-node rings; HTTP plumbing; the config schema
  ['cluster'], //                several hosts: node leases and fences in Redis
  ['ingress'], //                 listener, PROXY protocol, handoff to the shards
  ['shard'], //                   shard pool, worker, line and binary protocols
  ['nodes'], //                   node table, node API, ring sink
  ['tracker', 'agents'], //       trackers fed from the rings; agents and their commands
  ['server-mode'], //             nodes that run their own tracker and push its output (track files, api_forward)
  ['engine'], //                  wiring, metrics, process guard
  ['cli'], //                     the command
];

const layerOf = new Map(LAYERS.flatMap((names, rank) => names.map((n) => [n, rank] as const)));

interface Import {
  /** Path under src/, with a .ts extension. */
  target: string;
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return name.endsWith('.ts') ? [relative(SRC, p).split(sep).join('/')] : [];
  });
}

const STATEMENT = /^\s*(import|export)\s+(type\s+)?[\w\s{},*$]*?\bfrom\s*'([^']+)'/gm;
const SIDE_EFFECT = /^\s*import\s*'([^']+)'/gm;
const DYNAMIC = /\bimport\(\s*'([^']+)'\s*\)/g;

/** The relative imports of one file (package imports are not part of the layering). */
function importsOf(file: string, text: string): Import[] {
  const found: { spec: string; typeOnly: boolean }[] = [];
  for (const m of text.matchAll(STATEMENT)) found.push({ spec: m[3]!, typeOnly: m[2] !== undefined });
  for (const m of text.matchAll(SIDE_EFFECT)) found.push({ spec: m[1]!, typeOnly: false });
  for (const m of text.matchAll(DYNAMIC)) found.push({ spec: m[1]!, typeOnly: false });
  return found
    .filter((f) => f.spec.startsWith('.'))
    .map((f) => ({ target: posix.join(posix.dirname(file), f.spec).replace(/\.js$/, '.ts'), typeOnly: f.typeOnly }));
}

/** The folder a file belongs to: its first directory under src/, or its own name at the top. */
function groupOf(file: string): string {
  const slash = file.indexOf('/');
  return slash === -1 ? file.replace(/\.ts$/, '') : file.slice(0, slash);
}

/** Strongly connected components of more than one file (or a file importing itself). */
function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    for (;;) {
      const w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
      if (w === v) break;
    }
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(component.sort());
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return out;
}

const files = sourceFiles(SRC).sort();
const imports = new Map(files.map((f) => [f, importsOf(f, readFileSync(join(SRC, f), 'utf8'))]));

test('the import scan sees the tree: every relative import names a source file', () => {
  assert.ok(files.length > 40, `only ${files.length} files under ${SRC}`);
  // Each relative `from '...'` in a file is one the statement pattern recognised.
  const missed = files.filter((f) => {
    const text = readFileSync(join(SRC, f), 'utf8');
    const seen = [...text.matchAll(STATEMENT)].filter((m) => m[3]!.startsWith('.')).length;
    return seen !== (text.match(/\bfrom\s*'\.[^']*'/g) ?? []).length;
  });
  assert.deepEqual(missed, []);
  const unresolved = [...imports].flatMap(([f, list]) =>
    list.filter((i) => !existsSync(join(SRC, i.target))).map((i) => `${f} -> ${i.target}`));
  assert.deepEqual(unresolved, []);
});

test('no import cycles between files (type-only imports included)', () => {
  const graph = new Map([...imports].map(([f, list]) => [f, [...new Set(list.map((i) => i.target))]]));
  assert.deepEqual(cycles(graph), []);
});

test('every folder has a layer', () => {
  const unplaced = [...new Set(files.map(groupOf))].filter((g) => !layerOf.has(g));
  assert.deepEqual(unplaced, [], 'add the folder to LAYERS');
});

test('each folder imports only from itself and from the layers below it', () => {
  const violations: string[] = [];
  for (const [file, list] of imports) {
    const from = groupOf(file);
    for (const { target } of list) {
      const to = groupOf(target);
      if (to === from) continue;
      if (!(layerOf.get(to)! < layerOf.get(from)!)) violations.push(`${file} (${from}) -> ${target} (${to})`);
    }
  }
  assert.deepEqual(violations, []);
});

test('the worker entry the shard pool starts is a source file', () => {
  // The pool names its worker by URL, not by import, so the scan above cannot see it.
  const pool = readFileSync(join(SRC, 'shard', 'shard-pool.ts'), 'utf8');
  const m = /new URL\('([^']+)', import\.meta\.url\)/.exec(pool);
  assert.ok(m, 'the pool names its worker file');
  assert.ok(existsSync(join(SRC, 'shard', m[1]!.replace(/\.js$/, '.ts'))), `${m[1]} has no source file`);
});
