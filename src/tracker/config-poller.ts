// Polls one node's radar config (`trackers[].config_url`) and says when it
// changed. The node's geometry lives there; a tracker started with the old one
// tracks nonsense, so the instance restarts its tracker on a change, and
// geolocators read the latest config from here.
//
// Rules (the state machine below is pure; the clock is an input):
// - the first poll goes at once; its answer is the baseline (no change);
// - then one poll every intervalMs (config_poll_interval_sec), counted from the
//   end of the previous one, one request at a time;
// - answers are compared as canonical JSON (object keys sorted, no whitespace),
//   so a reordered or re-indented answer is not a change;
// - a failure (HTTP status other than 2xx, timeout, body over maxBodyBytes,
//   not JSON, network) keeps the last good config and waits
//   intervalMs * 2^(n-1) after the n-th failure in a row, at most
//   max(intervalMs, MAX_BACKOFF_MS): a broken endpoint is asked less often, and
//   never less than once per MAX_BACKOFF_MS (or per interval, if that is longer).
import { getCapped } from '../util/read-capped.js';
import { PollLoop } from '../util/poll-loop.js';

/** Why a poll failed (the label of radar_ingest_node_config_poll_failures_total). */
export const CONFIG_POLL_FAILURES = ['http_status', 'timeout', 'too_large', 'invalid_json', 'network'] as const;
export type ConfigPollFailure = (typeof CONFIG_POLL_FAILURES)[number];

/** The shortest interval between polls, whatever config_poll_interval_sec says. */
export const MIN_INTERVAL_MS = 100;

/** The longest wait between polls of a failing endpoint (unless the interval itself is longer). */
export const MAX_BACKOFF_MS = 300_000;

export interface ConfigPollState {
  /** Canonical JSON of the current config (null: no answer yet). */
  readonly canonical: string | null;
  /** The current config, as parsed (null until the first answer). */
  readonly value: unknown;
  /** now() of the last good answer (null: none yet). */
  readonly fetchedAt: number | null;
  /** now() when the current config replaced another (null: the baseline is current). */
  readonly changedAt: number | null;
  readonly changes: number;
  readonly polls: number;
  readonly failuresInRow: number;
  readonly lastError: string | null;
  readonly lastErrorAt: number | null;
  /** now() when the next poll is due. */
  readonly nextAt: number;
}

export function initialPollState(now: number): ConfigPollState {
  return {
    canonical: null, value: null, fetchedAt: null, changedAt: null, changes: 0, polls: 0, failuresInRow: 0,
    lastError: null, lastErrorAt: null, nextAt: now,
  };
}

/** Sorted keys at every level, no whitespace: two answers with the same content compare equal. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
}

/** The wait after the n-th failure in a row. */
export function failureDelayMs(n: number, intervalMs: number): number {
  const cap = Math.max(intervalMs, MAX_BACKOFF_MS);
  return Math.min(cap, intervalMs * 2 ** Math.min(30, Math.max(0, n - 1)));
}

export type PollVerdict = 'baseline' | 'same' | 'changed';

/** A good answer: the new state and whether it is the baseline, the same config, or a change. */
export function onAnswer(s: ConfigPollState, value: unknown, now: number, intervalMs: number): { state: ConfigPollState; verdict: PollVerdict } {
  const canonical = canonicalJson(value);
  const verdict: PollVerdict = s.canonical === null ? 'baseline' : canonical === s.canonical ? 'same' : 'changed';
  const changed = verdict === 'changed';
  return {
    verdict,
    state: {
      ...s, canonical, value: verdict === 'same' ? s.value : value, fetchedAt: now, polls: s.polls + 1, failuresInRow: 0,
      changes: s.changes + (changed ? 1 : 0), changedAt: changed ? now : s.changedAt, nextAt: now + intervalMs,
    },
  };
}

/** A failed poll: the last good config stays; the next poll backs off. */
export function onFailure(s: ConfigPollState, error: string, now: number, intervalMs: number): ConfigPollState {
  const n = s.failuresInRow + 1;
  return { ...s, polls: s.polls + 1, failuresInRow: n, lastError: error, lastErrorAt: now, nextAt: now + failureDelayMs(n, intervalMs) };
}

/** What a listener hears: the baseline (previous null) and every change. */
export interface ConfigEvent {
  readonly value: unknown;
  readonly previous: unknown;
  readonly fetchedAt: number;
  readonly first: boolean;
}

export interface ConfigPollerOptions {
  /** http or https; validated in the constructor (TypeError). */
  url: string;
  intervalMs: number;
  /** Per request, body included. Default 10 s. */
  requestTimeoutMs?: number;
  /** Larger answers are refused (`too_large`), read no further. Default 1 MiB. */
  maxBodyBytes?: number;
  now?: () => number;
  /** Each failed poll, with its reason (counted by the caller). */
  onFailure?(reason: ConfigPollFailure, error: string): void;
}

