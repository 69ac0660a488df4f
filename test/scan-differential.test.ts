// The line scanner's shortcuts (known keys and plain string bytes read as 32-bit words,
// null entries as one word, the head a node repeats on every line remembered from the
// line before) against the byte-by-byte scanner they replace: for realistic lines, lines
// mutated at random, and lines that share a head with the previous one and then differ
// right at or after it, both give the same result, error message (byte position
// included), known members and kept spans. Lines come in fresh reads, at odd offsets of
// their ArrayBuffer, and in one buffer rewritten in place (a framer's carry buffer).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fast from '../src/shard/line/json-scan.js';
import * as ref from './fuzz/json-scan-reference.js';
import { rawMutate } from './fuzz/byte-mutations.js';
import { Rand } from './fuzz/harness.js';

const N_KEYS = 9;

/** What a scan says, in the fields the handler and the ring copy read (spans of absent keys are stale in both: left out). */
function facts(s: fast.LineScan | ref.LineScan): string {
  const keys: string[] = [];
  for (let k = 1; k < N_KEYS; k++) {
    const t = s.type[k]!;
    if (t === fast.T_NONE) continue;
    const extra = t === fast.T_STRING ? ` esc ${s.escaped[k]}` : t === fast.T_ARRAY ? ` n ${s.count[k]} u ${s.uniform[k]}` : t === fast.T_NUMBER ? ` int ${s.count[k]}` : '';
    keys.push(`${k}:${t} ${s.start[k]}-${s.end[k]}${extra}`);
  }
  const kept = Array.from({ length: s.keptCount }, (_, i) => `${s.keptStart[i]}-${s.keptEnd[i]}`);
  return `${s.error} ${JSON.stringify(s.errorMessage)} dup ${s.duplicateKey} [${keys.join(', ')}] kept [${kept.join(' ')}]`;
}

const fastScan = new fast.LineScan();
const refScan = new ref.LineScan();

function same(b: Uint8Array, s: number, e: number, what: string): number {
  const code = fast.scanLine(b, s, e, fastScan);
  ref.scanLine(b, s, e, refScan);
  const got = facts(fastScan);
  const want = facts(refScan);
  if (got !== want) assert.fail(`${what}\nline: ${Buffer.from(b.subarray(s, e)).toString('latin1')}\nfast: ${got}\nref:  ${want}`);
  return code;
}

const KEYS = ['node_id', 'token', 'type', 'timestamp', 'delay', 'doppler', 'snr', 'adsb', 't', 'extra', 'tim\\u0065stamp', 'nod', 'snr_x', 'tokens', 'typ'];

function num(r: Rand): string {
  const x = r.f();
  if (x < 0.5) return String(Math.round((r.f() - 0.3) * 1e5) / 100);
  if (x < 0.7) return String(r.int(1000));
  if (x < 0.8) return r.pick(['1e3', '-2.5E-7', '1e999', '0', '-0', '12345678901234567890', '0.000']);
  return String(1757400000000 + r.int(1e6));
}

function value(r: Rand, key: string, n: number, depth = 0): string {
  if (key === 'delay' || key === 'doppler' || key === 'snr') return `[${Array.from({ length: n }, () => (r.chance(0.97) ? num(r) : value(r, 'x', 0, depth + 1))).join(r.pick([',', ',', ', ']))}]`;
  if (key === 'adsb') return `[${Array.from({ length: n }, () => (r.chance(0.7) ? 'null' : r.chance(0.8) ? `{"hex":"a${r.int(99)}","alt":${r.int(4e4)}}` : 'true')).join(',')}]`;
  if (key === 'timestamp') return num(r);
  if (key === 'node_id' || key === 'token' || key === 'type') {
    const x = r.f();
    if (x < 0.8) return JSON.stringify(r.pick(['node-1', 'bench-secret', 'heartbeat', 'RESET', 'n\u00e9', 'a\\"b', 'secret-token-0123456789abcdef', '']));
    if (x < 0.9) return '"esc\\u0041ped"';
    return depth > 2 ? '1' : value(r, 'x', 2, depth + 1);
  }
  const x = r.f();
  if (depth > 3 || x < 0.4) return r.pick(['1', '"s"', 'null', 'true', 'false', '"\u00fc\u20ac\ud83d\ude00"', '-0.5e2']);
  if (x < 0.7) return `{${Array.from({ length: r.int(3) }, (_, i) => `"k${i}":${value(r, 'x', 0, depth + 1)}`).join(',')}}`;
  return `[${Array.from({ length: r.int(3) }, () => value(r, 'x', 0, depth + 1)).join(',')}]`;
}

