// The node table's hooks, in three layers: the engine's own (logs, agent state, per-node
// state to forget), the tracker supervisor's (provisioning, node up/down) and the embedder's.
import type { NodeHooks } from '../nodes/node-table.js';
import type { AgentService } from '../agents/agent-service.js';
import type { Logger } from '../telemetry/logger.js';

export interface EngineSide {
  log: Logger;
  agents: AgentService;
  /** A node's ring was released: forget the engine's per-node state. */
  forget(node: string): void;
}

/** Every layer is called; the embedder's provisioning decision replaces the supervisor's. */
export function nodeHooks(tracker: NodeHooks, user: NodeHooks | undefined, e: EngineSide): NodeHooks {
  const hooks: NodeHooks = {
    onUnknownNode: user?.onUnknownNode ?? tracker.onUnknownNode,
    onNodeConnected: (n, i) => { tracker.onNodeConnected?.(n, i); user?.onNodeConnected?.(n, i); },
    onNodeDisconnected: (n) => { tracker.onNodeDisconnected?.(n); user?.onNodeDisconnected?.(n); },
    onNodeSeen: (n) => { tracker.onNodeSeen?.(n); user?.onNodeSeen?.(n); },
  };
  return {
    ...hooks,
    onNodeConnected: (node, info) => {
      e.log.info({ node: node.id, remote: info.remote, protocol: info.protocol }, 'node connected');
      e.agents.touchNode(node.id, e.agents.registry.now(), info.group, true);
      hooks.onNodeConnected?.(node, info);
    },
    onNodeSeen: (node) => {
      e.agents.touchNode(node.id, e.agents.registry.now(), undefined, false);
      hooks.onNodeSeen?.(node);
    },
    onNodeDisconnected: (node) => {
      e.log.info({ node: node.id }, 'node disconnected');
      hooks.onNodeDisconnected?.(node);
    },
    onNodeReleased: (node) => {
      e.forget(node.id);
      e.log.info({ node: node.id, last_seq: node.reader.lastSeq }, 'node ring released');
      user?.onNodeReleased?.(node);
    },
  };
}
