// Forwards track events to an HTTP endpoint (`api_forward: {enabled, url,
// headers, batch_max_events, batch_max_ms}`), with bounded retries and a
// bounded queue.
//
// Wire format: POST `url` with the configured headers, `content-type:
// application/json` and `accept: application/json` (unless the headers set
// them). With `batchMaxEvents` 1 (the default, tracker-host's format) each
// event is its own request and the body is that one JSON object, the
// tracker's line as it is. Above 1 the body is a JSON array of up to that many
// events, `[{...},{...}]`, even for one event: an opt-in for receivers that
// accept arrays. Events are never re-serialised.
//
// Order and pace: one request at a time per forwarder, so events arrive in
// the order the tracker printed them. An event is sent as soon as no request
// is in flight; while one is, events wait in the queue. With batching, a
// batch goes when `batchMaxEvents` (or `batchMaxChars`) events wait, or
// `batchWindowMs` after its first event; when a request completes, whatever
// waited goes at once (within those limits). Requests reuse a kept-alive
// connection, so one event per POST costs a round trip on an open socket,
// not a new connection (docs/trackers.md has the measured rate).
//
// Failures: a network error, a timeout (`requestTimeoutMs`, the whole exchange),
// a 5xx or a 429 is retried, up to `maxAttempts` attempts in all, after
// exponential backoff (`backoffBaseMs` doubling, at most `backoffMaxMs`, with
// jitter; a Retry-After header is honoured up to backoffMaxMs). Any other
// non-2xx status (4xx but 429, or a 3xx: redirects are not followed) fails the request at
// once: resending the same body would fail the same way. A request that runs out
// of attempts is counted `failed`, and the forwarder pauses `backoffMaxMs`
// before the next one so a dead endpoint is not hammered. Meanwhile the queue
// keeps at most `maxQueue` events (and `maxQueueChars` characters), dropping
// the oldest (counted `dropped`), so the freshest tracks are the ones delivered
// when the endpoint comes back.
// A retry after a timeout or a 5xx resends a body the server may already have
// processed: delivery is at least once, with duplicates only from retries.

import { HttpPoster } from './http-post.js';

const DEFAULTS = {
  batchMaxEvents: 1,
  batchMaxChars: 1024 * 1024,
  batchWindowMs: 100,
  maxQueue: 10_000,
  maxQueueChars: 64 * 1024 * 1024,
  maxAttempts: 3,
  backoffBaseMs: 250,
  backoffMaxMs: 5_000,
  requestTimeoutMs: 10_000,
  closeDeadlineMs: 5_000,
};

export interface ApiForwarderOptions {
  /** false: enqueue() does nothing (the config's `api_forward.enabled`). Default true. */
  enabled?: boolean;
  /** http(s) endpoint; validated when enabled. */
  url: string;
  /** Extra request headers, e.g. Authorization. */
  headers?: Record<string, string>;
  /** Events per POST at most; 1 (default): the body is the event itself, not an array. */
  batchMaxEvents?: number;
  /** Body size per POST at most, in characters of event JSON; a single larger event goes alone. Default 1 Mi. */
  batchMaxChars?: number;
  /** Longest wait of an event before its batch is sent (when no request is in flight). Default 100 ms. */
  batchWindowMs?: number;
  /** Events waiting (not counting the batch in flight) at most; the oldest is dropped beyond. Default 10,000. */
  maxQueue?: number;
  /** The same bound in characters of event JSON, so a flood of huge events cannot exhaust memory. Default 64 Mi. */
  maxQueueChars?: number;
  /** Attempts per batch, the first included. Default 3. */
  maxAttempts?: number;
  /** Backoff before the first retry; doubles per retry. Default 250 ms. */
  backoffBaseMs?: number;
  /** Backoff cap, and the pause after a batch that exhausted its attempts. Default 5000 ms. */
  backoffMaxMs?: number;
  /** Per request, response body included. Default 10 000 ms. */
  requestTimeoutMs?: number;
  /** A batch that failed for good (after its last attempt, or rejected with a 4xx). Never per retry. */
  onError?: (err: ForwardError) => void;
}

