// The part of `radar-ingest --help` that is not about flags: subcommands, the
// environment, signals, exit codes and where the documentation is.
import type { Subcommand } from './subcommands.js';
import { docPath } from './package-info.js';

function rows(items: readonly (readonly [string, string])[]): string {
  const width = Math.max(...items.map(([k]) => k.length));
  return items.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n');
}

export function helpEpilogue(subcommands: readonly Subcommand[]): string {
  return `
Commands (radar-ingest COMMAND --help for each):
${rows(subcommands.map((c) => [c.name, c.summary] as const))}

Environment:
${rows([
    ['RADAR_INGEST_TOKEN', 'node token; when non-empty it overrides tcp_server.token'],
    ['RADAR_INGEST_API_TOKEN', 'API token; when non-empty it overrides http.api_token (status: the default --token)'],
    ['RADAR_INGEST_URL', 'status: the default --url (http://127.0.0.1:8080)'],
    ['PATH', 'where tracker.python / geolocator.python and custom tracker commands are found'],
    ['RADAR_INGEST_TEST_HOOKS', 'tests only (with RADAR_INGEST_TEST_FAULT): never set in production'],
  ])}
  Trackers and geolocators inherit the environment, plus tracker.env / geolocator.env.

Signals:
${rows([
    ['SIGTERM, SIGINT', 'drain and stop: stop accepting, feed what the rings hold to the trackers, stop them,'],
    ['', 'exit 0 (all within shutdown.deadline_ms; exit 1 two seconds past it)'],
    ['a second one', 'exit 1 at once, without draining'],
    ['SIGHUP', 'reload the config file; an invalid file is logged with its key path and the running'],
    ['', 'config stays'],
  ])}

Exit codes:
${rows([
    ['0', 'stopped cleanly after SIGTERM/SIGINT; check: the file is valid; status: the engine answered'],
    ['1', 'runtime failure: start-up failed (a port in use...), an uncaught exception (after a drain),'],
    ['', 'the shutdown deadline passed, a second signal; status: the engine could not be reached'],
    ['2', 'bad usage (unknown flag, missing value) or an invalid config (nothing was started)'],
  ])}

Documentation:
${rows([
    [docPath('README.md'), 'quick start'],
    [docPath('docs/operations.md'), 'running it: the CLI, signals, systemd, metrics, logs'],
    [docPath('docs/configuration.md'), 'every config key and its default'],
  ])}
`;
}
