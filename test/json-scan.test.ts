// scanLine: the byte-level validating JSON scanner for line-protocol messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  scanLine, LineScan, SCAN_OK, SCAN_MALFORMED, SCAN_INVALID_UTF8, MAX_DEPTH,
  T_NONE, T_STRING, T_NUMBER, T_ARRAY, T_OBJECT, T_BOOL, T_NULL,
  K_NODE_ID, K_TOKEN, K_TYPE, K_TIMESTAMP, K_DELAY, K_DOPPLER, K_SNR, K_ADSB,
} from '../src/shard/line/json-scan.js';
import { mulberry32 } from './prng.js';

const KEY_NAMES: [number, string][] = [
  [K_NODE_ID, 'node_id'], [K_TOKEN, 'token'], [K_TYPE, 'type'], [K_TIMESTAMP, 'timestamp'],
  [K_DELAY, 'delay'], [K_DOPPLER, 'doppler'], [K_SNR, 'snr'], [K_ADSB, 'adsb'],
];
const DROPPED = ['node_id', 'token', 'type'];

function scan(text: string | Buffer, out = new LineScan()): LineScan {
  const b = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  scanLine(b, 0, b.length, out);
  return out;
}

function span(b: Buffer, s: number, e: number): string {
  return b.subarray(s, e).toString('utf8');
}

/** '{' + kept spans joined with ',' + '}': what the shard writes for the tracker. */
function keptJson(b: Buffer, r: LineScan): string {
  const parts: string[] = [];
  for (let i = 0; i < r.keptCount; i++) parts.push(span(b, r.keptStart[i]!, r.keptEnd[i]!));
  return `{${parts.join(',')}}`;
}

