// Configuration: one zod schema (`configSchema`) is the single source of truth for
// every key, its type, its default and its cross-field rules. `Config` is the
// schema's OUTPUT type: defaults applied, derived values resolved, every field present.
//
// Compatibility: every key of a tracker-host config.yaml is accepted with the same
// meaning and the same default, so an existing tracker-host config loads unchanged.
// Keys new to radar-ingest (shards, sink, http, limits, ring, log) all have defaults.
//
// Conventions:
//  - Objects are strict: an unknown key is an error (typos must not be ignored silently).
//  - A key whose value is null (e.g. `token:` with nothing after it) counts as absent,
//    i.e. it takes its default (or "is required" if it has none). List items are not
//    touched: `trackers: [~]` is an error.
//  - parseConfig reports the first problem, as a ConfigError whose `path` is the dotted key
//    path (`trackers[1].tcp_port`) and whose message is short and precise; configErrors and
//    checkConfigFile report every one (`radar-ingest check`). An unknown key names the
//    closest known key of its mapping, if one is close (`prot: unknown key (did you mean "port"?)`).
//  - Durations in seconds are finite numbers >= 0; byte sizes and milliseconds are integers.

import { readFileSync } from 'node:fs';
import os from 'node:os';
import { isIP } from 'node:net';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ConfigError } from './protocol/errors.js';
import { NODE_ID_PATTERN, ID_SHAPE } from './protocol/node-id.js';
import { didYouMean } from './util/did-you-mean.js';

/** Upper bound for `shards` (explicit or resolved from "auto"). */
export const MAX_SHARDS = 64;

/**
 * Shard count used for `shards: auto`: one per available CPU minus one for the main
 * thread (accept loop, metrics), at least 1. Capped at MAX_SHARDS so "auto" never
 * resolves to a value an explicit setting could not express.
 */
export function defaultShards(): number {
  return Math.min(MAX_SHARDS, Math.max(1, os.availableParallelism() - 1));
}

// ---------------------------------------------------------------------------
// Field helpers. Each numeric helper phrases its own range message; everything
// else (type mismatches, missing keys, enums, unknown keys) is phrased by
// issueMessage() below, which parseConfig passes to zod as the per-parse error map.
// ---------------------------------------------------------------------------

const isNumber = (v: unknown): v is number => typeof v === 'number';

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : Number.isFinite(v) ? 'number' : 'Infinity';
  if (typeof v === 'object') return 'mapping';
  return typeof v;
}

/** z.int() error: the range message for numeric input, "expected integer" otherwise. */
function intError(rangeMsg: string) {
  return (iss: { input?: unknown }): string | undefined => {
    if (iss.input === undefined) return undefined; // "is required", from issueMessage()
    return isNumber(iss.input) ? rangeMsg : `expected integer, got ${typeName(iss.input)}`;
  };
}

/** Integer in [lo, hi]; all failures on numeric input say the same thing. */
function intIn(lo: number, hi: number) {
  const msg = `must be an integer between ${lo} and ${hi}`;
  return z.int({ error: intError(msg) }).min(lo, { error: msg }).max(hi, { error: msg });
}

/** Integer >= lo (no upper bound other than the safe-integer range). */
function intMin(lo: number) {
  const msg = `must be an integer >= ${lo}`;
  return z.int({ error: intError(msg) }).min(lo, { error: msg });
}

/** Duration in seconds: finite, >= 0, fractions allowed. */
function seconds() {
  const msg = 'must be a finite number >= 0';
  return z.number({ error: (iss) => (isNumber(iss.input) ? msg : undefined) }).min(0, { error: msg });
}

/** TCP/HTTP listen port; 0 asks the OS for an ephemeral port. */
const listenPort = () => intIn(0, 65535);
/** A port that must be a real, fixed port (provisioning ranges, tracker ports). */
const fixedPort = () => intIn(1, 65535);

const nonEmptyString = () =>
  z.string().refine((s) => s.trim() !== '', { error: 'must be a non-empty string' });

const ONE_MIB = 1024 * 1024;
const RING_MIN = 64 * 1024;
const RING_MAX = 1024 * 1024 * 1024;
const ringSizeMsg = `must be a power of two between ${RING_MIN} and ${RING_MAX}`;

// ---------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------

const apiForwardSchema = z.strictObject({
  // false: forwarding tracks to an external API is opt-in (tracker-host default).
  enabled: z.boolean().default(false),
  // "": no URL until one is configured (tracker-host default).
  url: z.string().default(''),
  // {}: no extra HTTP headers (e.g. Authorization) unless configured.
  headers: z.record(z.string(), z.string()).default({}),
  // 1: one track event per POST, the body being that JSON object (tracker-host's format). Above 1: the body
  // is a JSON array of up to this many events (opt-in batching for receivers that accept arrays).
  batch_max_events: intIn(1, 10000).default(1),
  // 100: with batching, the longest an event waits for its batch to fill.
  batch_max_ms: intIn(0, 60000).default(100),
});

