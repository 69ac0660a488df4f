// A tracker that runs elsewhere (trackers[].spawn_tracker: false): the host
// only connects to tcp_host:tcp_port and feeds it, with nothing to spawn or
// signal. It stands in for TrackerProcess behind the same handle, so the
// lifecycle, the feeder and the outage rules apply unchanged: start() is the
// connection (with retries), a connection that drops is a lost input (stopped
// and restarted like a crash, with backoff), stop() closes the connection.
//
// Track events do not come back over this connection: the remote tracker
// writes its own output. Anything it sends is read and discarded, so that it
// can never block on a full socket and so that its close is seen.
import { connect, type Socket } from 'node:net';
import type { TrackerExit, TrackerProcess, TrackerState } from './tracker-process.js';

/** What the tracker instance and the feeder use of a tracker, local or remote. */
export type TrackerHandle = Pick<TrackerProcess,
  'state' | 'pid' | 'writable' | 'lastError' | 'start' | 'stop' | 'kill' | 'write' | 'whenWritable'
  | 'framesHanded' | 'framesReadReported' | 'stdoutLinesDropped' | 'stdoutPartialDropped'>;

export interface RemoteTrackerOptions {
  nodeId: string;
  host: string;
  port: number;
  /** Connection attempts per start() (0 is treated as 1). */
  connectRetries: number;
  /** Wait between attempts. */
  retryDelayMs: number;
  /** Per attempt. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** The connection closed while it was in use (not by stop()). Must not throw. */
  onClose?(): void;
}

/** stop(): the longest wait for the tracker to read to EOF and close its side. */
const INPUT_DRAIN_MAX_MS = 2000;

export class RemoteTracker implements TrackerHandle {
  readonly nodeId: string;
  readonly where: string;
  readonly pid: number | undefined = undefined;
  lastError: Error | null = null;
  connectAttempts = 0;
  /** Frames whose batch reached the OS. */
  framesHanded = 0;
  /** A remote tracker reports nothing back about what it read. */
  readonly framesReadReported: number | null = null;
  /** No stdout: what a remote tracker prints stays on its own host. */
  readonly stdoutLinesDropped = 0;
  readonly stdoutPartialDropped = 0;
  private _state: TrackerState = 'new';
  private sock: Socket | null = null;
  private readonly opts: RemoteTrackerOptions;
  private writableWaiters: Array<() => void> = [];
  private stopWaiters: Array<() => void> = [];
  private stopped: Promise<TrackerExit> | null = null;
  /** The connection attempt in flight (stop() cuts it short). */
  private pending: Socket | null = null;

