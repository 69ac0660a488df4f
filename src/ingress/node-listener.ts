// The node port: accepts TCP connections, reads an optional PROXY protocol header
// (from trusted balancers), runs the optional TLS handshake, and hands each
// connection to the ConnectionHandoff with the node's real address and, with a
// verified client certificate, the only node id it may use. Nothing reaches a
// shard before these steps have succeeded; failures are closed and counted
// (proxy_malformed, proxy_untrusted, tls_failed, first_message_timeout).
//
// Order on the wire: [PROXY header] [TLS] node protocol. A TCP-mode balancer
// passes TLS through, so the header is read on the raw socket and TLS starts on
// the bytes after it.
import { createServer, BlockList, isIPv4, type Server, type Socket, type AddressInfo } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';
import type { Config } from '../config.js';
import type { ConnectionHandoff, HandoffUpstream } from './connection-handoff.js';
import { RateLimit, type Logger } from '../telemetry/logger.js';
import { ProxyHeaderReader, proxySignature, type ProxyMode } from './proxy-protocol.js';
import { C_BYTES_RECEIVED, closeIndex, type CloseReason } from '../telemetry/counters.js';
import { closeIsProblem } from '../protocol/close-reasons.js';
import { isValidNodeId } from '../protocol/node-id.js';

type TcpServerConfig = Config['tcp_server'];

export interface NodeListenerOptions {
  proxyProtocol: TcpServerConfig['proxy_protocol'];
  /** Addresses or CIDR blocks allowed to send a PROXY header. */
  proxyTrusted: readonly string[];
  tls: TcpServerConfig['tls'];
  /** Also gives the first-message deadline (reloadable): header, handshake and first message must fit in it. */
  handoff: ConnectionHandoff;
  /** Main-thread counters (layout: telemetry/counters.ts). */
  counters: Float64Array;
  log: Logger;
}

/** A connection still in the listener. */
interface Pending {
  raw: Socket;
  acceptedAt: number;
  timer: NodeJS.Timeout;
  stage: 'proxy' | 'sniff' | 'tls';
  /** The socket's own peer address; `remote` replaces it when a PROXY header names the client. */
  peer: string;
  remote: string;
  done: boolean;
  /** Set when a failure is known but the socket has not closed yet. */
  failure: { reason: CloseReason; detail: string } | null;
}

function peerOf(s: Socket): string {
  return `${s.remoteAddress ?? '?'}:${s.remotePort ?? 0}`;
}

function readPem(path: string, key: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`tcp_server.tls.${key}: cannot read ${path}: ${(err as Error).message}`);
  }
}

/** Parses `proxy_trusted` (validated by the config schema) into a matcher. */
function trustList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const e of entries) {
    const [addr, bits] = e.split('/') as [string, string | undefined];
    const type = isIPv4(addr) ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(bits), type);
  }
  return list;
}

export class NodeListener implements HandoffUpstream {
  readonly server: Server;
  private readonly opts: NodeListenerOptions;
  private readonly proxy: ProxyMode | null;
  private readonly trusted: BlockList;
  private readonly tlsServer: TlsServer | null;
  private readonly pending = new Set<Pending>();
  /** TLS handshakes in progress by the socket's peer address (unique while it is open). */
  private readonly handshaking = new Map<string, Pending>();
  private readonly logLimit = new RateLimit(5, 10000);

