// The line scanner as it was before its word-wise shortcuts and the remembered head
// (byte by byte throughout): the oracle of test/scan-differential.test.ts. The fast
// scanner must give exactly its results, errors and byte positions for any input.
// Keep it as it is: it is the definition the shortcuts are checked against.

export const T_NONE = 0;
export const T_STRING = 1;
export const T_NUMBER = 2;
export const T_ARRAY = 3;
export const T_OBJECT = 4;
export const T_BOOL = 5;
export const T_NULL = 6;

export const SCAN_OK = 0;
export const SCAN_MALFORMED = 1;
export const SCAN_INVALID_UTF8 = 2;

/** Deepest nesting accepted (adsb entries are objects inside an array inside the frame). */
export const MAX_DEPTH = 32;
/** Top-level members kept verbatim for the tracker; more than this is malformed. */
export const MAX_MEMBERS = 64;

// Known top-level keys.
export const K_OTHER = 0;
export const K_NODE_ID = 1;
export const K_TOKEN = 2;
export const K_TYPE = 3;
export const K_TIMESTAMP = 4;
export const K_DELAY = 5;
export const K_DOPPLER = 6;
export const K_SNR = 7;
export const K_ADSB = 8;
const N_KEYS = 9;

/** Per-known-key facts about the value. Index by K_*. */
export class LineScan {
  error = SCAN_OK;
  errorMessage = '';
  duplicateKey = false;
  /** Value type per known key (T_NONE when absent). */
  readonly type = new Uint8Array(N_KEYS);
  /** Value span per known key; for strings the span is inside the quotes. */
  readonly start = new Int32Array(N_KEYS);
  readonly end = new Int32Array(N_KEYS);
  /** Strings: 1 when the value has escapes (decode with JSON.parse). */
  readonly escaped = new Uint8Array(N_KEYS);
  /** Arrays: element count. Numbers: 1 when integral (no fraction or exponent). */
  readonly count = new Int32Array(N_KEYS);
  /** Arrays: 1 when every element is a number (or null/object for adsb). */
  readonly uniform = new Uint8Array(N_KEYS);
  /** Spans [keyStart, valueEnd) of members kept for the tracker, merged when adjacent. */
  readonly keptStart = new Int32Array(MAX_MEMBERS);
  readonly keptEnd = new Int32Array(MAX_MEMBERS);
  keptCount = 0;
}

const KEY_NAMES: ReadonlyMap<string, number> = new Map([
  ['node_id', K_NODE_ID], ['token', K_TOKEN], ['type', K_TYPE], ['timestamp', K_TIMESTAMP],
  ['delay', K_DELAY], ['doppler', K_DOPPLER], ['snr', K_SNR], ['adsb', K_ADSB],
]);
const keyDecoder = new TextDecoder();

/**
 * Known top-level key of the quoted key b[s, e) that contains escapes (rare: the
 * slow path). Every JSON parser downstream reads "time\u0073tamp" as "timestamp",
 * so it must count as that key (a second one is a duplicate).
 */
function matchEscapedKey(b: Uint8Array, s: number, e: number): number {
  const name = JSON.parse(keyDecoder.decode(b.subarray(s, e))) as string;
  return KEY_NAMES.get(name) ?? K_OTHER;
}

