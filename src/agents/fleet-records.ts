// Agents and commands as Redis hashes, and back. What another host wrote is input:
// every field is checked (shape, length, alphabet) before it is used, and a record
// that fails is skipped as if absent.
import { z } from 'zod';
import { NODE_ID_PATTERN } from '../protocol/node-id.js';
import {
  GROUP_PATTERN, TEXT_PATTERN, NAME_MAX, VERSION_MAX, CAPS_MAX, CAP_MAX, ROUTES_MAX, ROUTE_MAX,
} from '../protocol/agent-fields.js';
import type { Agent } from './agent-registry.js';
import { COMMAND_TYPES, type Command } from './command-store.js';

const text = (max: number) => z.string().max(max).regex(TEXT_PATTERN);
const ms = z.string().regex(/^\d{1,16}$/).transform(Number);
const jsonOf = <T>(schema: z.ZodType<T>, maxChars: number) => z.string().max(maxChars).transform((s, ctx) => {
  try {
    const r = schema.safeParse(JSON.parse(s));
    if (r.success) return r.data;
  } catch { /* reported below */ }
  ctx.addIssue({ code: 'custom', message: 'not the expected JSON' });
  return z.NEVER;
});

const agentHash = z.object({
  name: text(NAME_MAX).min(1),
  group: z.string().regex(GROUP_PATTERN),
  version: text(VERSION_MAX),
  capabilities: jsonOf(z.array(text(CAP_MAX)).max(CAPS_MAX), 16384),
  routes: jsonOf(z.array(text(ROUTE_MAX)).max(ROUTES_MAX), 32768),
  registered: z.enum(['0', '1']),
  registeredAt: ms,
  token: z.string().regex(/^[0-9a-f]{64}$/).optional(),
});

export interface FleetAgentRecord {
  agent: Agent;
  /** sha256 (hex) of the agent's current access token; absent for a node seen only on TCP. */
  tokenDigest: string | null;
}

export function agentFields(a: Agent): string[] {
  return [a.name, a.group, a.version, JSON.stringify(a.capabilities), JSON.stringify(a.routes), a.registered ? '1' : '0', String(a.registeredAt)];
}

/** The agent from its hash and heartbeat score, or null when absent or malformed. */
export function decodeAgent(id: string, h: Record<string, string> | null, heartbeat: string | null): FleetAgentRecord | null {
  if (!h || !NODE_ID_PATTERN.test(id) || heartbeat === null) return null;
  const r = agentHash.safeParse(h);
  const hb = Number(heartbeat);
  if (!r.success || !Number.isSafeInteger(hb) || hb < 0) return null;
  const v = r.data;
  return {
    agent: {
      id, name: v.name, group: v.group, version: v.version, capabilities: v.capabilities, routes: v.routes,
      registeredAt: v.registeredAt, lastHeartbeatAt: hb, registered: v.registered === '1',
    },
    tokenDigest: v.token ?? null,
  };
}

const commandHash = (maxPayloadChars: number) => z.object({
  agent: z.string().regex(NODE_ID_PATTERN),
  type: z.enum(COMMAND_TYPES),
  target: z.string().max(80).regex(/^(all|agent:[A-Za-z0-9._-]{1,64}|group:[A-Za-z0-9._-]{1,64})$/),
  createdAt: ms,
  payload: jsonOf(z.unknown(), maxPayloadChars),
  signature: z.string().max(200).regex(/^[A-Za-z0-9+/=_-]+$/),
  seq: ms,
  deliveredAt: ms.optional(),
  acknowledgedAt: ms.optional(),
  result: jsonOf(z.unknown(), maxPayloadChars).optional(),
});

export function commandFields(c: Command): string[] {
  return [c.agentId, c.type, c.target, String(c.createdAt), JSON.stringify(c.payload), c.signature];
}

/** A command from its hash, or null when absent or malformed. */
export function decodeCommand(id: string, h: Record<string, string> | null, maxPayloadChars: number): Command | null {
  if (!h || Object.keys(h).length === 0) return null;
  const r = commandHash(maxPayloadChars).safeParse(h);
  if (!r.success) return null;
  const v = r.data;
  return {
    id, seq: v.seq, agentId: v.agent, type: v.type, payload: v.payload, target: v.target, createdAt: v.createdAt,
    deliveredAt: v.deliveredAt ?? null, acknowledgedAt: v.acknowledgedAt ?? null, result: v.result, signature: v.signature,
    expiredCounted: true,
  };
}
