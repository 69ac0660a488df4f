// Workload `forward`: track events per second one api_forward forwarder POSTs, one
// event per request (tracker-host's format), to a node:http receiver in this process;
// beside it, for scale, a bare node:http loop on one kept-alive connection.
import { createServer, request, Agent } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { ApiForwarder } from '../src/tracker/api-forwarder.js';
import { defineWorkload, list, num, SAVE_OPTION } from './lib/options.js';
import { boundRun, header, report } from './lib/results.js';
import { med, round } from './lib/stats.js';

const CELLS = ['forwarder', 'node-http'] as const;
type Cell = (typeof CELLS)[number];

/** A retina-tracker-shaped event (~230 bytes). */
const EVENT = JSON.stringify({
  track_id: '20261205-00002A', adsb_hex: null, adsb_initialized: false, timestamp: 1764892800000, length: 12,
  detections: [{ delay: 12.5, doppler: -40.25, snr: 14.2 }], is_anomalous: false, max_velocity_ms: 0, anomaly_types: [],
});

/** POSTs `events` events through `cell` to a fresh receiver; events/s and the connections it saw. */
async function runCell(cell: Cell, events: number) {
  let connections = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => res.writeHead(JSON.parse(body) ? 200 : 400).end());
  }).on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const t0 = performance.now();
  if (cell === 'forwarder') {
    const f = new ApiForwarder({ url: `http://127.0.0.1:${port}/tracks`, maxQueue: events });
    for (let i = 0; i < events; i++) f.enqueue(EVENT);
    while (f.stats().sent + f.stats().failed < events) await new Promise((r) => setTimeout(r, 2));
    await f.close(1000);
  } else {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(EVENT) };
    for (let i = 0; i < events; i++) {
      await new Promise<void>((resolve, reject) => {
        request({ port, path: '/tracks', method: 'POST', agent, headers }, (res) => res.resume().on('end', resolve)).on('error', reject).end(EVENT);
      });
    }
    agent.destroy();
  }
  const seconds = (performance.now() - t0) / 1000;
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  return { cell, events, seconds: round(seconds, 2), events_per_s: Math.round(events / seconds), connections };
}

export const workload = defineWorkload({
  about: 'api_forward: events/s one forwarder POSTs, one event per request, to a local node:http receiver',
  options: { events: num(20_000, 'events per cell', 1), reps: num(3, 'repetitions', 1), cells: list<Cell>([...CELLS], 'cells', CELLS), ...SAVE_OPTION },
  run: async (o) => {
    boundRun(600);
    const runs: Awaited<ReturnType<typeof runCell>>[] = [];
    for (let r = 0; r < o.reps; r++) for (const cell of o.cells) runs.push(await runCell(cell, o.events));
    const byCell = Object.fromEntries(o.cells.map((c) => [c, med(runs.filter((x) => x.cell === c).map((x) => x.events_per_s))]));
    const summary = o.cells.map((c) => `${c}: median ${byCell[c]} events/s`).join('\n');
    report('forward', { ...header('forward', { events: o.events, reps: o.reps, cells: o.cells }), median_events_per_s: byCell, runs }, summary, !o.noSave);
  },
});
