// Frames count as an agent's heartbeat: a ring written since the last sweep touches its node.
import type { NodeTable } from '../nodes/node-table.js';
import type { AgentService } from '../agents/agent-service.js';

export class WriteHeartbeats {
  /** Ring write clock seen at the last sweep, per node. */
  private readonly lastWrites = new Map<string, number>();

  /** Touches the agent of every node whose ring was written since the last call. */
  sweep(nodes: NodeTable, agents: AgentService): void {
    const reg = agents.registry;
    for (const n of nodes.byRing) {
      const w = n.reader.lastWriteMs;
      if (w !== 0 && this.lastWrites.get(n.id) !== w) {
        this.lastWrites.set(n.id, w);
        agents.touchNode(n.id, reg.now(), undefined, false);
      }
    }
  }

  /** The node's ring was released. */
  forget(node: string): void { this.lastWrites.delete(node); }
}
