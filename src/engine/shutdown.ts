// The drain sequence on SIGTERM: readiness fails first, then node connections close,
// the shards finish, the rings drain into the trackers, and the HTTP listener closes last.
import type { Server } from 'node:net';
import type { Config } from '../config.js';
import type { ConnectionHandoff } from '../ingress/connection-handoff.js';
import type { ShardPool } from '../shard/shard-pool.js';
import type { TrackerSupervisor } from '../tracker/supervisor.js';
import type { RingSink } from '../nodes/ring-sink.js';
import type { HttpServer } from '../http/server.js';
import type { Logger } from '../telemetry/logger.js';
import type { Totals } from './metrics.js';
import { M_SHUTDOWN } from '../protocol/thread-messages.js';
import { watchDrain } from './shutdown-progress.js';

export interface DrainParts {
  readonly config: Config;
  log: Logger;
  /** Whether the engine started (a grace period only matters to a listener that was open). */
  started: boolean;
  handoff: ConnectionHandoff;
  pool: ShardPool;
  readonly tcp: Server | null;
  trackers: TrackerSupervisor | null;
  sink: RingSink;
  http: HttpServer;
  /** Server mode's track files and forwarders, flushed once no request can arrive. */
  push?: { close(deadlineMs: number): Promise<void> };
  /** Stops the agent sweep, the status log, the refusal log and the agent service. */
  stopBackground(): void;
  /** Stops the periodic ring sweep and offers every ring once more. */
  finalSweep(): void;
  totals(): Totals;
  /** Several hosts: hand the nodes over to other hosts (gradually), before the other connections close. */
  handOver?(deadline: number): Promise<unknown>;
  /** Several hosts: the last resume points and lease releases, once the rings are drained. */
  leaveCluster?(): Promise<void>;
}

export async function drain(p: DrainParts): Promise<void> {
  const t0 = Date.now();
  const deadline = t0 + p.config.shutdown.deadline_ms;
  // 0. /readyz is 503 from now on (stopping is set). Behind a load balancer, keep
  //    accepting for the grace period so the balancer notices and stops sending.
  const grace = p.config.shutdown.drain_grace_ms;
  if (grace > 0 && p.started) {
    p.log.info({ grace_ms: grace }, 'draining: /readyz is 503; still accepting connections for the grace period');
    await new Promise((r) => setTimeout(r, grace));
  }
  p.stopBackground();
  // 1. Stop accepting and close node connections (they reconnect elsewhere).
  p.handoff.refusing = 'shutdown';
  const tcp = p.tcp;
  const tcpClosed = tcp ? new Promise<void>((r) => tcp.close(() => r())) : Promise.resolve();
  // Several hosts: each node is handed over (its ring delivered, its tracker stopped, its
  // lease released) so it resumes at once on another host; at most half the time left.
  if (p.handOver) await p.handOver(Date.now() + Math.max(0, deadline - Date.now()) / 2);
  // The shards close their connections first, so binary nodes get RADAR_ERR_SHUTTING_DOWN
  // before the close; whatever they have not closed in time is closed here. The time
  // grows with the connections (10,000 take ~1 s to tell), at most a quarter of the deadline.
  if (p.handoff.open > 0) p.log.info({ waiting_for: 'connections', connections: p.handoff.open }, `shutdown: closing ${p.handoff.open} node connection(s)`);
  for (let i = 0; i < p.pool.size; i++) p.pool.send(i, { t: M_SHUTDOWN });
  const closingBy = Date.now() + Math.min(500 + p.handoff.open / 10, p.config.shutdown.deadline_ms / 4);
  const anyOpen = (): boolean => {
    for (const h of p.handoff.conns.values()) if (h.closeReason === null && !h.socketClosed) return true;
    return false;
  };
  while (Date.now() < closingBy && anyOpen()) {
    await new Promise((r) => setTimeout(r, 5));
  }
  p.handoff.closeAll('shutdown');
  await Promise.race([tcpClosed, new Promise((r) => setTimeout(r, 3000).unref())]);
  // 2. Stop the shards: every frame they accepted is in a ring (or counted as dropped).
  //    The ring sweep keeps running meanwhile, so a shard blocked on a full ring can finish.
  await p.pool.stop();
  p.finalSweep();
  // 3. Drain the rings into the trackers, then stop them (SIGTERM, SIGKILL after the grace).
  if (p.trackers) {
    // A tracker gets up to 2 s to read its input to EOF, then the SIGTERM grace.
    const stopBudget = p.config.tracker.stop_grace_ms + 3000;
    const drainUntil = Math.max(Date.now(), deadline - stopBudget);
    const sup = p.trackers;
    const done = watchDrain(p.log, () => ({
      trackers: [...sup.instances.values()].filter((i) => i.proc !== null).length, inRings: p.totals().inRings,
    }), deadline);
    const r = await sup.shutdown(drainUntil, Math.max(0, deadline - Date.now() - p.config.tracker.stop_grace_ms)).finally(done);
    const t = p.totals();
    const c = r.consumption;
    // delivered counts frames handed to a tracker's input; what the trackers then
    // read is theirs to say (tracker_read, reported by those that report: the
    // built-in one does; tracker_unconfirmed counts those that did not).
    const ok = r.drained && c.unread === 0;
    p.log[ok ? 'info' : 'warn']({
      drained: r.drained, left_in_rings: r.leftInRings, delivered: t.delivered, dropped: t.droppedTotal, received: t.received,
      tracker_fed: c.fed, tracker_read: c.read, tracker_unread: c.unread, tracker_unconfirmed: c.unconfirmed,
    }, !r.drained ? 'shutdown deadline: frames left in rings were counted as dropped (reason shutdown)'
      : c.unread > 0 ? 'rings drained, but trackers exited without reading every frame handed to them' : 'rings drained to the trackers');
  }
  await p.sink.close?.();
  await p.leaveCluster?.();
  await p.http.close();
  await p.push?.close(Math.max(0, deadline - Date.now()));
  p.log.info({ took_ms: Date.now() - t0 }, 'radar-ingest stopped');
}
