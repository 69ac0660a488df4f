// A fleet on this machine: one real redis-server, N engine processes (the CLI, each
// with its own temp config, ports and tracker-input directory) and a real HAProxy
// (mode tcp, send-proxy-v2, health checks on each host's /readyz) in front of their
// node ports. The tracker is a stand-in that appends every input line to
// {host dir}/input/{node_id}.jsonl, so a test can tell which frames each host's
// trackers received. Used by test/cluster-fleet.test.ts and bench/cluster.ts.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, freePortRange, getJson, httpGet, parseProm, until } from './helpers.js';
import { REDIS_SERVER, RedisServer } from './redis-server.js';

export const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
export const FLEET_TOKEN = 'fleet-secret';
export const FLEET_API_TOKEN = 'fleet-control';
/** How long a `slow-` node's tracker reads nothing after it starts. */
export const SLOW_TRACKER_S = 4;
export const HOST_IDS = ['host-a', 'host-b', 'host-c', 'host-d', 'host-e'];

// Debian installs both in /usr/sbin, which is not on every user's PATH.
const PATH = `${process.env.PATH ?? ''}:/usr/sbin:/usr/local/sbin:/sbin`;
const hv = spawnSync('haproxy', ['-v'], { env: { ...process.env, PATH }, encoding: 'utf8' });
export const HAPROXY: string | null = hv.status === 0 ? hv.stdout.split('\n')[0]! : null;

/** For `test(..., { skip })`: why the fleet cannot run here, or false. */
export const fleetSkip: string | false = !REDIS_SERVER
  ? 'redis-server not installed (apt-get install redis-server): the fleet tests are skipped'
  : !HAPROXY ? 'haproxy not installed (apt-get install haproxy): the fleet tests are skipped' : false;

export interface FleetOptions {
  hosts?: number;
  /** false: no `cluster` section and no Redis (the single-host baseline). */
  cluster?: boolean;
  leaseMs?: number;
  ack?: 'delivered' | 'ring';
  /** One output directory for every host (track files must then name the host). */
  sharedOutput?: boolean;
  balance?: 'roundrobin' | 'leastconn';
  shards?: number;
  /** Auto-provisioned trackers per host at most. */
  maxNodes?: number;
  /** Merged over each host's config (plain objects merge one level deep). */
  config?: Record<string, unknown>;
  /** Engine log level (the last lines are kept for failure messages). */
  logLevel?: string;
  /** Extra node options per host id (e.g. a CPU profile of one host). */
  nodeArgs?: Record<string, string[]>;
}

export interface HostExit { host: string; code: number | null; signal: NodeJS.Signals | null; expected: boolean }

/** One engine process and what it needs to be restarted the same way. */
export class FleetHost {
  proc: ChildProcess | null = null;
  /** The last log lines (stdout and stderr). */
  readonly log: string[] = [];
  /** Starts, counting restarts. */
  starts = 0;
  /** Node options before the CLI (e.g. --cpu-prof). */
  execArgv: string[] = [];
  private expectExit = false;

  constructor(
    readonly id: string,
    readonly index: number,
    readonly dir: string,
    readonly tcpPort: number,
    readonly httpPort: number,
    private readonly configFile: string,
    private readonly onExit: (e: HostExit) => void,
  ) {}

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  get running(): boolean {
    return this.proc !== null;
  }

  /** Where its trackers' input goes: one file per node. */
  get inputDir(): string {
    return join(this.dir, 'input');
  }

