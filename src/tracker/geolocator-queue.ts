// The track events waiting for a geolocator: bounded in events and bytes. The
// tracker's output never waits for the geolocator; when the queue is full the
// OLDEST event goes (a track's later event carries its whole state, so the
// newest are the ones worth solving), and the caller counts it.

export class EventQueue {
  private items: Buffer[] = [];
  private head = 0;
  private _bytes = 0;

  constructor(readonly maxEvents: number, readonly maxBytes: number) {
    if (!(maxEvents >= 1 && maxBytes >= 1)) throw new RangeError('queue bounds must be positive');
  }

  get length(): number {
    return this.items.length - this.head;
  }
  get bytes(): number {
    return this._bytes;
  }

  /** Appends one event (already newline-terminated); returns how many old events were dropped to make room. */
  push(event: Buffer): number {
    let dropped = 0;
    // An event larger than the byte bound on its own still goes in, alone.
    while (this.length > 0 && (this.length + 1 > this.maxEvents || this._bytes + event.length > this.maxBytes)) {
      this.shift();
      dropped++;
    }
    this.items.push(event);
    this._bytes += event.length;
    return dropped;
  }

  /** Takes up to maxEvents events / about maxBytes bytes (at least one) as one buffer. */
  take(maxEvents: number, maxBytes: number): { buf: Buffer; count: number } | null {
    if (this.length === 0) return null;
    const parts: Buffer[] = [];
    let bytes = 0;
    while (this.length > 0 && parts.length < maxEvents && (parts.length === 0 || bytes + this.peekSize() <= maxBytes)) {
      const b = this.shift();
      parts.push(b);
      bytes += b.length;
    }
    return { buf: parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes), count: parts.length };
  }

  /** Forgets every event; returns how many there were. */
  clear(): number {
    const n = this.length;
    this.items = [];
    this.head = 0;
    this._bytes = 0;
    return n;
  }

  private peekSize(): number {
    return this.items[this.head]!.length;
  }

  private shift(): Buffer {
    const b = this.items[this.head]!;
    this.items[this.head] = undefined as unknown as Buffer;
    this.head++;
    this._bytes -= b.length;
    // Compact now and then so the array does not grow with the events ever queued.
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return b;
  }
}
