// A connection's framing state crossing shards (placement moves): at any chunk
// boundary the framer hands over its unframed bytes (leftover()) and a fresh framer
// that starts from them frames exactly the messages the old one would have, and
// every byte is credited once per shard that took it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LineFramer, F_MESSAGE, F_NONE } from '../src/shard/line/line-framer.js';
import { BinaryFramer } from '../src/shard/binary/binary-framer.js';
import { mulberry32 } from './prng.js';

type Framer = LineFramer | BinaryFramer;

/** Feeds `data` in random chunks, replacing the framer by a fresh one fed its leftover after many of them. */
function frameAcrossMoves(data: Buffer, make: () => Framer, seed: number): { msgs: string[]; moves: number; credited: number; extra: number } {
  const rnd = mulberry32(seed);
  let f = make();
  const msgs: string[] = [];
  let moves = 0;
  let credited = 0;
  let extra = 0;
  const drain = (): void => {
    for (let ev = f.next(); ev !== F_NONE; ev = f.next()) {
      assert.equal(ev, F_MESSAGE);
      msgs.push(f.msgBuf.subarray(f.msgStart, f.msgEnd).toString('latin1'));
    }
    credited += f.takeConsumed();
  };
  for (let p = 0; p < data.length;) {
    const n = 1 + Math.floor(rnd() * 40);
    f.push(data.subarray(p, p + n));
    p += n;
    drain();
    if (rnd() < 0.3) {
      const left = f.leftover();
      assert.ok(left !== null);
      credited += f.takeConsumed();
      f = make();
      moves++;
      if (left.length > 0) {
        extra += left.length;
        f.push(left);
        drain();
      }
    }
  }
  drain();
  return { msgs, moves, credited, extra };
}

test('line framer: partial lines move with the connection', () => {
  const lines = Array.from({ length: 400 }, (_, i) => `{"node_id":"n","timestamp":${i},"pad":"${'x'.repeat(i % 50)}"}`);
  const data = Buffer.from(lines.map((l) => `${l}\n`).join(''));
  const r = frameAcrossMoves(data, () => new LineFramer(1 << 20), 1);
  assert.deepEqual(r.msgs, lines);
  assert.ok(r.moves > 100 && r.extra > 0, `moves ${r.moves}, bytes handed over ${r.extra}`);
  assert.equal(r.credited, data.length + r.extra, 'each byte credited once per shard that framed it');
});

test('binary framer: partial headers and messages move with the connection', () => {
  const bodies = Array.from({ length: 400 }, (_, i) => Buffer.from(`msg-${i}-${'y'.repeat(i % 70)}`, 'latin1'));
  const data = Buffer.concat(bodies.flatMap((b) => {
    const h = Buffer.alloc(4);
    h.writeUInt32BE(b.length, 0);
    return [h, b];
  }));
  const r = frameAcrossMoves(data, () => new BinaryFramer(1 << 20), 2);
  assert.deepEqual(r.msgs, bodies.map((b) => b.toString('latin1')));
  assert.ok(r.moves > 100 && r.extra > 0);
  assert.equal(r.credited, data.length + r.extra);
});

test('a framer skipping an over-long message does not hand over (the move waits)', () => {
  const lf = new LineFramer(8);
  lf.push(Buffer.from('0123456789abcdef'));
  lf.next();
  assert.equal(lf.leftover(), null);
  const bf = new BinaryFramer(8);
  const h = Buffer.alloc(4);
  h.writeUInt32BE(20, 0);
  bf.push(Buffer.concat([h, Buffer.alloc(5)]));
  bf.next();
  assert.equal(bf.leftover(), null);
});