/** Legacy tracker-host HTTP server block; also the default for `http`. */
const serverSchema = z.strictObject({
  // "0.0.0.0": listen on all interfaces (tracker-host default).
  host: nonEmptyString().default('0.0.0.0'),
  // 8080: tracker-host default HTTP port.
  port: listenPort().default(8080),
  // false: server-side geolocators are opt-in (tracker-host default).
  geolocator_enabled: z.boolean().default(false),
  // 31000: first TCP port handed to server-side geolocators (tracker-host default), and to trackers'
  // geolocators whose tcp_port is 0 (skipping tracker ports and the auto-provisioning range).
  geolocator_tcp_port_base: fixedPort().default(31000),
});

const retrySchema = z.strictObject({
  // 5: accepted and not used, as in tracker-host (the outage is a duration: extended_outage_sec).
  max_attempts: intMin(0).default(5),
  // 2.0: the n-th failed poll in a row waits backoff_base_sec ** n s, at most 30 s (tracker-host rule).
  backoff_base_sec: seconds().default(2.0),
  // 60.0: failures lasting this long stop the tracker until the source is back (tracker-host default).
  extended_outage_sec: seconds().default(60.0),
  // 30.0: how often a downed source is probed (tracker-host default).
  health_check_interval_sec: seconds().default(30.0),
});

/** An IPv4/IPv6 address or a DNS host name (labels of letters, digits and inner hyphens, at most 253 characters). */
function isHostOrIp(v: string): boolean {
  if (isIP(v) !== 0) return true;
  return v.length <= 253 && v.split('.').every((l) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l));
}

/** An IPv4/IPv6 address, or a CIDR block (`10.0.0.0/8`, `fd00::/8`). */
function cidr() {
  return z.string().refine((v) => {
    const [addr, bits, extra] = v.split('/');
    if (extra !== undefined || addr === undefined) return false;
    const fam = isIP(addr);
    if (fam === 0) return false;
    if (bits === undefined) return true;
    const n = Number(bits);
    return /^\d+$/.test(bits) && n >= 0 && n <= (fam === 4 ? 32 : 128);
  }, { error: 'must be an IP address or a CIDR block such as 10.0.0.0/8' });
}

const tlsSchema = z
  .strictObject({
    // false: plain TCP. true: the node port speaks TLS only.
    enabled: z.boolean().default(false),
    // PEM files; cert_file and key_file are required when enabled.
    cert_file: z.string().optional(),
    key_file: z.string().optional(),
    // the CA that signs node certificates; required when client_cert is not "off".
    ca_file: z.string().optional(),
    // "off": no client certificates. "request": verified if sent; "require": connections without a valid one
    // are refused. A verified certificate's subject CN is the only node_id the connection may use.
    client_cert: z.enum(['off', 'request', 'require']).default('off'),
  })
  .superRefine((t, ctx) => {
    if (!t.enabled) return;
    if (!t.cert_file) ctx.addIssue({ code: 'custom', path: ['cert_file'], message: 'is required when tls.enabled is true' });
    else if (!t.key_file) ctx.addIssue({ code: 'custom', path: ['key_file'], message: 'is required when tls.enabled is true' });
    else if (t.client_cert !== 'off' && !t.ca_file) ctx.addIssue({ code: 'custom', path: ['ca_file'], message: 'is required when client_cert is "request" or "require"' });
  });

const tcpServerSchema = z
  .strictObject({
    // false: tracker-host default; the shipped config.yaml turns it on.
    enabled: z.boolean().default(false),
    // "0.0.0.0": nodes connect from anywhere (tracker-host default).
    host: nonEmptyString().default('0.0.0.0'),
    // 30050: the port radar nodes push to (tracker-host default); 0 = ephemeral (tests).
    port: listenPort().default(30050),
    // "": shared secret nodes authenticate with; RADAR_INGEST_TOKEN (non-empty) overrides it. Empty is a token
    // too (nodes send "token": "", as with tracker-host); the engine warns that it protects nothing.
    token: z.string().default(''),
    // {}: per-node tokens (node_id -> token); a node without an entry uses `token`.
    tokens: z.record(z.string().regex(NODE_ID_PATTERN, `node ids are ${ID_SHAPE}`),
      nonEmptyString()).default({}),
    // true: unknown nodes get a tracker port automatically (tracker-host default).
    auto_provision: z.boolean().default(true),
    // 31000: first auto-provisioned port (tracker-host default).
    auto_provision_port_start: fixedPort().default(31000),
    // 31099: last auto-provisioned port, i.e. up to 100 nodes (tracker-host default).
    auto_provision_port_end: fixedPort().default(31099),
    // "off": nodes connect directly. Behind an L4 load balancer: "v1", "v2" or "auto" (either,
    // detected per connection) so the node's real address is used in logs, limits and the registry.
    proxy_protocol: z.enum(['off', 'v1', 'v2', 'auto']).default('off'),
    // loopback only: the balancers allowed to send a PROXY header (addresses or CIDRs). A header
    // from anywhere else, or a connection from here without one, is closed and counted.
    proxy_trusted: z.array(cidr()).default(['127.0.0.1/32', '::1/128']),
    // TLS on the node port (off by default: retina nodes speak plain TCP).
    tls: tlsSchema.prefault({}),
    // "delivered": a binary-protocol frame is acked once its tracker's input has taken it (a host crash
    // loses no acked frame). "ring": acked once it is in the node's in-memory ring (faster, lost on a crash).
    ack: z.enum(['delivered', 'ring']).default('delivered'),
  })
  .superRefine((t, ctx) => {
    if (t.auto_provision_port_start > t.auto_provision_port_end) {
      ctx.addIssue({
        code: 'custom',
        path: ['auto_provision_port_start'],
        message: `must be <= auto_provision_port_end (${t.auto_provision_port_end})`,
      });
    }
  });

