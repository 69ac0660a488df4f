// Polls one node's `detection_url` (blah2's /api/detection style endpoint) for
// trackers in `mode: http`, and hands each NEW frame to the same pipeline as
// frames that arrive over TCP, as one retina-tracker JSON line.
//
// The endpoint only ever returns the node's latest frame, so polling faster
// than its CPI returns the same frame again: a repeated timestamp is counted
// `unchanged` and not emitted. An older timestamp is emitted anyway; the
// downstream feeder owns ordering and counts it out_of_order.
//
// One request at a time. After a success the next poll starts pollIntervalMs
// after the previous one started (at once if it took longer). Failures follow
// http-retry.ts (tracker-host's rule): after the n-th failure in a row the
// next poll waits backoffBaseSec ** n seconds (at most 30) plus the poll
// interval, counted from the end of the failed poll so a slow or timing-out
// node really gets the pause; the failure that comes once failures have
// lasted extendedOutageMs takes the source DOWN (the caller stops the
// tracker); while DOWN it is probed every healthCheckIntervalMs and any 2xx
// answer brings it UP.

import { getCapped } from '../util/read-capped.js';
import { PollLoop } from '../util/poll-loop.js';
import { checkFrameLimits, type FrameLimits } from '../protocol/frame-limits.js';
import { HTTP_RETRY_INITIAL, retryStep, type HttpRetryRules, type HttpRetryState } from './http-retry.js';

export type HttpSourceDrop = 'malformed' | 'invalid_frame' | 'frame_too_large' | 'too_many_detections' | 'clock_skew';

export interface HttpSourceOptions {
  /** http or https; validated in the constructor (TypeError). */
  url: string;
  /** Normal period between the starts of polls. */
  pollIntervalMs: number;
  /** retry.backoff_base_sec: the n-th consecutive failure waits this ** n seconds (at most 30), plus pollIntervalMs. */
  backoffBaseSec: number;
  /** retry.extended_outage_sec in ms: failures lasting this long take the source DOWN. */
  extendedOutageMs: number;
  /** Probe period while DOWN. */
  healthCheckIntervalMs: number;
  /** Per request, response body included. Default 5000 ms. */
  requestTimeoutMs?: number;
  /** Larger bodies are dropped as 'frame_too_large' (reading stops there). Default 1 MiB. */
  maxBodyBytes?: number;
  headers?: Record<string, string>;
  /** The frame limits in force (read per response, so a reload applies). Default: none. */
  limits?: () => FrameLimits;
  /** Clock for downSince and lastFrameAt (timers use real setTimeout). Default Date.now. */
  now?: () => number;
  /** A new frame, as one retina JSON line (ends with '\n'). Return false if it could not be buffered (the caller counted it). */
  onFrame(line: Buffer, timestamp: number, detections: number): boolean;
  /** A response that is not a usable frame (also counted in stats). */
  onDrop?(reason: HttpSourceDrop, detail: string): void;
  /** UP <-> DOWN transitions (DOWN once failures have lasted extendedOutageMs; UP at the first 2xx). */
  onStateChange?(up: boolean, error: string | null): void;
}

/** successes = frames + unchanged; failures include the three kinds of drop. */
export interface HttpSourceStats { polls: number; successes: number; failures: number; frames: number; unchanged: number; dropped: Record<HttpSourceDrop, number>; consecutiveFailures: number }

interface Frame { timestamp: number; delay: number[]; doppler: number[]; snr: number[]; adsb: unknown[] }

type Outcome =
  | { kind: 'ok'; frame: Frame }
  /** httpOk: the answer was a 2xx (its body was not a usable frame). */
  | { kind: 'fail'; error: string; drop?: HttpSourceDrop; detail?: string; httpOk?: boolean }
  | { kind: 'stopped' };

export class HttpSource {
  readonly url: string;
  private readonly opts: HttpSourceOptions;
  private readonly headers: Headers;
  private readonly requestTimeoutMs: number;
  private readonly maxBodyBytes: number;
  private readonly rules: HttpRetryRules;
  private readonly now: () => number;

  private retry: HttpRetryState = HTTP_RETRY_INITIAL;
  private _lastError: string | null = null;
  private _lastFrameAt = 0;
  private lastTimestamp: number | null = null;
  private readonly counters = { polls: 0, successes: 0, failures: 0, frames: 0, unchanged: 0, consecutiveFailures: 0 };
  private readonly dropped: Record<HttpSourceDrop, number> = { malformed: 0, invalid_frame: 0, frame_too_large: 0, too_many_detections: 0, clock_skew: 0 };

