// Messages between hosts on a host's agent channel ({prefix}agents:host:{host_id}).
// Small and bounded: a message names commands by id (each host reads the command
// from Redis), and anything malformed or oversized is dropped, as any input is.
import { NODE_ID_PATTERN } from '../protocol/node-id.js';

/** A message longer than this is dropped unread. */
export const MAX_FLEET_MESSAGE = 8192;
/** Commands named in one deliver message (a broadcast is split into several). */
export const MAX_DELIVERIES_PER_MESSAGE = 32;

const COMMAND_ID = /^[0-9a-f-]{36}$/;
const DIGEST = /^[0-9a-f]{64}$/;
const HOST_ID = /^[A-Za-z0-9._-]{1,64}$/;

export type FleetMessage =
  /** Write these commands to the agents' streams held here. */
  | { t: 'deliver'; c: [agent: string, command: string][] }
  /** Close the agent's stream: deleted, or its token revoked (unless the stream holds token `d`); sent by host `f`. */
  | { t: 'close'; a: string; r: 'deleted' | 'token_revoked'; d?: string; f: string }
  /** Turn on tracing of a node's frames: this host owns the node. */
  | { t: 'trace'; n: string; c: string; ms: number };

export function encodeFleetMessage(m: FleetMessage): string {
  return JSON.stringify(m);
}

/** The message, or null when it is not one (wrong shape, too long, bad ids). */
export function decodeFleetMessage(s: string, maxTraceMs: number): FleetMessage | null {
  if (s.length > MAX_FLEET_MESSAGE) return null;
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  switch (o.t) {
    case 'deliver': {
      if (!Array.isArray(o.c) || o.c.length === 0 || o.c.length > MAX_DELIVERIES_PER_MESSAGE) return null;
      const c: [string, string][] = [];
      for (const p of o.c) {
        if (!Array.isArray(p) || p.length !== 2 || !isId(p[0]) || typeof p[1] !== 'string' || !COMMAND_ID.test(p[1])) return null;
        c.push([p[0], p[1]]);
      }
      return { t: 'deliver', c };
    }
    case 'close': {
      if (!isId(o.a) || (o.r !== 'deleted' && o.r !== 'token_revoked')) return null;
      if (o.d !== undefined && (typeof o.d !== 'string' || !DIGEST.test(o.d))) return null;
      if (typeof o.f !== 'string' || !HOST_ID.test(o.f)) return null;
      return { t: 'close', a: o.a, r: o.r, f: o.f, ...(typeof o.d === 'string' ? { d: o.d } : {}) };
    }
    case 'trace': {
      if (!isId(o.n) || typeof o.c !== 'string' || !COMMAND_ID.test(o.c)) return null;
      if (typeof o.ms !== 'number' || !Number.isInteger(o.ms) || o.ms < 1 || o.ms > maxTraceMs) return null;
      return { t: 'trace', n: o.n, c: o.c, ms: o.ms };
    }
    default:
      return null;
  }
}

function isId(v: unknown): v is string {
  return typeof v === 'string' && NODE_ID_PATTERN.test(v);
}

/** Splits deliveries into messages of at most MAX_DELIVERIES_PER_MESSAGE. */
export function deliverMessages(pairs: readonly [string, string][]): string[] {
  const out: string[] = [];
  for (let i = 0; i < pairs.length; i += MAX_DELIVERIES_PER_MESSAGE) {
    out.push(encodeFleetMessage({ t: 'deliver', c: pairs.slice(i, i + MAX_DELIVERIES_PER_MESSAGE) }));
  }
  return out;
}

/** The holder's host id from a node lease value `host|fence`, or null. */
export function leaseHolder(value: string | null): string | null {
  if (value === null || value.length > 200) return null;
  const bar = value.lastIndexOf('|');
  if (bar <= 0) return null;
  const host = value.slice(0, bar);
  return HOST_ID.test(host) ? host : null;
}
