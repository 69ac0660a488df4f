// One Server-Sent Events stream per agent. Opening a new stream replaces the old
// one; the old stream's close must never remove the new one (identity check).
// A stream lives no longer than the access token that opened it: it is closed when
// the token is revoked (the agent registered again, or was deleted) or expires, and
// the agent reconnects with a fresh token. A stream whose peer does not read is
// closed before its unsent bytes pass a bound.
import type { ServerResponse } from 'node:http';

/** Why a stream ended: radar_ingest_sse_streams_closed_total{reason}. */
export const SSE_CLOSE_REASONS = ['peer_closed', 'replaced', 'token_revoked', 'token_expired', 'deleted', 'output_overflow', 'shutdown'] as const;
export type SseCloseReason = (typeof SSE_CLOSE_REASONS)[number];

export interface StreamAuth {
  /** sha256 of the access token that opened the stream. */
  tokenDigest: Buffer;
  /** When that token expires (ms, on the service clock). */
  expiresAt: number;
  /** The peer's address. */
  remote: string;
}

export class SseStream {
  private keepalive: NodeJS.Timeout | null = null;
  closed = false;
  /** The first reason recorded wins. */
  reason: SseCloseReason | null = null;
  constructor(readonly agentId: string, readonly res: ServerResponse, readonly lastEventId: string | null,
    readonly auth: StreamAuth, private readonly maxBufferedBytes: number) {}

  start(keepaliveMs: number, onClose: (reason: SseCloseReason) => void): void {
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no', // nginx: do not buffer the stream
    });
    // A comment at once so the headers (and the client's open event) go out now.
    this.res.write(`: stream open for ${this.agentId}\n\n`);
    this.keepalive = setInterval(() => {
      if (!this.closed && this.res.writableLength <= this.maxBufferedBytes) this.res.write(': keepalive\n\n');
    }, keepaliveMs);
    this.res.on('close', () => {
      this.closed = true;
      if (this.keepalive) clearInterval(this.keepalive);
      onClose(this.reason ?? 'peer_closed');
    });
  }

  /** False (and the stream ends) when the peer has left too much unread: the event is not sent. */
  send(id: string, event: string, data: string): boolean {
    if (this.closed) return false;
    if (this.res.writableLength > 0 && this.res.writableLength + data.length > this.maxBufferedBytes) {
      this.end('output_overflow');
      return false;
    }
    this.res.write(`id: ${id}\nevent: ${event}\ndata: ${data}\n\n`);
    return true;
  }

  end(reason: SseCloseReason): void {
    if (this.reason === null) this.reason = reason;
    if (this.closed) return;
    this.closed = true; // nothing more is written, even before 'close' arrives
    if (this.keepalive) clearInterval(this.keepalive);
    // A comment says why; an agent reconnects (registering again when its token is gone).
    if (reason !== 'output_overflow') this.res.write(`: stream closed: ${reason}\n\n`);
    this.res.end();
    // A peer that does not read would keep the socket: it is not owed the rest.
    if (reason === 'output_overflow') this.res.destroy();
  }
}

export class SseHub {
  private readonly byAgent = new Map<string, SseStream>();
  readonly closedBy: Record<SseCloseReason, number> = Object.fromEntries(SSE_CLOSE_REASONS.map((r) => [r, 0])) as Record<SseCloseReason, number>;

  constructor(private readonly keepaliveMs: number, private readonly maxBufferedBytes: number = 1024 * 1024) {}

  get size(): number {
    return this.byAgent.size;
  }

  open(agentId: string, res: ServerResponse, lastEventId: string | null, auth: StreamAuth): SseStream {
    const s = new SseStream(agentId, res, lastEventId, auth, this.maxBufferedBytes);
    const old = this.byAgent.get(agentId);
    this.byAgent.set(agentId, s);
    s.start(this.keepaliveMs, (reason) => {
      this.closedBy[reason]++;
      if (this.byAgent.get(agentId) === s) this.byAgent.delete(agentId);
    });
    if (old) old.end('replaced');
    return s;
  }

  /** The open streams. */
  streams(): SseStream[] {
    return [...this.byAgent.values()].filter((s) => !s.closed);
  }

  get(agentId: string): SseStream | undefined {
    const s = this.byAgent.get(agentId);
    return s && !s.closed ? s : undefined;
  }

  close(agentId: string, reason: SseCloseReason): void {
    this.byAgent.get(agentId)?.end(reason);
  }

  /** Ends every stream whose token expired by `now`. */
  expire(now: number): void {
    for (const s of this.byAgent.values()) if (!s.closed && now >= s.auth.expiresAt) s.end('token_expired');
  }

  closeAll(): void {
    for (const s of this.byAgent.values()) s.end('shutdown');
  }
}
