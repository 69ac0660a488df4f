// Three engine processes, one redis-server and HAProxy in front of the node ports
// (test/cluster-fixture.ts): what a node and an operator see of the fleet. Nodes are
// binary-protocol clients that keep unacked frames and resume after welcome.last_seq
// (bench/lib/resuming-node.ts); frame timestamps encode the seq, so the trackers'
// input files say which acked frames reached a tracker, on which host, how often.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request, type ClientRequest } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Fleet, fleetSkip, FLEET_TOKEN, SLOW_TRACKER_S, type FleetHost } from './cluster-fixture.js';
import { NodeFleet, ResumingNode } from '../bench/lib/resuming-node.js';
import { TS0 } from '../bench/lib/frames.js';
import { until } from './helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const ids = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

/** Acked seqs (1..acked) that no host's tracker received, per node (only nodes with some). */
function lostAcked(fleet: Fleet, nodes: ResumingNode[]): Record<string, number[]> {
  const d = fleet.deliveries(TS0);
  const lost: Record<string, number[]> = {};
  for (const n of nodes) {
    const got = d.byNode.get(n.o.nodeId) ?? new Map();
    const miss: number[] = [];
    for (let s = 1; s <= n.acked; s++) if (!got.has(s)) miss.push(s);
    if (miss.length > 0) lost[n.o.nodeId] = miss.length > 10 ? [...miss.slice(0, 10), -miss.length] : miss;
  }
  return lost;
}

/** Seqs of these nodes that reached trackers more than once: node -> [seq, hosts] (first few). */
function duplicated(fleet: Fleet, nodes: ResumingNode[]): Record<string, Array<[number, string[]]>> {
  const d = fleet.deliveries(TS0);
  const out: Record<string, Array<[number, string[]]>> = {};
  for (const n of nodes) {
    const dup = [...(d.byNode.get(n.o.nodeId) ?? new Map<number, string[]>())].filter(([, hosts]) => hosts.length > 1);
    if (dup.length > 0) out[n.o.nodeId] = dup.slice(0, 5);
  }
  return out;
}

/** Waits until every node's frames so far are acked. */
async function untilAllAcked(nodes: NodeFleet, what: string, timeoutMs = 20000): Promise<void> {
  await until(() => nodes.allAcked(), `${what}: every frame acked (${nodes.ackedTotal}/${nodes.generated}; `
    + `${nodes.nodes.filter((n) => n.acked < n.seq).slice(0, 4).map((n) => `${n.o.nodeId} ${n.acked}/${n.seq} ${n.lastError ?? ''}`).join(', ')})`, timeoutMs);
}

/** Nodes that got a welcome whose last_seq was below what they had been acked: node -> first such welcomes. */
function behind(nodes: NodeFleet): Record<string, Array<{ lastSeq: number; acked: number }>> {
  return Object.fromEntries(nodes.nodes.filter((n) => n.welcomesBehind.length > 0).map((n) => [n.o.nodeId, n.welcomesBehind.slice(0, 3)]));
}

interface Seen { host: string; node: string; pid: number; sent: number; got: number; state: string; fed: number; connected: boolean }

/**
 * Polls every host's GET /api/v1/trackers and proves overlaps only: a host that showed
 * the same tracker pid for a node at two polls ran it for the whole time between the
 * first answer and the second request; another host showing a tracker for that node
 * within that interval fed it at the same time.
 */
class TrackerWatch {
  readonly seen: Seen[] = [];
  polls = 0;
  errors = 0;
  private on = true;
  private loop: Promise<void> | null = null;

  constructor(private readonly hosts: FleetHost[], private readonly nodes: Set<string>) {}