function withoutDropped(o: Record<string, unknown>): Record<string, unknown> {
  const c = { ...o };
  for (const k of DROPPED) delete c[k];
  return c;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const EXAMPLE = '{"node_id":"node-1","token":"shared-secret","timestamp":1757400000000,"delay":[40.46,120.3],"doppler":[-27.99,88.1],"snr":[12.08,7.2],"adsb":[null,null]}';

test('the retina example line: every field', () => {
  const b = Buffer.from(EXAMPLE);
  const r = scan(b);
  assert.equal(r.error, SCAN_OK, r.errorMessage);
  assert.equal(r.duplicateKey, false);
  assert.equal(r.type[K_NODE_ID], T_STRING);
  assert.equal(span(b, r.start[K_NODE_ID]!, r.end[K_NODE_ID]!), 'node-1');
  assert.equal(r.escaped[K_NODE_ID], 0);
  assert.equal(r.type[K_TOKEN], T_STRING);
  assert.equal(span(b, r.start[K_TOKEN]!, r.end[K_TOKEN]!), 'shared-secret');
  assert.equal(r.escaped[K_TOKEN], 0);
  assert.equal(r.type[K_TYPE], T_NONE);
  assert.equal(r.type[K_TIMESTAMP], T_NUMBER);
  assert.equal(span(b, r.start[K_TIMESTAMP]!, r.end[K_TIMESTAMP]!), '1757400000000');
  assert.equal(r.count[K_TIMESTAMP], 1, 'integral');
  const arrays: [number, string][] = [[K_DELAY, '[40.46,120.3]'], [K_DOPPLER, '[-27.99,88.1]'], [K_SNR, '[12.08,7.2]'], [K_ADSB, '[null,null]']];
  for (const [k, text] of arrays) {
    assert.equal(r.type[k], T_ARRAY, `type ${k}`);
    assert.equal(span(b, r.start[k]!, r.end[k]!), text);
    assert.equal(r.count[k], 2, `count ${k}`);
    assert.equal(r.uniform[k], 1, `uniform ${k}`);
  }
  assert.equal(r.keptCount, 1);
  assert.equal(span(b, r.keptStart[0]!, r.keptEnd[0]!),
    '"timestamp":1757400000000,"delay":[40.46,120.3],"doppler":[-27.99,88.1],"snr":[12.08,7.2],"adsb":[null,null]');
  assert.deepEqual(JSON.parse(keptJson(b, r)), withoutDropped(JSON.parse(EXAMPLE)));
});

test('spans are absolute offsets inside a larger buffer, and end is respected', () => {
  const prefix = 'garbage{"x":';
  const b = Buffer.from(`${prefix}${EXAMPLE}}}}]`);
  const r = new LineScan();
  assert.equal(scanLine(b, prefix.length, prefix.length + EXAMPLE.length, r), SCAN_OK, r.errorMessage);
  assert.equal(span(b, r.start[K_NODE_ID]!, r.end[K_NODE_ID]!), 'node-1');
  assert.equal(r.start[K_NODE_ID], prefix.length + EXAMPLE.indexOf('node-1'));
  assert.deepEqual(JSON.parse(keptJson(b, r)), withoutDropped(JSON.parse(EXAMPLE)));
  // A truncated line must not be completed by bytes past `end`.
  for (const [head, tail] of [['{"a":-', '1}'], ['{"a":tr', 'ue}'], ['{"a":"x', '"}'], ['{"a":1', '}'], ['{"a":[1', ']}'], ['{"a":1.', '5}'], ['{"a":1e', '5}'], ['{', '}'], ['{"a"', ':1}'], ['{"a":"\\u00', 'e9"}']]) {
    const buf = Buffer.from(head! + tail!);
    assert.equal(scanLine(buf, 0, head!.length, r), SCAN_MALFORMED, `${head} | ${tail}`);
    assert.equal(scanLine(buf, 0, buf.length, r), SCAN_OK, `${head}${tail}`);
  }
});

test('member order variants give correct kept spans', () => {
  const cases: [string, number][] = [
    ['{"timestamp":1,"delay":[1],"doppler":[2],"snr":[3],"token":"t","node_id":"n"}', 1],
    ['{"timestamp":1,"node_id":"n","delay":[1],"doppler":[2],"snr":[3],"token":"t"}', 2],
    ['{"node_id":"n","timestamp":1,"token":"t","delay":[1],"type":"x","snr":[3],"adsb":[null,{"hex":"abc"}]}', 3],
    ['{ "token" : "t" , "timestamp" : 5 ,\t"extra" : {"a":[1,{"b":null}]} , "node_id" : "n" }', 1],
    ['{"node_id":"n","token":"t","type":"heartbeat"}', 0],
    ['{"node_id":"n","token":"t"}', 0],
    ['{}', 0],
    ['{"a":1}', 1],
    ['{"a":1,"node_id":"n","b":2,"token":"t","c":3,"type":"y","d":4}', 4],
  ];
  for (const [text, spans] of cases) {
    const b = Buffer.from(text);
    const r = scan(b);
    assert.equal(r.error, SCAN_OK, `${text}: ${r.errorMessage}`);
    assert.equal(r.keptCount, spans, text);
    assert.deepEqual(JSON.parse(keptJson(b, r)), withoutDropped(JSON.parse(text)), text);
    for (let i = 0; i < r.keptCount; i++) {
      assert.equal(b[r.keptStart[i]!], 0x22, 'a kept span starts at a key quote');
    }
  }
});

test('value facts: types, counts, integral numbers, uniformity', () => {
  const text = '{"timestamp":1.5,"delay":[],"doppler":[1,"x"],"snr":[1,2,3e2],"adsb":[null,{"hex":"a"},1],"type":true,"token":null,"node_id":{"a":1}}';
  const b = Buffer.from(text);
  const r = scan(b);
  assert.equal(r.error, SCAN_OK, r.errorMessage);
  assert.equal(r.type[K_TIMESTAMP], T_NUMBER);
  assert.equal(r.count[K_TIMESTAMP], 0, '1.5 is not integral');
  assert.equal(r.type[K_DELAY], T_ARRAY);
  assert.equal(r.count[K_DELAY], 0);
  assert.equal(r.uniform[K_DELAY], 1);
  assert.equal(r.count[K_DOPPLER], 2);
  assert.equal(r.uniform[K_DOPPLER], 0);
  assert.equal(r.count[K_SNR], 3);
  assert.equal(r.uniform[K_SNR], 1);
  assert.equal(r.count[K_ADSB], 3);
  assert.equal(r.uniform[K_ADSB], 0);
  assert.equal(r.type[K_TYPE], T_BOOL);
  assert.equal(r.type[K_TOKEN], T_NULL);
  assert.equal(r.type[K_NODE_ID], T_OBJECT);
  for (const [num, integral] of [['0', 1], ['-0', 1], ['1757400000000', 1], ['1e5', 0], ['1E+5', 0], ['-2.0', 0], ['12e-1', 0]] as const) {
    const s = scan(`{"timestamp":${num}}`);
    assert.equal(s.error, SCAN_OK, num);
    assert.equal(s.count[K_TIMESTAMP], integral, num);
  }
  const adsb = scan('{"adsb":[null,{"hex":"abc","lat":1.5,"lon":2,"alt_baro":1000,"gs":300,"track":90},{}]}');
  assert.equal(adsb.uniform[K_ADSB], 1);
  assert.equal(adsb.count[K_ADSB], 3);
  const notUniform = scan('{"adsb":[null,[]]}');
  assert.equal(notUniform.uniform[K_ADSB], 0);
  const nested = scan('{"delay":[[1],2]}');
  assert.equal(nested.uniform[K_DELAY], 0);
  assert.equal(nested.count[K_DELAY], 2);
  const esc = Buffer.from('{"node_id":"a\\"b","token":"t\\u00e9"}');
  const e = scan(esc);
  assert.equal(e.error, SCAN_OK);
  assert.equal(e.escaped[K_NODE_ID], 1);
  assert.equal(e.escaped[K_TOKEN], 1);
  assert.equal(JSON.parse(`"${span(esc, e.start[K_NODE_ID]!, e.end[K_NODE_ID]!)}"`), 'a"b');
  assert.equal(JSON.parse(`"${span(esc, e.start[K_TOKEN]!, e.end[K_TOKEN]!)}"`), 'té');
});

test('a LineScan is reset between lines', () => {
  const r = new LineScan();
  scan('{"timestamp":1,"timestamp":2,"delay":[1]}', r);
  assert.equal(r.duplicateKey, true);
  assert.equal(r.keptCount, 1);
  scan('{"snr":[1]}', r);
  assert.equal(r.error, SCAN_OK);
  assert.equal(r.duplicateKey, false);
  assert.equal(r.type[K_TIMESTAMP], T_NONE);
  assert.equal(r.type[K_DELAY], T_NONE);
  assert.equal(r.type[K_SNR], T_ARRAY);
  assert.equal(r.keptCount, 1);
  scan('{"snr":[1]', r);
  assert.equal(r.error, SCAN_MALFORMED);
  assert.ok(r.errorMessage.length > 0);
  scan('{}', r);
  assert.equal(r.error, SCAN_OK);
  assert.equal(r.errorMessage, '');
});

test('duplicate known keys are flagged, duplicate other keys are not', () => {
  assert.equal(scan('{"token":"a","token":"b"}').duplicateKey, true);
  assert.equal(scan('{"node_id":"a","timestamp":1,"node_id":"b"}').duplicateKey, true);
  assert.equal(scan('{"adsb":[],"adsb":null}').duplicateKey, true);
  assert.equal(scan('{"a":1,"a":2}').duplicateKey, false);
  assert.equal(scan(EXAMPLE).duplicateKey, false);
  const r = scan('{"timestamp":1,"timestamp":2}');
  assert.equal(r.error, SCAN_OK);
  assert.equal(r.duplicateKey, true);
});

test('keys spelled with escapes are the keys every JSON parser reads them as', () => {
  const r = scan('{"time\\u0073tamp":5,"n\\u006fde_id":"a","\\u0064elay":[1]}');
  assert.equal(r.error, SCAN_OK);
  assert.equal(r.type[K_TIMESTAMP], T_NUMBER);
  assert.equal(r.type[K_NODE_ID], T_STRING);
  assert.equal(r.type[K_DELAY], T_ARRAY);
  assert.equal(r.count[K_DELAY], 1);
  assert.equal(r.duplicateKey, false);
  // A second timestamp hidden behind escapes is a duplicate.
  assert.equal(scan('{"timestamp":1,"time\\u0073tamp":"x"}').duplicateKey, true);
  // An escaped node_id/token is dropped from the kept spans like the plain spelling.
  const b = Buffer.from('{"t\\u006fken":"s","timestamp":1}');
  assert.equal(keptJson(b, scan(b)), '{"timestamp":1}');
});

test('numbers that overflow to Infinity make a detection column non-uniform; large finite ones do not', () => {
  for (const bad of ['1e999', '-1E+400', '9'.repeat(400)]) {
    const r = scan(`{"delay":[1,${bad}]}`);
    assert.equal(r.error, SCAN_OK, bad);
    assert.equal(r.uniform[K_DELAY], 0, bad);
  }
  for (const ok of ['1e308', '-1.7976931348623157e308', '1e-999', '9'.repeat(300), `0.${'9'.repeat(500)}`]) {
    assert.equal(scan(`{"delay":[${ok},2]}`).uniform[K_DELAY], 1, ok);
  }
});

test('control characters in strings are rejected, escaped ones and DEL accepted', () => {
  for (let c = 0; c < 0x20; c++) {
    const b = Buffer.concat([Buffer.from('{"a":"x'), Buffer.from([c]), Buffer.from('y"}')]);
    assert.equal(scan(b).error, SCAN_MALFORMED, `value with 0x${c.toString(16)}`);
    const k = Buffer.concat([Buffer.from('{"a'), Buffer.from([c]), Buffer.from('":1}')]);
    assert.equal(scan(k).error, SCAN_MALFORMED, `key with 0x${c.toString(16)}`);
  }
  assert.equal(scan('{"a":"\\n\\t\\r\\b\\f\\/\\\\\\"\\u0000"}').error, SCAN_OK);
  assert.equal(scan(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0x7f, 0x22, 0x7d])).error, SCAN_OK);
  assert.equal(scan('{"a":"\\x41"}').error, SCAN_MALFORMED);
  assert.equal(scan('{"a":"\\u12"}').error, SCAN_MALFORMED);
  assert.equal(scan('{"a":"\\u12g4"}').error, SCAN_MALFORMED);
});

