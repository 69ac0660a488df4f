// Track output of a tracker subprocess: its stdout lines (line-splitter.ts) are
// appended to one JSONL file per day (TrackFileWriter),
// `{outputDir}/{name}_{YYYY-MM-DD}.jsonl` as tracker-host names them. The day is
// the host's local date by default (tracker-host's rule; config `output_date`),
// or the UTC date. On a host of a cluster the file also names the host,
// `{name}_{host}_{YYYY-MM-DD}.jsonl`, so hosts sharing an output directory never
// append to one file.
//
// TrackFileWriter never throws from write(): file-system errors (EACCES,
// ENOSPC, a missing mount, ...) go to `onError`, the lines that could not be
// stored are counted in `linesFailed`, and the file is reopened on the next
// write after `reopenDelayMs` (or at once when the day changes). Writing is
// buffered through a fs.WriteStream; write() returns false when the buffer is
// above its high-water mark, and drained() resolves when it is worth writing
// again, so the caller can pause the tracker's stdout.

import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { dayOf, type OutputDate } from './file-date.js';

// ---------------------------------------------------------------------------
// TrackFileWriter
// ---------------------------------------------------------------------------

export interface TrackFileWriterOptions {
  /** Directory for the files; created (recursively) when missing. */
  outputDir: string;
  /** Tracker name: the file-name prefix. Must not contain path separators. */
  name: string;
  /** Cluster: this host's id, put between the name and the date. Absent: `{name}_{date}.jsonl`. */
  host?: string | undefined;
  /** Clock in ms since the epoch; decides the file's date at each write. Default Date.now. */
  now?: () => number;
  /** "local" (default): the file is named by the date in `timeZone`; "utc": by the UTC date. */
  date?: OutputDate;
  /** IANA zone for "local"; default the host's zone (TZ). */
  timeZone?: string;
  /** File-system errors (the writer never throws from write()). Called at most once per failed open/stream. */
  onError?: (err: Error) => void;
  /** WriteStream buffer size above which write() returns false. Default 64 KiB. */
  highWaterMark?: number;
  /** After an error, writes are dropped (and counted) for this long before the file is reopened. Default 5000. */
  reopenDelayMs?: number;
}

export interface TrackFileWriterStats {
  /** Lines the OS accepted (counted when the write completed). */
  linesWritten: number;
  /** Bytes of those lines, newlines included. */
  bytesWritten: number;
  /** Lines lost: write errors, written while the file was unavailable or after close(). */
  linesFailed: number;
  /** Switches from one day's file to another. */
  rotations: number;
  /** Errors reported to onError. */
  errors: number;
}

/** `{name}_{YYYY-MM-DD}.jsonl` for the date of `ms` (UTC unless `date` is "local"); `{name}_{host}_{YYYY-MM-DD}.jsonl` with a host. */
export function trackFileName(name: string, ms: number, date: OutputDate = 'utc', timeZone?: string, host?: string): string {
  return fileNameFor(name, dayOf(ms, date, timeZone).date, host);
}

function fileNameFor(name: string, day: string, host: string | undefined): string {
  return host === undefined ? `${name}_${day}.jsonl` : `${name}_${host}_${day}.jsonl`;
}

/** Appends track lines to `{outputDir}/{name}_{YYYY-MM-DD}.jsonl`, one file per (local or UTC) day. */
export class TrackFileWriter {
  readonly outputDir: string;
  readonly name: string;
  readonly host: string | undefined;

  private readonly now: () => number;
  private readonly date: OutputDate;
  private readonly timeZone: string | undefined;
  private readonly onError: (err: Error) => void;
  private readonly highWaterMark: number;
  private readonly reopenDelayMs: number;

  private stream: WriteStream | null = null;
  private path: string | null = null;
  /** [dayStart, dayEnd) of the open (or last attempted) file, in ms. */
  private dayStart = 0;
  private dayEnd = -1;
  private day = '';
  private hadFile = false;
  private failedAt: number | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  /** Close promises of every stream not yet closed (the current one and rotated-out ones). */
  private readonly pendingCloses = new Set<Promise<void>>();
  private drainWaiters: (() => void)[] = [];

  private readonly counters: TrackFileWriterStats = { linesWritten: 0, bytesWritten: 0, linesFailed: 0, rotations: 0, errors: 0 };

