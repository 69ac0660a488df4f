// The HTTP listener. Routes are declared with a path pattern ("/api/v1/agents/{id}"),
// the credential they need and whether they read a body, so the route table can be
// listed (routes()) and every route attacked by construction in the hostile tests.
// Nothing a request carries may reach an unhandled rejection: the target is parsed
// inside the guarded dispatch, and a route's credential is checked before the
// handler can tell a known resource from an unknown one (401 before 404).
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { parseTarget, matchPattern, patternRank } from './target.js';
import { ConnectionGate, HTTP_REJECT_REASONS, type HttpRejectReason } from './connections.js';

export type Params = Record<string, string>;
export type Handler = (req: IncomingMessage, res: ServerResponse, url: URL, params: Params) => void | Promise<void>;

/** Which credential a route needs (what the hostile tests try to forge). */
export type RouteAuth = 'none' | 'control' | 'agent' | 'node';

export interface RouteOptions {
  auth?: RouteAuth;
  /** The route reads a JSON body. */
  body?: boolean;
  /** Checked before the handler; false answers 401 whatever the path names. */
  authorize?: (req: IncomingMessage, url: URL, params: Params) => boolean;
}

export interface RouteInfo {
  method: string;
  /** "/a/{param}/b"; a RegExp route shows its source and has no pattern. */
  pattern: string | null;
  regex: string | null;
  auth: RouteAuth;
  body: boolean;
}

interface Route extends RouteInfo {
  path: string | RegExp;
  handler: Handler;
  authorize: RouteOptions['authorize'];
}

export interface HttpLimits {
  maxConnections: number;
  maxConnectionsPerSource: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
}

/** A request that is being read or answered on a socket (a timeout then is a request timeout, else a headers timeout). */
const inRequest = new WeakSet<Socket>();

export class HttpServer {
  readonly server: Server;
  private readonly table: Route[] = [];
  readonly gate: ConnectionGate;

  constructor(private readonly onError: (err: Error) => void, limits: HttpLimits) {
    // Node requires headersTimeout <= requestTimeout; the check interval must be short
    // enough for the timeouts to bite (its default is 30 s).
    const headersTimeout = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs);
    this.server = createServer({
      headersTimeout,
      requestTimeout: limits.requestTimeoutMs,
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 5))),
    }, (req, res) => {
      inRequest.add(req.socket);
      res.once('finish', () => inRequest.delete(req.socket));
      this.dispatch(req, res).catch((err: unknown) => this.failed(res, err));
    });
    this.server.keepAliveTimeout = 5000;
    this.gate = new ConnectionGate(limits.maxConnections, limits.maxConnectionsPerSource);
    this.server.on('connection', (s: Socket) => this.gate.admit(s));
    this.server.on('clientError', (err: Error & { code?: string }, socket: Socket) => this.clientError(err, socket));
  }

  /**
   * Adds a route. `path` is a pattern ("/api/v1/agents/{id}/events": a `{name}` is one
   * non-empty segment, percent-decoded into params) or, for old callers, a RegExp.
   * `method` '*' hands every method to the handler (it answers 405 itself).
   */
  addRoute(method: string, path: string | RegExp, handler: Handler, opts: RouteOptions = {}): void {
    this.table.push({
      method, path, handler,
      pattern: typeof path === 'string' ? path : null,
      regex: typeof path === 'string' ? null : path.source,
      auth: opts.auth ?? 'none',
      body: opts.body ?? false,
      authorize: opts.authorize,
    });
  }

  /** The route table: method, path pattern, credential, body. */
  routes(): RouteInfo[] {
    return this.table.map(({ method, pattern, regex, auth, body }) => ({ method, pattern, regex, auth, body }));
  }

  /** Refusals at accept and timeouts, by reason. */
  rejected(): Record<HttpRejectReason, number> {
    return this.gate.rejected;
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = parseTarget(req.url ?? '');
    if (url === null) return sendJson(res, 400, { error: 'malformed request target' });
    // The most specific pattern that matches (literal segments before {params}) owns the path.
    let best: { routes: Route[]; params: Params; rank: number } | null = null;
    for (const r of this.table) {
      let params: Params | null;
      let rank: number;
      if (typeof r.path === 'string') {
        const m = matchPattern(r.path, url.pathname);
        if (m === 'malformed') return sendJson(res, 400, { error: 'malformed percent-encoding in the path' });
        params = m;
        rank = patternRank(r.path);
      } else {
        params = r.path.test(url.pathname) ? {} : null;
        rank = -1;
      }
      if (params === null) continue;
      if (best === null || rank > best.rank) best = { routes: [r], params, rank };
      else if (rank === best.rank && samePath(best.routes[0]!, r)) best.routes.push(r);
    }
    if (best === null) return sendJson(res, 404, { error: 'not found' });
    const m = req.method ?? 'GET';
    const r = best.routes.find((x) => x.method === '*' || x.method === m || (x.method === 'GET' && m === 'HEAD'));
    if (!r) {
      res.setHeader('allow', [...new Set(best.routes.map((x) => x.method))].join(', '));
      return sendJson(res, 405, { error: `method ${m} not allowed` });
    }
    if (r.authorize && !r.authorize(req, url, best.params)) {
      res.setHeader('www-authenticate', 'Bearer');
      return sendJson(res, 401, { error: 'unauthorized' });
    }
    await r.handler(req, res, url, best.params);
  }

  private failed(res: ServerResponse, err: unknown): void {
    try {
      this.onError(err instanceof Error ? err : new Error(String(err)));
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    } catch {
      res.destroy();
    }
  }

  /** Bytes that are not HTTP, headers too large, or too slow: a JSON error when the socket can take one. */
  private clientError(err: Error & { code?: string }, socket: Socket): void {
    if (err.code === 'ECONNRESET') {
      socket.destroy(); // the peer is gone: nothing to answer
      return;
    }
    let status = 400;
    let reason: HttpRejectReason | null = null;
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      status = 408;
      reason = inRequest.has(socket) ? 'request_timeout' : 'headers_timeout';
    } else if (err.code === 'HPE_HEADER_OVERFLOW') {
      status = 431;
    }
    if (reason !== null) this.gate.count(reason);
    if (socket.writable && socket.bytesWritten === 0) {
      const body = JSON.stringify({ error: status === 408 ? 'request timeout' : status === 431 ? 'request headers too large' : 'bad request' });
      socket.end(`HTTP/1.1 ${status} ${status === 408 ? 'Request Timeout' : status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n`
        + `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    }
    socket.destroySoon();
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

function samePath(a: Route, b: Route): boolean {
  return a.pattern !== null ? a.pattern === b.pattern : a.regex === b.regex;
}

export { HTTP_REJECT_REASONS, type HttpRejectReason };

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const s = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(s) });
  res.end(s);
}
