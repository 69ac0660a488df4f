// While shutdown waits on trackers, the log says what it waits for and until when,
// so a person watching a slow stop knows it is not hung.
import type { Logger } from '../telemetry/logger.js';

export interface DrainSample {
  /** Trackers whose process has not exited yet. */
  trackers: number;
  /** Frames still in the rings, not yet handed to a tracker. */
  inRings: number;
}

/** One progress line's fields and message. */
export function drainProgress(s: DrainSample, msLeft: number): { fields: Record<string, unknown>; msg: string } {
  const deadline = Math.max(0, Math.ceil(msLeft / 1000));
  const what = `${s.trackers} tracker${s.trackers === 1 ? '' : 's'}`;
  return {
    fields: { waiting_for: 'trackers', trackers: s.trackers, in_rings: s.inRings, deadline_in_s: deadline },
    msg: `shutdown: waiting for ${what} to drain (rings: ${s.inRings} frames), deadline in ${deadline} s`,
  };
}

/** Logs progress now and every `everyMs` until the returned function is called. */
export function watchDrain(log: Logger, sample: () => DrainSample, deadline: number, everyMs = 2000,
  now: () => number = Date.now): () => void {
  const say = (): void => {
    const p = drainProgress(sample(), deadline - now());
    log.info(p.fields, p.msg);
  };
  say();
  const t = setInterval(say, everyMs);
  t.unref();
  return () => clearInterval(t);
}
