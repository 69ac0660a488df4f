// Bearer-token checks shared by the control API routes (agents, trackers).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from './server.js';

export function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/**
 * Bearer token from the Authorization header only: a token in the query string ends
 * up in proxy and access logs.
 */
export function bearer(req: IncomingMessage): string | null {
  const h = req.headers.authorization;
  if (h && /^Bearer /i.test(h)) return h.slice(7).trim();
  return null;
}

/**
 * The header, or else ?access_token=: only for an agent's own event stream, because a
 * browser EventSource cannot set headers. That token is short-lived and names one agent.
 */
export function bearerOrQuery(req: IncomingMessage, url: URL): string | null {
  return bearer(req) ?? url.searchParams.get('access_token');
}

/** Constant-time check of `candidate` against a stored digest. */
export function tokenMatches(candidate: string | null, digest: Buffer | null | undefined): boolean {
  return digest != null && candidate !== null && timingSafeEqual(sha256(candidate), digest);
}

export function unauthorized(res: ServerResponse): void {
  res.setHeader('www-authenticate', 'Bearer');
  sendJson(res, 401, { error: 'unauthorized' });
}

/** True when the request carries the operator's control token (http.api_token; empty = nobody). */
export function controlToken(apiToken: string): (req: IncomingMessage) => boolean {
  const digest = apiToken === '' ? null : sha256(apiToken);
  return (req) => tokenMatches(bearer(req), digest);
}

/**
 * Route options for a read-only operational route: open when http.open_reads is
 * true, else the control token (a listener opened to an untrusted network).
 */
export function readAccess(apiToken: string, openReads: boolean): { auth?: 'control'; authorize?: (req: IncomingMessage) => boolean } {
  if (openReads) return {};
  const control = controlToken(apiToken);
  return { auth: 'control', authorize: (req) => control(req) };
}
