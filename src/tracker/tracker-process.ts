// One tracker subprocess for one node: spawn, keep its output pipes flowing, open
// its input (a TCP connection to the port it listens on, or its stdin), accept one
// write per batch with back-pressure, and stop it (SIGTERM, then SIGKILL).
//
// Output handling is the point of this module: tracker-host never read the
// tracker's stderr, so a chatty tracker filled the pipe and froze. Here stdout and
// stderr are both read continuously from spawn to exit, split into lines with a
// length cap, and handed to callbacks; nothing waits on the caller.
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { LineSplitter } from './line-splitter.js';
import { CONFIG_DEFAULTS } from '../config.js';
import { INPUT_REPORT_MAX_BYTES, parseInputReport } from './input-report.js';

export type TrackerInput = 'tcp' | 'stdin';

/**
 * new: constructed; starting: spawned, waiting for the startup delay or connecting;
 * connected: the input is open (TCP connected, or stdin for `stdin`);
 * input_closed: the process runs but its input closed (the tracker dropped the
 * connection, or the pipe broke); stopping: stop() was called; exited: gone.
 */
export type TrackerState = 'new' | 'starting' | 'connected' | 'input_closed' | 'stopping' | 'exited';

export interface TrackerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface TrackerProcessOptions {
  /**
   * argv (command first). In every element the placeholders `{port}`, `{node_id}`
   * and `{config}` are replaced by `port`, `nodeId` and `configPath` (substring
   * replacement, so `--port={port}` works). When `configPath` is not set, every
   * element containing `{config}` is dropped, together with an immediately
   * preceding `-c` or `--config` element; so `[..., '-c', '{config}']` becomes
   * `[...]`. A `{port}` placeholder without a port is an error. `{run_id}` is
   * `runId` (run-id.ts); without one it is dropped like `{config}`, with an
   * immediately preceding `--id-prefix`.
   */
  command: string[];
  cwd?: string;
  /** Merged over process.env. */
  env?: Record<string, string | undefined>;
  nodeId: string;
  /** The tracker's input TCP port on 127.0.0.1 (required for input 'tcp'). */
  port?: number;
  configPath?: string;
  /** This process's run id (run-id.ts): `{run_id}` in the command, and RADAR_INGEST_RUN_ID in its environment. */
  runId?: string;
  /** 'tcp': connect to 127.0.0.1:port; 'stdin': write to the child's stdin. */
  input: TrackerInput;
  /**
   * 'tcp' only: give the child a stdin pipe that is never written nor closed while
   * the engine lives. The tracker runs in its own process group, so it outlives an
   * engine killed by SIGKILL; a tracker that exits at EOF on stdin (the built-in
   * one's --exit-with-stdin) goes with it.
   */
  parentPipe?: boolean;
  /**
   * Connection attempts for 'tcp' (tracker-host's tcp_connect_retries: attempts,
   * not extra retries; 0 is treated as 1). Default: the config's.
   */
  connectRetries?: number;
  /** Wait between attempts. Default: tcp_retry_delay_sec's. */
  retryDelayMs?: number;
  /** Wait after spawn before the first attempt ('tcp' only). Default: startup_delay_sec's. */
  startupDelayMs?: number;
  /** Grace before SIGKILL when start() fails and the process has to be stopped. Default: tracker.stop_grace_ms's. */
  failStopGraceMs?: number;
  /** Longest stdout line kept (bytes, without the newline); longer lines are dropped and counted. Default 4 MiB. */
  maxLineBytes?: number;
  /** Longest stderr line passed on; longer lines are truncated (marked " [truncated]"). Default 4096 bytes. */
  maxStderrLineBytes?: number;
  /** Every stderr line (without the newline). The caller rate-limits. Must not throw. */
  stderrLine?(line: string): void;
  /** Every complete stdout line (a track event, without the newline). Must not throw. */
  trackLine?(line: string): void;
  /**
   * The process exited and its output pipes are drained (every trackLine was
   * delivered). Called once per process that spawned; not for a spawn failure
   * (start() rejects then).
   */
  onExit?(code: number | null, signal: NodeJS.Signals | null): void;
  now?: () => number;
}

