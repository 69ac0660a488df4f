// Unit tests of the agent registry and the command store under a fake clock: the
// state rules are pure functions of the clock, so every boundary is tested exactly.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { AgentRegistry, agentState, type AgentInfo, type AgentState } from '../src/agents/agent-registry.js';
import { CommandStore, type CommandType, type CommandResult } from '../src/agents/command-store.js';

const STALE = 100;
const DEAD = 200;
const T0 = Date.UTC(2030, 0, 1);

function info(over: Partial<AgentInfo> = {}): AgentInfo {
  return { name: 'Node', group: 'north', version: '1.0.0', capabilities: ['det-f64'], routes: [], ...over };
}

function makeRegistry(): { reg: AgentRegistry; clock: { now: number }; events: [string, AgentState | null, AgentState][] } {
  const clock = { now: T0 };
  const events: [string, AgentState | null, AgentState][] = [];
  const reg = new AgentRegistry({ staleAfterMs: STALE, deadAfterMs: DEAD }, () => clock.now, (id, from, to) => events.push([id, from, to]));
  return { reg, clock, events };
}

describe('AgentRegistry', () => {
  test('LIVE until exactly stale_after, STALE until stale_after + dead_after, then DEAD', () => {
    const { reg, clock } = makeRegistry();
    const a = reg.register('n1', info());
    const at = (ms: number): AgentState => {
      clock.now = T0 + ms;
      return reg.state(a);
    };
    assert.equal(at(0), 'LIVE');
    assert.equal(at(STALE - 1), 'LIVE');
    assert.equal(at(STALE), 'STALE');
    assert.equal(at(STALE + DEAD - 1), 'STALE');
    assert.equal(at(STALE + DEAD), 'DEAD');
    // The pure function agrees.
    assert.equal(agentState(a, T0 + STALE - 1, { staleAfterMs: STALE, deadAfterMs: DEAD }), 'LIVE');
    assert.equal(agentState(a, T0 + STALE, { staleAfterMs: STALE, deadAfterMs: DEAD }), 'STALE');
    assert.equal(agentState(a, T0 + STALE + DEAD, { staleAfterMs: STALE, deadAfterMs: DEAD }), 'DEAD');
  });

  test('DEAD agents are kept (listed, counted) until deleted', () => {
    const { reg, clock } = makeRegistry();
    reg.register('n1', info());
    clock.now = T0 + 365 * 24 * 3600 * 1000;
    assert.deepEqual(reg.list().map((a) => a.id), ['n1']);
    assert.deepEqual(reg.list('DEAD').map((a) => a.id), ['n1']);
    assert.deepEqual(reg.list('LIVE'), []);
    assert.deepEqual(reg.counts(), { LIVE: 0, STALE: 0, DEAD: 1 });
    assert.equal(reg.view(reg.get('n1')!).state, 'DEAD');
    assert.equal(reg.delete('n1'), true);
    assert.equal(reg.get('n1'), undefined);
    assert.deepEqual(reg.list(), []);
    assert.deepEqual(reg.counts(), { LIVE: 0, STALE: 0, DEAD: 0 });
    assert.equal(reg.delete('n1'), false);
  });

  test('a heartbeat revives STALE and DEAD agents; unknown ids are refused', () => {
    const { reg, clock } = makeRegistry();
    const a = reg.register('n1', info());
    clock.now = T0 + STALE;
    assert.equal(reg.state(a), 'STALE');
    assert.equal(reg.heartbeat('n1'), true);
    assert.equal(reg.state(a), 'LIVE');
    assert.equal(a.lastHeartbeatAt, T0 + STALE);
    // LIVE for a full stale_after from the heartbeat.
    clock.now = T0 + 2 * STALE - 1;
    assert.equal(reg.state(a), 'LIVE');
    clock.now = T0 + 10 * (STALE + DEAD);
    assert.equal(reg.state(a), 'DEAD');
    assert.equal(reg.heartbeat('n1'), true);
    assert.equal(reg.state(a), 'LIVE');
    assert.equal(reg.heartbeat('nobody'), false);
    assert.equal(reg.get('nobody'), undefined);
  });

  test('register replaces metadata, keeps registeredAt, and makes the agent LIVE', () => {
    const { reg, clock } = makeRegistry();
    reg.register('n1', info());
    clock.now = T0 + STALE + DEAD + 5;
    assert.equal(reg.state(reg.get('n1')!), 'DEAD');
    const b = reg.register('n1', info({ name: 'Renamed', group: 'south', version: '2.0.0', capabilities: [], routes: ['r1'] }));
    assert.equal(reg.state(b), 'LIVE');
    assert.equal(b.registeredAt, T0);
    assert.equal(b.lastHeartbeatAt, T0 + STALE + DEAD + 5);
    const v = reg.view(b);
    assert.deepEqual(
      { id: v.id, name: v.name, group: v.group, version: v.version, capabilities: v.capabilities, routes: v.routes, state: v.state, registered: v.registered },
      { id: 'n1', name: 'Renamed', group: 'south', version: '2.0.0', capabilities: [], routes: ['r1'], state: 'LIVE', registered: true },
    );
    assert.equal(v.registeredAt, new Date(T0).toISOString());
    assert.equal(v.lastHeartbeatAt, new Date(T0 + STALE + DEAD + 5).toISOString());
  });

  test('touch() registers a node seen only on TCP implicitly (group "default" or the hello group)', () => {
    const { reg, clock } = makeRegistry();
    reg.touch('tcp-1');
    const a = reg.get('tcp-1')!;
    assert.deepEqual(
      { name: a.name, group: a.group, version: a.version, capabilities: a.capabilities, routes: a.routes, registered: a.registered, registeredAt: a.registeredAt, lastHeartbeatAt: a.lastHeartbeatAt },
      { name: 'tcp-1', group: 'default', version: '', capabilities: [], routes: [], registered: false, registeredAt: T0, lastHeartbeatAt: T0 },
    );
    assert.equal(reg.state(a), 'LIVE');

    reg.touch('tcp-2', T0, 'hello-group');
    assert.equal(reg.get('tcp-2')!.group, 'hello-group');
    assert.equal(reg.get('tcp-2')!.registered, false);

    // A later hello with a group updates an implicit agent's group...
    clock.now = T0 + 10;
    reg.touch('tcp-1', clock.now, 'west');
    assert.equal(reg.get('tcp-1')!.group, 'west');
    assert.equal(reg.get('tcp-1')!.lastHeartbeatAt, T0 + 10);
  });

  test('touch() counts as a heartbeat, never moves it backwards, and keeps an HTTP registration\'s group', () => {
    const { reg, clock } = makeRegistry();
    const a = reg.register('n1', info({ group: 'north' }));
    clock.now = T0 + STALE + DEAD;
    assert.equal(reg.state(a), 'DEAD');
    reg.touch('n1', clock.now, 'from-hello');
    assert.equal(reg.state(a), 'LIVE');
    assert.equal(a.group, 'north', 'the registered group wins over the hello group');
    assert.equal(a.registered, true);
    // An older timestamp does not move the heartbeat back.
    reg.touch('n1', T0 + 1);
    assert.equal(a.lastHeartbeatAt, T0 + STALE + DEAD);
    // register after an implicit touch: registered from now on, registeredAt = registration time.
    clock.now = T0 + 1000;
    reg.touch('tcp-x');
    clock.now = T0 + 1050;
    const x = reg.register('tcp-x', info({ group: 'east' }));
    assert.equal(x.registered, true);
    assert.equal(x.group, 'east');
    assert.equal(x.registeredAt, T0 + 1050);
  });

  test('each state change is reported exactly once, whether seen by sweep, state queries or heartbeats', () => {
    const { reg, clock, events } = makeRegistry();
    reg.register('n1', info());
    assert.deepEqual(events, [['n1', null, 'LIVE']]);
    reg.register('n1', info()); // still LIVE: nothing new
    reg.heartbeat('n1');
    reg.sweep();
    assert.equal(events.length, 1);

    clock.now = T0 + STALE - 1;
    reg.sweep();
    assert.equal(events.length, 1);
    clock.now = T0 + STALE;
    reg.sweep();
    reg.sweep();
    reg.list();
    reg.counts();
    reg.sweep();
    assert.deepEqual(events.slice(1), [['n1', 'LIVE', 'STALE']]);

    clock.now = T0 + STALE + DEAD;
    reg.sweep();
    reg.sweep();
    assert.deepEqual(events.slice(2), [['n1', 'STALE', 'DEAD']]);

    reg.heartbeat('n1');
    reg.heartbeat('n1');
    reg.sweep();
    assert.deepEqual(events.slice(3), [['n1', 'DEAD', 'LIVE']]);

    // A jump straight past both deadlines is one LIVE -> DEAD report.
    clock.now += STALE + DEAD + 1;
    reg.sweep();
    reg.sweep();
    assert.deepEqual(events.slice(4), [['n1', 'LIVE', 'DEAD']]);

    // touch() of an unknown node reports its first state once.
    reg.touch('t1');
    reg.touch('t1');
    reg.sweep();
    assert.deepEqual(events.slice(5), [['t1', null, 'LIVE']]);

    // After a delete the next registration is reported as new.
    reg.delete('n1');
    reg.sweep();
    assert.equal(events.length, 6);
    reg.register('n1', info());
    assert.deepEqual(events.slice(6), [['n1', null, 'LIVE']]);
  });

  test('list(status) and counts() agree with per-agent states', () => {
    const { reg, clock } = makeRegistry();
    reg.register('dead', info());
    clock.now = T0 + STALE + DEAD;
    reg.register('stale', info());
    clock.now += STALE;
    reg.register('live', info());
    assert.deepEqual(reg.list('LIVE').map((a) => a.id), ['live']);
    assert.deepEqual(reg.list('STALE').map((a) => a.id), ['stale']);
    assert.deepEqual(reg.list('DEAD').map((a) => a.id), ['dead']);
    assert.deepEqual(reg.list().map((a) => a.id).sort(), ['dead', 'live', 'stale']);
    assert.deepEqual(reg.counts(), { LIVE: 1, STALE: 1, DEAD: 1 });
  });
});

