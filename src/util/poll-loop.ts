// The I/O shell of a poller: one poll at a time, each scheduling the next by
// what it returns, stoppable at any moment (the poll in flight is aborted
// through its signal and awaited, so nothing runs after stop() resolves).

/**
 * One poll: resolves with the wait before the next one, or null to end the loop.
 * A rejection goes to `onError`, which answers the same way, so a bug in a poll
 * cannot end the polling unnoticed.
 */
export type PollOnce = (signal: AbortSignal) => Promise<number | null>;

export class PollLoop {
  private started = false;
  private _stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private abort: AbortController | null = null;

  constructor(
    private readonly once: PollOnce,
    private readonly onError: (err: unknown) => number | null,
  ) {}

  get stopped(): boolean {
    return this._stopped;
  }

  /** The first poll goes at once. Idempotent; nothing after stop(). */
  start(): void {
    if (this.started || this._stopped) return;
    this.started = true;
    this.poll();
  }

  /** Aborts the poll in flight and clears the timer; resolves when nothing is pending. Idempotent. */
  async stop(reason: Error): Promise<void> {
    this._stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.abort?.abort(reason);
    while (this.inFlight) await this.inFlight;
  }

  private poll(): void {
    this.timer = null;
    if (this._stopped) return;
    const ac = new AbortController();
    this.abort = ac;
    const p: Promise<void> = this.once(ac.signal)
      .catch((err: unknown) => this.onError(err))
      .then((delay) => {
        if (this.abort === ac) this.abort = null;
        if (this.inFlight === p) this.inFlight = null;
        if (this._stopped || delay === null) return;
        this.timer = setTimeout(() => this.poll(), Math.max(0, delay));
        this.timer.unref();
      });
    this.inFlight = p;
  }
}
