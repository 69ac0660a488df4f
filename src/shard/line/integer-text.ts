// The value of a JSON integer's text (an optional '-' and at most 15 digits, as the
// scanner found it): exact, since every value below 10^15 is a double. Read in two
// parts that fit 32-bit integers (the last 9 digits, and those before), which the
// JIT keeps in integer registers, instead of a double multiply-add per digit.

/** Value of buf[s, e): '-'? followed by 1-15 ASCII digits (the caller checked). */
export function integerText(buf: Uint8Array, s: number, e: number): number {
  let i = s;
  const neg = buf[i] === 0x2d;
  if (neg) i++;
  const split = e - 9 > i ? e - 9 : i;
  let hi = 0;
  for (; i < split; i++) hi = (hi * 10 + (buf[i]! - 0x30)) | 0;
  let lo = 0;
  for (; i < e; i++) lo = (lo * 10 + (buf[i]! - 0x30)) | 0;
  const v = hi * 1e9 + lo;
  return neg ? -v : v;
}
