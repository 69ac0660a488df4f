// The send-time marker of stamped line frames, `"t":"<process.hrtime ns, 19 digits>"`:
// a file of its own so the drain tracker (one process per node) loads nothing else.

export const SEND_MARKER = Buffer.from('"t":"');
/** Marker, digits and the closing quote. */
export const MARKER_LEN = SEND_MARKER.length + 19 + 1;

/** Calls `fn` with the send time (hrtime ns; NaN when unreadable) of every complete marker starting in [from, until). */
export function forEachSendTime(buf: Buffer, fn: (sentNs: number) => void, from = 0, until = buf.length): void {
  for (let at = buf.indexOf(SEND_MARKER, from); at >= 0 && at < until && at + MARKER_LEN <= buf.length; at = buf.indexOf(SEND_MARKER, at + MARKER_LEN)) {
    const digits = buf.toString('latin1', at + SEND_MARKER.length, at + MARKER_LEN - 1);
    fn(/^\d{19}$/.test(digits) && buf[at + MARKER_LEN - 1] === 0x22 ? Number(digits) : NaN);
  }
}

/**
 * Latency samples where frames are handed on (an engine probe hook, a server's read):
 * for every marker sent inside the open window, now - sent (ns) and now; bounded.
 */
export class MarkerLatency {
  lat: number[] = [];
  at: number[] = [];
  private win: [number, number] | null = null;

  constructor(private readonly cap = 4_000_000) {}

  /** Starts a window of send times from `from` (hrtime ns); the samples start empty. */
  open(from: number): void {
    this.win = [from, Number.MAX_SAFE_INTEGER];
    this.lat = [];
    this.at = [];
  }

  /** Frames sent after `to` no longer count (the ones before may still arrive). */
  until(to: number): void {
    if (this.win) this.win[1] = to;
  }

  close(): void {
    this.win = null;
  }

  record(buf: Buffer): void {
    const w = this.win;
    if (w === null) return;
    const now = Number(process.hrtime.bigint());
    forEachSendTime(buf, (sent) => {
      if (sent >= w[0] && sent <= w[1] && this.lat.length < this.cap) {
        this.lat.push(now - sent);
        this.at.push(now);
      }
    });
  }
}
