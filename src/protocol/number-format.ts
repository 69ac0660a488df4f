// Number -> JSON text, exactly as String(x) prints it, faster for the values nodes
// send (a few decimals: 40.46, -27.99, 12.08). The shard renders packed float64
// detections as retina JSON for trackers; String(double) (~110 ns) was most of that
// (~26 us for a 50-detection frame).
//
// Fast path: the first k in 0..6 for which round(|x| * 10^k) / 10^k === |x| gives
// a decimal with k places that parses back to x. With at most 15 significant
// digits the decimal -> double mapping is one to one, so that decimal is the
// shortest round-trip form, which is what String() prints (for 1e-6 <= |x| < 1e15,
// where String() uses no exponent). Anything else falls back to String().

const POW10 = [1, 10, 100, 1e3, 1e4, 1e5, 1e6];
const MAX_DIGITS_VALUE = 1e15; // m below this has at most 15 digits

export function formatNumber(x: number): string {
  const a = x < 0 ? -x : x;
  if (a >= 1e-6 && a < 1e15) {
    for (let k = 0; k <= 6; k++) {
      const p = POW10[k]!;
      const m = Math.round(a * p);
      if (m >= MAX_DIGITS_VALUE) break;
      if (m / p === a) {
        let s = String(m);
        if (k > 0) {
          if (s.length <= k) s = '0'.repeat(k - s.length + 1) + s;
          s = `${s.slice(0, s.length - k)}.${s.slice(s.length - k)}`;
        }
        return x < 0 ? `-${s}` : s;
      }
    }
  }
  return String(x);
}