test('nesting deeper than MAX_DEPTH is malformed, at the limit is fine', () => {
  // The top-level object is one level; MAX_DEPTH - 1 arrays inside it make MAX_DEPTH.
  const ok = `{"a":${'['.repeat(MAX_DEPTH - 1)}${']'.repeat(MAX_DEPTH - 1)}}`;
  assert.equal(scan(ok).error, SCAN_OK, scan(ok).errorMessage);
  const deep = `{"a":${'['.repeat(MAX_DEPTH)}${']'.repeat(MAX_DEPTH)}}`;
  assert.equal(scan(deep).error, SCAN_MALFORMED);
  const okObj = `${'{"a":'.repeat(MAX_DEPTH)}1${'}'.repeat(MAX_DEPTH)}`;
  assert.equal(scan(okObj).error, SCAN_OK, scan(okObj).errorMessage);
  const deepObj = `${'{"a":'.repeat(MAX_DEPTH + 1)}1${'}'.repeat(MAX_DEPTH + 1)}`;
  assert.equal(scan(deepObj).error, SCAN_MALFORMED);
});

test('a 1 MiB line of brackets returns quickly without a stack overflow', () => {
  const n = 1 << 20;
  const lines = [
    Buffer.alloc(n, '['),
    Buffer.concat([Buffer.from('{"a":'), Buffer.alloc(n, '[')]),
    Buffer.from(`{"a":${'{"a":'.repeat(n / 5)}`),
    Buffer.from(`{"a":${'[{"a":'.repeat(n / 6)}`),
  ];
  for (const b of lines) {
    const t0 = performance.now();
    const r = new LineScan();
    assert.equal(scanLine(b, 0, b.length, r), SCAN_MALFORMED);
    const ms = performance.now() - t0;
    assert.ok(ms < 250, `took ${ms.toFixed(1)} ms`);
  }
});

