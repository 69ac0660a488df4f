// api_forward wired end to end: a node's frames -> its tracker -> track lines ->
// the track file AND POSTs (with the configured headers) to the forward URL.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { Client, lineFrame, startEngine, until, assertAccounting, FAKE_TRACKER } from './helpers.js';
import type { Engine } from '../src/engine/engine.js';

const dir = mkdtempSync(join(tmpdir(), 'radar-fwd-'));
const engines: Engine[] = [];
after(async () => {
  await Promise.all(engines.map((e) => e.stop()));
  rmSync(dir, { recursive: true, force: true });
});

test('track lines go to the track file and are POSTed to api_forward.url with its headers', async () => {
  const posts: { headers: IncomingMessage['headers']; body: unknown[] }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      posts.push({ headers: req.headers, body: JSON.parse(body) as unknown[] });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tracks`;
  const base = 20000 + Math.floor(Math.random() * 20000);
  const engine = await startEngine({
    sink: 'trackers', output_dir: dir, startup_delay_sec: 0, tcp_retry_delay_sec: 0.02, tcp_connect_retries: 200,
    tcp_server: { auto_provision_port_start: base, auto_provision_port_end: base + 3 },
    api_forward: { enabled: true, url, headers: { authorization: 'Bearer fwd-secret', 'x-site': 'north' } },
    tracker: { command: [process.execPath, FAKE_TRACKER, '--tcp-port', '{port}', '--echo'], reconcile_interval_ms: 20 },
  });
  engines.push(engine);
  const c = await Client.open(engine.tcpAddress!.port);
  let data = '';
  for (let i = 1; i <= 5; i++) data += lineFrame('fwd-node', 1757400000000 + i * 500);
  await c.send(data);
  const events = (): unknown[] => posts.flatMap((p) => p.body);
  await until(() => events().length === 5, 'five events forwarded', 10000);
  assert.ok(posts.every((p) => p.headers.authorization === 'Bearer fwd-secret' && p.headers['x-site'] === 'north'));
  assert.ok(posts.every((p) => String(p.headers['content-type']).startsWith('application/json')));
  const ts = events().map((e) => (e as { echo: { timestamp: number } }).echo.timestamp);
  assert.deepEqual(ts, [1, 2, 3, 4, 5].map((i) => 1757400000000 + i * 500));
  // The same lines are in the track file, and the frames carry no token or node_id.
  // The file and the POSTs are written independently: wait for five complete lines.
  const files = (): string[] => readdirSync(dir).filter((f) => f.startsWith('fwd-node_'));
  const complete = (): string[] => (files().length === 0 ? [] : readFileSync(join(dir, files()[0]!), 'utf8').split('\n').slice(0, -1));
  await until(() => complete().length >= 5, 'five lines in the track file', 10000);
  assert.equal(files().length, 1);
  const lines = complete().map((l) => JSON.parse(l) as { echo: Record<string, unknown> });
  assert.equal(lines.length, 5);
  for (const l of lines) {
    assert.equal(l.echo.token, undefined);
    assert.equal(l.echo.node_id, undefined);
  }
  await assertAccounting(engine);
  c.destroy();
});
