// PROXY protocol v1 (text) and v2 (binary) header parser, as sent by L4 load
// balancers (HAProxy `send-proxy` / `send-proxy-v2`, AWS NLB, ...) in front of the
// real stream. Pure and stream-fed: give it everything received so far and it
// answers need-more, a header plus the number of bytes it took, or an error.
// Specification: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt

import { isIPv4, isIPv6 } from 'node:net';

export type ProxyMode = 'v1' | 'v2' | 'auto';

export interface ProxyTlv {
  type: number;
  value: Buffer;
}

export interface ProxyHeader {
  version: 1 | 2;
  /** v2 LOCAL: the balancer's own connection (health check); use the socket's addresses. */
  command: 'proxy' | 'local';
  /** `unknown`: v1 UNKNOWN, v2 LOCAL or AF_UNSPEC; `unix`: v2 AF_UNIX. Addresses are null for all three. */
  family: 'tcp4' | 'tcp6' | 'unix' | 'unknown';
  srcAddr: string | null;
  srcPort: number | null;
  dstAddr: string | null;
  dstPort: number | null;
  /** v2 type-length-value extensions after the addresses (not interpreted). */
  tlvs: ProxyTlv[];
}

export type ProxyParse =
  | { kind: 'need-more' }
  | { kind: 'header'; header: ProxyHeader; consumed: number }
  | { kind: 'error'; message: string };

/** ProxyHeaderReader's answer: a header also carries the bytes after it (the stream's own). */
export type ProxyRead =
  | { kind: 'need-more' }
  | { kind: 'header'; header: ProxyHeader; consumed: number; rest: Buffer }
  | { kind: 'error'; message: string };

/** v1: the longest header the specification allows, CRLF included. */
export const V1_MAX_BYTES = 107;
/** v2: the largest address + TLV block accepted (the 16-byte fixed part comes on top). */
const V2_MAX_LEN = 1024;

const V1_SIG = Buffer.from('PROXY ', 'latin1');
const V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

const NEED_MORE: ProxyParse = { kind: 'need-more' };

function error(message: string): ProxyParse {
  return { kind: 'error', message };
}

/** Does `buf` agree with `sig` on their common length? */
function prefixMatches(buf: Uint8Array, sig: Uint8Array): boolean {
  const n = Math.min(buf.length, sig.length);
  for (let i = 0; i < n; i++) if (buf[i] !== sig[i]) return false;
  return true;
}

/**
 * Whether the bytes start a PROXY header of either version: `yes` (a whole
 * signature is there), `maybe` (too few bytes to tell), `no`.
 */
export function proxySignature(buf: Uint8Array): 'yes' | 'maybe' | 'no' {
  let maybe = false;
  for (const sig of [V1_SIG, V2_SIG]) {
    if (!prefixMatches(buf, sig)) continue;
    if (buf.length >= sig.length) return 'yes';
    maybe = true;
  }
  return maybe ? 'maybe' : 'no';
}

/** Parses the header at the start of `buf` (everything received so far). */
export function parseProxyHeader(buf: Uint8Array, mode: ProxyMode = 'auto'): ProxyParse {
  if (buf.length === 0) return NEED_MORE;
  const v1 = prefixMatches(buf, V1_SIG);
  const v2 = prefixMatches(buf, V2_SIG);
  if (v1 && mode !== 'v2') return parseV1(buf);
  if (v2 && mode !== 'v1') return parseV2(buf);
  if (v1 || v2) return error(`a PROXY protocol ${v1 ? 'v1' : 'v2'} header where ${mode} is configured`);
  return error(mode === 'auto' ? 'no PROXY protocol signature' : `no PROXY protocol ${mode} signature`);
}

// ---- v1 --------------------------------------------------------------------

