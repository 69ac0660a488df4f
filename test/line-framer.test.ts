// LineFramer: '\n'-framing of a chunked byte stream with a hard line limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LineFramer, F_NONE, F_MESSAGE, F_OVERSIZE } from '../src/shard/line/line-framer.js';
import { mulberry32 } from './prng.js';

type Ev = { ev: number; line?: string };

/** Drains every event available now; lines are copied (msgBuf may be reused). */
function drain(f: LineFramer, out: Ev[] = []): Ev[] {
  for (;;) {
    const ev = f.next();
    if (ev === F_NONE) return out;
    if (ev === F_MESSAGE) {
      assert.ok(f.msgStart <= f.msgEnd, 'msgStart <= msgEnd');
      assert.ok(f.msgEnd <= f.msgBuf.length, 'msgEnd within msgBuf');
      out.push({ ev, line: Buffer.from(f.msgBuf.subarray(f.msgStart, f.msgEnd)).toString('latin1') });
    } else {
      assert.equal(ev, F_OVERSIZE, `unexpected event ${ev}`);
      out.push({ ev });
    }
  }
}

/** Byte-exact line representation (latin1 keeps one char per byte). */
function bytesOf(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

function msgs(...lines: string[]): Ev[] {
  return lines.map((l) => ({ ev: F_MESSAGE, line: bytesOf(l) }));
}

function feedChunks(f: LineFramer, chunks: Buffer[]): Ev[] {
  const out: Ev[] = [];
  for (const c of chunks) {
    f.push(c);
    drain(f, out);
  }
  return out;
}

function byteChunks(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i++) out.push(b.subarray(i, i + 1));
  return out;
}

const STREAM_LINES = ['{"a":1}', '', 'hello world', 'héllo ✓ 𝄞 done', 'x', '{"node_id":"n-1","delay":[1,2]}'];
const STREAM = Buffer.from(STREAM_LINES.map((l) => `${l}\n`).join(''), 'utf8');

test('coalesced lines in one chunk are returned in order, then F_NONE', () => {
  const f = new LineFramer(1024);
  f.push(Buffer.from('a\nbb\nccc\n'));
  assert.deepEqual(drain(f), msgs('a', 'bb', 'ccc'));
  assert.equal(f.next(), F_NONE);
  assert.equal(f.buffered, 0);
});

test('a line without its newline is held until the newline arrives', () => {
  const f = new LineFramer(1024);
  f.push(Buffer.from('one\ntw'));
  assert.deepEqual(drain(f), msgs('one'));
  assert.equal(f.buffered, 2);
  f.push(Buffer.from('o'));
  assert.deepEqual(drain(f), []);
  f.push(Buffer.from('\nthree\n'));
  assert.deepEqual(drain(f), msgs('two', 'three'));
});

test('the stream split at every byte position gives the same lines', () => {
  const expected = msgs(...STREAM_LINES);
  for (let i = 0; i <= STREAM.length; i++) {
    const f = new LineFramer(1024);
    const got = feedChunks(f, [STREAM.subarray(0, i), STREAM.subarray(i)]);
    assert.deepEqual(got, expected, `split at ${i}`);
    assert.equal(f.buffered, 0);
  }
});

test('the stream split at every pair of positions gives the same lines', () => {
  const expected = msgs(...STREAM_LINES);
  for (let i = 0; i <= STREAM.length; i++) {
    for (let j = i; j <= STREAM.length; j++) {
      const f = new LineFramer(1024);
      const got = feedChunks(f, [STREAM.subarray(0, i), STREAM.subarray(i, j), STREAM.subarray(j)]);
      assert.deepEqual(got, expected, `split at ${i},${j}`);
    }
  }
});

test('all chunks pushed before any next() gives the same lines', () => {
  const f = new LineFramer(1024);
  for (const c of byteChunks(STREAM)) f.push(c);
  assert.equal(f.buffered, STREAM.length);
  assert.deepEqual(drain(f), msgs(...STREAM_LINES));
});

test('one byte at a time gives identical lines to the whole stream', () => {
  const whole = feedChunks(new LineFramer(1024), [STREAM]);
  const trickled = feedChunks(new LineFramer(1024), byteChunks(STREAM));
  assert.deepEqual(trickled, whole);
  assert.deepEqual(whole, msgs(...STREAM_LINES));
});

