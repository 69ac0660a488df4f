// Floods of distinct ids against an engine with small limits: the node table,
// the rings' memory and every per-id map stay bounded, refusals are counted on
// /metrics, refusal logs are rate limited, and every frame is accounted for.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Engine } from '../src/engine/engine.js';
import type { NodeHooks } from '../src/nodes/node-table.js';
import { encodeFrame } from '../src/protocol/binary-protocol.js';
import { Worker } from 'node:worker_threads';
import { setImmediate as tick } from 'node:timers/promises';
import { RingWriter } from '../src/ring/ring-writer.js';
import { RingReader, createRingBuffer } from '../src/ring/ring-reader.js';
import { HEAD64, REWIND_BYTES, posBytes } from '../src/ring/ring-layout.js';
import { testConfig, Client, until, scrape, assertAccounting, lineFrame, binaryHello } from './helpers.js';
import { checkPayload, payloadLen, writePayload, PRODUCER_KIND, type ProducerResult } from './fixtures/ring-producer.js';

const MiB = 1024 * 1024;

/** Resident set of this process (the engine runs in it), from the kernel. */
function rssBytes(): number {
  const t = readFileSync('/proc/self/smaps_rollup', 'utf8');
  return Number(/^Rss:\s+(\d+) kB/m.exec(t)![1]) * 1024;
}

/** An engine whose pino output is kept line by line. */
async function startCapturing(over: Record<string, unknown>, hooks?: NodeHooks): Promise<{ e: Engine; lines: Record<string, any>[] }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const lines: Record<string, any>[] = []; // eslint-disable-line @typescript-eslint/no-explicit-any
  let rest = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const parts = (rest + chunk.toString('utf8')).split('\n');
      rest = parts.pop()!;
      for (const p of parts) if (p !== '') lines.push(JSON.parse(p));
      cb();
    },
  });
  const e = new Engine({
    config: testConfig({ log: { level: 'info' }, ...over }), logger: pino({ level: 'info' }, sink), testHooks: true,
    sweepMs: 20, agentSweepMs: 50, ...(hooks ? { hooks } : {}),
  });
  await e.start();
  return { e, lines };
}

/** Opens a line connection for `node` and sends one frame. */
async function lineNode(port: number, node: string): Promise<Client> {
  const c = await Client.open(port);
  await c.send(lineFrame(node, Date.now()));
  return c;
}

const metric = (m: Map<string, number>, k: string): number => m.get(k) ?? 0;

/** Waits (with a deadline) until the host has closed the client's connection. */
const closedByHost = (c: Client, what: string): Promise<true> => until(() => c.closed, what, 5000);

