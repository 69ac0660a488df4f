// The drain-only sink's probe (EngineProbe.onSinkDrain): a probe that watches some
// nodes (drainsNode) gets only their bytes; the others are discarded without a copy,
// and every frame is still counted as discarded.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEngine, Client, until, scrape, assertAccounting, lineFrame } from './helpers.js';
import type { Engine } from '../src/engine/engine.js';

const engines: Engine[] = [];
after(async () => {
  await Promise.all(engines.map((e) => e.stop()));
});

test('the probe sees only the nodes it watches; the others are still drained and counted', async () => {
  const seen = new Map<string, number>();
  const engine = await startEngine({ shards: 0, sink: 'discard' }, {
    probe: {
      onSinkDrain: (node, b) => seen.set(node, (seen.get(node) ?? 0) + b.length),
      drainsNode: (node) => node.startsWith('watched-'),
    },
  });
  engines.push(engine);
  const c = await Client.open(engine.tcpAddress!.port);
  const N = 50;
  const parts: string[] = [];
  for (let i = 1; i <= N; i++) parts.push(lineFrame('watched-1', 1_700_000_000_000 + i), lineFrame('other-1', 1_700_000_000_000 + i));
  await c.send(parts.join(''));
  await until(async () => (await scrape(engine)).get('radar_ingest_frames_dropped_total{reason="discarded"}') === 2 * N, 'every frame drained');
  assert.ok((seen.get('watched-1') ?? 0) > 0, 'the watched node\'s records reached the probe');
  assert.equal(seen.has('other-1'), false, 'the other node\'s records did not');
  await assertAccounting(engine);
  c.destroy();
});
