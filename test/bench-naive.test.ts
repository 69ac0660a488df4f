// The naive line server of the ingest bench (bench/lib/naive-line.ts) counts what a
// node sends over a real socket: frames split anywhere (inside a multibyte character
// too), lines with a wrong token or not JSON refused, blank lines ignored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { RawServer } from '../bench/lib/raw-server.js';
import { naiveLineConsumer, newNaiveCounts } from '../bench/lib/naive-line.js';
import { until } from './helpers.js';

test('naive line server: frames counted across arbitrary splits, bad lines refused', async () => {
  const counts = newNaiveCounts();
  const raw = new RawServer(() => naiveLineConsumer('tok', counts));
  const { port } = await raw.listen();
  try {
    const good = (i: number): string => `{"node_id":"n","token":"tok","timestamp":${i},"delay":[1,2],"doppler":[3,4],"snr":[5,6],"note":"é${i}"}\n`;
    const text = `${good(1)}\n${good(2)}{"token":"bad","delay":[]}\nnot json\n${good(3)}`;
    const bytes = Buffer.from(text);
    const s = connect({ port, host: '127.0.0.1', noDelay: true });
    await new Promise<void>((r) => s.once('connect', () => r()));
    // One byte at a time around the first 'é' (a 2-byte character), then the rest in 7-byte pieces.
    const cut = bytes.indexOf(0xc3) + 1;
    for (let p = 0; p < bytes.length;) {
      const n = p < cut + 1 ? 1 : 7;
      s.write(bytes.subarray(p, p + n));
      p += n;
    }
    s.end();
    await until(() => counts.frames + counts.refused === 5, 'every line counted or refused');
    assert.deepEqual(counts, { frames: 3, detections: 6, refused: 2 });
  } finally {
    await raw.stop();
  }
});
