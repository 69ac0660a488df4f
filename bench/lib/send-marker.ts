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