test('numbers: the JSON grammar exactly', () => {
  const good = ['0', '-0', '1', '-1', '10', '1.5', '-0.0', '1e5', '1E5', '1e+5', '1e-5', '0.5e10', '123456789012345678901234567890', '1e400'];
  const bad = ['01', '-01', '1.', '.5', '+1', '-', '1e', '1e+', '1.e5', '0x1', '00', '--1', '1..2', 'NaN', 'Infinity', '-Infinity', '1-', '0.5.5'];
  for (const n of good) assert.equal(scan(`{"a":${n}}`).error, SCAN_OK, n);
  for (const n of bad) assert.equal(scan(`{"a":${n}}`).error, SCAN_MALFORMED, n);
  for (const n of bad) assert.equal(scan(`{"a":[${n}]}`).error, SCAN_MALFORMED, `[${n}]`);
});

test('top level must be one object', () => {
  for (const t of ['', ' ', '[]', '[{}]', '1', '"x"', 'null', '{}{}', '{} x', '{},', '{"a":1}}', '{"a":1,}', '{,"a":1}', '{"a"1}', '{a:1}', "{'a':1}"]) {
    assert.equal(scan(t).error, SCAN_MALFORMED, JSON.stringify(t));
  }
  for (const t of ['{}', ' \t{ }\r\n', '\n{"a":1}\n']) assert.equal(scan(t).error, SCAN_OK, JSON.stringify(t));
});

