// Workload `decode`: the shard's per-frame line path in one thread, stage by stage,
// without sockets or threads. The ingest generator's frames (retina lines, 1-5
// detections cycling, a token on every line; `--nodes` nodes, one connection each)
// are cut into socket-sized reads and fed, round-robin over the connections, through
// cumulative stages; each stage's cost per frame is its time minus the previous one's:
//   split   LineFramer: find the newline, hand out the line
//   scan    + the validating JSON scanner (grammar, UTF-8, known members, spans)
//   copy    + writeLineFrame into a real ring (record header, span copy, commit; a
//           consumer that takes everything after each read keeps the ring from filling)
//   shard   the real Shard on M_DATA (framer, scanner, handler checks, routing,
//           accounting, ring copy, flush and the credits message): minus `copy` it is
//           the handler's checks, routing and accounting
// and beside them the naive server's path (bench/lib/naive-line.ts: UTF-8 decode,
// split, JSON.parse, token compare, count) and one token check (the engine checks a
// token once per connection and node, the naive server on every line).
// Rounds interleave the stages; each stage's fastest round is used (process CPU time per
// frame; the medians are in the JSON too).
import {
  Shard, LineFramer, F_MESSAGE, LineScan, scanLine, SCAN_OK, TokenCheck, RingWriter, createRingBuffer, writeLineFrame,
  HEAD64, TAIL64, COUNTER_SLOTS, C_FRAMES_WRITTEN, M_OPEN, M_DATA, M_GRANT, S_CLAIM, S_CLOSE,
} from './lib/engine-api.js';
import { LineBatch } from './lib/frames.js';
import { naiveLineConsumer, newNaiveCounts } from './lib/naive-line.js';
import { defineWorkload, num, str, SAVE_OPTION, type OptValues } from './lib/options.js';
import { header, report } from './lib/results.js';
import { fmt, median, round } from './lib/stats.js';

const TOKEN = 'bench-secret';
const MAX_FRAME = 1 << 20;
const RING_BYTES = 4 << 20;

/** The frames: per node, `bytesPerNode` of the generator's lines cut into `readBytes` reads (cuts fall mid-line, as socket reads do). */
function corpus(nodes: number, bytesPerNode: number, readBytes: number) {
  const reads: Buffer[][] = [];
  let frames = 0;
  let bytes = 0;
  for (let i = 0; i < nodes; i++) {
    const lb = new LineBatch(`bench-${i}`, TOKEN, bytesPerNode);
    frames += lb.frames;
    bytes += lb.template.length;
    const rs: Buffer[] = [];
    // Each read in its own buffer, like the socket's.
    for (let p = 0; p < lb.template.length; p += readBytes) rs.push(Buffer.from(lb.template.subarray(p, Math.min(lb.template.length, p + readBytes))));
    reads.push(rs);
  }
  // Round-robin over the connections, read by read.
  const order: Array<[number, Buffer]> = [];
  const most = Math.max(...reads.map((r) => r.length));
  for (let k = 0; k < most; k++) for (let i = 0; i < nodes; i++) if (k < reads[i]!.length) order.push([i, reads[i]![k]!]);
  return { order, frames, bytes, nodes };
}
type Corpus = ReturnType<typeof corpus>;

/** A ring whose consumer takes everything at once (TAIL := HEAD). */
function ringOf(): { w: RingWriter; drain: () => void } {
  const sab = createRingBuffer(RING_BYTES);
  const h64 = new BigUint64Array(sab, 0, 2);
  return { w: new RingWriter(sab, 'block'), drain: () => Atomics.store(h64, TAIL64, Atomics.load(h64, HEAD64)) };
}

/** Each stage: one pass over the corpus; returns frames handled (a check that every stage saw them all). */
type Stage = (c: Corpus) => number;

const splitStage = (): Stage => {
  return (c) => {
    const framers = Array.from({ length: c.nodes }, () => new LineFramer(MAX_FRAME));
    let n = 0;
    for (const [i, b] of c.order) {
      const f = framers[i]!;
      f.push(b);
      while (f.next() === F_MESSAGE) n++;
      f.takeConsumed();
    }
    return n;
  };
};

const scanStage = (): Stage => {
  const scan = new LineScan();
  return (c) => {
    const framers = Array.from({ length: c.nodes }, () => new LineFramer(MAX_FRAME));
    let n = 0;
    for (const [i, b] of c.order) {
      const f = framers[i]!;
      f.push(b);
      while (f.next() === F_MESSAGE) if (scanLine(f.msgBuf, f.msgStart, f.msgEnd, scan) === SCAN_OK) n++;
      f.takeConsumed();
    }
    return n;
  };
};

