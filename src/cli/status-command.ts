// `radar-ingest status [--url URL] [--token T] [--json]`: asks a running engine's
// HTTP listener and prints its nodes, trackers, agents and drops (status-table.ts).
// Exit codes: 0 the engine answered, 1 it could not be reached, 2 bad usage.
import { buildSnapshot, renderStatus, type Fetched, type StatusInputs } from './status-table.js';
import { didYouMean } from '../util/did-you-mean.js';

const FLAGS = ['--url', '--token', '--json', '--help'];

export const STATUS_USAGE = `usage: radar-ingest status [--url URL] [--token TOKEN] [--json]
  --url URL      the engine's HTTP listener (default http://127.0.0.1:8080, or RADAR_INGEST_URL)
  --token TOKEN  the API token (http.api_token) to list agents (default: RADAR_INGEST_API_TOKEN)
  --json         one JSON object instead of tables
`;

interface StatusArgs { url: string; token: string; json: boolean }

export function parseStatusArgs(argv: string[], env: NodeJS.ProcessEnv): StatusArgs | { error: string } | 'help' {
  const a: StatusArgs = { url: env.RADAR_INGEST_URL || 'http://127.0.0.1:8080', token: env.RADAR_INGEST_API_TOKEN ?? '', json: false };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i]!;
    let inline: string | undefined;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) [arg, inline] = [arg.slice(0, eq), arg.slice(eq + 1)];
    const value = (): string | null => inline ?? argv[++i] ?? null;
    if (arg === '--url' || arg === '--token') {
      const v = value();
      if (v === null) return { error: `${arg} needs a value` };
      if (arg === '--url') a.url = v;
      else a.token = v;
    } else if (arg === '--json' && inline === undefined) a.json = true;
    else if ((arg === '--help' || arg === '-h') && inline === undefined) return 'help';
    else {
      const near = arg.startsWith('-') ? didYouMean(arg, FLAGS) : undefined;
      return { error: `unknown argument ${JSON.stringify(argv[i])}${near ? ` (did you mean ${near}?)` : ''}` };
    }
  }
  try {
    const u = new URL(a.url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return { error: `--url: expected http:// or https://, got ${JSON.stringify(a.url)}` };
  } catch {
    return { error: `--url: not a URL: ${JSON.stringify(a.url)}` };
  }
  a.url = a.url.replace(/\/+$/, '');
  return a;
}

const TIMEOUT_MS = 5000;

async function get(url: string, headers: Record<string, string>, okStatuses: number[]): Promise<Fetched<string>> {
  try {
    const r = await fetch(url, { headers, signal: AbortSignal.timeout(TIMEOUT_MS), redirect: 'error' });
    const body = await r.text();
    if (!okStatuses.includes(r.status)) return { ok: false, error: `HTTP ${r.status}${r.status === 401 ? ' (the API token was refused)' : ''}` };
    return { ok: true, value: body };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    return { ok: false, error: e.cause?.code ?? e.cause?.message ?? e.message };
  }
}

function json<T>(f: Fetched<string>): Fetched<T> {
  if (!f.ok) return f;
  try {
    return { ok: true, value: JSON.parse(f.value) as T };
  } catch {
    return { ok: false, error: 'the answer is not JSON' };
  }
}

/** Runs the command; resolves to the exit code. */
export async function runStatus(argv: string[], env: NodeJS.ProcessEnv, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const a = parseStatusArgs(argv, env);
  if (a === 'help') {
    out(STATUS_USAGE);
    return 0;
  }
  if ('error' in a) {
    err(`radar-ingest status: ${a.error}\n${STATUS_USAGE}`);
    return 2;
  }
  const [readyz, trackers, agents, metrics] = await Promise.all([
    get(`${a.url}/readyz`, {}, [200, 503]),
    get(`${a.url}/api/v1/trackers`, a.token ? { authorization: `Bearer ${a.token}` } : {}, [200]),
    a.token ? get(`${a.url}/api/v1/agents?limit=1000`, { authorization: `Bearer ${a.token}` }, [200]) : Promise.resolve<Fetched<string>>({ ok: false, error: 'no API token (--token or RADAR_INGEST_API_TOKEN)' }),
    get(`${a.url}/metrics`, {}, [200]),
  ]);
  const inputs: StatusInputs = {
    url: a.url,
    readyz: json(readyz),
    trackers: trackers.ok || !/^HTTP 404/.test(trackers.error) ? json(trackers) : { ok: false, error: 'no trackers (sink is not "trackers")' },
    agents: json(agents),
    metrics,
  };
  if (!readyz.ok && !metrics.ok) {
    err(`radar-ingest status: cannot reach ${a.url}: ${readyz.error}\n`);
    if (a.json) out(`${JSON.stringify(buildSnapshot(inputs))}\n`);
    return 1;
  }
  const snap = buildSnapshot(inputs);
  out(a.json ? `${JSON.stringify(snap, null, 2)}\n` : renderStatus(snap, Date.now()));
  return 0;
}