  private readonly loop: PollLoop;

  constructor(opts: HttpSourceOptions) {
    let u: URL;
    try {
      u = new URL(opts.url);
    } catch {
      throw new TypeError(`detection_url is not a valid URL: ${JSON.stringify(opts.url)}`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new TypeError(`detection_url must be http or https: ${JSON.stringify(opts.url)}`);
    }
    for (const k of ['pollIntervalMs', 'backoffBaseSec', 'healthCheckIntervalMs', 'extendedOutageMs'] as const) checkNumber(k, opts[k], 0);
    this.url = opts.url;
    this.opts = opts;
    this.requestTimeoutMs = checkNumber('requestTimeoutMs', opts.requestTimeoutMs ?? 5000, 1);
    this.maxBodyBytes = checkNumber('maxBodyBytes', opts.maxBodyBytes ?? 1024 * 1024, 1);
    this.rules = {
      backoffBaseSec: opts.backoffBaseSec, pollIntervalMs: opts.pollIntervalMs,
      extendedOutageMs: opts.extendedOutageMs, healthCheckIntervalMs: opts.healthCheckIntervalMs,
    };
    this.now = opts.now ?? Date.now;
    // Built once: validates header names and values now rather than per poll.
    this.headers = new Headers(opts.headers ?? {});
    if (!this.headers.has('accept')) this.headers.set('accept', 'application/json');
    this.loop = new PollLoop(async (signal) => {
      const started = performance.now();
      return this.account(await this.pollOnce(signal), started);
    }, (err) => {
      // Both handle their own errors; this guard only keeps a bug from ending the polling.
      this._lastError = `poller error: ${errorText(err)}`;
      return this.opts.healthCheckIntervalMs;
    });
  }

  get up(): boolean { return this.retry.phase === 'up'; }
  /** While DOWN: the first failure of the streak that took it down. */
  get downSince(): number | null { return this.retry.phase === 'down' ? this.retry.firstFailureAt : null; }
  /** The most recent error; kept after recovery (null: none yet). */
  get lastError(): string | null { return this._lastError; }
  get lastFrameAt(): number { return this._lastFrameAt; }

  stats(): HttpSourceStats {
    return { ...this.counters, dropped: { ...this.dropped } };
  }

  /** Starts polling; the first poll goes at once. Idempotent; does nothing after stop(). */
  start(): void {
    this.loop.start();
  }

  /** Aborts a request in flight and clears timers; resolves when nothing is pending. Idempotent. */
  stop(): Promise<void> {
    return this.loop.stop(new Error('http source stopped'));
  }

  /** Applies a poll's outcome; returns the wait before the next poll (null: stopped). */
  private account(o: Outcome, startedAt: number): number | null {
    if (o.kind === 'stopped' || this.loop.stopped) return null;
    const result = o.kind === 'ok' ? 'ok' : o.httpOk ? 'http_ok' : 'fail';
    const wasUp = this.retry.phase === 'up';
    const t = retryStep(this.retry, result, this.now(), this.rules);
    this.retry = t.state;
    if (o.kind === 'ok') {
      this.counters.successes++;
    } else {
      this.counters.failures++;
      this._lastError = o.error;
      if (o.drop) {
        this.dropped[o.drop]++;
        const { drop, detail = o.error } = o;
        this.callback(() => this.opts.onDrop?.(drop, detail));
      }
    }
    this.counters.consecutiveFailures = t.state.failures;
    if (t.change !== 'none') {
      const error = o.kind === 'fail' && t.change === 'down' ? o.error : null;
      this.callback(() => this.opts.onStateChange?.(t.change === 'up', error));
    }
    if (o.kind === 'ok') this.emit(o.frame);
    // The normal period runs from the start of the previous poll; waits after a failure from its end.
    if (o.kind === 'ok' && wasUp) return Math.max(0, t.waitMs - (performance.now() - startedAt));
    return t.waitMs;
  }

  private emit(f: Frame): void {
    if (f.timestamp === this.lastTimestamp) {
      this.counters.unchanged++;
      return;
    }
    // Remembered even if onFrame cannot buffer it: the caller counted that drop,
    // and re-delivering the same frame on the next poll would count it twice.
    this.lastTimestamp = f.timestamp;
    this.counters.frames++;
    this._lastFrameAt = this.now();
    const line = Buffer.from(`${JSON.stringify(f)}\n`, 'utf8');
    try {
      this.opts.onFrame(line, f.timestamp, f.delay.length);
    } catch (err) {
      this._lastError = `onFrame threw: ${errorText(err)}`;
    }
  }

  private callback(fn: () => void): void {
    try {
      fn();
    } catch {
      // a throwing observer must not stop the poller
    }
  }

  private async pollOnce(signal: AbortSignal): Promise<Outcome> {
    this.counters.polls++;
    const r = await getCapped(this.url, { headers: this.headers, timeoutMs: this.requestTimeoutMs, maxBytes: this.maxBodyBytes, signal });
    switch (r.kind) {
      case 'aborted':
        return { kind: 'stopped' };
      case 'status':
        return { kind: 'fail', error: `HTTP ${r.status}` };
      case 'timeout':
        return { kind: 'fail', error: `timeout after ${this.requestTimeoutMs} ms` };
      case 'network':
        return { kind: 'fail', error: fetchErrorText(r.error) };
      case 'too_large': {
        const detail = `body over ${this.maxBodyBytes} bytes`;
        return { kind: 'fail', error: detail, drop: 'frame_too_large', detail, httpOk: true };
      }
      case 'body':
        return this.frameOf(r.body);
    }
  }

  private frameOf(body: Buffer): Outcome {
    let value: unknown;
    try {
      value = JSON.parse(body.toString('utf8'));
    } catch (err) {
      const detail = errorText(err);
      return { kind: 'fail', error: `malformed JSON: ${detail}`, drop: 'malformed', detail, httpOk: true };
    }
    const frame = toFrame(value);
    if (typeof frame === 'string') return { kind: 'fail', error: `invalid frame: ${frame}`, drop: 'invalid_frame', detail: frame, httpOk: true };
    const refusal = this.opts.limits ? checkFrameLimits(frame.timestamp, frame.delay.length, this.opts.limits()) : null;
    if (refusal !== null) return { kind: 'fail', error: `frame refused: ${refusal.message}`, drop: refusal.reason, detail: refusal.message, httpOk: true };
    return { kind: 'ok', frame };
  }
}

/** The retina-tracker frame in a response, or why it is not one. Extra keys are left out. */
function toFrame(v: unknown): Frame | string {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'not a JSON object';
  const o = v as Record<string, unknown>;
  const ts = o['timestamp'];
  if (ts === undefined) return 'timestamp missing';
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) return 'timestamp is not an integer >= 0 (ms since the epoch)';
  const arrays: number[][] = [];
  for (const key of ['delay', 'doppler', 'snr']) {
    const a = o[key];
    if (!Array.isArray(a) || !a.every((x) => typeof x === 'number' && Number.isFinite(x))) return `${key} is not an array of finite numbers`;
    arrays.push(a as number[]);
  }
  const [delay, doppler, snr] = arrays as [number[], number[], number[]];
  if (doppler.length !== delay.length) return 'delay and doppler differ in length';
  if (snr.length !== delay.length) return 'delay and snr differ in length';
  let adsb: unknown[];
  // null is taken as absent: a JSON encoder may write a missing list that way.
  if (o['adsb'] === undefined || o['adsb'] === null) {
    adsb = new Array<null>(delay.length).fill(null);
  } else {
    const a = o['adsb'];
    if (!Array.isArray(a)) return 'adsb is not an array';
    if (a.length !== delay.length) return 'delay and adsb differ in length';
    if (!a.every((x) => x === null || (typeof x === 'object' && !Array.isArray(x)))) return 'adsb entries must be null or objects';
    adsb = a;
  }
  // Key order here is the order of the emitted line.
  return { timestamp: ts, delay, doppler, snr, adsb };
}

/** undici reports "fetch failed" with the socket error as cause; its code (ECONNREFUSED ...) is what matters. */
function fetchErrorText(err: unknown): string {
  const cause = err instanceof Error ? (err as { cause?: unknown }).cause : undefined;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code ?? (cause as { errors?: { code?: unknown }[] }).errors?.[0]?.code;
    return typeof code === 'string' && !cause.message.includes(code) ? `${code}: ${cause.message}` : cause.message;
  }
  return errorText(err);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function checkNumber(name: string, v: number, min: number): number {
  if (!Number.isFinite(v) || v < min) throw new RangeError(`${name} must be a number >= ${min}, got ${v}`);
  return v;
}
