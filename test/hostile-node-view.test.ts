// GET /api/v1/nodes/{node_id} under hostile callers: thousands of distinct ids,
// very long, percent-encoded and path-trick ids, more connections than
// http.max_connections_per_source, and http.open_reads: false. Every answer is a
// small JSON one (404 "unknown node ..." for an id the host does not know, 400 for
// a target it cannot read, 401 without the token before any 404), nothing about a
// looked-up id is kept (node table, /api/v1/nodes, /metrics series and the heap
// stay as they were), and a real node is still found under any spelling of its id.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { Agent, request } from 'node:http';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Engine } from '../src/engine/engine.js';
import { startEngine, Client, until, scrape, lineFrame, parseHttpHead, httpGet } from './helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

interface Reply { status: number; body: string }

/** One request on its own connection, the target sent as given (no client-side checks or normalisation). */
function raw(port: number, target: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no answer to GET ${target.slice(0, 80)}`)); }, 10000);
    s.on('data', (d) => got.push(d));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      const b = Buffer.concat(got);
      const he = b.indexOf('\r\n\r\n');
      if (he < 0) return resolve({ status: 0, body: b.toString('latin1') });
      resolve({ status: parseHttpHead(b, he).status, body: b.subarray(he + 4).toString('utf8') });
    });
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    s.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${extra}\r\n`);
  });
}

/** GET over a keep-alive agent (the flood), body parsed as JSON. */
function get(agent: Agent, port: number, path: string): Promise<{ status: number; json: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
    });
    req.on('error', reject);
    req.end();
  });
}

const engines: Engine[] = [];
const clients: Client[] = [];
after(async () => {
  for (const c of clients) c.destroy();
  await Promise.all(engines.map((e) => e.stop()));
});

