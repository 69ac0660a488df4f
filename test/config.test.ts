import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig, loadConfigFile, defaultShards, type Config } from '../src/config.js';
import { ConfigError } from '../src/protocol/errors.js';

/** An environment without RADAR_INGEST_TOKEN, so the host's env cannot leak in. */
const NO_ENV: NodeJS.ProcessEnv = {};

function parse(raw: unknown): Config {
  return parseConfig(raw, NO_ENV);
}

/** Asserts that parsing `raw` throws a ConfigError at `path` whose message matches. */
function assertConfigError(raw: unknown, path: string, message: string | RegExp): void {
  assert.throws(
    () => parse(raw),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
      assert.equal(err.code, 'RADAR_ERR_CONFIG');
      assert.equal(err.path, path);
      if (typeof message === 'string') assert.equal(err.message, `${path}: ${message}`);
      else assert.match(err.message, message);
      return true;
    },
  );
}

function withTempFile(name: string, text: string, fn: (path: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'radar-config-'));
  try {
    const file = join(dir, name);
    writeFileSync(file, text);
    fn(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('empty and null documents give all defaults', () => {
  for (const raw of [undefined, null, {}]) {
    const c = parse(raw);
    assert.equal(c.output_dir, './output');
    assert.equal(c.poll_interval_sec, 0.5);
    assert.equal(c.status_interval_sec, 30);
    assert.equal(c.startup_delay_sec, 1);
    assert.equal(c.geolocator_startup_delay_sec, 2);
    assert.equal(c.tcp_connect_retries, 10);
    assert.equal(c.tcp_retry_delay_sec, 0.5);
    assert.equal(c.config_poll_interval_sec, 60);
    assert.equal(c.retina_tracker_path, '../retina-tracker');
    assert.equal(c.retina_geolocator_path, '../retina-geolocator');
    assert.deepEqual(c.server, { host: '0.0.0.0', port: 8080, geolocator_enabled: false, geolocator_tcp_port_base: 31000 });
    assert.deepEqual(c.retry, { max_attempts: 5, backoff_base_sec: 2, extended_outage_sec: 60, health_check_interval_sec: 30 });
    assert.deepEqual(c.api_forward, { enabled: false, url: '', headers: {}, batch_max_events: 1, batch_max_ms: 100 });
    assert.equal(c.output_date, 'local');
    assert.deepEqual(c.geolocator, { command: 'retina', python: 'python3', env: {} });
    assert.equal(c.cluster, undefined, 'no cluster section: a single host, no Redis');
    assert.deepEqual(c.tcp_server, {
      enabled: false,
      host: '0.0.0.0',
      port: 30050,
      token: '',
      tokens: {},
      auto_provision: true,
      auto_provision_port_start: 31000,
      auto_provision_port_end: 31099,
      proxy_protocol: 'off',
      proxy_trusted: ['127.0.0.1/32', '::1/128'],
      tls: { enabled: false, client_cert: 'off' },
      ack: 'delivered',
    });
    assert.deepEqual(c.trackers, []);
    assert.equal(c.shards, 'auto');
    assert.equal(c.sink, 'trackers');
    assert.deepEqual(c.tracker, {
      command: 'reference', input: 'tcp', env: {}, python: 'python3', stop_grace_ms: 5000, restart_backoff_ms: 1000, restart_backoff_max_ms: 60000,
      flap_max_restarts: 5, flap_window_ms: 300000, flap_cooldown_ms: 600000, reconcile_interval_ms: 1000, stderr_lines_per_10s: 20,
      stall_timeout_ms: 120000, max_memory_mb: 1024,
    });
    assert.deepEqual(c.shutdown, { deadline_ms: 30000, drain_grace_ms: 0 });
    assert.deepEqual(c.http, {
      host: '0.0.0.0', port: 8080, api_token: '', open_reads: true, max_body_bytes: 65536, max_track_body_bytes: 1048576,
      max_connections: 1024, max_connections_per_source: 64, headers_timeout_ms: 10000, request_timeout_ms: 30000,
    });
    assert.deepEqual(c.limits, {
      max_connections: 10000,
      first_message_timeout_ms: 10000,
      idle_timeout_ms: 120000,
      max_frame_bytes: 1048576,
      max_inflight_bytes: 1048576,
      reconnect_max: 30,
      reconnect_window_ms: 60000,
      reconnect_ban_ms: 60000,
      max_output_bytes: 262144,
      max_detections_per_frame: 2000,
      max_clock_skew_ms: 86400000,
      max_nodes: 4096,
      node_release_ms: 900000,
      max_seq_jump: 1000000,
    });
    assert.deepEqual(c.ring, { size_bytes: 4194304, overflow: 'block', renew_after_ms: 30000 });
    assert.deepEqual(c.log, { level: 'info', format: 'auto' });
  }
});

const LEGACY_TRACKER_HOST_YAML = `# tracker-host configuration (legacy format)
output_dir: "/var/lib/tracker-host/output"
poll_interval_sec: 1
status_interval_sec: 15.0
startup_delay_sec: 2.5
tcp_connect_retries: 3
retina_tracker_path: "/opt/retina-tracker"
retina_geolocator_path: "/opt/retina-geolocator"

server:
  host: "127.0.0.1"
  port: 9090
  geolocator_enabled: true
  geolocator_tcp_port_base: 32000

retry:
  max_attempts: 7
  backoff_base_sec: 3
  extended_outage_sec: 120
  health_check_interval_sec: 45

api_forward:
  enabled: true
  url: "https://api.example.net/tracks"
  headers:
    Authorization: "Bearer abc123"
    X-Network: "north"

tcp_server:
  enabled: true
  host: "0.0.0.0"
  port: 30050
  token: "shared-secret"
  auto_provision: true
  auto_provision_port_start: 31000
  auto_provision_port_end: 31049

trackers:
  - name: "radar-a"
    mode: "http"
    detection_url: "https://radar-a.example.net/api/detection"
    config_url: "https://radar-a.example.net/api/config"
    tcp_port: 30012
    tracker_config: "./radar-a-tracker.yaml"
    geolocator:
      enabled: true
      tcp_port: 31012
      geolocator_config_path: "./radar-a-geo.yaml"
    api_forward:
      enabled: true
      url: "https://other.example.net/tracks"

  - name: "radar-b"
    mode: "tcp"
    node_id: "ret0a1b2c3d"
    tcp_port: 30013
    geolocator:
      enabled: true
      tcp_port: 31013
`;

test('a full tracker-host config loads unchanged and its values come through', () => {
  withTempFile('tracker-host.yaml', LEGACY_TRACKER_HOST_YAML, (file) => {
    const c = loadConfigFile(file, NO_ENV);
    assert.equal(c.output_dir, '/var/lib/tracker-host/output');
    assert.equal(c.poll_interval_sec, 1);
    assert.equal(c.status_interval_sec, 15);
    assert.equal(c.startup_delay_sec, 2.5);
    assert.equal(c.tcp_connect_retries, 3);
    assert.equal(c.tcp_retry_delay_sec, 0.5); // not in the file: default
    assert.equal(c.retina_tracker_path, '/opt/retina-tracker');
    assert.equal(c.retina_geolocator_path, '/opt/retina-geolocator');
    assert.deepEqual(c.server, { host: '127.0.0.1', port: 9090, geolocator_enabled: true, geolocator_tcp_port_base: 32000 });
    assert.deepEqual(c.retry, { max_attempts: 7, backoff_base_sec: 3, extended_outage_sec: 120, health_check_interval_sec: 45 });
    assert.deepEqual(c.api_forward, {
      enabled: true,
      url: 'https://api.example.net/tracks',
      headers: { Authorization: 'Bearer abc123', 'X-Network': 'north' },
      batch_max_events: 1,
      batch_max_ms: 100,
    });
    assert.equal(c.tcp_server.enabled, true);
    assert.equal(c.tcp_server.token, 'shared-secret');
    assert.equal(c.tcp_server.auto_provision_port_end, 31049);
    // The legacy server block is the default for the new http listener.
    assert.deepEqual({ host: c.http.host, port: c.http.port }, { host: '127.0.0.1', port: 9090 });

    assert.equal(c.trackers.length, 2);
    const [a, b] = c.trackers;
    assert.ok(a && b);
    assert.equal(a.name, 'radar-a');
    assert.equal(a.mode, 'http');
    assert.equal(a.node_id, 'radar-a');
    assert.equal(a.detection_url, 'https://radar-a.example.net/api/detection');
    assert.equal(a.config_url, 'https://radar-a.example.net/api/config');
    assert.equal(a.tcp_port, 30012);
    assert.equal(a.tracker_config, './radar-a-tracker.yaml');
    assert.deepEqual(a.geolocator, { enabled: true, tcp_port: 31012, geolocator_config_path: './radar-a-geo.yaml' });
    assert.deepEqual(a.api_forward, { enabled: true, url: 'https://other.example.net/tracks', headers: {}, batch_max_events: 1, batch_max_ms: 100 });
    assert.equal(b.name, 'radar-b');
    assert.equal(b.mode, 'tcp');
    assert.equal(b.node_id, 'ret0a1b2c3d');
    assert.equal(b.detection_url, undefined);
    assert.equal(b.api_forward, undefined);
    assert.deepEqual(b.geolocator, { enabled: true, tcp_port: 31013 });
  });
});

test('tcp_server.tokens maps node ids to tokens; a bad node id key names its path', () => {
  assert.deepEqual(parseConfig({ tcp_server: { tokens: { 'node-1': 'a' } } }, {}).tcp_server.tokens, { 'node-1': 'a' });
  assert.deepEqual(parseConfig({}, {}).tcp_server.tokens, {});
  assert.throws(() => parseConfig({ tcp_server: { tokens: { 'bad id/..': 'a' } } }, {}), /tcp_server\.tokens/);
  assert.throws(() => parseConfig({ tcp_server: { tokens: { 'node-1': '' } } }, {}), /tcp_server\.tokens/);
});

test('RADAR_INGEST_API_TOKEN overrides http.api_token', () => {
  const c = parseConfig({ http: { api_token: 'from-file' } }, { RADAR_INGEST_API_TOKEN: 'from-env' });
  assert.equal(c.http.api_token, 'from-env');
  assert.equal(parseConfig({ http: { api_token: 'from-file' } }, {}).http.api_token, 'from-file');
});

test('agents intervals have their documented defaults and reject nonsense', () => {
  const a = parseConfig({}, {}).agents;
  assert.equal(a.heartbeat_interval_ms, 30000);
  assert.equal(a.stale_after_ms, 90000);
  assert.equal(a.dead_after_ms, 300000);
  assert.equal(a.command_ttl_ms, 60000);
  assert.equal(a.keepalive_ms, 15000);
  assert.throws(() => parseConfig({ agents: { stale_after_ms: 0 } }, {}), /agents\.stale_after_ms/);
});

test('explicit http wins over the legacy server block', () => {
  const c = parse({ server: { host: '127.0.0.1', port: 9090 }, http: { port: 9100 } });
  assert.deepEqual({ host: c.http.host, port: c.http.port }, { host: '127.0.0.1', port: 9100 });
  const d = parse({ server: { port: 9090 }, http: { host: '::1', port: 0 } }).http;
  assert.deepEqual({ host: d.host, port: d.port }, { host: '::1', port: 0 });
});

test('tracker mode is inferred from detection_url and node_id defaults to name', () => {
  const c = parse({
    trackers: [
      { name: 'polled', tcp_port: 30001, detection_url: 'http://radar/api/detection' },
      { name: 'pushed', tcp_port: 30002 },
      { name: 'explicit', tcp_port: 30003, mode: 'tcp', detection_url: 'http://radar/api/detection' },
    ],
  });
  assert.deepEqual(
    c.trackers.map((t) => [t.name, t.mode, t.node_id]),
    [
      ['polled', 'http', 'polled'],
      ['pushed', 'tcp', 'pushed'],
      ['explicit', 'tcp', 'explicit'],
    ],
  );
  assert.deepEqual(c.trackers[1]?.geolocator, { enabled: false, tcp_port: 0 });
});

test('unknown top-level key is rejected', () => {
  assertConfigError({ output_dir: './out', shardz: 4 }, 'shardz', 'unknown key (did you mean "shards"?)');
});

test('unknown nested key is rejected with its dotted path', () => {
  assertConfigError({ tcp_server: { port: 30050, bogus: true } }, 'tcp_server.bogus', 'unknown key');
});

test('wrong type names the expected and actual types', () => {
  assertConfigError({ tcp_server: { port: 'abc' } }, 'tcp_server.port', 'expected integer, got string');
  assertConfigError({ tcp_server: { enabled: 'yes' } }, 'tcp_server.enabled', 'expected boolean, got string');
  assertConfigError({ retry: [] }, 'retry', 'expected mapping, got list');
});

test('port out of range is rejected', () => {
  assertConfigError({ tcp_server: { port: 65536 } }, 'tcp_server.port', 'must be an integer between 0 and 65535');
  assertConfigError({ tcp_server: { port: -1 } }, 'tcp_server.port', 'must be an integer between 0 and 65535');
  assertConfigError({ tcp_server: { port: 1.5 } }, 'tcp_server.port', 'must be an integer between 0 and 65535');
  // 0 (ephemeral) is fine for a listener
  assert.equal(parse({ tcp_server: { port: 0 } }).tcp_server.port, 0);
});

test('auto-provision port start after end is rejected', () => {
  assertConfigError(
    { tcp_server: { auto_provision_port_start: 31100 } },
    'tcp_server.auto_provision_port_start',
    'must be <= auto_provision_port_end (31099)',
  );
});

test('mode http without detection_url is rejected', () => {
  assertConfigError(
    { trackers: [{ name: 'r1', tcp_port: 30001, mode: 'http' }] },
    'trackers[0].detection_url',
    'is required when mode is "http"',
  );
});

test('duplicate tracker names are rejected', () => {
  assertConfigError(
    {
      trackers: [
        { name: 'r1', tcp_port: 30001 },
        { name: 'r2', tcp_port: 30002 },
        { name: 'r1', tcp_port: 30003 },
      ],
    },
    'trackers[2].name',
    'duplicate tracker name "r1" (also trackers[0].name)',
  );
});

test('errors inside a list carry the item index', () => {
  assertConfigError(
    { trackers: [{ name: 'r1', tcp_port: 30001 }, { name: 'r2', tcp_port: 70000 }] },
    'trackers[1].tcp_port',
    'must be an integer between 1 and 65535',
  );
  assertConfigError({ trackers: [{ name: 'r1', tcp_port: 30001 }, { name: 'r2' }] }, 'trackers[1].tcp_port', 'is required');
});

test('ring size must be a power of two', () => {
  assertConfigError({ ring: { size_bytes: 3000000 } }, 'ring.size_bytes', 'must be a power of two between 65536 and 1073741824');
});

test('ring must be large enough for a maximal frame', () => {
  assertConfigError(
    { ring: { size_bytes: 2097152 } }, // 2 MiB < 2 * 1 MiB + 64
    'ring.size_bytes',
    /^ring\.size_bytes: must be >= 2 \* limits\.max_frame_bytes \+ 64 \(2097216\) so that a maximal frame/,
  );
  assertConfigError({ limits: { max_frame_bytes: 4194304 } }, 'ring.size_bytes', /\(8388672\)/);
  assert.equal(parse({ ring: { size_bytes: 65536 }, limits: { max_frame_bytes: 1024 } }).ring.size_bytes, 65536);
});

test('shards "auto" stays "auto" (adaptive placement over defaultShards() workers, at least 1)', () => {
  const c = parse({ shards: 'auto' });
  assert.equal(c.shards, 'auto');
  assert.ok(defaultShards() >= 1);
  assert.equal(parse({ shards: 3 }).shards, 3);
});

test('shards 0 (main-thread baseline) is allowed', () => {
  assert.equal(parse({ shards: 0 }).shards, 0);
  assert.equal(parse({ shards: 64 }).shards, 64);
});

test('negative shards are rejected', () => {
  assertConfigError({ shards: -1 }, 'shards', /^shards: must be .*integer between 0 and 64/);
  assertConfigError({ shards: 'many' }, 'shards', 'must be "auto" or an integer between 0 and 64');
});

test('RADAR_INGEST_TOKEN overrides tcp_server.token only when non-empty', () => {
  const raw = { tcp_server: { token: 'from-file' } };
  assert.equal(parseConfig(raw, { RADAR_INGEST_TOKEN: 'from-env' }).tcp_server.token, 'from-env');
  assert.equal(parseConfig(raw, { RADAR_INGEST_TOKEN: '' }).tcp_server.token, 'from-file');
  assert.equal(parseConfig(raw, {}).tcp_server.token, 'from-file');
  assert.equal(parseConfig({}, { RADAR_INGEST_TOKEN: 'from-env' }).tcp_server.token, 'from-env');
});

test('YAML syntax errors name the file and line', () => {
  withTempFile('broken.yaml', 'tcp_server:\n  port: 30050\n  token: [unclosed\nsink: discard\n', (file) => {
    assert.throws(
      () => loadConfigFile(file, NO_ENV),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.path, '');
        assert.ok(err.message.includes(file), err.message);
        assert.match(err.message, /broken\.yaml:\d+:\d+: invalid YAML: /);
        return true;
      },
    );
  });
  withTempFile('dup.yaml', 'sink: discard\nsink: trackers\n', (file) => {
    assert.throws(() => loadConfigFile(file, NO_ENV), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.ok(err.message.startsWith(`${file}:2:1: invalid YAML: `), err.message);
      return true;
    });
  });
});

