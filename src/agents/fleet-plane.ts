// The agent control plane of several hosts: what this host does with the fleet's
// registry and command store (RedisFleetStore) around its own memory. Commands are
// stored once and routed to the host that holds the agent's stream; messages from
// other hosts are acted on here; this host's agents are kept in its memory too, so
// they are served while Redis is unreachable, and written back when it returns.
import type { Config } from '../config.js';
import type { AgentRegistry } from './agent-registry.js';
import type { Command, CommandResult, CommandStore, CommandType } from './command-store.js';
import type { SseHub } from './sse-hub.js';
import type { RedisFleetStore } from './fleet-store-redis.js';
import type { FleetAgentRecord } from './fleet-records.js';
import { deliverMessages, MAX_DELIVERIES_PER_MESSAGE, type FleetMessage } from './fleet-messages.js';

/** Where a command created here went: radar_ingest_cluster_commands_routed_total{result}. */
export const ROUTE_RESULTS = ['local', 'published', 'no_listener', 'no_stream', 'error'] as const;
export type RouteResult = (typeof ROUTE_RESULTS)[number];

/** The fleet's registry and commands, and what this host counts about them. */
export interface FleetLink {
  store: RedisFleetStore;
  hostId: string;
  routed(result: RouteResult, n: number): void;
  /** A request served from this host's memory because Redis was unreachable. */
  servedLocally(): void;
}

/** This host's side: its memory (the single-host registry and store) and its streams. */
export interface LocalAgents {
  registry: AgentRegistry;
  commands: CommandStore;
  hub: SseHub;
  cfg: Config['agents'];
  /** Digest of each local agent's current token, and when it was issued (0: issued elsewhere). */
  currentToken: Map<string, Buffer>;
  tokenAt: Map<string, number>;
  countCommand(type: CommandType, result: CommandResult): void;
  /** Drops an agent from this host's memory. */
  forget(id: string): boolean;
  traceNode?(node: string, correlationId: string, durationMs: number): void;
  log?(level: 'info' | 'warn', obj: Record<string, unknown>, msg: string): void;
}

/** Commands created here and kept in the fleet, awaiting their expiry to be counted (oldest dropped beyond it). */
const MAX_EXPIRY_WATCH = 100000;
/** Commands stored (and routed) per round trip. */
const STORE_CHUNK = 500;

export class FleetPlane {
  /** TCP traffic since the last sweep, written to the fleet registry then. */
  private readonly touches = new Map<string, { at: number; group: string | undefined }>();
  private expiryWatch: { id: string; type: CommandType; createdAt: number }[] = [];
  private sweeping = false;

  constructor(readonly link: FleetLink, private readonly local: LocalAgents) {}

  get degraded(): boolean {
    return this.link.store.degraded;
  }

  get hostId(): string {
    return this.link.hostId;
  }

  /** The fleet's answer, or not ok (Redis unreachable): the caller serves from this host's memory. */
  async via<T>(op: (st: RedisFleetStore) => Promise<T>): Promise<{ ok: true; v: T } | { ok: false }> {
    const f = this.link;
    if (f.store.degraded) {
      f.servedLocally();
      return { ok: false };
    }
    try {
      return { ok: true, v: await op(f.store) };
    } catch (err) {
      f.servedLocally();
      this.error(err as Error);
      return { ok: false };
    }
  }

  private error(err: Error): void {
    this.local.log?.('warn', { err: err.message }, 'agents: a fleet registry operation failed; served from this host');
  }

  /** An agent this host served from the fleet is kept here too, so it is served while Redis is away. */
  mirror(r: FleetAgentRecord): void {
    const { registry, currentToken, tokenAt } = this.local;
    const a = r.agent;
    const mine = registry.get(a.id);
    if (!mine) {
      if (!a.registered || registry.tryRegister(a.id, a) === null) return;
    } else if (a.registered) {
      Object.assign(mine, { name: a.name, group: a.group, version: a.version, capabilities: a.capabilities, routes: a.routes, registered: true });
    }
    if (r.tokenDigest !== null && currentToken.get(a.id)?.toString('hex') !== r.tokenDigest) {
      currentToken.set(a.id, Buffer.from(r.tokenDigest, 'hex'));
      tokenAt.set(a.id, 0); // issued elsewhere: a write back never puts it above the fleet's
    }
  }