// ---- UTF-8 at the byte level ----

function inString(bytes: number[]): Buffer {
  return Buffer.concat([Buffer.from('{"node_id":"n","adsb":[{"flight":"A'), Buffer.from(bytes), Buffer.from('Z"}]}')]);
}

test('valid multibyte UTF-8 boundaries are accepted', () => {
  const valid = [
    [0xc2, 0x80], [0xdf, 0xbf], [0xe0, 0xa0, 0x80], [0xe1, 0x80, 0x80], [0xec, 0xbf, 0xbf], [0xed, 0x80, 0x80],
    [0xed, 0x9f, 0xbf], [0xee, 0x80, 0x80], [0xef, 0xbf, 0xbf], [0xf0, 0x90, 0x80, 0x80], [0xf3, 0xbf, 0xbf, 0xbf],
    [0xf4, 0x80, 0x80, 0x80], [0xf4, 0x8f, 0xbf, 0xbf],
  ];
  for (const v of valid) {
    const r = scan(inString(v));
    assert.equal(r.error, SCAN_OK, `${Buffer.from(v).toString('hex')}: ${r.errorMessage}`);
    // Also as a key.
    const k = Buffer.concat([Buffer.from('{"'), Buffer.from(v), Buffer.from('":1}')]);
    assert.equal(scan(k).error, SCAN_OK);
  }
});

