// Where results go: one JSON object on stdout and bench/results/<workload>-latest.json
// (the history lives in docs/benchmarks.md), with the commit and machine measured.
import { execFileSync } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { round } from './stats.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const RESULTS_DIR = `${ROOT}bench/results/`;

/** The commit measured, and whether src/ had uncommitted changes. */
function gitInfo(): { commit: string | null; dirty: boolean | null } {
  try {
    const git = (args: string[]): string => execFileSync('git', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    return { commit: git(['rev-parse', 'HEAD']), dirty: git(['status', '--porcelain', '--', 'src']) !== '' };
  } catch {
    return { commit: null, dirty: null };
  }
}

/** The fields every result starts with: the workload, when, the commit and the machine measured, the parameters. */
export function header(workload: string, params?: unknown): Record<string, unknown> {
  const machine = {
    cpus: os.availableParallelism(), model: os.cpus()[0]?.model ?? '?', mem_gib: round(os.totalmem() / 2 ** 30, 1), node: process.version, platform: `${os.platform()} ${os.release()}`,
  };
  return { workload, started_at: new Date().toISOString(), git: gitInfo(), machine, ...(params ? { params } : {}) };
}

/** Writes bench/results/<name> atomically; returns its repository path. */
export function writeResultFile(name: string, text: string): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const tmp = `${RESULTS_DIR}${name}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, `${RESULTS_DIR}${name}`);
  return `bench/results/${name}`;
}

/** Prints the result (stdout: JSON; stderr: the summary and where it was saved) and saves it unless `save` is false. */
export function report(workload: string, result: unknown, summary: string, save: boolean): void {
  const file = save ? writeResultFile(`${workload}-latest.json`, `${JSON.stringify(result, null, 2)}\n`) : null;
  process.stderr.write(`${summary}${summary.endsWith('\n') || summary === '' ? '' : '\n'}${file ? `results in ${file}\n` : ''}`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** Whole-run bound: never hang a CI job or a terminal. */
export function boundRun(seconds: number): void {
  setTimeout(() => {
    process.stderr.write('bench: overall time bound exceeded, exiting\n');
    process.exit(2);
  }, seconds * 1000).unref();
}

interface Verdict { protocol?: string; pass?: boolean | null }
const passed = (v: Verdict | Verdict[]): boolean => (Array.isArray(v) ? v.every((x) => x.pass) : v.pass === true);

/** One line for a human: each target's pass/fail and the books; the JSON holds the numbers. */
export function summaryLine(label: string, res: unknown): string {
  const r = res as { targets?: Record<string, Verdict | Verdict[]> | Verdict[]; accounting?: { ok: boolean; violations?: string[] }; duration_s?: number };
  const t = Object.entries(r.targets ?? {}).map(([k, v]) => `${(v as Verdict).protocol ?? k} ${passed(v) ? 'PASS' : 'FAIL'}`);
  const a = r.accounting?.violations ? [r.accounting.ok ? 'books OK' : `${r.accounting.violations.length} violations: ${r.accounting.violations.slice(0, 3).join('; ')}`] : [];
  return `${label}: ${[...t, ...a].join(', ') || 'done'}${r.duration_s !== undefined ? ` (${r.duration_s} s)` : ''}`;
}