/** Known top-level key of b[s, e), by length and bytes (called once per member; no loops). */
function matchKey(b: Uint8Array, s: number, e: number): number {
  const c = b[s];
  switch (e - s) {
    case 3: // snr
      return c === 0x73 && b[s + 1] === 0x6e && b[s + 2] === 0x72 ? K_SNR : K_OTHER;
    case 4:
      if (c === 0x74) return b[s + 1] === 0x79 && b[s + 2] === 0x70 && b[s + 3] === 0x65 ? K_TYPE : K_OTHER; // type
      return c === 0x61 && b[s + 1] === 0x64 && b[s + 2] === 0x73 && b[s + 3] === 0x62 ? K_ADSB : K_OTHER; // adsb
    case 5:
      if (c === 0x64) return b[s + 1] === 0x65 && b[s + 2] === 0x6c && b[s + 3] === 0x61 && b[s + 4] === 0x79 ? K_DELAY : K_OTHER; // delay
      return c === 0x74 && b[s + 1] === 0x6f && b[s + 2] === 0x6b && b[s + 3] === 0x65 && b[s + 4] === 0x6e ? K_TOKEN : K_OTHER; // token
    case 7:
      if (c === 0x6e) { // node_id
        return b[s + 1] === 0x6f && b[s + 2] === 0x64 && b[s + 3] === 0x65 && b[s + 4] === 0x5f && b[s + 5] === 0x69 && b[s + 6] === 0x64 ? K_NODE_ID : K_OTHER;
      }
      return c === 0x64 && b[s + 1] === 0x6f && b[s + 2] === 0x70 && b[s + 3] === 0x70 && b[s + 4] === 0x6c && b[s + 5] === 0x65 && b[s + 6] === 0x72 ? K_DOPPLER : K_OTHER; // doppler
    case 9: // timestamp
      return c === 0x74 && b[s + 1] === 0x69 && b[s + 2] === 0x6d && b[s + 3] === 0x65 && b[s + 4] === 0x73
        && b[s + 5] === 0x74 && b[s + 6] === 0x61 && b[s + 7] === 0x6d && b[s + 8] === 0x70 ? K_TIMESTAMP : K_OTHER;
    default:
      return K_OTHER;
  }
}

// The scanner works on locals: every helper takes (bytes, position, end) and
// returns the position after what it consumed, or -1 on error (details in ERR*).
// Module state is written only on errors and once per value, never per byte.
let ERR = SCAN_OK;
let ERR_MSG = '';
let ESCAPED = 0; // the last string scanned had an escape
let VTYPE = T_NONE; // type of the last value scanned by value()
let ACOUNT = 0; // element count of the last array
let AUNIFORM = 1; // the last array's elements matched `want`
let NUM_BIG = 0; // the last number has an exponent or over 300 integer digits: it may overflow to Infinity
let NUM_FRAC = 0; // a number since the last reset had a fraction or an exponent (reset before each member's value)

function fail(code: number, msg: string, at: number): number {
  if (ERR === SCAN_OK) {
    ERR = code;
    ERR_MSG = `${msg} at byte ${at}`;
  }
  return -1;
}

function ws(b: Uint8Array, p: number, e: number): number {
  while (p < e) {
    const c = b[p]!;
    // Compact JSON has no whitespace: one comparison for every other byte.
    if (c > 0x20) break;
    if (c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a) p++;
    else break;
  }
  return p;
}

/** Bytes that end the plain-ASCII run of a string: '"', '\\', control characters, and non-ASCII (UTF-8 to check). */
const STR_STOP = new Uint8Array(256);
for (let c = 0; c < 256; c++) STR_STOP[c] = c === 0x22 || c === 0x5c || c < 0x20 || c >= 0x80 ? 1 : 0;

function hex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** At the opening quote; returns the position after the closing quote. */
function str(b: Uint8Array, p: number, e: number): number {
  p++;
  ESCAPED = 0;
  // Fast path: plain ASCII, one table look-up a byte.
  while (p < e) {
    const c = b[p]!;
    if (STR_STOP[c] === 0) {
      p++;
      continue;
    }
    if (c === 0x22) return p + 1;
    return strSlow(b, p, e);
  }
  return fail(SCAN_MALFORMED, 'unterminated string', p);
}

function strSlow(b: Uint8Array, p: number, e: number): number {
  while (p < e) {
    const c = b[p]!;
    if (c === 0x22) return p + 1;
    if (c === 0x5c) {
      ESCAPED = 1;
      if (p + 1 >= e) return fail(SCAN_MALFORMED, 'bad escape', p);
      const d = b[p + 1]!;
      if (d === 0x75) {
        if (p + 5 >= e || !hex(b[p + 2]!) || !hex(b[p + 3]!) || !hex(b[p + 4]!) || !hex(b[p + 5]!)) return fail(SCAN_MALFORMED, 'bad \\u escape', p);
        p += 6;
      } else if (d === 0x22 || d === 0x5c || d === 0x2f || d === 0x62 || d === 0x66 || d === 0x6e || d === 0x72 || d === 0x74) {
        p += 2;
      } else {
        return fail(SCAN_MALFORMED, 'bad escape', p);
      }
    } else if (c < 0x20) {
      return fail(SCAN_MALFORMED, 'control character in string', p);
    } else if (c < 0x80) {
      p++;
    } else {
      p = utf8(b, p, e);
      if (p < 0) return -1;
    }
  }
  return fail(SCAN_MALFORMED, 'unterminated string', p);
}