function parseV1(buf: Uint8Array): ProxyParse {
  // The CR may sit at index V1_MAX_BYTES - 2 at the latest (CRLF included in the limit).
  const limit = Math.min(buf.length, V1_MAX_BYTES - 1);
  let end = -1;
  for (let i = V1_SIG.length; i < limit; i++) {
    const b = buf[i]!;
    if (b === 0x0d) {
      if (i + 1 >= buf.length) return NEED_MORE;
      if (buf[i + 1] !== 0x0a) return error('v1 header: CR not followed by LF');
      end = i;
      break;
    }
    if (b === 0x0a) return error('v1 header: LF without CR');
    if (b < 0x20 || b > 0x7e) return error('v1 header: non-printable byte');
  }
  if (end < 0) return buf.length >= V1_MAX_BYTES - 1 ? error(`v1 header: longer than ${V1_MAX_BYTES} bytes`) : NEED_MORE;
  const consumed = end + 2;
  const line = Buffer.from(buf.buffer, buf.byteOffset, end).toString('latin1');
  const parts = line.split(' ');
  const proto = parts[1];
  if (proto === 'UNKNOWN') {
    // Everything after UNKNOWN is to be ignored by the receiver.
    return { kind: 'header', consumed, header: header(1, 'proxy', 'unknown', null, null, null, null) };
  }
  if (proto !== 'TCP4' && proto !== 'TCP6') return error(`v1 header: unknown protocol ${JSON.stringify(proto ?? '')}`);
  if (parts.length !== 6) return error('v1 header: expected "PROXY TCP4|TCP6 <src> <dst> <srcport> <dstport>"');
  const [, , src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  const valid = proto === 'TCP4' ? isIPv4 : (a: string) => isIPv6(a) && !a.includes('%');
  if (!valid(src)) return error(`v1 header: bad ${proto} source address ${JSON.stringify(src)}`);
  if (!valid(dst)) return error(`v1 header: bad ${proto} destination address ${JSON.stringify(dst)}`);
  const sp = portOf(sport);
  const dp = portOf(dport);
  if (sp < 0) return error(`v1 header: bad source port ${JSON.stringify(sport)}`);
  if (dp < 0) return error(`v1 header: bad destination port ${JSON.stringify(dport)}`);
  return { kind: 'header', consumed, header: header(1, 'proxy', proto === 'TCP4' ? 'tcp4' : 'tcp6', src, sp, dst, dp) };
}

function portOf(s: string): number {
  if (!/^[0-9]{1,5}$/.test(s)) return -1;
  const n = Number(s);
  return n <= 65535 ? n : -1;
}

function header(version: 1 | 2, command: 'proxy' | 'local', family: ProxyHeader['family'],
  srcAddr: string | null, srcPort: number | null, dstAddr: string | null, dstPort: number | null, tlvs: ProxyTlv[] = []): ProxyHeader {
  return { version, command, family, srcAddr, srcPort, dstAddr, dstPort, tlvs };
}

// ---- v2 --------------------------------------------------------------------

const AF_UNSPEC = 0;
const AF_INET = 1;
const AF_INET6 = 2;
const AF_UNIX = 3;
const T_DGRAM = 2;

function parseV2(buf: Uint8Array): ProxyParse {
  if (buf.length < 16) {
    // Reject a wrong version or command as soon as its byte is there.
    if (buf.length > 12) {
      const bad = checkVerCmd(buf[12]!);
      if (bad) return error(bad);
    }
    return NEED_MORE;
  }
  const bad = checkVerCmd(buf[12]!);
  if (bad) return error(bad);
  const local = (buf[12]! & 0x0f) === 0;
  const fam = buf[13]! >> 4;
  const transport = buf[13]! & 0x0f;
  if (fam > AF_UNIX) return error(`v2 header: unknown address family ${fam}`);
  if (transport > T_DGRAM) return error(`v2 header: unknown transport ${transport}`);
  const len = (buf[14]! << 8) | buf[15]!;
  if (len > V2_MAX_LEN) return error(`v2 header: address block of ${len} bytes exceeds ${V2_MAX_LEN}`);
  if (buf.length < 16 + len) return NEED_MORE;
  const consumed = 16 + len;
  // LOCAL: the balancer talks for itself; the addresses (if any) are to be ignored.
  if (local) return { kind: 'header', consumed, header: header(2, 'local', 'unknown', null, null, null, null) };
  if (transport === T_DGRAM) return error('v2 header: a datagram (UDP) connection on a stream port');
  const body = Buffer.from(buf.buffer, buf.byteOffset + 16, len);
  let addrLen: number;
  let h: ProxyHeader;
  switch (fam) {
    case AF_INET:
      addrLen = 12;
      if (len < addrLen) return error(`v2 header: ${len} bytes are too few for IPv4 addresses (12)`);
      h = header(2, 'proxy', 'tcp4', ipv4(body, 0), body.readUInt16BE(8), ipv4(body, 4), body.readUInt16BE(10));
      break;
    case AF_INET6:
      addrLen = 36;
      if (len < addrLen) return error(`v2 header: ${len} bytes are too few for IPv6 addresses (36)`);
      h = header(2, 'proxy', 'tcp6', ipv6(body, 0), body.readUInt16BE(32), ipv6(body, 16), body.readUInt16BE(34));
      break;
    case AF_UNIX:
      addrLen = 216;
      if (len < addrLen) return error(`v2 header: ${len} bytes are too few for unix addresses (216)`);
      h = header(2, 'proxy', 'unix', null, null, null, null);
      break;
    default: // AF_UNSPEC: unknown or unsupported protocol; keep the socket's addresses
      addrLen = 0;
      h = header(2, 'proxy', 'unknown', null, null, null, null);
      break;
  }
  if (fam !== AF_UNSPEC) {
    const tlvs = parseTlvs(body, addrLen);
    if (typeof tlvs === 'string') return error(tlvs);
    h.tlvs = tlvs;
  }
  return { kind: 'header', consumed, header: h };
}

function checkVerCmd(b: number): string | null {
  if (b >> 4 !== 2) return `v2 header: unsupported version ${b >> 4}`;
  if ((b & 0x0f) > 1) return `v2 header: unknown command ${b & 0x0f}`;
  return null;
}

function parseTlvs(body: Buffer, from: number): ProxyTlv[] | string {
  const out: ProxyTlv[] = [];
  let p = from;
  while (p < body.length) {
    if (p + 3 > body.length) return 'v2 header: truncated TLV';
    const type = body[p]!;
    const n = body.readUInt16BE(p + 1);
    if (p + 3 + n > body.length) return `v2 header: TLV 0x${type.toString(16)} of ${n} bytes overruns the header`;
    out.push({ type, value: Buffer.from(body.subarray(p + 3, p + 3 + n)) });
    p += 3 + n;
  }
  return out;
}

function ipv4(b: Buffer, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** RFC 5952 text: lower case, longest run of zero groups (2+) as `::`, IPv4-mapped as dotted quad. */
export function ipv6(b: Uint8Array, at: number): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[at + 2 * i]! << 8) | b[at + 2 * i + 1]!);
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${b[at + 12]}.${b[at + 13]}.${b[at + 14]}.${b[at + 15]}`;
  }
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/**
 * Stream-fed reader: push chunks as they arrive. Once it answers `header` or
 * `error` it is done; `rest` holds the bytes after the header (the stream's own).
 */
export class ProxyHeaderReader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(readonly mode: ProxyMode = 'auto') {}

  /** Bytes held so far. */
  get buffered(): number {
    return this.buf.length;
  }

  push(chunk: Uint8Array): ProxyRead {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) : Buffer.concat([this.buf, chunk]);
    const r = parseProxyHeader(this.buf, this.mode);
    if (r.kind === 'header') return { ...r, rest: this.buf.subarray(r.consumed) };
    return r;
  }
}
