// Run ids: one per tracker process, unique for an output_dir across tracker
// restarts and engine restarts. The built-in tracker puts its run id in front of
// every track id it gives (`{run}-T0001`), so a restarted tracker, which counts
// its tracks from 1 again, never writes an id that an earlier process wrote to
// the same day's file.
//
// A run id is `{epoch}.{spawn}`: `epoch` is a counter kept in
// `{output_dir}/.radar-ingest-epoch`, raised by one at every engine start (the
// first spawn claims it); `spawn` counts the tracker processes this engine
// started. Both are decimal integers, so a run id holds no `-`: a consumer can
// split a track id at its last `-`. Fields can be put in front later (a host id,
// a fence), separated by `.`, without changing that rule.
import { mkdirSync, readFileSync, renameSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { join } from 'node:path';

/** The file in output_dir that holds the last epoch claimed. */
export const EPOCH_FILE = '.radar-ingest-epoch';

export interface EpochClaim {
  epoch: number;
  /** Why the counter could not be read or kept (the epoch is then the clock in ms), null when it was. */
  problem: string | null;
}

/** The epoch after `stored` (the file's text, null when there is none); null when the text is not a counter. */
export function nextEpoch(stored: string | null): number | null {
  if (stored === null) return 1;
  const t = stored.trim();
  if (!/^\d{1,15}$/.test(t)) return null;
  return Number(t) + 1;
}

/**
 * Claims the next epoch for `outputDir`: reads the counter, writes it back raised
 * by one (to a temporary file renamed over the old one, so a crash leaves the old
 * or the new value, never half of one). When the file cannot be read as a counter
 * or written, the clock in ms is the epoch (far above any counter, so it does not
 * repeat one) and `problem` says why.
 */
export function claimEpoch(outputDir: string, nowMs: number = Date.now()): EpochClaim {
  const file = join(outputDir, EPOCH_FILE);
  let stored: string | null = null;
  try {
    stored = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return { epoch: nowMs, problem: `cannot read ${file}: ${(err as Error).message}` };
  }
  const next = nextEpoch(stored);
  const epoch = next ?? nowMs;
  try {
    mkdirSync(outputDir, { recursive: true });
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, `${epoch}\n`);
    const fd = openSync(tmp, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (err) {
    return { epoch: nowMs, problem: `cannot write ${file}: ${(err as Error).message}` };
  }
  return { epoch, problem: next === null ? `${file} does not hold a counter; starting from the clock` : null };
}

/** Hands out run ids; claims the epoch on first use (no file is touched by an engine that never spawns a tracker). */
export class RunIds {
  private epoch: number | null = null;
  private spawns = 0;
  constructor(
    private readonly outputDir: () => string,
    private readonly onClaim: (claim: EpochClaim) => void = () => undefined,
    private readonly claim: (dir: string) => EpochClaim = claimEpoch,
  ) {}

  next(): string {
    if (this.epoch === null) {
      const c = this.claim(this.outputDir());
      this.epoch = c.epoch;
      this.onClaim(c);
    }
    return `${this.epoch}.${++this.spawns}`;
  }
}