/** One multi-byte UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
function utf8(b: Uint8Array, p: number, e: number): number {
  const c = b[p]!;
  let n: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) n = 1;
  else if (c >= 0xe0 && c <= 0xef) {
    n = 2;
    if (c === 0xe0) lo = 0xa0;
    else if (c === 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 3;
    if (c === 0xf0) lo = 0x90;
    else if (c === 0xf4) hi = 0x8f;
  } else {
    return fail(SCAN_INVALID_UTF8, 'invalid UTF-8', p);
  }
  if (p + n >= e) return fail(SCAN_INVALID_UTF8, 'invalid UTF-8', p); // truncated sequence
  const c1 = b[p + 1]!;
  if (c1 < lo || c1 > hi) return fail(SCAN_INVALID_UTF8, 'invalid UTF-8', p);
  for (let i = 2; i <= n; i++) {
    const ci = b[p + i]!;
    if (ci < 0x80 || ci > 0xbf) return fail(SCAN_INVALID_UTF8, 'invalid UTF-8', p);
  }
  return p + n + 1;
}

/** A JSON number at p; returns the position after it. */
function num(b: Uint8Array, p: number, e: number): number {
  const s = p;
  if (p < e && b[p] === 0x2d) p++;
  if (p >= e) return fail(SCAN_MALFORMED, 'bad number', s);
  let c = b[p]!;
  if (c === 0x30) {
    p++;
  } else if (c >= 0x31 && c <= 0x39) {
    const d = p++;
    while (p < e && (c = b[p]!) >= 0x30 && c <= 0x39) p++;
    if (p - d > 300) NUM_BIG = 1;
  } else {
    return fail(SCAN_MALFORMED, 'bad number', s);
  }
  if (p < e && b[p] === 0x2e) {
    NUM_FRAC = 1;
    p++;
    const d = p;
    while (p < e && (c = b[p]!) >= 0x30 && c <= 0x39) p++;
    if (p === d) return fail(SCAN_MALFORMED, 'bad number', s);
  }
  if (p < e && ((c = b[p]!) === 0x65 || c === 0x45)) {
    NUM_BIG = 1;
    NUM_FRAC = 1;
    p++;
    if (p < e && ((c = b[p]!) === 0x2b || c === 0x2d)) p++;
    const d = p;
    while (p < e && (c = b[p]!) >= 0x30 && c <= 0x39) p++;
    if (p === d) return fail(SCAN_MALFORMED, 'bad number', s);
  }
  return p;
}

function lit(b: Uint8Array, p: number, e: number, word: Uint8Array): number {
  if (p + word.length > e) return fail(SCAN_MALFORMED, 'unexpected token', p);
  for (let i = 0; i < word.length; i++) if (b[p + i] !== word[i]) return fail(SCAN_MALFORMED, 'unexpected token', p);
  return p + word.length;
}
const TRUE = Buffer.from('true');
const FALSE = Buffer.from('false');

/**
 * Any JSON value at p; sets VTYPE. `want` selects the uniformity test for arrays:
 * 1 = all numbers, 2 = all null-or-object, 0 = none.
 */
function value(b: Uint8Array, p: number, e: number, depth: number, want: number): number {
  if (p >= e) return fail(SCAN_MALFORMED, 'unexpected end', p);
  const c = b[p]!;
  if (c === 0x22) {
    VTYPE = T_STRING;
    return str(b, p, e);
  }
  if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
    VTYPE = T_NUMBER;
    return num(b, p, e);
  }
  if (c === 0x5b) {
    VTYPE = T_ARRAY;
    return want === 1 ? numArr(b, p, e, depth) : arr(b, p, e, depth, want);
  }
  if (c === 0x7b) {
    VTYPE = T_OBJECT;
    return obj(b, p, e, depth);
  }
  if (c === 0x74) {
    VTYPE = T_BOOL;
    return lit(b, p, e, TRUE);
  }
  if (c === 0x66) {
    VTYPE = T_BOOL;
    return lit(b, p, e, FALSE);
  }
  if (c === 0x6e) {
    VTYPE = T_NULL;
    // adsb entries are mostly null: the literal checked in place.
    return p + 4 <= e && b[p + 1] === 0x75 && b[p + 2] === 0x6c && b[p + 3] === 0x6c ? p + 4 : fail(SCAN_MALFORMED, 'unexpected token', p);
  }
  return fail(SCAN_MALFORMED, 'unexpected character', p);
}

