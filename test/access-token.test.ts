// Agent access tokens: HMAC-signed, expiring, bound to the agent id.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { AccessTokens } from '../src/agents/access-token.js';

const secret = randomBytes(32);

function fakeClock(start = 1_767_225_600_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => { t += ms; } };
}

function parts(token: string): { body: string; sig: string } {
  const [body, sig, ...rest] = token.split('.');
  assert.equal(rest.length, 0);
  return { body: body!, sig: sig! };
}

test('issue/verify: a fresh token verifies for its agent; documented shape', () => {
  const clock = fakeClock();
  const tokens = new AccessTokens(secret, 60_000, clock.now);
  const issued = tokens.issue('node-07');
  assert.equal(issued.expiresAt, clock.now() + 60_000);
  assert.equal(tokens.verify(issued.token, 'node-07'), true);

  const { body, sig } = parts(issued.token);
  assert.match(body, /^[A-Za-z0-9_-]+$/);
  assert.match(sig, /^[A-Za-z0-9_-]{43}$/);
  const claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as { sub: string; exp: number; jti: string };
  assert.equal(claims.sub, 'node-07');
  assert.equal(claims.exp, issued.expiresAt);
  assert.equal(typeof claims.jti, 'string');
  assert.ok(claims.jti.length >= 16);
  assert.equal(sig, createHmac('sha256', secret).update(body).digest('base64url'));

  // Each token is unique (jti), and both verify.
  const again = tokens.issue('node-07');
  assert.notEqual(again.token, issued.token);
  assert.equal(tokens.verify(again.token, 'node-07'), true);
});

test('verify: wrong agent id is rejected', () => {
  const tokens = new AccessTokens(secret, 60_000);
  const { token } = tokens.issue('node-07');
  assert.equal(tokens.verify(token, 'node-08'), false);
  assert.equal(tokens.verify(token, 'node-0'), false);
  assert.equal(tokens.verify(token, 'node-07 '), false);
  assert.equal(tokens.verify(token, ''), false);
});

test('verify: expiry follows the clock', () => {
  const clock = fakeClock();
  const tokens = new AccessTokens(secret, 1_000, clock.now);
  const { token, expiresAt } = tokens.issue('node-07');
  clock.advance(999);
  assert.equal(tokens.verify(token, 'node-07'), true);
  clock.advance(1); // now === expiresAt
  assert.equal(clock.now(), expiresAt);
  assert.equal(tokens.verify(token, 'node-07'), false);
  clock.advance(10_000_000);
  assert.equal(tokens.verify(token, 'node-07'), false);
});

test('verify: tampered payload or signature is rejected', () => {
  const clock = fakeClock();
  const tokens = new AccessTokens(secret, 60_000, clock.now);
  const { token } = tokens.issue('node-07');
  const { body, sig } = parts(token);
  const claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Record<string, unknown>;

  // Claims rewritten (other agent, later expiry) but the old signature kept.
  const forge = (c: Record<string, unknown>): string => Buffer.from(JSON.stringify(c)).toString('base64url');
  assert.equal(tokens.verify(`${forge({ ...claims, sub: 'node-08' })}.${sig}`, 'node-08'), false);
  assert.equal(tokens.verify(`${forge({ ...claims, exp: (claims.exp as number) + 1e9 })}.${sig}`, 'node-07'), false);

  // One character changed anywhere.
  for (let i = 0; i < token.length; i++) {
    if (token[i] === '.') continue;
    const c = token[i] === 'A' ? 'B' : 'A';
    const t = token.slice(0, i) + c + token.slice(i + 1);
    assert.equal(tokens.verify(t, 'node-07'), false, `position ${i}`);
  }
  // Signature truncated, extended, swapped with another token's, or missing.
  assert.equal(tokens.verify(`${body}.${sig.slice(0, -1)}`, 'node-07'), false);
  assert.equal(tokens.verify(`${body}.${sig}A`, 'node-07'), false);
  assert.equal(tokens.verify(`${body}.${parts(tokens.issue('node-07').token).sig}`, 'node-07'), false);
  assert.equal(tokens.verify(`${body}.`, 'node-07'), false);
  assert.equal(tokens.verify(body, 'node-07'), false);
  assert.equal(tokens.verify(`${token}.${sig}`, 'node-07'), false);
  // Padding or standard-base64 variants of a valid signature are not the issued token.
  assert.equal(tokens.verify(`${token}=`, 'node-07'), false);
  assert.equal(tokens.verify(`${body}.${Buffer.from(sig, 'base64url').toString('base64')}`, 'node-07'), false);
});

test('verify: a correctly signed body with bad claims is rejected without throwing', () => {
  const tokens = new AccessTokens(secret, 60_000);
  const sign = (body: string): string => `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
  const enc = (s: string): string => Buffer.from(s).toString('base64url');
  const far = Date.now() + 1e9;
  assert.equal(tokens.verify(sign(enc(JSON.stringify({ sub: 'node-07', exp: far }))), 'node-07'), true); // sanity
  for (const body of [
    enc('not json'), enc('null'), enc('42'), enc('"node-07"'), enc('[]'),
    enc(JSON.stringify({ sub: 'node-07' })),
    enc(JSON.stringify({ sub: 'node-07', exp: String(far) })),
    enc(JSON.stringify({ sub: 7, exp: far })),
    enc(JSON.stringify({ sub: ['node-07'], exp: far })),
    enc(JSON.stringify({ exp: far })),
  ]) {
    assert.equal(tokens.verify(sign(body), 'node-07'), false, Buffer.from(body, 'base64url').toString());
  }
});

test('verify: garbage strings are rejected without throwing', () => {
  const tokens = new AccessTokens(secret, 60_000);
  const garbage = ['', '.', '..', 'a.b', 'a.b.c', 'x'.repeat(10000), `${'x'.repeat(10000)}.${'y'.repeat(43)}`, '!!!.???', 'é.é', ' . ', 'Bearer abc', '\u0000.\u0000'];
  for (const g of garbage) assert.equal(tokens.verify(g, 'node-07'), false, g.slice(0, 30));
  for (const g of [null, undefined, 42, {}, ['a', 'b'], Buffer.from('a.b')]) {
    assert.equal(tokens.verify(g as unknown as string, 'node-07'), false);
  }
  const { token } = tokens.issue('node-07');
  assert.equal(tokens.verify(token, undefined as unknown as string), false);
});

test('verify: tokens from another secret are rejected', () => {
  const clock = fakeClock();
  const a = new AccessTokens(secret, 60_000, clock.now);
  const b = new AccessTokens(randomBytes(32), 60_000, clock.now);
  const fromB = b.issue('node-07');
  assert.equal(b.verify(fromB.token, 'node-07'), true);
  assert.equal(a.verify(fromB.token, 'node-07'), false);
  assert.equal(b.verify(a.issue('node-07').token, 'node-07'), false);
  // The same secret (e.g. after a restart with the same key file) accepts it.
  assert.equal(new AccessTokens(Buffer.from(secret), 60_000, clock.now).verify(a.issue('node-07').token, 'node-07'), true);
});

test('constructor rejects an empty secret or a non-positive ttl', () => {
  assert.throws(() => new AccessTokens(Buffer.alloc(0), 1000), TypeError);
  assert.throws(() => new AccessTokens(secret, 0), RangeError);
  assert.throws(() => new AccessTokens(secret, -5), RangeError);
  assert.throws(() => new AccessTokens(secret, NaN), RangeError);
});