const DEFAULTS = {
  connectRetries: CONFIG_DEFAULTS.tcp_connect_retries,
  retryDelayMs: CONFIG_DEFAULTS.tcp_retry_delay_sec * 1000,
  startupDelayMs: CONFIG_DEFAULTS.startup_delay_sec * 1000,
  failStopGraceMs: CONFIG_DEFAULTS.tracker.stop_grace_ms,
  maxLineBytes: 4 << 20,
  maxStderrLineBytes: 4096,
};

/** stop(): the longest wait for the tracker to read its input to EOF before SIGTERM. */
const INPUT_DRAIN_MAX_MS = 2000;

/** After 'exit', how long the output pipes may stay open (a grandchild holding them) before we close them. */
const STDIO_CLOSE_AFTER_EXIT_MS = 1000;

/** Substitutes the placeholders of a tracker command (see TrackerProcessOptions.command). */
export function expandCommand(command: readonly string[], vars: { port?: number; nodeId: string; configPath?: string; runId?: string }): string[] {
  const out: string[] = [];
  const hasConfig = vars.configPath !== undefined && vars.configPath !== '';
  const hasRunId = vars.runId !== undefined && vars.runId !== '';
  for (const arg of command) {
    if (arg.includes('{config}') && !hasConfig) {
      const prev = out[out.length - 1];
      if (prev === '-c' || prev === '--config') out.pop();
      continue;
    }
    if (arg.includes('{run_id}') && !hasRunId) {
      if (out[out.length - 1] === '--id-prefix') out.pop();
      continue;
    }
    if (arg.includes('{port}') && vars.port === undefined) {
      throw new Error(`tracker command uses {port} but no port is set (node ${vars.nodeId})`);
    }
    out.push(arg
      .replaceAll('{port}', String(vars.port))
      .replaceAll('{node_id}', vars.nodeId)
      .replaceAll('{config}', vars.configPath ?? '')
      .replaceAll('{run_id}', vars.runId ?? ''));
  }
  return out;
}

export class TrackerProcess {
  readonly nodeId: string;
  readonly port: number | undefined;
  readonly input: TrackerInput;
  /** argv after placeholder substitution. */
  readonly argv: string[];

  private _state: TrackerState = 'new';
  private child: ChildProcess | null = null;
  private sink: Writable | null = null;
  private exit: TrackerExit | null = null;
  /** Resolvers waiting for the process to be gone. */
  private exitWaiters: Array<(e: TrackerExit) => void> = [];
  private writableWaiters: Array<() => void> = [];
  private killTimer: NodeJS.Timeout | null = null;
  private stdioTimer: NodeJS.Timeout | null = null;
  private readonly opts: TrackerProcessOptions;
  private readonly now: () => number;

  // ---- counters and facts (read by the supervisor and metrics) ----
  /** Bytes handed to the input (accepted by write()). */
  bytesWritten = 0;
  /** Frames (as counted by the caller of write()) whose batch reached the OS. */
  framesHanded = 0;
  /** frames_read of the tracker's end-of-input report (input-report.ts), null until one arrives. */
  framesReadReported: number | null = null;
  private backText = '';
  /** Calls to write() that were accepted (one per batch). */
  writes = 0;
  /** Times write() returned false (the input was back-pressured). */
  backpressured = 0;
  stdoutLines = 0;
  stderrLines = 0;
  /** stdout lines dropped: over maxLineBytes, or an unterminated last line that is not whole JSON. */
  get stdoutLinesDropped(): number {
    return this.outLines.oversizeLines + this.stdoutPartialDropped;
  }
  /** Of those, unterminated last lines (the tracker died mid-write). */
  stdoutPartialDropped = 0;
  /** stderr lines over maxStderrLineBytes (truncated). */
  get stderrLinesTruncated(): number {
    return this.errLines.oversizeLines;
  }
  /**
   * stdout: track events; an over-long line is dropped (a cut record is not an event).
   * stderr: log lines; an over-long one is passed cut, marked " [truncated]".
   */
  private readonly outLines: LineSplitter;
  private readonly errLines: LineSplitter;
  /** TCP connection attempts made by start(). */
  connectAttempts = 0;
  /** Errors thrown by the caller's callbacks (swallowed: output must keep flowing). */
  callbackErrors = 0;
  /** The last error on the input (connection reset, broken pipe) or the process handle, if any. */
  lastError: Error | null = null;
  /** The process was sent SIGKILL (stop() after its grace, or kill()). */
  killed = false;
  startedAt = 0;
  connectedAt = 0;
  exitedAt = 0;

