// Shared test fixtures: a real engine on ephemeral ports, real TCP clients, a
// collecting ring sink, and polling with a deadline (no fixed sleeps).
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { pino } from 'pino';
import { parseConfig, type Config } from '../src/config.js';
import { Engine, type EngineOptions } from '../src/engine/engine.js';
import type { RingSink } from '../src/nodes/ring-sink.js';
import type { NodeEntry, NodeHooks } from '../src/nodes/node-table.js';
import { after } from 'node:test';
import { KIND_JSON_LINE, KIND_PACKED } from '../src/ring/ring-layout.js';
import { decodeBody, encodeHello } from '../src/protocol/binary-protocol.js';
import { packedRecordToJson } from '../src/ring/record-codec.js';
import { portIsFree } from '../src/tracker/port-allocator.js';
import { fileURLToPath } from 'node:url';

/** The deliberately faulty fake tracker (test/fixtures/fake-tracker.js). */
export const FAKE_TRACKER = fileURLToPath(new URL('./fixtures/fake-tracker.js', import.meta.url));

export const TOKEN = 'test-secret';
/** One signing key for the whole test process (generated on first use). */
export const TEST_KEY_FILE = join(tmpdir(), 'radar-ingest-test-key', 'ed25519.pem');

/** A config on ephemeral ports with test-friendly limits; `over` is merged per section. */
export function testConfig(over: Record<string, unknown> = {}): Config {
  const base: Record<string, any> = {
    shards: 1,
    sink: 'discard',
    tcp_server: { enabled: true, host: '127.0.0.1', port: 0, token: TOKEN },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'silent' },
    agents: { key_file: TEST_KEY_FILE },
  };
  for (const [k, v] of Object.entries(over)) {
    base[k] = v && typeof v === 'object' && !Array.isArray(v) && base[k] && typeof base[k] === 'object' ? { ...base[k], ...v } : v;
  }
  return parseConfig(base, {});
}

export async function startEngine(over: Record<string, unknown> = {}, opts: Partial<EngineOptions> = {}): Promise<Engine> {
  const engine = new Engine({ config: testConfig(over), logger: pino({ level: 'silent' }), testHooks: true, sweepMs: 50, ...opts });
  await engine.start();
  return engine;
}

export interface TrackerEngine {
  e: Engine;
  /** output_dir: the track files. */
  out: string;
  /** First port of the 8-port provisioning range. */
  portStart: number;
  http: number;
  tcp: number;
}

/**
 * An engine with sink "trackers", auto-provisioning from 8 free ports and
 * test-speed timings (reconcile 20 ms, restart backoff 50 ms, stop grace 500 ms,
 * shutdown deadline 4 s). `out`: its output_dir. `command`: the tracker argv
 * (default: the fake tracker with `fakeArgs`). `over` is merged into the config
 * (its tracker, retry, tcp_server and shutdown sections key by key). The caller
 * stops the engine.
 */
export async function startTrackerEngine(out: string, fakeArgs: string[], over: Record<string, any> = {}, // eslint-disable-line @typescript-eslint/no-explicit-any
  opts: Partial<EngineOptions> = {}, command?: string[]): Promise<TrackerEngine> {
  const portStart = (await freePortRange(8))[0]!;
  const { tracker = {}, retry = {}, tcp_server = {}, shutdown = {}, ...rest } = over;
  const e = await startEngine({
    sink: 'trackers',
    output_dir: out,
    startup_delay_sec: 0,
    tcp_retry_delay_sec: 0.02,
    tcp_connect_retries: 200,
    tcp_server: { auto_provision: true, auto_provision_port_start: portStart, auto_provision_port_end: portStart + 7, ...tcp_server },
    retry: { extended_outage_sec: 60, ...retry },
    shutdown: { deadline_ms: 4000, ...shutdown },
    tracker: {
      command: command ?? [process.execPath, FAKE_TRACKER, '--tcp-port', '{port}', ...fakeArgs],
      reconcile_interval_ms: 20,
      stop_grace_ms: 500,
      restart_backoff_ms: 50,
      ...tracker,
    },
    ...rest,
  }, opts);
  return { e, out, portStart, http: e.httpAddress!.port, tcp: e.tcpAddress!.port };
}