export interface ApiForwarderStats {
  /** Events acknowledged with a 2xx. */
  sent: number;
  /** Events of batches given up: retries exhausted, non-retryable status, or aborted by close(). */
  failed: number;
  /** Events evicted from the full queue (oldest first), enqueued after close(), or unsent at its deadline. */
  dropped: number;
  /** Retry attempts (requests beyond each batch's first). */
  retries: number;
  /** enqueue() inputs that were not JSON (or not serialisable). */
  invalid: number;
  /** HTTP requests started (attempts). */
  requests: number;
  /** Events waiting now. */
  queued: number;
  /** Events in the request in flight now. */
  inFlight: number;
}

/** A batch that could not be delivered. */
export class ForwardError extends Error {
  constructor(
    message: string,
    /** HTTP status of the last attempt, when there was a response. */
    readonly status: number | undefined,
    /** Attempts made for the batch. */
    readonly attempts: number,
    /** Events in the batch. */
    readonly events: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ForwardError';
  }
}

/** FIFO of JSON texts with O(1) push, drop-oldest and batch take; tracks its size in characters. */
class EventQueue {
  private items: string[] = [];
  private head = 0;
  chars = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(s: string): void {
    this.items.push(s);
    this.chars += s.length;
  }

  dropOldest(): void {
    this.chars -= this.items[this.head]!.length;
    this.head++;
    this.compact();
  }

  /** The oldest events, at most n and maxChars characters (but at least one). */
  take(n: number, maxChars: number): string[] {
    const limit = Math.min(this.items.length, this.head + n);
    let end = this.head;
    let chars = 0;
    while (end < limit) {
      const len = this.items[end]!.length;
      if (end > this.head && chars + len > maxChars) break;
      chars += len;
      end++;
    }
    const out = this.items.slice(this.head, end);
    this.head = end;
    this.chars -= chars;
    this.compact();
    return out;
  }

  clear(): number {
    const n = this.length;
    this.items = [];
    this.head = 0;
    this.chars = 0;
    return n;
  }

  private compact(): void {
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}

type Attempt =
  | { kind: 'ok' }
  | { kind: 'retry'; err: Error; status?: number; retryAfterMs?: number }
  | { kind: 'fatal'; err: Error; status?: number };

export class ApiForwarder {
  readonly enabled: boolean;
  readonly url: string;

  /** The connection to `url` (null when disabled). */
  private readonly poster: HttpPoster | null = null;
  private readonly batchMaxEvents: number;
  private readonly batchMaxChars: number;
  private readonly maxQueueChars: number;
  private readonly batchWindowMs: number;
  private readonly maxQueue: number;
  private readonly maxAttempts: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly requestTimeoutMs: number;
  private readonly onError: (err: ForwardError) => void;

  private readonly queue = new EventQueue();
  private readonly counters = { sent: 0, failed: 0, dropped: 0, retries: 0, invalid: 0, requests: 0 };
  private inFlight = 0;
  private windowTimer: NodeJS.Timeout | null = null;
  private pumping: Promise<void> | null = null;
  /** Wakes the post-failure pause early (close()). */
  private wakePause: (() => void) | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  /** Aborted at the close() deadline: cancels the request in flight and any wait. */
  private readonly closeAbort = new AbortController();