describe('CommandStore', () => {
  const TTL = 1000;
  function makeStore(maxKept = 100) {
    const clock = { now: T0 };
    const counted: string[] = [];
    const signed: { id: string; type: string; target: string; createdAt: number; payload: unknown }[] = [];
    const store = new CommandStore(TTL, maxKept, (f) => {
      signed.push(f);
      return `sig:${f.id}`;
    }, () => clock.now, (type: CommandType, result: CommandResult) => counted.push(`${type}/${result}`));
    return { store, clock, counted, signed };
  }

  test('PENDING -> DELIVERED -> ACKNOWLEDGED, each outcome counted once', () => {
    const { store, clock, counted, signed } = makeStore();
    const c = store.create('a1', 'config-update', { k: 1 }, 'agent:a1');
    assert.equal(store.state(c), 'PENDING');
    assert.match(c.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.deepEqual(signed, [{ id: c.id, type: 'config-update', target: 'agent:a1', createdAt: T0, payload: { k: 1 } }]);
    assert.equal(c.signature, `sig:${c.id}`);
    assert.deepEqual(counted, ['config-update/created']);
    assert.deepEqual(store.undelivered('a1').map((x) => x.id), [c.id]);

    clock.now = T0 + 10;
    store.markDelivered(c);
    store.markDelivered(c);
    assert.equal(store.state(c), 'DELIVERED');
    assert.equal(c.deliveredAt, T0 + 10);
    assert.deepEqual(store.undelivered('a1'), []);
    assert.deepEqual(counted, ['config-update/created', 'config-update/delivered']);

    clock.now = T0 + 20;
    assert.equal(store.ack('a1', c.id, { ok: true }), 'acknowledged');
    assert.equal(store.state(c), 'ACKNOWLEDGED');
    const v = store.view(c);
    assert.equal(v.state, 'ACKNOWLEDGED');
    assert.deepEqual(v.result, { ok: true });
    assert.equal(v.createdAt, new Date(T0).toISOString());
    assert.equal(v.deliveredAt, new Date(T0 + 10).toISOString());
    assert.equal(v.acknowledgedAt, new Date(T0 + 20).toISOString());
    assert.equal(v.expiresAt, new Date(T0 + TTL).toISOString());
    assert.deepEqual(counted, ['config-update/created', 'config-update/delivered', 'config-update/acknowledged']);

    // Acknowledged commands never expire, and are never counted as expired.
    clock.now = T0 + 10 * TTL;
    assert.equal(store.state(c), 'ACKNOWLEDGED');
    store.sweep();
    assert.equal(counted.length, 3);
  });

  test('the event data is what the signature covers, plus the signature', () => {
    const { store } = makeStore();
    const c = store.create('a1', 'replay', { from: 1, to: 2 }, 'group:g');
    assert.deepEqual(JSON.parse(store.eventData(c)), {
      id: c.id, type: 'replay', target: 'group:g', created_at: T0, payload: { from: 1, to: 2 }, signature: `sig:${c.id}`,
    });
  });

  test('EXPIRED exactly at ttl; counted once; never delivered afterwards', () => {
    const { store, clock, counted } = makeStore();
    const pending = store.create('a1', 'deep-trace', {}, 'agent:a1');
    const delivered = store.create('a1', 'replay', {}, 'agent:a1');
    store.markDelivered(delivered);
    clock.now = T0 + TTL - 1;
    assert.equal(store.state(pending), 'PENDING');
    assert.equal(store.state(delivered), 'DELIVERED');
    clock.now = T0 + TTL;
    assert.equal(store.state(pending), 'EXPIRED');
    assert.equal(store.state(delivered), 'EXPIRED');
    assert.deepEqual(store.undelivered('a1'), [], 'an expired command is not sent when the stream opens');
    store.sweep();
    store.sweep();
    assert.deepEqual(counted.filter((c) => c.endsWith('/expired')).sort(), ['deep-trace/expired', 'replay/expired']);
    assert.equal(store.view(pending).state, 'EXPIRED');
    assert.equal(store.view(pending).deliveredAt, null);
  });

  test('ack after expiry is "expired" (counted once with the sweep), a second ack is "already", unknown ids are "unknown"', () => {
    const { store, clock, counted } = makeStore();
    const c = store.create('a1', 'config-update', {}, 'agent:a1');
    store.markDelivered(c);
    clock.now = T0 + TTL;
    assert.equal(store.ack('a1', c.id, undefined), 'expired');
    assert.equal(store.ack('a1', c.id, undefined), 'expired');
    store.sweep();
    assert.equal(counted.filter((x) => x === 'config-update/expired').length, 1);
    assert.equal(store.state(c), 'EXPIRED');
    assert.equal(c.acknowledgedAt, null);

    clock.now = T0 + 2 * TTL;
    const d = store.create('a1', 'config-update', {}, 'agent:a1');
    assert.equal(store.ack('a1', d.id, 'first'), 'acknowledged');
    assert.equal(store.ack('a1', d.id, 'second'), 'already');
    assert.equal(store.view(d).result, 'first');
    assert.equal(counted.filter((x) => x === 'config-update/acknowledged').length, 1);

    assert.equal(store.ack('a1', 'no-such-id', undefined), 'unknown');
    assert.equal(store.ack('other-agent', d.id, undefined), 'unknown', 'a command is only acknowledged by its own agent');
    assert.equal(store.ack('nobody', 'x', undefined), 'unknown');
  });

  test('maxKept: only the newest commands per agent are remembered', () => {
    const { store } = makeStore(3);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(store.create('a1', 'config-update', { i }, 'agent:a1').id);
    const other = store.create('a2', 'replay', {}, 'agent:a2');
    assert.deepEqual(store.list('a1').map((c) => c.id), ids.slice(2));
    assert.deepEqual(store.list('a1').map((c) => (c.payload as { i: number }).i), [2, 3, 4]);
    assert.equal(store.get('a1', ids[0]!), undefined);
    assert.equal(store.ack('a1', ids[0]!, undefined), 'unknown');
    assert.deepEqual(store.list('a2').map((c) => c.id), [other.id]);
    store.forget('a1');
    assert.deepEqual(store.list('a1'), []);
    assert.deepEqual(store.list('a2').map((c) => c.id), [other.id]);
  });

  test('each command gets its own id', () => {
    const { store } = makeStore();
    const ids = new Set<string>();
    for (let i = 0; i < 50; i++) ids.add(store.create('a1', 'replay', {}, 'all').id);
    assert.equal(ids.size, 50);
  });
});
