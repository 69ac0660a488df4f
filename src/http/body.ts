// Request bodies for the JSON API: content type, size limit (413 before reading an
// over-long body), nesting depth and JSON syntax, each with its own status and a clear message.
import type { IncomingMessage } from 'node:http';
import { jsonDepthExceeds } from './json-depth.js';
import { readRawBody } from './raw-body.js';

/**
 * The deepest nesting a body may have. Real bodies nest 3-4 levels; a bound keeps
 * every later recursion over a body (validation, signing, JSON.stringify in views)
 * far from the stack limit.
 */
const MAX_JSON_DEPTH = 32;

export type BodyResult = { ok: true; value: unknown } | { ok: false; status: 400 | 413 | 415; error: string };

export function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<BodyResult> {
  const len = req.headers['content-length'];
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (!chunked && (len === undefined || len === '0')) return Promise.resolve({ ok: true, value: undefined });
  const ct = req.headers['content-type'] ?? '';
  if (!/^application\/json\s*(;|$)/i.test(ct)) {
    return Promise.resolve({ ok: false, status: 415, error: `content-type must be application/json, got ${ct === '' ? 'none' : JSON.stringify(ct)}` });
  }
  return readRawBody(req, maxBytes).then((r) => {
    if (!r.ok) return r;
    const text = r.body.toString('utf8');
    if (jsonDepthExceeds(text, MAX_JSON_DEPTH)) {
      return { ok: false, status: 400, error: `invalid JSON: nested deeper than ${MAX_JSON_DEPTH} levels` };
    }
    try {
      return { ok: true, value: text === '' ? undefined : JSON.parse(text) as unknown };
    } catch (err) {
      return { ok: false, status: 400, error: `invalid JSON: ${(err as Error).message}` };
    }
  });
}