test('invalid UTF-8 bytes give SCAN_INVALID_UTF8', () => {
  const invalid = [
    [0xc0, 0x80], [0xc1, 0xbf], // overlong 2-byte
    [0xe0, 0x80, 0x80], [0xe0, 0x9f, 0xbf], // overlong 3-byte
    [0xf0, 0x80, 0x80, 0x80], [0xf0, 0x8f, 0xbf, 0xbf], // overlong 4-byte
    [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xed, 0xb0, 0x80], // surrogates
    [0xf4, 0x90, 0x80, 0x80], [0xf5, 0x80, 0x80, 0x80], [0xf7, 0xbf, 0xbf, 0xbf], [0xf8, 0x88, 0x80, 0x80, 0x80], // > U+10FFFF
    [0xfe], [0xff], [0xfc, 0x84, 0x80, 0x80, 0x80, 0x80],
    [0x80], [0xbf], [0x80, 0x80], [0x41, 0x9f], // lone continuation bytes
    [0xc2], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xe2], [0xf0], // truncated, followed by 'Z'
    [0xc2, 0xc2, 0x80], [0xe2, 0x28, 0xa1], [0xe2, 0x82, 0x28], [0xf0, 0x28, 0x8c, 0xbc], [0xf0, 0x90, 0x28, 0xbc], [0xf0, 0x90, 0x8c, 0x28],
  ];
  for (const v of invalid) {
    const hex = Buffer.from(v).toString('hex');
    assert.throws(() => new TextDecoder('utf-8', { fatal: true }).decode(inString(v)), TypeError, `fixture ${hex} is invalid`);
    assert.equal(scan(inString(v)).error, SCAN_INVALID_UTF8, `value ${hex}`);
    const k = Buffer.concat([Buffer.from('{"k'), Buffer.from(v), Buffer.from('":1}')]);
    assert.equal(scan(k).error, SCAN_INVALID_UTF8, `key ${hex}`);
  }
  // Truncated at the end of the line (the sequence runs into `end`).
  for (const v of [[0xc2], [0xe2, 0x82], [0xf0, 0x9f, 0x98]]) {
    const head = Buffer.concat([Buffer.from('{"a":"'), Buffer.from(v)]);
    const buf = Buffer.concat([head, Buffer.from([0x80, 0x80, 0x80, 0x22, 0x7d])]);
    const r = new LineScan();
    assert.equal(scanLine(buf, 0, head.length, r), SCAN_INVALID_UTF8, Buffer.from(v).toString('hex'));
  }
});

test('random bytes in a string: SCAN_INVALID_UTF8 exactly when a strict UTF-8 decoder rejects them', () => {
  const seed = Number(process.env.JSON_SCAN_UTF8_SEED ?? 0xc0ffee);
  const rnd = mulberry32(seed);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let invalid = 0;
  for (let i = 0; i < 20000; i++) {
    const n = 1 + Math.floor(rnd() * 6);
    const bytes: number[] = [];
    for (let j = 0; j < n; j++) {
      const r = rnd();
      let c = r < 0.15 ? 0x20 + Math.floor(rnd() * 0x60) : r < 0.55 ? 0x80 + Math.floor(rnd() * 0x40) : 0xc0 + Math.floor(rnd() * 0x40);
      if (c === 0x22 || c === 0x5c) c = 0x41;
      bytes.push(c);
    }
    const b = inString(bytes);
    let ok = true;
    try {
      decoder.decode(b);
    } catch {
      ok = false;
    }
    if (!ok) invalid++;
    const got = scan(b).error;
    assert.equal(got, ok ? SCAN_OK : SCAN_INVALID_UTF8, `seed ${seed} case ${i}: bytes ${Buffer.from(bytes).toString('hex')}`);
  }
  assert.ok(invalid > 1000 && invalid < 19000, `both outcomes exercised (${invalid} invalid)`);
});

// ---- Differential test against JSON.parse ----


const TOKENS = [
  '{', '}', '[', ']', ',', ':', '"', '\\', '-', '+', '.', 'e', 'E', '0', '1', '9', ' ', '\t', '\n', '\r',
  '\u0000', '\u0001', '\u001f', '\u007f', 'true', 'false', 'null', 'nul', 'tru', 'fals', '-0', '1e5', '01', '1.', '.5',
  '+1', '-', '1e', '1e+', '0x1', '1.5e-3', '\\u', '\\u12', '\\u00e9', '\\u00E9', '\\ud800', '\\udc00\\ud800', '\\ud83d\\ude00',
  '\\x41', '\\n', '\\/', '\\"', '\\\\', '\\a', 'é', '€', '𝄞', '中', '\ud800', '\udfff', 'NaN', 'Infinity', '[]', '{}', '[1,]',
  '{"a":1}', '""', '"node_id"', '"token":', '"type":"heartbeat"', ',"x":[1,2]', '[[[', ']]]', '{"', '"}', '\u2028', '\ufeff',
];

function pick<T>(rnd: () => number, a: readonly T[]): T {
  return a[Math.floor(rnd() * a.length)]!;
}

