// deep-trace (an agent command): the shards log a node's frames as they decode them; the
// main thread logs their delivery to the sink. Both sides end by time.
import type { ShardPool } from '../shard/shard-pool.js';
import type { Logger } from '../telemetry/logger.js';
import { M_TRACE } from '../protocol/thread-messages.js';

export interface Trace { id: string; untilMs: number }

/** Active traces, main-thread side (delivery logging), by node id. */
export class DeepTraces {
  private readonly active = new Map<string, Trace>();

  get size(): number { return this.active.size; }

  get(node: string): Trace | undefined { return this.active.get(node); }

  /** Every shard logs the node's frames with the command's id, bounded in time (at most maxMs) and count. */
  start(pool: ShardPool, log: Logger, node: string, id: string, durationMs: number, maxMs: number): void {
    const ms = Math.min(durationMs, maxMs);
    const untilMs = Date.now() + ms;
    this.active.set(node, { id, untilMs });
    for (let i = 0; i < pool.size; i++) pool.send(i, { t: M_TRACE, node, id, untilMs, maxEvents: 10000 });
    log.info({ node, correlation_id: id, duration_ms: ms }, 'deep-trace: started');
  }

  /** Forgets traces past their end. */
  expire(now: number): void {
    for (const [node, t] of this.active) if (now > t.untilMs) this.active.delete(node);
  }

  delete(node: string): void { this.active.delete(node); }
}