describe('hostile ids: node table and per-id maps', () => {
  test('limits.max_nodes refuses new node ids (counted, RADAR_ERR_MAX_NODES); rings of nodes gone for limits.node_release_ms are released with their resume point kept; quiet rings stay small', { timeout: 120_000 }, async () => {
    const RING = 16 * MiB;
    // The shard on the main thread: a worker's malloc arena adds tens of MiB of noise to RSS.
    const { e } = await startCapturing({ shards: 0, limits: { max_nodes: 12, node_release_ms: 500 }, ring: { size_bytes: RING } });
    const port = e.tcpAddress!.port;
    try {
      // A binary node settles seqs 1..5.
      const { c: b1, m: w1 } = await binaryHello(port, 'bin-1');
      assert.equal(w1.t, 'welcome');
      assert.equal(w1.last_seq, 0);
      for (let seq = 1; seq <= 5; seq++) await b1.send(encodeFrame({ seq, timestamp: Date.now(), delay: [1], doppler: [2], snr: [3] }));
      await until(() => b1.messages().some((m) => m.t === 'ack' && m.seq === 5), 'ack of seq 5');

      // Eight nodes each push more than their ring's size, paced as real nodes are
      // (the sink keeps up). Each ring may only commit what it needed, not 16 MiB.
      const rss0 = rssBytes();
      const frame = Buffer.from(lineFrame('x', Date.now(), 150)); // ~4 KB
      const perNode = Math.ceil((RING + MiB) / frame.length);
      const busy = await Promise.all(Array.from({ length: 8 }, () => Client.open(port)));
      const frames = busy.map((_, i) => Buffer.from(lineFrame(`busy-${i}`, Date.now(), 150)));
      const before = e.totals().consumed;
      let sent = 0;
      for (let round = 0; sent < perNode; round++) {
        const n = Math.min(16, perNode - sent);
        await Promise.all(busy.map((c, i) => c.send(Buffer.concat(Array(n).fill(frames[i]!)))));
        sent += n;
        await until(() => e.totals().consumed - before >= sent * busy.length, 'busy frames consumed');
      }
      const grown = rssBytes() - rss0;
      assert.ok(grown < 80 * MiB, `8 nodes x ${(sent * frame.length / MiB).toFixed(1)} MiB through ${RING / MiB} MiB rings grew RSS by ${(grown / MiB).toFixed(1)} MiB`);

      // 9 nodes + 3 more fill the table (all connected, none released); then new ids are refused.
      const extra = await Promise.all(Array.from({ length: 3 }, (_, i) => lineNode(port, `extra-${i}`)));
      await until(async () => metric(await scrape(e), 'radar_ingest_nodes') === 12, '12 nodes');
      // A refused line node keeps its connection (it may carry other nodes); its frame is dropped.
      const refusedLine = await Promise.all(Array.from({ length: 20 }, (_, i) => lineNode(port, `flood-${i}`)));
      await until(async () => metric(await scrape(e), 'radar_ingest_frames_dropped_total{reason="node_refused"}') === 20, '20 line frames refused');
      assert.ok(refusedLine.every((c) => !c.closed), 'refused line connections stay open');
      const { c: bRefused, m: err } = await binaryHello(port, 'bin-flood');
      assert.equal(err.t, 'error');
      assert.equal(err.code, 'RADAR_ERR_MAX_NODES');
      await closedByHost(bRefused, 'bin-flood closed');
      // The shard reports the rejection after it closed the socket: wait for the count, then check it stays exact.
      await until(async () => metric(await scrape(e), 'radar_ingest_connections_rejected_total{reason="max_nodes"}') >= 1, 'the rejection counted');
      let m = await scrape(e);
      assert.ok(metric(m, 'radar_ingest_nodes') <= 12);
      assert.equal(metric(m, 'radar_ingest_connections_rejected_total{reason="max_nodes"}'), 1, 'only the binary connection is closed');
      assert.equal(metric(m, 'radar_ingest_node_claims_refused_total{reason="max_nodes"}'), 21);
      assert.equal(metric(m, 'radar_ingest_frames_dropped_total{reason="node_refused"}'), 20, 'each refused line node\'s frame is counted');
      for (const c of [b1, ...busy, ...extra, ...refusedLine]) c.destroy();

      // Everybody left: after node_release_ms every ring is released (its frames
      // were consumed first), and the totals did not go down.
      const consumedBefore = metric(m, 'radar_ingest_frames_consumed_total');
      m = await until(async () => {
        const s = await scrape(e);
        return metric(s, 'radar_ingest_nodes') === 0 ? s : null;
      }, 'every ring released', 10000);
      assert.equal(metric(m, 'radar_ingest_nodes_released_total'), 12);
      assert.equal(metric(m, 'radar_ingest_ring_capacity_bytes'), 0);
      assert.ok(metric(m, 'radar_ingest_frames_consumed_total') >= consumedBefore);
      await assertAccounting(e);

      // A released binary node resumes where it was: its welcome says last_seq 5 and a resend of 5 is a duplicate.
      const { c: b2, m: w2 } = await binaryHello(port, 'bin-1');
      assert.equal(w2.t, 'welcome');
      assert.equal(w2.last_seq, 5, 'resume point kept across the release');
      await b2.send(encodeFrame({ seq: 5, timestamp: Date.now(), delay: [1], doppler: [2], snr: [3] }));
      await b2.send(encodeFrame({ seq: 6, timestamp: Date.now(), delay: [1], doppler: [2], snr: [3] }));
      await until(() => b2.messages().some((m2) => m2.t === 'ack' && m2.seq === 6), 'ack of seq 6');
      m = await assertAccounting(e);
      assert.equal(metric(m, 'radar_ingest_frames_dropped_total{reason="duplicate"}'), 1);
      b2.destroy();
    } finally {
      await e.stop();
    }
  });

  const floods = [
    { by: 'limits.max_nodes', code: 'RADAR_ERR_MAX_NODES', reason: 'max_nodes', maxNodes: 4 },
    { by: 'provisioning', code: 'RADAR_ERR_NODE_REFUSED', reason: 'node_refused', maxNodes: 256 },
  ] as const;
  for (const f of floods) test(`a flood of distinct node ids refused by ${f.by} leaves bounded per-id maps, a bounded log and bounded memory; refusals are counted and summed up in one suppressed-count line`, { timeout: 120_000 }, async () => {
    // Provisioning refuses every node but the four kept ones (as a sink without free tracker ports would).
    const hooks: NodeHooks = {
      onUnknownNode: (info) => (info.node.startsWith('keep-') ? { accept: true }
        : { accept: false, reason: 'ports_exhausted', message: `no free tracker port for node ${info.node}` }),
    };
    const { e, lines } = await startCapturing({ limits: { max_nodes: f.maxNodes, node_release_ms: 0, reconnect_max: 5 } }, hooks);
    const port = e.tcpAddress!.port;
    try {
      const keep = await Promise.all(Array.from({ length: 4 }, (_, i) => lineNode(port, `keep-${i}`)));
      await until(() => e.nodes.nodes.size === 4, '4 nodes');
      const warnBefore = lines.filter((l) => l.level >= 40).length;
      const rss0 = rssBytes();
      const IDS = 1600;
      let refusedBinary = 0;
      const lineConns: Client[] = [];
      const dropped0 = metric(await scrape(e), 'radar_ingest_frames_dropped_total{reason="node_refused"}');
      for (let b = 0; b < IDS; b += 100) {
        await Promise.all(Array.from({ length: 100 }, async (_, i) => {
          const id = `flood-${b + i}`;
          if (i % 10 === 0) {
            const { c, m: reply } = await binaryHello(port, id);
            if (reply.code === f.code) refusedBinary++;
            await closedByHost(c, `${id} closed`);
          } else {
            // A refused line node keeps its connection; the client leaves once its frame is counted.
            const c = await lineNode(port, id);
            lineConns.push(c);
          }
        }));
        const lineSoFar = lineConns.length;
        await until(async () => metric(await scrape(e), 'radar_ingest_frames_dropped_total{reason="node_refused"}') - dropped0 >= lineSoFar, `${lineSoFar} line frames refused`, 10000);
        for (const c of lineConns.splice(0)) c.destroy();
      }
      assert.equal(refusedBinary, IDS / 10);
      // Every claim is refused before its frame is dropped; wait for the last ones to be counted.
      const m = await until(async () => {
        const s = await scrape(e);
        return metric(s, `radar_ingest_node_claims_refused_total{reason="${f.reason}"}`) >= IDS ? s : null;
      }, `${IDS} claims refused`, 10000);
      assert.equal(metric(m, `radar_ingest_connections_rejected_total{reason="${f.reason}"}`), IDS / 10, 'binary connections are closed');
      assert.equal(metric(m, `radar_ingest_node_claims_refused_total{reason="${f.reason}"}`), IDS);
      assert.equal(metric(m, 'radar_ingest_nodes'), 4);
      // Every map kept per id is bounded (LRU of max(1024, 4 x max_nodes)) or emptied.
      assert.ok(metric(m, 'radar_ingest_id_map_entries{map="flap_guard"}') <= 1024, 'flap guard bounded');
      assert.ok(metric(m, 'radar_ingest_id_map_entries{map="flap_guard"}') >= 1000, 'flap guard remembers recent ids');
      assert.equal(metric(m, 'radar_ingest_id_map_entries{map="nodes"}'), 4);
      assert.equal(metric(m, 'radar_ingest_id_map_entries{map="claims"}'), 0);
      assert.ok(metric(m, 'radar_ingest_id_map_entries{map="log_limit"}') <= 32, 'log rate-limit keys are reasons, not ids');
      const grown = rssBytes() - rss0;
      assert.ok(grown < 64 * MiB, `RSS grew ${(grown / MiB).toFixed(1)} MiB`);
      // The rate limit is global: a handful of warn lines, not one per id.
      const warns = lines.filter((l) => l.level >= 40).length - warnBefore;
      assert.ok(warns <= 40, `${warns} warn lines for ${IDS} refused ids`);
      for (const c of keep) c.destroy();
      await assertAccounting(e);
    } finally {
      await e.stop();
    }
    const summary = lines.find((l) => typeof l.msg === 'string' && /^\d+ refusals suppressed in the last 10 s$/.test(l.msg));
    assert.ok(summary, 'the suppressed refusals are summed up in one line');
    assert.ok(summary.suppressed >= 1500, `suppressed ${summary.suppressed}`);
  });
});