function randomString(rnd: () => number): string {
  const alphabet = ['a', 'b', 'Z', '-', '_', ' ', 'é', '✓', '𝄞', '"', '\\', '\n', '\t', '/', '\u0001', '\ud800'];
  let s = '';
  const n = Math.floor(rnd() * 8);
  for (let i = 0; i < n; i++) s += pick(rnd, alphabet);
  return s;
}

function randomNumber(rnd: () => number): number {
  const r = rnd();
  if (r < 0.3) return Math.floor(rnd() * 1000) - 500;
  if (r < 0.6) return (rnd() - 0.5) * 1000;
  if (r < 0.7) return 1757400000000 + Math.floor(rnd() * 1e6);
  if (r < 0.8) return (rnd() - 0.5) * 1e25;
  if (r < 0.9) return rnd() * 1e-10;
  return -0;
}

function randomValue(rnd: () => number, depth: number): unknown {
  const r = rnd();
  if (depth >= 4 || r < 0.35) return randomNumber(rnd);
  if (r < 0.5) return randomString(rnd);
  if (r < 0.55) return rnd() < 0.5;
  if (r < 0.6) return null;
  if (r < 0.8) {
    const a: unknown[] = [];
    const n = Math.floor(rnd() * 4);
    for (let i = 0; i < n; i++) a.push(randomValue(rnd, depth + 1));
    return a;
  }
  const o: Record<string, unknown> = {};
  const n = Math.floor(rnd() * 4);
  for (let i = 0; i < n; i++) o[rnd() < 0.3 ? randomString(rnd) : pick(rnd, ['hex', 'lat', 'lon', 'x', 'node_id', 'delay'])] = randomValue(rnd, depth + 1);
  return o;
}

function randomFrame(rnd: () => number): Record<string, unknown> {
  const r = rnd();
  const n = Math.floor(rnd() * 4);
  const nums = () => Array.from({ length: n }, () => randomNumber(rnd));
  const members: [string, unknown][] = [['node_id', `node-${Math.floor(rnd() * 10)}`], ['token', rnd() < 0.8 ? 'shared-secret' : randomString(rnd)]];
  if (r < 0.15) {
    members.push(['type', 'heartbeat']);
  } else if (r < 0.85) {
    members.push(['timestamp', rnd() < 0.9 ? 1757400000000 + Math.floor(rnd() * 1e6) : randomNumber(rnd)]);
    members.push(['delay', nums()], ['doppler', nums()], ['snr', nums()]);
    if (rnd() < 0.6) {
      members.push(['adsb', Array.from({ length: n }, () => (rnd() < 0.5 ? null
        : { hex: randomString(rnd), lat: randomNumber(rnd), lon: randomNumber(rnd), alt_baro: 1000, gs: 300.5, track: 90, flight: randomString(rnd) }))]);
    }
  } else {
    const k = Math.floor(rnd() * 5);
    for (let i = 0; i < k; i++) members.push([rnd() < 0.5 ? randomString(rnd) : pick(rnd, ['timestamp', 'delay', 'snr', 'adsb', 'extra']), randomValue(rnd, 1)]);
  }
  // Shuffle the member order.
  for (let i = members.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [members[i], members[j]] = [members[j]!, members[i]!];
  }
  const o: Record<string, unknown> = {};
  for (const [k, v] of members) o[k] = v;
  return o;
}

function serialize(rnd: () => number, o: Record<string, unknown>): string {
  let s = JSON.stringify(o);
  if (rnd() < 0.2) {
    // Pretty-print, then vary the whitespace kinds.
    s = JSON.stringify(o, null, 1).replace(/\n/g, () => pick(rnd, [' ', '\t', '\r\n', '\n', '  ']));
  }
  if (rnd() < 0.1) s = ` ${s}\t`;
  return s;
}

