// Line protocol streams: valid ones (frames with 0-50 detections, adsb null/objects,
// heartbeats, blank lines) and structural mutations of them.
import assert from 'node:assert/strict';
import { TOKEN, MAX_FRAME, Rand, U } from './harness.js';

type Member = [key: string, value: string]; // raw JSON texts (byte strings)

export interface LineFrameExp { ts: number; n: number; obj: Record<string, unknown> }

const WEIRD_JSON: readonly string[] = [
  'NaN', 'Infinity', '-Infinity', 'nan', 'inf', '1e999', '-1e999', '1e-999', '123456789012345678901234567890', '-0', '0.0',
  '1.0e+2', '"1757400000000"', 'null', 'true', 'false', '{}', '[]', '[1,2', '"\\u0000"', '"\\ud800"', '"\\uDFFF\\uD800"',
  `"${U('ü€𝄞 ✈')}"`, '[1,"2",3]', '[null]', '[[1],[2]]', '[{}]', '-', '01', '1.', '.5', '+1', '0x10', "'s'", '"unterminated',
  '"\xff\xfe"', '"\xc0\xaf"', '"\xed\xa0\x80"', '"\xf4\x90\x80\x80"', '"\xe2\x82"', '1e309', '4.9e-324', '1.7976931348623157e308',
  '9007199254740993', '-1', '"\t"', '"a\\x"', '[1,]', '[,1]', '{"a"}', '{"a":1,}', '[1 2]', '{"a":1 "b":2}', '""', '"\\"',
  `"${'x'.repeat(3000)}"`, `${'9'.repeat(400)}`, `0.${'0'.repeat(400)}1`, '[1e999,2,3]', '[NaN]', '[Infinity,-Infinity]',
  '[-0,0,-0.0]', '{"hex":null}', '[{"a":[1,{"b":[]}]}]', '"\\u00e9"', 'tru', 'nul', '[]]', '{}}', '1 2',
];

function deepText(r: Rand, depth: number): string {
  if (r.chance(0.5)) return '['.repeat(depth) + '1' + ']'.repeat(depth);
  return '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
}

function jsonNum(r: Rand, v: number): string {
  // Several spellings of one value; all must round-trip through the scanner byte for byte.
  const s = JSON.stringify(v);
  if (!Number.isInteger(v) || Math.abs(v) >= 1e15 || r.chance(0.7)) return s;
  return r.pick([s, `${v}.0`, `${v}e0`, `${v}E+0`, v === 0 ? '0e5' : `${v / 10}e1`]);
}

export function detValue(r: Rand): number {
  return detValueRaw(r) + 0; // no -0: JSON prints it as 0
}

function detValueRaw(r: Rand): number {
  const x = r.f();
  if (x < 0.6) return Math.round((r.f() * 400 - 100) * 1000) / 1000;
  if (x < 0.8) return r.int(1000) - 500;
  if (x < 0.9) return (r.f() - 0.5) * 10 ** r.range(-30, 30);
  return r.pick([0, 1e-300, 1e300, 123456.789012345, -0.5, 5e-324, 1.7976931348623157e308]);
}

export function adsbEntry(r: Rand): Record<string, unknown> | null {
  if (r.chance(0.5)) return null;
  const e: Record<string, unknown> = {};
  if (r.chance(0.9)) e.hex = r.int(0xffffff).toString(16).padStart(6, '0');
  if (r.chance(0.8)) e.lat = Math.round((r.f() * 180 - 90) * 1e5) / 1e5;
  if (r.chance(0.8)) e.lon = Math.round((r.f() * 360 - 180) * 1e5) / 1e5;
  if (r.chance(0.7)) e.alt_baro = r.int(45000);
  if (r.chance(0.6)) e.gs = Math.round(r.f() * 6000) / 10;
  if (r.chance(0.6)) e.track = r.int(360);
  if (r.chance(0.3)) e.flight = r.pick(['BAW123  ', 'DLH4AB', 'Ü✈𝄞', '', 'A"B\\C']);
  return e;
}

interface LineFrameSpec { members: Member[]; exp: LineFrameExp | null }