test('CRLF is stripped, a lone CR inside a line is kept', () => {
  const f = new LineFramer(1024);
  f.push(Buffer.from('a\r\nb\rc\r\n\r\nd\n'));
  assert.deepEqual(drain(f), msgs('a', 'b\rc', '', 'd'));
  // CR and LF in different chunks (the CR sits in the carried part).
  const g = new LineFramer(1024);
  assert.deepEqual(feedChunks(g, [Buffer.from('xy\r'), Buffer.from('\nz\r'), Buffer.from('\n')]), msgs('xy', 'z'));
  // Only one CR is stripped.
  const h = new LineFramer(1024);
  h.push(Buffer.from('q\r\r\n'));
  assert.deepEqual(drain(h), msgs('q\r'));
});

test('blank lines are returned as empty messages (start === end)', () => {
  const f = new LineFramer(1024);
  f.push(Buffer.from('\n\nx\n\r\n'));
  const starts: number[] = [];
  const events: number[] = [];
  for (;;) {
    const ev = f.next();
    if (ev === F_NONE) break;
    events.push(ev);
    starts.push(f.msgEnd - f.msgStart);
  }
  assert.deepEqual(events, [F_MESSAGE, F_MESSAGE, F_MESSAGE, F_MESSAGE]);
  assert.deepEqual(starts, [0, 0, 1, 0]);
});

const LIMIT = 64;

test('a line exactly at the limit passes, in one chunk and trickled', () => {
  const line = 'L'.repeat(LIMIT);
  const stream = Buffer.from(`${line}\nnext\n`);
  assert.deepEqual(feedChunks(new LineFramer(LIMIT), [stream]), msgs(line, 'next'));
  assert.deepEqual(feedChunks(new LineFramer(LIMIT), byteChunks(stream)), msgs(line, 'next'));
  for (let i = 0; i <= stream.length; i++) {
    const got = feedChunks(new LineFramer(LIMIT), [stream.subarray(0, i), stream.subarray(i)]);
    assert.deepEqual(got, msgs(line, 'next'), `split at ${i}`);
  }
});

test('limit+1 in one chunk gives exactly one F_OVERSIZE and the next line arrives intact', () => {
  const f = new LineFramer(LIMIT);
  f.push(Buffer.from(`ok\n${'O'.repeat(LIMIT + 1)}\nafter\n`));
  assert.deepEqual(drain(f), [...msgs('ok'), { ev: F_OVERSIZE }, ...msgs('after')]);
  assert.equal(f.buffered, 0);
});

test('an oversized line whose newline is in a later chunk gives one F_OVERSIZE', () => {
  const f = new LineFramer(LIMIT);
  const got = feedChunks(f, [Buffer.from('O'.repeat(LIMIT * 3)), Buffer.from('O'.repeat(10)), Buffer.from('\nafter\n')]);
  assert.deepEqual(got, [{ ev: F_OVERSIZE }, ...msgs('after')]);
});

test('limit+1 split at every position gives one F_OVERSIZE and the next line intact', () => {
  const stream = Buffer.from(`${'O'.repeat(LIMIT + 1)}\nafter\n`);
  for (let i = 0; i <= stream.length; i++) {
    const got = feedChunks(new LineFramer(LIMIT), [stream.subarray(0, i), stream.subarray(i)]);
    assert.deepEqual(got, [{ ev: F_OVERSIZE }, ...msgs('after')], `split at ${i}`);
  }
});

test('an oversized line trickled byte by byte: one F_OVERSIZE, bounded buffering, next line intact', () => {
  for (const size of [LIMIT + 1, LIMIT * 2, LIMIT * 50]) {
    const f = new LineFramer(LIMIT);
    const stream = Buffer.from(`before\n${'O'.repeat(size)}\nafter\n`);
    const out: Ev[] = [];
    let maxBuffered = 0;
    for (const c of byteChunks(stream)) {
      f.push(c);
      drain(f, out);
      maxBuffered = Math.max(maxBuffered, f.buffered);
    }
    assert.deepEqual(out, [...msgs('before'), { ev: F_OVERSIZE }, ...msgs('after')], `size ${size}`);
    assert.ok(maxBuffered <= LIMIT, `buffered ${maxBuffered} > limit ${LIMIT} (size ${size})`);
    assert.equal(f.buffered, 0);
  }
});

test('an oversized line in 7-byte chunks: one F_OVERSIZE, bounded buffering', () => {
  const f = new LineFramer(LIMIT);
  const stream = Buffer.from(`${'O'.repeat(LIMIT * 10 + 3)}\r\nafter\r\n`);
  const out: Ev[] = [];
  for (let i = 0; i < stream.length; i += 7) {
    f.push(stream.subarray(i, i + 7));
    drain(f, out);
    assert.ok(f.buffered <= LIMIT, `buffered ${f.buffered} after ${i + 7} bytes`);
  }
  assert.deepEqual(out, [{ ev: F_OVERSIZE }, ...msgs('after')]);
});

