// Where a track event came from, for a fleet of hosts that write into one
// output directory and one api_forward receiver. With a cluster configured:
//
// - a run id names the host and the fence of its lease on the node in front of
//   the engine's own `{epoch}.{spawn}`: `{host}.{fence}.{epoch}.{spawn}`, so two
//   hosts (whose epoch counters may even share one file) never hand out the
//   same run id, and a takeover (a higher fence) starts a new run;
// - every event written or forwarded carries `node_id`, `host`, `fence` and the
//   process's `run_id`, so a consumer can tell which host wrote what under which
//   lease, and can qualify the ids of a tracker that numbers its own tracks;
// - track files carry the host in their name, so two hosts never append to one
//   file.
//
// Without a cluster nothing here is used: ids, lines and file names stay as
// they are for a single host.
import { createHash } from 'node:crypto';

/** The longest run id: what the built-in tracker's --id-prefix takes. */
export const MAX_RUN_ID_CHARS = 64;
/** Host ids used as they are in run ids: letters, digits and `-` (written `:`), at most this long. */
const LITERAL_HOST_CHARS = 16;
const LITERAL_HOST = new RegExp(`^[A-Za-z0-9-]{1,${LITERAL_HOST_CHARS}}$`);

/**
 * The host id as a run-id field: only letters, digits, `:` and `@` (no `.`,
 * which separates fields, and no `-`, after which a track's own number
 * follows). A short id of letters, digits and `-` stays readable, its `-`
 * written `:` (`ingest-a` → `ingest:a`); any other id is `@` and 12 hex digits of
 * its SHA-256. The two forms cannot meet (only the second has `@`), so
 * different host ids give different tags, up to the hash.
 */
export function hostTag(hostId: string): string {
  if (LITERAL_HOST.test(hostId)) return hostId.replace(/-/g, ':');
  return `@${createHash('sha256').update(hostId).digest('hex').slice(0, 12)}`;
}

/** A fence as it goes into ids and events: a non-negative safe integer, anything else 0 (unfenced). */
export function fenceValue(fence: number): number {
  return Number.isSafeInteger(fence) && fence > 0 ? fence : 0;
}

/**
 * The run id of a tracker process on a host of a cluster: `{host}.{fence}.{base}`
 * where `base` is the engine's `{epoch}.{spawn}` (run-id.ts). The host's hashed
 * form is used when the readable one would make the id longer than
 * MAX_RUN_ID_CHARS.
 */
export function clusterRunId(hostId: string, fence: number, base: string): string {
  const f = fenceValue(fence);
  const id = `${hostTag(hostId)}.${f}.${base}`;
  if (id.length <= MAX_RUN_ID_CHARS) return id;
  return `@${createHash('sha256').update(hostId).digest('hex').slice(0, 12)}.${f}.${base}`;
}

/** A tracker process's run id: the engine's `{epoch}.{spawn}` alone, or with a cluster the host and fence in front. */
export function runIdFor(cluster: { host_id: string } | undefined, fence: number, base: string): string {
  return cluster === undefined ? base : clusterRunId(cluster.host_id, fence, base);
}

/** The fields every event gets on a host of a cluster. */
export interface Provenance {
  nodeId: string;
  host: string;
  fence: number;
  /** The tracker process's run id; null for a tracker that runs elsewhere (no run id). */
  runId: string | null;
}

const FIELDS = ['node_id', 'host', 'fence', 'run_id'] as const;

/**
 * One event's text with the provenance fields added. The tracker's text is kept
 * byte for byte and the fields are appended before its closing brace (no
 * re-serialisation, so its numbers stay exactly as printed). An event that
 * already has one of these fields is re-serialised with the host's values in
 * their place, so a line never holds a key twice.
 *
 * `text` must be the trimmed text of the JSON object `event` (track-line.ts).
 */
export function withProvenance(text: string, event: Record<string, unknown>, p: Provenance): string {
  const fence = fenceValue(p.fence);
  if (FIELDS.some((k) => Object.prototype.hasOwnProperty.call(event, k))) {
    const copy: Record<string, unknown> = { ...event, node_id: p.nodeId, host: p.host, fence };
    if (p.runId !== null) copy.run_id = p.runId;
    else delete copy.run_id;
    return JSON.stringify(copy);
  }
  const add = fieldsText(p.nodeId, p.host, fence, p.runId);
  const body = text.slice(0, -1).trimEnd();
  // `{}` (or `{ }`): nothing to separate from.
  return body === '{' ? `{${add}}` : `${body},${add}}`;
}

/** The last fields' text: they change only with the node, the process or the fence, not per event. */
let last = { nodeId: '', host: '', fence: -1, runId: null as string | null, text: '' };
function fieldsText(nodeId: string, host: string, fence: number, runId: string | null): string {
  const l = last;
  if (l.nodeId === nodeId && l.host === host && l.fence === fence && l.runId === runId) return l.text;
  const text = `"node_id":${JSON.stringify(nodeId)},"host":${JSON.stringify(host)},"fence":${fence}${runId !== null ? `,"run_id":${JSON.stringify(runId)}` : ''}`;
  last = { nodeId, host, fence, runId, text };
  return text;
}
