// Splits a byte stream into '\n'-terminated lines without ever buffering more
// than maxLineBytes: an over-long line is reported once and skipped up to its
// newline. Takes a stream of chunks (no socket), so tests feed exact bytes.

export const F_NONE = 0; // need more bytes
export const F_MESSAGE = 1; // msgBuf[msgStart, msgEnd) is one line (without '\n' / '\r\n')
export const F_OVERSIZE = 2; // a line longer than the limit was dropped
export const F_FATAL = 3; // unrecoverable framing error (binary only)

export class LineFramer {
  msgBuf: Buffer = EMPTY;
  msgStart = 0;
  msgEnd = 0;
  /** Bytes passed over since the last takeConsumed(): they can be credited back. */
  private consumed = 0;
  private readonly queue: Buffer[] = [];
  private cur: Buffer | null = null;
  private pos = 0;
  private carry: Buffer = EMPTY;
  private carryLen = 0;
  private skipping = false;

  constructor(readonly maxLineBytes: number) {}

  push(chunk: Buffer): void {
    if (chunk.length > 0) this.queue.push(chunk);
  }

  /** Bytes queued but not yet framed. */
  get buffered(): number {
    let n = this.cur ? this.cur.length - this.pos : 0;
    for (const c of this.queue) n += c.length;
    return n + this.carryLen;
  }

  takeConsumed(): number {
    const n = this.consumed;
    this.consumed = 0;
    return n;
  }

  /**
   * The bytes not yet framed (a partial line), handed to another shard when the
   * connection moves; the framer is spent afterwards. Every byte counts as consumed
   * (the receiving shard credits them again). Null while an over-long line is
   * being skipped: the move waits for the next line.
   */
  leftover(): Buffer | null {
    if (this.skipping) return null;
    const parts: Buffer[] = [this.carry.subarray(0, this.carryLen)];
    if (this.cur) parts.push(this.cur.subarray(this.pos));
    parts.push(...this.queue);
    const out = Buffer.concat(parts);
    this.consumed += out.length - this.carryLen;
    this.cur = null;
    this.queue.length = 0;
    this.carryLen = 0;
    return out;
  }

  next(): number {
    for (;;) {
      let cur = this.cur;
      if (cur === null) {
        const c = this.queue.shift();
        if (c === undefined) return F_NONE;
        cur = this.cur = c;
        this.pos = 0;
      }
      const pos = this.pos;
      const nl = cur.indexOf(10, pos);
      if (nl < 0) {
        const rem = cur.length - pos;
        this.consumed += rem;
        this.cur = null;
        if (this.skipping) continue;
        if (this.carryLen + rem > this.maxLineBytes) {
          this.skipping = true;
          this.carryLen = 0;
          return F_OVERSIZE;
        }
        this.append(cur, pos, cur.length);
        continue;
      }
      this.consumed += nl + 1 - pos;
      this.pos = nl + 1;
      if (this.pos === cur.length) this.cur = null;
      if (this.skipping) {
        this.skipping = false; // the tail of an over-long line, already reported
        continue;
      }
      if (this.carryLen > 0) {
        if (this.carryLen + (nl - pos) > this.maxLineBytes) {
          this.carryLen = 0;
          return F_OVERSIZE;
        }
        this.append(cur, pos, nl);
        this.setLine(this.carry, 0, this.carryLen);
        this.carryLen = 0;
        return F_MESSAGE;
      }
      if (nl - pos > this.maxLineBytes) return F_OVERSIZE;
      this.setLine(cur, pos, nl);
      return F_MESSAGE;
    }
  }

  private setLine(b: Buffer, s: number, e: number): void {
    if (e > s && b[e - 1] === 13) e--; // CRLF
    this.msgBuf = b;
    this.msgStart = s;
    this.msgEnd = e;
  }

  private append(src: Buffer, s: number, e: number): void {
    const n = e - s;
    if (this.carryLen + n > this.carry.length) {
      const next = Buffer.allocUnsafe(Math.min(Math.max(this.carry.length * 2, this.carryLen + n, 4096), this.maxLineBytes + 2));
      this.carry.copy(next, 0, 0, this.carryLen);
      this.carry = next;
    }
    src.copy(this.carry, this.carryLen, s, e);
    this.carryLen += n;
  }
}

const EMPTY = Buffer.alloc(0);
