// Small statistics shared by every workload: rounding, medians, percentiles.

export function round(x: number, digits = 0): number {
  if (!Number.isFinite(x)) return x;
  const k = 10 ** digits;
  return Math.round(x * k) / k;
}

/** Median of the finite values (NaN when there are none). */
export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

/** Median of the non-null values, rounded to 4 digits (the workloads' summary of repetitions). */
export const med = (xs: Array<number | null>): number => round(median(xs.filter((x): x is number => x !== null)), 4);

/** The p-quantile (nearest rank below) of unsorted values, NaN when empty. */
export function quantile(xs: ArrayLike<number>, p: number): number {
  if (xs.length === 0) return NaN;
  const v = Float64Array.from(xs).sort();
  return v[Math.min(v.length - 1, Math.floor(p * v.length))]!;
}

/** Percentiles of latency samples taken in `unitMs` (1e-6 for ns), reported in ms; with `countOver2ms`, the samples over 2 ms. */
export function latencyStats(lat: ArrayLike<number>, unitMs = 1e-6, countOver2ms = false) {
  const n = lat.length;
  const over: { over_2ms?: number } = countOver2ms ? { over_2ms: 0 } : {};
  if (n === 0) return { samples: 0, p50_ms: NaN, p90_ms: NaN, p99_ms: NaN, p999_ms: NaN, max_ms: NaN, mean_ms: NaN, ...over };
  const v = Float64Array.from(lat).sort();
  const q = (p: number): number => round(v[Math.min(n - 1, Math.floor(p * n))]! * unitMs, 3);
  let sum = 0;
  let above = 0;
  for (let i = 0; i < n; i++) {
    sum += v[i]!;
    if (v[i]! * unitMs > 2) above++;
  }
  return {
    samples: n, p50_ms: q(0.5), p90_ms: q(0.9), p99_ms: q(0.99), p999_ms: q(0.999), max_ms: round(v[n - 1]! * unitMs, 3),
    mean_ms: round((sum / n) * unitMs, 3), ...(countOver2ms ? { over_2ms: above } : over),
  };
}

/** p50/p99/max/mean of ms samples (NaN when empty). */
export function stats(xs: number[]) {
  const s = latencyStats(xs, 1);
  return { samples: s.samples, p50_ms: s.p50_ms, p99_ms: s.p99_ms, max_ms: s.max_ms, mean_ms: s.mean_ms };
}

export interface Percentiles { n: number; p50: number; p99: number; max: number }

/** n/p50/p99/max of the finite values among the first n, two decimals. */
export function percentiles(xs: Float64Array | number[], n = xs.length): Percentiles {
  const v = Array.from(xs.slice(0, n)).filter((x) => Number.isFinite(x));
  const r = (x: number): number => round(x, 2);
  if (v.length === 0) return { n: 0, p50: NaN, p99: NaN, max: NaN };
  return { n: v.length, p50: r(quantile(v, 0.5)), p99: r(quantile(v, 0.99)), max: r(quantile(v, 1)) };
}

/**
 * The medians of runs of one shape: each numeric leaf (null where missing) becomes the
 * median over the runs (arrays element-wise); any other leaf is taken from the first run.
 */
export function medianTree<T>(xs: T[]): T {
  const vs = xs as unknown[];
  const first = vs[0];
  if (vs.every((x) => typeof x === 'number' || x === null)) return (vs.some((x) => x !== null) ? med(vs as Array<number | null>) : null) as T;
  if (Array.isArray(first) && first.every((x) => typeof x === 'number')) {
    const n = Math.max(...vs.map((a) => (a as number[]).length));
    return Array.from({ length: n }, (_, i) => med(vs.map((a) => (a as number[])[i] ?? null))) as T;
  }
  if (first === null || typeof first !== 'object' || Array.isArray(first)) return first as T;
  return Object.fromEntries(Object.keys(first).map((k) => [k, medianTree(vs.map((x) => (x as Record<string, unknown>)[k]))])) as T;
}

/** A number for the human summaries: grouped digits, '-' when missing. */
export const fmt = (x: number | null | undefined, d = 0): string => (x === null || x === undefined || !Number.isFinite(x)
  ? '-' : x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));
