// Reading the engine's /metrics (Prometheus text exposition).
import { request } from 'node:http';
import { performance } from 'node:perf_hooks';

/** Prometheus text exposition -> `name{labels}` -> value (comments and malformed lines skipped). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    if (sp <= 0) continue;
    const v = Number(line.slice(sp + 1));
    if (!Number.isNaN(v)) out.set(line.slice(0, sp), v);
  }
  return out;
}

/** Sum of every sample of `name` (any labels). */
export function metricSum(m: Map<string, number>, name: string): number {
  let s = 0;
  for (const [k, v] of m) if (k === name || k.startsWith(`${name}{`)) s += v;
  return s;
}

/** `name{reason="x"}` samples -> { x: value } (non-zero only). */
export function byLabel(m: Map<string, number>, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  const re = new RegExp(`${label}="([^"]*)"`);
  for (const [k, v] of m) {
    if (!k.startsWith(`${name}{`) || v === 0) continue;
    const l = re.exec(k);
    if (l) out[l[1]!] = (out[l[1]!] ?? 0) + v;
  }
  return out;
}

export /** One HTTP GET on a new connection: status and body, or an error string; bounded by timeoutMs. */
function httpGet(port: number, path: string, timeoutMs: number): Promise<{ status: number; body: string; ms: number } | { error: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: { status: number; body: string } | { error: string }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...r, ms: performance.now() - t0 });
    };
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers: { connection: 'close' } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => done({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
      res.on('error', (e: NodeJS.ErrnoException) => done({ error: e.code ?? e.message }));
    });
    const timer = setTimeout(() => {
      done({ error: `timeout_${timeoutMs}ms` });
      req.destroy();
    }, timeoutMs);
    req.on('error', (e: NodeJS.ErrnoException) => done({ error: e.code ?? e.message }));
    req.end();
  });
}

/** GET /metrics on 127.0.0.1:port: the samples, the body's size and the time it took (rejects on a failure or a status not 200). */
export async function scrapeMetrics(port: number, timeoutMs = 20000): Promise<{ m: Map<string, number>; bytes: number; ms: number }> {
  const r = await httpGet(port, '/metrics', timeoutMs);
  if (!('status' in r) || r.status !== 200) throw new Error(`GET /metrics: ${'status' in r ? r.status : r.error}`);
  return { m: parseMetrics(r.body), bytes: Buffer.byteLength(r.body), ms: r.ms };
}
