// The per-frame limits every ingest path applies (line and binary protocols in
// the shards, the HTTP-polled source on the main thread), once the frame is known
// to be well formed: how many detections it may carry and how far ahead of the
// host clock its timestamp may be. One rule, so the three paths cannot drift.
import type { ShardLimits } from './thread-messages.js';
import { ErrorCodes } from './errors.js';

export type FrameLimits = Pick<ShardLimits, 'maxDetections' | 'maxClockSkewMs'>;

export interface FrameRefusal {
  /** The drop reason (telemetry/counters.ts). */
  reason: 'too_many_detections' | 'clock_skew';
  /** What a binary node is told (a non-fatal error with the frame's seq). */
  code: typeof ErrorCodes.TOO_MANY_DETECTIONS | typeof ErrorCodes.CLOCK_SKEW;
  message: string;
}

/**
 * The latest host time read by checkFrameLimits (this thread). The wall clock only
 * moves forward (NTP slews), so a timestamp within `cachedNow + skew` is within
 * `now + skew`: the clock is read only for frames that look ahead, not per frame.
 */
let cachedNow = 0;

/**
 * Null when a frame with `detections` detections and `timestamp` (ms since the
 * epoch) is within the limits at host time `now()`. Only timestamps ahead are
 * refused: one far in the future would put every later frame out of order at the
 * tracker, while old ones (replays, backfill) harm nothing and are ordered there.
 */
export function checkFrameLimits(timestamp: number, detections: number, limits: FrameLimits, now: () => number = Date.now): FrameRefusal | null {
  if (detections > limits.maxDetections) {
    return { reason: 'too_many_detections', code: ErrorCodes.TOO_MANY_DETECTIONS, message: `${detections} detections in one frame; the limit is ${limits.maxDetections} (limits.max_detections_per_frame)` };
  }
  const skew = limits.maxClockSkewMs;
  if (skew > 0 && timestamp > cachedNow + skew) {
    cachedNow = now();
    if (timestamp > cachedNow + skew) {
      return {
        reason: 'clock_skew',
        code: ErrorCodes.CLOCK_SKEW,
        message: `timestamp ${timestamp} is ${Math.round(timestamp - cachedNow)} ms ahead of the host clock; the limit is ${skew} ms (limits.max_clock_skew_ms)`,
      };
    }
  }
  return null;
}