  /** Spawns the CLI and waits until /readyz answers 200. */
  async start(timeoutMs = 20000): Promise<void> {
    if (this.proc) throw new Error(`${this.id} is already running`);
    const env = { ...process.env };
    delete env.RADAR_INGEST_TOKEN;
    delete env.RADAR_INGEST_API_TOKEN;
    const proc = spawn(process.execPath, [...this.execArgv, CLI, '--config', this.configFile], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.starts++;
    this.expectExit = false;
    const keep = (b: Buffer): void => {
      for (const line of b.toString().split('\n')) if (line !== '') this.log.push(line);
      if (this.log.length > 400) this.log.splice(0, this.log.length - 300);
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    proc.once('exit', (code, signal) => {
      if (this.proc === proc) this.proc = null;
      this.onExit({ host: this.id, code, signal, expected: this.expectExit });
    });
    await until(async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`${this.id} exited during start (${proc.exitCode ?? proc.signalCode}): ${this.log.slice(-20).join('\n')}`);
      }
      return (await httpGet(this.httpPort, '/readyz').catch(() => ({ status: 0 }))).status === 200;
    }, `${this.id} ready on http ${this.httpPort}`, timeoutMs);
  }

  /** Tracker pids of runs that were killed: they outlive the host (they read their input to the end), and dispose() ends them. */
  readonly orphans: number[] = [];

  /** kill -9: no drain, nothing flushed (the trackers see their input close and finish on their own). */
  async kill(): Promise<void> {
    if (!this.proc) return;
    const r = await Promise.race([this.api('/api/v1/trackers').catch(() => null), new Promise<null>((res) => setTimeout(() => res(null), 2000))]);
    for (const t of (r?.json?.trackers ?? []) as Array<{ pid: number | null }>) if (typeof t.pid === 'number') this.orphans.push(t.pid);
    await this.signal('SIGKILL');
  }

  /** SIGTERM: the host drains and exits; resolves with its exit code. */
  async term(): Promise<number | null> {
    const p = this.proc;
    await this.signal('SIGTERM');
    return p?.exitCode ?? null;
  }

  private async signal(sig: NodeJS.Signals): Promise<void> {
    const p = this.proc;
    if (!p) return;
    this.expectExit = true;
    await new Promise<void>((resolve) => {
      if (p.exitCode !== null || p.signalCode !== null) return resolve();
      p.once('exit', () => resolve());
      p.kill(sig);
    });
  }

  /** GET on its HTTP port, the body as JSON. */
  async api(path: string): Promise<{ status: number; json: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
    return getJson(this.httpPort, path);
  }

  /** A request with a bearer token (the control token unless given), a JSON body and a JSON answer (null when not JSON). */
  call(method: string, path: string, body?: unknown, token = FLEET_API_TOKEN): Promise<{ status: number; json: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
    return new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = request({
        host: '127.0.0.1', port: this.httpPort, path, method,
        headers: { authorization: `Bearer ${token}`, ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}) },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown = null;
          try { json = JSON.parse(text); } catch { /* not JSON */ }
          resolve({ status: res.statusCode ?? 0, json });
        });
      });
      req.on('error', reject);
      req.end(data);
    });
  }

  /** Its /metrics as `name{labels}` -> value. */
  async metrics(): Promise<Map<string, number>> {
    const { body } = await httpGet(this.httpPort, '/metrics');
    return parseProm(body);
  }

  /** The seqs each node's tracker input received on this host (every run of the host), in file order. */
  received(ts0: number): Map<string, number[]> {
    const out = new Map<string, number[]>();
    if (!existsSync(this.inputDir)) return out;
    for (const f of readdirSync(this.inputDir)) {
      if (!f.endsWith('.jsonl')) continue;
      const seqs: number[] = [];
      for (const line of readFileSync(join(this.inputDir, f), 'utf8').split('\n')) {
        if (line === '') continue;
        try {
          const m = JSON.parse(line) as { timestamp?: unknown };
          if (typeof m.timestamp === 'number') seqs.push(m.timestamp - ts0);
        } catch { /* a partial last line (the host was killed mid-write): not delivered */ }
      }
      out.set(f.slice(0, -'.jsonl'.length), seqs);
    }
    return out;
  }
}


/** What every host's trackers received, per node: each seq with the hosts (one entry per delivery). */
export interface Deliveries {
  byNode: Map<string, Map<number, string[]>>;
  /** Deliveries of a seq more than once (on one host or across hosts). */
  duplicates: number;
  total: number;
}

export class Fleet {
  readonly hosts: FleetHost[] = [];
  readonly exits: HostExit[] = [];
  redis: RedisServer | null = null;
  balancer: ChildProcess | null = null;
  /** The balancer's frontend: where nodes connect. */
  nodePort = 0;
  readonly balancerLog: string[] = [];
  private readonly dir = mkdtempSync(join(tmpdir(), 'radar-ingest-fleet-'));

  private constructor(readonly o: Required<Omit<FleetOptions, 'config'>> & { config: Record<string, unknown> }) {}

  /** Starts Redis (with `cluster`), the hosts and the balancer; every host ready. */
  static async start(opts: FleetOptions = {}): Promise<Fleet> {
    const f = new Fleet({
      hosts: 3, cluster: true, leaseMs: 1500, ack: 'delivered', sharedOutput: false, balance: 'roundrobin', shards: 1,
      maxNodes: 400, config: {}, logLevel: 'info', nodeArgs: {}, ...opts,
    });
    try {
      await f.boot();
    } catch (err) {
      await f.dispose();
      throw err;
    }
    return f;
  }

