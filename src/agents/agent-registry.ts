// Agents (nodes) known to the control plane. An agent's state is a pure function
// of its last heartbeat and the clock, so timing rules are exact under a fake
// clock and no timer can drift:
//   LIVE  while now - lastHeartbeat <  staleAfter
//   STALE while now - lastHeartbeat <  staleAfter + deadAfter
//   DEAD  after that, kept until deleted; any heartbeat (or TCP frame) revives it.

import { ErrorCodes, RadarError } from '../protocol/errors.js';

export const AGENT_STATES = ['LIVE', 'STALE', 'DEAD'] as const;
/** Where a new agent came from when the registry was full (radar_ingest_agents_refused_total{via}). */
export const AGENT_REFUSED_VIA = ['register', 'tcp'] as const;
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

export interface AgentPage {
  agents: Agent[];
  /** The id to continue after, or null when this page is the last. */
  next: string | null;
}

export class AgentRegistry {
  private readonly agents = new Map<string, Agent>();
  /** Every id in sorted order (pages walk it from a cursor without sorting per request). */
  private readonly ids: string[] = [];
  /** Last state reported to onTransition, to report each change once. */
  private readonly reported = new Map<string, AgentState>();

  constructor(
    readonly timing: AgentTiming,
    readonly now: () => number = Date.now,
    private readonly onTransition?: (id: string, from: AgentState | null, to: AgentState) => void,
    /** Agents kept at most, registered and seen on TCP together; new ids beyond it are refused. */
    readonly maxAgents: number = Infinity,
  ) {}

  get size(): number {
    return this.agents.size;
  }

  /** Registers or resumes an agent (metadata replaced, LIVE from now); throws when a new id finds the registry full. */
  register(id: string, info: AgentInfo): Agent {
    const a = this.tryRegister(id, info);
    if (a === null) throw new RadarError(ErrorCodes.MAX_AGENTS, `agent registry full (${this.maxAgents})`);
    return a;
  }

  /** register(), or null when `id` is new and the registry is full. */
  tryRegister(id: string, info: AgentInfo): Agent | null {
    const t = this.now();
    const prev = this.agents.get(id);
    if (!prev && !this.add(id)) return null;
    const a: Agent = { id, ...info, registeredAt: prev?.registered ? prev.registeredAt : t, lastHeartbeatAt: t, registered: true };
    this.agents.set(id, a);
    this.report(a);
    return a;
  }

  /** Makes room for a new id in the sorted index; false when the registry is full. */
  private add(id: string): boolean {
    if (this.agents.size >= this.maxAgents) return false;
    this.ids.splice(lowerBound(this.ids, id), 0, id);
    return true;
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
  touch(id: string, at: number = this.now(), group?: string): boolean {
    let a = this.agents.get(id);
    if (!a) {
      if (!this.add(id)) return false;
      a = { id, name: id, group: group ?? 'default', version: '', capabilities: [], routes: [], registeredAt: at, lastHeartbeatAt: at, registered: false };
      this.agents.set(id, a);
    } else {
      if (at > a.lastHeartbeatAt) a.lastHeartbeatAt = at;
      if (group !== undefined && !a.registered) a.group = group; // the latest hello names the group
    }
    this.report(a);
    return true;
  }

  get(id: string): Agent | undefined {
    return this.agents.get(id);
  }

  delete(id: string): boolean {
    this.reported.delete(id);
    if (!this.agents.delete(id)) return false;
    const i = lowerBound(this.ids, id);
    if (this.ids[i] === id) this.ids.splice(i, 1);
    return true;
  }

  state(a: Agent): AgentState {
    return agentState(a, this.now(), this.timing);
  }

  list(status?: AgentState): Agent[] {
    const out: Agent[] = [];
    for (const a of this.agents.values()) if (!status || this.state(a) === status) out.push(a);
    return out;
  }

  /** Up to `limit` agents with ids after `after` (null: from the start), in id order, optionally of one state. */
  page(limit: number, after: string | null, status?: AgentState): AgentPage {
    const out: Agent[] = [];
    let i = after === null ? 0 : upperBound(this.ids, after);
    for (; i < this.ids.length && out.length < limit; i++) {
      const a = this.agents.get(this.ids[i]!)!;
      if (!status || this.state(a) === status) out.push(a);
    }
    // More may follow only if the walk stopped early.
    let more = false;
    for (let j = i; j < this.ids.length; j++) {
      if (!status || this.state(this.agents.get(this.ids[j]!)!) === status) {
        more = true;
        break;
      }
    }
    return { agents: out, next: more && out.length > 0 ? out[out.length - 1]!.id : null };
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

/** First index whose id is >= `id`. */
function lowerBound(ids: readonly string[], id: string): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[mid]! < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index whose id is > `id`. */
function upperBound(ids: readonly string[], id: string): number {
  const i = lowerBound(ids, id);
  return ids[i] === id ? i + 1 : i;
}
