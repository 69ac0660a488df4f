// Constant-time token comparison: both sides are hashed to a fixed length first so
// neither the content nor the length of the secret leaks through timing.
import { createHash, timingSafeEqual } from 'node:crypto';

function digest(s: string | Uint8Array): Buffer {
  return createHash('sha256').update(s).digest();
}

export class TokenCheck {
  private readonly expected: Buffer;
  /** An empty configured token disables authentication (the engine warns at start). */
  readonly disabled: boolean;
  constructor(token: string) {
    this.expected = digest(token);
    this.disabled = token === '';
  }
  matches(candidate: string | Uint8Array): boolean {
    if (this.disabled) return true;
    return timingSafeEqual(digest(candidate), this.expected);
  }
}
