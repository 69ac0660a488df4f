// /healthz and /readyz as a load balancer and an orchestrator see them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startEngine, httpGet, until } from './helpers.js';

test('/healthz is 200 and /readyz is 200 with every check passing on a running engine', async () => {
  const engine = await startEngine();
  try {
    const h = await httpGet(engine.httpAddress!.port, '/healthz');
    assert.equal(h.status, 200);
    assert.equal(JSON.parse(h.body).status, 'ok');
    const r = await httpGet(engine.httpAddress!.port, '/readyz');
    assert.equal(r.status, 200);
    const body = JSON.parse(r.body);
    assert.equal(body.status, 'ready');
    for (const k of ['config', 'listening', 'shards', 'draining']) assert.equal(body.checks[k].ok, true, k);
  } finally {
    await engine.stop();
  }
});

test('/readyz is 503 naming the failing check while a crashed shard is being replaced', async () => {
  const engine = await startEngine();
  try {
    const port = engine.httpAddress!.port;
    engine.crashShard(0);
    // Between the crash and the replacement thread's start (tens of ms) readiness must fail.
    const r = await until(async () => {
      const x = await httpGet(port, '/readyz');
      return x.status === 503 ? x : null;
    }, 'readyz 503 while the shard is down');
    const body = JSON.parse(r.body);
    assert.equal(body.status, 'not ready');
    assert.equal(body.checks.shards.ok, false);
    assert.match(body.checks.shards.detail, /shards not running: 0/);
    assert.equal(body.checks.draining.ok, true);
    await until(async () => (await httpGet(port, '/readyz')).status === 200, 'ready again after the replacement');
    assert.equal((await httpGet(port, '/healthz')).status, 200);
  } finally {
    await engine.stop();
  }
});

test('readiness fails (draining) as soon as stop begins; liveness does not depend on it', async () => {
  const engine = await startEngine();
  const stopped = engine.stop();
  const checks = engine.readiness();
  assert.equal(checks.draining.ok, false);
  assert.equal(checks.draining.detail, 'shutting down');
  await stopped;
});
