// `radar-ingest status`: what a running engine says about itself, gathered from its
// HTTP APIs (/readyz, /api/v1/trackers, /api/v1/agents, /metrics) into one
// snapshot, and that snapshot as terminal tables. Pure: the fetching is in
// status-command.ts, so the rendering is testable on fixed input.

/** One source's answer: its parsed body, or why there is none. */
export type Fetched<T> = { ok: true; value: T } | { ok: false; error: string };

export interface StatusInputs {
  url: string;
  readyz: Fetched<{ status?: unknown; checks?: Record<string, { ok?: unknown; detail?: unknown }> }>;
  trackers: Fetched<{ trackers?: unknown[]; command?: unknown }>;
  /** ok: false with error 'no API token' when none was given. */
  agents: Fetched<{ agents?: unknown[]; next_cursor?: unknown }>;
  metrics: Fetched<string>;
}

export interface TrackerRow {
  node_id: string; name: string; state: string; port: number | null; pid: number | null; node_connected: boolean;
  last_frame_at: string | null; frames_fed: number; frames_lost: number;
  /** Confirmed tracks alive now, when the API reports it (else null). */
  tracks_active: number | null; tracks_written: number; restarts: number; last_error: string | null;
}

export interface AgentRow { id: string; state: string; group: string; version: string; last_heartbeat_at: string | null }

export interface StatusSnapshot {
  url: string;
  ready: boolean | null;
  /** Failing readiness checks, "name: detail". */
  not_ready: string[];
  nodes: { known: number | null; connected: number | null; connections_open: number | null };
  frames: { received: number | null; delivered: number | null; in_rings: number | null; dropped: number | null; dropped_by_reason: Record<string, number> };
  trackers: { available: true; command: string | null; rows: TrackerRow[] } | { available: false; reason: string };
  agents: { available: true; rows: AgentRow[]; more: boolean } | { available: false; reason: string };
  errors: string[];
}

/** Prometheus text format: every sample as `name{labels}` -> value (labels as written). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (!m) continue;
    const v = Number(m[2]);
    if (!Number.isNaN(v)) out.set(m[1]!, v);
  }
  return out;
}

/** Values of one labelled metric by that label's value (`name{label="x"}` -> x). */
function byLabel(samples: Map<string, number>, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  const re = new RegExp(`${label}="([^"]*)"`);
  for (const [k, v] of samples) {
    if (!k.startsWith(`${name}{`)) continue;
    const m = re.exec(k);
    if (m) out[m[1]!] = v;
  }
  return out;
}

const str = (v: unknown): string => (typeof v === 'string' ? v : v === null || v === undefined ? '' : String(v));
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const numOrNull = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const strOrNull = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);

function trackerRow(v: unknown): TrackerRow {
  const t = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  return {
    node_id: str(t.node_id), name: str(t.name), state: str(t.state), port: numOrNull(t.port), pid: numOrNull(t.pid),
    node_connected: t.node_connected === true, last_frame_at: strOrNull(t.last_frame_at), frames_fed: num(t.frames_fed),
    frames_lost: num(t.frames_lost), tracks_active: numOrNull(t.tracks_active), tracks_written: num(t.tracks_written),
    restarts: num(t.restarts), last_error: strOrNull(t.last_error),
  };
}

function agentRow(v: unknown): AgentRow {
  const a = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  return { id: str(a.id), state: str(a.state), group: str(a.group), version: str(a.version), last_heartbeat_at: strOrNull(a.lastHeartbeatAt) };
}

export function buildSnapshot(i: StatusInputs): StatusSnapshot {
  const errors: string[] = [];
  const m = i.metrics.ok ? parseMetrics(i.metrics.value) : new Map<string, number>();
  if (!i.metrics.ok) errors.push(`/metrics: ${i.metrics.error}`);
  const g = (name: string): number | null => (i.metrics.ok ? m.get(name) ?? null : null);
  const dropped = byLabel(m, 'radar_ingest_frames_dropped_total', 'reason');
  let ready: boolean | null = null;
  const notReady: string[] = [];
  if (i.readyz.ok) {
    ready = i.readyz.value.status === 'ready';
    for (const [name, c] of Object.entries(i.readyz.value.checks ?? {})) {
      if (c.ok !== true) notReady.push(c.detail ? `${name}: ${str(c.detail)}` : name);
    }
  } else errors.push(`/readyz: ${i.readyz.error}`);
  let trackers: StatusSnapshot['trackers'];
  if (i.trackers.ok) {
    const rows = (Array.isArray(i.trackers.value.trackers) ? i.trackers.value.trackers : []).map(trackerRow);
    trackers = { available: true, command: strOrNull(i.trackers.value.command), rows };
  } else trackers = { available: false, reason: i.trackers.error };
  let agents: StatusSnapshot['agents'];
  if (i.agents.ok) {
    const rows = (Array.isArray(i.agents.value.agents) ? i.agents.value.agents : []).map(agentRow);
    agents = { available: true, rows, more: typeof i.agents.value.next_cursor === 'string' };
  } else agents = { available: false, reason: i.agents.error };
  const droppedTotal = Object.keys(dropped).length > 0 ? Object.values(dropped).reduce((a, b) => a + b, 0) : null;
  return {
    url: i.url,
    ready,
    not_ready: notReady,
    nodes: { known: g('radar_ingest_nodes'), connected: g('radar_ingest_nodes_connected'), connections_open: g('radar_ingest_connections_open') },
    frames: {
      received: g('radar_ingest_frames_received_total'), delivered: g('radar_ingest_frames_delivered_total'),
      in_rings: g('radar_ingest_frames_in_rings'), dropped: droppedTotal, dropped_by_reason: dropped,
    },
    trackers,
    agents,
    errors,
  };
}