  private async boot(): Promise<void> {
    const o = this.o;
    if (o.cluster) this.redis = await RedisServer.start();
    const keyFile = join(this.dir, 'agents-ed25519.pem');
    for (let i = 0; i < o.hosts; i++) {
      const id = HOST_IDS[i]!;
      const dir = join(this.dir, id);
      mkdirSync(join(dir, 'input'), { recursive: true });
      const [tcpPort, httpPort] = [await freePort(), await freePort()];
      const ports = await freePortRange(o.maxNodes);
      const cfg = this.hostConfig(id, dir, tcpPort, httpPort, ports[0]!, ports[ports.length - 1]!, keyFile);
      const file = join(dir, 'config.yaml');
      writeFileSync(file, JSON.stringify(cfg, null, 2)); // JSON is YAML
      const host = new FleetHost(id, i, dir, tcpPort, httpPort, file, (e) => this.exits.push(e));
      host.execArgv = o.nodeArgs[id] ?? [];
      this.hosts.push(host);
    }
    // The first host creates the shared command-signing key; the others read it.
    await this.hosts[0]!.start();
    await Promise.all(this.hosts.slice(1).map((h) => h.start()));
    await this.startBalancer();
  }

  private hostConfig(id: string, dir: string, tcpPort: number, httpPort: number, portStart: number, portEnd: number, keyFile: string): Record<string, unknown> {
    const o = this.o;
    const output = o.sharedOutput ? join(this.dir, 'output') : join(dir, 'output');
    const base: Record<string, Record<string, unknown>> = {
      tcp_server: {
        enabled: true, host: '127.0.0.1', port: tcpPort, token: FLEET_TOKEN, auto_provision: true,
        auto_provision_port_start: portStart, auto_provision_port_end: portEnd, proxy_protocol: 'v2', ack: o.ack,
      },
      http: { host: '127.0.0.1', port: httpPort, api_token: FLEET_API_TOKEN },
      tracker: {
        // Every input line appended to the node's file on this host: what the tracker received.
        // A node whose id starts with `slow-` gets a tracker that reads nothing for its first
        // SLOW_TRACKER_S: its input pipe fills and frames wait in the host's ring.
        command: ['sh', '-c', `case "$1" in slow-*) sleep ${SLOW_TRACKER_S};; esac; exec cat >> "$0"`, join(dir, 'input', '{node_id}.jsonl'), '{node_id}'],
        input: 'stdin', stop_grace_ms: 2000,
      },
      agents: { key_file: keyFile },
      // The balancer sees /readyz fail within its check interval, then the host stops accepting.
      shutdown: { deadline_ms: 15000, drain_grace_ms: 600 },
      log: { level: o.logLevel, format: 'json' },
      // Tests move nodes between hosts far more often than the flapping guard allows.
      limits: { reconnect_max: 0 },
    };
    const cfg: Record<string, unknown> = {
      ...base, output_dir: output, shards: o.shards,
      ...(o.cluster ? { cluster: { redis_url: this.redis!.url, host_id: id, lease_ms: o.leaseMs, address: `127.0.0.1:${httpPort}` } } : {}),
    };
    for (const [k, v] of Object.entries(o.config)) {
      const cur = cfg[k];
      cfg[k] = cur && typeof cur === 'object' && v && typeof v === 'object' && !Array.isArray(v) ? { ...cur as object, ...v as object } : v;
    }
    return cfg;
  }

  private get haproxyConfig(): string {
    return join(this.dir, 'haproxy.cfg');
  }

  /** The balancer's config: the snippet docs/cluster.md shows, on this run's ports. */
  balancerConfig(): string {
    return haproxyConfig(this.nodePort, this.o.balance, this.hosts.map((h) => ({ id: h.id, tcpPort: h.tcpPort, httpPort: h.httpPort })), join(this.dir, 'haproxy.sock'));
  }