test('a missing config file is a ConfigError', () => {
  const file = join(tmpdir(), `radar-config-missing-${process.pid}-${Date.now()}.yaml`);
  assert.throws(
    () => loadConfigFile(file, NO_ENV),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.code, 'RADAR_ERR_CONFIG');
      assert.ok(err.message.includes(file), err.message);
      return true;
    },
  );
});

test('empty keys in YAML take their defaults', () => {
  withTempFile('empty.yaml', '# nothing yet\ntcp_server:\n  token:\ntrackers:\n', (file) => {
    const c = loadConfigFile(file, NO_ENV);
    assert.equal(c.tcp_server.token, '');
    assert.deepEqual(c.trackers, []);
  });
  withTempFile('blank.yaml', '', (file) => {
    assert.equal(loadConfigFile(file, NO_ENV).sink, 'trackers');
  });
});

test('the shipped config.yaml parses', () => {
  const file = fileURLToPath(new URL('../../config.yaml', import.meta.url));
  const c = loadConfigFile(file, NO_ENV);
  assert.equal(c.tcp_server.enabled, true);
  assert.equal(c.tcp_server.port, 30050);
  assert.equal(c.tcp_server.auto_provision, true);
  assert.deepEqual(c.trackers, []);
  assert.equal(c.sink, 'trackers');
  assert.equal(c.tracker.command, 'reference');
  assert.equal(c.shards, 'auto');
});