function lineFrame(r: Rand, node: string, ts: number, withToken: boolean): LineFrameSpec {
  const n = r.detections();
  const cols = [0, 1, 2].map(() => Array.from({ length: n }, () => detValue(r)));
  const members: Member[] = [['"node_id"', JSON.stringify(node)]];
  if (withToken) members.push(['"token"', JSON.stringify(TOKEN)]);
  // Values as the scanner keeps them, and as a JSON parser reads them (for the expected ring payload).
  const values = new Map<string, unknown>([['timestamp', ts], ['delay', cols[0]], ['doppler', cols[1]], ['snr', cols[2]]]);
  const body: Member[] = [
    ['"timestamp"', jsonNum(r, ts)],
    ['"delay"', `[${cols[0]!.map((v) => jsonNum(r, v)).join(',')}]`],
    ['"doppler"', `[${cols[1]!.map((v) => jsonNum(r, v)).join(',')}]`],
    ['"snr"', `[${cols[2]!.map((v) => jsonNum(r, v)).join(',')}]`],
  ];
  if (r.chance(0.5)) {
    const adsb = Array.from({ length: n }, () => adsbEntry(r));
    values.set('adsb', adsb);
    body.push(['"adsb"', U(JSON.stringify(adsb))]);
  }
  if (r.chance(0.1)) body.push(['"type"', '"detection"']);
  if (r.chance(0.1)) {
    const meta = { v: 2, src: 'rx-Ω', list: [1, null, 'x'] };
    values.set('meta', meta);
    body.push(['"meta"', U(JSON.stringify(meta))]);
  }
  const all = [...members, ...body];
  if (r.chance(0.3)) r.shuffle(all);
  const obj: Record<string, unknown> = {};
  for (const [k] of all) {
    const key = k.slice(1, -1);
    if (values.has(key)) obj[key] = values.get(key);
  }
  return { members: all, exp: { ts, n, obj } };
}

function heartbeatLine(node: string, withToken: boolean): LineFrameSpec {
  const m: Member[] = [['"node_id"', JSON.stringify(node)]];
  if (withToken) m.push(['"token"', JSON.stringify(TOKEN)]);
  m.push(['"type"', '"heartbeat"']);
  return { members: m, exp: null };
}

function serializeLine(r: Rand, members: Member[]): string {
  const ws = r.chance(0.15);
  const sp = (): string => (ws ? r.pick(['', ' ', '\t', '  ']) : '');
  return `${sp()}{${sp()}${members.map(([k, v]) => `${k}${sp()}:${sp()}${v}`).join(`${sp()},${sp()}`)}${sp()}}${sp()}`;
}

interface LineStream { text: string; frames: LineFrameExp[] }

/** A valid line stream: authenticates on the first line; frames, heartbeats, blank lines. */
export function validLineStream(r: Rand, node: string, tsBase: number): LineStream {
  const k = r.range(1, 5);
  const lines: string[] = [];
  const frames: LineFrameExp[] = [];
  let ts = tsBase;
  for (let i = 0; i < k; i++) {
    const x = r.f();
    const withToken = i === 0 || r.chance(0.5);
    if (x < 0.12) {
      lines.push(serializeLine(r, heartbeatLine(node, withToken).members));
    } else if (x < 0.17 && i > 0) {
      lines.push(''); // a blank line (or a bare CRLF): nothing to count
    } else {
      ts += r.range(1, 200) + (r.chance(0.2) ? 0.25 : 0);
      const f = lineFrame(r, node, ts, withToken);
      let text = serializeLine(r, f.members);
      if (r.chance(0.02)) {
        // Padded to exactly the limit: still a valid frame.
        const plain = (): string => `{${f.members.map(([a, b]) => `${a}:${b}`).join(',')}}`;
        const pad = MAX_FRAME - plain().length - ',"pad":""'.length;
        if (pad > 0) {
          f.members.push(['"pad"', `"${'p'.repeat(pad)}"`]);
          f.exp!.obj.pad = 'p'.repeat(pad);
          text = plain();
          assert.equal(text.length, MAX_FRAME);
        }
      }
      if (Buffer.byteLength(text, 'latin1') > MAX_FRAME) continue;
      lines.push(text);
      frames.push(f.exp!);
    }
  }
  // (A line of exactly the limit ends in LF: whether the CR of a CRLF counts against the limit is not specified.)
  const eol = (l: string): string => (l.length < MAX_FRAME && r.chance(0.2) ? '\r\n' : '\n');
  return { text: lines.map((l) => l + eol(l)).join(''), frames };
}

