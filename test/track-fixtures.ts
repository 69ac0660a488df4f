// Fixtures shared by the track tests: the two-target frames the built-in tracker
// confirms at the third frame, and a real node:http api_forward receiver.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TOKEN } from './helpers.js';

/**
 * Frame i of `node`: two well separated targets moving slowly, 500 ms apart from
 * `t0` (the built-in tracker confirms both at the third frame), and a run of them.
 */
export function twoTargetFrames(node: string, t0: number): { frame: (i: number) => string; frames: (from: number, to: number) => string } {
  const frame = (i: number): string => `${JSON.stringify({
    node_id: node, token: TOKEN, timestamp: t0 + 500 * i,
    delay: [40 + 0.1 * i, 90 - 0.1 * i], doppler: [-28, 31], snr: [15, 14], adsb: [null, null],
  })}\n`;
  return { frame, frames: (from, to) => Array.from({ length: to - from }, (_, k) => frame(from + k)).join('') };
}

/** A receiver like tracker-host's API: records every POST (path, headers, body) and answers 200. */
export class ForwardReceiver {
  readonly posts: { path: string; headers: IncomingHttpHeaders; body: string }[] = [];
  private server: Server | null = null;
  port = 0;
  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.posts.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as AddressInfo).port;
  }
  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }
  /** Every event received (of one path if given), in order: a body is one event, or an array of them (batching). */
  events(path?: string): Record<string, any>[] { // eslint-disable-line @typescript-eslint/no-explicit-any
    return this.posts.filter((p) => path === undefined || p.path === path).flatMap((p) => {
      const v = JSON.parse(p.body) as Record<string, any> | Record<string, any>[]; // eslint-disable-line @typescript-eslint/no-explicit-any
      return Array.isArray(v) ? v : [v];
    });
  }
  close(): Promise<void> {
    return new Promise((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
