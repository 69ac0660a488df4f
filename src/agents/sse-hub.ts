// One Server-Sent Events stream per agent. Opening a new stream replaces the old
// one; the old stream's close must never remove the new one (identity check).
import type { ServerResponse } from 'node:http';

export class SseStream {
  private keepalive: NodeJS.Timeout | null = null;
  closed = false;
  constructor(readonly agentId: string, readonly res: ServerResponse, readonly lastEventId: string | null) {}

  start(keepaliveMs: number, onClose: () => void): void {
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no', // nginx: do not buffer the stream
    });
    // A comment at once so the headers (and the client's open event) go out now.
    this.res.write(`: stream open for ${this.agentId}\n\n`);
    this.keepalive = setInterval(() => this.res.write(': keepalive\n\n'), keepaliveMs);
    this.res.on('close', () => {
      this.closed = true;
      if (this.keepalive) clearInterval(this.keepalive);
      onClose();
    });
  }

  send(id: string, event: string, data: string): void {
    this.res.write(`id: ${id}\nevent: ${event}\ndata: ${data}\n\n`);
  }

  end(): void {
    this.closed = true; // nothing more is written, even before 'close' arrives
    if (this.keepalive) clearInterval(this.keepalive);
    this.res.end();
  }
}

export class SseHub {
  private readonly streams = new Map<string, SseStream>();
  constructor(private readonly keepaliveMs: number) {}

  get size(): number {
    return this.streams.size;
  }

  open(agentId: string, res: ServerResponse, lastEventId: string | null): SseStream {
    const s = new SseStream(agentId, res, lastEventId);
    const old = this.streams.get(agentId);
    this.streams.set(agentId, s);
    s.start(this.keepaliveMs, () => {
      if (this.streams.get(agentId) === s) this.streams.delete(agentId);
    });
    if (old) old.end();
    return s;
  }

  get(agentId: string): SseStream | undefined {
    const s = this.streams.get(agentId);
    return s && !s.closed ? s : undefined;
  }

  close(agentId: string): void {
    this.streams.get(agentId)?.end();
  }

  closeAll(): void {
    for (const s of this.streams.values()) s.end();
  }
}
