// The agent registry and command store of the whole fleet, in Redis: the I/O shell
// over the scripts in fleet-scripts.ts and the records in fleet-records.ts. Two
// connections of its own: commands, and a subscriber on this host's agent channel.
// Commands fail fast while Redis is unreachable (no offline queue): the caller then
// serves from this host's memory, and `degraded` says so.
import { Redis } from 'ioredis';
import { failFastOptions } from '../cluster/redis-options.js';
import type { Agent, AgentState, AgentTiming } from './agent-registry.js';
import type { AckOutcome, Command } from './command-store.js';
import {
  ACK_LUA, CLAIM_LUA, CREATE_COMMAND_LUA, DELETE_LUA, HEARTBEAT_LUA, PAGE_LUA, REGISTER_LUA, STREAM_CLOSED_LUA, TOUCH_LUA, UNCLAIM_LUA,
} from './fleet-scripts.js';
import { agentFields, commandFields, decodeAgent, decodeCommand, type FleetAgentRecord } from './fleet-records.js';
import { decodeFleetMessage, encodeFleetMessage, leaseHolder, type FleetMessage } from './fleet-messages.js';

export interface FleetStoreOptions {
  redisUrl: string;
  hostId: string;
  keyPrefix: string;
  /** Longest wait for one Redis answer before the operation counts as failed. */
  commandTimeoutMs: number;
  /** Longest payload/result (characters) accepted from a command record. */
  maxPayloadChars: number;
  maxTraceMs: number;
  /** A valid message on this host's channel. */
  onMessage: (m: FleetMessage) => void;
  /** A message on this host's channel that is not one: dropped. */
  onInvalid: () => void;
  /** Reachable (false) or not (true): called on each change. */
  onDegraded: (degraded: boolean) => void;
  onRedisError?: (err: Error) => void;
}

interface Scripts {
  fleetRegister(doc: string, ids: string, hb: string, ...argv: (string | number)[]): Promise<number>;
  fleetTouch(doc: string, ids: string, hb: string, id: string, at: number, max: number, group: string): Promise<number>;
  fleetHeartbeat(doc: string, hb: string, id: string, now: number): Promise<number>;
  fleetDelete(doc: string, ids: string, hb: string, cmds: string, stream: string, id: string, cmdPrefix: string): Promise<[number, string]>;
  fleetPage(ids: string, hb: string, after: string, limit: number, status: string, now: number, stale: number, dead: number, maxScan: number): Promise<(number | string)[]>;
  fleetCreate(cmd: string, cmds: string, seq: string, ...argv: (string | number)[]): Promise<number>;
  fleetClaim(cmd: string, agent: string, now: number, ttl: number): Promise<number>;
  fleetUnclaim(cmd: string, at: number): Promise<number>;
  fleetAck(cmd: string, agent: string, now: number, ttl: number, result: string): Promise<string>;
  fleetStreamClosed(stream: string, host: string): Promise<number>;
}

type ScriptRedis = Redis & Scripts;

/** A write back of one of this host's agents after an outage. */
export interface LocalAgent {
  agent: Agent;
  tokenDigest: string | null;
  tokenAt: number;
}

export class RedisFleetStore {
  private readonly cmd: ScriptRedis;
  private readonly sub: Redis;
  private readonly p: string;
  private wasDegraded = true;
  private closed = false;

  constructor(private readonly opts: FleetStoreOptions) {
    this.p = opts.keyPrefix;
    const timings = { commandTimeoutMs: opts.commandTimeoutMs, connectTimeoutMs: Math.max(200, opts.commandTimeoutMs), retryMs: 500 };
    this.cmd = new Redis(opts.redisUrl, failFastOptions(timings)) as ScriptRedis;
    this.sub = new Redis(opts.redisUrl, failFastOptions({ ...timings, commandTimeoutMs: undefined }));
    const def = (name: string, keys: number, lua: string) => this.cmd.defineCommand(name, { numberOfKeys: keys, lua });
    def('fleetRegister', 3, REGISTER_LUA);
    def('fleetTouch', 3, TOUCH_LUA);
    def('fleetHeartbeat', 2, HEARTBEAT_LUA);
    def('fleetDelete', 5, DELETE_LUA);
    def('fleetPage', 2, PAGE_LUA);
    def('fleetCreate', 3, CREATE_COMMAND_LUA);
    def('fleetClaim', 1, CLAIM_LUA);
    def('fleetUnclaim', 1, UNCLAIM_LUA);
    def('fleetAck', 1, ACK_LUA);
    def('fleetStreamClosed', 1, STREAM_CLOSED_LUA);
    const onError = (err: Error) => opts.onRedisError?.(err);
    this.cmd.on('error', onError);
    this.sub.on('error', onError);
    this.sub.on('message', (channel: string, message: string) => {
      if (channel !== this.channel(opts.hostId) && channel !== this.everyHost) return;
      const m = decodeFleetMessage(message, opts.maxTraceMs);
      if (m) opts.onMessage(m);
      else opts.onInvalid();
    });
    // Subscribed again on every (re)connect: a subscription made while down was refused.
    this.sub.on('ready', () => {
      this.sub.subscribe(this.channel(opts.hostId), this.everyHost).then(() => this.check(), () => {});
    });
    for (const c of [this.cmd, this.sub]) {
      c.on('ready', () => this.check());
      c.on('close', () => this.check());
      c.on('end', () => this.check());
    }
  }

