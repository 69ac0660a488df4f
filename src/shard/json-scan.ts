// A validating JSON scanner for one line-protocol message, working on bytes.
//
// JSON.parse costs ~2 us for a small frame on this machine; this scanner checks the
// full JSON grammar and UTF-8, records where the known top-level members are, and
// lets the shard copy the frame to the ring as raw byte spans (minus node_id, token
// and type) without building objects. It allocates nothing per line.

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

// 'n','o','d','e','_','i','d' etc. as byte arrays for matching.
const KEY_BYTES: [number, Uint8Array][] = [
  [K_NODE_ID, Buffer.from('node_id')],
  [K_TOKEN, Buffer.from('token')],
  [K_TYPE, Buffer.from('type')],
  [K_TIMESTAMP, Buffer.from('timestamp')],
  [K_DELAY, Buffer.from('delay')],
  [K_DOPPLER, Buffer.from('doppler')],
  [K_SNR, Buffer.from('snr')],
  [K_ADSB, Buffer.from('adsb')],
];

function matchKey(b: Uint8Array, s: number, e: number): number {
  const len = e - s;
  for (let k = 0; k < KEY_BYTES.length; k++) {
    const kb = KEY_BYTES[k]![1];
    if (kb.length !== len) continue;
    let i = 0;
    while (i < len && b[s + i] === kb[i]) i++;
    if (i === len) return KEY_BYTES[k]![0];
  }
  return K_OTHER;
}

/** Scanner state lives in module scope: one thread scans one line at a time. */
let B: Uint8Array = new Uint8Array(0);
let P = 0;
let E = 0;
let ERR = SCAN_OK;
let ERR_MSG = '';
let LAST_STRING_ESCAPED = 0;
let LAST_NUMBER_INTEGRAL = 0;
let LAST_ARRAY_COUNT = 0;
let LAST_ARRAY_UNIFORM = 0;

function fail(code: number, msg: string): number {
  if (ERR === SCAN_OK) {
    ERR = code;
    ERR_MSG = `${msg} at byte ${P}`;
  }
  return T_NONE;
}

function ws(): void {
  while (P < E) {
    const c = B[P]!;
    if (c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a) P++;
    else return;
  }
}

function hex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** At the opening quote. Leaves P after the closing quote. */
function str(): number {
  P++;
  let esc = 0;
  while (P < E) {
    const c = B[P]!;
    if (c === 0x22) {
      P++;
      LAST_STRING_ESCAPED = esc;
      return T_STRING;
    }
    if (c === 0x5c) {
      esc = 1;
      if (P + 1 >= E) return fail(SCAN_MALFORMED, 'bad escape');
      const d = B[P + 1];
      if (d === 0x75) {
        if (P + 5 >= E || !hex(B[P + 2]!) || !hex(B[P + 3]!) || !hex(B[P + 4]!) || !hex(B[P + 5]!)) return fail(SCAN_MALFORMED, 'bad \\u escape');
        P += 6;
      } else if (d === 0x22 || d === 0x5c || d === 0x2f || d === 0x62 || d === 0x66 || d === 0x6e || d === 0x72 || d === 0x74) {
        P += 2;
      } else {
        return fail(SCAN_MALFORMED, 'bad escape');
      }
    } else if (c < 0x20) {
      return fail(SCAN_MALFORMED, 'control character in string');
    } else if (c < 0x80) {
      P++;
    } else if (!utf8()) {
      return T_NONE;
    }
  }
  return fail(SCAN_MALFORMED, 'unterminated string');
}

/** Validates one multi-byte UTF-8 sequence at P (RFC 3629: no overlongs, no surrogates). */
function utf8(): boolean {
  const c = B[P]!;
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
    fail(SCAN_INVALID_UTF8, 'invalid UTF-8');
    return false;
  }
  const c1 = B[P + 1];
  if (P + 1 >= E || c1 === undefined || c1 < lo || c1 > hi) {
    fail(SCAN_INVALID_UTF8, 'invalid UTF-8');
    return false;
  }
  for (let i = 2; i <= n; i++) {
    const ci = B[P + i];
    if (P + i >= E || ci === undefined || ci < 0x80 || ci > 0xbf) {
      fail(SCAN_INVALID_UTF8, 'invalid UTF-8');
      return false;
    }
  }
  P += n + 1;
  return true;
}