// ---- rendering ----

/** Longest cell shown; longer ones (a last_error) are cut with an ellipsis. */
const MAX_CELL = 60;

function cell(v: unknown): string {
  const s = v === null || v === undefined || v === '' ? '-' : String(v).replace(/[\x00-\x1f\x7f]/g, ' ');
  return s.length > MAX_CELL ? `${s.slice(0, MAX_CELL - 1)}…` : s;
}

/** Columns padded to their widest cell, two spaces apart; the header underlined with dashes. */
export function table(header: string[], rows: unknown[][]): string {
  const cells = [header, ...rows.map((r) => r.map(cell))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]): string => r.map((s, c) => (c === r.length - 1 ? s : s.padEnd(widths[c]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.slice(1).map(line)].join('\n');
}

const n = (v: number | null): string => (v === null ? '?' : String(v));

/** Seconds since an ISO time, as "12s ago" / "3m ago" / "2h ago". */
export function ago(iso: string | null, now: number): string {
  if (iso === null) return '-';
  const ms = now - Date.parse(iso);
  if (!Number.isFinite(ms)) return '-';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

export function renderStatus(s: StatusSnapshot, now: number): string {
  const out: string[] = [];
  const readiness = s.ready === null ? 'unknown' : s.ready ? 'ready' : `NOT READY (${s.not_ready.join('; ')})`;
  out.push(`radar-ingest at ${s.url}: ${readiness}`);
  out.push('');
  out.push(`NODES  known ${n(s.nodes.known)}  connected ${n(s.nodes.connected)}  connections open ${n(s.nodes.connections_open)}`);
  if (s.trackers.available && s.trackers.rows.length > 0) {
    out.push(table(['NODE', 'CONNECTED', 'LAST FRAME'], s.trackers.rows.map((t) => [t.node_id, t.node_connected ? 'yes' : 'no', ago(t.last_frame_at, now)])));
  }
  out.push('');
  if (s.trackers.available) {
    out.push(`TRACKERS  ${s.trackers.rows.length}${s.trackers.command ? ` (command: ${s.trackers.command})` : ''}`);
    if (s.trackers.rows.length > 0) {
      out.push(table(
        ['NODE', 'STATE', 'PORT', 'PID', 'FRAMES FED', 'LOST', 'ACTIVE TRACKS', 'EVENTS', 'RESTARTS', 'LAST ERROR'],
        s.trackers.rows.map((t) => [t.node_id, t.state, t.port, t.pid, t.frames_fed, t.frames_lost, t.tracks_active ?? 'n/a', t.tracks_written, t.restarts, t.last_error]),
      ));
    }
  } else out.push(`TRACKERS  unavailable: ${s.trackers.reason}`);
  out.push('');
  if (s.agents.available) {
    out.push(`AGENTS  ${s.agents.rows.length}${s.agents.more ? '+ (first page)' : ''}`);
    if (s.agents.rows.length > 0) {
      out.push(table(['AGENT', 'STATE', 'GROUP', 'VERSION', 'LAST HEARTBEAT'],
        s.agents.rows.map((a) => [a.id, a.state, a.group, a.version, ago(a.last_heartbeat_at, now)])));
    }
  } else out.push(`AGENTS  unavailable: ${s.agents.reason}`);
  out.push('');
  const f = s.frames;
  out.push(`FRAMES  received ${n(f.received)}  delivered ${n(f.delivered)}  in rings ${n(f.in_rings)}  dropped ${n(f.dropped)}`);
  const reasons = Object.entries(f.dropped_by_reason).filter(([, v]) => v > 0);
  if (reasons.length > 0) out.push(table(['DROP REASON', 'FRAMES'], reasons.sort((a, b) => b[1] - a[1])));
  for (const e of s.errors) out.push(`error: ${e}`);
  return `${out.join('\n')}\n`;
}