test('tracker.command: "reference", "retina" or an argv list', () => {
  assert.equal(parseConfig({ tracker: { command: 'retina' } }, NO_ENV).tracker.command, 'retina');
  assert.deepEqual(parseConfig({ tracker: { command: ['python3', '-m', 'x', '--port', '{port}'] } }, NO_ENV).tracker.command,
    ['python3', '-m', 'x', '--port', '{port}']);
  assert.throws(() => parseConfig({ tracker: { command: 'python' } }, NO_ENV),
    { path: 'tracker.command', message: /tracker\.command: must be "reference", "retina" or a list of strings/ });
  assert.throws(() => parseConfig({ tracker: { command: [] } }, NO_ENV), { path: 'tracker.command' });
  assert.throws(() => parseConfig({ tracker: { input: 'pipe' } }, NO_ENV), { path: 'tracker.input' });
  assert.throws(() => parseConfig({ tracker: { flap_max_restarts: 0 } }, NO_ENV), { path: 'tracker.flap_max_restarts', message: /must be an integer >= 1/ });
  assert.throws(() => parseConfig({ shutdown: { deadline_ms: 5 } }, NO_ENV), { path: 'shutdown.deadline_ms' });
  assert.throws(() => parseConfig({ tracker: { typo: 1 } }, NO_ENV), { path: 'tracker.typo', message: /unknown key/ });
});