/** A line-protocol message: usually the head (node_id, token, sometimes type) first, then a frame's members; sometimes anything. */
function line(r: Rand, head: string): string {
  const n = r.int(6);
  const ws = (): string => (r.chance(0.05) ? r.pick([' ', '\t', ' \r\n ']) : '');
  const members = r.chance(0.9) ? ['timestamp', 'delay', 'doppler', 'snr', ...(r.chance(0.7) ? ['adsb'] : []), ...(r.chance(0.2) ? ['t'] : [])]
    : Array.from({ length: r.int(6) }, () => r.pick(KEYS));
  const body = members.map((k) => `${ws()}"${k}"${ws()}:${ws()}${value(r, k, n)}${ws()}`);
  if (r.chance(0.1)) return `{${[...body, head.slice(1, -1)].join(',')}}`; // the head at the end
  if (body.length === 0) return r.chance(0.5) ? `${head.slice(0, -1)}}` : '{}';
  return `${head}${body.join(',')}}`;
}

function head(r: Rand): string {
  const parts = [`"node_id":${value(r, 'node_id', 0)}`, `"token":${value(r, 'token', 0)}`];
  if (r.chance(0.2)) parts.push(`"type":${value(r, 'type', 0)}`);
  if (r.chance(0.2)) r.shuffle(parts);
  if (r.chance(0.05)) parts.push(parts[0]!); // a duplicate in the head
  if (r.chance(0.05)) parts.length = 1;
  return `${r.chance(0.05) ? ' ' : ''}{${parts.join(r.chance(0.1) ? ' , ' : ',')},`;
}

test('the fast scanner agrees with the byte-by-byte scanner: valid, mutated and head-sharing lines, any buffer placement', (t) => {
  const seed = Number(process.env.SCAN_DIFF_SEED ?? 0x5ca77e57);
  const r = new Rand(seed);
  const carry = Buffer.alloc(8192);
  let lines = 0;
  let ok = 0;
  let bad = 0;
  let heads = 0;
  const rounds = Number(process.env.SCAN_DIFF_ROUNDS ?? 12000);
  for (let round = 0; round < rounds; round++) {
    const h = head(r);
    // A run of lines of one node (the remembered head applies), some of them mutated.
    const run = r.range(1, 12);
    const texts: Buffer[] = [];
    for (let i = 0; i < run; i++) {
      let t: Buffer = Buffer.from(line(r, h), 'utf8');
      if (r.chance(0.35)) t = rawMutate(r, t);
      else if (r.chance(0.15) && t.length > h.length) {
        // Differ at or right after the head's end (its comma, the next key), or inside it.
        const at = Math.max(0, h.length - 3 + r.int(6));
        t = Buffer.from(t);
        t[Math.min(at, t.length - 1)] = r.pick([0x20, 0x2c, 0x7d, 0x22, 0x3a, 0x61, 0x0a]);
      } else if (r.chance(0.1)) t = t.subarray(0, r.int(t.length + 1)); // cut anywhere
      texts.push(t);
    }
    const placement = r.int(3);
    if (placement === 0) {
      // One read holding the whole run, at an odd offset of its ArrayBuffer.
      const off = r.int(8);
      const all = Buffer.concat([Buffer.alloc(off, 0x20), ...texts.flatMap((t) => [t, Buffer.from('\n')])]);
      const view = r.chance(0.5) ? all.subarray(off) : all;
      let p = view === all ? off : 0;
      for (const t of texts) {
        if (same(view, p, p + t.length, `seed ${seed} round ${round} (one read)`) === fast.SCAN_OK) ok++;
        else bad++;
        p += t.length + 1;
        lines++;
      }
    } else {
      for (const t of texts) {
        let buf: Uint8Array;
        let s: number;
        if (placement === 1 && t.length + 16 <= carry.length) {
          // The same buffer rewritten in place, stale bytes after the line.
          s = r.int(8);
          carry.fill(r.pick([0x20, 0x2c, 0x31, 0x22]), 0, t.length + 24);
          t.copy(carry, s);
          buf = carry;
        } else {
          // A fresh read, sometimes a plain Uint8Array (a transferred chunk) over its own ArrayBuffer.
          s = r.int(4);
          const own = new Uint8Array(t.length + s + r.int(4));
          own.set(t, s);
          buf = r.chance(0.5) ? own : Buffer.from(own.buffer, 0, own.length);
        }
        if (same(buf, s, s + t.length, `seed ${seed} round ${round} (own buffer)`) === fast.SCAN_OK) ok++;
        else bad++;
        lines++;
      }
    }
    heads++;
  }
  // Both outcomes well represented (a generator that only made bad lines would prove little).
  assert.ok(ok > 5000 && bad > 3000, `ok ${ok}, refused ${bad} of ${lines} lines (${heads} heads)`);
  t.diagnostic(`seed ${seed}: ${lines} lines identical (${ok} accepted, ${bad} refused)`);
});

