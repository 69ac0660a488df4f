// Fair reading on the main thread, which reads every node's socket (Node 20 cannot
// hand a socket to a worker). libuv reads a readable socket up to 32 times per
// event-loop turn, and the handoff lets a connection hold up to
// limits.max_inflight_bytes unframed: a few unpaced connections then fill a turn
// with megabytes, and every slow node's frame waits for the turn to end. A
// connection that read its budget in this turn is paused and resumed at the next
// one (setImmediate runs after the poll phase), so a turn reads at most a budget
// per busy connection and a slow node's frame waits about one short turn.
// It applies to connections `shards: auto` moved to a worker for their rate (the
// slow ones stay on the main thread): a lone fast connection on a pinned
// placement would only lose reads per turn (measured: a single flooding
// connection decoded on the main thread ran at half speed with the budget).
//
// Pure bookkeeping with an injectable scheduler; the handoff pauses and resumes.

/** Bytes a connection may read in one event-loop turn before it yields (one libuv read). */
export const TURN_READ_BYTES = 64 * 1024;

/** The per-connection fields the bookkeeping uses (ConnHandle has them). */
export interface TurnReader {
  /** Bytes read in the current turn. */
  turnBytes: number;
  /** Paused until the next turn because it spent its budget. */
  yielded: boolean;
}

export class ReadTurns<T extends TurnReader> {
  /** Connections that read in this turn (each once: its turnBytes went above 0). */
  private touched: T[] = [];
  private scheduled = false;
  /** Connections that yielded a turn (for metrics and tests). */
  yields = 0;

  constructor(
    private readonly budget: number,
    /** Called at the next turn for a connection that yielded. */
    private readonly resume: (h: T) => void,
    private readonly defer: (fn: () => void) => void = setImmediate,
  ) {}

  /** Counts a read of `n` bytes; true when the connection has just spent its turn and must pause. */
  read(h: T, n: number): boolean {
    if (h.turnBytes === 0) {
      this.touched.push(h);
      if (!this.scheduled) {
        this.scheduled = true;
        this.defer(() => this.nextTurn());
      }
    }
    h.turnBytes += n;
    if (h.yielded || h.turnBytes < this.budget) return false;
    h.yielded = true;
    this.yields++;
    return true;
  }

  private nextTurn(): void {
    this.scheduled = false;
    const list = this.touched;
    this.touched = [];
    for (const h of list) {
      h.turnBytes = 0;
      if (h.yielded) {
        h.yielded = false;
        this.resume(h);
      }
    }
  }
}
