// Splits a byte stream into u32-big-endian-length-prefixed messages. A length over
// the limit is reported before any of the payload is buffered; the payload is then
// skipped as it arrives (or the stream is declared unrecoverable when the length
// is absurd: a desynchronised or hostile peer).
import { F_NONE, F_MESSAGE, F_OVERSIZE, F_FATAL } from '../line/line-framer.js';

export { F_NONE, F_MESSAGE, F_OVERSIZE, F_FATAL };

/** Lengths above maxMessageBytes * this factor end the connection instead of being skipped. */
export const SKIP_FACTOR = 16;

export class BinaryFramer {
  msgBuf: Buffer = EMPTY;
  msgStart = 0;
  msgEnd = 0;
  /** Length of the message reported by the last F_OVERSIZE / F_FATAL. */
  badLength = 0;
  private consumed = 0;
  private readonly queue: Buffer[] = [];
  private cur: Buffer | null = null;
  private pos = 0;
  private readonly hdr = Buffer.alloc(4);
  private hdrLen = 0;
  /** Length of the payload being assembled (-1: reading a header). */
  private need = -1;
  private asm: Buffer = EMPTY;
  private asmLen = 0;
  private skip = 0;

  constructor(readonly maxMessageBytes: number) {}

  push(chunk: Buffer): void {
    if (chunk.length > 0) this.queue.push(chunk);
  }

  get buffered(): number {
    let n = this.cur ? this.cur.length - this.pos : 0;
    for (const c of this.queue) n += c.length;
    return n + this.asmLen + this.hdrLen;
  }

  takeConsumed(): number {
    const n = this.consumed;
    this.consumed = 0;
    return n;
  }

  /**
   * The bytes not yet framed (a partial header or message, rebuilt with its length
   * prefix), handed to another shard when the connection moves; the framer is spent
   * afterwards. Every byte counts as consumed (the receiving shard credits them
   * again). Null while an oversize message is being skipped.
   */
  leftover(): Buffer | null {
    if (this.skip > 0) return null;
    const parts: Buffer[] = [];
    let prefix = 0;
    if (this.need < 0) {
      parts.push(Buffer.from(this.hdr.subarray(0, this.hdrLen)));
      prefix = this.hdrLen;
    } else {
      const h = Buffer.alloc(4);
      h.writeUInt32BE(this.need, 0);
      parts.push(h, this.asm.subarray(0, this.asmLen));
      prefix = 4 + this.asmLen;
    }
    if (this.cur) parts.push(this.cur.subarray(this.pos));
    parts.push(...this.queue);
    const out = Buffer.concat(parts);
    this.consumed += out.length - prefix;
    this.cur = null;
    this.queue.length = 0;
    this.hdrLen = 0;
    this.need = -1;
    this.asmLen = 0;
    return out;
  }

  next(): number {
    for (;;) {
      let cur = this.cur;
      if (cur === null || this.pos === cur.length) {
        const c = this.queue.shift();
        if (c === undefined) {
          this.cur = null;
          return F_NONE;
        }
        cur = this.cur = c;
        this.pos = 0;
      }
      const avail = cur.length - this.pos;
      if (this.skip > 0) {
        const n = Math.min(avail, this.skip);
        this.skip -= n;
        this.pos += n;
        this.consumed += n;
        continue;
      }
      if (this.need < 0) {
        // Header: fast path when all four bytes are in this chunk.
        let len: number;
        if (this.hdrLen === 0 && avail >= 4) {
          len = cur.readUInt32BE(this.pos);
          this.pos += 4;
          this.consumed += 4;
        } else {
          while (this.hdrLen < 4 && this.pos < cur.length) {
            this.hdr[this.hdrLen++] = cur[this.pos++]!;
            this.consumed++;
          }
          if (this.hdrLen < 4) continue;
          this.hdrLen = 0;
          len = this.hdr.readUInt32BE(0);
        }
        if (len > this.maxMessageBytes) {
          this.badLength = len;
          if (len > this.maxMessageBytes * SKIP_FACTOR) return F_FATAL;
          this.skip = len;
          return F_OVERSIZE;
        }
        this.need = len;
        this.asmLen = 0;
        if (len === 0) {
          this.need = -1;
          this.set(cur, this.pos, this.pos);
          return F_MESSAGE;
        }
        continue;
      }
      // Payload: a view when it is whole in this chunk, else assembled.
      if (this.asmLen === 0 && avail >= this.need) {
        const s = this.pos;
        this.pos += this.need;
        this.consumed += this.need;
        this.need = -1;
        this.set(cur, s, this.pos);
        return F_MESSAGE;
      }
      if (this.asm.length < this.need) this.asm = Buffer.allocUnsafe(Math.max(this.need, 4096));
      const n = Math.min(avail, this.need - this.asmLen);
      cur.copy(this.asm, this.asmLen, this.pos, this.pos + n);
      this.asmLen += n;
      this.pos += n;
      this.consumed += n;
      if (this.asmLen === this.need) {
        const len = this.need;
        this.need = -1;
        this.asmLen = 0;
        this.set(this.asm, 0, len);
        return F_MESSAGE;
      }
    }
  }

  private set(b: Buffer, s: number, e: number): void {
    this.msgBuf = b;
    this.msgStart = s;
    this.msgEnd = e;
  }
}

const EMPTY = Buffer.alloc(0);
