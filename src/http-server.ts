// The HTTP listener: /metrics now; health, trackers and agents routes are added by
// later modules through addRoute().
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

export class HttpServer {
  readonly server: Server;
  private readonly routes: { method: string; path: string | RegExp; handler: Handler }[] = [];

  constructor(private readonly onError: (err: Error) => void) {
    this.server = createServer((req, res) => void this.dispatch(req, res));
    this.server.keepAliveTimeout = 5000;
  }

  /** `method` '*' hands every method to the handler (it answers 405 itself). */
  addRoute(method: string, path: string | RegExp, handler: Handler): void {
    this.routes.push({ method, path, handler });
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    let pathMatched = false;
    for (const r of this.routes) {
      const match = typeof r.path === 'string' ? r.path === url.pathname : r.path.test(url.pathname);
      if (!match) continue;
      pathMatched = true;
      if (r.method !== '*' && r.method !== req.method && !(r.method === 'GET' && req.method === 'HEAD')) continue;
      try {
        await r.handler(req, res, url);
      } catch (err) {
        this.onError(err as Error);
        if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
        else res.destroy();
      }
      return;
    }
    if (pathMatched) sendJson(res, 405, { error: `method ${req.method} not allowed` });
    else sendJson(res, 404, { error: 'not found' });
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const s = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(s) });
  res.end(s);
}
