// One POST at a time to one URL over a kept-alive connection (node:http or
// node:https with an Agent of one socket). Forwarding one track event per
// request makes the per-request cost the forwarder's rate: on one connection
// kept open it is a round trip, ~10x what fetch() reached per event here
// (docs/trackers.md has the figures). Redirects are not followed.
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/** Characters of a response body kept for error messages. */
const BODY_KEEP = 200;

export interface PostResponse {
  status: number;
  /** The start of the response body (at most 200 characters), for messages. */
  text: string;
  /** The Retry-After header, when present. */
  retryAfter: string | null;
}

export class HttpPoster {
  private readonly url: URL;
  private readonly agent: HttpAgent;
  private readonly headers: Record<string, string>;

  constructor(url: string, headers: Headers, private readonly timeoutMs: number) {
    this.url = new URL(url);
    const https = this.url.protocol === 'https:';
    // One socket: requests are sequential anyway, and it is reused for each of them.
    this.agent = https ? new HttpsAgent({ keepAlive: true, maxSockets: 1 }) : new HttpAgent({ keepAlive: true, maxSockets: 1 });
    this.headers = Object.fromEntries(headers.entries());
  }

  /**
   * POSTs `body`; resolves with the response once its body is read, rejects on
   * a network error, after `timeoutMs` (the whole exchange), or when `signal`
   * aborts.
   */
  post(body: string, signal: AbortSignal): Promise<PostResponse> {
    const payload = Buffer.from(body, 'utf8');
    return new Promise<PostResponse>((resolve, reject) => {
      if (signal.aborted) {
        reject(new Error('api forwarder closed'));
        return;
      }
      let settled = false;
      const settle = (err: Error | null, r?: PostResponse): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(r!);
      };
      const send = this.url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = send(this.url, {
        method: 'POST', agent: this.agent, headers: { ...this.headers, 'content-length': String(payload.length) },
      }, (res: IncomingMessage) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (s: string) => {
          if (text.length < BODY_KEEP) text += s.slice(0, BODY_KEEP - text.length);
        });
        const done = (): void => settle(null, { status: res.statusCode ?? 0, text, retryAfter: header(res, 'retry-after') });
        res.on('end', done);
        // A body cut short still has its status: the status says what the server made of the request.
        res.on('error', done);
        res.on('close', done);
      });
      const timer = setTimeout(() => req.destroy(new Error(`request timed out after ${this.timeoutMs} ms`)), this.timeoutMs);
      timer.unref();
      const onAbort = (): void => {
        req.destroy(new Error('api forwarder closed'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err) => settle(err));
      req.end(payload);
    });
  }

  /** Closes the kept-alive connection. */
  close(): void {
    this.agent.destroy();
  }
}

function header(res: IncomingMessage, name: string): string | null {
  const v = res.headers[name];
  return typeof v === 'string' ? v : null;
}
