// `radar-ingest check [--config F] [--json]`: validates a config file as the engine
// would at start-up, without starting anything, and reports every problem at once:
// each with its key path, unknown keys with the closest known key. The retina
// checks of start-up (checkout, module, interpreter) run once the file is valid,
// with paths resolved from the current directory, as the engine resolves them.
// Exit codes: 0 valid, 2 invalid or bad usage.
import { checkConfigFile, UnknownKeyError, type Config } from '../config.js';
import type { ConfigError } from '../protocol/errors.js';
import { trackerCommandProblem } from '../tracker/tracker-command.js';
import { tokenWarnings } from '../engine/token-warnings.js';
import { EXIT_CONFIG, newCommand, parseArgv, type Write } from './parser.js';

export interface CheckedError {
  /** Dotted key path (`trackers[1].tcp_port`); "" for the file itself (not found, YAML). */
  path: string;
  message: string;
  did_you_mean?: string;
}

export interface CheckReport {
  file: string;
  valid: boolean;
  errors: CheckedError[];
  /** Valid but worth knowing (a token that protects nothing). */
  warnings: string[];
  summary: Record<string, unknown> | null;
}

function toChecked(e: ConfigError): CheckedError {
  const prefix = `${e.path}: `;
  const message = e.path !== '' && e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
  const suggestion = e instanceof UnknownKeyError ? e.suggestion : undefined;
  return { path: e.path, message, ...(suggestion !== undefined ? { did_you_mean: suggestion } : {}) };
}

function summarize(c: Config): Record<string, unknown> {
  return {
    tcp_server: c.tcp_server.enabled ? `${c.tcp_server.host}:${c.tcp_server.port}` : 'off',
    http: `${c.http.host}:${c.http.port}`,
    sink: c.sink,
    tracker: typeof c.tracker.command === 'string' ? c.tracker.command : c.tracker.command.join(' '),
    trackers: c.trackers.length,
    auto_provision: c.tcp_server.auto_provision,
    shards: c.shards,
    output_dir: c.output_dir,
  };
}

/** The whole check of one file (pure but for reading it and looking for retina on disk). */
export function checkFile(file: string, env: NodeJS.ProcessEnv): CheckReport {
  const r = checkConfigFile(file, env);
  const errors = 'errors' in r ? [...r.errors] : [];
  const config = 'config' in r ? r.config : null;
  if (config) {
    const problem = trackerCommandProblem(config, env);
    if (problem) errors.push(problem);
  }
  const valid = errors.length === 0;
  return {
    file,
    valid,
    errors: errors.map(toChecked),
    warnings: config ? tokenWarnings(config.tcp_server) : [],
    summary: config && valid ? summarize(config) : null,
  };
}

/** The report as an operator reads it: errors and warnings on stderr, the verdict on stdout when valid. */
export function renderReport(r: CheckReport, out: Write, err: Write): void {
  for (const w of r.warnings) err(`radar-ingest check: warning: ${w}\n`);
  if (r.valid) {
    const s = r.summary ?? {};
    const n = Number(s.trackers);
    out(`${r.file}: valid (nodes ${String(s.tcp_server)}, http ${String(s.http)}, sink ${String(s.sink)}, tracker ${String(s.tracker)}, ` +
      `${n} tracker${n === 1 ? '' : 's'} configured, shards ${String(s.shards)})\n`);
    return;
  }
  const n = r.errors.length;
  err(`${r.file}: ${n} error${n === 1 ? '' : 's'}\n`);
  for (const e of r.errors) err(`  ${e.path === '' ? '' : `${e.path}: `}${e.message}\n`);
}

/** Runs the command; resolves to the exit code. */
export async function runCheck(argv: string[], env: NodeJS.ProcessEnv, out: Write, err: Write): Promise<number> {
  const cmd = newCommand('radar-ingest check', out, err)
    .description('Validate a config file without starting anything: every error at once, each with its key path, ' +
      'unknown keys with the closest known key; then the retina checks of start-up (tracker.command "retina"). ' +
      'Relative paths resolve from the current directory, as for the engine. Exit 0: valid; 2: invalid or bad usage.')
    .argument('[file]', 'the config file (same as --config)')
    .option('-c, --config <path>', 'the config file', 'config.yaml')
    .option('--json', 'one JSON object on stdout: {file, valid, errors: [{path, message, did_you_mean?}], warnings, summary}');
  const code = parseArgv(cmd, argv);
  if (code !== null) return code;
  const opts = cmd.opts<{ config: string; json?: boolean }>();
  const report = checkFile(cmd.args[0] ?? opts.config, env);
  if (opts.json) out(`${JSON.stringify(report, null, 2)}\n`);
  else renderReport(report, out, err);
  return report.valid ? 0 : EXIT_CONFIG;
}