describe('GET /api/v1/nodes/{node_id} under hostile callers', () => {
  let e: Engine;
  let port: number;
  before(async () => {
    e = await startEngine({ shards: 'auto', http: { max_connections_per_source: 8 } });
    engines.push(e);
    port = e.httpAddress!.port;
    const c = await Client.open(e.tcpAddress!.port);
    clients.push(c);
    await c.send(lineFrame('real-node', 1_700_000_000_000));
    await until(() => e.nodes.get('real-node')?.healthy, 'real-node connected');
  });

  /** The state a lookup must not change. */
  async function footprint(): Promise<{ nodes: number; listed: string[]; series: string[] }> {
    const listed = (JSON.parse((await httpGet(port, '/api/v1/nodes')).body).nodes as { node_id: string }[]).map((n) => n.node_id);
    const m = await scrape(e);
    // The engine's own series (the runtime's, e.g. GC kinds, come and go by themselves).
    return { nodes: e.nodes.nodes.size, listed, series: [...m.keys()].filter((k) => k.startsWith('radar_ingest_')).sort() };
  }

  test('thousands of distinct unknown ids: each a 404 naming the id, nothing kept per id, the heap flat', async () => {
    const before = await footprint();
    const agent = new Agent({ keepAlive: true, maxSockets: 6 });
    try {
      const round = async (tag: string, n: number): Promise<number> => {
        let maxBody = 0;
        for (let i = 0; i < n; i += 6) {
          const rs = await Promise.all(Array.from({ length: 6 }, (_, k) => {
            // Ids of ~1 KB: a host that kept anything per id would show it in the heap.
            const id = `${tag}-${i + k}-${'x'.repeat(1000 + ((i + k) % 200))}`;
            return get(agent, port, `/api/v1/nodes/${id}`).then((r) => ({ id, r }));
          }));
          for (const { id, r } of rs) {
            assert.equal(r.status, 404, `${id}: ${JSON.stringify(r.json)}`);
            assert.deepEqual(r.json, { error: `unknown node ${id}` });
            maxBody = Math.max(maxBody, JSON.stringify(r.json).length);
          }
        }
        return maxBody;
      };
      // Warm-up round, then a measured one of as many new ids: what is left after a GC must not grow with them.
      await round('warm', 1500);
      gc();
      const heap0 = process.memoryUsage().heapUsed;
      const maxBody = await round('flood', 3000);
      gc();
      const grown = process.memoryUsage().heapUsed - heap0;
      // 3,000 ids of ~1 KB kept would be > 3 MB; the runtime's own noise is well under 1 MB.
      assert.ok(grown < 2 * 1024 * 1024, `heap grew ${grown} bytes over 3,000 distinct ids`);
      assert.ok(maxBody < 1300, `answers stay small (${maxBody} bytes)`);
    } finally {
      agent.destroy();
    }
    const afterFlood = await footprint();
    assert.equal(afterFlood.nodes, before.nodes, 'no node table entry for a looked-up id');
    assert.deepEqual(afterFlood.listed, ['real-node']);
    assert.deepEqual(afterFlood.series, before.series, 'no metric series per id or path');
  });

  test('long, percent-encoded and path-trick ids: 404 for an id, 400 for an unreadable target, never 5xx; a real id under any spelling', async () => {
    const before = await footprint();
    const unknown = (id: string) => (r: Reply): void => {
      assert.equal(r.status, 404, `${id.slice(0, 60)}: ${r.body.slice(0, 120)}`);
      assert.deepEqual(JSON.parse(r.body), { error: `unknown node ${id}` });
    };
    const status = (want: number, error?: string) => (r: Reply): void => {
      assert.equal(r.status, want, r.body.slice(0, 120));
      if (error !== undefined) assert.deepEqual(JSON.parse(r.body), { error });
    };
    const found = (r: Reply): void => {
      assert.equal(r.status, 200, r.body);
      assert.equal(JSON.parse(r.body).node_id, 'real-node');
    };
    const long = 'L'.repeat(8000);
    const cases: [string, (r: Reply) => void][] = [
      [`/api/v1/nodes/${long}`, unknown(long)],
      [`/api/v1/nodes/${'L'.repeat(9000)}`, status(400, 'malformed request target')],
      ['/api/v1/nodes/..%2F..%2Fmetrics', unknown('../../metrics')],
      ['/api/v1/nodes/a%2Fb', unknown('a/b')],
      ['/api/v1/nodes/%00%0A%1B%5B31m', unknown('\u0000\n\u001b[31m')],
      ['/api/v1/nodes/%E2%9C%93', unknown('\u2713')],
      ['/api/v1/nodes/%25', unknown('%')],
      ['/api/v1/nodes/%ZZ', status(400, 'malformed request target')],
      ['/api/v1/nodes/%C0%AF', status(400, 'malformed percent-encoding in the path')],
      ['/api/v1/nodes/%ED%A0%80', status(400, 'malformed percent-encoding in the path')],
      ['/api/v1/nodes/a/b', status(404, 'not found')],
      ['/api/v1/nodes/../../metrics', status(404, 'not found')],
      ['/api/v1/nodes//real-node', status(404, 'not found')],
      ['/api/v1/nodes/real-node%00', unknown('real-node\u0000')],
      ['/api/v1/nodes/%72eal%2Dnode', found],
      ['/api/v1/nodes/real-node/', found],
      ['/api/v1/nodes/real-node?x=%ZZ&y=' + 'q'.repeat(4000), found],
      ['http://evil.example/api/v1/nodes/real-node', found],
    ];
    for (const [target, check] of cases) {
      const r = await raw(port, target);
      assert.ok(r.status > 0 && r.status < 500, `${target.slice(0, 60)} -> ${r.status}`);
      assert.ok(r.body.length <= 8300, `${target.slice(0, 60)}: answer of ${r.body.length} bytes`);
      check(r);
    }
    // Headers beyond the server's limit: 431, the connection closed, the server up.
    const huge = await raw(port, '/api/v1/nodes/real-node', { 'x-pad': 'p'.repeat(20000) });
    assert.equal(huge.status, 431, huge.body);
    found(await raw(port, '/api/v1/nodes/real-node'));
    assert.deepEqual(await footprint(), before);
  });

  test('more connections than http.max_connections_per_source: the extra ones get 503 at accept, counted; the rest answer; all recover', async () => {
    const rejected0 = (await scrape(e)).get('radar_ingest_http_connections_rejected_total{reason="max_connections_per_source"}')!;
    // Connections this process still holds (keep-alive sockets of earlier requests) count against the limit too.
    const gate = e.http.gate;
    const base = gate.open;
    const refused0 = gate.rejected.max_connections_per_source;
    // 24 connections held open (no request yet), all accepted or refused by the server; then each asks for an id.
    const socks = await Promise.all(Array.from({ length: 24 }, () => new Promise<import('node:net').Socket>((r) => {
      const s = connect(port, '127.0.0.1', () => r(s));
      s.on('error', () => undefined);
    })));
    await until(() => gate.open - base + gate.rejected.max_connections_per_source - refused0 >= 24, 'the server saw every connection');
    const answers = await Promise.all(socks.map((s, i) => new Promise<Reply>((resolve) => {
      const got: Buffer[] = [];
      s.on('data', (d) => got.push(d));
      s.on('close', () => {
        const b = Buffer.concat(got);
        const he = b.indexOf('\r\n\r\n');
        resolve(he < 0 ? { status: 0, body: '' } : { status: parseHttpHead(b, he).status, body: b.subarray(he + 4).toString('utf8') });
      });
      if (!s.destroyed) s.write(`GET /api/v1/nodes/conn-${i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, () => undefined);
    })));
    const by = (st: number): number => answers.filter((a) => a.status === st).length;
    assert.equal(by(404) + by(503), 24, JSON.stringify(answers.map((a) => a.status)));
    assert.equal(by(404), 8 - base, 'the connections within the limit are answered');
    for (const a of answers.filter((x) => x.status === 503)) assert.match(JSON.parse(a.body).error, /connection/);
    const m = await scrape(e);
    assert.equal(m.get('radar_ingest_http_connections_rejected_total{reason="max_connections_per_source"}')! - rejected0, by(503));
    await until(() => gate.open <= base, 'connections closed again');
    assert.equal((await raw(port, '/api/v1/nodes/real-node')).status, 200);
  });
});

describe('GET /api/v1/nodes/{node_id} with http.open_reads: false', () => {
  test('no token: 401 for known and unknown ids alike (no existence oracle); with it: 200 / 404', async () => {
    const e = await startEngine({ http: { open_reads: false, api_token: 'api-secret' } });
    engines.push(e);
    const port = e.httpAddress!.port;
    const c = await Client.open(e.tcpAddress!.port);
    clients.push(c);
    await c.send(lineFrame('known-node', 1_700_000_000_000));
    await until(() => e.nodes.get('known-node')?.healthy, 'known-node connected');
    for (const id of ['known-node', 'nobody', 'x'.repeat(5000), '%2e%2e%2Fmetrics']) {
      for (const auth of [{}, { authorization: 'Bearer wrong' }] as Record<string, string>[]) {
        const r = await raw(port, `/api/v1/nodes/${id}`, auth);
        assert.equal(r.status, 401, `${id.slice(0, 40)} ${JSON.stringify(auth)}: ${r.body.slice(0, 80)}`);
        assert.ok(!r.body.includes(id.slice(0, 40)) || id === '%2e%2e%2Fmetrics', 'the answer does not echo the id');
      }
    }
    const ok = { authorization: 'Bearer api-secret' };
    assert.equal((await raw(port, '/api/v1/nodes/known-node', ok)).status, 200);
    const r = await raw(port, '/api/v1/nodes/nobody', ok);
    assert.equal(r.status, 404);
    assert.deepEqual(JSON.parse(r.body), { error: 'unknown node nobody' });
  });
});
