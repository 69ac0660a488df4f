// The connection flapping guard: a node that reconnects more than
// limits.reconnect_max times within limits.reconnect_window_ms is refused for
// limits.reconnect_ban_ms, counted, and shown in its agent (and tracker) state.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, engineFixtures, lineFrame, until, assertAccounting } from './helpers.js';
import { encodeHello } from '../src/protocol/binary-protocol.js';

describe('flapping guard', () => {
  const setup = engineFixtures({ limits: { reconnect_max: 3, reconnect_window_ms: 60000, reconnect_ban_ms: 800 }, http: { api_token: 'ctl' } });

  async function connectAndSend(port: number, node: string, ts: number): Promise<Client> {
    const c = await Client.open(port);
    await c.send(lineFrame(node, ts));
    return c;
  }

  test('the connection after reconnect_max is refused (flapping) until the ban ends; other nodes carry on', async () => {
    const { engine, sink, port } = await setup();
    for (let i = 1; i <= 3; i++) {
      const c = await connectAndSend(port, 'flappy', i);
      await until(() => sink.of('flappy').length === i, `frame ${i}`);
      c.destroy();
      await c.closedP;
    }
    const t0 = Date.now();
    // A line connection stays open for its other nodes (a gateway): only the banned node's frames are refused.
    const banned = await connectAndSend(port, 'flappy', 4);
    const refused = async (n: number): Promise<boolean> =>
      (await assertAccounting(engine)).get('radar_ingest_frames_dropped_total{reason="node_refused"}') === n;
    await until(() => refused(1), 'the banned node\'s frame counted node_refused');
    assert.equal(banned.closed, false);
    assert.equal(sink.of('flappy').length, 3);
    // Shown in the agent's state.
    const a = (await (await fetch(`http://127.0.0.1:${engine.httpAddress!.port}/api/v1/agents/flappy`, { headers: { authorization: 'Bearer ctl' } })).json()) as any;
    assert.equal(typeof a.bannedUntil, 'string');
    assert.ok(Date.parse(a.bannedUntil) > Date.now() - 100);
    // While banned, every attempt is refused (and counted); another node is unaffected.
    const again = await connectAndSend(port, 'flappy', 5);
    await until(() => refused(2), 'the next attempt refused too');
    const other = await connectAndSend(port, 'steady', 1);
    await until(() => sink.of('steady').length === 1, 'other node delivered');
    assert.equal(engine.nodes.get('flappy')!.flapRefusals, 2);
    // After the ban the node is accepted again. The ban started when the engine
    // handled the refused connection (after t0, later still on a busy machine): wait
    // for the end it reported, not for t0 + reconnect_ban_ms.
    const bannedUntil = Date.parse(a.bannedUntil);
    assert.ok(bannedUntil >= t0 + 800, 'the ban lasts reconnect_ban_ms from its start');
    await until(() => Date.now() > bannedUntil + 5, 'ban over', 5000);
    const back = await connectAndSend(port, 'flappy', 6);
    await until(() => sink.of('flappy').length === 4, 'accepted after the ban');
    assert.deepEqual(sink.of('flappy').map((f) => f.timestamp), [1, 2, 3, 6]);
    assert.equal(back.closed, false);
    const a2 = (await (await fetch(`http://127.0.0.1:${engine.httpAddress!.port}/api/v1/agents/flappy`, { headers: { authorization: 'Bearer ctl' } })).json()) as any;
    assert.equal(a2.bannedUntil, null);
    back.destroy();
    other.destroy();
    banned.destroy();
    again.destroy();
  });

  test('binary nodes get RADAR_ERR_FLAPPING before the close', async () => {
    const { port } = await setup();
    const hello = (): Buffer => encodeHello('flappy-bin', 'test-secret');
    for (let i = 0; i < 3; i++) {
      const c = await Client.open(port);
      await c.send(hello());
      await until(() => c.messages().some((x) => x.t === 'welcome'), 'welcome');
      c.destroy();
      await c.closedP;
    }
    const c = await Client.open(port);
    await c.send(hello());
    await c.closedP;
    const err = c.messages().find((x) => x.t === 'error');
    assert.equal(err?.code, 'RADAR_ERR_FLAPPING');
    assert.match(String(err?.message), /reconnected more than 3 times within 60 s: refused for 0.8 s/);
  });

  test('reconnect_max 0 turns the guard off', async () => {
    const { sink, port } = await setup({ limits: { reconnect_max: 0 } });
    for (let i = 1; i <= 6; i++) {
      const c = await connectAndSend(port, 'free', i);
      await until(() => sink.of('free').length === i, `frame ${i}`);
      c.destroy();
      await c.closedP;
    }
  });
});
