// The hostile benchmark's books (bench/hostile.ts): the engine's accounting identity
// read from a /metrics text, and the binary reply splitter its load processes use (bench/lib/frames.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMetrics, engineBooks, parseAttacks } from '../bench/hostile.js';
import { stats } from '../bench/lib/stats.js';
import { MessageReader } from '../bench/lib/frames.js';
import { encodeMessage } from '../src/protocol/binary-protocol.js';

const METRICS = `# HELP radar_ingest_frames_received_total Frames received.
# TYPE radar_ingest_frames_received_total counter
radar_ingest_frames_received_total 100
radar_ingest_frames_in_rings 7
radar_ingest_frames_in_sink 0
radar_ingest_frames_delivered_total 0
radar_ingest_frames_dropped_total{reason="discarded"} 90
radar_ingest_frames_dropped_total{reason="malformed"} 3
radar_ingest_frames_dropped_total{reason="duplicate"} 0
`;

test('the books balance when received = in rings + in sink + delivered + every drop reason', () => {
  const b = engineBooks(parseMetrics(METRICS));
  assert.equal(b.received, 100);
  assert.equal(b.dropped_total, 93);
  assert.deepEqual(b.dropped, { discarded: 90, malformed: 3 });
  assert.equal(b.balanced, true);
});

test('a frame missing from the books is an imbalance', () => {
  const b = engineBooks(parseMetrics(METRICS.replace('received_total 100', 'received_total 101')));
  assert.equal(b.balanced, false);
});

test('latency stats: nearest-rank p99 and max of the samples; empty gives NaN', () => {
  const xs = Array.from({ length: 100 }, (_, i) => i + 1);
  const s = stats(xs);
  assert.equal(s.p50_ms, 51);
  assert.equal(s.p99_ms, 100);
  assert.equal(s.max_ms, 100);
  assert.ok(Number.isNaN(stats([]).p99_ms));
});

test('--attacks: all by default, an unknown name is refused', () => {
  assert.equal(parseAttacks(undefined).length, 6);
  assert.deepEqual(parseAttacks('badurl,storm'), ['badurl', 'storm']);
  assert.throws(() => parseAttacks('badurl,nuke'), /unknown attack nuke/);
});

test('the reply splitter yields whole messages across arbitrary chunk boundaries', () => {
  const bytes = Buffer.concat([encodeMessage({ t: 'welcome', last_seq: 0 }), encodeMessage({ t: 'ack', seq: 5 }), encodeMessage({ t: 'ack', seq: 9 })]);
  for (const cut of [1, 3, 4, 7, bytes.length - 1]) {
    const r = new MessageReader();
    const got: unknown[] = [];
    r.push(bytes.subarray(0, cut), (m) => got.push(m));
    r.push(bytes.subarray(cut), (m) => got.push(m));
    assert.deepEqual(got, [{ t: 'welcome', last_seq: 0 }, { t: 'ack', seq: 5 }, { t: 'ack', seq: 9 }], `cut at ${cut}`);
  }
});