/** Arrays expected to hold numbers (delay, doppler, snr): numbers inline, anything else via value(). */
function numArr(b: Uint8Array, p: number, e: number, depth: number): number {
  if (depth >= MAX_DEPTH) return fail(SCAN_MALFORMED, 'nesting too deep', p);
  p = ws(b, p + 1, e);
  let count = 0;
  let uniform = 1;
  if (p < e && b[p] === 0x5d) {
    ACOUNT = 0;
    AUNIFORM = 1;
    return p + 1;
  }
  for (;;) {
    if (p >= e) return fail(SCAN_MALFORMED, 'unterminated array', p);
    const c = b[p]!;
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      const s = p;
      p = num(b, p, e);
      // "1e999" is valid JSON but Infinity once parsed: not a detection value.
      if (NUM_BIG === 1) {
        NUM_BIG = 0;
        if (p > 0 && !Number.isFinite(Number(keyDecoder.decode(b.subarray(s, p))))) uniform = 0;
      }
    } else {
      p = value(b, p, e, depth + 1, 0);
      uniform = 0;
    }
    if (p < 0) return -1;
    count++;
    let d = p < e ? b[p]! : 0;
    if (d === 0x20 || d === 0x09 || d === 0x0d || d === 0x0a) {
      p = ws(b, p, e);
      d = p < e ? b[p]! : 0;
    }
    p++;
    if (d === 0x2c) {
      p = ws(b, p, e);
      continue;
    }
    if (d === 0x5d) break;
    return fail(SCAN_MALFORMED, "expected ',' or ']'", p - 1);
  }
  ACOUNT = count;
  AUNIFORM = uniform;
  VTYPE = T_ARRAY;
  return p;
}

function arr(b: Uint8Array, p: number, e: number, depth: number, want: number): number {
  if (depth >= MAX_DEPTH) return fail(SCAN_MALFORMED, 'nesting too deep', p);
  p = ws(b, p + 1, e);
  let count = 0;
  let uniform = 1;
  if (p < e && b[p] === 0x5d) {
    ACOUNT = 0;
    AUNIFORM = 1;
    VTYPE = T_ARRAY;
    return p + 1;
  }
  for (;;) {
    p = value(b, ws(b, p, e), e, depth + 1, 0);
    if (p < 0) return -1;
    count++;
    if (want === 2 && VTYPE !== T_NULL && VTYPE !== T_OBJECT) uniform = 0;
    p = ws(b, p, e);
    if (p >= e) return fail(SCAN_MALFORMED, 'unterminated array', p);
    const c = b[p++]!;
    if (c === 0x2c) continue;
    if (c === 0x5d) break;
    return fail(SCAN_MALFORMED, "expected ',' or ']'", p - 1);
  }
  ACOUNT = count;
  AUNIFORM = uniform;
  VTYPE = T_ARRAY;
  return p;
}

function obj(b: Uint8Array, p: number, e: number, depth: number): number {
  if (depth >= MAX_DEPTH) return fail(SCAN_MALFORMED, 'nesting too deep', p);
  p = ws(b, p + 1, e);
  if (p < e && b[p] === 0x7d) {
    VTYPE = T_OBJECT;
    return p + 1;
  }
  for (;;) {
    p = ws(b, p, e);
    if (p >= e || b[p] !== 0x22) return fail(SCAN_MALFORMED, 'expected a string key', p);
    p = str(b, p, e);
    if (p < 0) return -1;
    p = ws(b, p, e);
    if (p >= e || b[p] !== 0x3a) return fail(SCAN_MALFORMED, "expected ':'", p);
    p = value(b, ws(b, p + 1, e), e, depth + 1, 0);
    if (p < 0) return -1;
    p = ws(b, p, e);
    if (p >= e) return fail(SCAN_MALFORMED, 'unterminated object', p);
    const c = b[p++]!;
    if (c === 0x2c) continue;
    if (c === 0x7d) break;
    return fail(SCAN_MALFORMED, "expected ',' or '}'", p - 1);
  }
  VTYPE = T_OBJECT;
  return p;
}

