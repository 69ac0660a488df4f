// What the main thread does with a shard's messages (connection credits and writes,
// claims, closes, wake-ups, deep-trace events) and with a shard that crashed.
import type { ConnectionHandoff } from '../ingress/connection-handoff.js';
import type { NodeEntry, NodeTable } from '../nodes/node-table.js';
import type { Logger, RateLimit } from '../telemetry/logger.js';
import { S_BATCH, S_CLAIM, S_REVOKED, S_CLOSE, S_CLOSED, S_AUTH, S_LOG, S_DETACHED, type ShardToMain } from '../protocol/thread-messages.js';
import { CLOSES } from '../protocol/close-reasons.js';

export interface ShardEventContext {
  handoff: ConnectionHandoff;
  nodes: NodeTable;
  log: Logger;
  /** Rate limit of error logs, by reason. */
  errLimit: RateLimit;
  /** Offers a node's ring to the sink (a shard wrote to it). */
  offer(node: NodeEntry): void;
}

export function onShardMessage(x: ShardEventContext, shard: number, msg: ShardToMain): void {
  switch (msg.t) {
    case S_BATCH: {
      const cr = msg.credits;
      for (let i = 0; i < cr.length; i += 2) x.handoff.credit(cr[i] as number, cr[i + 1] as number);
      const w = msg.writes;
      for (let i = 0; i < w.length; i += 2) x.handoff.write(w[i] as number, w[i + 1] as Uint8Array);
      for (const id of msg.wake) {
        const node = x.nodes.ring(id);
        if (node) x.offer(node);
      }
      for (const n of msg.seen) x.nodes.seen(n);
      for (const e of msg.traces) {
        x.log.info({ shard, node: e.node, correlation_id: e.id, timestamp: e.timestamp, detections: e.detections, bytes: e.bytes, seq: e.seq, outcome: e.outcome }, 'deep-trace: frame decoded');
      }
      break;
    }
    case S_CLAIM: {
      const h = x.handoff.conns.get(msg.conn);
      const info = { node: msg.node, remote: h?.remote ?? '?', protocol: msg.protocol, first: msg.first, ...(msg.group !== undefined ? { group: msg.group } : {}) };
      x.nodes.claim({ shard, conn: msg.conn }, info);
      break;
    }
    case S_REVOKED:
      x.nodes.revoked(msg.conn, msg.node);
      break;
    case S_CLOSE: {
      // The close table gives the level: closes the host asked for (shutdown, a newer connection of the node) are info.
      if (msg.error && x.errLimit.take(msg.reason) >= 0) {
        const h = x.handoff.conns.get(msg.conn);
        const level = CLOSES[msg.reason].level;
        // A connection carries one node (binary) or several (a line-protocol gateway): name one, count many.
        const ids = x.nodes.nodesOf(msg.conn);
        const who = ids.length === 1 ? { node: ids[0] } : ids.length > 1 ? { nodes: ids.length } : {};
        x.log[level]({ conn: msg.conn, ...who, remote: h?.remote, reason: msg.reason, code: msg.error.code }, msg.error.message);
      }
      x.handoff.close(msg.conn, msg.reason);
      break;
    }
    case S_CLOSED:
      x.nodes.connClosed(msg.conn, msg.nodes);
      x.handoff.released(msg.conn);
      break;
    case S_AUTH:
      x.handoff.authed(msg.conn);
      break;
    case S_DETACHED:
      x.handoff.detached(msg);
      break;
    case S_LOG: {
      const h = x.handoff.conns.get(msg.conn);
      x.log.warn({ shard, conn: msg.conn, node: msg.node, remote: h?.remote, reason: msg.reason, suppressed: msg.suppressed }, `frame dropped: ${msg.detail}`);
      break;
    }
  }
}

/** A shard worker died: its connections are closed (the nodes reconnect) and their claims dropped; the pool replaces the worker. */
export function onShardCrash(x: Pick<ShardEventContext, 'handoff' | 'nodes' | 'log'>, shard: number, err: Error): void {
  x.log.error({ shard, err: err.message }, 'shard worker crashed; closing its connections and replacing it');
  // The handoff knows which shard holds a connection now (placement moves it).
  const owned = new Map<number, string[]>();
  for (const h of x.handoff.ofShard(shard)) owned.set(h.id, x.nodes.nodesOf(h.id));
  for (const h of x.handoff.ofShard(shard)) {
    x.handoff.destroy(h.id, 'shard_crashed');
    x.handoff.released(h.id);
  }
  for (const [conn, ids] of owned) x.nodes.connClosed(conn, ids);
}
