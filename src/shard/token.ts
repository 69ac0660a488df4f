// Constant-time token comparison: both sides are hashed to a fixed length first so
// neither the content nor the length of the secret leaks through timing.
// A node's token is its own (tcp_server.tokens) or else the shared one.
import { createHash, timingSafeEqual } from 'node:crypto';

function digest(s: string | Uint8Array): Buffer {
  return createHash('sha256').update(s).digest();
}

/**
 * A connection authenticated by a verified client certificate may only speak for
 * the node its CN names (`identity`); without one (null) any node, by token.
 */
export function identityAllows(identity: string | null, node: string | null): boolean {
  return identity === null || node === identity;
}

export class TokenCheck {
  private readonly shared: Buffer | null;
  private readonly perNode = new Map<string, Buffer>();

  /** An empty shared token with no per-node token disables authentication for that node (the engine warns). */
  constructor(shared: string, perNode: Record<string, string> = {}) {
    this.shared = shared === '' ? null : digest(shared);
    for (const [node, t] of Object.entries(perNode)) this.perNode.set(node, digest(t));
  }

  /** No token at all applies to `node` (authentication is off for it). */
  disabledFor(node: string | null): boolean {
    return this.shared === null && (node === null || !this.perNode.has(node));
  }

  get disabled(): boolean {
    return this.shared === null && this.perNode.size === 0;
  }

  /** The node has a token of its own (tcp_server.tokens): only that token claims it. */
  hasOwn(node: string): boolean {
    return this.perNode.has(node);
  }

  /** Does `candidate` authenticate `node` (null: a message without a usable node id)? */
  matches(node: string | null, candidate: string | Uint8Array): boolean {
    const expected = (node !== null ? this.perNode.get(node) : undefined) ?? this.shared;
    if (expected === null) return true;
    return timingSafeEqual(digest(candidate), expected);
  }
}