function digits(): number {
  const s = P;
  while (P < E) {
    const c = B[P]!;
    if (c >= 0x30 && c <= 0x39) P++;
    else break;
  }
  return P - s;
}

function num(): number {
  let integral = 1;
  if (B[P] === 0x2d) P++;
  if (B[P] === 0x30) P++;
  else if (P < E && B[P]! >= 0x31 && B[P]! <= 0x39) digits();
  else return fail(SCAN_MALFORMED, 'bad number');
  if (B[P] === 0x2e && P < E) {
    P++;
    integral = 0;
    if (digits() === 0) return fail(SCAN_MALFORMED, 'bad number');
  }
  if ((B[P] === 0x65 || B[P] === 0x45) && P < E) {
    P++;
    integral = 0;
    if (B[P] === 0x2b || B[P] === 0x2d) P++;
    if (digits() === 0) return fail(SCAN_MALFORMED, 'bad number');
  }
  LAST_NUMBER_INTEGRAL = integral;
  return T_NUMBER;
}

function lit(word: number[], t: number): number {
  if (P + word.length > E) return fail(SCAN_MALFORMED, 'unexpected token');
  for (let i = 0; i < word.length; i++) if (B[P + i] !== word[i]) return fail(SCAN_MALFORMED, 'unexpected token');
  P += word.length;
  return t;
}
const TRUE = [0x74, 0x72, 0x75, 0x65];
const FALSE = [0x66, 0x61, 0x6c, 0x73, 0x65];
const NULL = [0x6e, 0x75, 0x6c, 0x6c];

/**
 * Any JSON value at P. `want` selects the uniformity test for arrays:
 * 1 = all numbers, 2 = all null-or-object, 0 = none.
 */
function value(depth: number, want: number): number {
  if (P >= E) return fail(SCAN_MALFORMED, 'unexpected end');
  const c = B[P]!;
  if (c === 0x22) return str();
  if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return num();
  if (c === 0x5b) return arr(depth, want);
  if (c === 0x7b) return obj(depth);
  if (c === 0x74) return lit(TRUE, T_BOOL);
  if (c === 0x66) return lit(FALSE, T_BOOL);
  if (c === 0x6e) return lit(NULL, T_NULL);
  return fail(SCAN_MALFORMED, 'unexpected character');
}

function arr(depth: number, want: number): number {
  if (depth >= MAX_DEPTH) return fail(SCAN_MALFORMED, 'nesting too deep');
  P++;
  let count = 0;
  let uniform = 1;
  ws();
  if (B[P] === 0x5d && P < E) {
    P++;
    LAST_ARRAY_COUNT = 0;
    LAST_ARRAY_UNIFORM = 1;
    return T_ARRAY;
  }
  for (;;) {
    ws();
    const t = value(depth + 1, 0);
    if (t === T_NONE) return T_NONE;
    count++;
    if (want === 1 ? t !== T_NUMBER : want === 2 ? t !== T_NULL && t !== T_OBJECT : false) uniform = 0;
    ws();
    if (P >= E) return fail(SCAN_MALFORMED, 'unterminated array');
    const c = B[P]!;
    P++;
    if (c === 0x2c) continue;
    if (c === 0x5d) break;
    P--;
    return fail(SCAN_MALFORMED, "expected ',' or ']'");
  }
  LAST_ARRAY_COUNT = count;
  LAST_ARRAY_UNIFORM = uniform;
  return T_ARRAY;
}

