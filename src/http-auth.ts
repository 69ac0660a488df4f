// Bearer-token checks shared by the control API routes (agents, trackers).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from './http-server.js';

export function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Bearer token from the Authorization header, or ?access_token= (EventSource cannot set headers). */
export function bearer(req: IncomingMessage, url: URL): string | null {
  const h = req.headers.authorization;
  if (h && /^Bearer /i.test(h)) return h.slice(7).trim();
  return url.searchParams.get('access_token');
}

/** Constant-time check of `candidate` against a stored digest. */
export function tokenMatches(candidate: string | null, digest: Buffer | null | undefined): boolean {
  return digest != null && candidate !== null && timingSafeEqual(sha256(candidate), digest);
}

export function unauthorized(res: ServerResponse): void {
  res.setHeader('www-authenticate', 'Bearer');
  sendJson(res, 401, { error: 'unauthorized' });
}

/** The operator's control token (http.api_token; empty = nobody). Answers 401 itself when it fails. */
export function controlCheck(apiToken: string): (req: IncomingMessage, res: ServerResponse, url: URL) => boolean {
  const digest = apiToken === '' ? null : sha256(apiToken);
  return (req, res, url) => {
    if (tokenMatches(bearer(req, url), digest)) return true;
    unauthorized(res);
    return false;
  };
}
