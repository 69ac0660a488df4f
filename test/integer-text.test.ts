// integerText: a line frame's integer timestamp read from its digits gives exactly
// what Number() gives for the same text (the value the ring record carries).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { integerText } from '../src/shard/line/integer-text.js';
import { mulberry32 } from './prng.js';

test('integer text: every length from 1 to 15 characters, signed or not, anywhere in a buffer, equals Number()', () => {
  const rnd = mulberry32(0x7157);
  const texts = ['0', '-0', '9', '-9', '999999999', '1000000000', '-1000000000', '999999999999999', '-99999999999999', '100000000000000', '1757400000000', '2147483648', '4294967296'];
  for (let k = 0; k < 20000; k++) {
    const neg = rnd() < 0.3;
    const digits = 1 + Math.floor(rnd() * (neg ? 14 : 15));
    let t = String(1 + Math.floor(rnd() * 9));
    for (let i = 1; i < digits; i++) t += String(Math.floor(rnd() * 10));
    texts.push(neg ? `-${t}` : t);
  }
  for (const t of texts) {
    const at = t.length % 7;
    const buf = Buffer.from(`${' '.repeat(at)}${t},1`);
    const got = integerText(buf, at, at + t.length);
    assert.ok(Object.is(got, Number(t)), `${t}: ${got}`);
  }
});