const trackerGeolocatorSchema = z.strictObject({
  // false: a geolocator per tracker is opt-in (tracker-host default).
  enabled: z.boolean().default(false),
  // 0: tracker-host default ("not set"); a port is allocated from server.geolocator_tcp_port_base upward.
  tcp_port: listenPort().default(0),
  // absent: the geolocator derives its config from the node's radar config.
  geolocator_config_path: z.string().optional(),
});

export type TrackerMode = 'tcp' | 'http';

const trackerSchema = z
  .strictObject({
    // required: identifies the tracker (output files, logs, metrics); unique. The node-id alphabet,
    // since it names the track file ({name}_{date}.jsonl).
    name: z.string().regex(NODE_ID_PATTERN, {
      error: `must be ${ID_SHAPE} (it names the track file)`,
    }),
    // required: TCP port of this tracker's retina-tracker instance.
    tcp_port: fixedPort(),
    // absent: "http" when detection_url is given, else "tcp" (tracker-host rule).
    mode: z.enum(['tcp', 'http']).optional(),
    // absent: the tracker's name (the node id a TCP-pushing node announces).
    node_id: nonEmptyString().optional(),
    // absent: no HTTP polling; required when mode is "http".
    detection_url: nonEmptyString().optional(),
    // absent: retina-tracker's own default config.
    tracker_config: z.string().optional(),
    // absent: the node's radar config is not fetched over HTTP.
    config_url: z.string().optional(),
    // absent: the global api_forward applies.
    api_forward: apiForwardSchema.optional(),
    // {enabled: false, tcp_port: 0}: no geolocator unless configured.
    geolocator: trackerGeolocatorSchema.prefault({}),
    // true: the host runs this tracker as a subprocess. false: the tracker runs elsewhere, at
    // tcp_host:tcp_port; the host only feeds it (tracker-host's remote-tracker variant).
    spawn_tracker: z.boolean().default(true),
    // "127.0.0.1": where the host connects to feed this tracker (a remote tracker's address; a
    // spawned tracker is always reached on 127.0.0.1). An IP address or a DNS host name.
    tcp_host: z.string().refine(isHostOrIp, { error: 'must be an IP address or a DNS host name' }).default('127.0.0.1'),
  })
  .superRefine((t, ctx) => {
    if (t.mode === 'http' && t.detection_url === undefined) {
      ctx.addIssue({ code: 'custom', path: ['detection_url'], message: 'is required when mode is "http"' });
    }
    // Polled from boot: a bad URL is a config error now, not a tracker in probe_error later. "" = none, as in tracker-host.
    if (t.config_url && !/^https?:$/.test(URL.canParse(t.config_url) ? new URL(t.config_url).protocol : '')) {
      ctx.addIssue({ code: 'custom', path: ['config_url'], message: 'must be an http or https URL' });
    }
  })
  .transform((t) => {
    const mode: TrackerMode = t.mode ?? (t.detection_url !== undefined ? 'http' : 'tcp');
    return { ...t, mode, node_id: t.node_id ?? t.name };
  });

