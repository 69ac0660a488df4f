// A real redis-server for tests: Debian's package (installed by .ci/run), started on a
// free loopback port with persistence off in a temp dir, stoppable and restartable on
// the same port (a restart loses every key, as a Redis without persistence does).
// Tests that need it are skipped, saying so, when redis-server is not installed.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, until } from './helpers.js';

const PATH = `${process.env.PATH ?? ''}:/usr/sbin:/usr/local/sbin:/sbin`;
const version = spawnSync('redis-server', ['--version'], { env: { ...process.env, PATH }, encoding: 'utf8' });
/** `redis-server --version`'s line, or null when it is not installed. */
export const REDIS_SERVER: string | null = version.status === 0 ? version.stdout.trim() : null;
/** For `test(..., { skip })`. */
export const redisSkip: string | false = REDIS_SERVER
  ? false
  : 'redis-server not installed (apt-get install redis-server): the Redis tests are skipped';

/** One PING over a fresh socket: true on +PONG. */
export function ping(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    const done = (ok: boolean) => { clearTimeout(t); s.destroy(); resolve(ok); };
    const t = setTimeout(() => done(false), timeoutMs);
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (b) => { got += b.toString('latin1'); if (got.includes('\r\n')) done(got.startsWith('+PONG')); });
    s.on('error', () => done(false));
    s.on('close', () => done(false));
  });
}

export class RedisServer {
  private proc: ChildProcess | null = null;
  private readonly dir = mkdtempSync(join(tmpdir(), 'radar-ingest-redis-'));
  readonly log: string[] = [];

  private constructor(readonly port: number) {}

  /** Starts one on a free port and waits until it answers PING. */
  static async start(): Promise<RedisServer> {
    const r = new RedisServer(await freePort());
    await r.restart();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.proc !== null;
  }

  /** Kills it at once (SIGKILL, not waited for): for a process that is exiting. */
  killNow(): void {
    this.proc?.kill('SIGKILL');
  }

  /** Starts it (again) on the same port, empty. */
  async restart(): Promise<void> {
    if (this.proc) throw new Error('redis-server is already running');
    const proc = spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', this.dir, '--daemonize', 'no', '--protected-mode', 'yes', '--loglevel', 'warning',
    ], { env: { ...process.env, PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    proc.stdout!.on('data', (b: Buffer) => this.log.push(b.toString()));
    proc.stderr!.on('data', (b: Buffer) => this.log.push(b.toString()));
    proc.once('exit', () => { if (this.proc === proc) this.proc = null; });
    await until(async () => {
      if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode}: ${this.log.join('')}`);
      return ping(this.port);
    }, `redis-server answering PING on ${this.port}`, 10000);
  }

  /** Stops it (SIGTERM; nothing is saved) and waits for the exit. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    if (proc.exitCode !== null || proc.signalCode !== null) { this.proc = null; return; }
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGTERM');
    });
    this.proc = null;
  }

  /** Stops it and removes its directory: for after(). */
  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
