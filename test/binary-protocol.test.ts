// The binary protocol over real sockets: hello/welcome, frames with sequence
// numbers, cumulative acks, resume without loss or duplicates, errors before close.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { engineFixtures, Client, until, scrape, assertAccounting, TOKEN, helloOn } from './helpers.js';
import { encodeHello, encodeFrame, encodeMessage } from '../src/protocol/binary-protocol.js';
import type { NodeInfo } from '../src/nodes/node-table.js';

function frame(seq: number, ts: number, n = 3): Buffer {
  const d = Array.from({ length: n }, (_, i) => 10 + i + 0.25);
  return encodeFrame({ seq, timestamp: ts, delay: d, doppler: d.map((x) => -x), snr: d.map((x) => x / 2) });
}

const hello = (c: Client, node: string, token = TOKEN): Promise<Record<string, any>> => helloOn(c, node, { token }); // eslint-disable-line @typescript-eslint/no-explicit-any

for (const shards of [1, 0]) {
  describe(`binary protocol (shards: ${shards})`, () => {
    const setup = engineFixtures({ shards });

    test('hello with the right token is welcomed; frames are routed and acked cumulatively', async () => {
      const { engine, sink, port } = await setup();
      const c = await Client.open(port);
      const w = await hello(c, 'bin-1');
      assert.equal(w.t, 'welcome');
      assert.equal(w.node, 'bin-1');
      assert.equal(w.last_seq, 0);
      await c.send(Buffer.concat([frame(1, 1000), frame(2, 1500), frame(3, 2000)]));
      await until(() => sink.of('bin-1').length === 3, 'frames');
      const f = sink.of('bin-1');
      assert.deepEqual(f.map((x) => x.timestamp), [1000, 1500, 2000]);
      assert.deepEqual(JSON.parse(f[0]!.line), { timestamp: 1000, delay: [10.25, 11.25, 12.25], doppler: [-10.25, -11.25, -12.25], snr: [5.125, 5.625, 6.125] });
      await until(() => c.messages().some((m) => m.t === 'ack' && m.seq === 3), 'ack 3');
      c.destroy();
      await assertAccounting(engine);
    });

    test('an invalid token gets an error message, then the connection closes', async () => {
      const { sink, port, engine } = await setup();
      const c = await Client.open(port);
      await c.send(encodeHello('bin-2', 'nope'));
      await c.closedP;
      const err = c.messages().find((m) => m.t === 'error');
      assert.equal(err?.code, 'RADAR_ERR_AUTH_FAILED');
      assert.equal(err?.fatal, true);
      assert.equal(sink.frames.length, 0);
      assert.equal((await scrape(engine)).get('radar_ingest_connections_rejected_total{reason="auth_failed"}'), 1);
    });

    test('a frame before the hello is a protocol error', async () => {
      const { port } = await setup();
      const c = await Client.open(port);
      await c.send(frame(1, 1));
      await c.closedP;
      assert.equal(c.messages()[0]?.code, 'RADAR_ERR_PROTOCOL');
    });

    test('an unsupported protocol version is refused with a reason', async () => {
      const { port } = await setup();
      const c = await Client.open(port);
      await c.send(encodeMessage({ t: 'hello', v: 99, node: 'bin-v', token: TOKEN }));
      await c.closedP;
      assert.equal(c.messages()[0]?.code, 'RADAR_ERR_UNSUPPORTED_VERSION');
    });

    test('two connections route by node', async () => {
      const { sink, port } = await setup();
      const a = await Client.open(port);
      const b = await Client.open(port);
      await hello(a, 'bin-a');
      await hello(b, 'bin-b');
      await a.send(Buffer.concat([frame(1, 1), frame(2, 2)]));
      await b.send(frame(1, 100));
      await until(() => sink.of('bin-a').length === 2 && sink.of('bin-b').length === 1, 'routed');
      a.destroy();
      b.destroy();
    });

    test('heartbeats are acked and not enqueued', async () => {
      const { engine, sink, port } = await setup();
      const c = await Client.open(port);
      await hello(c, 'bin-h');
      await c.send(encodeMessage({ t: 'hb' }));
      await until(() => c.messages().some((m) => m.t === 'ack'), 'ack for heartbeat');
      assert.equal(sink.frames.length, 0);
      assert.equal((await scrape(engine)).get('radar_ingest_heartbeats_total'), 1);
      c.destroy();
    });

    test('an unknown node reaches the provisioning hook with its hello', async () => {
      const seen: NodeInfo[] = [];
      const { port } = await setup({}, { onUnknownNode: (i: NodeInfo) => { seen.push(i); return { accept: true }; } });
      const c = await Client.open(port);
      await c.send(encodeHello('bin-p', TOKEN, { group: 'north' }));
      await until(() => c.messages().some((m) => m.t === 'welcome'), 'welcome');
      assert.equal(seen.length, 1);
      assert.equal(seen[0]!.protocol, 'binary');
      assert.equal(seen[0]!.group, 'north');
      c.destroy();
    });

    test('a refused node gets RADAR_ERR_NODE_REFUSED before the close', async () => {
      const { port } = await setup({}, { onUnknownNode: () => ({ accept: false, reason: 'ports_exhausted', message: 'no tracker port free in 31000-31000' }) });
      const c = await Client.open(port);
      await c.send(encodeHello('bin-r', TOKEN));
      await c.closedP;
      const e = c.messages().find((m) => m.t === 'error');
      assert.equal(e?.code, 'RADAR_ERR_NODE_REFUSED');
      assert.match(e?.message, /no tracker port free/);
    });

    test('disconnect marks the node unhealthy', async () => {
      const { engine, port } = await setup();
      const c = await Client.open(port);
      await hello(c, 'bin-d');
      assert.equal(engine.nodes.get('bin-d')!.healthy, true);
      c.end();
      await until(() => !engine.nodes.get('bin-d')!.healthy, 'unhealthy');
    });

    test('an over-limit frame is dropped with an error and the next frame arrives', async () => {
      const { engine, sink, port } = await setup({ limits: { max_frame_bytes: 1024 }, ring: { size_bytes: 65536 } });
      const c = await Client.open(port);
      await hello(c, 'bin-l');
      await c.send(Buffer.concat([frame(1, 1), frame(2, 2, 100), frame(3, 3)]));
      await until(() => sink.of('bin-l').length === 2, 'frames around');
      assert.deepEqual(sink.of('bin-l').map((f) => f.timestamp), [1, 3]);
      assert.ok(c.messages().some((m) => m.t === 'error' && m.code === 'RADAR_ERR_FRAME_TOO_LARGE' && m.fatal === false));
      await assertAccounting(engine);
      assert.equal(c.closed, false);
      c.destroy();
    });

    test('an absurd length prefix ends the connection with an error', async () => {
      const { port } = await setup();
      const c = await Client.open(port);
      await hello(c, 'bin-4g');
      await c.send(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
      await c.closedP;
      assert.ok(c.messages().some((m) => m.code === 'RADAR_ERR_FRAME_TOO_LARGE' && m.fatal === true));
    });

    test('malformed msgpack and invalid frames are skipped with errors; neighbours arrive in order', async () => {
      const { engine, sink, port } = await setup();
      const c = await Client.open(port);
      await hello(c, 'bin-m');
      const junk = Buffer.from([0, 0, 0, 2, 0xc1, 0xc1]); // 0xc1 is never valid msgpack
      const noTs = encodeMessage({ t: 'f', seq: 3, det: Buffer.alloc(24) });
      const badDet = encodeMessage({ t: 'f', seq: 4, ts: 5, det: Buffer.alloc(23) });
      const nan = Buffer.alloc(24);
      nan.writeDoubleLE(NaN, 0);
      const nanDet = encodeMessage({ t: 'f', seq: 5, ts: 5, det: nan });
      await c.send(Buffer.concat([frame(1, 1), junk, frame(2, 2), noTs, badDet, nanDet, frame(6, 6)]));
      await until(() => sink.of('bin-m').length === 3, 'valid frames');
      assert.deepEqual(sink.of('bin-m').map((f) => f.timestamp), [1, 2, 6]);
      await until(() => c.messages().some((m) => m.t === 'ack' && m.seq === 6), 'ack covers rejected frames');
      const errs = c.messages().filter((m) => m.t === 'error');
      assert.ok(errs.some((e) => e.code === 'RADAR_ERR_MALFORMED'));
      assert.deepEqual(errs.filter((e) => e.code === 'RADAR_ERR_INVALID_FRAME').map((e) => e.seq), [3, 4, 5]);
      const m = await assertAccounting(engine);
      assert.equal(m.get('radar_ingest_frames_dropped_total{reason="malformed"}'), 1);
      assert.equal(m.get('radar_ingest_frames_dropped_total{reason="invalid_frame"}'), 3);
      c.destroy();
    });

    test('resume after reconnect: welcome carries last_seq, resent frames are not duplicated', async () => {
      const { engine, sink, port } = await setup();
      const a = await Client.open(port);
      await hello(a, 'bin-r2');
      await a.send(Buffer.concat([frame(1, 1), frame(2, 2), frame(3, 3)]));
      await until(() => a.messages().some((m) => m.t === 'ack' && m.seq === 3), 'ack 3');
      a.destroy();
      await until(() => !engine.nodes.get('bin-r2')!.healthy, 'disconnected');
      const b = await Client.open(port);
      const w = await hello(b, 'bin-r2');
      assert.equal(w.last_seq, 3);
      // A node unsure what arrived resends from 2: only 4 and 5 are new.
      await b.send(Buffer.concat([frame(2, 2), frame(3, 3), frame(4, 4), frame(5, 5)]));
      await until(() => b.messages().some((m) => m.t === 'ack' && m.seq === 5), 'ack 5');
      await until(() => sink.of('bin-r2').length === 5, 'five frames');
      assert.deepEqual(sink.of('bin-r2').map((f) => f.timestamp), [1, 2, 3, 4, 5]);
      assert.equal((await assertAccounting(engine)).get('radar_ingest_frames_dropped_total{reason="duplicate"}'), 2);
      b.destroy();
    });

    test('adsb entries travel with the frame', async () => {
      const { sink, port } = await setup();
      const c = await Client.open(port);
      await hello(c, 'bin-adsb');
      await c.send(encodeFrame({ seq: 1, timestamp: 9, delay: [1, 2], doppler: [3, 4], snr: [5, 6], adsb: [null, { hex: 'abc123', lat: 1.5 }] }));
      const [f] = await until(() => sink.of('bin-adsb').length === 1 && sink.of('bin-adsb'), 'frame');
      assert.deepEqual(JSON.parse(f!.line).adsb, [null, { hex: 'abc123', lat: 1.5 }]);
      c.destroy();
    });
  });
}
