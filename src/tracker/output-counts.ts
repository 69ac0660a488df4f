// Counters of what became of a tracker's stdout lines beyond the track file:
// lines skipped (not track events) and events forwarded to api_forward.url.
// Summed over instances, and kept when an instance is removed, so the
// Prometheus counters never go down.
import { OUTPUT_SKIP_REASONS, type OutputSkipReason } from './track-line.js';

export const FORWARD_RESULTS = ['sent', 'failed', 'dropped'] as const;
export type ForwardResult = (typeof FORWARD_RESULTS)[number];

export interface OutputCounts {
  skipped: Record<OutputSkipReason, number>;
  /** Events: acknowledged with a 2xx, given up (retries exhausted or refused), dropped (queue full, or unsent at close). */
  forwarded: Record<ForwardResult, number>;
}

export function zeroOutputCounts(): OutputCounts {
  return {
    skipped: Object.fromEntries(OUTPUT_SKIP_REASONS.map((r) => [r, 0])) as Record<OutputSkipReason, number>,
    forwarded: Object.fromEntries(FORWARD_RESULTS.map((r) => [r, 0])) as Record<ForwardResult, number>,
  };
}

/** Adds `b` into `a` and returns `a`. */
export function addOutputCounts(a: OutputCounts, b: OutputCounts): OutputCounts {
  for (const r of OUTPUT_SKIP_REASONS) a.skipped[r] += b.skipped[r];
  for (const r of FORWARD_RESULTS) a.forwarded[r] += b.forwarded[r];
  return a;
}
