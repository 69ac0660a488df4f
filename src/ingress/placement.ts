// Where a connection is decoded under `shards: auto`: on the main thread while its
// byte rate is low (a worker hop costs more than the decoding), on a shard worker
// while it stays high. A pure state machine fed with byte counts and an injected
// clock; the handoff (connection-handoff.ts) does the moving.
//
// Hysteresis keeps a node near the threshold from flapping: it moves up only after
// its rate stayed above `upBytesPerS` for `upForMs`, and back only after it stayed
// below `downBytesPerS` (a quarter of the up threshold by default) for `downForMs`
// (four times as long). A rate between the two resets both clocks.
//
// While the main thread is saturated the up threshold is divided by `busyFactor`:
// many medium connections can fill the main thread although none reaches the
// threshold alone (each one's rate is then capped by the main thread). The way
// back is then a quarter of the threshold the connection moved up at.

export type Placement = 'main' | 'shard';

export interface PlacementPolicy {
  /** A connection above this rate (bytes/s) for upForMs moves to a shard worker. */
  upBytesPerS: number;
  upForMs: number;
  /** A connection on a worker below this rate for downForMs moves back to the main thread. */
  downBytesPerS: number;
  downForMs: number;
  /** How often the rates are evaluated (the handoff's timer). */
  tickMs: number;
  /** While the main thread is saturated, the up threshold is divided by this. */
  busyFactor: number;
  /**
   * Test hook: move to the other side every this many ms whatever the rate
   * (0: off). Lets tests force many moves mid-stream.
   */
  alternateMs: number;
}

/**
 * Measured on a 2-core VM: a node at 2 frames/s sends ~8 KB/s and is cheapest on
 * the main thread; an unpaced node sends tens of MB/s and needs a worker. 512 KiB/s
 * sits far from both, so real fleets do not hover around it.
 */
export const DEFAULT_PLACEMENT: PlacementPolicy = {
  upBytesPerS: 512 * 1024,
  upForMs: 1000,
  downBytesPerS: 128 * 1024,
  downForMs: 4000,
  tickMs: 250,
  busyFactor: 8,
  alternateMs: 0,
};

/** A policy from partial overrides; the down threshold and time follow the up ones unless given. */
export function placementPolicy(o: Partial<PlacementPolicy> = {}): PlacementPolicy {
  const up = o.upBytesPerS ?? DEFAULT_PLACEMENT.upBytesPerS;
  const upFor = o.upForMs ?? DEFAULT_PLACEMENT.upForMs;
  return {
    upBytesPerS: up,
    upForMs: upFor,
    downBytesPerS: o.downBytesPerS ?? up / 4,
    downForMs: o.downForMs ?? upFor * 4,
    tickMs: o.tickMs ?? DEFAULT_PLACEMENT.tickMs,
    busyFactor: o.busyFactor ?? DEFAULT_PLACEMENT.busyFactor,
    alternateMs: o.alternateMs ?? 0,
  };
}

export class PlacementState {
  placement: Placement = 'main';
  /** A move is under way (detach sent, not yet answered): no new decision. */
  moving = false;
  /** Completed moves, by destination. */
  readonly moves = { main: 0, shard: 0 };
  /** Bytes/s over the last tick (for views). */
  rate = 0;
  private lastAt: number;
  /** Since when the rate has been on the far side of the threshold (-1: it is not). */
  private since = -1;
  private placedAt: number;
  /** On a worker: the rate below which it goes back (a quarter of the threshold it moved up at). */
  private downAt: number;
  private nextDownAt: number;

  constructor(private readonly policy: PlacementPolicy, now: number, start: Placement = 'main') {
    this.lastAt = now;
    this.placedAt = now;
    this.placement = start;
    this.downAt = this.nextDownAt = policy.downBytesPerS;
  }

  /**
   * One evaluation: `bytes` read since the last tick; `busy`: the main thread was
   * saturated over it. Returns the side to move to, or null to stay.
   */
  tick(now: number, bytes: number, busy = false): Placement | null {
    const dt = now - this.lastAt;
    if (dt <= 0) return null;
    this.lastAt = now;
    this.rate = (bytes * 1000) / dt;
    if (this.moving) return null;
    const p = this.policy;
    const other: Placement = this.placement === 'main' ? 'shard' : 'main';
    if (p.alternateMs > 0) return now - this.placedAt >= p.alternateMs ? other : null;
    const up = busy ? p.upBytesPerS / p.busyFactor : p.upBytesPerS;
    const beyond = this.placement === 'main' ? this.rate > up : this.rate < this.downAt;
    if (!beyond) {
      this.since = -1;
      return null;
    }
    // The interval just measured already counts as time beyond the threshold.
    if (this.since < 0) this.since = now - dt;
    const need = this.placement === 'main' ? p.upForMs : p.downForMs;
    if (now - this.since < need) return null;
    if (other === 'shard') this.nextDownAt = Math.min(p.downBytesPerS, up / 4);
    return other;
  }

  /** A move was started. */
  begin(): void {
    this.moving = true;
  }

  /** The move finished (`to` the new side) or was declined by the shard (null: stays). */
  end(now: number, to: Placement | null): void {
    this.moving = false;
    // Declined (the connection was waiting for its ring): retried at the next tick.
    if (to === null) return;
    this.since = -1;
    if (to === 'shard') this.downAt = this.nextDownAt;
    this.placement = to;
    this.placedAt = now;
    this.moves[to]++;
  }
}
