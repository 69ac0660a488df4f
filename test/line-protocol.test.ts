// The tracker-host TCP server scenarios, line protocol, over real sockets.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { engineFixtures, Client, lineFrame, heartbeat, until, scrape, assertAccounting } from './helpers.js';
import type { NodeInfo } from '../src/nodes/node-table.js';

for (const shards of [1, 0]) {
  describe(`line protocol (shards: ${shards})`, () => {
    const setup = engineFixtures({ shards });

    test('a frame with the right token is routed to its node ring without the token', async () => {
      const { engine, sink, port } = await setup();
      const c = await Client.open(port);
      await c.send(lineFrame('node-1', 1757400000000));
      const [f] = await until(() => sink.of('node-1').length === 1 && sink.of('node-1'), 'frame delivered');
      const obj = JSON.parse(f!.line);
      assert.deepEqual(obj, { timestamp: 1757400000000, delay: [40.5, 41.5], doppler: [-27.25, -26.25], snr: [12.5, 13.5], adsb: [null, null] });
      assert.ok(f!.line.endsWith('\n'));
      assert.equal(f!.line.includes('test-secret'), false);
      assert.equal(f!.timestamp, 1757400000000);
      assert.equal(f!.detections, 2);
      c.destroy();
      await assertAccounting(engine);
    });

    test('the retina example line is delivered byte-exact minus node_id and token', async () => {
      const { sink, port } = await setup({ tcp_server: { token: 'shared-secret' } });
      const c = await Client.open(port);
      await c.send('{"node_id":"node-1","token":"shared-secret","timestamp":1757400000000,"delay":[40.46,120.3],"doppler":[-27.99,88.1],"snr":[12.08,7.2],"adsb":[null,null]}\n');
      const [f] = await until(() => sink.of('node-1').length === 1 && sink.of('node-1'), 'frame delivered');
      assert.equal(f!.line, '{"timestamp":1757400000000,"delay":[40.46,120.3],"doppler":[-27.99,88.1],"snr":[12.08,7.2],"adsb":[null,null]}\n');
      c.destroy();
    });

    test('an invalid token closes the connection at once and nothing is routed', async () => {
      const { engine, sink, port } = await setup();
      const c = await Client.open(port);
      await c.send(lineFrame('node-1', 1, 2, 'wrong-token'));
      await c.closedP;
      assert.equal(sink.frames.length, 0);
      const m = await scrape(engine);
      assert.equal(m.get('radar_ingest_connections_rejected_total{reason="auth_failed"}'), 1);
      assert.equal(m.get('radar_ingest_frames_dropped_total{reason="auth_failed"}'), 1);
      assert.equal(engine.nodes.get('node-1'), undefined);
    });

    test('a missing token on the first message closes the connection', async () => {
      const { sink, port } = await setup();
      const c = await Client.open(port);
      await c.send('{"node_id":"node-1","timestamp":1,"delay":[],"doppler":[],"snr":[]}\n');
      await c.closedP;
      assert.equal(sink.frames.length, 0);
    });

    test('two connections route by node_id', async () => {
      const { sink, port } = await setup();
      const a = await Client.open(port);
      const b = await Client.open(port);
      await a.send(lineFrame('node-a', 1) + lineFrame('node-a', 2));
      await b.send(lineFrame('node-b', 10) + lineFrame('node-b', 11) + lineFrame('node-b', 12));
      await until(() => sink.of('node-a').length === 2 && sink.of('node-b').length === 3, 'both nodes delivered');
      assert.deepEqual(sink.of('node-a').map((f) => f.timestamp), [1, 2]);
      assert.deepEqual(sink.of('node-b').map((f) => f.timestamp), [10, 11, 12]);
      a.destroy();
      b.destroy();
    });

    test('heartbeats are not enqueued but count as liveness', async () => {
      const { engine, sink, port } = await setup();
      const c = await Client.open(port);
      await c.send(heartbeat('node-h') + heartbeat('node-h') + lineFrame('node-h', 5));
      await until(() => sink.of('node-h').length === 1, 'frame after heartbeats');
      const m = await scrape(engine);
      assert.equal(m.get('radar_ingest_heartbeats_total'), 2);
      assert.equal(m.get('radar_ingest_frames_received_total'), 1);
      assert.ok(engine.nodes.get('node-h')!.lastHeartbeatAt > 0);
      c.destroy();
    });

    test('an unknown node reaches the provisioning hook with its first frame', async () => {
      const seen: NodeInfo[] = [];
      const { sink, port } = await setup({}, { onUnknownNode: (info: NodeInfo) => { seen.push(info); return { accept: true }; } });
      const c = await Client.open(port);
      await c.send(lineFrame('node-new', 7) + lineFrame('node-new', 8));
      await until(() => sink.of('node-new').length === 2, 'frames after provisioning');
      assert.equal(seen.length, 1);
      assert.equal(seen[0]!.node, 'node-new');
      assert.equal(seen[0]!.first, 'frame');
      assert.equal(seen[0]!.protocol, 'line');
      // The first frame is not lost while the hook runs.
      assert.deepEqual(sink.of('node-new').map((f) => f.timestamp), [7, 8]);
      c.destroy();
    });

    test('a refused node\'s frames are counted node_refused; the connection stays open', async () => {
      const { engine, sink, port } = await setup({}, { onUnknownNode: () => ({ accept: false, reason: 'ports_exhausted', message: 'no tracker port free' }) });
      const c = await Client.open(port);
      await c.send(lineFrame('node-x', 1) + lineFrame('node-x', 2));
      await until(async () => (await assertAccounting(engine)).get('radar_ingest_frames_dropped_total{reason="node_refused"}') === 2, 'both frames refused');
      assert.equal(sink.frames.length, 0);
      assert.equal(c.closed, false);
      assert.equal((await scrape(engine)).get('radar_ingest_connections_rejected_total{reason="node_refused"}'), 0);
      c.destroy();
    });

    test('disconnect marks the node unhealthy', async () => {
      const { engine, sink, port } = await setup();
      const c = await Client.open(port);
      await c.send(lineFrame('node-d', 1));
      await until(() => sink.of('node-d').length === 1, 'frame');
      assert.equal(engine.nodes.get('node-d')!.healthy, true);
      assert.equal((await scrape(engine)).get('radar_ingest_nodes_connected'), 1);
      c.end();
      await until(() => !engine.nodes.get('node-d')!.healthy, 'node unhealthy');
      assert.equal((await scrape(engine)).get('radar_ingest_nodes_connected'), 0);
    });

    test('an over-limit frame is dropped and the next frame arrives', async () => {
      const { engine, sink, port } = await setup({ limits: { max_frame_bytes: 1024 }, ring: { size_bytes: 65536 } });
      const c = await Client.open(port);
      await c.send(lineFrame('node-l', 1));
      await c.send(lineFrame('node-l', 2, 100)); // > 1 KiB
      await c.send(lineFrame('node-l', 3));
      await until(() => sink.of('node-l').length === 2, 'frames around the big one');
      assert.deepEqual(sink.of('node-l').map((f) => f.timestamp), [1, 3]);
      const m = await assertAccounting(engine);
      assert.equal(m.get('radar_ingest_frames_dropped_total{reason="frame_too_large"}'), 1);
      assert.equal(c.closed, false);
      c.destroy();
    });

    test('a 1 MiB line limit is counted in bytes (multi-byte characters)', async () => {
      const { engine, sink, port } = await setup({ limits: { max_frame_bytes: 1024 }, ring: { size_bytes: 65536 } });
      const c = await Client.open(port);
      // 400 characters but 1200 bytes: over the limit in bytes only.
      const big = lineFrame('node-u', 1, 1, undefined, { note: '€'.repeat(400) });
      assert.ok(big.length < 1024 && Buffer.byteLength(big) > 1024);
      await c.send(big + lineFrame('node-u', 2));
      await until(() => sink.of('node-u').length === 1, 'frame after');
      assert.equal((await scrape(engine)).get('radar_ingest_frames_dropped_total{reason="frame_too_large"}'), 1);
      c.destroy();
    });

    test('a malformed line is skipped and its neighbours arrive in order', async () => {
      const { engine, sink, port } = await setup();
      const c = await Client.open(port);
      await c.send(lineFrame('node-m', 1) + '{"node_id":"node-m", this is not json\n' + lineFrame('node-m', 2));
      await until(() => sink.of('node-m').length === 2, 'neighbours');
      assert.deepEqual(sink.of('node-m').map((f) => f.timestamp), [1, 2]);
      const m = await assertAccounting(engine);
      assert.equal(m.get('radar_ingest_frames_dropped_total{reason="malformed"}'), 1);
      assert.equal(c.closed, false);
      c.destroy();
    });

    test('malformed lines before authentication are skipped; the first parsable message authenticates', async () => {
      const { sink, port } = await setup();
      const c = await Client.open(port);
      await c.send('garbage\n' + lineFrame('node-p', 1));
      await until(() => sink.of('node-p').length === 1, 'frame after garbage');
      c.destroy();
    });

    test('invalid UTF-8, a missing timestamp and unequal arrays are rejected with reasons', async () => {
      const { engine, sink, port } = await setup();
      const c = await Client.open(port);
      await c.send(lineFrame('node-v', 1));
      await c.send(Buffer.concat([Buffer.from('{"node_id":"node-v","token":"test-secret","timestamp":2,"delay":[],"doppler":[],"snr":[],"x":"'), Buffer.from([0xc0, 0x80]), Buffer.from('"}\n')]));
      await c.send('{"node_id":"node-v","token":"test-secret","delay":[1],"doppler":[2],"snr":[3]}\n');
      await c.send('{"node_id":"node-v","token":"test-secret","timestamp":3,"delay":[1,2],"doppler":[2],"snr":[3]}\n');
      await c.send('{"node_id":"node-v","token":"test-secret","timestamp":4,"delay":[1],"doppler":[2],"snr":["x"]}\n');
      await c.send('{"node_id":"node-v","token":"test-secret","timestamp":5,"delay":[1],"doppler":[2],"snr":[3],"adsb":[1]}\n');
      await c.send(lineFrame('node-v', 6));
      await until(() => sink.of('node-v').length === 2, 'valid frames');
      assert.deepEqual(sink.of('node-v').map((f) => f.timestamp), [1, 6]);
      const m = await assertAccounting(engine);
      assert.equal(m.get('radar_ingest_frames_dropped_total{reason="invalid_utf8"}'), 1);
      assert.equal(m.get('radar_ingest_frames_dropped_total{reason="invalid_frame"}'), 4);
      c.destroy();
    });

    test('frames split across TCP writes byte by byte and coalesced writes both arrive', async () => {
      const { sink, port } = await setup();
      const c = await Client.open(port);
      const text = lineFrame('node-s', 1) + lineFrame('node-s', 2);
      for (const ch of Buffer.from(text)) await c.send(Buffer.from([ch]));
      let many = '';
      for (let i = 3; i < 203; i++) many += lineFrame('node-s', i);
      await c.send(many);
      await until(() => sink.of('node-s').length === 202, 'all frames');
      assert.deepEqual(sink.of('node-s').map((f) => f.timestamp), Array.from({ length: 202 }, (_, i) => i + 1));
      c.destroy();
    });

    // {"type":"RESET"} is a reset, passed on as such: drop-in-reset-config.test.ts.
    test('a frame\'s type field (other than RESET) never reaches the tracker', async () => {
      const { sink, port } = await setup();
      const c = await Client.open(port);
      await c.send(lineFrame('node-t', 1, 1, undefined, { type: 'detections' }));
      const [f] = await until(() => sink.of('node-t').length === 1 && sink.of('node-t'), 'frame');
      assert.equal('type' in JSON.parse(f!.line), false);
      c.destroy();
    });
  });
}