  constructor(opts: TrackerProcessOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.nodeId = opts.nodeId;
    this.port = opts.port;
    this.input = opts.input;
    if (opts.input === 'tcp' && (!Number.isInteger(opts.port) || opts.port! < 1 || opts.port! > 65535)) {
      throw new RangeError(`tracker for node ${opts.nodeId}: input "tcp" needs a port between 1 and 65535 (got ${opts.port})`);
    }
    const argv: { port?: number; nodeId: string; configPath?: string; runId?: string } = { nodeId: opts.nodeId };
    if (opts.port !== undefined) argv.port = opts.port;
    if (opts.configPath !== undefined) argv.configPath = opts.configPath;
    if (opts.runId !== undefined) argv.runId = opts.runId;
    this.argv = expandCommand(opts.command, argv);
    if (this.argv.length === 0 || this.argv[0] === '') throw new Error(`tracker for node ${opts.nodeId}: empty command`);
    this.outLines = new LineSplitter({ maxLineBytes: opts.maxLineBytes ?? DEFAULTS.maxLineBytes, oversize: 'drop' });
    this.errLines = new LineSplitter({ maxLineBytes: opts.maxStderrLineBytes ?? DEFAULTS.maxStderrLineBytes, oversize: 'truncate' });
  }

  get state(): TrackerState {
    return this._state;
  }
  get pid(): number | undefined {
    return this.child?.pid;
  }
  /** Exit code and signal once exited, else null. */
  get exitStatus(): TrackerExit | null {
    return this.exit;
  }
  /** The input is open: write() may be called. */
  get writable(): boolean {
    const s = this.sink;
    return s !== null && !s.destroyed && s.writable && (this._state === 'connected' || this._state === 'stopping');
  }
  /** Bytes accepted by write() but still queued in this process (not yet handed to the OS). */
  get queuedBytes(): number {
    return this.sink ? this.sink.writableLength : 0;
  }