test('two trackers for the same node_id are refused', () => {
  assert.throws(() => parseConfig({ trackers: [{ name: 'a', tcp_port: 31000 }, { name: 'b', node_id: 'a', tcp_port: 31001 }] }, NO_ENV),
    { path: 'trackers[1].node_id', message: /duplicate node_id "a" \(also trackers\[0\]\)/ });
  assert.throws(() => parseConfig({ trackers: [{ name: 'a', tcp_port: 31000 }, { name: 'b', tcp_port: 31000 }] }, NO_ENV),
    { path: 'trackers[1].tcp_port', message: /duplicate tcp_port 31000 \(also trackers\[0\]\)/ });
});

test('operations keys: proxy protocol, trusted sources, TLS, reconnect guard, drain grace', () => {
  const c = parseConfig({ tcp_server: { proxy_protocol: 'auto', proxy_trusted: ['10.0.0.0/8', '192.168.1.7', 'fd00::/8'] } }, NO_ENV);
  assert.equal(c.tcp_server.proxy_protocol, 'auto');
  assert.deepEqual(c.tcp_server.proxy_trusted, ['10.0.0.0/8', '192.168.1.7', 'fd00::/8']);
  assert.throws(() => parseConfig({ tcp_server: { proxy_protocol: 'v3' } }, NO_ENV), { path: 'tcp_server.proxy_protocol' });
  for (const bad of ['10.0.0.0/33', 'lb.example', '10.0.0.0/8/1', '::1/129', '10.0.0.0/x']) {
    assert.throws(() => parseConfig({ tcp_server: { proxy_trusted: ['127.0.0.1', bad] } }, NO_ENV),
      { path: 'tcp_server.proxy_trusted[1]', message: /must be an IP address or a CIDR block/ }, bad);
  }
  assert.throws(() => parseConfig({ tcp_server: { tls: { enabled: true } } }, NO_ENV),
    { path: 'tcp_server.tls.cert_file', message: /is required when tls.enabled is true/ });
  assert.throws(() => parseConfig({ tcp_server: { tls: { enabled: true, cert_file: 'c.pem' } } }, NO_ENV), { path: 'tcp_server.tls.key_file' });
  assert.throws(() => parseConfig({ tcp_server: { tls: { enabled: true, cert_file: 'c.pem', key_file: 'k.pem', client_cert: 'require' } } }, NO_ENV),
    { path: 'tcp_server.tls.ca_file' });
  assert.throws(() => parseConfig({ tcp_server: { tls: { client_cert: 'maybe' } } }, NO_ENV), { path: 'tcp_server.tls.client_cert' });
  assert.throws(() => parseConfig({ limits: { reconnect_max: -1 } }, NO_ENV), { path: 'limits.reconnect_max' });
  assert.throws(() => parseConfig({ shutdown: { deadline_ms: 1000, drain_grace_ms: 1000 } }, NO_ENV),
    { path: 'shutdown.drain_grace_ms', message: /must be < shutdown.deadline_ms \(1000\)/ });
});

