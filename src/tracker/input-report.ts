// What a tracker says it read: at the end of its input (the engine closed its side
// of the TCP connection) a tracker may write one line back on that connection,
// `{"type":"EOF","frames_read":N}`, before closing its side. The built-in tracker
// does; retina does not (the engine then knows what it handed over, not what was read).
// Frames handed to the OS but unread when a tracker dies are otherwise invisible.

/** Most bytes kept of what a tracker writes back on its input connection. */
export const INPUT_REPORT_MAX_BYTES = 4096;

/** The frames_read of the last well-formed report line in `text`, or null when there is none. */
export function parseInputReport(text: string): number | null {
  let found: number | null = null;
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t === '') continue;
    try {
      const v = JSON.parse(t) as unknown;
      if (typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'EOF') {
        const n = (v as { frames_read?: unknown }).frames_read;
        if (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) found = n;
      }
    } catch { /* not a report */ }
  }
  return found;
}

/** Frames handed to the trackers still running at shutdown, and what they said they read. */
export interface InputConsumption {
  /** Frames whose bytes reached the OS for these trackers' inputs. */
  fed: number;
  /** Frames the reporting trackers said they read. */
  read: number;
  /** fed - read over the reporting trackers (frames handed over but never read). */
  unread: number;
  /** Trackers that were fed frames and did not report (their reading is unknown). */
  unconfirmed: number;
}

export function sumConsumption(items: Iterable<{ fed: number; read: number | null }>): InputConsumption {
  const c: InputConsumption = { fed: 0, read: 0, unread: 0, unconfirmed: 0 };
  for (const i of items) {
    c.fed += i.fed;
    if (i.read === null) {
      if (i.fed > 0) c.unconfirmed++;
      continue;
    }
    c.read += i.read;
    c.unread += Math.max(0, i.fed - i.read);
  }
  return c;
}
