// Turns a child's stdout or stderr (chunks of bytes) into complete lines, never
// holding more than maxLineBytes of one line: a tracker that prints a huge line,
// or no newline at all, costs bounded memory.

/** Default limit for one line, the same 1 MiB as the node line protocol. */
export const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;

/** What happens to a line longer than maxLineBytes. */
export type OversizePolicy = 'drop' | 'truncate';

export interface LineSplitterOptions {
  /** Longest line kept, in bytes without its '\n'. Default 1 MiB. */
  maxLineBytes?: number;
  /**
   * 'drop' (default): a longer line is dropped whole (a cut track event would
   * be a broken record). 'truncate': its first maxLineBytes are returned once,
   * followed by TRUNCATED_MARK (a log line is still worth reading).
   */
  oversize?: OversizePolicy;
}

/** Appended to a line returned cut under the 'truncate' policy. */
export const TRUNCATED_MARK = ' [truncated]';

/**
 * Lines are split on bytes and decoded as UTF-8 only when complete, so a
 * multi-byte character split across chunks is reassembled. A trailing '\r' is
 * removed; empty lines are skipped. Every line over the limit is counted once in
 * `oversizeLines`, whatever the policy.
 */
export class LineSplitter {
  readonly maxLineBytes: number;
  readonly oversize: OversizePolicy;
  /** Lines returned so far (truncated ones included). */
  lines = 0;
  /** Lines longer than maxLineBytes (dropped, or returned truncated). */
  oversizeLines = 0;

  private parts: Buffer[] = [];
  private partBytes = 0;
  /** Inside an oversize line that was already handled: discard bytes up to the next '\n'. */
  private skipping = false;

  constructor(opts: LineSplitterOptions = {}) {
    const max = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`maxLineBytes must be a positive integer, got ${max}`);
    const policy = opts.oversize ?? 'drop';
    if (policy !== 'drop' && policy !== 'truncate') throw new RangeError(`oversize must be 'drop' or 'truncate', got ${String(policy)}`);
    this.maxLineBytes = max;
    this.oversize = policy;
  }

  /** Bytes of an unterminated line held back. */
  get buffered(): number {
    return this.partBytes;
  }

  /** Feeds one chunk; returns the lines it completed (possibly none), in order. */
  push(chunk: Buffer | string): string[] {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    const out: string[] = [];
    let pos = 0;
    for (;;) {
      const nl = buf.indexOf(10, pos);
      if (nl < 0) {
        this.hold(buf, pos, out);
        return out;
      }
      if (this.skipping) {
        this.skipping = false; // the oversize line ends here; it was already handled
      } else if (this.partBytes + (nl - pos) > this.maxLineBytes) {
        this.overLimit(buf, pos, nl, out);
      } else {
        this.emit(buf, pos, nl, out);
      }
      pos = nl + 1;
    }
  }

  /**
   * End of stream: returns the unterminated last line, or null, and resets the
   * splitter. Not returned by push(): on stdout it may be a record cut short by
   * a tracker that died mid-write, and the caller decides what it is worth.
   */
  end(): string | null {
    const skipped = this.skipping;
    this.skipping = false;
    if (skipped || this.partBytes === 0) {
      this.clearParts();
      return null;
    }
    const text = stripCr(Buffer.concat(this.parts, this.partBytes).toString('utf8'));
    this.clearParts();
    return text === '' ? null : text;
  }

  /** A line over the limit (bytes pos..end of buf after what is held): counted; cut or dropped. */
  private overLimit(buf: Buffer, pos: number, end: number, out: string[]): void {
    this.oversizeLines++;
    if (this.oversize === 'truncate') {
      const take = Math.min(end - pos, this.maxLineBytes - this.partBytes);
      if (take > 0) {
        this.parts.push(buf.subarray(pos, pos + take));
        this.partBytes += take;
      }
      out.push(`${Buffer.concat(this.parts, this.partBytes).toString('utf8')}${TRUNCATED_MARK}`);
      this.lines++;
    }
    this.clearParts();
  }

  private hold(buf: Buffer, pos: number, out: string[]): void {
    const rem = buf.length - pos;
    if (rem === 0 || this.skipping) return;
    if (this.partBytes + rem > this.maxLineBytes) {
      // Already too long without its newline: handle it now, then skip the rest of it.
      this.overLimit(buf, pos, buf.length, out);
      this.skipping = true;
      return;
    }
    // Copy: the caller may reuse its chunk, and a small tail must not pin a large one.
    this.parts.push(Buffer.from(buf.subarray(pos)));
    this.partBytes += rem;
    // A long line arriving in many small chunks: keep one buffer, not hundreds.
    if (this.parts.length > 16) this.parts = [Buffer.concat(this.parts, this.partBytes)];
  }

  private emit(buf: Buffer, start: number, end: number, out: string[]): void {
    let text: string;
    if (this.partBytes === 0) {
      text = buf.toString('utf8', start, end);
    } else {
      this.parts.push(buf.subarray(start, end));
      text = Buffer.concat(this.parts, this.partBytes + (end - start)).toString('utf8');
      this.clearParts();
    }
    text = stripCr(text);
    if (text === '') return;
    this.lines++;
    out.push(text);
  }

  private clearParts(): void {
    this.parts = [];
    this.partBytes = 0;
  }
}

function stripCr(s: string): string {
  return s.length > 0 && s.charCodeAt(s.length - 1) === 13 ? s.slice(0, -1) : s;
}
