// GET /: a status page for a person with a browser (static/status.html). One
// self-contained file: its inline script polls the JSON APIs every few seconds, so
// there is no build step and nothing is loaded from another host (the engine's
// host may have no internet). The Content-Security-Policy allows exactly the
// page's own inline script and style (by hash) and requests to this origin.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { HttpServer } from './server.js';
import { sendJson } from './server.js';

/** static/status.html at the package root (this file runs from dist/src/http/). */
export const STATUS_PAGE_FILE = fileURLToPath(new URL('../../../static/status.html', import.meta.url));

const hashOf = (s: string): string => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;

/** The page's CSP: its inline <script> and <style> blocks by hash, fetches to this origin, nothing else. */
export function statusPagePolicy(html: string): string {
  const hashes = (tag: string): string[] => [...html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))].map((m) => hashOf(m[1]!));
  return [
    "default-src 'none'",
    `script-src ${hashes('script').join(' ')}`,
    `style-src ${hashes('style').join(' ')}`,
    "connect-src 'self'",
    "img-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

export function mountStatusPage(http: HttpServer, file = STATUS_PAGE_FILE): void {
  let page: { body: Buffer; csp: string } | null = null;
  try {
    const html = readFileSync(file, 'utf8');
    page = { body: Buffer.from(html, 'utf8'), csp: statusPagePolicy(html) };
  } catch { /* answered below: the JSON APIs still work */ }
  http.addRoute('GET', '/', (_req, res) => {
    if (!page) return sendJson(res, 503, { error: `the status page is not installed (${file})` });
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'content-length': page.body.length,
      'content-security-policy': page.csp,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
      'cache-control': 'no-store',
    });
    res.end(page.body);
  });
}