const trackersSchema = z.array(trackerSchema).superRefine((list, ctx) => {
  const names = new Map<string, number>();
  const nodes = new Map<string, number>();
  const ports = new Map<string, number>();
  // One tracker per name (output files), per node (its ring) and per port; the first problem of an entry is reported.
  list.forEach((t, i) => {
    const first = names.get(t.name);
    const n = nodes.get(t.node_id);
    // A remote tracker's port is on its own host: only the same host and port clash.
    const portKey = t.spawn_tracker ? String(t.tcp_port) : `${t.tcp_host}:${t.tcp_port}`;
    const p = ports.get(portKey);
    if (first !== undefined) {
      ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate tracker name "${t.name}" (also trackers[${first}].name)` });
    } else if (n !== undefined) {
      ctx.addIssue({ code: 'custom', path: [i, 'node_id'], message: `duplicate node_id "${t.node_id}" (also trackers[${n}])` });
    } else if (p !== undefined) {
      ctx.addIssue({ code: 'custom', path: [i, 'tcp_port'], message: `duplicate tcp_port ${t.tcp_port} (also trackers[${p}])` });
    }
    if (!names.has(t.name)) names.set(t.name, i);
    if (!nodes.has(t.node_id)) nodes.set(t.node_id, i);
    if (!ports.has(portKey)) ports.set(portKey, i);
  });
});

const httpSchema = z.strictObject({
  // absent: server.host (default "0.0.0.0"), so a tracker-host config keeps its listener.
  host: nonEmptyString().optional(),
  // absent: server.port (default 8080); 0 = ephemeral (tests).
  port: listenPort().optional(),
  // "": bearer token for the control API (agents list/get/delete/commands). Empty = the
  // control API answers 401 to everyone. RADAR_INGEST_API_TOKEN overrides it.
  api_token: z.string().default(''),
  // true: GET /api/v1/trackers*, GET /api/nodes and the status page's data need no token (operational
  // state, no secrets). false: they need `Authorization: Bearer <api_token>`, for a listener opened to a
  // network the operator does not trust. /metrics, /healthz and /readyz stay open either way.
  open_reads: z.boolean().default(true),
  // 65536: request bodies above this are refused with 413 before they are read in full.
  max_body_bytes: intIn(1024, 16 * ONE_MIB).default(64 * 1024),
  // 1048576: bodies of POST /api/node/{name}/tracks (NDJSON batches from nodes that run their own tracker)
  // above this get 413; 1 MiB is what tracker-host's server accepted.
  max_track_body_bytes: intIn(1024, 64 * ONE_MIB).default(ONE_MIB),
  // 1024: open HTTP connections (SSE streams included); beyond it new ones are closed at accept.
  max_connections: intMin(1).default(1024),
  // 64: open HTTP connections from one source address; beyond it new ones are closed at accept.
  max_connections_per_source: intMin(1).default(64),
  // 10000: the request headers must arrive within this (header-trickling sockets are closed).
  headers_timeout_ms: intIn(100, 600000).default(10000),
  // 30000: the whole request (headers and body) must arrive within this; SSE streams are not affected.
  request_timeout_ms: intIn(100, 3600000).default(30000),
});

const agentsSchema = z.strictObject({
  // 30000: the heartbeat interval told to agents at registration.
  heartbeat_interval_ms: intMin(1).default(30000),
  // 90000: LIVE -> STALE after this long without a heartbeat (three missed beats).
  stale_after_ms: intMin(1).default(90000),
  // 300000: STALE -> DEAD this long after becoming STALE; DEAD agents are kept until deleted.
  dead_after_ms: intMin(1).default(300000),
  // 60000: a command not acknowledged this long after creation is EXPIRED.
  command_ttl_ms: intMin(1).default(60000),
  // 15000: SSE keepalive comment interval (proxies drop idle streams).
  keepalive_ms: intMin(10).default(15000),
  // 3600000: lifetime of an agent's access token; agents refresh it by registering again.
  access_token_ttl_ms: intMin(1000).default(3600000),
  // "./radar-ingest-ed25519.pem": the command-signing key, generated on first start if absent.
  key_file: nonEmptyString().default('./radar-ingest-ed25519.pem'),
  // 100: commands remembered per agent for GET /{id}/commands (oldest forgotten first).
  max_commands_kept: intIn(1, 100000).default(100),
  // 300000: the longest host-side deep trace a command may ask for.
  deep_trace_max_ms: intIn(1000, 3600000).default(300000),
  // 10000: registered agents kept; a registration beyond it is refused (DEAD agents are not evicted).
  max_agents: intMin(1).default(10000),
});

const limitsSchema = z.strictObject({
  // 10000: far above a real network's node count, low enough to bound memory under a connection flood.
  max_connections: intMin(1).default(10000),
  // 10000: a node must authenticate within 10 s, so idle sockets cannot pile up unauthenticated.
  first_message_timeout_ms: intMin(1).default(10000),
  // 120000: nodes send several frames a second; 2 min of silence means a dead peer. 0 disables.
  idle_timeout_ms: intMin(0).default(120000),
  // 1 MiB: the line protocol's maximum line length, also used as the binary payload limit.
  max_frame_bytes: intIn(64, 64 * ONE_MIB).default(ONE_MIB),
  // 1 MiB: bytes per connection handed to a shard but not yet processed before the socket is paused.
  max_inflight_bytes: intIn(64 * 1024, 256 * ONE_MIB).default(ONE_MIB),
  // 30 connections of one node within reconnect_window_ms (flapping) ban it for reconnect_ban_ms.
  // A healthy node connects once and stays; 0 disables the guard.
  reconnect_max: intMin(0).default(30),
  // 60000: the flapping window.
  reconnect_window_ms: intMin(1).default(60000),
  // 60000: how long a flapping node is refused.
  reconnect_ban_ms: intMin(0).default(60000),
  // 262144: bytes of replies (acks, errors) queued to a connection that does not read; beyond it the
  // connection is closed (output_overflow). A healthy node reads its acks at once.
  max_output_bytes: intIn(4096, 64 * ONE_MIB).default(256 * 1024),
  // 2000: detections in one frame; real nodes send tens. Above it the frame is refused (too_many_detections).
  max_detections_per_frame: intIn(1, 1000000).default(2000),
  // 86400000: a frame timestamped more than this ahead of the host clock is refused (clock_skew), so one
  // bad timestamp cannot put every later frame out of order. 0 disables the check.
  max_clock_skew_ms: intMin(0).default(86400000),
  // 4096: distinct nodes with a ring; a new node beyond it is refused (max_nodes).
  max_nodes: intMin(1).default(4096),
  // 900000: the ring of a node that has been disconnected this long (and whose frames are all consumed
  // or counted) is released. 0 keeps rings until restart.
  node_release_ms: intMin(0).default(900000),
  // 1000000: a binary frame's seq more than this ahead of the node's last accepted seq is refused
  // (RADAR_ERR_SEQ_JUMP), so one huge seq cannot make every later frame a duplicate.
  max_seq_jump: intMin(1).default(1000000),
});

const ringSchema = z.strictObject({
  // 4 MiB: holds two maximal (1 MiB) frames with ample headroom; power of two for cheap index masking.
  size_bytes: z
    .int({ error: intError(ringSizeMsg) })
    .min(RING_MIN, { error: ringSizeMsg })
    .max(RING_MAX, { error: ringSizeMsg })
    .refine((n) => Number.isInteger(Math.log2(n)), { error: ringSizeMsg })
    .default(4 * ONE_MIB),
  // "block": a full ring applies backpressure instead of losing detections.
  overflow: z.enum(['block', 'drop-oldest']).default('block'),
  // A ring a backlog made resident goes back to fresh memory after being empty this long (0: never).
  renew_after_ms: intMin(0).default(30000),
});

const trackerSchemaSection = z.strictObject({
  // "reference": the built-in tracker (node, no Python needed). "retina": retina-tracker
  // (`python3 -m retina_tracker.track_detections --tcp --tcp-host 127.0.0.1 --tcp-port {port} -s - -c {config}`
  // run in retina_tracker_path). Or an argv list with the placeholders {port}, {node_id}, {config}.
  // Absent: "retina" when the file sets retina_tracker_path (a tracker-host config meant retina), else
  // "reference"; resolved in the top-level transform.
  command: z.union([z.enum(['reference', 'retina']), z.array(nonEmptyString()).min(1, { error: 'must list at least the program' })], {
    error: 'must be "reference", "retina" or a list of strings (program first)',
  }).optional(),
  // "tcp": the host connects to the tracker's {port} (retina-tracker's input); "stdin": writes to its stdin.
  input: z.enum(['tcp', 'stdin']).default('tcp'),
  // absent: the engine's working directory ("retina": retina_tracker_path).
  cwd: z.string().optional(),
  // "python3": the interpreter that runs retina-tracker (command "retina"); a virtualenv's python for sites
  // that install retina there.
  python: nonEmptyString().default('python3'),
  // {}: extra environment variables for the tracker, merged over the engine's.
  env: z.record(z.string(), z.string()).default({}),
  // 5000: SIGTERM, then SIGKILL after this long.
  stop_grace_ms: intMin(0).default(5000),
  // 1000: first restart delay after a crash; doubles per crash in a row.
  restart_backoff_ms: intMin(0).default(1000),
  // 60000: the longest restart delay.
  restart_backoff_max_ms: intMin(0).default(60000),
  // 5 restarts within flap_window_ms park the tracker in "failed" for flap_cooldown_ms.
  flap_max_restarts: intMin(1).default(5),
  // 300000: the flapping window (5 min).
  flap_window_ms: intMin(1).default(300000),
  // 600000: how long a flapping tracker stays parked (10 min).
  flap_cooldown_ms: intMin(0).default(600000),
  // 1000: the reconcile supervisor's period (it also runs at once on node connect/disconnect and tracker exit).
  reconcile_interval_ms: intMin(10).default(1000),
  // 20: stderr lines logged per tracker per 10 s; the rest are counted (the pipe is always read).
  stderr_lines_per_10s: intMin(0).default(20),
  // 120000: a tracker whose input stays full this long (alive, not reading) is restarted
  // like a crashed one; its queued frames count as tracker_lost. 0: never.
  stall_timeout_ms: intMin(0).default(120000),
  // 1024: memory ceiling of each tracker in MiB: resident memory (VmRSS of the tracker and its
  // descendants, sampled each second from /proc); past it the tracker is SIGKILLed and restarted
  // like a crash. The built-in tracker also gets it as its V8 heap limit. 0: none.
  max_memory_mb: intMin(0).default(1024),
});

const geolocatorSectionSchema = z.strictObject({
  // "retina": retina-geolocator (`{python} -m scripts.stream_solutions --tcp --tcp-port {port} --radar-config
  // {radar_config} [--config {config}]` run in retina_geolocator_path). Or an argv list with the placeholders
  // {port}, {node_id}, {radar_config}, {config}.
  command: z.union([z.literal('retina'), z.array(nonEmptyString()).min(1, { error: 'must list at least the program' })], {
    error: 'must be "retina" or a list of strings (program first)',
  }).default('retina'),
  // "python3": the interpreter that runs retina-geolocator (command "retina").
  python: nonEmptyString().default('python3'),
  // {}: extra environment variables for geolocators, merged over the engine's.
  env: z.record(z.string(), z.string()).default({}),
});

/** A host id: what other hosts see as a lease holder; letters, digits, '.', '_', '-'. */
const HOST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** The default host id: the host name and the process id, unique per running process. */
export function defaultHostId(): string {
  const name = os.hostname().replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 40) || 'host';
  return `${name}-${process.pid}`;
}

const clusterSchema = z.strictObject({
  // required: the Redis (7.x, or Valkey) the hosts coordinate through: redis://[user:pass@]host:port[/db],
  // or rediss:// for TLS. Its password is never logged.
  redis_url: z.string().refine((u) => /^rediss?:\/\/[^\s]+$/.test(u), { error: 'must be a redis:// or rediss:// URL' }),
  // host name + "-" + pid: this process's name in the fleet. Unique per running process, so a restarted
  // process never mistakes the leases of its previous run for its own (it waits for them to expire).
  host_id: z.string().refine((s) => HOST_ID.test(s), { error: 'must be 1-64 letters, digits, ".", "_" or "-"' }).optional(),
  // 10000: node lease length. Renewed every third of it; a host that cannot renew for two thirds of it
  // stops feeding the node; a dead host's nodes are taken over after it.
  lease_ms: intIn(300, 600000).default(10000),
  // "accept": while Redis is unreachable, new nodes are served unfenced; "refuse": they are refused.
  on_redis_down: z.enum(['accept', 'refuse']).default('accept'),
  // "radar-ingest:": prefix of every Redis key and channel, so several fleets can share one Redis.
  key_prefix: z.string().refine((s) => /^[A-Za-z0-9._:-]{0,64}$/.test(s), { error: 'must be at most 64 letters, digits, ".", "_", ":" or "-"' })
    .default('radar-ingest:'),
  // absent: http.host:http.port (with this machine's host name for 0.0.0.0). The address other hosts and
  // GET /api/v1/cluster show for this host's HTTP API.
  address: z.string().min(1).max(256).optional(),
  // 50: on SIGTERM, nodes handed over to other hosts per second (gradually, so the fleet is not stormed).
  drain_nodes_per_s: intIn(1, 100000).default(50),
}).transform((c) => ({ ...c, host_id: c.host_id ?? defaultHostId() }));

export type ClusterConfig = z.output<typeof clusterSchema>;

const shutdownSchema = z.strictObject({
  // 30000: SIGTERM/SIGINT: the whole shutdown (drain rings to trackers, stop them) ends within this.
  deadline_ms: intMin(100).default(30000),
  // 0: stop accepting at once. Behind a load balancer: /readyz turns 503 at the signal and new
  // connections are still accepted for this long, so the balancer sees it and stops sending.
  drain_grace_ms: intMin(0).default(0),
});

const logSchema = z.strictObject({
  // "info": connection lifecycle and errors without per-frame noise.
  level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  // "auto": coloured lines for a person when stdout is a terminal, JSON lines otherwise (journald,
  // files, collectors). "json" / "pretty" force one.
  format: z.enum(['auto', 'json', 'pretty']).default('auto'),
});

// ---------------------------------------------------------------------------
// The schema
// ---------------------------------------------------------------------------

const baseSchema = z
  .strictObject({
    // ---- legacy tracker-host keys (same defaults as tracker-host) ----
    // "./output": where per-tracker output files are written (tracker-host default).
    output_dir: nonEmptyString().default('./output'),
    // "local": track files are named by the host's local date, as tracker-host names them; "utc": by the UTC date.
    output_date: z.enum(['local', 'utc']).default('local'),
    // 0.5: HTTP detection polling interval for mode "http" trackers (tracker-host default).
    poll_interval_sec: seconds().default(0.5),
    // 30.0: how often a status summary is logged (tracker-host default).
    status_interval_sec: seconds().default(30.0),
    // 1.0: wait after spawning a tracker before connecting to it (tracker-host default).
    startup_delay_sec: seconds().default(1.0),
    // 2.0: wait after spawning a geolocator before connecting to it (tracker-host default).
    geolocator_startup_delay_sec: seconds().default(2.0),
    // 10: attempts to connect to a spawned tracker's TCP port (tracker-host default).
    tcp_connect_retries: intMin(0).default(10),
    // 0.5: delay between those attempts (tracker-host default).
    tcp_retry_delay_sec: seconds().default(0.5),
    // 60.0: how often node radar configs are re-fetched (tracker-host default).
    config_poll_interval_sec: seconds().default(60.0),
    // "../retina-tracker": retina-tracker checkout, relative to the working directory (tracker-host default).
    // Its default is applied in the transform below: whether the file set it decides tracker.command.
    retina_tracker_path: z.string().optional(),
    // "../retina-geolocator": retina-geolocator checkout (tracker-host default).
    retina_geolocator_path: z.string().default('../retina-geolocator'),
    // legacy HTTP server block; its host/port are the defaults for `http`.
    server: serverSchema.prefault({}),
    // retry/backoff for HTTP sources (tracker-host defaults).
    retry: retrySchema.prefault({}),
    // global track forwarding, disabled by default (tracker-host default).
    api_forward: apiForwardSchema.prefault({}),
    // TCP push server, disabled by default (tracker-host default).
    tcp_server: tcpServerSchema.prefault({}),
    // []: explicitly configured trackers; auto-provisioned nodes need no entry.
    trackers: trackersSchema.default([]),

    // ---- radar-ingest keys ----
    // "auto": slow connections are decoded on the main thread, fast ones on one of
    // defaultShards() workers (ingress/placement.ts); 0 pins all to the main thread, N to N workers.
    shards: z
      .union([intIn(0, MAX_SHARDS), z.literal('auto')], {
        error: `must be "auto" or an integer between 0 and ${MAX_SHARDS}`,
      })
      .default('auto'),
    // "trackers": each node's frames go to its tracker subprocess. "discard": counted and
    // dropped (benchmarks, or deployments whose trackers run elsewhere).
    sink: z.enum(['trackers', 'discard']).default('trackers'),
    // HTTP listener for /metrics etc.; defaults to server.host/server.port.
    http: httpSchema.prefault({}),
    // per-connection and global resource limits.
    limits: limitsSchema.prefault({}),
    // per-node ring buffers: shards write frames, the sink consumes them.
    ring: ringSchema.prefault({}),
    // logging.
    log: logSchema.prefault({}),
    // the tracker subprocess run for every node (sink "trackers").
    tracker: trackerSchemaSection.prefault({}),
    // the geolocator subprocess paired with trackers that enable one (trackers[].geolocator).
    geolocator: geolocatorSectionSchema.prefault({}),
    // graceful shutdown.
    shutdown: shutdownSchema.prefault({}),
    // agent registry and command push (SSE).
    agents: agentsSchema.prefault({}),
    // absent: a single host, no Redis. Present: several hosts coordinated through Redis.
    cluster: clusterSchema.optional(),
  })
  .superRefine((c, ctx) => {
    const remote = c.trackers.findIndex((t) => !t.spawn_tracker);
    if (remote >= 0 && c.tracker.input !== 'tcp') {
      ctx.addIssue({
        code: 'custom', path: ['trackers', remote, 'spawn_tracker'],
        message: `false (a remote tracker, fed over TCP at tcp_host:tcp_port) needs tracker.input "tcp", not "${c.tracker.input}"`,
      });
    }
    if (c.shutdown.drain_grace_ms >= c.shutdown.deadline_ms) {
      ctx.addIssue({ code: 'custom', path: ['shutdown', 'drain_grace_ms'], message: `must be < shutdown.deadline_ms (${c.shutdown.deadline_ms})` });
    }
    const needed = 2 * c.limits.max_frame_bytes + 64;
    if (c.ring.size_bytes < needed) {
      ctx.addIssue({
        code: 'custom',
        path: ['ring', 'size_bytes'],
        message:
          `must be >= 2 * limits.max_frame_bytes + 64 (${needed}) ` +
          `so that a maximal frame (${c.limits.max_frame_bytes} bytes) always fits`,
      });
    }
  })
  .transform((c) => ({
    ...c,
    http: { ...c.http, host: c.http.host ?? c.server.host, port: c.http.port ?? c.server.port },
    retina_tracker_path: c.retina_tracker_path ?? '../retina-tracker',
    tracker: { ...c.tracker, command: c.tracker.command ?? (c.retina_tracker_path !== undefined ? 'retina' as const : 'reference' as const) },
  }));

/** Null-valued keys count as absent (recursively); list items are left alone. */
function dropNullKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map((item) => (item === null ? item : dropNullKeys(item)));
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(v)) {
      if (val !== null) out[k] = dropNullKeys(val);
    }
    return out;
  }
  return v;
}

