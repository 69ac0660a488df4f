// The parent and child ends of the benchmark's helper processes (load generators,
// measured servers): requests answered by message type over the IPC channel.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'node:net';
import os from 'node:os';
import { performance } from 'node:perf_hooks';

/** A forked child answering requests by message type (one outstanding request per key; `mark` by id). */
export class IpcChild<TIn, TOut extends { t: string }> {
  readonly proc: ChildProcess;
  readonly exited: Promise<void>;
  private readonly waiters = new Map<string, (m: TOut | Error) => void>();
  private failed: Error | null = null;

  constructor(readonly name: string, script: string, args: string[], opts: { pipeStdout?: boolean; nice?: number; execArgv?: string[] } = {}) {
    // Profiling flags given to the benchmark are meant for the engine, not for its helpers.
    const execArgv = opts.execArgv ?? process.execArgv.filter((a) => !/^--(cpu-prof|heap-prof|prof)/.test(a));
    this.proc = fork(script, args, { stdio: ['ignore', opts.pipeStdout ? 'pipe' : 'inherit', 'inherit', 'ipc'], execArgv });
    // The nodes are remote in production: a niced generator does not take CPU from the engine it measures.
    if (opts.nice && this.proc.pid !== undefined) os.setPriority(this.proc.pid, opts.nice);
    this.proc.on('message', (m: TOut) => {
      const x = m as unknown as { t: string; id?: number; error?: string };
      if (x.t === 'fail') {
        this.failed = new Error(`${name}: ${x.error}`);
        for (const w of this.waiters.values()) w(this.failed);
        this.waiters.clear();
        return;
      }
      const key = x.t === 'mark' ? `mark:${x.id}` : x.t;
      const w = this.waiters.get(key);
      if (w) {
        this.waiters.delete(key);
        w(m);
      }
    });
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, sig) => {
      if (!this.failed) this.failed = new Error(`${name} exited (code ${code}, signal ${sig})`);
      for (const w of this.waiters.values()) w(this.failed);
      this.waiters.clear();
      resolve();
    }));
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  send(m: TIn): void {
    if (this.proc.connected) this.proc.send(m as object);
  }

  /** Sends `m` (unless null) and waits for the reply `key`. */
  request<T extends TOut>(m: TIn | null, key: string, timeoutMs: number): Promise<T> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(key);
        reject(new Error(`${this.name}: no '${key}' reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.set(key, (r) => {
        clearTimeout(timer);
        if (r instanceof Error) reject(r);
        else resolve(r as T);
      });
      if (m !== null) this.send(m);
    });
  }

  /** Waits for the process to exit; SIGKILL after `ms`. */
  async end(ms = 3000): Promise<void> {
    if (!this.alive) return;
    const t = setTimeout(() => this.proc.kill('SIGKILL'), ms);
    await this.exited;
    clearTimeout(t);
  }

  kill(): void {
    this.proc.kill('SIGKILL');
  }
}

const LOADGEN = fileURLToPath(new URL('./loadgen.js', import.meta.url));

/**
 * A load generator mode in its own process (`loadgen.js --loadgen-child <mode>`): started
 * by an `init` answered with `ready`; `mark` samples, `pause`, and `finish` waits for the
 * mode's final `done` result and the process's exit.
 */
export class GenChild<TIn extends { t: string }, TOut extends { t: string }, S = unknown> extends IpcChild<TIn, TOut> {
  private markId = 0;

  constructor(mode: string, opts: { nice?: number; execArgv?: string[] } = {}) {
    super(`${mode} generator`, LOADGEN, ['--loadgen-child', mode], opts);
  }

  /** Sends `init` and waits for `ready`; the process is killed when it fails. */
  init(m: TIn, timeoutMs: number): Promise<this> {
    return this.request(m, 'ready', timeoutMs).then(() => this, (err: Error) => {
      this.kill();
      throw err;
    });
  }

  /** The generator's counters now (its `s`), with the parent's clock (`at`, performance.now()). */
  async mark(timeoutMs = 30000): Promise<S & { at: number }> {
    const id = ++this.markId;
    const m = await this.request({ t: 'mark', id } as unknown as TIn, `mark:${id}`, timeoutMs);
    return { ...(m as unknown as { s: S }).s, at: performance.now() };
  }

  /** Stops sending; resolves when no write is in flight (the connections stay open). */
  async pause(timeoutMs = 30000): Promise<void> {
    await this.request({ t: 'pause' } as TIn, 'paused', timeoutMs);
  }

  /** Sends `m` (unless null), waits (bounded) for the final `done` result, then for the exit. */
  async finish<R>(m: TIn | null, timeoutMs: number): Promise<R> {
    try {
      return (await this.request(m, 'done', timeoutMs) as unknown as { r: R }).r;
    } finally {
      await this.end();
    }
  }
}

/** The child end: typed send, an error list (first `keep` kept, all counted), CPU and ELU since start, a hard deadline. */
export function childChannel<TOut>(name: string, keep = 20) {
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const errors: string[] = [];
  const ch = {
    errors,
    errorCount: 0,
    send(m: TOut): void {
      if (process.connected) process.send!(m);
    },
    note(e: string): void {
      ch.errorCount++;
      if (errors.length < keep) errors.push(e);
    },
    cpuUs(): number {
      const c = process.cpuUsage(cpu0);
      return c.user + c.system;
    },
    eluActiveMs: (): number => performance.eventLoopUtilization(elu0).active,
    /** Answers `ready` once `init` resolves; on failure `fail` and exit. */
    answerInit(init: Promise<void>): void {
      init.then(() => ch.send({ t: 'ready' } as TOut), (err: Error) => {
        ch.send({ t: 'fail', error: err.message } as TOut);
        setTimeout(() => process.exit(1), 50);
      });
    },
    /** Half-closes every open socket, waits (bounded) until the host closed its side, then reports the final message and exits. */
    closeAndReport(conns: Array<{ socket: Socket; closed: boolean }>, final: () => TOut): void {
      const closing = conns.map((c) => new Promise<void>((resolve) => {
        if (c.closed) return resolve();
        c.socket.once('close', () => resolve());
        c.socket.end();
      }));
      const bound = new Promise<void>((r) => setTimeout(r, 15000).unref());
      void Promise.race([Promise.all(closing), bound]).then(() => {
        for (const c of conns) if (!c.closed) c.socket.destroy();
        ch.send(final());
        setTimeout(() => process.exit(0), 50);
      });
    },
    /** Exits by itself after maxS seconds, whatever the parent does. */
    deadline(maxS: number): void {
      setTimeout(() => {
        process.stderr.write(`${name}: hard deadline of ${maxS} s reached, exiting\n`);
        process.exit(4);
      }, maxS * 1000).unref();
    },
  };
  process.on('disconnect', () => process.exit(3));
  return ch;
}