  private async startBalancer(): Promise<void> {
    this.nodePort = await freePort();
    writeFileSync(this.haproxyConfig, this.balancerConfig());
    const proc = spawn('haproxy', ['-db', '-f', this.haproxyConfig], { env: { ...process.env, PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.balancer = proc;
    const keep = (d: Buffer): void => {
      this.balancerLog.push(String(d));
      if (this.balancerLog.length > 200) this.balancerLog.splice(0, 100);
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    await until(async () => {
      if (proc.exitCode !== null) throw new Error(`haproxy exited with ${proc.exitCode}: ${this.balancerLog.join('')}`);
      const up = await this.balancerUp().catch(() => []);
      return up.length === this.hosts.length;
    }, 'haproxy up with every host checked', 15000);
  }

  /** The hosts HAProxy has UP right now (from its stats socket). */
  async balancerUp(): Promise<string[]> {
    const csv = await new Promise<string>((resolve, reject) => {
      const s = connect(join(this.dir, 'haproxy.sock'));
      let got = '';
      s.on('connect', () => s.write('show stat\n'));
      s.on('data', (d) => (got += String(d)));
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
    return csv.split('\n').map((l) => l.split(',')).filter((c) => c[0] === 'engines' && c[1] !== 'BACKEND' && c[17] === 'UP').map((c) => c[1]!);
  }

  /** Waits until the balancer has exactly these hosts UP. */
  async untilBalancer(up: string[], timeoutMs = 10000): Promise<void> {
    const want = [...up].sort().join(',');
    await until(async () => (await this.balancerUp().catch(() => [])).sort().join(',') === want, `haproxy UP = ${want}`, timeoutMs);
  }

  host(id: string): FleetHost {
    const h = this.hosts.find((x) => x.id === id);
    if (!h) throw new Error(`no host ${id}`);
    return h;
  }

  /** kill -9 of host i. */
  kill(i: number): Promise<void> {
    return this.hosts[i]!.kill();
  }

  /** SIGTERM of host i (it drains); its exit code. */
  term(i: number): Promise<number | null> {
    return this.hosts[i]!.term();
  }

  /** Starts host i again with the same config and ports. */
  restart(i: number): Promise<void> {
    return this.hosts[i]!.start();
  }

  /** Stops redis-server and starts it again, empty, on the same port; `downMs` in between. */
  async restartRedis(downMs = 0): Promise<void> {
    if (!this.redis) throw new Error('no Redis in this fleet');
    await this.redis.stop();
    if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
    await this.redis.restart();
  }

  /** Hosts that exited without being told to (a crash). */
  get crashes(): HostExit[] {
    return this.exits.filter((e) => !e.expected);
  }

  /** Every host's trackers' input, merged per node: each seq with the hosts that delivered it. */
  deliveries(ts0: number): Deliveries {
    const byNode = new Map<string, Map<number, string[]>>();
    let duplicates = 0;
    let total = 0;
    for (const h of this.hosts) {
      for (const [node, seqs] of h.received(ts0)) {
        let m = byNode.get(node);
        if (!m) byNode.set(node, (m = new Map()));
        for (const s of seqs) {
          const at = m.get(s);
          total++;
          if (at) { at.push(h.id); duplicates++; } else m.set(s, [h.id]);
        }
      }
    }
    return { byNode, duplicates, total };
  }

  /** Last log lines of every host, for a failure message. */
  logs(lines = 15): string {
    return this.hosts.map((h) => `--- ${h.id}\n${h.log.slice(-lines).join('\n')}`).join('\n');
  }

  /** Kills every process of the fleet at once, without waiting: for a process.on('exit') handler. */
  killNow(): void {
    for (const h of this.hosts) h.proc?.kill('SIGKILL');
    this.balancer?.kill('SIGKILL');
    this.redis?.killNow();
  }

  /** Stops everything this fleet started and removes its files. */
  async dispose(): Promise<void> {
    // SIGTERM stops each host's trackers with it; one that does not exit in time is killed.
    await Promise.all(this.hosts.map(async (h) => {
      const t = setTimeout(() => void h.kill(), 8000);
      await h.term().catch(() => undefined);
      clearTimeout(t);
    }));
    for (const pid of this.hosts.flatMap((h) => h.orphans)) {
      // Only a tracker stand-in of ours (sh or cat writing into this fleet's directory).
      let what = '';
      try { what = readFileSync(`/proc/${pid}/cmdline`, 'utf8') + readlinkSync(`/proc/${pid}/fd/1`); } catch { /* gone, or not ours */ }
      if (what.includes(this.dir)) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
      }
    }
    const b = this.balancer;
    if (b && b.exitCode === null && b.signalCode === null) {
      await new Promise((r) => { b.once('exit', r); b.kill('SIGTERM'); });
    }
    await this.redis?.dispose();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * HAProxy in front of the node ports: mode tcp, PROXY v2 to each host (the host
 * records the node's address), and an HTTP check of each host's /readyz on its HTTP
 * port, so a draining host (503) or a dead one is out of the rotation within about
 * two check intervals. A node's connection is long-lived; `redispatch` lets a
 * reconnect that lands on a dead host's port go elsewhere.
 */
export function haproxyConfig(frontPort: number, balance: string, hosts: Array<{ id: string; tcpPort: number; httpPort: number }>, statsSocket?: string): string {
  return [
    'global',
    '  maxconn 4000',
    ...(statsSocket ? [`  stats socket ${statsSocket} mode 600 level admin`] : []),
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 120s',
    '  timeout server 120s',
    '  retries 2',
    '  option redispatch',
    'frontend nodes',
    `  bind 127.0.0.1:${frontPort}`,
    '  default_backend engines',
    'backend engines',
    `  balance ${balance}`,
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    '  default-server inter 250ms fall 2 rise 2 send-proxy-v2',
    ...hosts.map((h) => `  server ${h.id} 127.0.0.1:${h.tcpPort} check port ${h.httpPort}`),
    '',
  ].join('\n');
}
