// Fuzz of the node decode path, as a shard runs it: line framer + JSON scanner +
// line handler, binary framer + fast path + msgpack decode + binary handler. A real
// Shard (src/shard/shard.ts, the class a worker or `shards: 0` runs) is driven by an
// in-test "main thread" that answers claims with real rings, drains the rings with
// the real RingReader, and records every byte and close the shard asks for.
//
// Cases: valid streams (line frames with 0-50 detections and adsb null/objects,
// heartbeats, blank lines; binary hello then frames/heartbeats, several encodings),
// then structural mutations (wrong types per field, NaN/Infinity/huge numbers,
// unicode and invalid UTF-8, deep nesting, duplicate keys, bad tokens and node ids,
// oversize messages) and raw byte mutations (bit flips, insert/delete, truncation,
// duplicated chunks, random bytes), delivered in random chunk splits, sometimes
// interleaved with an honest connection on the same shard.
//
// Per case: no exception escapes the shard, received = written + dropped by reason
// (counter deltas), every ring record is something a tracker can read, valid
// unmutated frames are all written with their timestamps (and bytes), a sentinel
// frame sent after the mutations still gets through unless the connection was
// closed, closes only for documented fatal reasons (with the binary error message
// first), credits balance, no connection state leaks. Per batch: a deadline (the
// cases run in a worker thread; a hang is reported with the case it hung in).
//
// The harness, generators, oracles and the case runner are in test/fuzz/; the cases run in
// worker threads (test/fuzz/worker.ts).
//
// Replay: FUZZ_SEED=<seed> [FUZZ_FROM=<case>] [FUZZ_CASES=<n>] node --test dist/test/fuzz-shard.test.js

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { KIND_JSON_LINE } from '../src/ring/ring-layout.js';
import { MAX_FRAME, DEFAULT_SEED, DEFAULT_CASES, BATCH, BATCH_DEADLINE_MS, WORKERS, B } from './fuzz/harness.js';
import { lineOracle, newStats, checkRecord, checkLineFrames } from './fuzz/oracles.js';
import { BatchReq, WorkerReply, merge } from './fuzz/worker.js';

const envNum = (k: string, d: number): number => (process.env[k] !== undefined && process.env[k] !== '' ? Number(process.env[k]) : d);
const SEED = envNum('FUZZ_SEED', DEFAULT_SEED) >>> 0;
const FROM = envNum('FUZZ_FROM', 0);
const CASES = envNum('FUZZ_CASES', DEFAULT_CASES);

describe('fuzz: framers and decoders through a real shard', () => {
  test(`${CASES} cases (seed=${SEED}${FROM ? ` from=${FROM}` : ''}): no escape, no hang, every rejection counted`, async () => {
    // Batches go to WORKERS threads (each its own shard, like shard workers); every batch has a deadline.
    const workers = Array.from({ length: WORKERS }, () => {
      const progress = new SharedArrayBuffer(4);
      return { w: new Worker(new URL('./fuzz/worker.js', import.meta.url), { workerData: { fuzz: true, seed: SEED, progress } }), progress: new Int32Array(progress) };
    });
    const total = newStats();
    const t0 = Date.now();
    let next = FROM;
    const runBatches = async (wk: (typeof workers)[number]): Promise<void> => {
      while (next < FROM + CASES) {
        const from = next;
        const to = Math.min(FROM + CASES, from + BATCH);
        next = to;
        const reply = await new Promise<WorkerReply | 'timeout' | Error>((resolve) => {
          const timer = setTimeout(() => resolve('timeout'), BATCH_DEADLINE_MS);
          const done = (v: WorkerReply | Error): void => {
            clearTimeout(timer);
            wk.w.off('message', done);
            wk.w.off('error', done);
            resolve(v);
          };
          wk.w.on('message', done);
          wk.w.on('error', done);
          wk.w.postMessage({ from, to } satisfies BatchReq);
        });
        const at = Atomics.load(wk.progress, 0);
        const replay = `replay: FUZZ_SEED=${SEED} FUZZ_FROM=${at} FUZZ_CASES=1 (or FUZZ_FROM=${from} FUZZ_CASES=${to - from} for the whole batch)`;
        if (reply === 'timeout') throw new Error(`seed=${SEED} case=${at}: batch ${from}-${to} did not finish within ${BATCH_DEADLINE_MS} ms (hang)\n${replay}`);
        if (reply instanceof Error) throw new Error(`seed=${SEED} case=${at}: the fuzz worker died: ${reply.message}\n${replay}`);
        if (reply.t === 'fail') throw new Error(`seed=${SEED} case=${reply.index}: ${reply.message}\n${replay}\n${reply.stream ?? ''}`);
        merge(total, reply.stats);
      }
    };
    try {
      await Promise.all(workers.map((wk) => runBatches(wk)));
    } finally {
      next = Infinity; // the other workers stop after their batch
      await Promise.all(workers.map((wk) => wk.w.terminate()));
    }
    const s = (Date.now() - t0) / 1000;
    console.log(`fuzz seed=${SEED}: ${total.cases} cases in ${s.toFixed(1)} s = ${Math.round(total.cases / s)} cases/s; ` +
      `line ${total.line}, binary ${total.binary}; valid ${total.valid}, structural ${total.structural}, raw ${total.raw}; ` +
      `with a neighbour ${total.companions}; sentinels checked ${total.sentinelsChecked}; frames written ${total.framesWritten}`);
    console.log(`  fed ${(total.bytesFed / 1e6).toFixed(1)} MB in ${total.chunksFed} chunks; drops ${JSON.stringify(total.drops)}; closes ${JSON.stringify(total.closes)}`);
    if (Object.keys(total.knownBugEscapes).length > 0) {
      console.log(`  KNOWN BUGS hit: escapes ${JSON.stringify(total.knownBugEscapes)} ${total.firstKnownBugCase >= 0 ? `(first escape at case ${total.firstKnownBugCase}) ` : ''}`);
    }
    assert.equal(total.cases, CASES);
    // The run exercised what it claims to (a generator regression would make it vacuous).
    if (CASES >= 10000) {
      for (const r of ['malformed', 'invalid_utf8', 'invalid_frame', 'frame_too_large', 'auth_failed', 'duplicate']) {
        assert.ok((total.drops[r] ?? 0) > 0, `no case was dropped as ${r}`);
      }
      for (const r of ['auth_failed', 'protocol_error', 'unsupported_version', 'frame_too_large']) {
        assert.ok((total.closes[r] ?? 0) > 0, `no case was closed for ${r}`);
      }
      assert.ok(total.sentinelsChecked > CASES / 4, 'sentinels checked');
      assert.ok(total.companions > CASES / 10, 'neighbour connections ran');
    }
  });

  test('the oracles and checks can fail (a silently skipped line, a lost frame)', () => {
    // lineOracle counts a line the handler must account for.
    assert.deepEqual(lineOracle(B('{"a":1}\n\n{"type":"heartbeat"}\r\n')), { min: 1, max: 2 });
    assert.deepEqual(lineOracle(B(`${'x'.repeat(MAX_FRAME + 1)}`)), { min: 1, max: 1 });
    // A record a tracker cannot read is caught.
    assert.throws(() => checkRecord({ kind: KIND_JSON_LINE, timestamp: 5, detections: 1, payload: B('{"timestamp":5,"delay":[1],"doppler":[],"snr":[1]}\n') }, newStats()));
    // A frame missing from a ring is caught.
    assert.throws(() => checkLineFrames([], [{ ts: 1, n: 0, obj: {} }], 'x'));
  });
});
