// The naive line-protocol server, as anyone would first write it in Node: one thread,
// the socket's bytes decoded as UTF-8, split on '\n', every line through JSON.parse,
// its token compared, frames and detections counted. No ring, no validation beyond
// JSON and the token: the yardstick the engine's line decoding is compared with.
import { Loadgen } from './loadgen.js';
import { RawServer } from './raw-server.js';
import { cpuBreakdown, delta, genCpu, perSecond, sleep, snapshot } from './probes.js';
import { round } from './stats.js';

/** Frames and detections counted, lines refused (not JSON, wrong token, not a frame). */
export interface NaiveCounts { frames: number; detections: number; refused: number }

export const newNaiveCounts = (): NaiveCounts => ({ frames: 0, detections: 0, refused: 0 });

/** One connection's consumer: feed it the socket's chunks in order. */
export function naiveLineConsumer(token: string, counts: NaiveCounts): (chunk: Buffer) => void {
  const decoder = new TextDecoder('utf-8');
  let carry = '';
  return (chunk) => {
    const lines = (carry + decoder.decode(chunk, { stream: true })).split('\n');
    carry = lines.pop()!;
    for (const line of lines) {
      if (line === '') continue;
      let m: { token?: unknown; delay?: unknown };
      try {
        m = JSON.parse(line) as typeof m;
      } catch {
        counts.refused++;
        continue;
      }
      if (m === null || typeof m !== 'object' || m.token !== token || !Array.isArray(m.delay)) {
        counts.refused++;
        continue;
      }
      counts.frames++;
      counts.detections += m.delay.length;
    }
  };
}

/** One rep of the naive cell: the ingest workload's push generator (line) against the naive server in this process. */
export async function runNaive(spec: { connections: number; warmupS: number; durationS: number }, token: string, calibrate: () => number) {
  const calibrationMops = calibrate();
  const counts = newNaiveCounts();
  const raw = new RawServer(() => naiveLineConsumer(token, counts));
  const { port } = await raw.listen();
  let lg: Loadgen | null = null;
  try {
    lg = await Loadgen.start({
      host: '127.0.0.1', port, protocol: 'line', connections: spec.connections, token, maxSeconds: spec.warmupS + spec.durationS + 60,
    });
    lg.go();
    await sleep(spec.warmupS * 1000);
    const p0 = snapshot([]);
    const g0 = await lg.mark();
    const c0 = { ...counts };
    const b0 = raw.bytes;
    const tick = perSecond(() => counts.frames, c0.frames);
    await sleep(spec.durationS * 1000);
    const rates = tick.stop();
    const p1 = snapshot([]);
    const g1 = await lg.mark();
    const c1 = { ...counts };
    const b1 = raw.bytes;
    const fin = await lg.stop();
    lg = null;
    // Every line sent is counted or refused once the sockets are read to the end (bounded wait).
    const until = Date.now() + 10000;
    while (counts.frames + counts.refused < fin.sent && Date.now() < until) await sleep(20);
    const d = delta(p0, p1);
    const s = d.seconds;
    const frames = c1.frames - c0.frames;
    const cpu = cpuBreakdown(d, { generator_cpu: genCpu(g0, g1) });
    const perFrameNs = (cores: number | null): number | null => (cores === null ? null : round(((cores * s) / frames) * 1e9, 1));
    const violations: string[] = [];
    if (counts.frames !== fin.sent) violations.push(`generator sent ${fin.sent} != naive server counted ${counts.frames} (refused ${counts.refused})`);
    if (fin.closedEarly > 0) violations.push(`${fin.closedEarly} connections closed during the run`);
    return {
      protocol: 'line' as const,
      mode: 'naive' as const,
      shards: null,
      window_s: round(s, 3),
      frames_per_s: Math.round(frames / s),
      detections_per_s: Math.round((c1.detections - c0.detections) / s),
      sent_per_s: Math.round((g1.sent - g0.sent) / ((g1.childAt - g0.childAt) / 1000)),
      mbytes_per_s: round((b1 - b0) / s / 1e6, 1),
      ...cpu,
      main_busy_ns_per_frame: perFrameNs(d.mainElu),
      main_cpu_ns_per_frame: perFrameNs(d.mainThreadCpu),
      process_cpu_ns_per_frame: perFrameNs(d.processCpu),
      /** The one thread that decodes (the main thread), ns of CPU per frame counted. */
      decode_cpu_ns_per_frame: perFrameNs(d.mainThreadCpu),
      generator_elu: round((g1.eluActiveMs - g0.eluActiveMs) / (g1.childAt - g0.childAt), 3),
      per_second: rates,
      calibration_mops: round(calibrationMops, 3),
      accounting: { sent: fin.sent, counted: counts.frames, refused: counts.refused, errors: fin.errors, violations },
    };
  } finally {
    lg?.kill();
    await raw.stop();
  }
}
export type NaiveResult = Awaited<ReturnType<typeof runNaive>>;