  constructor(opts: TrackFileWriterOptions) {
    const name = opts.name;
    if (name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name)) {
      throw new TypeError(`invalid tracker name for a file name: ${JSON.stringify(name)}`);
    }
    this.outputDir = opts.outputDir;
    this.name = name;
    if (opts.host !== undefined && (opts.host === '' || /[/\\\0]/.test(opts.host))) {
      throw new TypeError(`invalid host id for a file name: ${JSON.stringify(opts.host)}`);
    }
    this.host = opts.host;
    this.now = opts.now ?? Date.now;
    this.date = opts.date ?? 'local';
    this.timeZone = opts.timeZone;
    this.onError = opts.onError ?? (() => {});
    this.highWaterMark = opts.highWaterMark ?? 64 * 1024;
    this.reopenDelayMs = opts.reopenDelayMs ?? 5000;
  }

  /** Path of the file currently open (or being opened), or null. */
  get currentPath(): string | null {
    return this.stream ? this.path : null;
  }

  /** True when write() last reported back-pressure and the buffer has not drained yet. */
  get needsDrain(): boolean {
    return this.stream !== null && this.stream.writableNeedDrain;
  }

  stats(): TrackFileWriterStats {
    return { ...this.counters };
  }

  /**
   * Appends one line (a trailing '\n' is added unless present; the caller must
   * not pass embedded newlines). The line goes whole into the file of the
   * date at this call. Never throws. Returns false when the stream's buffer is
   * above its high-water mark: wait for drained() before writing more.
   */
  write(line: string): boolean {
    if (this.closed) {
      this.counters.linesFailed++;
      return true;
    }
    const t = this.now();
    if (t < this.dayStart || t >= this.dayEnd) {
      this.openFor(t);
    } else if (this.stream === null && this.failedAt !== null && t - this.failedAt >= this.reopenDelayMs) {
      this.openFor(t);
    }
    const stream = this.stream;
    if (stream === null || stream.destroyed) {
      this.counters.linesFailed++;
      return true;
    }
    const data = line.endsWith('\n') ? line : line + '\n';
    const bytes = Buffer.byteLength(data, 'utf8');
    const c = this.counters;
    return stream.write(data, (err) => {
      if (err) {
        c.linesFailed++;
      } else {
        c.linesWritten++;
        c.bytesWritten += bytes;
      }
    });
  }

  /** Resolves when writing may continue: at once unless the buffer is above its high-water mark. */
  drained(): Promise<void> {
    if (!this.needsDrain) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Flushes and closes the file(s). Later writes are counted as failed. Idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.releaseStream();
    this.wakeDrainWaiters();
    this.closing = Promise.all([...this.pendingCloses]).then(() => {});
    return this.closing;
  }

  private openFor(t: number): void {
    const day = dayOf(t, this.date, this.timeZone);
    const switching = this.hadFile && day.date !== this.day;
    if (this.stream !== null) this.releaseStream();
    this.day = day.date;
    this.dayStart = day.start;
    this.dayEnd = day.end;
    this.failedAt = null;
    if (switching) this.counters.rotations++;
    this.hadFile = true;

    const path = join(this.outputDir, fileNameFor(this.name, day.date, this.host));
    this.path = path;
    try {
      mkdirSync(this.outputDir, { recursive: true });
    } catch (err) {
      this.fail(err, `cannot create output directory ${this.outputDir}`, t);
      return;
    }
    let stream: WriteStream;
    try {
      stream = createWriteStream(path, { flags: 'a', highWaterMark: this.highWaterMark });
    } catch (err) {
      this.fail(err, `cannot open ${path}`, t);
      return;
    }
    this.stream = stream;
    const closedP: Promise<void> = new Promise<void>((resolve) => {
      stream.once('close', () => {
        this.pendingCloses.delete(closedP);
        resolve();
      });
    });
    this.pendingCloses.add(closedP);
    stream.on('drain', () => {
      if (stream === this.stream) this.wakeDrainWaiters();
    });
    stream.on('error', (err) => {
      // The stream is destroyed by now; its buffered lines fail through their callbacks.
      const current = stream === this.stream;
      if (current) {
        this.stream = null;
        this.wakeDrainWaiters();
      }
      this.fail(err, `track file ${path}`, current ? this.now() : null);
    });
  }

  /** Ends the current stream (flushes it in the background) and forgets it. */
  private releaseStream(): void {
    const s = this.stream;
    this.stream = null;
    if (s !== null && !s.destroyed) s.end();
    this.wakeDrainWaiters();
  }

  private fail(err: unknown, what: string, at: number | null): void {
    if (at !== null) this.failedAt = at;
    this.counters.errors++;
    const e = err instanceof Error ? err : new Error(String(err));
    const wrapped = new Error(`${what}: ${e.message}`, { cause: e });
    if ('code' in e) (wrapped as NodeJS.ErrnoException).code = (e as NodeJS.ErrnoException).code;
    try {
      this.onError(wrapped);
    } catch {
      // a throwing callback must not break the writer
    }
  }

  private wakeDrainWaiters(): void {
    if (this.drainWaiters.length === 0) return;
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of w) resolve();
  }
}