  /** True while either connection is down: registry and commands are this host's alone. */
  get degraded(): boolean {
    return !(this.cmd.status === 'ready' && this.sub.status === 'ready');
  }

  private check(): void {
    if (this.closed) return;
    const d = this.degraded;
    if (d !== this.wasDegraded) {
      this.wasDegraded = d;
      this.opts.onDegraded(d);
    }
  }

  /** Connects; false when Redis did not answer (it keeps trying; degraded meanwhile). */
  async start(): Promise<boolean> {
    const r = await Promise.allSettled([this.cmd.connect(), this.sub.connect()]);
    return r.every((x) => x.status === 'fulfilled');
  }

  close(): void {
    this.closed = true;
    this.cmd.disconnect();
    this.sub.disconnect();
  }

  // ---- keys -------------------------------------------------------------------

  channel(host: string): string { return `${this.p}agents:host:${host}`; }
  /** Heard by every host: deletions and revoked tokens (each host keeps copies of agents it served). */
  private get everyHost(): string { return `${this.p}agents:all`; }
  private doc(id: string): string { return `${this.p}agent:${id}`; }
  private get ids(): string { return `${this.p}agents:ids`; }
  private get hb(): string { return `${this.p}agents:hb`; }
  private stream(id: string): string { return `${this.p}agent-stream:${id}`; }
  private get cmdPrefix(): string { return `${this.p}cmd:`; }
  private cmds(agent: string): string { return `${this.p}cmds:${agent}`; }

  // ---- registry ---------------------------------------------------------------

  /** Registers (or writes back) an agent; false when it is new and the fleet holds maxAgents. */
  async register(a: LocalAgent, maxAgents: number): Promise<boolean> {
    const x = a.agent;
    const r = await this.cmd.fleetRegister(this.doc(x.id), this.ids, this.hb, x.id, x.lastHeartbeatAt, maxAgents,
      ...agentFields(x), a.tokenDigest ?? '', a.tokenAt);
    return r === 1;
  }

  /** TCP traffic of nodes; the ids refused because the fleet registry is full. */
  async touch(entries: readonly { id: string; at: number; group: string | undefined }[], maxAgents: number): Promise<string[]> {
    if (entries.length === 0) return [];
    const pipe = this.cmd.pipeline() as unknown as Scripts & { exec(): Promise<[Error | null, unknown][] | null> };
    for (const e of entries) pipe.fleetTouch(this.doc(e.id), this.ids, this.hb, e.id, e.at, maxAgents, e.group ?? '');
    const res = (await pipe.exec()) ?? [];
    const refused: string[] = [];
    res.forEach(([err, v], i) => {
      if (err) throw err;
      if (v === 0) refused.push(entries[i]!.id);
    });
    return refused;
  }

  async heartbeat(id: string, now: number): Promise<boolean> {
    return (await this.cmd.fleetHeartbeat(this.doc(id), this.hb, id, now)) === 1;
  }

  async get(id: string): Promise<FleetAgentRecord | null> {
    const [[e1, h], [e2, score]] = (await this.cmd.multi().hgetall(this.doc(id)).zscore(this.hb, id).exec())! as [Error | null, unknown][];
    if (e1 || e2) throw e1 ?? e2;
    return decodeAgent(id, h as Record<string, string>, score as string | null);
  }