/**
 * Scans b[start, end) (one line without its newline). Returns out.error
 * (SCAN_OK when the line is one valid JSON object).
 */
export function scanLine(b: Uint8Array, start: number, end: number, out: LineScan): number {
  ERR = SCAN_OK;
  ERR_MSG = '';
  const ty = out.type;
  ty[0] = ty[1] = ty[2] = ty[3] = ty[4] = ty[5] = ty[6] = ty[7] = ty[8] = T_NONE;
  out.keptCount = 0;
  out.duplicateKey = false;
  const e = end;
  let keptOpen = false;
  let p = ws(b, start, e);
  if (p >= e || b[p] !== 0x7b) {
    fail(SCAN_MALFORMED, 'expected a JSON object', p);
    return finish(out);
  }
  p = ws(b, p + 1, e);
  if (p < e && b[p] === 0x7d) {
    p++;
  } else {
    for (;;) {
      p = ws(b, p, e);
      if (p >= e || b[p] !== 0x22) {
        fail(SCAN_MALFORMED, 'expected a string key', p);
        break;
      }
      const ks = p;
      p = str(b, p, e);
      if (p < 0) break;
      const key = ESCAPED ? matchEscapedKey(b, ks, p) : matchKey(b, ks + 1, p - 1);
      p = ws(b, p, e);
      if (p >= e || b[p] !== 0x3a) {
        fail(SCAN_MALFORMED, "expected ':'", p);
        break;
      }
      const vs = ws(b, p + 1, e);
      const want = key === K_DELAY || key === K_DOPPLER || key === K_SNR ? 1 : key === K_ADSB ? 2 : 0;
      NUM_FRAC = 0;
      p = value(b, vs, e, 1, want);
      if (p < 0) break;
      const ve = p;
      if (key !== K_OTHER) {
        const t = VTYPE;
        if (out.type[key] !== T_NONE) out.duplicateKey = true;
        out.type[key] = t;
        if (t === T_STRING) {
          out.start[key] = vs + 1;
          out.end[key] = ve - 1;
          out.escaped[key] = ESCAPED;
        } else {
          out.start[key] = vs;
          out.end[key] = ve;
          if (t === T_ARRAY) {
            out.count[key] = ACOUNT;
            out.uniform[key] = AUNIFORM;
          } else if (t === T_NUMBER) {
            out.count[key] = 1 - NUM_FRAC;
          }
        }
      }
      if (key === K_NODE_ID || key === K_TOKEN || key === K_TYPE) {
        keptOpen = false;
      } else if (keptOpen) {
        out.keptEnd[out.keptCount - 1] = ve; // adjacent kept members share one span
      } else {
        if (out.keptCount === MAX_MEMBERS) {
          fail(SCAN_MALFORMED, 'too many members', ks);
          break;
        }
        out.keptStart[out.keptCount] = ks;
        out.keptEnd[out.keptCount] = ve;
        out.keptCount++;
        keptOpen = true;
      }
      p = ws(b, p, e);
      if (p >= e) {
        fail(SCAN_MALFORMED, 'unterminated object', p);
        break;
      }
      const c = b[p++]!;
      if (c === 0x2c) continue;
      if (c === 0x7d) break;
      fail(SCAN_MALFORMED, "expected ',' or '}'", p - 1);
      break;
    }
  }
  if (ERR === SCAN_OK) {
    p = ws(b, p, e);
    if (p < e) fail(SCAN_MALFORMED, 'trailing characters after the object', p);
  }
  return finish(out);
}

function finish(out: LineScan): number {
  out.error = ERR;
  out.errorMessage = ERR_MSG;
  return ERR;
}
