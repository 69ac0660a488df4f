// A minimal HTTP JSON client and a minimal Server-Sent Events client, for the
// agents API tests (one host and several).
import { request, type IncomingHttpHeaders, type IncomingMessage, type ClientRequest } from 'node:http';

// ---- a minimal HTTP JSON client ---------------------------------------------

export interface Resp {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  body: any;
}

export interface ReqOpts {
  token?: string | null;
  /** A JSON value (serialised) or a raw string/Buffer sent as is. */
  json?: unknown;
  raw?: string | Buffer;
  contentType?: string;
  headers?: Record<string, string>;
  chunked?: boolean;
}

export function call(port: number, method: string, path: string, o: ReqOpts = {}): Promise<Resp> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...(o.headers ?? {}) };
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    let payload: Buffer | null = null;
    if (o.raw !== undefined) payload = Buffer.from(o.raw);
    else if (o.json !== undefined) payload = Buffer.from(JSON.stringify(o.json));
    if (payload) {
      headers['content-type'] = o.contentType ?? 'application/json';
      if (o.chunked) headers['transfer-encoding'] = 'chunked';
      else headers['content-length'] = String(payload.length);
    }
    const req = request({ host: '127.0.0.1', port, path, method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: any = undefined;
        try {
          body = text === '' ? undefined : JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (payload) req.end(payload);
    else req.end();
  });
}

// ---- a minimal SSE client -----------------------------------------------------

export interface SseEvent {
  id: string | undefined;
  event: string | undefined;
  data: string;
}
export type SseItem = { kind: 'comment'; text: string } | ({ kind: 'event' } & SseEvent);

/** Parses a text/event-stream: `id:`, `event:`, `data:` fields, `:` comments, blank line dispatches. */
export class SseClient {
  readonly items: SseItem[] = [];
  status = 0;
  headers: IncomingHttpHeaders = {};
  /** The body when the answer is not a stream (errors). */
  text = '';
  ended = false;
  readonly endedP: Promise<void>;
  private endResolve!: () => void;
  private buf = '';
  private cur: { id?: string; event?: string; data: string[] } = { data: [] };
  private req: ClientRequest | null = null;
  private res: IncomingMessage | null = null;

  constructor() {
    this.endedP = new Promise((r) => (this.endResolve = r));
  }

  static open(port: number, path: string, headers: Record<string, string> = {}): Promise<SseClient> {
    const c = new SseClient();
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, method: 'GET', headers: { accept: 'text/event-stream', ...headers }, agent: false }, (res) => {
        c.res = res;
        c.status = res.statusCode ?? 0;
        c.headers = res.headers;
        const isStream = String(res.headers['content-type'] ?? '').startsWith('text/event-stream');
        res.setEncoding('utf8');
        res.on('data', (s: string) => {
          if (isStream) c.feed(s);
          else c.text += s;
        });
        const done = (): void => {
          if (c.ended) return;
          c.ended = true;
          c.endResolve();
        };
        res.on('end', done);
        res.on('close', done);
        res.on('error', done);
        if (isStream) resolve(c);
        else res.on('end', () => resolve(c));
      });
      c.req = req;
      req.on('error', (err) => {
        if (c.status === 0) reject(err);
      });
      req.end();
    });
  }

  get events(): SseEvent[] {
    return this.items.filter((i): i is { kind: 'event' } & SseEvent => i.kind === 'event').map(({ id, event, data }) => ({ id, event, data }));
  }
  get comments(): string[] {
    return this.items.filter((i): i is { kind: 'comment'; text: string } => i.kind === 'comment').map((i) => i.text);
  }
  get json(): any {
    return JSON.parse(this.text);
  }

  private feed(s: string): void {
    this.buf += s;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buf);
      if (!m) return;
      const line = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === '') {
      if (this.cur.data.length > 0 || this.cur.event !== undefined || this.cur.id !== undefined) {
        this.items.push({ kind: 'event', id: this.cur.id, event: this.cur.event, data: this.cur.data.join('\n') });
      }
      this.cur = { data: [] };
      return;
    }
    if (line.startsWith(':')) {
      this.items.push({ kind: 'comment', text: line.slice(1).replace(/^ /, '') });
      return;
    }
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
    if (field === 'data') this.cur.data.push(value);
    else if (field === 'event') this.cur.event = value;
    else if (field === 'id') this.cur.id = value;
  }

  close(): void {
    this.res?.destroy();
    this.req?.destroy();
  }
}

