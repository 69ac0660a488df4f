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

// Word-wise reads of the line being scanned: one view per source buffer (a socket
// read holds hundreds of lines), made again only when the buffer changes. Every
// word-wise check below is a shortcut that either proves what the byte-wise code
// would conclude for those bytes or falls back to it at the same position.
let VIEW: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(8));
let VIEW_OF: Uint8Array | null = null;

function viewOf(b: Uint8Array): void {
  VIEW = new DataView(b.buffer, b.byteOffset, b.byteLength);
  VIEW_OF = b;
}

/** Little-endian 32-bit word of the 4 characters of s from i (as DataView#getInt32(p, true) reads them). */
function word(s: string, i: number): number {
  return (s.charCodeAt(i) | (s.charCodeAt(i + 1) << 8) | (s.charCodeAt(i + 2) << 16) | (s.charCodeAt(i + 3) << 24)) | 0;
}
// Known keys with their quotes and colon, as words (overlapping where the length is not a multiple of 4).
const W_NODE_ID = [word('"node_id":', 0), word('"node_id":', 4), word('"node_id":', 6)] as const; // 10 bytes
const W_TOKEN = [word('"token":', 0), word('"token":', 4)] as const; // 8
const W_TYPE = [word('"type":', 0), word('"type":', 3)] as const; // 7
const W_TIMESTAMP = [word('"timestamp":', 0), word('"timestamp":', 4), word('"timestamp":', 8)] as const; // 12
const W_DELAY = [word('"delay":', 0), word('"delay":', 4)] as const; // 8
const W_DOPPLER = [word('"doppler":', 0), word('"doppler":', 4), word('"doppler":', 6)] as const; // 10
const W_SNR = [word('"snr":', 0), word('"snr":', 2)] as const; // 6
const W_ADSB = [word('"adsb":', 0), word('"adsb":', 3)] as const; // 7
const W_NULL = word('null', 0);
let FAST_KEY = K_OTHER;

/**
 * A known top-level key written plainly at p (`"delay":`: no escapes, no whitespace
 * before the colon): the position after the colon, the key in FAST_KEY. Else -1 and
 * the general path scans the key from p (the same bytes, so the same result).
 */
function knownKeyColon(p: number, e: number): number {
  if (p + 8 > e) return -1; // shorter keys fall back near the line's end: rare, and correct either way
  const v = VIEW;
  const w0 = v.getInt32(p, true);
  if (w0 === W_DELAY[0]) {
    if (v.getInt32(p + 4, true) !== W_DELAY[1]) return -1;
    FAST_KEY = K_DELAY;
    return p + 8;
  }
  if (w0 === W_DOPPLER[0]) {
    if (p + 10 > e || v.getInt32(p + 4, true) !== W_DOPPLER[1] || v.getInt32(p + 6, true) !== W_DOPPLER[2]) return -1;
    FAST_KEY = K_DOPPLER;
    return p + 10;
  }
  if (w0 === W_SNR[0]) {
    if (v.getInt32(p + 2, true) !== W_SNR[1]) return -1;
    FAST_KEY = K_SNR;
    return p + 6;
  }
  if (w0 === W_ADSB[0]) {
    if (v.getInt32(p + 3, true) !== W_ADSB[1]) return -1;
    FAST_KEY = K_ADSB;
    return p + 7;
  }
  if (w0 === W_TIMESTAMP[0]) {
    if (p + 12 > e || v.getInt32(p + 4, true) !== W_TIMESTAMP[1] || v.getInt32(p + 8, true) !== W_TIMESTAMP[2]) return -1;
    FAST_KEY = K_TIMESTAMP;
    return p + 12;
  }
  if (w0 === W_NODE_ID[0]) {
    if (p + 10 > e || v.getInt32(p + 4, true) !== W_NODE_ID[1] || v.getInt32(p + 6, true) !== W_NODE_ID[2]) return -1;
    FAST_KEY = K_NODE_ID;
    return p + 10;
  }
  if (w0 === W_TOKEN[0]) {
    if (v.getInt32(p + 4, true) !== W_TOKEN[1]) return -1;
    FAST_KEY = K_TOKEN;
    return p + 8;
  }
  if (w0 === W_TYPE[0]) {
    if (v.getInt32(p + 3, true) !== W_TYPE[1]) return -1;
    FAST_KEY = K_TYPE;
    return p + 7;
  }
  return -1;
}

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
  // Four bytes at a time while none of them is '"', '\\', a control character or
  // non-ASCII: a byte below 0x20 (or equal to 0x22 or 0x5c after the xor) borrows
  // into its top bit, and a non-ASCII byte has it set already.
  const v = VIEW;
  while (p + 4 <= e) {
    const w = v.getInt32(p, true);
    const q = w ^ 0x22222222;
    const s = w ^ 0x5c5c5c5c;
    if ((((w - 0x20202020) & ~w) | ((q - 0x01010101) & ~q) | ((s - 0x01010101) & ~s) | w) & 0x80808080) break;
    p += 4;
  }
  // Then one table look-up a byte.
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
    // The usual element, a plain decimal (no exponent, at most 300 integer digits: finite)
    // right before ',' or ']', in one pass; anything else (or an error) from p below.
    let q = p;
    let x = c;
    if (x === 0x2d && q + 1 < e) x = b[++q]!;
    if (x >= 0x31 && x <= 0x39) {
      const d = q++;
      while (q < e && (x = b[q]!) >= 0x30 && x <= 0x39) q++;
      if (q - d > 300) q = -1;
    } else if (x === 0x30) {
      q++;
    } else {
      q = -1;
    }
    if (q > 0 && q < e) {
      x = b[q]!;
      if (x === 0x2e) {
        const d = ++q;
        while (q < e && (x = b[q]!) >= 0x30 && x <= 0x39) q++;
        if (q === d || q >= e) q = -1;
        else NUM_FRAC = 1;
      }
      if (q > 0) {
        if (x === 0x2c) {
          count++;
          p = ws(b, q + 1, e);
          continue;
        }
        if (x === 0x5d) {
          count++;
          p = q + 1;
          break;
        }
      }
    }
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
    p = ws(b, p, e);
    if (p + 4 <= e && VIEW.getInt32(p, true) === W_NULL) {
      // The usual adsb entry: what value() concludes for `null`, without its dispatch.
      p += 4;
      VTYPE = T_NULL;
    } else {
      p = value(b, p, e, depth + 1, 0);
      if (p < 0) return -1;
    }
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