export interface EngineFixture {
  engine: Engine;
  sink: CollectingSink;
  port: number;
}

/**
 * For a describe() block: returns a function that starts an engine (config `base`
 * merged with `over`, a collecting sink, provisioning hooks) and stops them all in after().
 */
export function engineFixtures(base: Record<string, unknown> = {}): (over?: Record<string, unknown>, hooks?: NodeHooks, sink?: CollectingSink) => Promise<EngineFixture> {
  const engines: Engine[] = [];
  after(async () => {
    await Promise.all(engines.map((e) => e.stop()));
  });
  return async (over = {}, hooks = {}, sink = new CollectingSink()) => {
    const engine = await startEngine({ ...base, ...over }, { sink, hooks });
    engines.push(engine);
    return { engine, sink, port: engine.tcpAddress!.port };
  };
}

/** A loopback port nothing listens on right now (a subprocess binds it a moment later). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Ports handed out by freePortRange in this process (ranges never overlap). */
const takenPorts = new Set<number>();

/**
 * n consecutive loopback ports, all free now, below the OS ephemeral range
 * (a tracker subprocess binds them later), distinct from earlier calls.
 */
export async function freePortRange(n: number): Promise<number[]> {
  for (let tries = 0; tries < 500; tries++) {
    const base = 20000 + Math.floor(Math.random() * 12000);
    const ports = Array.from({ length: n }, (_, i) => base + i);
    if (ports.some((p) => takenPorts.has(p))) continue;
    const free = await Promise.all(ports.map((p) => portIsFree(p)));
    if (free.every(Boolean)) {
      for (const p of ports) takenPorts.add(p);
      return ports;
    }
  }
  throw new Error(`no ${n} consecutive free ports found`);
}

/** True while a process with this pid exists. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/** Polls `fn` until it returns a truthy value; fails with `what` after the deadline. */
export type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>;
export async function until<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 5000): Promise<Truthy<T>> {
  const end = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    last = await fn();
    if (last) return last as Truthy<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export interface Delivered {
  node: string;
  kind: number;
  timestamp: number;
  detections: number;
  /** The JSON line the tracker would receive (packed frames rendered). */
  line: string;
}

/** A sink that keeps every record, in order, per node. `paused` stops consumption. */
export class CollectingSink implements RingSink {
  readonly frames: Delivered[] = [];
  paused = false;
  onData(node: NodeEntry): void {
    if (this.paused) return;
    const r = node.reader;
    for (;;) {
      const b = r.read();
      if (b) {
        for (const rec of b.records()) {
          const line = rec.kind === KIND_JSON_LINE ? rec.payload.toString('utf8')
            : rec.kind === KIND_PACKED ? packedRecordToJson(rec.payload, rec.detections, rec.timestamp)
            : '';
          this.frames.push({ node: node.id, kind: rec.kind, timestamp: rec.timestamp, detections: rec.detections, line });
        }
      }
      if (r.arm()) return;
    }
  }
  of(node: string): Delivered[] {
    return this.frames.filter((f) => f.node === node);
  }
}

export function lineFrame(node: string, ts: number, n = 2, token = TOKEN, extra: Record<string, unknown> = {}): string {
  const delay: number[] = [];
  const doppler: number[] = [];
  const snr: number[] = [];
  const adsb: null[] = [];
  for (let i = 0; i < n; i++) {
    delay.push(40.5 + i);
    doppler.push(-27.25 + i);
    snr.push(12.5 + i);
    adsb.push(null);
  }
  return `${JSON.stringify({ node_id: node, token, timestamp: ts, delay, doppler, snr, adsb, ...extra })}\n`;
}

export function heartbeat(node: string, token = TOKEN): string {
  return `${JSON.stringify({ node_id: node, token, type: 'heartbeat' })}\n`;
}

/** A TCP client that records everything the host sends and when it closes. */
export class Client {
  readonly socket: Socket;
  readonly received: Buffer[] = [];
  closed = false;
  readonly closedP: Promise<void>;
  private readonly ready: Promise<void>;
  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.setNoDelay(true);
    this.ready = new Promise((r, j) => {
      this.socket.once('connect', () => r());
      this.socket.once('error', j);
    });
    this.socket.on('data', (d) => this.received.push(d));
    this.socket.on('error', () => undefined);
    this.closedP = new Promise((r) => this.socket.on('close', () => {
      this.closed = true;
      r();
    }));
  }
  static async open(port: number): Promise<Client> {
    const c = new Client(port);
    await c.ready;
    return c;
  }
  send(data: string | Uint8Array): Promise<void> {
    return new Promise((r, j) => this.socket.write(data, (e) => (e ? j(e) : r())));
  }
  bytes(): Buffer {
    return Buffer.concat(this.received);
  }
  /** Decodes every complete binary-protocol message received so far. */
  messages(): Record<string, any>[] {
    return binaryMessages(this.bytes());
  }
  end(): void {
    this.socket.end();
  }
  destroy(): void {
    this.socket.destroy();
  }
}