  /**
   * Spawns the process and opens its input. Resolves once the input is open.
   * Rejects when the spawn fails, the process exits first, stop() is called, or
   * no connection was accepted after all attempts. Before it rejects, a process
   * still running is stopped (SIGTERM, SIGKILL after failStopGraceMs) and has
   * exited (state 'exited', onExit called), so a failed start leaves nothing behind.
   */
  async start(): Promise<void> {
    if (this._state !== 'new') throw new Error(`tracker for node ${this.nodeId}: start() called twice`);
    this._state = 'starting';
    this.startedAt = this.now();
    const runEnv = this.opts.runId !== undefined ? { RADAR_INGEST_RUN_ID: this.opts.runId } : {};
    const env = this.opts.env || this.opts.runId !== undefined ? { ...process.env, ...this.opts.env, ...runEnv } : process.env;
    // detached: its own session and process group, so a signal to the engine's group
    // (Ctrl-C in a terminal) does not reach it: the engine's drain decides when it stops.
    const child = spawn(this.argv[0]!, this.argv.slice(1), {
      cwd: this.opts.cwd,
      env,
      stdio: [this.input === 'stdin' || this.opts.parentPipe === true ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      windowsHide: true,
      detached: true,
    });
    this.child = child;
    this.readOutput(child);

    const spawned = await new Promise<Error | null>((resolve) => {
      child.once('spawn', () => resolve(null));
      child.once('error', (err) => resolve(err));
    });
    if (spawned) {
      // No process: nothing to stop, no onExit.
      this._state = 'exited';
      this.exit = { code: null, signal: null };
      this.exitedAt = this.now();
      child.stdout?.destroy();
      child.stderr?.destroy();
      this.settleExit();
      throw new Error(`tracker for node ${this.nodeId}: cannot start ${JSON.stringify(this.argv[0])}: ${spawned.message}`);
    }
    // Later errors (a failed kill) must not crash the host.
    child.on('error', (err) => { this.lastError = err; });
    child.once('exit', (code, signal) => this.exited(code, signal));
    child.once('close', () => this.closed());

    if ((this._state as TrackerState) !== 'starting') {
      // stop() was called while the spawn was being confirmed.
      await this.stop(this.opts.failStopGraceMs ?? DEFAULTS.failStopGraceMs);
      throw new Error(`tracker for node ${this.nodeId}: stopped while starting`);
    }
    if (this.input === 'stdin') {
      this.attachSink(child.stdin!);
      this._state = 'connected';
      this.connectedAt = this.now();
      return;
    }

    let failure: string;
    try {
      failure = await this.connectLoop();
    } catch (err) {
      failure = (err as Error).message;
    }
    if (failure === '') return;
    // Settle before rejecting: once start() rejects, the process is gone and onExit was called.
    await this.stop(this.opts.failStopGraceMs ?? DEFAULTS.failStopGraceMs);
    throw new Error(`tracker for node ${this.nodeId}: ${failure}`);
  }

  /** '' when connected, else why not. */
  private async connectLoop(): Promise<string> {
    const attempts = Math.max(1, this.opts.connectRetries ?? DEFAULTS.connectRetries);
    const retryDelay = this.opts.retryDelayMs ?? DEFAULTS.retryDelayMs;
    const where = `127.0.0.1:${this.port}`;
    const gone = (): string | null => {
      if (this.exit) return `exited (${describeExit(this.exit)}) before accepting a connection on ${where}`;
      if (this._state !== 'starting') return `stopped before accepting a connection on ${where}`;
      return null;
    };
    await this.waitOrExit(this.opts.startupDelayMs ?? DEFAULTS.startupDelayMs);
    let lastErr = '';
    for (let i = 0; i < attempts; i++) {
      const g = gone();
      if (g) return g;
      this.connectAttempts++;
      const r = await this.tryConnect();
      if (r instanceof Error) {
        lastErr = (r as NodeJS.ErrnoException).code ?? r.message;
      } else {
        const g2 = gone();
        if (g2) {
          r.destroy();
          return g2;
        }
        r.setNoDelay(true);
        this.attachSink(r);
        // Track events are on stdout; what the tracker sends back is read so that its
        // end (the tracker closing) is seen, and kept (bounded) for its end-of-input report.
        r.on('data', (chunk: Buffer) => {
          if (this.backText.length < INPUT_REPORT_MAX_BYTES) this.backText += chunk.toString('utf8', 0, INPUT_REPORT_MAX_BYTES - this.backText.length);
        });
        r.once('end', () => {
          this.framesReadReported = parseInputReport(this.backText);
        });
        this._state = 'connected';
        this.connectedAt = this.now();
        return '';
      }
      if (i + 1 < attempts) await this.waitOrExit(retryDelay);
    }
    return gone() ?? `could not connect to ${where} after ${attempts} attempt${attempts === 1 ? '' : 's'} (last error: ${lastErr})`;
  }

  private tryConnect(): Promise<Socket | Error> {
    return new Promise((resolve) => {
      const s = connect({ host: '127.0.0.1', port: this.port! });
      const onErr = (err: Error): void => {
        s.destroy();
        resolve(err);
      };
      s.once('error', onErr);
      s.once('connect', () => {
        s.off('error', onErr);
        // Nothing listening on a port in the ephemeral range can yield a TCP
        // self-connection (simultaneous open): that is not the tracker.
        if (s.localPort === s.remotePort && s.localAddress === s.remoteAddress) {
          s.destroy();
          resolve(new Error('self-connection (nothing listening)'));
          return;
        }
        resolve(s);
      });
    });
  }

  /** Sleeps `ms`, cut short when the process exits or stop() is called. */
  private waitOrExit(ms: number): Promise<void> {
    if (this.exit || this._state !== 'starting' || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      this.stopWaiters.push(done);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
    });
  }
  private stopWaiters: Array<() => void> = [];