const copyStage = (): Stage => {
  const scan = new LineScan();
  const rings = Array.from({ length: 1024 }, () => null as ReturnType<typeof ringOf> | null);
  const noDrop = (): void => undefined;
  return (c) => {
    const framers = Array.from({ length: c.nodes }, () => new LineFramer(MAX_FRAME));
    let n = 0;
    for (const [i, b] of c.order) {
      const f = framers[i]!;
      const r = (rings[i] ??= ringOf());
      f.push(b);
      while (f.next() === F_MESSAGE) {
        if (scanLine(f.msgBuf, f.msgStart, f.msgEnd, scan) !== SCAN_OK) continue;
        if (writeLineFrame(r.w, f.msgBuf, scan, 0, scan.count[5]!, noDrop) === 0) n++;
      }
      f.takeConsumed();
      r.w.flush();
      r.drain();
    }
    return n;
  };
};

/** The real shard, its "main thread" answering claims with rings at once. */
const shardStage = (): Stage => {
  const counters = new Float64Array(COUNTER_SLOTS);
  const outbox: Array<{ t: number; conn?: number; node?: string }> = [];
  const shard = new Shard({
    shardId: 0, counters, token: TOKEN, tokens: {}, overflow: 'block', ack: 'ring',
    limits: { maxFrameBytes: MAX_FRAME, maxDetections: 1_000_000, maxClockSkewMs: 0, maxSeqJump: Number.MAX_SAFE_INTEGER },
    post: (m) => void outbox.push(m as (typeof outbox)[number]),
  });
  const drains: Array<() => void> = [];
  let nextConn = 1;
  const settle = (): void => {
    for (let m = outbox.shift(); m !== undefined; m = outbox.shift()) {
      if (m.t === S_CLAIM) {
        const sab = createRingBuffer(RING_BYTES);
        const h64 = new BigUint64Array(sab, 0, 2);
        drains.push(() => Atomics.store(h64, TAIL64, Atomics.load(h64, HEAD64)));
        shard.handle({ t: M_GRANT, conn: m.conn!, node: m.node!, ring: sab, ringId: drains.length - 1 });
      } else if (m.t === S_CLOSE) {
        throw new Error(`the shard closed a bench connection: ${JSON.stringify(m)}`);
      }
    }
  };
  const conns: number[] = [];
  return (c) => {
    // One connection per node for every pass (each node's lines end with a newline: no partial line carries over).
    while (conns.length < c.nodes) {
      const id = nextConn++;
      shard.handle({ t: M_OPEN, conn: id, remote: 'bench' });
      conns.push(id);
    }
    const before = counters[C_FRAMES_WRITTEN]!;
    for (const [i, b] of c.order) {
      shard.handle({ t: M_DATA, conn: conns[i]!, buf: b });
      if (outbox.length > 0) settle();
      for (const d of drains) d();
    }
    return counters[C_FRAMES_WRITTEN]! - before;
  };
};

const naiveStage = (): Stage => {
  return (c) => {
    const counts = newNaiveCounts();
    const eat = Array.from({ length: c.nodes }, () => naiveLineConsumer(TOKEN, counts));
    for (const [i, b] of c.order) eat[i]!(b);
    return counts.frames;
  };
};

/** One token check as the engine makes it (sha256 of both sides, constant-time compare), per "frame". */
const tokenStage = (): Stage => {
  const tc = new TokenCheck(TOKEN);
  return (c) => {
    let n = 0;
    for (let k = 0; k < c.frames; k++) if (tc.matches('bench-0', TOKEN)) n++;
    return n;
  };
};

const STAGES = { split: splitStage, scan: scanStage, copy: copyStage, shard: shardStage, naive: naiveStage, token_check: tokenStage };
type StageName = keyof typeof STAGES;

const options = {
  nodes: num(16, 'connections (one node each), fed round-robin', 1),
  bytesPerNode: num(256 * 1024, "bytes of each node's lines per pass", 1024),
  readBytes: num(65536, 'bytes per read (a socket read)', 64),
  rounds: num(9, "rounds (every stage once per round, interleaved); each stage's fastest is used", 1),
  passes: num(4, 'passes over the frames per stage and round', 1),
  only: str('', 'run only this stage (for --cpu-prof): split, scan, copy, shard, naive, token_check', /^(|split|scan|copy|shard|naive|token_check)$/),
  ...SAVE_OPTION,
};

