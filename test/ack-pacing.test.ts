// Acks to a binary node that sends without pause: at most one every
// ACK_MIN_INTERVAL_MS (acks are cumulative), each carrying the latest seq, and
// every frame acked in the end; a heartbeat is still answered at once. Real
// engine, real sockets, the drain-only sink, both ack modes, decoded on a worker
// and on the main thread.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import type { Engine } from '../src/engine/engine.js';
import { binaryHello, binaryMessages, startEngine, until, type Client } from './helpers.js';
import { encodeFrame, encodeMessage, T_HEARTBEAT } from '../src/protocol/binary-protocol.js';
import { ACK_MIN_INTERVAL_MS } from '../src/shard/ack-pacing.js';

const engines: Engine[] = [];
after(async () => {
  await Promise.all(engines.map((e) => e.stop()));
});

const T0 = 1_757_400_000_000;
const frame = (seq: number): Buffer => encodeFrame({ seq, timestamp: T0 + 10 * seq, delay: [10.5, 20.5], doppler: [-1.5, 2.5], snr: [7.5, 8.5] });
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 1));

/** The acks a connection receives, with when each chunk holding them arrived (performance.now()). */
function ackLog(c: Client): Array<{ at: number; seq: number }> {
  const log: Array<{ at: number; seq: number }> = [];
  let buf = Buffer.alloc(0);
  c.socket.on('data', (d: Buffer) => {
    const at = performance.now();
    buf = Buffer.concat([buf, d]);
    let p = 0;
    while (p + 4 <= buf.length && p + 4 + buf.readUInt32BE(p) <= buf.length) {
      const n = buf.readUInt32BE(p);
      const m = binaryMessages(buf.subarray(p, p + 4 + n))[0]!;
      if (m.t === 'ack') log.push({ at, seq: m.seq as number });
      p += 4 + n;
    }
    buf = buf.subarray(p);
  });
  return log;
}

for (const shards of [1, 0]) {
  for (const ack of ['delivered', 'ring'] as const) {
    test(`a node sending 400 batches in 0.4 s gets at most one ack per ${ACK_MIN_INTERVAL_MS} ms, the last one for its last frame; a heartbeat is answered at once (ack ${ack}, shards: ${shards})`, async () => {
      const e = await startEngine({ shards, tcp_server: { ack } });
      engines.push(e);
      const { c, m } = await binaryHello(e.tcpAddress!.port, `pace-${ack}-${shards}`, 15_000);
      assert.equal(m.t, 'welcome');
      const acks = ackLog(c);
      // 400 batches of 5 frames, one per millisecond or so: each is its own read and batch on the host.
      let seq = 0;
      const t0 = performance.now();
      for (let b = 0; b < 400; b++) {
        const parts: Buffer[] = [];
        for (let k = 0; k < 5; k++) parts.push(frame(++seq));
        await c.send(Buffer.concat(parts));
        await tick();
      }
      const last = await until(() => acks.find((a) => a.seq === seq), `the ack of frame ${seq}`, 15_000);
      const span = last.at - t0;
      // Acks are cumulative and in order.
      for (let i = 1; i < acks.length; i++) assert.ok(acks[i]!.seq >= acks[i - 1]!.seq, `ack ${acks[i]!.seq} after ${acks[i - 1]!.seq}`);
      // One per batch would be ~400; paced, at most one per interval (plus the first).
      const most = Math.ceil(span / ACK_MIN_INTERVAL_MS) + 2;
      assert.ok(acks.length <= most, `${acks.length} acks in ${Math.round(span)} ms (at most ${most})`);
      assert.ok(acks.length >= 2, `${acks.length} acks`);
      // A heartbeat is answered with the current ack at once, even right after an ack.
      const before = acks.length;
      await c.send(encodeMessage({ t: T_HEARTBEAT }));
      await until(() => acks.length > before, 'the reply to a heartbeat', 5_000);
      assert.equal(acks.at(-1)!.seq, seq);
      c.destroy();
    });
  }
}
