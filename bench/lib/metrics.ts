// Reading the engine's /metrics (Prometheus text exposition).
import { get } from 'node:http';
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

/** GET /metrics on 127.0.0.1:port: the samples, the body's size and the time it took. */
export function scrapeMetrics(port: number, timeoutMs = 20000): Promise<{ m: Map<string, number>; bytes: number; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path: '/metrics', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ m: parseMetrics(body), bytes: Buffer.byteLength(body), ms: performance.now() - t0 }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('GET /metrics timed out')));
    req.on('error', reject);
  });
}
