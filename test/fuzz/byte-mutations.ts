// Raw byte mutations (bit flips, insert/delete, truncation, duplicated chunks, random
// bytes) and random chunk splits of what is fed to the shard.
import { Rand } from './harness.js';

const INTERESTING = [0x0a, 0x0d, 0x7b, 0x7d, 0x22, 0x2c, 0x3a, 0x5b, 0x5d, 0x5c, 0x00, 0xff, 0x80, 0xc0, 0xcf, 0xdd, 0xdf, 0x91];

export function rawMutate(r: Rand, b: Buffer): Buffer {
  let s = Buffer.from(b);
  const ops = r.range(1, 4);
  for (let o = 0; o < ops; o++) {
    const at = r.int(s.length + 1);
    switch (r.int(7)) {
      case 0: // bit flips
        for (let j = r.range(1, 8); j > 0 && s.length > 0; j--) s[r.int(s.length)]! ^= 1 << r.int(8);
        break;
      case 1: { // insert
        const ins = Buffer.from(Array.from({ length: r.range(1, 8) }, () => (r.chance(0.6) ? r.pick(INTERESTING) : r.int(256))));
        s = Buffer.concat([s.subarray(0, at), ins, s.subarray(at)]);
        break;
      }
      case 2: // delete
        s = Buffer.concat([s.subarray(0, at), s.subarray(Math.min(s.length, at + r.range(1, 16)))]);
        break;
      case 3: // truncate
        s = s.subarray(0, at);
        break;
      case 4: { // duplicate a chunk elsewhere
        const a = r.int(s.length + 1);
        const e = Math.min(s.length, a + r.range(1, 512));
        const dst = r.int(s.length + 1);
        s = Buffer.concat([s.subarray(0, dst), s.subarray(a, e), s.subarray(dst)]);
        break;
      }
      case 5: { // overwrite with random bytes
        const n = Math.min(s.length - at, r.range(1, 32));
        if (n > 0) r.bytes(n).copy(s, at);
        break;
      }
      default: { // swap two ranges
        if (s.length > 8) {
          const a = r.int(s.length - 4);
          const c = r.int(s.length - 4);
          const n = Math.min(4, s.length - Math.max(a, c));
          const tmp = Buffer.from(s.subarray(a, a + n));
          s.copy(s, a, c, c + n);
          tmp.copy(s, c);
        }
        break;
      }
    }
  }
  return s;
}

/** Splits a stream as sockets would (one piece, random sizes, single bytes); some pieces are plain Uint8Arrays. */
export function chunk(r: Rand, b: Buffer): Uint8Array[] {
  if (b.length === 0) return [];
  const mode = r.f();
  const out: Uint8Array[] = [];
  const piece = (s: number, e: number): Uint8Array => {
    const v = b.subarray(s, e);
    // A transferred chunk arrives as its own ArrayBuffer, possibly not a Buffer.
    return r.chance(0.3) ? new Uint8Array(v) : v;
  };
  if (mode < 0.3) return [piece(0, b.length)];
  if (mode < 0.4 && b.length <= 400) {
    for (let i = 0; i < b.length; i++) out.push(b.subarray(i, i + 1));
    return out;
  }
  if (mode < 0.75) {
    let p = 0;
    while (p < b.length) {
      const n = r.chance(0.5) && b.length <= 1024 ? r.range(1, 16) : r.chance(0.3) ? r.range(1, 64) : r.range(1, 4096);
      out.push(piece(p, Math.min(b.length, p + n)));
      p += n;
    }
    return out;
  }
  const cuts = Array.from({ length: r.range(1, 8) }, () => r.int(b.length)).sort((x, y) => x - y);
  let p = 0;
  for (const c of [...cuts, b.length]) {
    if (c > p) out.push(piece(p, c));
    p = Math.max(p, c);
  }
  return out;
}