/** Structural mutations of a line stream (line-level, then serialized). */
export function mutatedLineStream(r: Rand, node: string, tsBase: number): string {
  const k = r.range(1, 4);
  const lines: string[] = [];
  let ts = tsBase;
  for (let i = 0; i < k; i++) {
    const spec = r.chance(0.15) ? heartbeatLine(node, i === 0 || r.chance(0.5)) : lineFrame(r, node, (ts += r.range(1, 100)), i === 0 || r.chance(0.5));
    const m = spec.members;
    const ops = r.range(0, 3);
    let whole: string | null = null;
    for (let o = 0; o < ops; o++) {
      // Mutations that need kilobytes (over the limit, thousands of levels) are drawn less often: they dominate the cost.
      let op = r.int(14);
      if ((op === 12 || op === 7) && r.chance(0.7)) op = r.int(12);
      const idx = m.length > 0 ? r.int(m.length) : 0;
      switch (op) {
        case 0: // a field's value replaced by something weird
          if (m.length) m[idx]![1] = r.chance(0.8) ? r.pick(WEIRD_JSON) : deepText(r, r.pick([31, 32, 33, 64, 1000]));
          break;
        case 1: { // one element of an array replaced
          const which = r.pick(['"delay"', '"doppler"', '"snr"', '"adsb"']);
          const arr = m.find(([key]) => key === which);
          if (arr && arr[1].startsWith('[') && arr[1].length > 2) {
            const inner = arr[1].slice(1, -1).split(',');
            inner[r.int(inner.length)] = r.pick(WEIRD_JSON);
            arr[1] = `[${inner.join(',')}]`;
          }
          break;
        }
        case 2: { // arrays of unequal length
          const which = r.pick(['"delay"', '"doppler"', '"snr"', '"adsb"']);
          const arr = m.find(([key]) => key === which);
          if (arr) arr[1] = arr[1] === '[]' ? '[1]' : `[${arr[1].slice(1, -1).split(',').slice(1).join(',')}]`;
          break;
        }
        case 3: // duplicate key
          if (m.length) m.splice(r.int(m.length + 1), 0, [m[idx]![0], r.chance(0.5) ? m[idx]![1] : r.pick(WEIRD_JSON)]);
          break;
        case 4: // missing member
          if (m.length) m.splice(idx, 1);
          break;
        case 5: // extra member, odd keys
          m.splice(r.int(m.length + 1), 0, [r.pick(['"x"', '"time\\u0073tamp"', '"node\\u005fid"', `"${U('ключ')}"`, '""', '"\\ud83d\\ude00"', '"tok\\u0065n"']), r.pick(WEIRD_JSON)]);
          break;
        case 6: // too many members
          for (let j = 0; j < 70; j++) m.push([`"k${j}"`, String(j)]);
          break;
        case 7: // deep nesting in an extra member
          m.push(['"deep"', deepText(r, r.chance(0.8) ? r.pick([30, 31, 32, 33, 100]) : r.pick([2000, 3000]))]);
          break;
        case 8: { // token: wrong, missing, or the right one spelled with escapes (must still authenticate)
          const t = m.find(([key]) => key === '"token"');
          const v = r.pick([JSON.stringify('nope'), '""', '123', 'null', `"${TOKEN.slice(0, 4)}\\u002d${TOKEN.slice(5)}"`, `"${TOKEN}x"`]);
          if (t) t[1] = v;
          else m.push(['"token"', v]);
          break;
        }
        case 9: { // bad node ids
          const n = m.find(([key]) => key === '"node_id"');
          if (n) n[1] = r.pick(['""', `"${'a'.repeat(65)}"`, `"${'a'.repeat(64)}"`, '"-x"', '"a b"', `"${U('ü')}"`, '"fuzz\\u002dnode"', '1', 'null', '"x/../y"']);
          break;
        }
        case 10: { // raw invalid UTF-8 inside a string
          const s = m.find(([, v]) => v.startsWith('"'));
          if (s) s[1] = `"${r.pick(['\xff', '\xc3', '\xe2\x28\xa1', '\xf0\x9f\x98', '\xed\xb0\x80', '\xc1\xbf'])}${s[1].slice(1)}`;
          break;
        }
        case 11: // not an object at all
          whole = r.pick(['[1,2]', '"str"', '123', 'null', '{', '}', '{}', '{"a":1}{"b":2}', '  ', '{"node_id":"x"', '\xef\xbb\xbf{}', '\x00', 'x'.repeat(50)]);
          break;
        case 12: // over the limit (or exactly at it: then it is an ordinary line)
          m.push(['"pad"', `"${'p'.repeat(MAX_FRAME - 20 + r.int(60))}"`]);
          break;
        default: // type field games
          m.push(['"type"', r.pick(['"heartbeat"', '"heartbe\\u0061t"', '"HEARTBEAT"', '1', 'null', '["heartbeat"]'])]);
          break;
      }
    }
    lines.push(whole ?? serializeLine(r, m));
  }
  return lines.map((l) => l + (r.chance(0.2) ? '\r\n' : '\n')).join('');
}

export function sentinelLine(node: string, ts: number): string {
  return `{"node_id":"${node}","token":"${TOKEN}","timestamp":${ts},"delay":[1.5],"doppler":[-2.5],"snr":[3.5]}\n`;
}
