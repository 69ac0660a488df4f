// The line path's fast paths keep the exact result of the general code: the ring copy
// of a frame's kept members (32-bit words when source and ring are equally aligned,
// views reused while the source is the same read), and the scanner's shortcuts
// (whitespace, plain string bytes, null literals, integral numbers) refuse what they
// refused before with the same error and byte position.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { scanLine, LineScan, SCAN_OK, SCAN_MALFORMED, K_TIMESTAMP, T_NUMBER } from '../src/shard/line/json-scan.js';
import { writeLineFrame } from '../src/ring/record-codec.js';
import { RingWriter } from '../src/ring/ring-writer.js';
import { RingReader, createRingBuffer } from '../src/ring/ring-reader.js';
import { mulberry32 } from './prng.js';

const noDrop = (): void => undefined;

/** Writes line[s, e) of `buf` as a frame and reads its record back (the ring is empty before and after). */
function roundTrip(w: RingWriter, r: RingReader, buf: Buffer, s: number, e: number): string {
  const scan = new LineScan();
  assert.equal(scanLine(buf, s, e, scan), SCAN_OK, buf.toString('utf8', s, e));
  assert.equal(writeLineFrame(w, buf, scan, 1, 0, noDrop), 0);
  w.flush();
  const batch = r.read();
  assert.ok(batch);
  const recs = [...batch.records()];
  assert.equal(recs.length, 1);
  return recs[0]!.payload.toString('utf8');
}

test('ring copy: every source alignment, short and long members, several spans, a source rewritten in place: the record is the kept members exactly', () => {
  const sab = createRingBuffer(1 << 16);
  const w = new RingWriter(sab, 'block');
  const r = new RingReader(sab);
  const rnd = mulberry32(15);
  const reused = Buffer.alloc(2048);
  let checked = 0;
  for (let k = 0; k < 3000; k++) {
    const pad = 'p'.repeat(Math.floor(rnd() * 90)); // spans from a few bytes to over a hundred
    const dets = Array.from({ length: Math.floor(rnd() * 6) }, () => Math.round(rnd() * 1e5) / 100);
    const kept = [`"timestamp":${k}`, `"p":"${pad}"`, `"delay":${JSON.stringify(dets)}`];
    const dropped = ['"node_id":"n1"', '"token":"t"', '"type":"x"'];
    // Dropped members first (one kept span), between kept ones (several spans), or last.
    const layout = k % 3;
    const members = layout === 0 ? [...dropped.slice(0, 2), ...kept]
      : layout === 1 ? [kept[0]!, dropped[0]!, kept[1]!, dropped[1]!, kept[2]!]
        : [...kept, ...dropped];
    const line = `{${members.join(',')}}`;
    const expected = `{${kept.join(',')}}\n`;
    const at = Math.floor(rnd() * 8);
    let buf: Buffer;
    if (k % 2 === 0) {
      // The same Buffer object with new content each time (a framer's carry buffer).
      reused.fill(0x20);
      reused.write(line, at);
      buf = reused;
    } else {
      // A fresh read, sometimes a view that does not start at its ArrayBuffer's start.
      const own = Buffer.alloc(line.length + 16);
      own.write(line, 8 + at);
      buf = k % 4 === 1 ? own.subarray(3) : own;
    }
    const s = buf.indexOf(0x7b);
    assert.equal(roundTrip(w, r, buf, s, s + line.length), expected, `line ${line} at ${at}`);
    checked++;
  }
  assert.equal(checked, 3000);
});

test('ring copy: frames from one read written back to back keep their bytes, and a frame from another read after them too', () => {
  const sab = createRingBuffer(1 << 16);
  const w = new RingWriter(sab, 'block');
  const r = new RingReader(sab);
  const lines = Array.from({ length: 40 }, (_, i) => `{"node_id":"n1","token":"t","timestamp":${1000 + i},"delay":[${i}.25,${i}.5],"doppler":[1,2],"snr":[3,4],"adsb":[null,{"hex":"abc${i}"}]}`);
  const read = Buffer.from(`${lines.join('\n')}\n`);
  const scan = new LineScan();
  let p = 0;
  for (let i = 0; i < lines.length; i++) {
    const e = read.indexOf(0x0a, p);
    assert.equal(scanLine(read, p, e, scan), SCAN_OK);
    assert.equal(writeLineFrame(w, read, scan, 1000 + i, 2, noDrop), 0);
    p = e + 1;
  }
  const other = Buffer.from(`xx${lines[0]!}`);
  assert.equal(scanLine(other, 2, other.length, scan), SCAN_OK);
  assert.equal(writeLineFrame(w, other, scan, 1, 2, noDrop), 0);
  w.flush();
  const got = [...r.read()!.records()].map((x) => x.payload.toString('utf8'));
  const want = [...lines, lines[0]!].map((l) => `{${l.slice('{"node_id":"n1","token":"t",'.length)}\n`);
  assert.deepEqual(got, want);
});

test('scanner shortcuts refuse what they refused before, with the same error and byte position', () => {
  const cases: Array<[string, number, string]> = [
    ['{"adsb":[nul]}', SCAN_MALFORMED, 'unexpected token at byte 9'],
    ['{"adsb":[nu', SCAN_MALFORMED, 'unexpected token at byte 9'],
    ['{"adsb":[null,nul]}', SCAN_MALFORMED, 'unexpected token at byte 14'],
    ['{"a":nulL}', SCAN_MALFORMED, 'unexpected token at byte 5'],
    ['{"a":\u0001 1}', SCAN_MALFORMED, 'unexpected character at byte 5'],
    ['{"a":"x\u001fy"}', SCAN_MALFORMED, 'control character in string at byte 7'],
    ['{"a":"x\u007fy"}', SCAN_OK, ''],
    ['{"a" \t\r\n: \n1 }', SCAN_OK, ''],
    ['{"adsb":[null ,\tnull]}', SCAN_OK, ''],
  ];
  const scan = new LineScan();
  for (const [text, code, msg] of cases) {
    const b = Buffer.from(text, 'latin1');
    assert.equal(scanLine(b, 0, b.length, scan), code, text);
    assert.equal(scan.errorMessage, msg, text);
  }
});

test('a timestamp is integral by its own text, whatever numbers come before or after it', () => {
  const scan = new LineScan();
  const cases: Array<[string, number]> = [
    ['{"timestamp":1.0}', 0], ['{"timestamp":10}', 1], ['{"timestamp":1e3}', 0], ['{"timestamp":-7}', 1],
    ['{"timestamp":10,"delay":[1.5]}', 1], ['{"delay":[1,2.5],"timestamp":7}', 1], ['{"x":1e9,"timestamp":7}', 1],
    ['{"delay":[1],"timestamp":7.5,"snr":[2]}', 0],
  ];
  for (const [text, integral] of cases) {
    const b = Buffer.from(text);
    assert.equal(scanLine(b, 0, b.length, scan), SCAN_OK, text);
    assert.equal(scan.type[K_TIMESTAMP], T_NUMBER, text);
    assert.equal(scan.count[K_TIMESTAMP], integral, text);
  }
});
