// PROXY protocol parser: byte-exact v1/v2 headers, fed whole and byte by byte, and
// the malformed variants a balancer (or an attacker) could send.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parseProxyHeader, proxySignature, ProxyHeaderReader, ipv6, V1_MAX_BYTES, type ProxyMode, type ProxyParse, type ProxyRead } from '../src/ingress/proxy-protocol.js';

const SIG = '0d0a0d0a000d0a515549540a';

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/** v2: signature, ver/cmd, family/transport, then the address block (its length is filled in). */
function v2(verCmd: number, famTransport: number, block: Buffer): Buffer {
  const h = Buffer.alloc(16);
  hex(SIG).copy(h);
  h[12] = verCmd;
  h[13] = famTransport;
  h.writeUInt16BE(block.length, 14);
  return Buffer.concat([h, block]);
}

// 192.0.2.10:51234 -> 198.51.100.1:30050, then TLVs ALPN "h2" and NOOP (3 zero bytes).
const V2_TCP4_TLV = v2(0x21, 0x11, hex('c000020a c6336401 c822 7562  01 0002 6832  04 0003 000000'));
// [2001:db8::1]:51234 -> [2001:db8::2]:30050, then an AUTHORITY TLV "radar.example".
const V2_TCP6_TLV = v2(0x21, 0x21, Buffer.concat([
  hex('20010db8000000000000000000000001 20010db8000000000000000000000002 c822 7562'),
  Buffer.from([0x02, 0x00, 13]), Buffer.from('radar.example'),
]));
const V2_LOCAL = v2(0x20, 0x00, Buffer.alloc(0));
// LOCAL with addresses (HAProxy health checks may send them): ignored.
const V2_LOCAL_TCP4 = v2(0x20, 0x11, hex('7f000001 7f000001 0001 0002'));

const V1_TCP4 = Buffer.from('PROXY TCP4 192.0.2.10 198.51.100.1 51234 30050\r\n');
const V1_TCP6 = Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 51234 30050\r\n');
const V1_UNKNOWN = Buffer.from('PROXY UNKNOWN\r\n');
const F = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
const V1_UNKNOWN_MAX = Buffer.from(`PROXY UNKNOWN ${F} ${F} 65535 65535\r\n`);

const PAYLOAD = Buffer.from('{"node_id":"n"}\n');

function header<R extends ProxyParse | ProxyRead>(r: R): Extract<R, { kind: 'header' }> {
  assert.equal(r.kind, 'header', r.kind === 'error' ? r.message : r.kind);
  return r as Extract<R, { kind: 'header' }>;
}

function errorOf(buf: Buffer, mode: ProxyMode = 'auto'): string {
  const r = parseProxyHeader(buf, mode);
  assert.equal(r.kind, 'error', `expected an error for ${JSON.stringify(buf.toString('latin1'))}, got ${r.kind}`);
  return (r as { message: string }).message;
}

/** Feeds one byte at a time: need-more until the last byte of the header. */
function feedBytewise(bytes: Buffer, mode: ProxyMode = 'auto'): ProxyRead {
  const reader = new ProxyHeaderReader(mode);
  for (let i = 0; i < bytes.length; i++) {
    const r = reader.push(bytes.subarray(i, i + 1));
    if (r.kind !== 'need-more') return r;
  }
  return { kind: 'need-more' };
}