  constructor(opts: ApiForwarderOptions) {
    this.enabled = opts.enabled ?? true;
    this.url = opts.url;
    this.batchMaxEvents = positiveInt('batchMaxEvents', opts.batchMaxEvents ?? DEFAULTS.batchMaxEvents);
    this.batchMaxChars = positiveInt('batchMaxChars', opts.batchMaxChars ?? DEFAULTS.batchMaxChars);
    this.maxQueueChars = positiveInt('maxQueueChars', opts.maxQueueChars ?? DEFAULTS.maxQueueChars);
    this.batchWindowMs = nonNegative('batchWindowMs', opts.batchWindowMs ?? DEFAULTS.batchWindowMs);
    this.maxQueue = positiveInt('maxQueue', opts.maxQueue ?? DEFAULTS.maxQueue);
    this.maxAttempts = positiveInt('maxAttempts', opts.maxAttempts ?? DEFAULTS.maxAttempts);
    this.backoffBaseMs = nonNegative('backoffBaseMs', opts.backoffBaseMs ?? DEFAULTS.backoffBaseMs);
    this.backoffMaxMs = nonNegative('backoffMaxMs', opts.backoffMaxMs ?? DEFAULTS.backoffMaxMs);
    this.requestTimeoutMs = positiveInt('requestTimeoutMs', opts.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs);
    this.onError = opts.onError ?? (() => {});
    // Validates header names and values now rather than on every request.
    const headers = new Headers(opts.headers ?? {});
    if (!headers.has('content-type')) headers.set('content-type', 'application/json');
    if (!headers.has('accept')) headers.set('accept', 'application/json');
    if (this.enabled) {
      let u: URL;
      try {
        u = new URL(opts.url);
      } catch {
        throw new TypeError(`api_forward.url is not a valid URL: ${JSON.stringify(opts.url)}`);
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') {
        throw new TypeError(`api_forward.url must be http or https: ${JSON.stringify(opts.url)}`);
      }
      this.poster = new HttpPoster(opts.url, headers, this.requestTimeoutMs);
    }
  }

  stats(): ApiForwarderStats {
    return { ...this.counters, queued: this.queue.length, inFlight: this.inFlight };
  }

  /**
   * Queues one track event: a JSON text (a tracker stdout line; it is checked
   * with JSON.parse and sent as is) or a value to serialise. Never throws and
   * never blocks; a full queue drops its oldest event.
   */
  enqueue(event: string | object): void {
    if (!this.enabled) return;
    let text: string;
    try {
      if (typeof event === 'string') {
        JSON.parse(event);
        text = event;
      } else {
        text = JSON.stringify(event);
      }
    } catch {
      this.counters.invalid++;
      return;
    }
    this.enqueueJson(text);
  }

  /** Queues one event whose text the caller has already parsed as a JSON object (not checked again). */
  enqueueJson(text: string): void {
    if (!this.enabled) return;
    if (this.closed || text.length > this.maxQueueChars) {
      this.counters.dropped++;
      return;
    }
    while (this.queue.length >= this.maxQueue || (this.queue.length > 0 && this.queue.chars + text.length > this.maxQueueChars)) {
      this.queue.dropOldest();
      this.counters.dropped++;
    }
    this.queue.push(text);
    this.schedule();
  }

  /**
   * Stops accepting events and sends what is queued, retries included, for at
   * most `deadlineMs` (a duration, default 5000). At the deadline the request in
   * flight is aborted (its events count as failed) and what is still queued is
   * counted as dropped. Resolves by the deadline; idempotent.
   */
  close(deadlineMs: number = DEFAULTS.closeDeadlineMs): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.closing = this.finish(deadlineMs);
    return this.closing;
  }

  private async finish(deadlineMs: number): Promise<void> {
    this.clearWindow();
    const wake = this.wakePause;
    this.wakePause = null;
    wake?.();
    const timer = setTimeout(() => this.closeAbort.abort(new Error('api forwarder closed')), Math.max(0, deadlineMs));
    try {
      if (!this.pumping && this.queue.length > 0) this.startPump();
      while (this.pumping) await this.pumping;
    } finally {
      clearTimeout(timer);
      this.closeAbort.abort(new Error('api forwarder closed'));
      this.counters.dropped += this.queue.clear();
      this.poster?.close();
    }
  }

  private schedule(): void {
    if (this.pumping) return; // the pump takes it when the request in flight completes
    if (this.queue.length >= this.batchMaxEvents || this.queue.chars >= this.batchMaxChars) {
      this.clearWindow();
      // Not synchronously: the caller may be adding more events in this tick.
      this.windowTimer = setTimeout(() => this.startPump(), 0);
      this.windowTimer.unref();
    } else if (this.windowTimer === null) {
      this.windowTimer = setTimeout(() => this.startPump(), this.batchWindowMs);
      this.windowTimer.unref();
    }
  }

  private clearWindow(): void {
    if (this.windowTimer !== null) {
      clearTimeout(this.windowTimer);
      this.windowTimer = null;
    }
  }

