// The date that names an output file (`{name}_{YYYY-MM-DD}.jsonl`) and the span
// of time it covers. "local" is the date on the host's wall clock, as
// tracker-host names its files; "utc" the UTC date. Pure: the instant and the
// zone are inputs, so the rule is testable for any zone without touching TZ.

export type OutputDate = 'local' | 'utc';

export interface FileDay {
  /** YYYY-MM-DD. */
  date: string;
  /** First ms of that date, inclusive. */
  start: number;
  /** First ms of the next date. */
  end: number;
}

const DAY_MS = 86_400_000;
/** Longer than any local day (a day with a DST change lasts 23 to 25 hours; zone changes up to 26). */
const SEARCH_MS = 27 * 3_600_000;

const formats = new Map<string, Intl.DateTimeFormat>();

function format(timeZone: string | undefined): Intl.DateTimeFormat {
  const key = timeZone ?? '';
  let f = formats.get(key);
  if (!f) {
    // An unknown zone throws RangeError here, at the first use.
    f = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hourCycle: 'h23' });
    formats.set(key, f);
  }
  return f;
}

/** YYYY-MM-DD of `ms` in `timeZone` (default: the host's zone). */
export function localDate(ms: number, timeZone?: string): string {
  let y = '';
  let m = '';
  let d = '';
  for (const p of format(timeZone).formatToParts(ms)) {
    if (p.type === 'year') y = p.value.padStart(4, '0');
    else if (p.type === 'month') m = p.value;
    else if (p.type === 'day') d = p.value;
  }
  return `${y}-${m}-${d}`;
}

/**
 * The boundary of `date` inside (lo, hi]: lo and hi lie on either side of it, one
 * of them on `date`. Dates only move forward with time, so a bisection to the
 * millisecond finds the first instant of `date` (lo outside) or of the date after
 * it (hi outside).
 */
function boundary(date: string, lo: number, hi: number, loInside: boolean, timeZone: string | undefined): number {
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if ((localDate(mid, timeZone) === date) === loInside) lo = mid;
    else hi = mid;
  }
  return hi;
}

/** The date naming the file at `ms` and the span it covers. */
export function dayOf(ms: number, rule: OutputDate, timeZone?: string): FileDay {
  if (rule === 'utc') {
    const start = Math.floor(ms / DAY_MS) * DAY_MS;
    return { date: new Date(ms).toISOString().slice(0, 10), start, end: start + DAY_MS };
  }
  // Computed once per file day (some 50 formats), not per line.
  const date = localDate(ms, timeZone);
  return {
    date,
    start: boundary(date, ms - SEARCH_MS, ms, false, timeZone),
    end: boundary(date, ms, ms + SEARCH_MS, true, timeZone),
  };
}