  constructor(opts: NodeListenerOptions) {
    this.opts = opts;
    this.proxy = opts.proxyProtocol === 'off' ? null : opts.proxyProtocol;
    this.trusted = trustList(opts.proxyTrusted);
    this.tlsServer = opts.tls.enabled ? this.createTls(opts.tls) : null;
    const direct = this.proxy === null && this.tlsServer === null;
    this.server = createServer({ noDelay: true }, direct ? (s) => opts.handoff.accept(s) : (s) => this.onConnection(s));
    opts.handoff.upstream = this;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  listen(port: number, host: string, maxConnections: number): Promise<AddressInfo> {
    const srv = this.server;
    srv.maxConnections = maxConnections + 64; // the handoff counts refusals itself
    return new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ port, host, backlog: 4096 }, () => {
        srv.off('error', reject);
        resolve(srv.address() as AddressInfo);
      });
    });
  }

  /** Closes every connection still in the listener (shutdown). */
  closePending(reason: CloseReason): void {
    for (const p of [...this.pending]) this.fail(p, reason, 'closing');
  }

  private createTls(t: TcpServerConfig['tls']): TlsServer {
    const requestCert = t.client_cert !== 'off';
    const srv = createTlsServer({
      cert: readPem(t.cert_file!, 'cert_file'),
      key: readPem(t.key_file!, 'key_file'),
      ...(t.ca_file ? { ca: readPem(t.ca_file, 'ca_file') } : {}),
      requestCert,
      // require: OpenSSL fails the handshake without a certificate, and a certificate that
      // does not verify is refused at once. request: checked below (sent = must verify).
      rejectUnauthorized: t.client_cert === 'require',
      // The first-message deadline bounds the handshake (checked by our own timer).
      handshakeTimeout: 0,
    });
    srv.on('secureConnection', (s: TLSSocket) => this.onSecure(s));
    srv.on('tlsClientError', (err: Error, s: TLSSocket) => {
      const p = this.handshaking.get(peerOf(s));
      if (p && !p.done) p.failure = { reason: 'tls_failed', detail: `TLS handshake failed: ${err.message}` };
      s.destroy();
    });
    return srv;
  }

  private onConnection(raw: Socket): void {
    const refused = this.opts.handoff.refusal();
    raw.on('error', () => undefined); // the close that follows is what counts
    if (refused !== null) {
      this.opts.counters[closeIndex(refused)]! += 1;
      raw.destroy();
      return;
    }
    const peer = peerOf(raw);
    const acceptedAt = Date.now();
    const timeoutMs = this.opts.handoff.firstMessageTimeoutMs;
    let stage: Pending['stage'] = 'tls';
    if (this.proxy !== null) stage = raw.remoteAddress !== undefined && this.isTrusted(raw.remoteAddress) ? 'proxy' : 'sniff';
    const p: Pending = {
      raw, acceptedAt, peer, remote: peer, stage, done: false, failure: null,
      timer: setTimeout(() => this.fail(p, 'first_message_timeout',
        `no complete ${p.stage === 'tls' ? 'TLS handshake' : 'PROXY header'} within ${timeoutMs} ms`), timeoutMs),
    };
    p.timer.unref();
    this.pending.add(p);
    raw.on('close', () => this.onRawClose(p));
    if (stage === 'proxy') this.readHeader(p);
    else if (stage === 'sniff') this.sniff(p);
    else this.startTls(p);
  }

  private isTrusted(addr: string): boolean {
    return this.trusted.check(addr, isIPv4(addr) ? 'ipv4' : 'ipv6');
  }

  /** A trusted source: the connection must start with a header of the configured version. */
  private readHeader(p: Pending): void {
    const reader = new ProxyHeaderReader(this.proxy!);
    const onData = (chunk: Buffer): void => {
      if (p.done) return;
      const r = reader.push(chunk);
      if (r.kind === 'need-more') return;
      p.raw.pause();
      p.raw.off('data', onData);
      if (r.kind === 'error') {
        this.opts.counters[C_BYTES_RECEIVED]! += reader.buffered;
        this.fail(p, 'proxy_malformed', `PROXY header: ${r.message}`);
        return;
      }
      this.opts.counters[C_BYTES_RECEIVED]! += r.consumed;
      const h = r.header;
      if (h.srcAddr !== null) p.remote = `${h.srcAddr}:${h.srcPort}`;
      if (r.rest.length > 0) p.raw.unshift(r.rest);
      this.opts.log.debug({ peer: p.peer, remote: p.remote, version: h.version, command: h.command, family: h.family }, 'PROXY header');
      this.next(p);
    };
    p.raw.on('data', onData);
  }

  /** An untrusted source is a direct client, unless it starts with a PROXY signature. */
  private sniff(p: Pending): void {
    let buf: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      if (p.done) return;
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const sig = proxySignature(buf);
      if (sig === 'maybe') return;
      p.raw.pause();
      p.raw.off('data', onData);
      if (sig === 'yes') {
        this.opts.counters[C_BYTES_RECEIVED]! += buf.length;
        this.fail(p, 'proxy_untrusted', `PROXY header from ${p.peer}, which is not in tcp_server.proxy_trusted`);
        return;
      }
      p.raw.unshift(buf);
      this.next(p);
    };
    p.raw.on('data', onData);
  }

  /** After the PROXY step: TLS if enabled, else the handoff. */
  private next(p: Pending): void {
    if (this.tlsServer !== null) this.startTls(p);
    else this.handOver(p, p.raw, undefined);
  }

  private startTls(p: Pending): void {
    p.stage = 'tls';
    this.handshaking.set(p.peer, p);
    // The TLS server wraps the socket (taking any bytes put back after the header).
    this.tlsServer!.emit('connection', p.raw);
  }

  private onSecure(s: TLSSocket): void {
    const p = this.handshaking.get(peerOf(s));
    if (!p || p.done) {
      s.destroy();
      return;
    }
    let identity: string | undefined;
    if (this.opts.tls.client_cert !== 'off') {
      const cert = s.getPeerCertificate();
      const presented = cert !== null && Object.keys(cert).length > 0;
      if (presented && !s.authorized) {
        this.fail(p, 'tls_failed', `client certificate refused: ${String(s.authorizationError)}`, s);
        return;
      }
      if (presented) {
        const cn = cert.subject?.CN as unknown;
        if (!isValidNodeId(cn)) {
          this.fail(p, 'tls_failed', 'client certificate has no subject CN that is a valid node id', s);
          return;
        }
        identity = cn;
      }
    }
    this.handOver(p, s, identity);
  }

  private handOver(p: Pending, socket: Socket, identity: string | undefined): void {
    this.settle(p);
    this.opts.handoff.accept(socket, { remote: p.remote, acceptedAt: p.acceptedAt, ...(identity !== undefined ? { identity } : {}) });
  }

  /** The connection leaves the listener (handed over or failed). */
  private settle(p: Pending): void {
    p.done = true;
    clearTimeout(p.timer);
    this.pending.delete(p);
    if (this.handshaking.get(p.peer) === p) this.handshaking.delete(p.peer);
  }

  private fail(p: Pending, reason: CloseReason, detail: string, tlsSocket?: TLSSocket): void {
    if (p.done) return;
    this.settle(p);
    this.opts.counters[closeIndex(reason)]! += 1;
    if (closeIsProblem(reason) && this.logLimit.take(reason) >= 0) {
      this.opts.log.warn({ peer: p.peer, remote: p.remote, reason }, detail);
    }
    tlsSocket?.destroy();
    p.raw.destroy();
  }

  private onRawClose(p: Pending): void {
    if (p.done) return;
    // Closed in the listener: a TLS failure reported by the handshake, else the peer left.
    const f = p.failure ?? (p.stage === 'tls' && p.raw.bytesRead > 0
      ? { reason: 'tls_failed' as const, detail: 'TLS handshake failed or client certificate refused (e.g. not signed by tcp_server.tls.ca_file, expired)' }
      : { reason: 'peer_closed' as const, detail: 'closed by the peer' });
    this.fail(p, f.reason, f.detail);
  }
}