  private async many(ids: readonly string[]): Promise<Agent[]> {
    if (ids.length === 0) return [];
    const pipe = this.cmd.pipeline();
    for (const id of ids) pipe.hgetall(this.doc(id)).zscore(this.hb, id);
    const res = (await pipe.exec()) ?? [];
    const out: Agent[] = [];
    for (let i = 0; i < ids.length; i++) {
      const [e1, h] = res[2 * i]!;
      const [e2, s] = res[2 * i + 1]!;
      if (e1 || e2) throw e1 ?? e2;
      const rec = decodeAgent(ids[i]!, h as Record<string, string>, s as string | null);
      if (rec) out.push(rec.agent);
    }
    return out;
  }

  /** Up to `limit` agents after `after` in id order, optionally of one state; next: the id to continue after. */
  async page(limit: number, after: string | null, status: AgentState | undefined, now: number, t: AgentTiming, maxAgents: number): Promise<{ agents: Agent[]; next: string | null }> {
    const r = await this.cmd.fleetPage(this.ids, this.hb, after ?? '', limit, status ?? '', now, t.staleAfterMs, t.deadAfterMs, maxAgents + limit + 1);
    const more = Number(r[0]) === 1;
    const ids = r.slice(1).map(String);
    const agents = await this.many(ids);
    return { agents, next: more && ids.length > 0 ? ids[ids.length - 1]! : null };
  }

  /** Every LIVE agent of the fleet (at most maxAgents). */
  async live(now: number, staleAfterMs: number, maxAgents: number): Promise<Agent[]> {
    const ids = await this.cmd.zrangebyscore(this.hb, `(${now - staleAfterMs}`, '+inf', 'LIMIT', 0, maxAgents);
    return this.many(ids);
  }

  /** Removes the agent and its commands: whether it existed, and the host that held its stream. */
  async delete(id: string): Promise<{ found: boolean; holder: string | null }> {
    const [found, holder] = await this.cmd.fleetDelete(this.doc(id), this.ids, this.hb, this.cmds(id), this.stream(id), id, this.cmdPrefix);
    return { found: Number(found) === 1, holder: holder === '' ? null : String(holder) };
  }

  // ---- streams ------------------------------------------------------------------

  /** This host holds the agent's stream until `ttlMs` (the token's life) or streamClosed. */
  async streamOpened(id: string, ttlMs: number): Promise<void> {
    await this.cmd.set(this.stream(id), this.opts.hostId, 'PX', Math.max(1, Math.floor(ttlMs)));
  }

  async streamClosed(id: string): Promise<void> {
    await this.cmd.fleetStreamClosed(this.stream(id), this.opts.hostId);
  }

  /** The host holding each agent's stream (null: none). */
  async streamHolders(ids: readonly string[]): Promise<(string | null)[]> {
    if (ids.length === 0) return [];
    const v = await this.cmd.mget(...ids.map((id) => this.stream(id)));
    return v.map((h) => (h !== null && /^[A-Za-z0-9._-]{1,64}$/.test(h) ? h : null));
  }

  /** Sends a message to one host's channel: how many hosts heard it (0: none listens). */
  async publish(host: string, m: FleetMessage | string): Promise<number> {
    return this.cmd.publish(this.channel(host), typeof m === 'string' ? m : encodeFleetMessage(m));
  }

  /** Sends a message to every host: how many heard it. */
  async publishAll(m: FleetMessage): Promise<number> {
    return this.cmd.publish(this.everyHost, encodeFleetMessage(m));
  }

  /**
   * Records this host's command-signing public key as the fleet's if none is yet; the
   * fleet's key when it is another one (the hosts do not share agents.key_file), else null.
   */
  async signingKeyMismatch(publicKey: string): Promise<string | null> {
    const key = `${this.p}agents:signing-key`;
    await this.cmd.set(key, publicKey, 'NX');
    const fleet = await this.cmd.get(key);
    return fleet !== null && fleet !== publicKey ? fleet.slice(0, 100) : null;
  }

  /** The host that owns a node (its lease), or null when none does. */
  async nodeOwner(node: string): Promise<string | null> {
    return leaseHolder(await this.cmd.get(`${this.p}lease:${node}`));
  }

  // ---- commands -----------------------------------------------------------------

  /** Stores commands (signed already) once; sets each one's seq. */
  async createCommands(cs: readonly Command[], maxKept: number): Promise<void> {
    if (cs.length === 0) return;
    const pipe = this.cmd.pipeline() as unknown as Scripts & { exec(): Promise<[Error | null, unknown][] | null> };
    for (const c of cs) {
      pipe.fleetCreate(this.cmdPrefix + c.id, this.cmds(c.agentId), `${this.p}cmd-seq`, c.id, ...commandFields(c), maxKept, this.cmdPrefix);
    }
    const res = (await pipe.exec()) ?? [];
    res.forEach(([err, seq], i) => {
      if (err) throw err;
      cs[i]!.seq = Number(seq);
    });
  }