describe('PROXY protocol v1', () => {
  test('TCP4: addresses, ports and the bytes it consumed', () => {
    const r = header(parseProxyHeader(Buffer.concat([V1_TCP4, PAYLOAD]), 'v1'));
    assert.equal(r.consumed, V1_TCP4.length);
    assert.deepEqual(r.header, {
      version: 1, command: 'proxy', family: 'tcp4', srcAddr: '192.0.2.10', srcPort: 51234, dstAddr: '198.51.100.1', dstPort: 30050, tlvs: [],
    });
  });

  test('TCP6', () => {
    const r = header(parseProxyHeader(V1_TCP6, 'auto'));
    assert.equal(r.consumed, V1_TCP6.length);
    assert.equal(r.header.family, 'tcp6');
    assert.equal(r.header.srcAddr, '2001:db8::1');
    assert.equal(r.header.dstAddr, '2001:db8::2');
    assert.equal(r.header.srcPort, 51234);
  });

  test('UNKNOWN, bare and with the longest allowed tail (107 bytes): no addresses', () => {
    const r = header(parseProxyHeader(V1_UNKNOWN, 'v1'));
    assert.equal(r.consumed, 15);
    assert.equal(r.header.family, 'unknown');
    assert.equal(r.header.srcAddr, null);
    assert.equal(V1_UNKNOWN_MAX.length, V1_MAX_BYTES);
    const m = header(parseProxyHeader(V1_UNKNOWN_MAX, 'v1'));
    assert.equal(m.consumed, 107);
    assert.equal(m.header.srcAddr, null);
  });

  test('ports 0 and 65535 are valid', () => {
    const r = header(parseProxyHeader(Buffer.from('PROXY TCP4 10.0.0.1 10.0.0.2 0 65535\r\n')));
    assert.equal(r.header.srcPort, 0);
    assert.equal(r.header.dstPort, 65535);
  });

  test('split across chunks byte by byte: need-more until the LF, then the rest is returned', () => {
    for (const h of [V1_TCP4, V1_TCP6, V1_UNKNOWN, V1_UNKNOWN_MAX]) {
      const reader = new ProxyHeaderReader('v1');
      const bytes = Buffer.concat([h, PAYLOAD]);
      let got: ProxyRead | null = null;
      for (let i = 0; i < bytes.length && got === null; i++) {
        const r = reader.push(bytes.subarray(i, i + 1));
        if (r.kind === 'need-more') continue;
        assert.equal(i, h.length - 1, 'decided exactly at the LF');
        got = r;
      }
      const r = header(got!);
      assert.equal(r.consumed, h.length);
      // The rest of the stream is whatever followed in the last chunk (nothing yet here).
      assert.equal(r.rest.length, 0);
    }
    const reader = new ProxyHeaderReader('v1');
    assert.equal(reader.push(V1_TCP4.subarray(0, 20)).kind, 'need-more');
    const r = reader.push(Buffer.concat([V1_TCP4.subarray(20), PAYLOAD]));
    assert.deepEqual(header(r).rest, PAYLOAD);
  });

  test('malformed: bad signature, bad CRLF, too long, bad addresses and ports', () => {
    assert.match(errorOf(Buffer.from('PROXX TCP4 1.2.3.4 5.6.7.8 1 2\r\n')), /signature/);
    assert.match(errorOf(Buffer.from('proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n')), /signature/);
    assert.match(errorOf(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n')), /LF without CR/);
    assert.match(errorOf(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX')), /CR not followed by LF/);
    assert.match(errorOf(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n')), /CR not followed by LF/);
    assert.match(errorOf(Buffer.from(`PROXY UNKNOWN ${F} ${F} 65535 655350\r\n`)), /longer than 107/);
    assert.match(errorOf(Buffer.from(`PROXY UNKNOWN ${'x'.repeat(200)}`)), /longer than 107/);
    assert.match(errorOf(Buffer.from('PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n')), /bad TCP4 source address/);
    assert.match(errorOf(Buffer.from('PROXY TCP4 1.2.3.4 2001:db8::1 1 2\r\n')), /bad TCP4 destination address/);
    assert.match(errorOf(Buffer.from('PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n')), /bad TCP6 source address/);
    assert.match(errorOf(Buffer.from('PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n')), /bad TCP6 source address/);
    assert.match(errorOf(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n')), /bad source port/);
    assert.match(errorOf(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n')), /bad destination port/);
    assert.match(errorOf(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n')), /bad source port/);
    assert.match(errorOf(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n')), /expected/);
    assert.match(errorOf(Buffer.from('PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n')), /expected/);
    assert.match(errorOf(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n')), /expected/);
    assert.match(errorOf(Buffer.from('PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n')), /unknown protocol/);
    assert.match(errorOf(Buffer.from('PROXY TCP4 1.2.3.4\x005.6.7.8 1 2\r\n')), /non-printable/);
  });

  test('errors are reported as soon as the bytes show them (no waiting for more)', () => {
    assert.equal(feedBytewise(Buffer.from('PROXZ')).kind, 'error');
    const r = feedBytewise(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'));
    assert.equal(r.kind, 'error');
    // Not one byte more than 106 is read while looking for the CR.
    const reader = new ProxyHeaderReader('v1');
    let n = 0;
    let last: ProxyParse = { kind: 'need-more' };
    while (last.kind === 'need-more') {
      last = reader.push(Buffer.from(n < 6 ? 'PROXY '[n]! : 'A'));
      n++;
    }
    assert.equal(last.kind, 'error');
    assert.equal(n, V1_MAX_BYTES - 1);
  });
});

describe('PROXY protocol v2', () => {
  test('PROXY over IPv4 with TLVs', () => {
    const r = header(parseProxyHeader(Buffer.concat([V2_TCP4_TLV, PAYLOAD]), 'v2'));
    assert.equal(r.consumed, 16 + 12 + 5 + 6);
    assert.equal(r.header.version, 2);
    assert.equal(r.header.command, 'proxy');
    assert.equal(r.header.family, 'tcp4');
    assert.equal(r.header.srcAddr, '192.0.2.10');
    assert.equal(r.header.srcPort, 51234);
    assert.equal(r.header.dstAddr, '198.51.100.1');
    assert.equal(r.header.dstPort, 30050);
    assert.deepEqual(r.header.tlvs, [{ type: 1, value: Buffer.from('h2') }, { type: 4, value: Buffer.alloc(3) }]);
  });

  test('PROXY over IPv6 with a TLV', () => {
    const r = header(parseProxyHeader(V2_TCP6_TLV, 'auto'));
    assert.equal(r.consumed, V2_TCP6_TLV.length);
    assert.equal(r.header.family, 'tcp6');
    assert.equal(r.header.srcAddr, '2001:db8::1');
    assert.equal(r.header.dstAddr, '2001:db8::2');
    assert.equal(r.header.dstPort, 30050);
    assert.deepEqual(r.header.tlvs, [{ type: 2, value: Buffer.from('radar.example') }]);
  });

  test('LOCAL (with or without addresses) and AF_UNSPEC / AF_UNIX: no addresses, use the socket', () => {
    for (const h of [V2_LOCAL, V2_LOCAL_TCP4]) {
      const r = header(parseProxyHeader(h, 'v2'));
      assert.equal(r.consumed, h.length);
      assert.equal(r.header.command, 'local');
      assert.equal(r.header.srcAddr, null);
    }
    const unspec = header(parseProxyHeader(v2(0x21, 0x00, Buffer.alloc(0))));
    assert.equal(unspec.header.family, 'unknown');
    assert.equal(unspec.header.srcAddr, null);
    const unix = header(parseProxyHeader(v2(0x21, 0x31, Buffer.alloc(216))));
    assert.equal(unix.header.family, 'unix');
    assert.equal(unix.header.srcAddr, null);
  });

  test('split across chunks byte by byte: need-more until the last header byte', () => {
    for (const h of [V2_TCP4_TLV, V2_TCP6_TLV, V2_LOCAL, V2_LOCAL_TCP4]) {
      const reader = new ProxyHeaderReader('auto');
      const bytes = Buffer.concat([h, PAYLOAD]);
      let at = -1;
      let got: ProxyRead | null = null;
      for (let i = 0; i < bytes.length && got === null; i++) {
        const r = reader.push(bytes.subarray(i, i + 1));
        if (r.kind !== 'need-more') {
          got = r;
          at = i;
        }
      }
      assert.equal(at, h.length - 1);
      assert.equal(header(got!).consumed, h.length);
    }
    const reader = new ProxyHeaderReader('v2');
    assert.equal(reader.push(V2_TCP6_TLV.subarray(0, 30)).kind, 'need-more');
    assert.deepEqual(header(reader.push(Buffer.concat([V2_TCP6_TLV.subarray(30), PAYLOAD]))).rest, PAYLOAD);
  });

  test('malformed: signature, version nibble, command, family, transport, lengths, TLVs', () => {
    const badSig = Buffer.from(V2_TCP4_TLV);
    badSig[7] = 0x52;
    assert.match(errorOf(badSig), /signature/);
    const ver1 = Buffer.from(V2_TCP4_TLV);
    ver1[12] = 0x11;
    assert.match(errorOf(ver1), /unsupported version 1/);
    const ver3 = Buffer.from(V2_TCP4_TLV);
    ver3[12] = 0x31;
    assert.match(errorOf(ver3), /unsupported version 3/);
    const cmd = Buffer.from(V2_TCP4_TLV);
    cmd[12] = 0x22;
    assert.match(errorOf(cmd), /unknown command 2/);
    assert.match(errorOf(v2(0x21, 0x41, Buffer.alloc(12))), /address family 4/);
    assert.match(errorOf(v2(0x21, 0x13, Buffer.alloc(12))), /transport 3/);
    assert.match(errorOf(v2(0x21, 0x12, Buffer.alloc(12))), /datagram/);
    assert.match(errorOf(v2(0x21, 0x11, Buffer.alloc(11))), /too few for IPv4/);
    assert.match(errorOf(v2(0x21, 0x21, Buffer.alloc(35))), /too few for IPv6/);
    assert.match(errorOf(v2(0x21, 0x31, Buffer.alloc(215))), /too few for unix/);
    // TLV header cut short, and a TLV whose length runs past the block.
    assert.match(errorOf(v2(0x21, 0x11, Buffer.concat([Buffer.alloc(12), hex('0100')]))), /truncated TLV/);
    assert.match(errorOf(v2(0x21, 0x11, Buffer.concat([Buffer.alloc(12), hex('01 0005 6832')]))), /overruns/);
  });

  test('an address block over 1024 bytes is refused from the fixed part alone', () => {
    const fixed = v2(0x21, 0x11, Buffer.alloc(0));
    fixed.writeUInt16BE(1025, 14);
    assert.match(errorOf(fixed), /1025 bytes exceeds 1024/);
    // Exactly 1024: 12 address bytes and one NOOP TLV of 1009 bytes.
    const tlv = Buffer.alloc(3 + 1009);
    tlv[0] = 0x04;
    tlv.writeUInt16BE(1009, 1);
    const ok = v2(0x21, 0x11, Buffer.concat([hex('0a000001 0a000002 0001 0002'), tlv]));
    assert.equal(ok.length, 16 + 1024);
    assert.equal(parseProxyHeader(ok.subarray(0, 16)).kind, 'need-more');
    const r = header(parseProxyHeader(ok));
    assert.equal(r.consumed, 1040);
    assert.equal(r.header.tlvs[0]!.value.length, 1009);
  });

  test('a wrong version byte is refused before the rest arrives', () => {
    const b = Buffer.from(V2_TCP4_TLV.subarray(0, 13));
    b[12] = 0x11;
    assert.equal(parseProxyHeader(b).kind, 'error');
    assert.equal(parseProxyHeader(V2_TCP4_TLV.subarray(0, 13)).kind, 'need-more');
  });
});

describe('PROXY protocol version selection and signatures', () => {
  test('the configured version is enforced; auto takes either', () => {
    assert.match(errorOf(V1_TCP4, 'v2'), /v1 header where v2 is configured/);
    assert.match(errorOf(V2_TCP4_TLV, 'v1'), /v2 header where v1 is configured/);
    assert.equal(parseProxyHeader(V1_TCP4, 'auto').kind, 'header');
    assert.equal(parseProxyHeader(V2_TCP4_TLV, 'auto').kind, 'header');
  });

  test('a stream that is not a PROXY header is an error on its first byte', () => {
    assert.match(errorOf(Buffer.from('{')), /no PROXY protocol signature/);
    assert.match(errorOf(Buffer.from([0x00, 0x00, 0x00, 0x10])), /no PROXY protocol signature/);
    assert.match(errorOf(Buffer.from('{'), 'v1'), /no PROXY protocol v1 signature/);
    assert.equal(parseProxyHeader(Buffer.alloc(0)).kind, 'need-more');
  });

  test('proxySignature: yes / maybe / no', () => {
    assert.equal(proxySignature(Buffer.from('{"node_id"')), 'no');
    assert.equal(proxySignature(Buffer.from([0])), 'no');
    assert.equal(proxySignature(Buffer.from('PRO')), 'maybe');
    assert.equal(proxySignature(Buffer.from('PROXY ')), 'yes');
    assert.equal(proxySignature(Buffer.from('PROXY!')), 'no');
    assert.equal(proxySignature(hex('0d0a0d0a00')), 'maybe');
    assert.equal(proxySignature(hex(SIG)), 'yes');
    assert.equal(proxySignature(Buffer.from('\r\n{')), 'no');
    assert.equal(proxySignature(Buffer.alloc(0)), 'maybe');
  });

  test('IPv6 text is RFC 5952 (longest zero run compressed, IPv4-mapped dotted)', () => {
    const a = (s: string) => ipv6(hex(s), 0);
    assert.equal(a('00000000000000000000000000000001'), '::1');
    assert.equal(a('00000000000000000000000000000000'), '::');
    assert.equal(a('20010db8000000000000000000000001'), '2001:db8::1');
    assert.equal(a('00000000000000000000ffffc000020a'), '::ffff:192.0.2.10');
    assert.equal(a('00010000000000010000000000000001'), '1:0:0:1::1');
    assert.equal(a('00010000000200030004000500060007'), '1:0:2:3:4:5:6:7');
    assert.equal(a('fe800000000000000000000000000000'), 'fe80::');
  });
});
