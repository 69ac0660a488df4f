// Workload `forward`: how many track events per second one api_forward
// forwarder POSTs, one event per request (the default, tracker-host's format),
// to a node:http receiver in the same process; and, for scale, a bare
// node:http client loop on one kept-alive connection and fetch(), with the
// same bodies and the same receiver.
import { createServer, request, Agent, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { ApiForwarder } from '../src/tracker/api-forwarder.js';
import { defineWorkload, list, num, SAVE_OPTION } from './lib/options.js';
import { boundRun, header, report } from './lib/results.js';
import { med, round } from './lib/stats.js';

const CELLS = ['forwarder', 'node-http', 'fetch'] as const;
type Cell = (typeof CELLS)[number];

/** A retina-tracker-shaped event (~230 bytes). */
const EVENT = JSON.stringify({
  track_id: '20261205-00002A', adsb_hex: null, adsb_initialized: false, timestamp: 1764892800000, length: 12,
  detections: [{ delay: 12.5, doppler: -40.25, snr: 14.2 }], is_anomalous: false, max_velocity_ms: 0, anomaly_types: [],
});

interface Receiver { server: Server; url: string; port: number; received: () => number; connections: () => number }

async function receiver(): Promise<Receiver> {
  let received = 0;
  let connections = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      JSON.parse(body);
      received++;
      res.writeHead(200).end();
    });
  });
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { server, port, url: `http://127.0.0.1:${port}/tracks`, received: () => received, connections: () => connections };
}

interface CellResult { cell: Cell; events: number; seconds: number; events_per_s: number; connections: number }

async function runCell(cell: Cell, events: number): Promise<CellResult> {
  const rx = await receiver();
  const t0 = performance.now();
  if (cell === 'forwarder') {
    const f = new ApiForwarder({ url: rx.url, maxQueue: events });
    for (let i = 0; i < events; i++) f.enqueue(EVENT);
    while (f.stats().sent + f.stats().failed < events) await new Promise((r) => setTimeout(r, 2));
    await f.close(1000);
  } else if (cell === 'node-http') {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < events; i++) {
      await new Promise<void>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: rx.port, path: '/tracks', method: 'POST', agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(EVENT) } }, (res) => {
          res.resume();
          res.on('end', resolve);
        });
        req.on('error', reject);
        req.end(EVENT);
      });
    }
    agent.destroy();
  } else {
    for (let i = 0; i < events; i++) {
      const res = await fetch(rx.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: EVENT, signal: AbortSignal.timeout(10_000) });
      await res.text();
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const r = { cell, events, seconds: round(seconds, 2), events_per_s: Math.round(events / seconds), connections: rx.connections() };
  rx.server.closeAllConnections();
  await new Promise<void>((res) => rx.server.close(() => res()));
  return r;
}

export const workload = defineWorkload({
  about: 'api_forward: events/s one forwarder POSTs, one event per request, to a local node:http receiver',
  options: {
    events: num(20_000, 'events per cell (fetch: a quarter of it)', 1),
    reps: num(3, 'repetitions', 1),
    cells: list<Cell>([...CELLS], 'cells', CELLS),
    ...SAVE_OPTION,
  },
  run: async (o) => {
    boundRun(600);
    const head = header('forward', { events: o.events, reps: o.reps, cells: o.cells });
    const runs: CellResult[] = [];
    for (let r = 0; r < o.reps; r++) {
      for (const cell of o.cells) runs.push(await runCell(cell, cell === 'fetch' ? Math.max(1, Math.floor(o.events / 4)) : o.events));
    }
    const byCell = Object.fromEntries(o.cells.map((c) => [c, med(runs.filter((x) => x.cell === c).map((x) => x.events_per_s))]));
    const lines = o.cells.map((c) => `${c}: median ${byCell[c]} events/s`);
    report('forward', { ...head, median_events_per_s: byCell, runs }, lines.join('\n'), !o.noSave);
  },
});