  async getCommand(agentId: string, id: string): Promise<Command | null> {
    if (!/^[0-9a-f-]{36}$/.test(id)) return null;
    const c = decodeCommand(id, await this.cmd.hgetall(this.cmdPrefix + id), this.opts.maxPayloadChars);
    return c && c.agentId === agentId ? c : null;
  }

  /** Commands by (agent, id), in one round trip; absent or malformed ones are left out. */
  async getCommands(pairs: readonly (readonly [string, string])[]): Promise<Command[]> {
    if (pairs.length === 0) return [];
    const pipe = this.cmd.pipeline();
    for (const [, id] of pairs) pipe.hgetall(this.cmdPrefix + id);
    const res = (await pipe.exec()) ?? [];
    const out: Command[] = [];
    res.forEach(([err, h], i) => {
      if (err) throw err;
      const [agent, id] = pairs[i]!;
      const c = decodeCommand(id, h as Record<string, string>, this.opts.maxPayloadChars);
      if (c && c.agentId === agent) out.push(c);
    });
    return out;
  }

  /** The agent's kept commands, oldest first, with seq > after (at most `limit`, and whether more follow). */
  async commandsOf(agentId: string, limit: number, after: number): Promise<{ commands: Command[]; more: boolean }> {
    const ids = await this.cmd.zrangebyscore(this.cmds(agentId), `(${after}`, '+inf', 'LIMIT', 0, limit + 1);
    const more = ids.length > limit;
    const want = ids.slice(0, limit);
    if (want.length === 0) return { commands: [], more: false };
    const pipe = this.cmd.pipeline();
    for (const id of want) pipe.hgetall(this.cmdPrefix + id);
    const res = (await pipe.exec()) ?? [];
    const commands: Command[] = [];
    res.forEach(([err, h], i) => {
      if (err) throw err;
      const c = decodeCommand(want[i]!, h as Record<string, string>, this.opts.maxPayloadChars);
      if (c && c.agentId === agentId) commands.push(c);
    });
    return { commands, more };
  }

  /** PENDING -> DELIVERED for this host: true when it may write the event. */
  async claim(c: Command, now: number, ttlMs: number): Promise<boolean> {
    return (await this.cmd.fleetClaim(this.cmdPrefix + c.id, c.agentId, now, ttlMs)) === 1;
  }

  /** claim() for many commands in one round trip. */
  async claimMany(cs: readonly Command[], now: number, ttlMs: number): Promise<boolean[]> {
    if (cs.length === 0) return [];
    const pipe = this.cmd.pipeline() as unknown as Scripts & { exec(): Promise<[Error | null, unknown][] | null> };
    for (const c of cs) pipe.fleetClaim(this.cmdPrefix + c.id, c.agentId, now, ttlMs);
    const res = (await pipe.exec()) ?? [];
    return res.map(([err, v]) => {
      if (err) throw err;
      return v === 1;
    });
  }

  async unclaim(c: Command, at: number): Promise<void> {
    await this.cmd.fleetUnclaim(this.cmdPrefix + c.id, at);
  }

  async ack(agentId: string, id: string, result: unknown, now: number, ttlMs: number): Promise<AckOutcome> {
    if (!/^[0-9a-f-]{36}$/.test(id)) return 'unknown';
    const r = await this.cmd.fleetAck(this.cmdPrefix + id, agentId, now, ttlMs, result === undefined ? '' : JSON.stringify(result));
    return r === 'acknowledged' || r === 'expired' || r === 'already' ? r : 'unknown';
  }

  /** Whether each command was acknowledged (null: no longer kept). */
  async acknowledged(ids: readonly string[]): Promise<(boolean | null)[]> {
    if (ids.length === 0) return [];
    const pipe = this.cmd.pipeline();
    for (const id of ids) pipe.hmget(this.cmdPrefix + id, 'agent', 'acknowledgedAt');
    const res = (await pipe.exec()) ?? [];
    return res.map(([err, v]) => {
      if (err) throw err;
      const [agent, at] = v as (string | null)[];
      return agent === null ? null : at !== null;
    });
  }
}