  /** Redis reachable again: this host's agents (registered or re-registered meanwhile) and streams go back to the fleet. */
  async writeBack(): Promise<number> {
    const { registry, currentToken, tokenAt, hub, cfg } = this.local;
    const st = this.link.store;
    let n = 0;
    for (const a of registry.list()) {
      const digest = currentToken.get(a.id);
      if (await st.register({ agent: a, tokenDigest: digest ? digest.toString('hex') : null, tokenAt: tokenAt.get(a.id) ?? 0 }, cfg.max_agents)) n++;
    }
    const now = registry.now();
    for (const s of hub.streams()) await st.streamOpened(s.agentId, s.auth.expiresAt - now);
    return n;
  }

  /** A message from another host, on this host's channel or the one every host hears. */
  onMessage(m: FleetMessage): void {
    const { hub, currentToken, tokenAt } = this.local;
    switch (m.t) {
      case 'deliver': {
        const here = m.c.filter(([agent]) => hub.get(agent) !== undefined);
        if (here.length > 0) this.via(async (st) => this.deliver(st, await st.getCommands(here))).catch(() => {});
        return;
      }
      case 'close': {
        if (m.f === this.hostId) return; // done here already
        if (m.r === 'deleted') {
          this.local.forget(m.a);
          hub.close(m.a, 'deleted');
          return;
        }
        const s = hub.get(m.a);
        if (m.d !== undefined && currentToken.has(m.a) && currentToken.get(m.a)!.toString('hex') !== m.d) {
          currentToken.set(m.a, Buffer.from(m.d, 'hex'));
          tokenAt.set(m.a, 0);
        }
        if (s && (m.d === undefined || s.auth.tokenDigest.toString('hex') !== m.d)) hub.close(m.a, 'token_revoked');
        return;
      }
      case 'trace':
        this.local.traceNode?.(m.n, m.c, m.ms);
        return;
    }
  }

  /** Claims fleet commands for this host's streams (one round trip) and writes them; how many were written. */
  private async deliver(st: RedisFleetStore, cs: readonly Command[]): Promise<number> {
    const { hub, registry, commands, cfg } = this.local;
    const here = cs.filter((c) => hub.get(c.agentId) !== undefined);
    if (here.length === 0) return 0;
    const at = registry.now();
    const claimed = await st.claimMany(here, at, cfg.command_ttl_ms);
    let n = 0;
    for (let i = 0; i < here.length; i++) {
      if (!claimed[i]) continue;
      const c = here[i]!;
      const s = hub.get(c.agentId);
      if (s && s.send(c.id, c.type, commands.eventData(c))) {
        c.deliveredAt = at;
        this.local.countCommand(c.type, 'delivered');
        n++;
      } else {
        await st.unclaim(c, at); // stays PENDING for the next stream
      }
    }
    return n;
  }

  /**
   * The agent's stream opened here: commands created from now on are routed here; those
   * created before are read now (a command both routed and read is claimed once).
   */
  async streamOpened(id: string, expiresAt: number, closed: () => boolean): Promise<void> {
    await this.via(async (st) => {
      const now = this.local.registry.now();
      await st.heartbeat(id, now);
      await st.streamOpened(id, expiresAt - now);
      const { commands } = await st.commandsOf(id, this.local.cfg.max_commands_kept, 0);
      if (closed()) return;
      // In creation order: claimed together, written in order.
      await this.deliver(st, commands.filter((c) => c.deliveredAt === null && this.local.commands.state(c) === 'PENDING'));
    });
  }

  /** The stream here ended (and no newer one replaced it). */
  streamClosed(id: string): void {
    if (!this.degraded) this.link.store.streamClosed(id).catch(() => {});
  }

