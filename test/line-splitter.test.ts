// LineSplitter: a child's output chunks to whole lines with a bounded buffer,
// fed exact byte sequences (split points, multi-byte characters, oversize lines).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LineSplitter, TRUNCATED_MARK } from '../src/tracker/line-splitter.js';

describe('LineSplitter', () => {
  test('lines split across chunks are reassembled, the partial tail is kept', () => {
    const s = new LineSplitter();
    assert.deepEqual(s.push('{"a":1}\n{"b"'), ['{"a":1}']);
    assert.equal(s.buffered, 4);
    assert.deepEqual(s.push(':2'), []);
    assert.deepEqual(s.push('}\n{"c":3}\n{"d":'), ['{"b":2}', '{"c":3}']);
    assert.deepEqual(s.push(Buffer.from('4}\r\n\n')), ['{"d":4}'], 'CRLF stripped, empty line skipped');
    assert.equal(s.buffered, 0);
    assert.equal(s.lines, 4);
    assert.equal(s.oversizeLines, 0);
  });

  test('every split point of a byte stream gives the same lines (multi-byte UTF-8 included)', () => {
    const lines = ['{"hex":"ä€"}', '{"x":"😀"}', '{}'];
    const bytes = Buffer.from(lines.join('\n') + '\n', 'utf8');
    for (let cut = 0; cut <= bytes.length; cut++) {
      for (let cut2 = cut; cut2 <= bytes.length; cut2 += 3) {
        const s = new LineSplitter();
        const got = [...s.push(bytes.subarray(0, cut)), ...s.push(bytes.subarray(cut, cut2)), ...s.push(bytes.subarray(cut2))];
        assert.deepEqual(got, lines, `cuts at ${cut}, ${cut2}`);
      }
    }
  });

  test('oversize lines are dropped whole and counted once, the next line survives', () => {
    const s = new LineSplitter({ maxLineBytes: 10 });
    assert.deepEqual(s.push('0123456789\n'), ['0123456789'], 'exactly the limit is kept');
    assert.deepEqual(s.push('0123456789A\nok\n'), ['ok'], 'one byte over, within one chunk');
    assert.equal(s.oversizeLines, 1);
    // Over the limit before its newline arrives: dropped across many chunks, counted once.
    assert.deepEqual(s.push('abcdef'), []);
    assert.deepEqual(s.push('ghijkl'), []);
    assert.equal(s.oversizeLines, 2);
    assert.equal(s.buffered, 0, 'nothing of the oversize line is buffered');
    assert.deepEqual(s.push('mnopqrstuvwxyz'), []);
    assert.deepEqual(s.push('xyz\n{"k":1}\n'), ['{"k":1}']);
    assert.equal(s.oversizeLines, 2);
    assert.equal(s.lines, 3);
  });

  test('end() returns the unterminated last line once', () => {
    const s = new LineSplitter();
    assert.deepEqual(s.push('{"a":1}\n{"trunc'), ['{"a":1}']);
    assert.equal(s.end(), '{"trunc');
    assert.equal(s.end(), null);
    assert.deepEqual(s.push('{"b":2}\n'), ['{"b":2}']);
  });

  test("oversize 'truncate': the first maxLineBytes once, marked, then the rest of the line skipped", () => {
    const s = new LineSplitter({ maxLineBytes: 10, oversize: 'truncate' });
    assert.deepEqual(s.push('0123456789A\nok\n'), [`0123456789${TRUNCATED_MARK}`, 'ok'], 'within one chunk');
    // Over the limit before its newline arrives: returned at once, the rest skipped.
    assert.deepEqual(s.push('abcdef'), []);
    assert.deepEqual(s.push('ghijkl'), [`abcdefghij${TRUNCATED_MARK}`]);
    assert.equal(s.buffered, 0, 'nothing of the oversize line is buffered');
    assert.deepEqual(s.push('mnop\nnext\n'), ['next']);
    assert.equal(s.oversizeLines, 2);
    assert.equal(s.lines, 4, 'truncated lines count as lines');
    assert.equal(s.end(), null, 'a skipped line is not an unterminated one');
  });

  test('many small chunks of one long line are held in bounded memory and come out whole', () => {
    const s = new LineSplitter({ maxLineBytes: 4096 });
    const line = 'x'.repeat(3000);
    for (let i = 0; i < line.length; i += 7) assert.deepEqual(s.push(line.slice(i, i + 7)), []);
    assert.equal(s.buffered, 3000);
    assert.deepEqual(s.push('\n'), [line]);
  });

  test('options are validated with the option name', () => {
    assert.throws(() => new LineSplitter({ maxLineBytes: 0 }), /maxLineBytes must be a positive integer, got 0/);
    assert.throws(() => new LineSplitter({ maxLineBytes: 1.5 }), /maxLineBytes must be a positive integer/);
    assert.throws(() => new LineSplitter({ oversize: 'keep' as never }), /oversize must be 'drop' or 'truncate', got keep/);
  });
});
