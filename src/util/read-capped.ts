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