  private startPump(): void {
    this.clearWindow();
    if (this.pumping) return;
    this.pumping = this.pump().finally(() => {
      this.pumping = null;
      // Events that arrived during the pump's last await, after its final check.
      if (this.queue.length > 0 && !this.closeAbort.signal.aborted) {
        if (this.closed) this.startPump();
        else this.schedule();
      }
    });
  }

  private async pump(): Promise<void> {
    while (this.queue.length > 0 && !this.closeAbort.signal.aborted) {
      const batch = this.queue.take(this.batchMaxEvents, this.batchMaxChars);
      this.inFlight = batch.length;
      let outage = false;
      try {
        outage = await this.deliver(batch);
      } finally {
        this.inFlight = 0;
      }
      if (outage && !this.closed) await this.pause(this.backoffMaxMs);
    }
  }

  /** Sends one batch with retries. Returns true when it failed for an outage (not a rejection). */
  private async deliver(batch: string[]): Promise<boolean> {
    const body = this.batchMaxEvents === 1 ? batch[0]! : `[${batch.join(',')}]`;
    for (let attempt = 1; ; attempt++) {
      this.counters.requests++;
      const r = await this.attempt(body);
      if (r.kind === 'ok') {
        this.counters.sent += batch.length;
        return false;
      }
      const aborted = this.closeAbort.signal.aborted;
      if (r.kind === 'fatal' || aborted || attempt >= this.maxAttempts) {
        this.counters.failed += batch.length;
        const why = aborted ? 'aborted at close' : r.kind === 'fatal' ? 'rejected' : `gave up after ${attempt} attempts`;
        this.report(new ForwardError(`track forward to ${this.url} ${why}: ${r.err.message}`, r.status, attempt, batch.length, { cause: r.err }));
        return r.kind === 'retry';
      }
      this.counters.retries++;
      await this.sleep(this.backoff(attempt, r.retryAfterMs));
    }
  }

  private async attempt(body: string): Promise<Attempt> {
    let res;
    try {
      res = await this.poster!.post(body, this.closeAbort.signal);
    } catch (err) {
      return { kind: 'retry', err: err instanceof Error ? err : new Error(String(err)) };
    }
    if (res.status >= 200 && res.status < 300) return { kind: 'ok' };
    const detail = res.text.length > 0 ? `: ${res.text}` : '';
    const err = new Error(`HTTP ${res.status}${detail}`);
    if (res.status >= 500 || res.status === 429) {
      const retryAfterMs = parseRetryAfter(res.retryAfter);
      return retryAfterMs === undefined ? { kind: 'retry', err, status: res.status } : { kind: 'retry', err, status: res.status, retryAfterMs };
    }
    return { kind: 'fatal', err, status: res.status };
  }

  private backoff(retry: number, retryAfterMs: number | undefined): number {
    const exp = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** (retry - 1));
    // Equal jitter: [exp/2, exp), so forwarders of many trackers do not retry in step.
    const d = exp / 2 + (Math.random() * exp) / 2;
    return retryAfterMs === undefined ? d : Math.max(d, Math.min(retryAfterMs, this.backoffMaxMs));
  }

  /** Waits `ms`, or less when close() reaches its deadline. */
  private sleep(ms: number): Promise<void> {
    const signal = this.closeAbort.signal;
    if (signal.aborted || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, ms);
      t.unref();
      signal.addEventListener('abort', done);
    });
  }

  /** The pause after a failed batch: like sleep(), and also cut short by close(). */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let settled = false;
      const wake = (): void => {
        if (settled) return;
        settled = true;
        if (this.wakePause === wake) this.wakePause = null;
        resolve();
      };
      this.wakePause = wake;
      void this.sleep(ms).then(wake);
    });
  }

  private report(err: ForwardError): void {
    try {
      this.onError(err);
    } catch {
      // a throwing callback must not stop the forwarder
    }
  }
}

function parseRetryAfter(v: string | null): number | undefined {
  if (v === null) return undefined;
  const s = v.trim();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  return v;
}

function nonNegative(name: string, v: number): number {
  if (!Number.isFinite(v) || v < 0) throw new RangeError(`${name} must be a non-negative number, got ${v}`);
  return v;
}
