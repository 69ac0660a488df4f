// The active tracks of one tracker, folded from the track events it prints:
// what the status log and the API show per instance.
//
// A track event names its track (`track_id`) and says how long the track is
// (`length`, else `n_associated`, else 0); the latest event of a track gives
// its length. retina-tracker prints no "ended" event, but one for every live
// track on every frame, so a track that has printed nothing for `idleMs` has
// ended. The built-in tracker does end its tracks: a `deleted` event
// (`"state":"deleted"`) ends one at once. A new tracker process starts with no
// tracks (clear()).
//
// Memory is bounded whatever a tracker prints: at most `maxTracks` tracks are
// kept (the least recently updated leaves first) and a track id is cut to
// MAX_ID_CHARS characters.

/** Longest track id kept; longer ids are cut (a tracker could print megabyte ids). */
export const MAX_ID_CHARS = 128;

export interface ActiveTracksOptions {
  /** Tracks kept at most. Default 1000. */
  maxTracks?: number;
  /** A track without an event for this long has ended. Default 60 000 ms. */
  idleMs?: number;
}

export interface TrackLength {
  track_id: string;
  length: number;
}

export interface TrackSummary {
  /** Tracks with an event within idleMs (at most maxTracks). */
  active: number;
  /** The longest of them, longest first (ties: the most recently updated first). */
  longest: TrackLength[];
}

interface Entry {
  length: number;
  seenAt: number;
}

export class ActiveTracks {
  readonly maxTracks: number;
  readonly idleMs: number;
  /** Insertion order is update order: the least recently updated track is first. */
  private readonly tracks = new Map<string, Entry>();
  /** Tracks forgotten to stay within maxTracks while still active. */
  evicted = 0;
  /** Tracks seen for the first time: an event whose id is not active (not a `deleted` one). Never reset. */
  started = 0;

  constructor(opts: ActiveTracksOptions = {}) {
    this.maxTracks = opts.maxTracks ?? 1000;
    this.idleMs = opts.idleMs ?? 60_000;
    if (!Number.isInteger(this.maxTracks) || this.maxTracks < 1) throw new RangeError('maxTracks must be a positive integer');
  }

  /** Folds one track event in; events without a usable track_id are ignored. */
  observe(event: Record<string, unknown>, now: number): void {
    const id = trackId(event.track_id);
    if (id === null) return;
    const length = num(event.length) || num(event.n_associated) || 0;
    this.expire(now);
    const known = this.tracks.delete(id);
    if (event.state === 'deleted') return;
    if (!known) this.started++;
    if (!known && this.tracks.size >= this.maxTracks) {
      const oldest = this.tracks.keys().next().value as string;
      this.tracks.delete(oldest);
      this.evicted++;
    }
    this.tracks.set(id, { length, seenAt: now });
  }

  /** The tracker process ended: its tracks with it. */
  clear(): void {
    this.tracks.clear();
  }

  /** Active tracks now. */
  count(now: number): number {
    this.expire(now);
    return this.tracks.size;
  }

  summary(now: number, top = 10): TrackSummary {
    this.expire(now);
    const all: Array<TrackLength & { seenAt: number }> = [];
    for (const [track_id, e] of this.tracks) all.push({ track_id, length: e.length, seenAt: e.seenAt });
    all.sort((a, b) => b.length - a.length || b.seenAt - a.seenAt);
    return { active: this.tracks.size, longest: all.slice(0, top).map(({ track_id, length }) => ({ track_id, length })) };
  }

  private expire(now: number): void {
    const cutoff = now - this.idleMs;
    for (const [id, e] of this.tracks) {
      if (e.seenAt > cutoff) break;
      this.tracks.delete(id);
    }
  }
}

/** A track id as tracker-host keyed it: a non-empty string or a non-zero number; null otherwise. */
function trackId(v: unknown): string | null {
  if (typeof v === 'string') return v === '' ? null : v.slice(0, MAX_ID_CHARS);
  if (typeof v === 'number') return v === 0 || !Number.isFinite(v) ? null : String(v);
  return null;
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}
