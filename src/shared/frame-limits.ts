// The per-frame limits every ingest path applies (line and binary protocols in
// the shards, the HTTP-polled source on the main thread), once the frame is known
// to be well formed: how many detections it may carry and how far ahead of the
// host clock its timestamp may be. One rule, so the three paths cannot drift.
import type { ShardLimits } from './messages.js';

export type FrameLimits = Pick<ShardLimits, 'maxDetections' | 'maxClockSkewMs'>;

export interface FrameRefusal {
  /** The drop reason (shared/counters.ts). */
  reason: 'too_many_detections' | 'clock_skew';
  message: string;
}

/**
 * Null when a frame with `detections` detections and `timestamp` (ms since the
 * epoch) is within the limits at host time `now`. Only timestamps ahead are
 * refused: one far in the future would put every later frame out of order at the
 * tracker, while old ones (replays, backfill) harm nothing and are ordered there.
 */
export function checkFrameLimits(timestamp: number, detections: number, limits: FrameLimits, now: number): FrameRefusal | null {
  if (detections > limits.maxDetections) {
    return { reason: 'too_many_detections', message: `${detections} detections in one frame; the limit is ${limits.maxDetections} (limits.max_detections_per_frame)` };
  }
  if (limits.maxClockSkewMs > 0 && timestamp > now + limits.maxClockSkewMs) {
    return {
      reason: 'clock_skew',
      message: `timestamp ${timestamp} is ${Math.round(timestamp - now)} ms ahead of the host clock; the limit is ${limits.maxClockSkewMs} ms (limits.max_clock_skew_ms)`,
    };
  }
  return null;
}