/** The API's view of a poller. */
export interface ConfigPollView {
  url: string;
  config: unknown;
  fetched_at: string | null;
  changed_at: string | null;
  changes: number;
  polls: number;
  last_error: string | null;
  last_error_at: string | null;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

type Outcome = { ok: true; value: unknown } | { ok: false; reason: ConfigPollFailure; error: string } | null;

/** The I/O shell: timers and one GET at a time around the state machine above. */
export class ConfigPoller {
  readonly url: string;
  private readonly opts: ConfigPollerOptions;
  private readonly now: () => number;
  private readonly timeoutMs: number;
  private readonly maxBody: number;
  private _state: ConfigPollState;
  private readonly listeners = new Set<(ev: ConfigEvent) => void>();
  private readonly loop: PollLoop;

  constructor(opts: ConfigPollerOptions) {
    let u: URL;
    try {
      u = new URL(opts.url);
    } catch {
      throw new TypeError(`config_url is not a valid URL: ${JSON.stringify(opts.url)}`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`config_url must be http or https: ${JSON.stringify(opts.url)}`);
    this.url = opts.url;
    // config_poll_interval_sec 0 would poll in a tight loop: at most 10 polls a second.
    this.opts = { ...opts, intervalMs: Math.max(MIN_INTERVAL_MS, Number.isFinite(opts.intervalMs) ? opts.intervalMs : MIN_INTERVAL_MS) };
    this.now = opts.now ?? Date.now;
    this.timeoutMs = opts.requestTimeoutMs ?? 10_000;
    this.maxBody = opts.maxBodyBytes ?? 1024 * 1024;
    this._state = initialPollState(this.now());
    this.loop = new PollLoop(async (signal) => {
      this.apply(await this.fetchOnce(signal));
      return this.nextDelay();
    }, (err) => {
      this.apply({ ok: false, reason: 'network', error: `poller error: ${(err as Error)?.message ?? String(err)}` });
      return this.nextDelay();
    });
  }

  get state(): ConfigPollState {
    return this._state;
  }

  /** The latest config and when it was fetched; null before the first good answer. */
  get latest(): { value: unknown; fetchedAt: number } | null {
    const s = this._state;
    return s.fetchedAt === null ? null : { value: s.value, fetchedAt: s.fetchedAt };
  }

  /** Hears the baseline and every change (a throwing listener is ignored). Returns the unsubscribe. */
  subscribe(fn: (ev: ConfigEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  view(): ConfigPollView {
    const s = this._state;
    return {
      url: this.url, config: s.value, fetched_at: iso(s.fetchedAt), changed_at: iso(s.changedAt), changes: s.changes,
      polls: s.polls, last_error: s.lastError, last_error_at: iso(s.lastErrorAt),
    };
  }

  /** The first poll goes at once. Idempotent; nothing after stop(). */
  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop(new Error('config poller stopped'));
  }

  private nextDelay(): number | null {
    return this.loop.stopped ? null : this._state.nextAt - this.now();
  }

  private apply(o: Outcome): void {
    if (o === null || this.loop.stopped) return;
    const now = this.now();
    if (!o.ok) {
      this._state = onFailure(this._state, o.error, now, this.opts.intervalMs);
      try {
        this.opts.onFailure?.(o.reason, o.error);
      } catch { /* an observer must not stop the poller */ }
      return;
    }
    const previous = this._state.value;
    const t = onAnswer(this._state, o.value, now, this.opts.intervalMs);
    this._state = t.state;
    if (t.verdict === 'same') return;
    const ev: ConfigEvent = { value: o.value, previous: t.verdict === 'baseline' ? null : previous, fetchedAt: now, first: t.verdict === 'baseline' };
    for (const fn of this.listeners) {
      try {
        fn(ev);
      } catch { /* a listener must not stop the poller */ }
    }
  }

  private async fetchOnce(signal: AbortSignal): Promise<Outcome> {
    const r = await getCapped(this.url, { headers: { accept: 'application/json' }, timeoutMs: this.timeoutMs, maxBytes: this.maxBody, signal });
    switch (r.kind) {
      case 'aborted':
        return null;
      case 'status':
        return { ok: false, reason: 'http_status', error: `HTTP ${r.status}` };
      case 'too_large':
        return { ok: false, reason: 'too_large', error: `config answer over ${this.maxBody} bytes (refused)` };
      case 'timeout':
        return { ok: false, reason: 'timeout', error: `no answer within ${this.timeoutMs} ms` };
      case 'network': {
        const cause = (r.error as { cause?: { message?: string; code?: string } }).cause;
        return { ok: false, reason: 'network', error: cause?.code ?? cause?.message ?? (r.error as Error).message };
      }
      case 'body':
        try {
          return { ok: true, value: JSON.parse(r.body.toString('utf8')) as unknown };
        } catch (err) {
          return { ok: false, reason: 'invalid_json', error: `config answer is not JSON: ${(err as Error).message}` };
        }
    }
  }
}