  private attachSink(w: Writable): void {
    this.sink = w;
    w.on('error', (err) => {
      this.lastError = err;
    });
    w.on('drain', () => this.wakeWritable());
    w.once('close', () => {
      if (this._state === 'connected') this._state = 'input_closed';
      this.wakeWritable();
    });
  }

  private wakeWritable(): void {
    const ws = this.writableWaiters;
    this.writableWaiters = [];
    for (const w of ws) w();
  }

  /**
   * Hands one batch to the input (never copies it; do not modify `buf` after).
   * Returns false when the input is back-pressured: the batch is queued, and the
   * caller should write nothing more until whenWritable() resolves. `done` is
   * called once the bytes were handed to the OS (err null), or with the error that
   * lost them (the tracker died, the connection reset, stop()). Throws when the
   * input is not open (check `writable`).
   */
  write(buf: Buffer, done?: (err: Error | null) => void, frames = 0): boolean {
    if (!this.writable) throw new Error(`tracker for node ${this.nodeId}: input is not open (state ${this._state})`);
    this.writes++;
    this.bytesWritten += buf.length;
    const sink = this.sink!;
    // Node reports a write that was still with the OS when the stream was destroyed
    // (connection reset, process gone) as a success (callback(null)): only a
    // completion on a live stream means the bytes were handed over.
    const ok = sink.write(buf, (e) => {
      const err = e ?? (sink.destroyed ? new Error('input closed before the batch was handed to the OS') : null);
      if (!err) this.framesHanded += frames;
      done?.(err);
    });
    if (!ok) this.backpressured++;
    return ok;
  }

  /**
   * Resolves when write() may be called again: the input drained, or it can never
   * drain (it closed, the process exited). Check `writable` afterwards.
   */
  whenWritable(): Promise<void> {
    const s = this.sink;
    if (!s || s.destroyed || !s.writable || !s.writableNeedDrain || this.exit) return Promise.resolve();
    return new Promise((resolve) => this.writableWaiters.push(resolve));
  }

  /**
   * SIGKILL now, without ending the input first: a tracker past its memory
   * ceiling may not honour SIGTERM promptly, and every second it runs it may grow.
   * The exit then runs its course (output drained, onExit called).
   */
  kill(): void {
    const child = this.child;
    if (!child || this.exit !== null || child.exitCode !== null || child.signalCode !== null) return;
    this.killed = true;
    this.signal('SIGKILL');
  }

  /**
   * Signals the tracker's process group (it leads one: spawned detached), so
   * helpers it started go with it; the process alone if the group is gone.
   */
  private signal(sig: NodeJS.Signals): void {
    const child = this.child;
    if (!child || child.pid === undefined) return;
    try {
      process.kill(-child.pid, sig);
    } catch {
      child.kill(sig);
    }
  }

  /**
   * Ends the input (the tracker sees EOF), sends SIGTERM, and SIGKILL after
   * `graceMs` if it is still running. Resolves when the process is gone (output
   * drained, onExit called). Safe to call more than once and in any state.
   */
  stop(graceMs: number): Promise<TrackerExit> {
    if (this.exit && this._state === 'exited') return Promise.resolve(this.exit);
    const done = new Promise<TrackerExit>((resolve) => this.exitWaiters.push(resolve));
    if (this._state === 'new') {
      this._state = 'exited';
      this.exit = { code: null, signal: null };
      this.settleExit();
      return done;
    }
    if (this._state === 'stopping') return done;
    this._state = 'stopping';
    const sw = this.stopWaiters;
    this.stopWaiters = [];
    for (const w of sw) w();
    const child = this.child;
    const sink = this.sink;
    const term = (): void => {
      if (!child || this.exit !== null) return;
      this.signal('SIGTERM');
      this.killTimer = setTimeout(() => {
        this.killTimer = null;
        if (this.exit === null && child.exitCode === null && child.signalCode === null) {
          this.killed = true;
          this.signal('SIGKILL');
        }
      }, Math.max(0, graceMs));
    };
    if (sink && !sink.destroyed && child && this.exit === null) {
      // End the input first and give the tracker time to read what is already in
      // its socket (it closes its side at EOF): a SIGTERM now would lose frames
      // the OS already took, which count as delivered.
      sink.end();
      const wait = Math.min(Math.max(0, graceMs), INPUT_DRAIN_MAX_MS);
      let timer: NodeJS.Timeout | null = null;
      const go = (): void => {
        if (timer) clearTimeout(timer);
        timer = null;
        if (this.killTimer === null) term();
      };
      timer = setTimeout(go, wait);
      // TCP: the tracker closing its side means it read to EOF. stdin: wait for the exit (or the timer).
      if (this.input === 'tcp') sink.once('close', go);
      this.exitWaiters.push(go);
    } else {
      if (sink && !sink.destroyed) sink.end();
      term();
    }
    return done;
  }