// The head a node repeats verbatim on every line (`{"node_id":"..","token":"..",`:
// the members that route and authenticate the frame) is remembered after a line
// that scanned cleanly, with what the scanner found in it. A later line starting
// with the same bytes up to and including the comma after the head is in the same
// scanner state there (the scanner reads nothing past that comma before it), so
// the head's facts are restored and the scan goes on from the comma.
const HEAD_MAX = 256;
const HEAD_BYTES = new Uint8Array(HEAD_MAX);
const HEAD_VIEW = new DataView(HEAD_BYTES.buffer);
let HEAD_LEN = 0;
const HEAD_KEYS = [K_NODE_ID, K_TOKEN, K_TYPE] as const;
// Per head key (indexed like HEAD_KEYS): type (T_NONE when not in the head), value span relative to the line's start, escaped, count, uniform.
const HEAD_TYPE = new Uint8Array(3);
const HEAD_START = new Int32Array(3);
const HEAD_END = new Int32Array(3);
const HEAD_ESCAPED = new Uint8Array(3);
const HEAD_COUNT = new Int32Array(3);
const HEAD_UNIFORM = new Uint8Array(3);

function isHeadKey(key: number): boolean {
  return key === K_NODE_ID || key === K_TOKEN || key === K_TYPE;
}

/** b[s, s + HEAD_LEN) equals the remembered head (the caller checked the line is longer). */
function sameHead(b: Uint8Array, s: number): boolean {
  const n = HEAD_LEN;
  const v = VIEW;
  let i = 0;
  for (; i + 4 <= n; i += 4) if (v.getInt32(s + i, true) !== HEAD_VIEW.getInt32(i, true)) return false;
  for (; i < n; i++) if (b[s + i] !== HEAD_BYTES[i]) return false;
  return true;
}

function restoreHead(out: LineScan, s: number): void {
  for (let i = 0; i < 3; i++) {
    const t = HEAD_TYPE[i]!;
    if (t === T_NONE) continue;
    const k = HEAD_KEYS[i]!;
    out.type[k] = t;
    out.start[k] = HEAD_START[i]! + s;
    out.end[k] = HEAD_END[i]! + s;
    out.escaped[k] = HEAD_ESCAPED[i]!;
    out.count[k] = HEAD_COUNT[i]!;
    out.uniform[k] = HEAD_UNIFORM[i]!;
  }
}

/** Remembers b[s, headEnd) and the head keys' facts (each key at most once in the line: no duplicates). */
function rememberHead(b: Uint8Array, s: number, headEnd: number, out: LineScan): void {
  const n = headEnd - s;
  for (let i = 0; i < n; i++) HEAD_BYTES[i] = b[s + i]!;
  for (let i = 0; i < 3; i++) {
    const k = HEAD_KEYS[i]!;
    const t = out.type[k]!;
    // A head key met after the head (`{"node_id":..,"timestamp":..,"token":..}`) is not part of it.
    if (t === T_NONE || out.start[k]! >= headEnd) {
      HEAD_TYPE[i] = T_NONE;
      continue;
    }
    HEAD_TYPE[i] = t;
    HEAD_START[i] = out.start[k]! - s;
    HEAD_END[i] = out.end[k]! - s;
    HEAD_ESCAPED[i] = out.escaped[k]!;
    HEAD_COUNT[i] = out.count[k]!;
    HEAD_UNIFORM[i] = out.uniform[k]!;
  }
  HEAD_LEN = n;
}

