// The tracks a pushing node has reported: each track_id with its latest length.
// tracker-host counted every distinct track_id a node ever posted; here at most
// `capacity` are remembered (the least recently updated forgotten), so a node
// that posts endless new ids holds a bounded map.
import { Lru } from '../util/lru.js';

export const TRACKS_PER_NODE = 1000;

export class TrackTally {
  private readonly tracks: Lru<string, number>;

  constructor(capacity = TRACKS_PER_NODE) {
    this.tracks = new Lru(capacity);
  }

  update(trackId: string, length: number): void {
    this.tracks.set(trackId, length);
  }

  /** Distinct tracks remembered. */
  get count(): number {
    return this.tracks.size;
  }
}
