// A bare server that reads and discards: what loopback TCP and a Node socket cost without the engine.
// With a `consume` factory each connection's bytes also go to a consumer of its own (the naive
// line server of bench/lib/naive-line.ts), with the same sockets, backlog and bookkeeping.
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { encodeMessage, PROTOCOL_VERSION, T_WELCOME, HEARTBEAT_MS } from './engine-api.js';

/** The engine's listen backlog (src/node-listener.ts, NodeListener.listen). */
export const ENGINE_BACKLOG = 4096;

const nowEpoch = (): number => performance.timeOrigin + performance.now();

/** Counts what it reads and answers a binary hello with a welcome (so the same client works). */
export class RawServer {
  readonly sockets = new Set<Socket>();
  readonly server: Server;
  bytes = 0;
  accepted = 0;
  firstData = 0;
  allReadyAt = 0;
  target = Infinity;
  closedByPeer = 0;
  stopping = false;
  private readonly welcome = encodeMessage({ t: T_WELCOME, v: PROTOCOL_VERSION, node: 'raw', last_seq: 0, max_frame: 1 << 20, hb_ms: HEARTBEAT_MS });

  constructor(consume?: (s: Socket) => (d: Buffer) => void) {
    this.server = createServer({ noDelay: true }, (s) => {
      this.accepted++;
      this.sockets.add(s);
      let first = true;
      const eat = consume?.(s);
      s.on('data', (d: Buffer) => {
        this.bytes += d.length;
        eat?.(d);
        if (first) {
          first = false;
          if (d[0] === 0x00) s.write(this.welcome);
          if (++this.firstData === this.target) this.allReadyAt = nowEpoch();
        }
      });
      s.on('error', () => undefined);
      s.on('close', () => {
        this.sockets.delete(s);
        if (!this.stopping) this.closedByPeer++;
      });
    });
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      // The engine's backlog (src/node-listener.ts), so both see the same listen queue.
      this.server.listen({ port: 0, host: '127.0.0.1', backlog: ENGINE_BACKLOG }, () => resolve(this.server.address() as AddressInfo));
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}