/** The per-frame stages of one run, ns: the cumulative times and the differences (each stage's own cost). */
export function runDecode(o: OptValues<typeof options>) {
  const c = corpus(o.nodes, o.bytesPerNode, o.readBytes);
  const stages = Object.fromEntries(Object.entries(STAGES).filter(([k]) => o.only === '' || k === o.only).map(([k, mk]) => [k, mk()])) as Record<StageName, Stage>;
  const samples = Object.fromEntries(Object.keys(STAGES).map((k) => [k, [] as number[]])) as Record<StageName, number[]>;
  const check = (name: string, n: number): void => {
    if (n !== c.frames) throw new Error(`stage ${name} handled ${n} of ${c.frames} frames`);
  };
  for (const [k, st] of Object.entries(stages)) for (let w = 0; w < 3; w++) check(k, st(c)); // warm-up (JIT)
  for (let r = 0; r < o.rounds; r++) {
    for (const [k, st] of Object.entries(stages) as Array<[StageName, Stage]>) {
      // CPU time, not wall time: on a shared machine the wall clock also counts the time this
      // thread waited for a core (getrusage: µs resolution; V8's helper threads are idle once warm).
      const t0 = process.cpuUsage();
      for (let p = 0; p < o.passes; p++) check(k, st(c));
      const t = process.cpuUsage(t0);
      samples[k].push(((t.user + t.system) * 1e3) / (c.frames * o.passes));
    }
  }
  // The least disturbed round of each stage: on a shared machine other jobs only ever add
  // time (run-queue waits are not CPU time, but a busy sibling core and a shared cache are).
  const m = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, v.length ? round(Math.min(...v), 1) : NaN])) as Record<StageName, number>;
  const medians = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, v.length ? round(median(v), 1) : NaN])) as Record<StageName, number>;
  return {
    frames_per_pass: c.frames,
    bytes_per_frame: round(c.bytes / c.frames, 1),
    /** Per stage, the fastest round (used below) and the median round. */
    cumulative_ns_per_frame: m,
    cumulative_median_ns_per_frame: medians,
    /** Each stage's own cost: split; scan = scan - split; copy = copy - scan; handler (checks, routing, accounting, flush) = shard - copy. */
    stage_ns_per_frame: {
      split: m.split, scan: round(m.scan - m.split, 1), ring_copy: round(m.copy - m.scan, 1), handler: round(m.shard - m.copy, 1),
      total_shard: m.shard,
    },
    naive_ns_per_frame: m.naive,
    token_check_ns: m.token_check,
    naive_over_shard: round(m.naive / m.shard, 2),
    /**
     * naive / shard within each round (the two stages run back to back, so they saw the
     * same host speed), and their median: steadier than the ratio of the fastest rounds
     * when the VM's speed drifts between rounds.
     */
    naive_over_shard_per_round: samples.shard.map((x, i) => round((samples.naive[i] ?? NaN) / x, 3)),
    naive_over_shard_round_median: round(median(samples.shard.map((x, i) => (samples.naive[i] ?? NaN) / x)), 2),
    rounds_ns_per_frame: samples,
  };
}

export const workload = defineWorkload({
  about: "the shard's line path per frame, stage by stage (split, scan, ring copy, handler) beside the naive JSON.parse path, one thread",
  options,
  run: async (o) => {
    const res = runDecode(o);
    const s = res.stage_ns_per_frame;
    const lines = [
      `decode (line, ${res.bytes_per_frame} bytes/frame, ${o.nodes} connections): ns per frame: split ${fmt(s.split, 1)}  scan ${fmt(s.scan, 1)}  ring copy ${fmt(s.ring_copy, 1)}  handler ${fmt(s.handler, 1)}  = shard ${fmt(s.total_shard, 1)}`,
      `naive (decode + split + JSON.parse + token + count) ${fmt(res.naive_ns_per_frame, 1)} ns/frame: x${fmt(res.naive_over_shard, 2)} the shard's (median of the rounds' own ratios x${fmt(res.naive_over_shard_round_median, 2)}); one token check ${fmt(res.token_check_ns, 1)} ns`,
    ];
    report('decode', { ...header('decode', o), ...res }, lines.join('\n'), !o.noSave);
  },
});
