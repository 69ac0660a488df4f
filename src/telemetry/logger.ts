// pino, never per frame: connection events, lifecycle transitions, errors (rate
// limited by the caller) and periodic summaries.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'radar-ingest' } });
}

export { RateLimit } from './rate-limit.js';