  // ---- output ----

  private readOutput(child: ChildProcess): void {
    const track = (line: string): void => {
      this.stdoutLines++;
      const cb = this.opts.trackLine;
      if (cb) this.call(() => cb(line));
    };
    const log = (line: string): void => {
      this.stderrLines++;
      const cb = this.opts.stderrLine;
      if (cb) this.call(() => cb(line));
    };
    const pipe = (r: Readable | null, lines: LineSplitter, line: (l: string) => void, tail: (l: string) => void): void => {
      if (!r) return;
      // Flowing mode from the start, so the child can never block on a full pipe.
      r.on('data', (chunk: Buffer) => {
        for (const l of lines.push(chunk)) line(l);
      });
      r.once('end', () => {
        const t = lines.end();
        if (t !== null) tail(t);
      });
      r.on('error', () => undefined);
    };
    // An unterminated last stdout line is an event only when it is whole JSON (not
    // a record cut by a tracker that died mid-write); on stderr it is a log line.
    pipe(child.stdout, this.outLines, track, (t) => {
      if (isJson(t)) track(t);
      else this.stdoutPartialDropped++;
    });
    pipe(child.stderr, this.errLines, log, log);
  }

  private call(fn: () => void): void {
    try {
      fn();
    } catch {
      this.callbackErrors++;
    }
  }

  // ---- exit ----

  private exited(code: number | null, signal: NodeJS.Signals | null): void {
    this.exit = { code, signal };
    // Being stopped: whatever the tracker started in its group goes too (no one else
    // would stop it now that the tracker is detached from the engine's group).
    if (this._state === 'stopping' && this.child?.pid !== undefined) {
      try {
        process.kill(-this.child.pid, 'SIGKILL');
      } catch { /* the group is gone */ }
    }
    this.exitedAt = this.now();
    if (this.killTimer) {
      clearTimeout(this.killTimer);
      this.killTimer = null;
    }
    // Wake a connect loop that is sleeping.
    const sw = this.stopWaiters;
    this.stopWaiters = [];
    for (const w of sw) w();
    // Output pipes close on their own unless something else holds them open.
    this.stdioTimer = setTimeout(() => {
      this.stdioTimer = null;
      this.child?.stdout?.destroy();
      this.child?.stderr?.destroy();
    }, STDIO_CLOSE_AFTER_EXIT_MS);
    this.stdioTimer.unref();
  }

  /** 'close': exited and every output pipe is closed. */
  private closed(): void {
    if (this.stdioTimer) {
      clearTimeout(this.stdioTimer);
      this.stdioTimer = null;
    }
    const child = this.child!;
    this.exit ??= { code: child.exitCode, signal: child.signalCode };
    this.exitedAt ||= this.now();
    this._state = 'exited';
    // Writes still queued here can never arrive: fail them now (their callbacks get the error).
    if (this.sink && !this.sink.destroyed) this.sink.destroy();
    this.wakeWritable();
    const cb = this.opts.onExit;
    if (cb) this.call(() => cb(this.exit!.code, this.exit!.signal));
    this.settleExit();
  }

  private settleExit(): void {
    const ws = this.exitWaiters;
    this.exitWaiters = [];
    for (const w of ws) w(this.exit!);
    this.wakeWritable();
  }
}

function describeExit(e: TrackerExit): string {
  return e.signal ? `signal ${e.signal}` : `code ${e.code}`;
}

/** Whether a line is one whole JSON value (an unterminated last stdout line is kept only then). */
function isJson(line: string): boolean {
  try {
    JSON.parse(line);
    return true;
  } catch {
    return false;
  }
}
