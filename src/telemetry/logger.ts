// pino, never per frame: connection events, lifecycle transitions, errors (rate
// limited by the caller) and periodic summaries.
import { pino, type Logger } from 'pino';
import { build as prettyStream } from 'pino-pretty';

export type { Logger };

export type LogFormat = 'auto' | 'json' | 'pretty';

/**
 * Whether lines are printed for a person: "auto" means exactly when stdout is a
 * terminal, so journald, files and pipes keep one JSON object per line.
 */
export function prettyLogs(format: LogFormat, stdoutIsTty: boolean): boolean {
  return format === 'pretty' || (format === 'auto' && stdoutIsTty);
}

export function createLogger(level: string, format: LogFormat = 'json'): Logger {
  const base = { level, base: { service: 'radar-ingest' } };
  const tty = process.stdout.isTTY === true;
  // Synchronous writes: an asynchronous line still in flight at process.exit() can land
  // after one flushed at exit, and the last line an operator reads must be the last logged.
  if (!prettyLogs(format, tty)) return pino(base, pino.destination({ dest: 1, sync: true }));
  // Synchronous on the main thread (no transport worker), so a fatal line written just
  // before process.exit() is on the terminal. Colour only where a terminal shows it.
  const colour = tty && process.env.NO_COLOR === undefined;
  return pino(base, prettyStream({ colorize: colour, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' }));
}

export { RateLimit } from './rate-limit.js';
