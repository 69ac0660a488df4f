// Agent access tokens: HMAC-signed, expiring, bound to one agent id. Opaque to agents.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export interface IssuedToken { token: string; expiresAt: number }

/** Tokens longer than this are rejected before any work (they are ~150 characters in practice). */
const MAX_TOKEN_LENGTH = 4096;
const B64URL = /^[A-Za-z0-9_-]+$/;

export class AccessTokens {
  readonly #secret: Buffer;

  constructor(secret: Buffer, private readonly ttlMs: number, private readonly now: () => number = Date.now) {
    if (!Buffer.isBuffer(secret) || secret.length === 0) throw new TypeError('AccessTokens: secret must be a non-empty Buffer');
    if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new RangeError(`AccessTokens: ttlMs must be a positive number, got ${ttlMs}`);
    this.#secret = Buffer.from(secret);
  }

  /** token = base64url(JSON {sub: agentId, exp: ms, jti: random}) + "." + base64url(HMAC-SHA256(secret, first part)). */
  issue(agentId: string): IssuedToken {
    const expiresAt = this.now() + this.ttlMs;
    const body = Buffer.from(JSON.stringify({ sub: agentId, exp: expiresAt, jti: randomBytes(16).toString('base64url') }), 'utf8')
      .toString('base64url');
    return { token: `${body}.${this.#mac(body)}`, expiresAt };
  }

  /** true only when the signature matches (constant-time), the token is unexpired at now(), and sub === agentId. Never throws on garbage. */
  verify(token: string, agentId: string): boolean {
    return this.expiresAt(token, agentId) !== null;
  }

  /** The expiry (ms) of a token that verify() accepts, else null. Never throws on garbage. */
  expiresAt(token: string, agentId: string): number | null {
    try {
      if (typeof token !== 'string' || typeof agentId !== 'string' || token.length > MAX_TOKEN_LENGTH) return null;
      const dot = token.indexOf('.');
      if (dot <= 0 || dot !== token.lastIndexOf('.')) return null;
      const body = token.slice(0, dot);
      const sig = token.slice(dot + 1);
      if (!B64URL.test(body) || !B64URL.test(sig)) return null;
      // Compare the canonical encodings, so only the exact issued string verifies.
      const expected = Buffer.from(this.#mac(body), 'ascii');
      const given = Buffer.from(sig, 'ascii');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
      const claims: unknown = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
      if (typeof claims !== 'object' || claims === null) return null;
      const { sub, exp } = claims as { sub?: unknown; exp?: unknown };
      if (typeof exp !== 'number' || !(this.now() < exp)) return null;
      return typeof sub === 'string' && sub === agentId ? exp : null;
    } catch {
      return null;
    }
  }

  #mac(body: string): string {
    return createHmac('sha256', this.#secret).update(body, 'ascii').digest('base64url');
  }
}
