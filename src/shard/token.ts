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
  private readonly shared: Buffer;
  private readonly sharedEmpty: boolean;
  private readonly perNode = new Map<string, Buffer>();

  /**
   * An empty shared token is still a token: a message must carry `"token": ""`
   * exactly (tracker-host's rule; a message without one is refused). The engine
   * warns at start that it protects nothing.
   */
  constructor(shared: string, perNode: Record<string, string> = {}) {
    this.shared = digest(shared);
    this.sharedEmpty = shared === '';
    for (const [node, t] of Object.entries(perNode)) this.perNode.set(node, digest(t));
  }

  /** Only the empty shared token applies to `node`: no secret authenticates it (agent registration refuses it). */
  disabledFor(node: string | null): boolean {
    return this.sharedEmpty && (node === null || !this.perNode.has(node));
  }

  /** The node has a token of its own (tcp_server.tokens): only that token claims it. */
  hasOwn(node: string): boolean {
    return this.perNode.has(node);
  }

  /** Does `candidate` authenticate `node` (null: a message without a usable node id)? */
  matches(node: string | null, candidate: string | Uint8Array): boolean {
    const expected = (node !== null ? this.perNode.get(node) : undefined) ?? this.shared;
    return timingSafeEqual(digest(candidate), expected);
  }
}