/** Opens a binary-protocol connection for `node` and waits for its welcome (or error). */
/** Sends a binary hello on an open client; resolves with the engine's answer (welcome or error). */
export async function helloOn(c: Client, node: string, opts: { token?: string; timeoutMs?: number } = {}): Promise<Record<string, any>> { // eslint-disable-line @typescript-eslint/no-explicit-any
  await c.send(encodeHello(node, opts.token ?? TOKEN));
  return until(() => c.messages().find((x) => x.t === 'welcome' || x.t === 'error'), `reply to ${node}'s hello`, opts.timeoutMs);
}

export async function binaryHello(port: number, node: string, timeoutMs?: number): Promise<{ c: Client; m: Record<string, any> }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const c = await Client.open(port);
  return { c, m: await helloOn(c, node, { timeoutMs }) };
}

/** The error code a binary-protocol connection was refused with, if any. */
export function errorCodeOf(c: Client): string | undefined {
  return c.messages().find((m) => m.t === 'error')?.code;
}

/** The complete binary-protocol messages (u32 length + msgpack) at the start of `b`; a partial last one is left out. */
export function binaryMessages(b: Buffer): Record<string, any>[] {
  const out: Record<string, any>[] = [];
  for (let p = 0; p + 4 <= b.length;) {
    const n = b.readUInt32BE(p);
    if (p + 4 + n > b.length) break;
    out.push(decodeBody(b, p + 4, p + 4 + n) as Record<string, any>);
    p += 4 + n;
  }
  return out;
}

export function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** GET, the body parsed as JSON. */
export async function getJson(port: number, path: string): Promise<{ status: number; json: any }> {
  const r = await httpGet(port, path);
  return { status: r.status, json: JSON.parse(r.body) };
}

/** Parses Prometheus text into a map of `name{labels}` -> value. */
/** Prometheus text -> `name{labels}` -> value. */
export function parseProm(body: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

export async function scrape(engine: Engine): Promise<Map<string, number>> {
  const { body } = await httpGet(engine.httpAddress!.port, '/metrics');
  return parseProm(body);
}

/**
 * The accounting identity, read from /metrics:
 * received = in rings + in the sink + delivered + dropped (every reason).
 * A sink without its own accounting (CollectingSink) counts what it consumed as delivered.
 */
export async function assertAccounting(engine: Engine): Promise<Map<string, number>> {
  const m = await scrape(engine);
  const received = m.get('radar_ingest_frames_received_total')!;
  let dropped = 0;
  for (const [k, v] of m) if (k.startsWith('radar_ingest_frames_dropped_total{')) dropped += v;
  const inRings = m.get('radar_ingest_frames_in_rings')!;
  const inSink = m.get('radar_ingest_frames_in_sink')!;
  const delivered = m.get('radar_ingest_frames_delivered_total')!;
  if (received !== inRings + inSink + delivered + dropped) {
    throw new Error(`accounting broken: received ${received} != in rings ${inRings} + in sink ${inSink} + delivered ${delivered} + dropped ${dropped}`);
  }
  return m;
}

/** Status and headers (names lower-cased) of a raw HTTP/1.1 response whose head ends at `headEnd` (the blank line). */
export function parseHttpHead(b: Buffer, headEnd: number): { status: number; headers: Record<string, string> } {
  const lines = b.subarray(0, headEnd).toString('latin1').split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(lines[0]!.split(' ')[1]), headers };
}
