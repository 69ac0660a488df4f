// What an agent says about itself (group, name, version, capabilities) and the
// token it shows: one set of rules for the HTTP registration API and the binary
// hello, so neither path stores or serves what the other would refuse.
import { NODE_ID_PATTERN, ID_SHAPE } from './node-id.js';

/** Groups select command targets and appear in URLs: the node-id alphabet. */
export const GROUP_PATTERN = NODE_ID_PATTERN;
export const GROUP_RULE = `group must be ${ID_SHAPE}`;

export const NAME_MAX = 128;
export const VERSION_MAX = 64;
export const CAPS_MAX = 64;
export const CAP_MAX = 64;
export const ROUTES_MAX = 64;
export const ROUTE_MAX = 256;
/** Tokens are only hashed, never stored; the bound keeps that work small. */
export const TOKEN_MAX = 1024;

/** Free text reaches logs and JSON answers: no control characters. */
export const TEXT_PATTERN = /^[^\p{Cc}]*$/u;
export const TEXT_RULE = 'must not contain control characters';

function text(x: unknown, field: string, min: number, max: number): string | null {
  if (typeof x !== 'string') return `${field} must be a string`;
  if (x.length < min || x.length > max) return `${field} must be ${min}-${max} characters`;
  return TEXT_PATTERN.test(x) ? null : `${field} ${TEXT_RULE}`;
}

/**
 * Why a binary hello's fields are unacceptable (null: they are fine). `node` is
 * checked by the caller (its own error), `v` and `t` by the protocol.
 */
export function helloProblem(m: Record<string, unknown>): string | null {
  // An empty token is a token: it matches an empty tcp_server.token (and nothing else).
  const tok = text(m.token, 'token', 0, TOKEN_MAX);
  if (tok !== null) return tok;
  if (m.group !== undefined && (typeof m.group !== 'string' || !GROUP_PATTERN.test(m.group))) return GROUP_RULE;
  if (m.name !== undefined) {
    const p = text(m.name, 'name', 1, NAME_MAX);
    if (p !== null) return p;
  }
  if (m.caps !== undefined) {
    if (!Array.isArray(m.caps) || m.caps.length > CAPS_MAX) return `caps must be an array of at most ${CAPS_MAX} strings`;
    for (const cap of m.caps) {
      const p = text(cap, 'caps entry', 0, CAP_MAX);
      if (p !== null) return p;
    }
  }
  return null;
}
