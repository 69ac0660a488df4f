// Request bodies read as bytes, with the size limit every body has: 413 before
// reading when the declared length is over it, else as soon as the bytes are.
// NDJSON routes use it as it is; readJsonBody parses on top of it.
import type { IncomingMessage } from 'node:http';

export type RawBodyResult = { ok: true; body: Buffer } | { ok: false; status: 400 | 413; error: string };

export function readRawBody(req: IncomingMessage, maxBytes: number): Promise<RawBodyResult> {
  const len = req.headers['content-length'];
  if (len !== undefined && Number(len) > maxBytes) {
    return Promise.resolve({ ok: false, status: 413, error: `request body of ${len} bytes exceeds the limit of ${maxBytes} bytes` });
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > maxBytes) {
        done = true;
        chunks.length = 0;
        resolve({ ok: false, status: 413, error: `request body exceeds the limit of ${maxBytes} bytes` });
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      resolve({ ok: true, body: Buffer.concat(chunks, size) });
    });
    req.on('error', () => {
      if (done) return;
      done = true;
      resolve({ ok: false, status: 400, error: 'request body could not be read' });
    });
  });
}