function mutate(rnd: () => number, s: string): string {
  const n = rnd() < 0.2 ? 0 : 1 + Math.floor(rnd() * 3);
  for (let m = 0; m < n; m++) {
    const p = Math.floor(rnd() * (s.length + 1));
    const r = rnd();
    if (r < 0.3) s = s.slice(0, p) + pick(rnd, TOKENS) + s.slice(p);
    else if (r < 0.5) s = s.slice(0, p) + s.slice(p + 1 + Math.floor(rnd() * 3));
    else if (r < 0.7) s = s.slice(0, p) + pick(rnd, TOKENS) + s.slice(p + 1);
    else if (r < 0.8) s = s.slice(0, p);
    else if (r < 0.9) {
      const q = Math.floor(rnd() * (s.length + 1));
      s = s.slice(0, p) + s.slice(Math.min(p, q), Math.max(p, q)) + s.slice(p);
    } else {
      const q = Math.floor(rnd() * s.length);
      if (p < s.length && q < s.length) {
        const a = s.split('');
        [a[p], a[q]] = [a[q]!, a[p]!];
        s = a.join('');
      }
    }
  }
  return s;
}

test('differential against JSON.parse: 20,000 mutated frames', () => {
  const seed = Number(process.env.JSON_SCAN_SEED ?? 20250908);
  const rnd = mulberry32(seed);
  const r = new LineScan();
  let accepted = 0;
  for (let i = 0; i < 20000; i++) {
    const src = mutate(rnd, serialize(rnd, randomFrame(rnd)));
    const bytes = Buffer.from(src, 'utf8'); // lone surrogates become U+FFFD: still valid UTF-8
    const text = bytes.toString('utf8');
    let parsed: unknown;
    let parsedOk = false;
    try {
      parsed = JSON.parse(text);
      parsedOk = isPlainObject(parsed);
    } catch {
      parsedOk = false;
    }
    const where = `seed ${seed} case ${i}: ${JSON.stringify(text)}`;
    const got = scanLine(bytes, 0, bytes.length, r);
    assert.equal(got === SCAN_OK, parsedOk, `${where} -> scan ${got} (${r.errorMessage}), JSON.parse ok=${parsedOk}`);
    if (!parsedOk) {
      assert.equal(got, SCAN_MALFORMED, `${where}: valid UTF-8 must not give SCAN_INVALID_UTF8`);
      continue;
    }
    accepted++;
    const obj = parsed as Record<string, unknown>;
    // The kept spans are valid JSON equal to the object minus node_id/token/type.
    let kept: unknown;
    assert.doesNotThrow(() => { kept = JSON.parse(keptJson(bytes, r)); }, where);
    assert.deepEqual(withoutDropped(kept as Record<string, unknown>), withoutDropped(obj), where);
    if (text.includes('\\')) continue; // escaped key spellings are deliberately not matched
    for (const [k, name] of KEY_NAMES) {
      if (!(name in obj)) {
        assert.equal(r.type[k], T_NONE, `${where}: ${name} absent`);
        continue;
      }
      const v = obj[name];
      const s = span(bytes, r.start[k]!, r.end[k]!);
      if (typeof v === 'string') {
        assert.equal(r.type[k], T_STRING, where);
        assert.equal(s, v, where);
      } else {
        assert.deepEqual(JSON.parse(s), v, `${where}: ${name}`);
        assert.equal(r.type[k], typeof v === 'number' ? T_NUMBER : typeof v === 'boolean' ? T_BOOL : v === null ? T_NULL : Array.isArray(v) ? T_ARRAY : T_OBJECT, where);
        if (typeof v === 'number') assert.equal(r.count[k], /[.eE]/.test(s) ? 0 : 1, where);
        if (Array.isArray(v)) {
          assert.equal(r.count[k], v.length, where);
          if (k === K_DELAY || k === K_DOPPLER || k === K_SNR) assert.equal(r.uniform[k], v.every((x) => typeof x === 'number' && Number.isFinite(x)) ? 1 : 0, where);
          if (k === K_ADSB) assert.equal(r.uniform[k], v.every((x) => x === null || isPlainObject(x)) ? 1 : 0, where);
        }
      }
    }
  }
  assert.ok(accepted > 2000 && accepted < 18000, `both outcomes exercised (${accepted} accepted)`);
});
