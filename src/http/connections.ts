// Admission of HTTP connections: a total cap and a cap per source address, checked
// at accept so header-trickling sockets cannot take every descriptor. A refused
// connection gets a 503 with a JSON error and is closed at once; the per-source map
// only holds addresses with an open connection, so it is bounded by the total cap.
import type { Socket } from 'node:net';

export const HTTP_REJECT_REASONS = ['max_connections', 'max_connections_per_source', 'headers_timeout', 'request_timeout'] as const;
export type HttpRejectReason = (typeof HTTP_REJECT_REASONS)[number];

/** A refused socket is destroyed this long after its 503 at the latest (a peer that never reads). */
const REFUSE_LINGER_MS = 1000;

export class ConnectionGate {
  open = 0;
  readonly rejected: Record<HttpRejectReason, number> = { max_connections: 0, max_connections_per_source: 0, headers_timeout: 0, request_timeout: 0 };
  private readonly perSource = new Map<string, number>();

  constructor(private readonly max: number, private readonly maxPerSource: number) {}

  /** The decision for a new connection from `source` (pure; no state changes). */
  decide(source: string): HttpRejectReason | null {
    if (this.open >= this.max) return 'max_connections';
    if ((this.perSource.get(source) ?? 0) >= this.maxPerSource) return 'max_connections_per_source';
    return null;
  }

  count(reason: HttpRejectReason): void {
    this.rejected[reason]++;
  }

  admit(socket: Socket): void {
    const source = socket.remoteAddress ?? '?';
    const refused = this.decide(source);
    if (refused !== null) {
      this.count(refused);
      refuse(socket, refused);
      return;
    }
    this.open++;
    this.perSource.set(source, (this.perSource.get(source) ?? 0) + 1);
    socket.once('close', () => {
      this.open--;
      const n = (this.perSource.get(source) ?? 1) - 1;
      if (n <= 0) this.perSource.delete(source);
      else this.perSource.set(source, n);
    });
  }
}

function refuse(socket: Socket, reason: HttpRejectReason): void {
  const body = JSON.stringify({ error: 'too many connections', reason });
  socket.on('error', () => undefined);
  // Nothing the peer sends is parsed: the answer goes out and the socket closes.
  socket.pause();
  socket.end(`HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json; charset=utf-8\r\n`
    + `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\nretry-after: 1\r\n\r\n${body}`);
  socket.destroySoon();
  setTimeout(() => socket.destroy(), REFUSE_LINGER_MS).unref();
}
