// A minimal tracker for the e2e workload: counts bytes and frames on its TCP input
// and records (send ns, latency ns) for every send-time marker at its read; writes
// PATH.json and PATH.bin (--report PATH) when the input closes or at SIGTERM/SIGINT.
//   node dist/bench/lib/drain-tracker.js --tcp-port P [--report PATH]
import { createServer, type Socket } from 'node:net';
import { renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { forEachSendTime, MARKER_LEN } from './send-marker.js';

const { values } = parseArgs({
  options: {
    'tcp-port': { type: 'string' },
    report: { type: 'string' },
  },
  strict: false,
});
const port = Number(values['tcp-port']);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write(`drain-tracker: --tcp-port must be a port number (got ${String(values['tcp-port'])})\n`);
  process.exit(2);
}
const reportPath = typeof values.report === 'string' ? values.report : null;
const MAX_SAMPLES = 2_000_000;

let bytes = 0;
let frames = 0;
let chunks = 0;
let connections = 0;
let open = 0;
let firstDataNs = 0;
let lastDataNs = 0;
let samplesDropped = 0;
let badMarkers = 0;
let samples = new Float64Array(2 * 65536);
let nSamples = 0;

function addSample(sendNs: number, latNs: number): void {
  if (nSamples >= MAX_SAMPLES) {
    samplesDropped++;
    return;
  }
  if (2 * nSamples + 2 > samples.length) {
    const next = new Float64Array(samples.length * 2);
    next.set(samples);
    samples = next;
  }
  samples[2 * nSamples] = sendNs;
  samples[2 * nSamples + 1] = latNs;
  nSamples++;
}

/** '\n' bytes in b (the frames it ends). */
function countLines(b: Buffer): number {
  let n = 0;
  for (let p = b.indexOf(10); p !== -1; p = b.indexOf(10, p + 1)) n++;
  return n;
}

/** A latency sample for every readable marker (`now` 0: a warm-up, nothing recorded). */
function scan(b: Buffer, now: number, from = 0, until = b.length): void {
  forEachSendTime(b, (v) => {
    if (now === 0) return;
    if (v > 0) addSample(v, now - v);
    else badMarkers++;
  }, from, until);
}

function onConnection(s: Socket): void {
  connections++;
  open++;
  /** The last bytes read: the start of a marker the chunk boundary cut. */
  let tail = Buffer.alloc(0);
  s.on('data', (chunk: Buffer) => {
    const now = Number(process.hrtime.bigint());
    if (firstDataNs === 0) firstDataNs = now;
    lastDataNs = now;
    chunks++;
    bytes += chunk.length;
    frames += countLines(chunk);
    // Markers starting in the tail are complete only now; those starting in the chunk are scanned in it.
    const joint = Buffer.concat([tail, chunk.subarray(0, MARKER_LEN)]);
    scan(joint, now, 0, tail.length);
    scan(chunk, now);
    tail = Buffer.from((chunk.length >= MARKER_LEN - 1 ? chunk : Buffer.concat([tail, chunk])).subarray(-(MARKER_LEN - 1)));
  });
  s.on('error', () => undefined);
  s.on('close', () => {
    open--;
    if (open === 0 && closeWaiter) closeWaiter();
    else if (open === 0) report();
  });
}

/**
 * Each tracker sees 1/64 of the traffic, so its code would stay unoptimised for a
 * long while and cost the benchmark several times its real CPU: run the per-chunk
 * code on a synthetic chunk first (`now` 0: nothing recorded).
 */
function warmUp(): void {
  const line = Buffer.from('{"timestamp":1757400000000,"t":"0000000000123456789","delay":[1.5],"doppler":[2.5],"snr":[9],"adsb":[null]}\n');
  const b = Buffer.concat(Array(64).fill(line) as Buffer[]);
  let n = 0;
  for (let i = 0; i < 1000; i++) {
    n += countLines(b);
    scan(b, 0);
  }
  if (n !== 64 * 1000) throw new Error('drain-tracker: warm-up self-check failed');
}

function report(): void {
  if (!reportPath) return;
  const cpu = process.cpuUsage();
  const out = {
    pid: process.pid, port, connections, open, bytes, frames, chunks,
    samples: nSamples, samples_dropped: samplesDropped, bad_markers: badMarkers,
    first_data_ns: firstDataNs, last_data_ns: lastDataNs, cpu_us: cpu.user + cpu.system,
    rss_bytes: process.memoryUsage.rss(),
  };
  try {
    writeFileSync(`${reportPath}.bin.tmp`, new Uint8Array(samples.buffer, 0, nSamples * 16));
    renameSync(`${reportPath}.bin.tmp`, `${reportPath}.bin`);
    writeFileSync(`${reportPath}.json.tmp`, `${JSON.stringify(out)}\n`);
    renameSync(`${reportPath}.json.tmp`, `${reportPath}.json`);
  } catch (err) {
    process.stderr.write(`drain-tracker: cannot write the report: ${(err as Error).message}\n`);
  }
}

let closeWaiter: (() => void) | null = null;

function finish(code: number): void {
  if (open === 0) {
    report();
    process.exit(code);
  }
  // The engine ends the input before it signals: read what is left first (bounded).
  const t = setTimeout(() => {
    report();
    process.exit(code);
  }, 3000);
  closeWaiter = () => {
    clearTimeout(t);
    report();
    process.exit(code);
  };
}

process.on('SIGTERM', () => finish(0));
process.on('SIGINT', () => finish(0));

warmUp();
const server = createServer({ noDelay: true }, onConnection);
server.on('error', (err) => {
  process.stderr.write(`drain-tracker: ${err.message}\n`);
  process.exit(1);
});
server.listen(port, '127.0.0.1');
