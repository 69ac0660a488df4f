// Tracker ports for auto-provisioned nodes, from tcp_server.auto_provision_port_start..end.
// Ports are handed out lowest first (so the first node gets `start`, the next
// start+1, ...), each checked free on the OS at that moment, and held until the
// instance is removed (tracker-host leaked them when provisioning failed).
import { createServer } from 'node:net';

/** True when nothing listens on 127.0.0.1:port (the address trackers bind). */
export function portIsFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.unref();
    s.once('error', () => resolve(false));
    s.listen({ port, host, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

export class PortAllocator {
  private readonly held = new Set<number>();

  /**
   * `reserved`: ports never handed out (configured trackers' tcp_port).
   * `isFree`: the OS check (replaceable in tests).
   */
  constructor(
    readonly start: number,
    readonly end: number,
    private reserved: ReadonlySet<number> = new Set(),
    private readonly isFree: (port: number) => Promise<boolean> = portIsFree,
  ) {
    if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 1 && end <= 65535 && start <= end)) {
      throw new RangeError(`invalid port range ${start}..${end}`);
    }
  }

  get size(): number {
    return this.end - this.start + 1;
  }
  get inUse(): number {
    return this.held.size;
  }

  /** The lowest port of the range that is neither held, reserved nor busy on the OS; null when there is none. */
  async allocate(): Promise<{ port: number } | { port: null; busy: number[] }> {
    const busy: number[] = [];
    for (let p = this.start; p <= this.end; p++) {
      if (this.held.has(p) || this.reserved.has(p)) continue;
      // Hold it during the check, so a concurrent allocate() cannot pick it too.
      this.held.add(p);
      if (await this.isFree(p)) return { port: p };
      this.held.delete(p);
      busy.push(p);
    }
    return { port: null, busy };
  }

  /** Ports never handed out from now on (configured trackers' ports after a reload). */
  setReserved(ports: ReadonlySet<number>): void {
    this.reserved = ports;
  }

  /** Marks a port as held (an instance that already has one). */
  hold(port: number): void {
    this.held.add(port);
  }

  release(port: number): void {
    this.held.delete(port);
  }

  holds(port: number): boolean {
    return this.held.has(port);
  }
}
