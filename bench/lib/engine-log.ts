// The engine's log as a benchmark reads it (pino JSON lines on a child's stdout):
// lines and bytes, counts by level and by message, the latest lines at or above a
// level kept, and the counts at a mark (before the stop).
import { round } from './stats.js';

const LEVELS: Record<string, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
const bump = (r: Record<string, number>, k: string): void => void (r[k] = (r[k] ?? 0) + 1);

export class EngineLog {
  lines = 0;
  bytes = 0;
  readonly byLevel: Record<string, number> = {};
  private readonly byMsg: Record<string, number> = {};
  /** The last 10 lines at `keepFrom` or above (and unparsed ones). */
  private readonly kept: string[] = [];
  private beforeStop: { lines: number; by_level: Record<string, number> } | null = null;
  private rest = '';

  constructor(stream: NodeJS.ReadableStream, private readonly keepFrom: 40 | 50 = 40) {
    stream.on('data', (d: Buffer) => this.push(d));
  }

  private push(chunk: Buffer): void {
    this.bytes += chunk.length;
    const parts = (this.rest + chunk.toString('utf8')).split('\n');
    this.rest = parts.pop()!.slice(-65536);
    for (const l of parts) {
      if (l.trim() === '') continue;
      this.lines++;
      const lv = Number(/"level":(\d+)/.exec(l)?.[1] ?? NaN);
      const level = LEVELS[lv] ?? 'unparsed';
      bump(this.byLevel, level);
      bump(this.byMsg, `${level}: ${/"msg":"((?:[^"\\]|\\.)*)"/.exec(l)?.[1] ?? '-'}`);
      if (!(lv < this.keepFrom) && this.kept.push(l.slice(0, 400)) > 10) this.kept.shift();
    }
  }

  /** The engine is about to be stopped: what was logged until now is kept apart. */
  markStop(): void {
    this.beforeStop = { lines: this.lines, by_level: { ...this.byLevel } };
  }

  summary() {
    return {
      lines: this.lines, mbytes: round(this.bytes / 2 ** 20, 1), by_level: this.byLevel, before_stop: this.beforeStop,
      by_message: this.byMsg, last_problems: this.kept,
    };
  }
}
