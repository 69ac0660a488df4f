// Summarises V8 .cpuprofile files (from `node --cpu-prof --cpu-prof-dir=DIR ...`):
// self time by function and by file, top N, one block per profile (one per thread).
//
//   node dist/bench/prof-summary.js DIR_OR_FILES... [--top N]
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, basename } from 'node:path';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function shortUrl(u: string): string {
  if (!u) return '';
  const i = u.indexOf('/dist/');
  if (i >= 0) return u.slice(i + 6);
  const j = u.indexOf('/node_modules/');
  if (j >= 0) return u.slice(j + 14);
  return u.replace(/^file:\/\//, '').replace(/^node:/, 'node:');
}

function summarise(file: string, top: number): string {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map<number, Node>();
  for (const n of p.nodes) byId.set(n.id, n);
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + dt);
  }
  const totalUs = p.endTime - p.startTime;
  const fn = new Map<string, number>();
  const files = new Map<string, number>();
  let idle = 0;
  for (const [id, us] of self) {
    const cf = byId.get(id)!.callFrame;
    if (cf.functionName === '(idle)') idle += us;
    const key = `${cf.functionName || '(anonymous)'} ${shortUrl(cf.url)}${cf.url ? `:${cf.lineNumber + 1}` : ''}`;
    fn.set(key, (fn.get(key) ?? 0) + us);
    const fk = shortUrl(cf.url) || cf.functionName;
    files.set(fk, (files.get(fk) ?? 0) + us);
  }
  const busy = totalUs - idle;
  const pct = (us: number): string => `${((us / totalUs) * 100).toFixed(1).padStart(5)}%`;
  const lines = [`== ${basename(file)}: ${(totalUs / 1e6).toFixed(2)} s, busy ${pct(busy)}`];
  lines.push('  self time by function:');
  for (const [k, us] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${pct(us)}  ${k}`);
  lines.push('  self time by file:');
  for (const [k, us] of [...files].sort((a, b) => b[1] - a[1]).slice(0, Math.ceil(top / 2))) lines.push(`  ${pct(us)}  ${k}`);
  return lines.join('\n');
}

const args = process.argv.slice(2);
let top = 25;
const inputs: string[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--top') top = Number(args[++i]);
  else inputs.push(args[i]!);
}
if (inputs.length === 0) {
  process.stderr.write('usage: node dist/bench/prof-summary.js DIR_OR_FILES... [--top N]\n');
  process.exit(1);
}
for (const x of inputs) {
  const files = statSync(x).isDirectory() ? readdirSync(x).filter((f) => f.endsWith('.cpuprofile')).sort().map((f) => join(x, f)) : [x];
  for (const f of files) process.stdout.write(`${summarise(f, top)}\n\n`);
}