  start(everyMs = 40): void {
    this.loop = (async () => {
      while (this.on) {
        await Promise.all(this.hosts.filter((h) => h.running).map((h) => this.poll(h)));
        this.polls++;
        await sleep(everyMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.on = false;
    await this.loop;
  }

  private async poll(h: FleetHost): Promise<void> {
    const sent = performance.now();
    const r = await h.api('/api/v1/trackers').catch(() => null);
    const got = performance.now();
    if (!r || r.status !== 200) { this.errors++; return; }
    for (const t of r.json.trackers as Array<{ node_id: string; pid: number | null; state: string; frames_fed: number; node_connected: boolean }>) {
      if (this.nodes.has(t.node_id) && t.pid !== null) {
        this.seen.push({ host: h.id, node: t.node_id, pid: t.pid, sent, got, state: t.state, fed: t.frames_fed, connected: t.node_connected });
      }
    }
  }

  /** Proven overlaps: [node, host with a continuous tracker, other host, when]. */
  overlaps(): string[] {
    const out: string[] = [];
    const byKey = new Map<string, Seen[]>();
    for (const s of this.seen) {
      const k = `${s.node}|${s.host}|${s.pid}`;
      const l = byKey.get(k);
      if (l) l.push(s); else byKey.set(k, [s]);
    }
    for (const [k, l] of byKey) {
      if (l.length < 2) continue;
      const [node, host] = k.split('|') as [string, string];
      const from = l[0]!.got;
      const to = l[l.length - 1]!.sent;
      if (to <= from) continue;
      for (const o of this.seen) {
        if (o.node === node && o.host !== host && o.sent >= from && o.got <= to) {
          const first = l[0]!;
          const last = l[l.length - 1]!;
          out.push(`${node}: ${host} (pid ${first.pid}, ${first.state}/${last.state}, fed ${first.fed}->${last.fed}, connected ${first.connected}/${last.connected}) `
            + `ran from ${from.toFixed(0)} to ${to.toFixed(0)} ms and ${o.host} (pid ${o.pid}, ${o.state}, fed ${o.fed}, connected ${o.connected}) showed one at ${o.sent.toFixed(0)}-${o.got.toFixed(0)} ms`);
          break;
        }
      }
    }
    return out;
  }
}

/** A minimal SSE reader: every `event:`/`data:` pair received on an agent's stream. */
class AgentStream {
  readonly events: Array<{ event: string; data: any }> = []; // eslint-disable-line @typescript-eslint/no-explicit-any
  status = 0;
  private buf = '';
  private req: ClientRequest | null = null;

  static open(port: number, id: string, token: string): Promise<AgentStream> {
    const s = new AgentStream();
    return new Promise((resolve, reject) => {
      s.req = request({ host: '127.0.0.1', port, path: `/api/v1/agents/${id}/events`, headers: { accept: 'text/event-stream', authorization: `Bearer ${token}` }, agent: false }, (res) => {
        s.status = res.statusCode ?? 0;
        res.setEncoding('utf8');
        res.on('data', (t: string) => s.feed(t));
        res.on('error', () => undefined);
        resolve(s);
      });
      s.req.on('error', reject);
      s.req.end();
    });
  }

  private feed(t: string): void {
    this.buf += t;
    let i: number;
    while ((i = this.buf.indexOf('\n\n')) >= 0) {
      const block = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 2);
      const ev = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (ev !== undefined && data !== undefined) this.events.push({ event: ev, data: JSON.parse(data) });
    }
  }

  close(): void {
    this.req?.destroy();
  }
}

describe('a fleet of three hosts behind HAProxy, coordinated through Redis', { skip: fleetSkip }, () => {
  let fleet: Fleet;
  const fleets: NodeFleet[] = [];
  const streams: AgentStream[] = [];
  const nodeFleet = (prefix: string, n: number, detections = 1): NodeFleet => {
    const f = new NodeFleet(ids(prefix, n), { host: '127.0.0.1', port: fleet.nodePort, token: FLEET_TOKEN, reconnectMs: 50, detections });
    fleets.push(f);
    return f;
  };

  before(async () => {
    fleet = await Fleet.start({ hosts: 3, leaseMs: 1500, ack: 'delivered' });
  });
  after(async () => {
    for (const f of fleets) f.stop();
    for (const s of streams) s.close();
    await fleet?.dispose();
  });

  /** Every host running and in the balancer again (a test that stopped one restores it). */
  async function allUp(): Promise<void> {
    for (const h of fleet.hosts) if (!h.running) await h.start();
    await fleet.untilBalancer(fleet.hosts.map((h) => h.id), 15000);
  }

  test('the balancer spreads nodes over the hosts; every acked frame reaches one tracker once', async () => {
    const nodes = nodeFleet('flow', 6);
    nodes.start(20);
    await sleep(1500);
    nodes.pause();
    await untilAllAcked(nodes, 'flow');
    await until(() => Object.keys(lostAcked(fleet, nodes.nodes)).length === 0, 'every acked frame in a tracker input', 10000);
    const hostsUsed = new Set<string>();
    const d = fleet.deliveries(TS0);
    for (const n of nodes.nodes) for (const hs of d.byNode.get(n.o.nodeId)!.values()) for (const h of hs) hostsUsed.add(h);
    assert.equal(hostsUsed.size, 3, `roundrobin over three hosts: ${[...hostsUsed]}`);
    assert.deepEqual(duplicated(fleet, nodes.nodes), {});
    nodes.stop();
  });

  /** Welcomes behind the node's acks, from the resume and rolling-restart tests (checked by the last test). */
  const welcomesBehind: Record<string, Array<{ lastSeq: number; acked: number }>> = {};
  /** What the takeover storm's watcher proved (checked by the test after it). */
  let stormOverlaps: string[] | null = null;

  test('ownership: during a takeover storm each node has one owner, no frame reaches two hosts, a superseded connection is told why', async () => {
    await allUp();
    const nodes = nodeFleet('storm', 8);
    const watch = new TrackerWatch(fleet.hosts, new Set(nodes.nodes.map((n) => n.o.nodeId)));
    nodes.start(10);
    await until(() => nodes.nodes.every((n) => n.acked > 0), 'storm nodes acked', 15000);
    watch.start();
    // Every 150 ms one node drops its link and reconnects through the balancer, to another host.
    const end = Date.now() + 6000;
    for (let i = 0; Date.now() < end; i++) {
      nodes.nodes[i % nodes.nodes.length]!.drop();
      await sleep(150);
    }
    await sleep(2000);
    await watch.stop();
    nodes.pause();
    assert.ok(watch.polls > 20, `polled ${watch.polls} times`);
    stormOverlaps = watch.overlaps();
    await untilAllAcked(nodes, 'storm');
    await until(() => Object.keys(lostAcked(fleet, nodes.nodes)).length === 0, 'every acked frame in a tracker input', 10000)
      .catch(() => assert.deepEqual(lostAcked(fleet, nodes.nodes), {}, 'acked frames lost'));
    assert.deepEqual(duplicated(fleet, nodes.nodes), {}, 'frames delivered by two trackers');
    // Settled: each node's tracker runs on exactly one host.
    await until(async () => {
      const owners = new Map<string, string[]>();
      for (const h of fleet.hosts) {
        for (const t of (await h.api('/api/v1/trackers')).json.trackers as Array<{ node_id: string; node_connected: boolean }>) {
          if (t.node_id.startsWith('storm-') && t.node_connected) owners.set(t.node_id, [...(owners.get(t.node_id) ?? []), h.id]);
        }
      }
      return nodes.nodes.every((n) => owners.get(n.o.nodeId)?.length === 1);
    }, 'each storm node connected to one host in the fleet', 10000);
    // A second connection for a node that is connected elsewhere takes it over: the first gets RADAR_ERR_SUPERSEDED.
    const a = new ResumingNode({ host: '127.0.0.1', port: fleet.nodePort, token: FLEET_TOKEN, nodeId: 'own-1', ts0: TS0 + 1e6 });
    const b = new ResumingNode({ host: '127.0.0.1', port: fleet.nodePort, token: FLEET_TOKEN, nodeId: 'own-1', ts0: TS0 + 1e6, reconnectMs: 5000 });
    a.start();
    await until(() => a.connected, 'own-1 connected', 5000);
    b.start();
    await until(() => (a.errors.get('RADAR_ERR_SUPERSEDED') ?? 0) > 0, 'the first connection superseded', 10000);
    for (const n of [a, b]) n.stop();
    nodes.stop();
  });

  test('during that storm no two hosts ran a tracker for one node at once (both hosts\' GET /api/v1/trackers)', () => {
    assert.ok(stormOverlaps !== null, 'the storm ran');
    assert.deepEqual(stormOverlaps.slice(0, 5), [], 'two hosts ran a tracker for one node at once');
  });

  test('resume across hosts: a node moved by handover neither loses nor duplicates an acked frame', async () => {
    await allUp();
    const nodes = nodeFleet('move', 5);
    nodes.start(20);
    await until(() => nodes.nodes.every((n) => n.acked > 0), 'move nodes acked', 15000);
    // Each node moves host four times, with frames in flight.
    for (let round = 0; round < 4; round++) {
      for (const n of nodes.nodes) n.drop();
      await until(() => nodes.nodes.every((n) => n.connected), `round ${round}: all reconnected`, 10000);
      await sleep(600);
    }
    nodes.pause();
    await untilAllAcked(nodes, 'move');
    await until(() => Object.keys(lostAcked(fleet, nodes.nodes)).length === 0, 'every acked frame in a tracker input', 10000)
      .catch(() => assert.deepEqual(lostAcked(fleet, nodes.nodes), {}, 'acked frames lost'));
    assert.deepEqual(duplicated(fleet, nodes.nodes), {}, 'frames delivered twice');
    Object.assign(welcomesBehind, behind(nodes));
    nodes.stop();
  });

  test('kill -9 of a host under load: no acked frame is lost, its nodes resume on the other hosts', async () => {
    await allUp();
    // slow- nodes: their trackers read nothing for a few seconds, so frames wait in the rings.
    const nodes = nodeFleet('slow-kill', 6, 100);
    nodes.start(20);
    await until(() => nodes.nodes.every((n) => n.acked > 0), 'kill nodes acked', 15000);
    await sleep(2500);
    // The host feeding most of them.
    const count = new Map<string, number>();
    for (const h of fleet.hosts) {
      for (const t of (await h.api('/api/v1/trackers')).json.trackers as Array<{ node_id: string; pid: number | null }>) {
        if (t.node_id.startsWith('slow-kill-')) count.set(h.id, (count.get(h.id) ?? 0) + 1);
      }
    }
    const victim = fleet.hosts.reduce((a, b) => ((count.get(b.id) ?? 0) > (count.get(a.id) ?? 0) ? b : a));
    const ackedAtKill = new Map(nodes.nodes.map((n) => [n.o.nodeId, n.acked]));
    const tKill = performance.now();
    await victim.kill();
    await sleep(3000);
    nodes.pause();
    await untilAllAcked(nodes, 'after the kill', 30000);
    // Every node acked frames after the kill (its own host or, for the victim's nodes, another).
    for (const n of nodes.nodes) assert.ok(n.acked > ackedAtKill.get(n.o.nodeId)!, `${n.o.nodeId} resumed after the kill`);
    const moved = nodes.nodes.filter((n) => n.outages.some((o) => o.closedAt >= tKill - 50));
    assert.ok(moved.length > 0, 'some nodes lost their host');
    for (const n of moved) assert.ok(n.outages.at(-1)!.resumedAt !== null, `${n.o.nodeId} resumed`);
    // The dead host's trackers read what was in their pipes once they wake; then nothing acked is missing.
    await until(() => Object.keys(lostAcked(fleet, nodes.nodes)).length === 0, 'every acked frame in a tracker input', (SLOW_TRACKER_S + 8) * 1000)
      .catch(() => assert.deepEqual(lostAcked(fleet, nodes.nodes), {}, 'acked frames lost'));
    assert.deepEqual(fleet.crashes, []);
    nodes.stop();
  });

  test('commands to one agent, a group and all agents reach agents on every host; acks land on another host', async () => {
    await allUp();
    const [a, b, c] = fleet.hosts as [FleetHost, FleetHost, FleetHost];
    const reg = async (h: FleetHost, id: string, group: string): Promise<string> => {
      const r = await h.call('POST', '/api/v1/agents/register', { id, name: id, group, version: '1.0.0', capabilities: [] }, FLEET_TOKEN);
      assert.equal(r.status, 200, JSON.stringify(r.json));
      return r.json.accessToken as string;
    };
    const agents = [
      { id: 'ag-a', host: a, group: 'g1' }, { id: 'ag-b', host: b, group: 'g1' }, { id: 'ag-c', host: c, group: 'g2' },
    ];
    const tokens = new Map<string, string>();
    const sse = new Map<string, AgentStream>();
    for (const g of agents) {
      tokens.set(g.id, await reg(g.host, g.id, g.group));
      const s = await AgentStream.open(g.host.httpPort, g.id, tokens.get(g.id)!);
      streams.push(s);
      assert.equal(s.status, 200);
      sse.set(g.id, s);
    }
    // Every host lists the whole fleet's agents.
    for (const h of fleet.hosts) {
      const r = await h.call('GET', '/api/v1/agents?status=LIVE');
      const listed = (r.json.agents as Array<{ id: string }>).map((x) => x.id).filter((x) => x.startsWith('ag-')).sort();
      assert.deepEqual(listed, ['ag-a', 'ag-b', 'ag-c'], `${h.id} lists every agent`);
    }
    const got = (id: string, cmd: string): boolean => sse.get(id)!.events.some((e) => e.data.id === cmd);
    const ackOn = async (h: FleetHost, agent: string, cmd: string): Promise<void> => {
      const r = await h.call('POST', `/api/v1/agents/${agent}/commands/${cmd}/ack`, { result: 'ok' }, tokens.get(agent)!);
      assert.equal(r.status, 200, `ack of ${cmd} by ${agent} on ${h.id}: ${JSON.stringify(r.json)}`);
    };
    const stateOn = async (h: FleetHost, agent: string, cmd: string): Promise<string | undefined> => {
      const r = await h.call('GET', `/api/v1/agents/${agent}/commands`);
      return (r.json?.commands as Array<{ id?: string; commandId?: string; state: string }> | undefined)?.find((x) => (x.id ?? x.commandId) === cmd)?.state;
    };
    // One agent: created on host-c, pushed on host-a's stream, acked on host-b, ACKNOWLEDGED seen from host-c.
    const one = await c.call('POST', '/api/v1/agents/ag-a/commands', { type: 'config-update', payload: { x: 1 } });
    assert.equal(one.status, 202, JSON.stringify(one.json));
    const cmd1 = one.json.commands[0].commandId as string;
    await until(() => got('ag-a', cmd1), 'ag-a received the command from host-c', 5000);
    await ackOn(b, 'ag-a', cmd1);
    await until(async () => (await stateOn(c, 'ag-a', cmd1)) === 'ACKNOWLEDGED', 'ACKNOWLEDGED seen from host-c', 5000);
    // A group: g1 = ag-a (host-a) and ag-b (host-b), sent through host-c.
    const grp = await c.call('POST', '/api/v1/agents/groups/g1/commands', { type: 'replay', payload: {} });
    assert.equal(grp.status, 202, JSON.stringify(grp.json));
    const byAgent = new Map((grp.json.commands as Array<{ agentId: string; commandId: string }>).map((x) => [x.agentId, x.commandId]));
    assert.deepEqual([...byAgent.keys()].filter((x) => x.startsWith('ag-')).sort(), ['ag-a', 'ag-b']);
    for (const id of ['ag-a', 'ag-b']) await until(() => got(id, byAgent.get(id)!), `${id} received the group command`, 5000);
    assert.ok(!sse.get('ag-c')!.events.some((e) => e.event === 'replay'), 'ag-c is not in g1');
    // All: sent through host-b, every agent gets one, each acked on a host other than its stream's.
    const all = await b.call('POST', '/api/v1/agents/commands', { type: 'deep-trace', payload: { duration_ms: 1000 } });
    assert.equal(all.status, 202, JSON.stringify(all.json));
    const allBy = new Map((all.json.commands as Array<{ agentId: string; commandId: string }>).map((x) => [x.agentId, x.commandId]));
    for (const [i, g] of agents.entries()) {
      const cmd = allBy.get(g.id);
      assert.ok(cmd, `a broadcast command for ${g.id}`);
      await until(() => got(g.id, cmd), `${g.id} received the broadcast`, 5000);
      await ackOn(fleet.hosts[(i + 1) % 3]!, g.id, cmd);
      await until(async () => (await stateOn(fleet.hosts[(i + 2) % 3]!, g.id, cmd)) === 'ACKNOWLEDGED', `${g.id}'s broadcast ACKNOWLEDGED everywhere`, 5000);
    }
  });

  test('Redis restarted mid-run: no host crashes, frames keep flowing and every acked frame reaches a tracker', async () => {
    await allUp();
    const nodes = nodeFleet('redis', 6);
    nodes.start(10);
    await until(() => nodes.nodes.every((n) => n.acked > 0), 'redis nodes acked', 15000);
    await fleet.restartRedis(1500);
    const ackedAfter = nodes.ackedTotal;
    await until(() => nodes.ackedTotal > ackedAfter + 60, 'frames acked after Redis came back', 10000);
    // New connections are served too (a node moving host while Redis was away, and after).
    for (const n of nodes.nodes.slice(0, 3)) n.drop();
    await until(() => nodes.nodes.every((n) => n.connected), 'moved nodes reconnected', 10000);
    nodes.pause();
    await untilAllAcked(nodes, 'after the Redis restart');
    await until(() => Object.keys(lostAcked(fleet, nodes.nodes)).length === 0, 'every acked frame in a tracker input', 10000)
      .catch(() => assert.deepEqual(lostAcked(fleet, nodes.nodes), {}, 'acked frames lost'));
    assert.deepEqual(fleet.crashes, [], fleet.logs());
    for (const h of fleet.hosts) assert.equal((await h.api('/healthz')).status, 200, `${h.id} alive`);
    nodes.stop();
  });

  test('Redis down: every host says so in radar_ingest_cluster_up and _degraded, and recovers', async () => {
    await allUp();
    const gauge = async (h: FleetHost, name: string): Promise<number | undefined> => (await h.metrics()).get(name);
    for (const h of fleet.hosts) assert.equal(await gauge(h, 'radar_ingest_cluster_up'), 1, `${h.id} cluster_up`);
    await fleet.redis!.stop();
    try {
      for (const h of fleet.hosts) {
        await until(async () => (await gauge(h, 'radar_ingest_cluster_up')) === 0 && (await gauge(h, 'radar_ingest_cluster_degraded')) === 1,
          `${h.id}: cluster_up 0, degraded 1 while Redis is down`, 10000);
      }
    } finally {
      await fleet.redis!.restart();
    }
    for (const h of fleet.hosts) {
      await until(async () => (await gauge(h, 'radar_ingest_cluster_up')) === 1 && (await gauge(h, 'radar_ingest_cluster_degraded')) === 0,
        `${h.id}: cluster_up 1, degraded 0 once Redis is back`, 10000);
    }
    assert.deepEqual(fleet.crashes, []);
  });

  test('rolling restart of all three hosts (SIGTERM, drain, start again) loses no acked frame', async () => {
    await allUp();
    const nodes = nodeFleet('roll', 9);
    nodes.start(10);
    await until(() => nodes.nodes.every((n) => n.acked > 0), 'roll nodes acked', 15000);
    for (const h of fleet.hosts) {
      const code = await h.term();
      assert.equal(code, 0, `${h.id} drained and exited 0: ${h.log.slice(-5).join('\n')}`);
      await until(() => nodes.nodes.every((n) => n.connected), `nodes back after ${h.id} left`, 15000);
      await h.start();
      await fleet.untilBalancer(fleet.hosts.map((x) => x.id), 15000);
    }
    nodes.pause();
    await untilAllAcked(nodes, 'after the rolling restart');
    await until(() => Object.keys(lostAcked(fleet, nodes.nodes)).length === 0, 'every acked frame in a tracker input', 10000)
      .catch(() => assert.deepEqual(lostAcked(fleet, nodes.nodes), {}, 'acked frames lost'));
    assert.deepEqual(duplicated(fleet, nodes.nodes), {}, 'frames delivered twice');
    Object.assign(welcomesBehind, behind(nodes));
    assert.deepEqual(fleet.crashes, []);
    nodes.stop();
  });

  test('every welcome after a move (handover or rolling restart) carried the fleet\'s last acked seq', () => {
    assert.deepEqual(welcomesBehind, {}, 'welcome.last_seq behind the acked seq');
  });
});
