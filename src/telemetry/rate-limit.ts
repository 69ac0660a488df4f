// A per-key rate limit for log lines (never log per frame).
import { Lru } from '../util/lru.js';

/**
 * Allows `limit` events per `windowMs` for each key; counts what it suppressed.
 * At most `maxKeys` keys are remembered (the least recently used is forgotten), so
 * keys a peer can choose cannot grow it without a bound.
 */
export class RateLimit {
  private readonly windows: Lru<string, { start: number; n: number; suppressed: number }>;
  constructor(private readonly limit: number, private readonly windowMs: number, private readonly now: () => number = Date.now,
    maxKeys = 1024) {
    this.windows = new Lru(maxKeys);
  }
  /** Keys remembered. */
  get size(): number {
    return this.windows.size;
  }
  /** Returns -1 to suppress, else how many were suppressed since the last allowed one. */
  take(key: string): number {
    const t = this.now();
    let w = this.windows.get(key);
    if (!w || t - w.start >= this.windowMs) {
      const suppressed = w ? w.suppressed : 0;
      w = { start: t, n: 0, suppressed: 0 };
      this.windows.set(key, w);
      w.n = 1;
      return suppressed;
    }
    if (w.n < this.limit) {
      w.n++;
      return 0;
    }
    w.suppressed++;
    return -1;
  }
}
