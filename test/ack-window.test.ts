// The pieces of acks that mean delivered, without sockets: the shard's window of
// settled seqs, the ring header's delivered position (written by the consumer,
// awaited by the producer), and the feeder publishing it only once a batch's
// write reached the OS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AckWindow } from '../src/shard/ack-window.js';
import { RingWriter } from '../src/ring/ring-writer.js';
import { RingReader, createRingBuffer } from '../src/ring/ring-reader.js';
import { writePackedFrame } from '../src/ring/record-codec.js';
import { RingFeeder, type FeederTarget } from '../src/tracker/ring-feeder.js';
import { readAckedSeq, writeResumePoint } from '../src/ring/resume-point.js';

test('AckWindow: acks the highest seq whose position is delivered, never moves back', () => {
  const w = new AckWindow(0);
  w.settle(3, 3);
  w.settle(3, 4); // rejected at the same position: settles with it
  w.settle(7, 9);
  assert.equal(w.size, 2);
  assert.equal(w.advance(2), -1);
  assert.equal(w.advance(3), 4);
  assert.equal(w.advance(6), -1);
  assert.equal(w.advance(7), 9);
  assert.equal(w.size, 0);
  w.settle(8, 9); // a duplicate: nothing new
  assert.equal(w.size, 0);
  assert.equal(w.acked, 9);
});

test('AckWindow: bounded; when full the newest entry waits for the later position (acks later, never early)', () => {
  const w = new AckWindow(0, 4);
  for (let i = 1; i <= 10; i++) w.settle(i, i);
  assert.equal(w.size, 4);
  assert.equal(w.advance(3), 3);
  assert.equal(w.advance(9), -1, 'seqs 4..9 were merged into the entry for position 10');
  assert.equal(w.advance(10), 10);
});

test('AckWindow: positions wrap at 2^32', () => {
  const w = new AckWindow(100);
  w.settle(0xfffffffe, 101);
  w.settle(2, 105);
  assert.equal(w.advance(0xffffffff), 101);
  assert.equal(w.advance(1), -1);
  assert.equal(w.advance(2), 105);
});

function frame(w: RingWriter, ts: number): void {
  const det = Buffer.alloc(24);
  det.writeDoubleLE(1, 0);
  assert.ok(writePackedFrame(w, det, 1, null, ts, () => undefined) >= 0);
  w.flush();
}

test('ring header: take() delivers nothing, publishDelivered() does and wakes a waiting producer; read() and discard() deliver', async () => {
  const sab = createRingBuffer(1 << 16);
  const w = new RingWriter(sab, 'block');
  const r = new RingReader(sab);
  frame(w, 1);
  frame(w, 2);
  const b = r.take()!;
  assert.equal(b.frames, 2);
  assert.equal(b.end, 2);
  assert.equal(w.deliveredFrames, 0);
  const wait = w.waitForDelivered(0, 5000);
  assert.ok(wait !== null);
  const t0 = Date.now();
  r.publishDelivered(b.end);
  await wait;
  assert.ok(Date.now() - t0 < 1000, 'woken by the consumer, not by the timeout');
  assert.equal(w.deliveredFrames, 2);
  assert.equal(w.waitForDelivered(1, 5000), null, 'already past what the producer saw');
  r.publishDelivered(1); // never back
  assert.equal(w.deliveredFrames, 2);
  frame(w, 3);
  assert.equal(r.read()!.end, 3);
  assert.equal(w.deliveredFrames, 3);
  frame(w, 4);
  assert.equal(r.discard(false), 1);
  assert.equal(w.deliveredFrames, 3, 'thrown away at shutdown: not delivered');
  frame(w, 5);
  r.discard();
  assert.equal(w.deliveredFrames, 5);
});

test('ACKED_SEQ: read from the header; moving the resume point back lowers it', () => {
  const sab = createRingBuffer(1 << 16);
  const w = new RingWriter(sab, 'block');
  w.lastSeq = 40;
  w.ackedSeq = 30;
  assert.equal(readAckedSeq(sab), 30);
  writeResumePoint(sab, 20);
  assert.equal(readAckedSeq(sab), 20);
});

/** A tracker input whose write callbacks the test completes (or fails) by hand. */
class ManualTarget implements FeederTarget {
  writable = true;
  pending: Array<(err: Error | null) => void> = [];
  write(_buf: Buffer, done?: (err: Error | null) => void): boolean {
    this.pending.push(done ?? (() => undefined));
    return true;
  }
  whenWritable(): Promise<void> {
    return Promise.resolve();
  }
}

test('feeder: a batch counts as delivered when its write succeeded, not when it was taken; skipped frames wait for the writes before them', () => {
  const sab = createRingBuffer(1 << 16);
  const w = new RingWriter(sab, 'block');
  const r = new RingReader(sab);
  const t = new ManualTarget();
  const f = new RingFeeder({ reader: r, tracker: t });
  frame(w, 10);
  frame(w, 20);
  f.pump();
  assert.equal(t.pending.length, 1);
  assert.equal(w.deliveredFrames, 0, 'taken, still queued in this process');
  frame(w, 20); // same timestamp: skipped by the feeder, nothing written
  f.pump();
  assert.equal(t.pending.length, 1);
  assert.equal(w.deliveredFrames, 0, 'the skipped frame waits for the write before it');
  frame(w, 30);
  f.pump();
  assert.equal(t.pending.length, 2);
  t.pending[0]!(new Error('tracker died'));
  assert.equal(w.deliveredFrames, 0, 'a failed write delivers nothing');
  t.pending[1]!(null);
  assert.equal(w.deliveredFrames, 4, 'a later success covers the lost and skipped frames');
  assert.equal(f.lostInFlight, 2);
  assert.equal(f.framesFed, 1);
  f.close();
});
