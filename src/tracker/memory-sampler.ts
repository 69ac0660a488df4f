// When the memory ceiling reads /proc: in small slices spread over each second,
// not in one go. The reads are synchronous on the main thread (memory-watchdog.ts
// says why), so every connection decoded there waits while they run: 64 trackers
// in one go is 4-5 ms, a few milliseconds of latency added to every frame that
// arrives meanwhile; a slice of 4 is a quarter of a millisecond.
//
// Each tracker is sampled at most once per SAMPLE_INTERVAL_MS, the longest
// unsampled first, and at most SAMPLES_PER_SECOND trackers a second in all.
import { SAMPLE_INTERVAL_MS } from './memory-watchdog.js';

/** Trackers sampled per second at most (~30 us per /proc read, two reads each). */
export const SAMPLES_PER_SECOND = 64;
/** Trackers sampled in one go at most. */
export const SAMPLES_PER_SLICE = 4;
/** Between two slices. */
export const SLICE_INTERVAL_MS = (1000 * SAMPLES_PER_SLICE) / SAMPLES_PER_SECOND;

/** What the schedule needs of a tracker: whether a process runs to sample, and when it was last sampled (now() clock). */
export interface Sampleable {
  readonly sampleable: boolean;
  readonly rssSampledAt: number;
}

/**
 * The next slice: at most `limit` of `items` due at `now` (sampleable, and not
 * sampled for SAMPLE_INTERVAL_MS), the longest unsampled first; ties keep the
 * order of `items`.
 */
export function nextSlice<T extends Sampleable>(items: Iterable<T>, now: number, limit = SAMPLES_PER_SLICE): T[] {
  const out: T[] = [];
  if (limit <= 0) return out;
  for (const it of items) {
    if (!it.sampleable || now - it.rssSampledAt < SAMPLE_INTERVAL_MS) continue;
    const at = it.rssSampledAt;
    if (out.length === limit) {
      if (!(at < out[limit - 1]!.rssSampledAt)) continue;
      out.pop();
    }
    // `limit` is small: insertion into a sorted list, no sort of every tracker.
    let k = out.length;
    while (k > 0 && at < out[k - 1]!.rssSampledAt) k--;
    out.splice(k, 0, it);
  }
  return out;
}

/** Runs a slice every SLICE_INTERVAL_MS (the timer does not keep the process alive). */
export class MemorySampler<T extends Sampleable> {
  private timer: NodeJS.Timeout | null = null;
  /** Slices run (each sampled at most SAMPLES_PER_SLICE trackers). */
  slices = 0;

  /** `items`: the trackers now; `sample`: samples one (never throws); `now`: the clock rssSampledAt is on. */
  constructor(
    private readonly items: () => Iterable<T>,
    private readonly sample: (item: T) => void,
    private readonly now: () => number,
    private readonly intervalMs = SLICE_INTERVAL_MS,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.runSlice(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Samples the trackers of one slice; returns how many. */
  runSlice(): number {
    this.slices++;
    const due = nextSlice(this.items(), this.now());
    for (const it of due) this.sample(it);
    return due.length;
  }
}