  /**
   * Stores built (signed) commands once in the fleet and routes them; returns those the
   * fleet did not take (Redis failed), for this host to keep.
   */
  async send(built: readonly Command[], type: CommandType, traceMs: number): Promise<Command[]> {
    const notStored: Command[] = [];
    for (let i = 0; i < built.length; i += STORE_CHUNK) {
      const chunk = built.slice(i, i + STORE_CHUNK);
      const stored = await this.via(async (st) => {
        await st.createCommands(chunk, this.local.cfg.max_commands_kept);
        return st;
      });
      if (!stored.ok) {
        notStored.push(...chunk);
        continue;
      }
      for (const c of chunk) {
        this.local.countCommand(type, 'created');
        this.expiryWatch.push({ id: c.id, type, createdAt: c.createdAt });
      }
      if (this.expiryWatch.length > MAX_EXPIRY_WATCH) this.expiryWatch = this.expiryWatch.slice(-MAX_EXPIRY_WATCH);
      try {
        await this.route(stored.v, chunk);
      } catch (err) {
        this.link.routed('error', chunk.length);
        this.error(err as Error);
      }
      if (type === 'deep-trace') for (const c of chunk) await this.traceOnOwner(c.agentId, c.id, traceMs);
    }
    return notStored;
  }

  /** Sends stored commands to the hosts holding their agents' streams. */
  private async route(st: RedisFleetStore, cs: readonly Command[]): Promise<void> {
    const f = this.link;
    const holders = await st.streamHolders(cs.map((c) => c.agentId));
    const byHost = new Map<string, [string, string][]>();
    let none = 0;
    const here: Command[] = [];
    for (let i = 0; i < cs.length; i++) {
      const h = holders[i];
      if (h === null || h === undefined) none++;
      else if (h === f.hostId) here.push(cs[i]!);
      else {
        let l = byHost.get(h);
        if (!l) byHost.set(h, (l = []));
        l.push([cs[i]!.agentId, cs[i]!.id]);
      }
    }
    if (none > 0) f.routed('no_stream', none);
    if (here.length > 0) {
      await this.deliver(st, here);
      f.routed('local', here.length);
    }
    // Published together: one round trip for the lot, not one per message.
    const sends: Promise<void>[] = [];
    for (const [host, pairs] of byHost) {
      deliverMessages(pairs).forEach((msg, i) => {
        const n = Math.min(MAX_DELIVERIES_PER_MESSAGE, pairs.length - MAX_DELIVERIES_PER_MESSAGE * i);
        sends.push(st.publish(host, msg).then((heard) => f.routed(heard > 0 ? 'published' : 'no_listener', n), () => f.routed('error', n)));
      });
    }
    await Promise.all(sends);
  }

  /** deep-trace: tracing runs on the host that owns the node (its lease), else here. */
  private async traceOnOwner(node: string, id: string, ms: number): Promise<void> {
    const f = await this.via(async (st) => {
      const owner = await st.nodeOwner(node);
      if (owner === null || owner === this.hostId) return false;
      return (await st.publish(owner, { t: 'trace', n: node, c: id, ms })) > 0;
    });
    if (!(f.ok && f.v)) this.local.traceNode?.(node, id, ms);
  }

  /** TCP traffic of a node, written to the fleet at the next sweep (one entry per node). */
  touch(id: string, at: number, group: string | undefined): void {
    const prev = this.touches.get(id);
    if (!prev && this.touches.size >= this.local.cfg.max_agents) return;
    this.touches.set(id, { at: Math.max(at, prev?.at ?? 0), group: group ?? prev?.group });
  }

  /** Periodic: TCP liveness written to the registry; fleet commands created here counted when they expire. */
  sweep(): void {
    if (this.sweeping || this.degraded) return;
    this.sweeping = true;
    this.sweepOnce().catch((err: Error) => this.error(err)).finally(() => { this.sweeping = false; });
  }

  private async sweepOnce(): Promise<void> {
    const st = this.link.store;
    const { cfg, registry } = this.local;
    if (this.touches.size > 0) {
      const entries = [...this.touches].map(([id, t]) => ({ id, ...t }));
      this.touches.clear();
      await st.touch(entries, cfg.max_agents);
    }
    const now = registry.now();
    let n = 0;
    while (n < this.expiryWatch.length && n < 1000 && now >= this.expiryWatch[n]!.createdAt + cfg.command_ttl_ms) n++;
    if (n === 0) return;
    const due = this.expiryWatch.slice(0, n);
    const acked = await st.acknowledged(due.map((d) => d.id));
    this.expiryWatch = this.expiryWatch.slice(n);
    due.forEach((d, i) => { if (acked[i] === false) this.local.countCommand(d.type, 'expired'); });
  }
}