describe('hostile ids: ring memory', () => {
  test('a ring its consumer keeps up with is written only in its first pages, records intact', () => {
    const CAP = 1 << 22;
    const sab = createRingBuffer(CAP);
    const w = new RingWriter(sab, 'block');
    const r = new RingReader(sab);
    const head = new BigUint64Array(sab, 0, 2);
    let maxOff = 0;
    let seq = 0;
    // 8 x the ring's size through it, a batch of 4 records at a time, each batch read at once.
    for (let total = 0; total < 8 * CAP; seq += 4) {
      for (let k = 0; k < 4; k++) {
        const len = 1000 + payloadLen(seq + k);
        const off = w.reserve(len, seq + k, PRODUCER_KIND, 0);
        assert.ok(off >= 0);
        writePayload(w.bytes, off, seq + k);
        w.commit();
        total += len;
      }
      w.flush();
      maxOff = Math.max(maxOff, posBytes(Atomics.load(head, HEAD64)) & (CAP - 1));
      const b = r.read()!;
      let k = 0;
      for (const rec of b.records()) {
        assert.equal(checkPayload(rec.payload.subarray(0, payloadLen(seq + k))), seq + k);
        k++;
      }
      assert.equal(k, 4);
    }
    assert.ok(maxOff < REWIND_BYTES + 8 * 1024, `the write position reached ${maxOff} of ${CAP}`);
    assert.equal(r.consumedFrames, seq);
  });

  for (const policy of ['block', 'drop-oldest'] as const) {
    test(`a concurrent producer rewinding an emptied ring (${policy}): every record arrives intact and in order`, { timeout: 20000 }, async () => {
      const N = 200_000;
      const sab = createRingBuffer(1 << 18);
      const reader = new RingReader(sab);
      const worker = new Worker(new URL('./fixtures/ring-producer.js', import.meta.url), {
        workerData: { sab, policy, count: N, batch: 16, keepAlive: true },
      });
      let result: ProducerResult | null = null;
      let error: unknown = null;
      worker.on('message', (m: ProducerResult) => { result = m; });
      worker.on('error', (e) => { error = e; });
      const seqs: number[] = [];
      const t0 = Date.now();
      try {
        for (;;) {
          const b = reader.read();
          if (b) {
            for (const rec of b.records()) seqs.push(checkPayload(rec.payload));
            continue;
          }
          if (error) throw error;
          if (result) break;
          if (Date.now() - t0 > 15000) throw new Error(`producer did not finish (${seqs.length} received)`);
          await tick();
        }
      } finally {
        await worker.terminate();
      }
      const dropped = (result as ProducerResult | null)!.dropped;
      assert.equal(seqs.length + dropped, N);
      if (policy === 'block') assert.equal(dropped, 0);
      for (let i = 1; i < seqs.length; i++) if (seqs[i]! <= seqs[i - 1]!) assert.fail(`position ${i}: ${seqs[i]} after ${seqs[i - 1]}`);
    });
  }
});
