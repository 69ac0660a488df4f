// Agents (nodes) known to the control plane. An agent's state is a pure function
// of its last heartbeat and the clock, so timing rules are exact under a fake
// clock and no timer can drift:
//   LIVE  while now - lastHeartbeat <  staleAfter
//   STALE while now - lastHeartbeat <  staleAfter + deadAfter
//   DEAD  after that, kept until deleted; any heartbeat (or TCP frame) revives it.

export const AGENT_STATES = ['LIVE', 'STALE', 'DEAD'] as const;
export type AgentState = (typeof AGENT_STATES)[number];

export interface AgentTiming {
  staleAfterMs: number;
  deadAfterMs: number;
}

export interface AgentInfo {
  name: string;
  group: string;
  version: string;
  capabilities: string[];
  routes: string[];
}

export interface Agent extends AgentInfo {
  id: string;
  registeredAt: number;
  lastHeartbeatAt: number;
  /** Registered over HTTP (false: seen only on TCP). */
  registered: boolean;
}

export interface AgentView extends AgentInfo {
  id: string;
  state: AgentState;
  registered: boolean;
  registeredAt: string;
  lastHeartbeatAt: string;
}

export function agentState(a: Agent, now: number, t: AgentTiming): AgentState {
  const quiet = now - a.lastHeartbeatAt;
  if (quiet < t.staleAfterMs) return 'LIVE';
  if (quiet < t.staleAfterMs + t.deadAfterMs) return 'STALE';
  return 'DEAD';
}

export class AgentRegistry {
  private readonly agents = new Map<string, Agent>();
  /** Last state reported to onTransition, to report each change once. */
  private readonly reported = new Map<string, AgentState>();

  constructor(
    readonly timing: AgentTiming,
    readonly now: () => number = Date.now,
    private readonly onTransition?: (id: string, from: AgentState | null, to: AgentState) => void,
  ) {}

  /** Registers or resumes an agent (metadata replaced, LIVE from now). */
  register(id: string, info: AgentInfo): Agent {
    const t = this.now();
    const prev = this.agents.get(id);
    const a: Agent = { id, ...info, registeredAt: prev?.registered ? prev.registeredAt : t, lastHeartbeatAt: t, registered: true };
    this.agents.set(id, a);
    this.report(a);
    return a;
  }

  /** A heartbeat: STALE/DEAD become LIVE. False for an unknown id. */
  heartbeat(id: string): boolean {
    const a = this.agents.get(id);
    if (!a) return false;
    a.lastHeartbeatAt = this.now();
    this.report(a);
    return true;
  }

  /**
   * Traffic on the node's TCP connection counts as a heartbeat; a node seen only on
   * TCP is registered implicitly (group from its binary hello, else "default").
   */
  touch(id: string, at: number = this.now(), group?: string): void {
    let a = this.agents.get(id);
    if (!a) {
      a = { id, name: id, group: group ?? 'default', version: '', capabilities: [], routes: [], registeredAt: at, lastHeartbeatAt: at, registered: false };
      this.agents.set(id, a);
    } else {
      if (at > a.lastHeartbeatAt) a.lastHeartbeatAt = at;
      if (group !== undefined && !a.registered) a.group = group; // the latest hello names the group
    }
    this.report(a);
  }

  get(id: string): Agent | undefined {
    return this.agents.get(id);
  }

  delete(id: string): boolean {
    this.reported.delete(id);
    return this.agents.delete(id);
  }

  state(a: Agent): AgentState {
    return agentState(a, this.now(), this.timing);
  }

  list(status?: AgentState): Agent[] {
    const out: Agent[] = [];
    for (const a of this.agents.values()) if (!status || this.state(a) === status) out.push(a);
    return out;
  }

  view(a: Agent): AgentView {
    return {
      id: a.id, name: a.name, group: a.group, version: a.version, capabilities: a.capabilities, routes: a.routes,
      state: this.state(a), registered: a.registered,
      registeredAt: new Date(a.registeredAt).toISOString(), lastHeartbeatAt: new Date(a.lastHeartbeatAt).toISOString(),
    };
  }

  counts(): Record<AgentState, number> {
    const c: Record<AgentState, number> = { LIVE: 0, STALE: 0, DEAD: 0 };
    for (const a of this.agents.values()) c[this.state(a)]++;
    return c;
  }

  /** Reports state changes that happened with the passage of time (call periodically). */
  sweep(): void {
    for (const a of this.agents.values()) this.report(a);
  }

  private report(a: Agent): void {
    const s = this.state(a);
    const prev = this.reported.get(a.id) ?? null;
    if (prev !== s) {
      this.reported.set(a.id, s);
      this.onTransition?.(a.id, prev, s);
    }
  }
}