function obj(depth: number): number {
  if (depth >= MAX_DEPTH) return fail(SCAN_MALFORMED, 'nesting too deep');
  P++;
  ws();
  if (B[P] === 0x7d && P < E) {
    P++;
    return T_OBJECT;
  }
  for (;;) {
    ws();
    if (B[P] !== 0x22 || P >= E) return fail(SCAN_MALFORMED, 'expected a string key');
    if (str() === T_NONE) return T_NONE;
    ws();
    if (B[P] !== 0x3a || P >= E) return fail(SCAN_MALFORMED, "expected ':'");
    P++;
    ws();
    if (value(depth + 1, 0) === T_NONE) return T_NONE;
    ws();
    if (P >= E) return fail(SCAN_MALFORMED, 'unterminated object');
    const c = B[P]!;
    P++;
    if (c === 0x2c) continue;
    if (c === 0x7d) return T_OBJECT;
    P--;
    return fail(SCAN_MALFORMED, "expected ',' or '}'");
  }
}

/**
 * Scans b[start, end) (one line without its newline). Returns out.error
 * (SCAN_OK when the line is one valid JSON object).
 */
export function scanLine(b: Uint8Array, start: number, end: number, out: LineScan): number {
  B = b;
  P = start;
  E = end;
  ERR = SCAN_OK;
  ERR_MSG = '';
  out.type.fill(0);
  out.keptCount = 0;
  out.duplicateKey = false;
  let keptOpen = false;
  ws();
  if (B[P] !== 0x7b || P >= E) {
    fail(SCAN_MALFORMED, 'expected a JSON object');
    return finish(out);
  }
  P++;
  ws();
  if (B[P] === 0x7d && P < E) {
    P++;
  } else {
    for (;;) {
      ws();
      if (B[P] !== 0x22 || P >= E) {
        fail(SCAN_MALFORMED, 'expected a string key');
        break;
      }
      const ks = P;
      if (str() === T_NONE) break;
      const key = LAST_STRING_ESCAPED ? K_OTHER : matchKey(B, ks + 1, P - 1);
      ws();
      if (B[P] !== 0x3a || P >= E) {
        fail(SCAN_MALFORMED, "expected ':'");
        break;
      }
      P++;
      ws();
      const vs = P;
      const want = key === K_DELAY || key === K_DOPPLER || key === K_SNR ? 1 : key === K_ADSB ? 2 : 0;
      const t = value(1, want);
      if (t === T_NONE) break;
      const ve = P;
      if (key !== K_OTHER) {
        if (out.type[key] !== T_NONE) out.duplicateKey = true;
        out.type[key] = t;
        if (t === T_STRING) {
          out.start[key] = vs + 1;
          out.end[key] = ve - 1;
          out.escaped[key] = LAST_STRING_ESCAPED;
        } else {
          out.start[key] = vs;
          out.end[key] = ve;
          if (t === T_ARRAY) {
            out.count[key] = LAST_ARRAY_COUNT;
            out.uniform[key] = LAST_ARRAY_UNIFORM;
          } else if (t === T_NUMBER) {
            out.count[key] = LAST_NUMBER_INTEGRAL;
          }
        }
      }
      if (key === K_NODE_ID || key === K_TOKEN || key === K_TYPE) {
        keptOpen = false;
      } else if (keptOpen) {
        out.keptEnd[out.keptCount - 1] = ve; // adjacent kept members share one span
      } else {
        if (out.keptCount === MAX_MEMBERS) {
          fail(SCAN_MALFORMED, 'too many members');
          break;
        }
        out.keptStart[out.keptCount] = ks;
        out.keptEnd[out.keptCount] = ve;
        out.keptCount++;
        keptOpen = true;
      }
      ws();
      if (P >= E) {
        fail(SCAN_MALFORMED, 'unterminated object');
        break;
      }
      const c = B[P]!;
      P++;
      if (c === 0x2c) continue;
      if (c === 0x7d) break;
      P--;
      fail(SCAN_MALFORMED, "expected ',' or '}'");
      break;
    }
  }
  if (ERR === SCAN_OK) {
    ws();
    if (P < E) fail(SCAN_MALFORMED, 'trailing characters after the object');
  }
  return finish(out);
}

function finish(out: LineScan): number {
  out.error = ERR;
  out.errorMessage = ERR_MSG;
  B = EMPTY; // do not pin the caller's buffer
  return ERR;
}
const EMPTY = new Uint8Array(0);