test('the remembered head is used only for the bytes it was made from', () => {
  const scan = new fast.LineScan();
  const scanText = (t: string): string => {
    const b = Buffer.from(t, 'latin1');
    fast.scanLine(b, 0, b.length, scan);
    return facts(scan);
  };
  const refText = (t: string): string => {
    const b = Buffer.from(t, 'latin1');
    ref.scanLine(b, 0, b.length, refScan);
    return facts(refScan);
  };
  const lines = [
    '{"node_id":"n1","token":"t","timestamp":1,"delay":[1],"doppler":[2],"snr":[3]}',
    '{"node_id":"n2","token":"t","timestamp":1,"delay":[1],"doppler":[2],"snr":[3]}', // same length, other node
    '{"node_id":"n1","token":"t","node_id":"n1","timestamp":1}', // the head, then a duplicate after it
    '{"node_id":"n1","token":"t",}', // the head, then nothing
    '{"node_id":"n1","token":"t","token":"u"}',
    '{"node_id":"n1","token":"t" ,"timestamp":1}',
    '{"node_id":"n1","token":"t","timestamp":1,"type":"heartbeat"}', // a head key after the head
    '{"node_id":"n1","token":"t","type":"heartbeat"}', // the whole line is a head: nothing to remember
    '{"node_id":"n1","token":"t",',
    '{"node_id":"n1","token":"t","',
    '{"node_id":"n1","token":"t","x":\u00ff}',
  ];
  // Heads of every length modulo 4, then the same line with one of the head's last
  // bytes changed (the bytes compared one by one after the words).
  for (const tok of ['t', 'tt', 'ttt', 'tttt']) {
    const h = `{"node_id":"n1","token":"${tok}",`;
    const base = `${h}"timestamp":1,"delay":[1]}`;
    lines.push(base);
    for (let back = 1; back <= 4; back++) {
      for (const ch of ['\u0001', '\u00ff', '}', ' ', 'u', '\\']) lines.push(`${h.slice(0, h.length - back)}${ch}${base.slice(h.length - back + 1)}`);
    }
  }
  for (const l of lines) for (const next of lines) {
    scanText(l);
    assert.equal(scanText(next), refText(next), `${l}\nthen ${next}`);
  }
});

test('number arrays: the one-pass element agrees with the general path at its edges', () => {
  const elements = ['0', '-0', '01', '-', '-a', '1.', '1.5', '-0.25', '1.5e3', '1e999', '2E-3', '.5', '1.2.3', '0x1', '1 ', ' 1',
    '9'.repeat(300), '9'.repeat(301), '9'.repeat(350), `-${'9'.repeat(309)}.5`, 'null', '"1"', '[1]', '{}', 'true', ''];
  for (const a of elements) {
    for (const b of ['', ...elements.slice(0, 8)]) {
      for (const text of [`{"delay":[${a}${b === '' ? '' : `,${b}`}],"snr":[1]}`, `{"delay":[${a}`, `{"doppler":[${b},${a}]}`, `{"snr":[${a}]`]) {
        const buf = Buffer.from(text, 'latin1');
        same(buf, 0, buf.length, 'number array');
      }
    }
  }
});
