// BinaryFramer: u32 big-endian length-prefixed messages from a chunked stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BinaryFramer, SKIP_FACTOR, F_NONE, F_MESSAGE, F_OVERSIZE, F_FATAL } from '../src/shard/binary/binary-framer.js';

type Ev = { ev: number; hex?: string; bad?: number };

function frame(payload: Buffer | string): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const h = Buffer.alloc(4);
  h.writeUInt32BE(p.length, 0);
  return Buffer.concat([h, p]);
}

function header(len: number): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(len >>> 0, 0);
  return h;
}

/** Drains the events available now; payloads are copied (the framer may reuse its buffer). */
function drain(f: BinaryFramer, out: Ev[] = []): Ev[] {
  for (;;) {
    const ev = f.next();
    if (ev === F_NONE) return out;
    if (ev === F_MESSAGE) {
      assert.ok(f.msgStart <= f.msgEnd && f.msgEnd <= f.msgBuf.length);
      out.push({ ev, hex: Buffer.from(f.msgBuf.subarray(f.msgStart, f.msgEnd)).toString('hex') });
    } else if (ev === F_OVERSIZE || ev === F_FATAL) {
      out.push({ ev, bad: f.badLength });
      if (ev === F_FATAL) return out;
    } else {
      assert.fail(`unexpected event ${ev}`);
    }
  }
}

function feed(f: BinaryFramer, chunks: Buffer[]): Ev[] {
  const out: Ev[] = [];
  for (const c of chunks) {
    f.push(c);
    drain(f, out);
  }
  return out;
}

function msg(p: Buffer | string): Ev {
  return { ev: F_MESSAGE, hex: (typeof p === 'string' ? Buffer.from(p) : p).toString('hex') };
}

function bytewise(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i++) out.push(b.subarray(i, i + 1));
  return out;
}

const MAX = 100;
const PAYLOADS = [
  Buffer.from('hello'),
  Buffer.alloc(0),
  Buffer.from([0x00, 0x01, 0xff, 0x80, 0x0a, 0x0d]),
  Buffer.alloc(MAX, 0xab),
  Buffer.from('msgpack\u00e9'),
];
const STREAM = Buffer.concat(PAYLOADS.map(frame));
const EXPECTED = PAYLOADS.map(msg);

test('several messages in one chunk', () => {
  const f = new BinaryFramer(MAX);
  f.push(STREAM);
  assert.deepEqual(drain(f), EXPECTED);
  assert.equal(f.next(), F_NONE);
  assert.equal(f.buffered, 0);
});

test('the stream split at every offset (headers and payloads) gives the same messages', () => {
  for (let i = 0; i <= STREAM.length; i++) {
    const f = new BinaryFramer(MAX);
    assert.deepEqual(feed(f, [STREAM.subarray(0, i), STREAM.subarray(i)]), EXPECTED, `split at ${i}`);
    assert.equal(f.buffered, 0);
  }
});

test('a header split at every offset in three pieces', () => {
  const s = Buffer.concat([frame('abc'), frame('defgh')]);
  for (let i = 0; i <= 4; i++) {
    for (let j = i; j <= 4; j++) {
      const f = new BinaryFramer(MAX);
      const got = feed(f, [s.subarray(0, i), s.subarray(i, j), s.subarray(j)]);
      assert.deepEqual(got, [msg('abc'), msg('defgh')], `split ${i},${j}`);
    }
  }
});

test('a payload split across many chunks is reassembled byte-exact', () => {
  const payload = Buffer.alloc(MAX);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + 3) & 0xff;
  const s = Buffer.concat([frame(payload), frame('tail')]);
  const f = new BinaryFramer(MAX);
  const got = feed(f, [s.subarray(0, 10), s.subarray(10, 11), s.subarray(11, 60), s.subarray(60, 103), s.subarray(103)]);
  assert.deepEqual(got, [msg(payload), msg('tail')]);
});

test('byte-at-a-time equals whole', () => {
  const whole = feed(new BinaryFramer(MAX), [STREAM]);
  const trickled = feed(new BinaryFramer(MAX), bytewise(STREAM));
  assert.deepEqual(trickled, whole);
  assert.deepEqual(whole, EXPECTED);
});

test('a message exactly at the limit passes', () => {
  const f = new BinaryFramer(MAX);
  f.push(frame(Buffer.alloc(MAX, 1)));
  assert.deepEqual(drain(f), [msg(Buffer.alloc(MAX, 1))]);
});