test('consecutive oversized lines each give one F_OVERSIZE', () => {
  const big = 'B'.repeat(LIMIT + 5);
  const stream = Buffer.from(`${big}\n${big}\nmid\n${big}\n`);
  const expected = [{ ev: F_OVERSIZE }, { ev: F_OVERSIZE }, ...msgs('mid'), { ev: F_OVERSIZE }];
  assert.deepEqual(feedChunks(new LineFramer(LIMIT), [stream]), expected);
  assert.deepEqual(feedChunks(new LineFramer(LIMIT), byteChunks(stream)), expected);
});


test('consumed-byte accounting sums to the bytes pushed once everything is framed', () => {
  const seed = 0x5eed1;
  const rnd = mulberry32(seed);
  const lines: string[] = [];
  for (let i = 0; i < 300; i++) {
    const len = rnd() < 0.1 ? LIMIT + 1 + Math.floor(rnd() * 200) : Math.floor(rnd() * (LIMIT + 1));
    // (no CR on a line of exactly LIMIT bytes: whether the CR counts is not specified)
    lines.push('é'.repeat(Math.floor(len / 4)) + 'a'.repeat(len - 2 * Math.floor(len / 4)) + (len !== LIMIT && rnd() < 0.3 ? '\r' : ''));
  }
  const stream = Buffer.from(lines.map((l) => `${l}\n`).join(''));
  const f = new LineFramer(LIMIT);
  let consumed = 0;
  let messages = 0;
  let oversize = 0;
  let pos = 0;
  while (pos < stream.length) {
    const n = 1 + Math.floor(rnd() * 100);
    f.push(stream.subarray(pos, pos + n));
    pos += n;
    for (;;) {
      const ev = f.next();
      if (ev === F_NONE) break;
      if (ev === F_MESSAGE) messages++;
      else oversize++;
    }
    const c = f.takeConsumed();
    assert.ok(c >= 0);
    consumed += c;
    assert.ok(consumed <= Math.min(pos, stream.length), `seed ${seed}: consumed ${consumed} > pushed ${pos}`);
  }
  assert.equal(consumed, stream.length, `seed ${seed}`);
  assert.equal(f.takeConsumed(), 0);
  const expectedOversize = lines.filter((l) => Buffer.byteLength(l) > LIMIT).length;
  assert.equal(oversize, expectedOversize, `seed ${seed}`);
  assert.equal(messages, lines.length - expectedOversize, `seed ${seed}`);
});

test('takeConsumed() returns bytes since the last call and resets', () => {
  const f = new LineFramer(LIMIT);
  f.push(Buffer.from('abc\nde'));
  assert.equal(f.takeConsumed(), 0, 'nothing framed yet');
  drain(f);
  assert.equal(f.takeConsumed(), 6);
  assert.equal(f.takeConsumed(), 0);
  f.push(Buffer.from('f\n'));
  drain(f);
  assert.equal(f.takeConsumed(), 2);
});

test('multibyte UTF-8 split across chunks is reassembled byte-exact', () => {
  const text = 'ü€𝄞中文🙂Ω';
  const line = Buffer.from(text, 'utf8');
  const stream = Buffer.concat([line, Buffer.from('\n'), line, Buffer.from('\r\n')]);
  for (let i = 0; i <= stream.length; i++) {
    for (const j of [i, Math.min(stream.length, i + 1), Math.min(stream.length, i + 3)]) {
      const f = new LineFramer(1024);
      const got: Buffer[] = [];
      for (const c of [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)]) {
        f.push(c);
        for (;;) {
          const ev = f.next();
          if (ev === F_NONE) break;
          assert.equal(ev, F_MESSAGE);
          got.push(Buffer.from(f.msgBuf.subarray(f.msgStart, f.msgEnd)));
        }
      }
      assert.equal(got.length, 2, `split ${i},${j}`);
      assert.ok(got[0]!.equals(line), `split ${i},${j}: ${got[0]!.toString('hex')}`);
      assert.ok(got[1]!.equals(line), `split ${i},${j}: ${got[1]!.toString('hex')}`);
      assert.equal(got[0]!.toString('utf8'), text);
    }
  }
});

test('empty chunks are ignored', () => {
  const f = new LineFramer(LIMIT);
  f.push(Buffer.alloc(0));
  assert.equal(f.next(), F_NONE);
  f.push(Buffer.from('a'));
  f.push(Buffer.alloc(0));
  f.push(Buffer.from('\n'));
  assert.deepEqual(drain(f), msgs('a'));
});