  constructor(opts: RemoteTrackerOptions) {
    if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535) {
      throw new RangeError(`remote tracker for node ${opts.nodeId}: port must be between 1 and 65535 (got ${opts.port})`);
    }
    this.opts = opts;
    this.nodeId = opts.nodeId;
    this.where = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`;
  }

  get state(): TrackerState {
    return this._state;
  }
  get writable(): boolean {
    const s = this.sock;
    return s !== null && !s.destroyed && s.writable && (this._state === 'connected' || this._state === 'stopping');
  }

  /** Connects, with retries. Rejects when no attempt succeeded or stop() was called. */
  async start(): Promise<void> {
    if (this._state !== 'new') throw new Error(`remote tracker for node ${this.nodeId}: start() called twice`);
    this._state = 'starting';
    const attempts = Math.max(1, this.opts.connectRetries);
    let lastErr = '';
    for (let i = 0; i < attempts; i++) {
      if (this._state !== 'starting') break;
      this.connectAttempts++;
      const r = await this.tryConnect();
      if (!(r instanceof Error)) {
        if (this._state !== 'starting') {
          r.destroy();
          break;
        }
        this.attach(r);
        return;
      }
      lastErr = (r as NodeJS.ErrnoException).code ?? r.message;
      this.lastError = r;
      if (i + 1 < attempts) await this.sleep(this.opts.retryDelayMs);
    }
    const why = this._state !== 'starting'
      ? `stopped before connecting to ${this.where}`
      : `could not connect to the remote tracker at ${this.where} after ${attempts} attempt${attempts === 1 ? '' : 's'} (last error: ${lastErr})`;
    this._state = 'exited';
    this.settleStop();
    throw new Error(`tracker for node ${this.nodeId}: ${why}`);
  }

  private tryConnect(): Promise<Socket | Error> {
    return new Promise((resolve) => {
      const s = connect({ host: this.opts.host, port: this.opts.port });
      this.pending = s;
      const timer = setTimeout(() => fail(new Error(`connect timeout after ${this.opts.connectTimeoutMs ?? 5000} ms`)), this.opts.connectTimeoutMs ?? 5000);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        this.pending = null;
        s.destroy();
        resolve(err);
      };
      s.once('error', fail);
      s.once('connect', () => {
        clearTimeout(timer);
        this.pending = null;
        s.off('error', fail);
        // An ephemeral port on this host can connect to itself (simultaneous open) when nothing listens.
        if (s.localPort === s.remotePort && s.localAddress === s.remoteAddress) {
          s.destroy();
          resolve(new Error('self-connection (nothing listening)'));
          return;
        }
        resolve(s);
      });
    });
  }

  private attach(s: Socket): void {
    this.sock = s;
    s.setNoDelay(true);
    s.setKeepAlive(true, 10_000);
    s.on('error', (err) => { this.lastError = err; });
    s.on('drain', () => this.wake());
    s.resume();
    s.once('close', () => {
      const inUse = this._state === 'connected';
      if (inUse) this._state = 'input_closed';
      this.wake();
      if (inUse) {
        try {
          this.opts.onClose?.();
        } catch { /* an observer must not break the close */ }
      }
    });
    this._state = 'connected';
  }

  private sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      this.stopWaiters.push(done);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
    });
  }

  private wake(): void {
    const ws = this.writableWaiters;
    this.writableWaiters = [];
    for (const w of ws) w();
  }

  private settleStop(): void {
    const ws = this.stopWaiters;
    this.stopWaiters = [];
    for (const w of ws) w();
    this.wake();
  }

  /** As TrackerProcess.write: one batch, false when back-pressured; `done` says whether the OS took it. */
  write(buf: Buffer, done?: (err: Error | null) => void, frames = 0): boolean {
    if (!this.writable) throw new Error(`remote tracker for node ${this.nodeId}: input is not open (state ${this._state})`);
    const s = this.sock!;
    // A write still queued when the socket is destroyed is reported as a success: only a live socket's completion counts.
    return s.write(buf, (e) => {
      const err = e ?? (s.destroyed ? new Error('connection closed before the batch was handed to the OS') : null);
      if (!err) this.framesHanded += frames;
      done?.(err);
    });
  }

  whenWritable(): Promise<void> {
    const s = this.sock;
    if (!s || s.destroyed || !s.writable || !s.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => this.writableWaiters.push(resolve));
  }

  /** Nothing to kill on this host; the memory ceiling does not apply. */
  kill(): void {}

  /**
   * Ends the connection (the tracker reads to EOF), waits up to
   * min(graceMs, 2 s) for it to close its side, then closes it. Safe in any state.
   */
  stop(graceMs: number): Promise<TrackerExit> {
    if (this.stopped) return this.stopped;
    const prev = this._state;
    this._state = 'stopping';
    this.settleStop();
    // An attempt in flight to an unreachable host could take the whole connect timeout.
    this.pending?.destroy(new Error('stopped'));
    const s = this.sock;
    this.stopped = new Promise<TrackerExit>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        s?.destroy();
        this._state = 'exited';
        this.wake();
        resolve({ code: null, signal: null });
      };
      let timer: NodeJS.Timeout | undefined;
      if (!s || s.destroyed || prev !== 'connected') {
        finish();
        return;
      }
      timer = setTimeout(finish, Math.min(Math.max(0, graceMs), INPUT_DRAIN_MAX_MS));
      s.once('close', finish);
      s.end();
    });
    return this.stopped;
  }
}