/**
 * Scans b[start, end) (one line without its newline). Returns out.error
 * (SCAN_OK when the line is one valid JSON object).
 */
export function scanLine(b: Uint8Array, start: number, end: number, out: LineScan): number {
  ERR = SCAN_OK;
  ERR_MSG = '';
  const ty = out.type;
  const st = out.start;
  const en = out.end;
  const cn = out.count;
  ty[0] = ty[1] = ty[2] = ty[3] = ty[4] = ty[5] = ty[6] = ty[7] = ty[8] = T_NONE;
  out.keptCount = 0;
  out.duplicateKey = false;
  const e = end;
  if (b !== VIEW_OF) viewOf(b);
  let keptOpen = false;
  let p: number;
  let inHead = true; // only node_id, token and type members so far
  let headEnd = -1; // after the comma that ends the head
  const hit = HEAD_LEN > 0 && e - start > HEAD_LEN && sameHead(b, start);
  if (hit) {
    restoreHead(out, start);
    p = start + HEAD_LEN;
    headEnd = p;
  } else {
    p = ws(b, start, e);
    if (p >= e || b[p] !== 0x7b) {
      fail(SCAN_MALFORMED, 'expected a JSON object', p);
      return finish(out);
    }
    p = ws(b, p + 1, e);
  }
  if (!hit && p < e && b[p] === 0x7d) {
    p++;
  } else {
    for (;;) {
      p = ws(b, p, e);
      if (p >= e || b[p] !== 0x22) {
        fail(SCAN_MALFORMED, 'expected a string key', p);
        break;
      }
      const ks = p;
      let key: number;
      const kc = knownKeyColon(p, e);
      if (kc >= 0) {
        key = FAST_KEY;
        p = kc;
      } else {
        p = str(b, p, e);
        if (p < 0) break;
        key = ESCAPED ? matchEscapedKey(b, ks, p) : matchKey(b, ks + 1, p - 1);
        p = ws(b, p, e);
        if (p >= e || b[p] !== 0x3a) {
          fail(SCAN_MALFORMED, "expected ':'", p);
          break;
        }
        p++;
      }
      const vs = ws(b, p, e);
      const want = key === K_DELAY || key === K_DOPPLER || key === K_SNR ? 1 : key === K_ADSB ? 2 : 0;
      NUM_FRAC = 0;
      p = value(b, vs, e, 1, want);
      if (p < 0) break;
      const ve = p;
      if (key !== K_OTHER) {
        const t = VTYPE;
        if (ty[key] !== T_NONE) out.duplicateKey = true;
        ty[key] = t;
        if (t === T_STRING) {
          st[key] = vs + 1;
          en[key] = ve - 1;
          out.escaped[key] = ESCAPED;
        } else {
          st[key] = vs;
          en[key] = ve;
          if (t === T_ARRAY) {
            cn[key] = ACOUNT;
            out.uniform[key] = AUNIFORM;
          } else if (t === T_NUMBER) {
            cn[key] = 1 - NUM_FRAC;
          }
        }
      }
      if (isHeadKey(key)) {
        keptOpen = false;
      } else {
        inHead = false;
        if (keptOpen) {
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
      }
      let c = p < e ? b[p]! : 0;
      if (c <= 0x20) {
        p = ws(b, p, e);
        if (p >= e) {
          fail(SCAN_MALFORMED, 'unterminated object', p);
          break;
        }
        c = b[p]!;
      }
      p++;
      if (c === 0x2c) {
        if (inHead) headEnd = p;
        continue;
      }
      if (c === 0x7d) break;
      fail(SCAN_MALFORMED, "expected ',' or '}'", p - 1);
      break;
    }
  }
  if (ERR === SCAN_OK) {
    p = ws(b, p, e);
    if (p < e) fail(SCAN_MALFORMED, 'trailing characters after the object', p);
    else if (headEnd > start && (!hit || headEnd - start !== HEAD_LEN) && headEnd - start <= HEAD_MAX && !out.duplicateKey) rememberHead(b, start, headEnd, out);
  }
  return finish(out);
}

function finish(out: LineScan): number {
  out.error = ERR;
  out.errorMessage = ERR_MSG;
  return ERR;
}
