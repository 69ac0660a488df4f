// Reads the common binary frame {t:"f", seq, ts, det} straight from the msgpack
// bytes: 30-40 ns instead of ~800 ns through a general decoder, and `det` stays a
// view (no copy). Anything else (adsb, other key order is fine, other types are
// not) returns false and the caller decodes with msgpackr.

export class FastFrame {
  seq = 0;
  ts = 0;
  detStart = 0;
  detEnd = 0;
}

function readNumber(b: Buffer, p: number, e: number, out: { v: number; p: number }): boolean {
  if (p >= e) return false;
  const c = b[p]!;
  if (c <= 0x7f) { out.v = c; out.p = p + 1; return true; }
  switch (c) {
    case 0xcc: if (p + 2 > e) return false; out.v = b[p + 1]!; out.p = p + 2; return true;
    case 0xcd: if (p + 3 > e) return false; out.v = b.readUInt16BE(p + 1); out.p = p + 3; return true;
    case 0xce: if (p + 5 > e) return false; out.v = b.readUInt32BE(p + 1); out.p = p + 5; return true;
    case 0xcf: {
      if (p + 9 > e) return false;
      const hi = b.readUInt32BE(p + 1);
      if (hi >= 0x200000) return false; // beyond 2^53: let the general decoder say so
      out.v = hi * 0x100000000 + b.readUInt32BE(p + 5);
      out.p = p + 9;
      return true;
    }
    case 0xcb: if (p + 9 > e) return false; out.v = b.readDoubleBE(p + 1); out.p = p + 9; return true;
    case 0xca: if (p + 5 > e) return false; out.v = b.readFloatBE(p + 1); out.p = p + 5; return true;
    default: return false;
  }
}

const num = { v: 0, p: 0 };
const K_T = 0x74; // 't'

/** Returns true and fills `out` when b[s, e) is exactly a canonical frame map. */
export function readFastFrame(b: Buffer, s: number, e: number, out: FastFrame): boolean {
  let p = s;
  const h = b[p++];
  let n: number;
  if (h !== undefined && h >= 0x80 && h <= 0x8f) {
    n = h & 0x0f;
  } else if (h === 0xde && p + 2 <= e) {
    n = b.readUInt16BE(p); // map16: msgpackr's default for maps
    p += 2;
    if (n > 15) return false;
  } else {
    return false;
  }
  let seen = 0;
  for (let i = 0; i < n; i++) {
    if (p >= e) return false;
    const kh = b[p]!;
    if (kh < 0xa1 || kh > 0xa3) return false; // keys are 1-3 char fixstr
    const klen = kh & 0x1f;
    if (p + 1 + klen > e) return false;
    const k0 = b[p + 1]!;
    p += 1 + klen;
    if (klen === 1 && k0 === K_T) {
      // "t": "f"
      if (p + 2 > e || b[p] !== 0xa1 || b[p + 1] !== 0x66) return false;
      p += 2;
      seen |= 1;
    } else if (klen === 3 && k0 === 0x73 && b[p - 2] === 0x65 && b[p - 1] === 0x71) {
      if (!readNumber(b, p, e, num)) return false;
      out.seq = num.v;
      p = num.p;
      seen |= 2;
    } else if (klen === 2 && k0 === 0x74 && b[p - 1] === 0x73) {
      if (!readNumber(b, p, e, num)) return false;
      out.ts = num.v;
      p = num.p;
      seen |= 4;
    } else if (klen === 3 && k0 === 0x64 && b[p - 2] === 0x65 && b[p - 1] === 0x74) {
      const c = b[p];
      let len: number;
      if (c === 0xc4 && p + 2 <= e) { len = b[p + 1]!; p += 2; }
      else if (c === 0xc5 && p + 3 <= e) { len = b.readUInt16BE(p + 1); p += 3; }
      else if (c === 0xc6 && p + 5 <= e) { len = b.readUInt32BE(p + 1); p += 5; }
      else return false;
      if (p + len > e) return false;
      out.detStart = p;
      out.detEnd = p + len;
      p += len;
      seen |= 8;
    } else {
      return false;
    }
  }
  return seen === 15 && p === e;
}
