// The leases one host holds, as a pure state machine over an injected clock: when each
// is renewed, and when one must be given up because it could not be renewed in time.
//
// A renew sent at time S that succeeds proves the grant was ours without a break
// until Redis ran it (the value compared carries the fence, unique to that grant), and
// extends it to at least S + lease_ms. So a grant is trusted until the send time of its
// last successful renew plus two thirds of the lease: the last third is the margin in
// which the host stops feeding the node before another host can be granted it.

export type LossReason = 'unrenewed' | 'superseded';

export type LeaseAction =
  | { kind: 'renew'; node: string; fence: number }
  | { kind: 'lost'; node: string; fence: number; reason: LossReason };

interface Held {
  fence: number;
  /** Send time of the acquire or of the last successful renew. */
  confirmedAt: number;
  inFlight: boolean;
  nextAttemptAt: number;
}

/** Fences remembered per node, for the floor of the next acquire; a bound on memory. */
export const MAX_REMEMBERED_FENCES = 65536;

export class LeaseTable {
  readonly renewEveryMs: number;
  readonly lostAfterMs: number;
  readonly retryEveryMs: number;
  private readonly held = new Map<string, Held>();
  private readonly highest = new Map<string, number>();

  constructor(readonly leaseMs: number) {
    this.renewEveryMs = Math.max(1, Math.floor(leaseMs / 3));
    this.lostAfterMs = Math.max(1, Math.floor((2 * leaseMs) / 3));
    // A failed renew is retried sooner than the period, so a short outage costs little of the margin.
    this.retryEveryMs = Math.max(1, Math.floor(leaseMs / 12));
  }

  /** A grant obtained by an acquire sent at `sentAt`. */
  acquired(node: string, fence: number, sentAt: number): void {
    this.seen(node, fence);
    this.held.set(node, { fence, confirmedAt: sentAt, inFlight: false, nextAttemptAt: sentAt + this.renewEveryMs });
  }

  /** A fence learnt from Redis (ours or another host's). */
  seen(node: string, fence: number): void {
    if (!Number.isFinite(fence) || fence <= (this.highest.get(node) ?? 0)) return;
    this.highest.delete(node);
    this.highest.set(node, fence);
    if (this.highest.size > MAX_REMEMBERED_FENCES) this.highest.delete(this.highest.keys().next().value!);
  }

  /** The lowest fence this host accepts for its next grant of `node`: above every fence it has seen. */
  floor(node: string): number {
    return (this.highest.get(node) ?? 0) + 1;
  }

  fenceOf(node: string): number | undefined {
    return this.held.get(node)?.fence;
  }

  owned(): { node: string; fence: number }[] {
    return [...this.held].map(([node, h]) => ({ node, fence: h.fence }));
  }

  /**
   * What is due at `now`: losses first (a lost grant is not renewed), then renews to send.
   * `earlyMs`: renews due within that much later are sent now too. Renewing early only
   * moves a grant's deadline later, and it gathers the renews of grants acquired at
   * different times into a few batches per period (one Redis call each).
   */
  due(now: number, earlyMs = 0): LeaseAction[] {
    const out: LeaseAction[] = [];
    for (const [node, h] of this.held) {
      if (now - h.confirmedAt >= this.lostAfterMs) {
        this.held.delete(node);
        out.push({ kind: 'lost', node, fence: h.fence, reason: 'unrenewed' });
      } else if (!h.inFlight && now + earlyMs >= h.nextAttemptAt) {
        h.inFlight = true;
        out.push({ kind: 'renew', node, fence: h.fence });
      }
    }
    return out;
  }

  /** The renew of grant `fence` sent at `sentAt` succeeded. */
  renewed(node: string, fence: number, sentAt: number): void {
    const h = this.held.get(node);
    if (!h || h.fence !== fence) return;
    h.inFlight = false;
    h.confirmedAt = Math.max(h.confirmedAt, sentAt);
    h.nextAttemptAt = sentAt + this.renewEveryMs;
  }

  /** The renew could not be sent or answered (Redis unreachable): try again soon. */
  renewFailed(node: string, fence: number, now: number): void {
    const h = this.held.get(node);
    if (!h || h.fence !== fence) return;
    h.inFlight = false;
    h.nextAttemptAt = now + this.retryEveryMs;
  }

  /** Redis answered that grant `fence` is no longer ours: lost at once. */
  renewRejected(node: string, fence: number): LeaseAction | null {
    const h = this.held.get(node);
    if (!h || h.fence !== fence) return null;
    this.held.delete(node);
    return { kind: 'lost', node, fence, reason: 'superseded' };
  }

  /** Given up by this host (released, or fenced by the caller). */
  released(node: string, fence: number): boolean {
    const h = this.held.get(node);
    if (!h || h.fence !== fence) return false;
    this.held.delete(node);
    return true;
  }

  /** When due() next has something to do; Infinity when nothing is held. */
  nextWakeAt(): number {
    let at = Infinity;
    for (const h of this.held.values()) {
      at = Math.min(at, h.confirmedAt + this.lostAfterMs);
      if (!h.inFlight) at = Math.min(at, h.nextAttemptAt);
    }
    return at;
  }
}
