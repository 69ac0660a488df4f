// Reading an HTTP answer's body without trusting its size: every poller of a node's
// endpoints (detections, radar config) reads through this, so a huge or endless
// answer costs at most `max` bytes.

/** The body, or null once it passes `max` bytes (the rest is cancelled, not read). */
export async function readCapped(res: Response, max: number): Promise<Buffer | null> {
  if (!res.body) return Buffer.alloc(0);
  if (Number(res.headers.get('content-length')) > max) {
    await res.body.cancel().catch(() => undefined);
    return null;
  }
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return Buffer.concat(chunks, size);
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => undefined);
      return null;
    }
    chunks.push(value);
  }
}

/** What one GET of a node's endpoint came to. */
export type CappedGetResult =
  | { kind: 'body'; body: Buffer }
  | { kind: 'status'; status: number }
  | { kind: 'too_large' }
  | { kind: 'timeout' }
  /** The caller's signal aborted it (the poller stopped). */
  | { kind: 'aborted' }
  | { kind: 'network'; error: unknown };

/** One GET whose answer, body included, must come within `timeoutMs` and `maxBytes`. */
export async function getCapped(
  url: string,
  opts: { headers: Headers | Record<string, string>; timeoutMs: number; maxBytes: number; signal: AbortSignal },
): Promise<CappedGetResult> {
  const ac = new AbortController();
  const stop = (): void => ac.abort(opts.signal.reason);
  if (opts.signal.aborted) return { kind: 'aborted' };
  opts.signal.addEventListener('abort', stop, { once: true });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort(new Error('timeout'));
  }, opts.timeoutMs);
  try {
    const res = await fetch(url, { method: 'GET', headers: opts.headers, signal: ac.signal });
    if (!res.ok) {
      // The body of an error answer is of no use; dropping it closes or frees the connection.
      await res.body?.cancel().catch(() => undefined);
      return { kind: 'status', status: res.status };
    }
    const body = await readCapped(res, opts.maxBytes);
    return body === null ? { kind: 'too_large' } : { kind: 'body', body };
  } catch (error) {
    if (opts.signal.aborted) return { kind: 'aborted' };
    if (timedOut) return { kind: 'timeout' };
    return { kind: 'network', error };
  } finally {
    clearTimeout(timer);
    opts.signal.removeEventListener('abort', stop);
  }
}
