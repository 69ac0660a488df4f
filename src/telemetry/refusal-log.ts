// One rate limit for every refusal the host logs (nodes refused, banned, over a
// limit), whatever the id: a flood of distinct ids must not become a flood of log
// lines. What it holds back is summed up in one line when the window ends.
import type { Logger } from 'pino';

export class RefusalLog {
  private windowStart = 0;
  private logged = 0;
  private suppressed = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Refusals not logged, since the start. */
  suppressedTotal = 0;

  constructor(private readonly log: Logger, private readonly perWindow = 10, private readonly windowMs = 10_000,
    private readonly now: () => number = Date.now) {}

  warn(obj: Record<string, unknown>, msg: string): void {
    const t = this.now();
    if (t - this.windowStart >= this.windowMs && this.timer === null) {
      this.windowStart = t;
      this.logged = 0;
    }
    if (this.logged < this.perWindow) {
      this.logged++;
      this.log.warn(obj, msg);
      return;
    }
    this.suppressed++;
    this.suppressedTotal++;
    if (this.timer === null) {
      this.timer = setTimeout(() => this.summary(), Math.max(0, this.windowStart + this.windowMs - t));
      this.timer.unref();
    }
  }

  /** The window ended with refusals held back: one line says how many; a new window starts. */
  private summary(): void {
    this.timer = null;
    const n = this.suppressed;
    this.suppressed = 0;
    this.windowStart = this.now();
    this.logged = 0;
    if (n > 0) this.log.warn({ suppressed: n }, `${n} refusals suppressed in the last ${Math.round(this.windowMs / 1000)} s`);
  }

  /** Logs the pending summary now (shutdown). */
  close(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.summary();
    }
  }
}
