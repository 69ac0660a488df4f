// The connection settings every Redis client of a host uses. Commands fail at once
// while Redis is away (no offline queue, no retries): the callers run on timers or
// clocks of their own and decide what a failure means, so nothing piles up in memory.
import type { RedisOptions } from 'ioredis';

export interface FailFastTimings {
  /** A command slower than this fails (undefined: none, for subscriber connections). */
  commandTimeoutMs: number | undefined;
  connectTimeoutMs: number;
  /** Wait between reconnect attempts. */
  retryMs: number;
}

export function failFastOptions(t: FailFastTimings): RedisOptions {
  return {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: t.commandTimeoutMs,
    connectTimeout: t.connectTimeoutMs,
    retryStrategy: () => t.retryMs,
  };
}