test('oversize is reported from the header alone, then the payload is skipped', () => {
  const f = new BinaryFramer(MAX);
  f.push(header(MAX + 1));
  assert.equal(f.next(), F_OVERSIZE, 'reported before any payload byte arrives');
  assert.equal(f.badLength, MAX + 1);
  assert.equal(f.next(), F_NONE);
  // The payload trickles in and is skipped, never buffered.
  const junk = Buffer.alloc(MAX + 1, 0x5a);
  for (let i = 0; i < junk.length; i += 10) {
    f.push(junk.subarray(i, i + 10));
    assert.equal(f.next(), F_NONE);
    assert.equal(f.buffered, 0);
  }
  f.push(frame('after'));
  assert.deepEqual(drain(f), [msg('after')]);
});

test('oversize followed by the next message, at every split offset', () => {
  const big = Buffer.alloc(MAX * 3, 0x11);
  big.writeUInt32BE(0x00000004, 0); // looks like a header, must be skipped as payload
  const s = Buffer.concat([frame(big), frame('next'), frame('')]);
  const expected = [{ ev: F_OVERSIZE, bad: MAX * 3 }, msg('next'), msg('')];
  assert.deepEqual(feed(new BinaryFramer(MAX), [s]), expected);
  assert.deepEqual(feed(new BinaryFramer(MAX), bytewise(s)), expected);
  for (let i = 0; i <= s.length; i++) {
    assert.deepEqual(feed(new BinaryFramer(MAX), [s.subarray(0, i), s.subarray(i)]), expected, `split at ${i}`);
  }
});

test('lengths up to maxMessageBytes*SKIP_FACTOR are skipped, above are F_FATAL', () => {
  const f = new BinaryFramer(MAX);
  f.push(header(MAX * SKIP_FACTOR));
  assert.equal(f.next(), F_OVERSIZE);
  assert.equal(f.badLength, MAX * SKIP_FACTOR);
  const g = new BinaryFramer(MAX);
  g.push(header(MAX * SKIP_FACTOR + 1));
  assert.equal(g.next(), F_FATAL);
  assert.equal(g.badLength, MAX * SKIP_FACTOR + 1);
});

test('a 0xFFFFFFFF length gives F_FATAL, whole or split', () => {
  const f = new BinaryFramer(MAX);
  f.push(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
  assert.equal(f.next(), F_FATAL);
  assert.equal(f.badLength, 0xffffffff);
  const g = new BinaryFramer(MAX);
  const got = feed(g, [frame('ok'), Buffer.from([0xff, 0xff]), Buffer.from([0xff]), Buffer.from([0xff])]);
  assert.deepEqual(got, [msg('ok'), { ev: F_FATAL, bad: 0xffffffff }]);
});

test('zero-length messages', () => {
  const f = new BinaryFramer(MAX);
  f.push(Buffer.concat([frame(''), frame(''), frame('x')]));
  assert.equal(f.next(), F_MESSAGE);
  assert.equal(f.msgEnd - f.msgStart, 0);
  assert.equal(f.next(), F_MESSAGE);
  assert.equal(f.msgEnd - f.msgStart, 0);
  assert.equal(f.next(), F_MESSAGE);
  assert.equal(Buffer.from(f.msgBuf.subarray(f.msgStart, f.msgEnd)).toString(), 'x');
  assert.equal(f.next(), F_NONE);
  // A zero-length message whose header is the last bytes of a chunk.
  const g = new BinaryFramer(MAX);
  assert.deepEqual(feed(g, [Buffer.from([0, 0]), Buffer.from([0, 0])]), [msg('')]);
});

test('consumed accounting sums to the bytes pushed, with oversize skips', () => {
  const parts: Buffer[] = [];
  let expectMsgs = 0;
  let expectOversize = 0;
  for (let i = 0; i < 200; i++) {
    const len = (i * 37) % (MAX * 2);
    parts.push(frame(Buffer.alloc(len, i & 0xff)));
    if (len > MAX) expectOversize++;
    else expectMsgs++;
  }
  const s = Buffer.concat(parts);
  const f = new BinaryFramer(MAX);
  let consumed = 0;
  let msgs = 0;
  let over = 0;
  for (let pos = 0, step = 1; pos < s.length; pos += step, step = (step * 5 + 3) % 97 + 1) {
    f.push(s.subarray(pos, pos + step));
    for (;;) {
      const ev = f.next();
      if (ev === F_NONE) break;
      if (ev === F_MESSAGE) msgs++;
      else if (ev === F_OVERSIZE) over++;
      else assert.fail(`event ${ev}`);
    }
    consumed += f.takeConsumed();
    assert.ok(consumed <= Math.min(pos + step, s.length));
  }
  assert.equal(consumed, s.length);
  assert.equal(f.takeConsumed(), 0);
  assert.equal(msgs, expectMsgs);
  assert.equal(over, expectOversize);
  assert.equal(f.buffered, 0);
});
