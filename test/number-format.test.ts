// formatNumber: the fast JSON rendering of detection values must print exactly what String() prints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatNumber } from '../src/protocol/number-format.js';
import { mulberry32 } from './prng.js';

test('edge values print as String() prints them', () => {
  const xs = [0, -0, 1, -1, 0.1, 0.2, 0.30000000000000004, 1e-6, 1.5e-6, 9.99e-7, 1e-7, 123456.123456, 1e14, 999999999999999, 1e15, 1e21,
    Number.MAX_SAFE_INTEGER, Number.MIN_VALUE, Number.MAX_VALUE, 40.46, -27.99, 12.08, 20.740000000000002, 0.000123, 5e-324,
    Number.EPSILON, 1 / 3, -2 / 3, 2 ** 52 + 0.5, 4503599627370495.5, 1e-5, 100, 1234567.0000001, NaN, Infinity, -Infinity];
  for (const x of xs) assert.equal(formatNumber(x), String(x), `value ${x}`);
});

test('500,000 seeded values of every shape print as String() prints them', () => {
  const rnd = mulberry32(20261123);
  const gens: Array<() => number> = [
    () => Math.round((rnd() * 800 - 400) * 100) / 100, // two decimals (what nodes send)
    () => Math.round((rnd() * 2e6 - 1e6) * 1e3) / 1e3,
    () => (rnd() - 0.5) * 1e3, // full precision
    () => rnd() * 1e-5,
    () => Math.round(rnd() * 1e6) / 1e6,
    () => Math.round(rnd() * 1e12),
    () => 20 + Math.floor(rnd() * 400) * 0.37, // float arithmetic residue
    () => (rnd() * 2 - 1) * 10 ** Math.floor(rnd() * 40 - 15),
    () => Math.round(rnd() * 1e15) / 10 ** Math.floor(rnd() * 7), // up to 16 digits with decimals
  ];
  for (let i = 0; i < 500_000; i++) {
    const x = gens[i % gens.length]!();
    const got = formatNumber(x);
    if (got !== String(x)) assert.fail(`value ${x}: got ${got}, String() gives ${String(x)} (case ${i})`);
  }
});
