// ApiForwarder (batching mode) against a real HTTP server on 127.0.0.1:0: headers, batching,
// retries (5xx, timeout), no retry on 4xx, bounded queue, close().
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApiForwarder, type ApiForwarderOptions, type ForwardError } from '../src/tracker/api-forwarder.js';

interface Received {
  method: string;
  headers: IncomingHttpHeaders;
  events: unknown[];
  /** Status answered, or 'hang' for a request without an answer (yet: release() sets it). */
  answer: number | 'hang';
}

/** What to answer the n-th request (0-based): a status, or 'hang' (answered by release()). */
type Script = (n: number) => number | 'hang';

interface TestServer {
  url: string;
  received: Received[];
  /** Events of the requests answered 2xx, in order. */
  accepted(): unknown[];
  /** Answers every hanging request with `status`. */
  release(status?: number): void;
  close(): Promise<void>;
}

const servers: TestServer[] = [];
const forwarders: ApiForwarder[] = [];
after(async () => {
  await Promise.all(forwarders.map((f) => f.close(0)));
  await Promise.all(servers.map((s) => s.close()));
});

async function startServer(script: Script = () => 200): Promise<TestServer> {
  const received: Received[] = [];
  const hanging: { res: ServerResponse; rec: Received }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const answer = script(received.length);
      const rec: Received = { method: req.method ?? '', headers: req.headers, events: JSON.parse(Buffer.concat(chunks).toString('utf8')), answer };
      received.push(rec);
      if (answer === 'hang') {
        hanging.push({ res, rec });
        return;
      }
      res.writeHead(answer, { 'content-type': 'text/plain' }).end(answer < 300 ? 'ok' : `status ${answer}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const ts: TestServer = {
    url: `http://127.0.0.1:${port}/tracks`,
    received,
    accepted: () => received.filter((r) => typeof r.answer === 'number' && r.answer < 300).flatMap((r) => r.events),
    release(status = 200) {
      for (const { res, rec } of hanging.splice(0)) {
        if (res.destroyed) continue;
        rec.answer = status;
        res.writeHead(status).end();
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  servers.push(ts);
  return ts;
}

/** A forwarder with test-friendly timings; closed in after(). */
function forwarder(url: string, over: Partial<ApiForwarderOptions> = {}): { f: ApiForwarder; errors: ForwardError[] } {
  const errors: ForwardError[] = [];
  const f = new ApiForwarder({
    url,
    // These tests are about the batching mode (JSON arrays); the default, one object per POST, is in drop-in-output.test.ts.
    batchMaxEvents: 100,
    batchWindowMs: 20,
    backoffBaseMs: 10,
    backoffMaxMs: 40,
    requestTimeoutMs: 2000,
    onError: (e) => errors.push(e),
    ...over,
  });
  forwarders.push(f);
  return { f, errors };
}

async function until(fn: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const ev = (i: number): { track_id: string; timestamp: number } => ({ track_id: `t${i}`, timestamp: 1757400000000 + i });
const line = (i: number): string => JSON.stringify(ev(i));
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, k) => from + k);

describe('ApiForwarder', () => {
  test('POSTs a JSON array with the configured headers', async () => {
    const s = await startServer();
    const { f, errors } = forwarder(s.url, { headers: { Authorization: 'Bearer abc', 'X-Node': 'node-1' } });
    f.enqueue(line(1));
    f.enqueue(ev(2)); // objects are serialised
    f.enqueue('not json'); // rejected, counted
    await until(() => f.stats().sent === 2, 'sent');
    assert.equal(s.received.length, 1);
    const r = s.received[0]!;
    assert.equal(r.method, 'POST');
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.headers['authorization'], 'Bearer abc');
    assert.equal(r.headers['x-node'], 'node-1');
    assert.deepEqual(r.events, [ev(1), ev(2)]);
    assert.deepEqual(f.stats(), { sent: 2, failed: 0, dropped: 0, retries: 0, invalid: 1, requests: 1, queued: 0, inFlight: 0 });
    assert.deepEqual(errors, []);
  });

  test('batches: events within the window share a POST, at most batchMaxEvents per POST, in order', async () => {
    const s = await startServer();
    const { f } = forwarder(s.url, { batchMaxEvents: 100, batchWindowMs: 30 });
    for (const i of range(0, 3)) f.enqueue(line(i));
    await until(() => f.stats().sent === 3, 'first window');
    assert.deepEqual(s.received.map((r) => r.events.length), [3]);
    for (const i of range(3, 253)) f.enqueue(line(i));
    await until(() => f.stats().sent === 253, 'all sent');
    assert.deepEqual(s.received.map((r) => r.events.length), [3, 100, 100, 50]);
    assert.deepEqual(s.accepted(), range(0, 253).map(ev));
    assert.equal(f.stats().requests, 4);
  });

  test('batches and the queue are bounded in characters too', async () => {
    const s = await startServer();
    const L = line(10).length; // events 10..99 all have this length
    const { f } = forwarder(s.url, { batchMaxChars: 3 * L });
    for (const i of range(10, 20)) f.enqueue(line(i));
    await until(() => f.stats().sent === 10, 'sent');
    assert.deepEqual(s.received.map((r) => r.events.length), [3, 3, 3, 1]);

    const { f: g } = forwarder(s.url, { maxQueueChars: 5 * L });
    for (const i of range(20, 30)) g.enqueue(line(i));
    assert.equal(g.stats().dropped, 5);
    assert.equal(g.stats().queued, 5);
    await until(() => g.stats().sent === 5, 'sent');
    assert.deepEqual(s.accepted().slice(10), range(25, 30).map(ev));
  });

  test('a 503 is retried; the accepted events are exactly the batch, once', async () => {
    const s = await startServer((n) => (n === 0 ? 503 : 200));
    const { f, errors } = forwarder(s.url);
    for (const i of range(0, 5)) f.enqueue(line(i));
    await until(() => f.stats().sent === 5, 'sent after retry');
    assert.deepEqual(s.received.map((r) => r.answer), [503, 200]);
    assert.deepEqual(s.received[0]!.events, range(0, 5).map(ev), 'the retry resends the same batch');
    assert.deepEqual(s.accepted(), range(0, 5).map(ev));
    const st = f.stats();
    assert.equal(st.retries, 1);
    assert.equal(st.failed, 0);
    assert.deepEqual(errors, []);
  });

  test('a 400 is not retried: the batch fails at once and the next batch still goes', async () => {
    const s = await startServer((n) => (n === 0 ? 400 : 200));
    const { f, errors } = forwarder(s.url);
    for (const i of range(0, 3)) f.enqueue(line(i));
    await until(() => f.stats().failed === 3, 'failed');
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.status, 400);
    assert.equal(errors[0]!.attempts, 1);
    f.enqueue(line(3));
    await until(() => f.stats().sent === 1, 'next batch sent');
    assert.deepEqual(s.received.map((r) => r.answer), [400, 200], 'no retry of the rejected batch');
    assert.deepEqual(s.accepted(), [ev(3)]);
    assert.equal(f.stats().retries, 0);
  });

  test('retries run out against a dead endpoint; the queue keeps only the newest maxQueue events', async () => {
    const dead = await startServer();
    const url = dead.url;
    await dead.close(); // nothing listens on that port now: connection refused
    const { f, errors } = forwarder(url, { maxQueue: 10, batchMaxEvents: 5, maxAttempts: 3 });
    for (const i of range(0, 30)) f.enqueue(line(i));
    assert.equal(f.stats().dropped, 20, 'the oldest 20 dropped at once');
    assert.equal(f.stats().queued, 10);
    await until(() => f.stats().failed === 10, 'both batches given up');
    const st = f.stats();
    assert.equal(st.sent, 0);
    assert.equal(st.retries, 4, 'two retries per batch');
    assert.equal(st.requests, 6);
    assert.equal(errors.length, 2);
    assert.equal(errors[0]!.attempts, 3);
    assert.equal(errors[0]!.status, undefined);
  });

  test('while a request is stuck, the queue drops its oldest; the newest are delivered after', async () => {
    const s = await startServer((n) => (n === 0 ? 'hang' : 200));
    const { f } = forwarder(s.url, { maxQueue: 10 });
    f.enqueue(line(0));
    await until(() => s.received.length === 1, 'first request at the server');
    assert.equal(f.stats().inFlight, 1);
    for (const i of range(1, 26)) f.enqueue(line(i));
    assert.equal(f.stats().dropped, 15);
    assert.equal(f.stats().queued, 10);
    s.release(200);
    await until(() => f.stats().sent === 11, 'all delivered');
    assert.deepEqual(s.accepted(), [ev(0), ...range(16, 26).map(ev)]);
    assert.equal(s.received.length, 2);
  });

  test('a request that times out is retried', async () => {
    const s = await startServer((n) => (n === 0 ? 'hang' : 200));
    const { f, errors } = forwarder(s.url, { requestTimeoutMs: 100, maxAttempts: 2 });
    const t0 = Date.now();
    for (const i of range(0, 3)) f.enqueue(line(i));
    await until(() => f.stats().sent === 3, 'sent after the timeout');
    assert.ok(Date.now() - t0 >= 100, 'not before the timeout');
    assert.equal(f.stats().retries, 1);
    // The timed-out attempt reached the server too: that is the one duplicate retries imply.
    assert.deepEqual(s.received.map((r) => r.events), [range(0, 3).map(ev), range(0, 3).map(ev)]);
    assert.deepEqual(s.accepted(), range(0, 3).map(ev));
    assert.deepEqual(errors, []);

    // With no attempts left, the timeout fails the batch.
    const s2 = await startServer(() => 'hang');
    const { f: f2, errors: errors2 } = forwarder(s2.url, { requestTimeoutMs: 50, maxAttempts: 1 });
    f2.enqueue(line(9));
    await until(() => f2.stats().failed === 1, 'failed by timeout');
    assert.match(errors2[0]!.message, /timed out after 50 ms/);
  });

  test('close() flushes the queue without waiting for the window, and stops accepting', async () => {
    const s = await startServer();
    const { f } = forwarder(s.url, { batchWindowMs: 60_000, batchMaxEvents: 4 });
    for (const i of range(0, 10)) f.enqueue(line(i));
    await f.close(2000);
    assert.deepEqual(s.accepted(), range(0, 10).map(ev));
    assert.deepEqual(s.received.map((r) => r.events.length), [4, 4, 2]);
    f.enqueue(line(10));
    assert.equal(f.stats().dropped, 1);
    assert.equal(f.stats().sent, 10);
  });

  test('close() gives up at its deadline: the request in flight fails, the rest is dropped', async () => {
    const s = await startServer(() => 'hang');
    const { f } = forwarder(s.url, { batchMaxEvents: 2, requestTimeoutMs: 10_000 });
    for (const i of range(0, 5)) f.enqueue(line(i));
    await until(() => s.received.length === 1, 'first request at the server');
    const t0 = Date.now();
    await f.close(100);
    const took = Date.now() - t0;
    assert.ok(took >= 90 && took < 1000, `closed at the deadline (${took} ms)`);
    const st = f.stats();
    assert.equal(st.failed, 2);
    assert.equal(st.dropped, 3);
    assert.equal(st.sent, 0);
    assert.equal(st.queued, 0);
  });

  test('disabled: nothing is queued or sent; an invalid URL is refused only when enabled', async () => {
    const f = new ApiForwarder({ enabled: false, url: '' });
    f.enqueue(line(1));
    assert.deepEqual(f.stats(), { sent: 0, failed: 0, dropped: 0, retries: 0, invalid: 0, requests: 0, queued: 0, inFlight: 0 });
    await f.close();
    assert.throws(() => new ApiForwarder({ url: '' }), TypeError);
    assert.throws(() => new ApiForwarder({ url: 'ftp://example.com/x' }), TypeError);
  });
});
