// Commands pushed to agents. One command per target agent, each with its own UUID:
// PENDING -> DELIVERED (written to the agent's stream) -> ACKNOWLEDGED, or EXPIRED
// once `ttlMs` has passed since creation without an ack. Expiry is a pure function
// of the clock (exact under a fake clock); sweep() reports it for metrics.
import { randomUUID } from 'node:crypto';

export const COMMAND_TYPES = ['config-update', 'deep-trace', 'replay'] as const;
export type CommandType = (typeof COMMAND_TYPES)[number];
export type CommandState = 'PENDING' | 'DELIVERED' | 'ACKNOWLEDGED' | 'EXPIRED';
/** Outcomes counted in radar_ingest_commands_total{type,result}. */
const COMMAND_RESULTS = ['created', 'delivered', 'acknowledged', 'expired'] as const;
export type CommandResult = (typeof COMMAND_RESULTS)[number];

export interface Command {
  id: string;
  /** Creation order across the store (list cursors). */
  seq: number;
  agentId: string;
  type: CommandType;
  payload: unknown;
  /** How it was addressed: "agent:<id>", "group:<name>" or "all". */
  target: string;
  createdAt: number;
  deliveredAt: number | null;
  acknowledgedAt: number | null;
  result: unknown;
  signature: string;
  /** EXPIRED already counted, or the command is no longer kept (never counted then). */
  expiredCounted: boolean;
}

export interface CommandView {
  id: string;
  agentId: string;
  type: CommandType;
  target: string;
  payload: unknown;
  state: CommandState;
  createdAt: string;
  deliveredAt: string | null;
  acknowledgedAt: string | null;
  expiresAt: string;
  result?: unknown;
}

export type AckOutcome = 'acknowledged' | 'unknown' | 'expired' | 'already';

export class CommandStore {
  private readonly byAgent = new Map<string, Command[]>();
  private seq = 0;
  /**
   * Commands in creation order, which is expiry order (one TTL for all): sweep() looks
   * only at the head, so it costs the commands that expired, not every command kept.
   */
  private expiryQueue: Command[] = [];
  private expiryHead = 0;

  constructor(
    private readonly ttlMs: number,
    private readonly maxKept: number,
    private readonly sign: (c: { id: string; type: string; target: string; createdAt: number; payload: unknown; canonicalPayload?: string }) => string,
    readonly now: () => number = Date.now,
    private readonly count: (type: CommandType, result: CommandResult) => void = () => undefined,
  ) {}

  state(c: Command): CommandState {
    if (c.acknowledgedAt !== null) return 'ACKNOWLEDGED';
    if (this.now() >= c.createdAt + this.ttlMs) return 'EXPIRED';
    return c.deliveredAt !== null ? 'DELIVERED' : 'PENDING';
  }

  /** `canonicalPayload`: canonicalJson(payload) when the caller has it already (a broadcast signs many commands). */
  create(agentId: string, type: CommandType, payload: unknown, target: string, canonicalPayload?: string): Command {
    return this.keep(this.build(agentId, type, payload, target, canonicalPayload));
  }

  /** A new signed command, not kept here (a fleet stores it elsewhere); seq 0 until stored. */
  build(agentId: string, type: CommandType, payload: unknown, target: string, canonicalPayload?: string): Command {
    const createdAt = this.now();
    const id = randomUUID();
    return {
      id, seq: 0, agentId, type, payload, target, createdAt, deliveredAt: null, acknowledgedAt: null, result: undefined,
      signature: this.sign({ id, type, target, createdAt, payload, ...(canonicalPayload !== undefined ? { canonicalPayload } : {}) }),
      expiredCounted: false,
    };
  }

  /** Keeps a built command here (counted as created). */
  keep(c: Command): Command {
    c.seq = ++this.seq;
    const { agentId, type } = c;
    this.expiryQueue.push(c);
    let list = this.byAgent.get(agentId);
    if (!list) this.byAgent.set(agentId, (list = []));
    list.push(c);
    if (list.length > this.maxKept) for (const old of list.splice(0, list.length - this.maxKept)) untrack(old);
    this.count(type, 'created');
    return c;
  }

  /** The event an agent receives (also what the signature covers, plus the signature). */
  eventData(c: Command): string {
    return JSON.stringify({ id: c.id, type: c.type, target: c.target, created_at: c.createdAt, payload: c.payload, signature: c.signature });
  }

  markDelivered(c: Command): void {
    if (c.deliveredAt !== null) return;
    c.deliveredAt = this.now();
    this.count(c.type, 'delivered');
  }

  /** Commands never written to a stream and not expired (sent when the agent's stream opens). */
  undelivered(agentId: string): Command[] {
    return (this.byAgent.get(agentId) ?? []).filter((c) => c.deliveredAt === null && this.state(c) === 'PENDING');
  }

  get(agentId: string, id: string): Command | undefined {
    return this.byAgent.get(agentId)?.find((c) => c.id === id);
  }

  ack(agentId: string, id: string, result: unknown): AckOutcome {
    const c = this.get(agentId, id);
    if (!c) return 'unknown';
    const s = this.state(c);
    if (s === 'ACKNOWLEDGED') return 'already';
    if (s === 'EXPIRED') {
      this.countExpired(c);
      return 'expired';
    }
    c.acknowledgedAt = this.now();
    c.result = result;
    this.count(c.type, 'acknowledged');
    return 'acknowledged';
  }

  list(agentId: string): Command[] {
    return [...(this.byAgent.get(agentId) ?? [])];
  }

  /** Up to `limit` of the agent's commands created after the one with seq `after` (0: from the oldest kept). */
  page(agentId: string, limit: number, after: number): { commands: Command[]; next: number | null } {
    const list = this.byAgent.get(agentId) ?? [];
    let i = 0;
    while (i < list.length && list[i]!.seq <= after) i++;
    const commands = list.slice(i, i + limit);
    return { commands, next: i + limit < list.length ? commands[commands.length - 1]!.seq : null };
  }

  forget(agentId: string): void {
    for (const c of this.byAgent.get(agentId) ?? []) untrack(c);
    this.byAgent.delete(agentId);
  }

  view(c: Command): CommandView {
    const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());
    const v: CommandView = {
      id: c.id, agentId: c.agentId, type: c.type, target: c.target, payload: c.payload, state: this.state(c),
      createdAt: new Date(c.createdAt).toISOString(), deliveredAt: iso(c.deliveredAt), acknowledgedAt: iso(c.acknowledgedAt),
      expiresAt: new Date(c.createdAt + this.ttlMs).toISOString(),
    };
    if (c.result !== undefined) v.result = c.result;
    return v;
  }

  /** Counts commands that expired since the last sweep. */
  sweep(): void {
    const q = this.expiryQueue;
    const now = this.now();
    while (this.expiryHead < q.length && now >= q[this.expiryHead]!.createdAt + this.ttlMs) {
      const c = q[this.expiryHead++]!;
      if (c.acknowledgedAt === null) this.countExpired(c);
    }
    if (this.expiryHead > 1024 && this.expiryHead * 2 > q.length) {
      this.expiryQueue = q.slice(this.expiryHead);
      this.expiryHead = 0;
    }
  }

  private countExpired(c: Command): void {
    if (c.expiredCounted) return;
    c.expiredCounted = true;
    this.count(c.type, 'expired');
  }
}

/** A command no longer kept is not counted as expired later. */
function untrack(c: Command): void {
  c.expiredCounted = true;
}