test('cluster: absent is a single host; present needs a redis:// URL and fills its defaults', () => {
  assert.equal(parse({}).cluster, undefined);
  const c = parse({ cluster: { redis_url: 'redis://10.0.0.5:6379/2' } }).cluster!;
  assert.equal(c.redis_url, 'redis://10.0.0.5:6379/2');
  assert.equal(c.lease_ms, 10000);
  assert.equal(c.on_redis_down, 'accept');
  assert.equal(c.key_prefix, 'radar-ingest:');
  assert.match(c.host_id, new RegExp(`-${process.pid}$`), 'default host_id: host name and pid');
  assert.match(c.host_id, /^[A-Za-z0-9._-]{1,64}$/);
  const t = parse({ cluster: { redis_url: 'rediss://user:pw@redis.example:6380', host_id: 'ingest-a', lease_ms: 600, on_redis_down: 'refuse' } }).cluster!;
  assert.deepEqual(t, { redis_url: 'rediss://user:pw@redis.example:6380', host_id: 'ingest-a', lease_ms: 600, on_redis_down: 'refuse', key_prefix: 'radar-ingest:', drain_nodes_per_s: 50 });
  assertConfigError({ cluster: {} }, 'cluster.redis_url', 'is required');
  assertConfigError({ cluster: { redis_url: 'http://10.0.0.5:6379' } }, 'cluster.redis_url', 'must be a redis:// or rediss:// URL');
  assertConfigError({ cluster: { redis_url: 'redis://r', host_id: 'a|b' } }, 'cluster.host_id', /must be 1-64 letters/);
  assertConfigError({ cluster: { redis_url: 'redis://r', lease_ms: 100 } }, 'cluster.lease_ms', /300/);
  assertConfigError({ cluster: { redis_url: 'redis://r', on_redis_down: 'maybe' } }, 'cluster.on_redis_down', 'must be one of "accept", "refuse"');
  assertConfigError({ cluster: { redis_url: 'redis://r', redis: 'x' } }, 'cluster.redis', 'unknown key');
});