/** The single source of truth for the configuration. Parse with parseConfig(). */
export const configSchema = z.preprocess(dropNullKeys, baseSchema);

export type Config = z.output<typeof configSchema>;
export type TrackerConfig = Config['trackers'][number];
export type ApiForwardConfig = Config['api_forward'];

/**
 * Every setting at its default (the schema applied to an empty file, no environment).
 * Components that have a default of their own read it here, so it is written once.
 */
export const CONFIG_DEFAULTS: Config = configSchema.parse({});

// ---------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

const expectedNames: Record<string, string> = {
  object: 'mapping',
  record: 'mapping',
  array: 'list',
  int: 'integer',
};

/**
 * Per-parse zod error map: phrases the generic issues. Schema-level messages
 * (ranges, cross-field rules) take precedence over it.
 */
function issueMessage(iss: z.core.$ZodRawIssue): string | undefined {
  switch (iss.code) {
    case 'invalid_type':
      if (iss.input === undefined) return 'is required';
      return `expected ${expectedNames[iss.expected] ?? iss.expected}, got ${typeName(iss.input)}`;
    case 'invalid_value':
      return `must be one of ${iss.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'unrecognized_keys':
      return 'unknown key';
    default:
      return undefined;
  }
}

/** An unknown key, with the closest known key of the same mapping when one is close. */
export class UnknownKeyError extends ConfigError {
  constructor(path: string, readonly key: string, readonly suggestion: string | undefined) {
    super(path, suggestion === undefined ? 'unknown key' : `unknown key (did you mean "${suggestion}"?)`);
  }
}

/** The schema under its wrappers (defaults, optionals, pipes of a transform or a preprocess). */
function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  let s = schema;
  for (let i = 0; i < 16; i++) {
    const def = s._zod.def as unknown as { type: string; innerType?: z.core.$ZodType; in?: z.core.$ZodType; out?: z.core.$ZodType };
    if (def.innerType) s = def.innerType;
    else if (def.type === 'pipe' && def.in && def.out) s = def.in._zod.def.type === 'transform' ? def.out : def.in;
    else break;
  }
  return s;
}

/** The keys the schema knows for the mapping at `path` (empty where it is not a fixed mapping). */
function knownKeysAt(path: readonly PropertyKey[]): string[] {
  let s: z.core.$ZodType = configSchema;
  for (const seg of path) {
    const def = unwrap(s)._zod.def as unknown as { type: string; shape?: Record<string, z.core.$ZodType>; element?: z.core.$ZodType };
    const next = typeof seg === 'number' ? def.element : def.shape?.[String(seg)];
    if (!next) return [];
    s = next;
  }
  const def = unwrap(s)._zod.def as unknown as { type: string; shape?: Record<string, z.core.$ZodType> };
  return def.type === 'object' && def.shape ? Object.keys(def.shape) : [];
}

function toConfigErrors(issue: z.core.$ZodIssue): ConfigError[] {
  if (issue.code === 'unrecognized_keys') {
    // One issue lists every unknown key of a mapping.
    const known = knownKeysAt(issue.path);
    return issue.keys.map((k) => new UnknownKeyError(formatPath([...issue.path, k]), k, didYouMean(k, known)));
  }
  return [new ConfigError(formatPath(issue.path), issue.message)];
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/** The config, or every problem with it (schema order). */
function validate(raw: unknown, env: NodeJS.ProcessEnv): { config: Config } | { errors: ConfigError[] } {
  const doc = raw ?? {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    return { errors: [new ConfigError('', `config must be a mapping at the top level, got ${typeName(doc)}`)] };
  }
  const result = configSchema.safeParse(doc, { error: issueMessage });
  if (!result.success) {
    const errors = result.error.issues.flatMap(toConfigErrors);
    return { errors: errors.length > 0 ? errors : [new ConfigError('', 'invalid config')] };
  }
  let config = result.data;
  const token = env.RADAR_INGEST_TOKEN;
  if (token !== undefined && token !== '') {
    config = { ...config, tcp_server: { ...config.tcp_server, token } };
  }
  const apiToken = env.RADAR_INGEST_API_TOKEN;
  if (apiToken !== undefined && apiToken !== '') {
    config = { ...config, http: { ...config.http, api_token: apiToken } };
  }
  return { config };
}

/**
 * Validates a parsed config document and applies defaults. An empty document
 * (undefined/null) yields all defaults. A non-empty RADAR_INGEST_TOKEN in `env`
 * overrides tcp_server.token. Throws ConfigError describing the first problem.
 */
export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv = process.env): Config {
  const r = validate(raw, env);
  if ('errors' in r) throw r.errors[0]!;
  return r.config;
}

/** Every problem of a parsed config document (parseConfig throws the first); empty when it is valid. */
export function configErrors(raw: unknown, env: NodeJS.ProcessEnv = process.env): ConfigError[] {
  const r = validate(raw, env);
  return 'errors' in r ? r.errors : [];
}

/** A config file's document, or why it cannot be read: not found, unreadable, or every YAML error. */
function readConfigDocument(path: string): { doc: unknown } | { errors: ConfigError[] } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') return { errors: [new ConfigError('', `config file not found: ${path}`)] };
    return { errors: [new ConfigError('', `cannot read config file ${path}: ${e.message}`)] };
  }
  // YAML 1.2 core schema plus `<<` merge keys (which PyYAML-era configs may use).
  const doc = parseDocument(text, { merge: true, prettyErrors: true });
  // Warnings (e.g. an unresolved !tag) silently change values, so they are errors here.
  const problems = [...doc.errors, ...doc.warnings];
  if (problems.length > 0) {
    return {
      errors: problems.map((problem) => {
        const pos = problem.linePos?.[0];
        const where = pos ? `${path}:${pos.line}:${pos.col}` : path;
        const reason = (problem.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
        return new ConfigError('', `${where}: invalid YAML: ${reason || problem.code}`);
      }),
    };
  }
  return { doc: doc.toJS() };
}

/**
 * Reads and parses a YAML config file, then validates it with parseConfig().
 * Missing/unreadable files and YAML syntax errors are ConfigErrors with path ''.
 */
export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): Config {
  const r = readConfigDocument(path);
  if ('errors' in r) throw r.errors[0]!;
  return parseConfig(r.doc, env);
}

/** A config file checked whole: the config when it is valid, else every problem with it. */
export function checkConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): { config: Config } | { errors: ConfigError[] } {
  const r = readConfigDocument(path);
  return 'errors' in r ? r : validate(r.doc, env);
}
