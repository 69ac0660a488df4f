// One fuzz case: a random stream (valid, structurally or byte-mutated) on a connection,
// sometimes with an honest neighbour, then every per-case check.
import assert from 'node:assert/strict';
import { C_FRAMES_RECEIVED, C_FRAMES_WRITTEN, C_DETECTIONS_RECEIVED, DROP_REASONS, dropIndex } from '../../src/telemetry/counters.js';
import { MAX_FRAME, NODE, HONEST, SENTINEL_SEQ, Rand, caseSeed, B, HConn, Harness } from './harness.js';
import { validLineStream, mutatedLineStream, sentinelLine } from './line-streams.js';
import { prefixed, validBinStream, mutatedBinStream, sentinelFrame } from './binary-streams.js';
import { rawMutate, chunk } from './byte-mutations.js';
import { lineOracle, binOracle, parseOut, CODES, FATAL_CODE, Stats, checkRecord, checkLineFrames, checkBinFrames } from './oracles.js';

/** What the running case feeds, for the failure report. */
export let CURRENT = '';

interface ConnPlan {
  conn: HConn;
  chunks: Uint8Array[];
  check: () => void;
}

export function runCase(h: Harness, seed: number, index: number, st: Stats): void {
  const r = new Rand(caseSeed(seed, index));
  h.jsonl = r.chance(0.25);
  const before = h.counters.slice();
  const plans: ConnPlan[] = [];
  const tsBase = 1757400000000 + index * 1000;
  const sentinelTs = 4e12 + index;
  const binary = r.chance(0.5);
  /** Frames of the honest neighbour (all valid, all counted): not the main connection's. */
  let neighbourFrames = 0;
  const kind = r.f() < 0.3 ? 'valid' : r.chance(0.55) ? 'structural' : 'raw';
  st.cases++;
  st[binary ? 'binary' : 'line']++;
  st[kind]++;

  // The connection under test.
  const main = h.open();
  let bytes: Buffer;
  let checkMain: () => void;
  if (!binary) {
    const v = kind === 'valid' ? validLineStream(r, NODE, tsBase) : null;
    const text = v ? v.text : kind === 'structural' ? mutatedLineStream(r, NODE, tsBase) : validLineStream(r, NODE, tsBase).text;
    let stream = B(text);
    if (kind === 'raw') stream = rawMutate(r, stream);
    // After anything: a newline, then a valid frame, which must get through unless the connection was closed.
    const withSentinel = kind !== 'valid';
    if (withSentinel) stream = Buffer.concat([stream, B('\n'), B(sentinelLine(NODE, sentinelTs))]);
    bytes = stream;
    checkMain = () => {
      const isBinary = bytes.length > 0 && bytes[0] === 0x00; // a raw mutation may have made it look binary
      const recv = h.counters[C_FRAMES_RECEIVED]! - before[C_FRAMES_RECEIVED]! - neighbourFrames;
      if (isBinary) {
        checkBinaryOutput(main, false);
        return;
      }
      assert.equal(main.out.length, 0, 'the line protocol never writes to the node');
      if (main.closeReason !== null) {
        assert.ok(main.closeReason === 'auth_failed' || (main.closeReason === 'node_refused' && main.refused), `line close reason ${main.closeReason}`);
        assert.ok(recv <= lineOracle(bytes).max, `received ${recv} > lines framed ${lineOracle(bytes).max}`);
      } else {
        const o = lineOracle(bytes);
        assert.ok(recv >= o.min && recv <= o.max, `received ${recv} not in [${o.min}, ${o.max}] (lines framed, heartbeats uncounted): a line vanished without a reason`);
      }
      if (v) {
        assert.equal(main.closeReason, null, 'a valid stream is never closed');
        checkLineFrames(main.rings.get(NODE)?.records ?? [], v.frames, 'valid line stream');
      }
      if (withSentinel && main.closeReason === null) {
        st.sentinelsChecked++;
        const recs = main.rings.get(NODE)?.records ?? [];
        assert.equal(recs[recs.length - 1]?.timestamp, sentinelTs, 'the frame after the mutations is written (the connection stayed usable)');
      }
    };
  } else {
    const v = validBinStream(r, NODE, tsBase);
    let wire: Buffer[];
    let framingIntact = true;
    if (kind === 'valid') wire = v.msgs.map((b) => prefixed(b));
    else if (kind === 'structural') wire = mutatedBinStream(r, v);
    else {
      wire = [rawMutate(r, Buffer.concat(v.msgs.map((b) => prefixed(b))))];
      framingIntact = false;
    }
    if (framingIntact && kind !== 'valid') wire.push(sentinelFrame(sentinelTs));
    bytes = Buffer.concat(wire);
    const fatalInWire = framingIntact && wire.some((w, i) => i > 0 && w.readUInt32BE(0) > MAX_FRAME * 16);
    checkMain = () => {
      const isLine = bytes.length > 0 && bytes[0] !== 0x00;
      if (isLine) {
        assert.equal(main.out.length, 0, 'detected as line protocol: nothing is written back');
        assert.ok(main.closeReason === null || main.closeReason === 'auth_failed', `close reason ${main.closeReason}`);
        return;
      }
      const msgs = checkBinaryOutput(main, true);
      const ring = [...main.rings.values()][0];
      const recs = ring?.records ?? [];
      if (kind === 'valid') {
        assert.equal(main.closeReason, null, 'a valid stream is never closed');
        assert.equal(msgs[0]?.t, 'welcome');
        assert.equal(msgs[0]?.last_seq, 0);
        assert.equal(msgs[0]?.node, NODE);
        assert.equal(msgs.filter((m) => m.t === 'error').length, 0, 'no errors for a valid stream');
        checkBinFrames(recs, v.frames, h.jsonl, 'valid binary stream');
        const acks = msgs.filter((m) => m.t === 'ack');
        const last = v.frames.length ? v.frames[v.frames.length - 1]!.seq : 0;
        if (v.msgs.length > 1) assert.equal(acks[acks.length - 1]?.seq, last, 'the last ack covers the last frame');
      }
      if (framingIntact && kind !== 'valid') {
        const recv = h.counters[C_FRAMES_RECEIVED]! - before[C_FRAMES_RECEIVED]! - neighbourFrames;
        if (main.closeReason === null) {
          assert.ok(!fatalInWire, 'an untrusted length must close the connection');
          assert.equal(recv, binOracle(wire), 'every framed message after the hello that is not a heartbeat is counted once');
          st.sentinelsChecked++;
          const lastSeq = ring ? ring.reader.lastSeq : 0;
          const got = recs[recs.length - 1]?.timestamp === sentinelTs;
          assert.ok(got || lastSeq >= SENTINEL_SEQ, `the frame after the mutations is written (last seq ${lastSeq})`);
        }
      }
    };
  }
  plans.push({ conn: main, chunks: chunk(r, bytes), check: checkMain });

  // Sometimes an honest connection on the same shard, its chunks interleaved.
  if (r.chance(0.2)) {
    st.companions++;
    const c = h.open();
    if (r.chance(0.5)) {
      const v = validLineStream(r, HONEST, tsBase + 500);
      neighbourFrames = v.frames.length;
      plans.push({
        conn: c, chunks: chunk(r, B(v.text)), check: () => {
          assert.equal(c.closeReason, null, 'honest line connection not closed');
          checkLineFrames(c.rings.get(HONEST)?.records ?? [], v.frames, 'honest line neighbour');
        },
      });
    } else {
      const v = validBinStream(r, HONEST, tsBase + 500);
      neighbourFrames = v.frames.length;
      plans.push({
        conn: c, chunks: chunk(r, Buffer.concat(v.msgs.map((b) => prefixed(b)))), check: () => {
          assert.equal(c.closeReason, null, 'honest binary connection not closed');
          const msgs = checkBinaryOutput(c, true);
          assert.equal(msgs.filter((m) => m.t === 'error').length, 0);
          checkBinFrames(c.rings.get(HONEST)?.records ?? [], v.frames, h.jsonl, 'honest binary neighbour');
        },
      });
    }
  }

  CURRENT = plans.map((p, i) => `conn ${i} (${i === 0 ? `${binary ? 'binary' : 'line'} ${kind}` : 'neighbour'}), chunks ` +
    `[${p.chunks.map((c) => c.byteLength).join(',')}]: ${Buffer.concat(p.chunks).subarray(0, 3000).toString('hex')}`).join('\n');
  for (const p of plans) {
    st.chunksFed += p.chunks.length;
    for (const c of p.chunks) st.bytesFed += c.byteLength;
  }
  // Deliver, interleaved.
  const cursors = plans.map(() => 0);
  for (;;) {
    const live = plans.map((_, i) => i).filter((i) => cursors[i]! < plans[i]!.chunks.length);
    if (live.length === 0) break;
    const i = r.pick(live);
    h.data(plans[i]!.conn, plans[i]!.chunks[cursors[i]!++]!);
  }

  // Before the sockets go: nothing stuck, every framed byte credited back.
  for (const p of plans) {
    const sc = h.shard.conns.get(p.conn.id);
    assert.ok(!sc?.blocked, 'a connection is blocked after its bytes were handled (ring never drains or a claim was never answered)');
    assert.ok(p.conn.credits <= p.conn.pushed, 'never more credit than bytes');
    if (p.conn.closeReason === null && sc) {
      // Bytes copied into the framer's line/message assembly are credited already (bounded by the frame limit).
      const buffered = sc.framer?.buffered ?? 0;
      assert.ok(p.conn.pushed - p.conn.credits <= buffered, `credit leak: ${p.conn.pushed - p.conn.credits} bytes neither credited nor buffered (${buffered})`);
      if (buffered === 0) assert.equal(p.conn.credits, p.conn.pushed, 'everything framed is credited back');
    }
    assert.ok(p.conn.closes <= 1, 'one close request per connection');
  }
  for (const p of plans) h.end(p.conn);
  for (const p of plans) assert.ok(p.conn.released, 'the shard released the connection after the socket closed');
  assert.equal(h.shard.conns.size, 0, 'no connection state left in the shard');

  // Accounting for the case.
  const d = (i: number): number => h.counters[i]! - before[i]!;
  let dropped = 0;
  for (const reason of DROP_REASONS) {
    const n = d(dropIndex(reason));
    if (n > 0) st.drops[reason] = (st.drops[reason] ?? 0) + n;
    dropped += n;
  }
  let written = 0;
  let dets = 0;
  for (const u of h.used) {
    for (const rec of u.records) {
      checkRecord(rec, st);
      dets += rec.detections;
    }
    written += u.records.length;
  }
  assert.equal(d(C_FRAMES_RECEIVED), d(C_FRAMES_WRITTEN) + dropped, `received ${d(C_FRAMES_RECEIVED)} != written ${d(C_FRAMES_WRITTEN)} + dropped ${dropped}`);
  assert.equal(d(C_FRAMES_WRITTEN), written, 'frames_written = records in the rings');
  assert.equal(d(C_DETECTIONS_RECEIVED), dets, 'detections counted = detections in the rings');
  st.framesWritten += written;
  for (const p of plans) {
    if (p.conn.closeReason) st.closes[p.conn.closeReason] = (st.closes[p.conn.closeReason] ?? 0) + 1;
    p.check();
  }
}

/** Parses what the host sent on a binary connection and checks its grammar. */
function checkBinaryOutput(c: HConn, expectBinary: boolean): Record<string, any>[] {
  const msgs = parseOut(c);
  let lastAck = -1;
  let fatal = 0;
  let welcomes = 0;
  msgs.forEach((m) => {
    assert.ok(['welcome', 'ack', 'error'].includes(m.t), `host message type ${m.t}`);
    if (m.t === 'welcome') welcomes++;
    if (m.t === 'ack') {
      assert.equal(welcomes, 1, 'acks only after the welcome');
      assert.ok(typeof m.seq === 'number' && m.seq >= lastAck, `acks never go back (${lastAck} -> ${m.seq})`);
      lastAck = m.seq;
    }
    if (m.t === 'error') {
      assert.ok(CODES.has(m.code), `error code ${m.code}`);
      assert.equal(typeof m.message, 'string');
      if (m.fatal) fatal++;
    }
  });
  if (c.closeReason !== null) {
    assert.ok(c.closeReason in FATAL_CODE && (c.closeReason !== 'node_refused' || c.refused), `binary close reason ${c.closeReason}: not a documented fatal reason`);
    if (expectBinary) {
      const e = msgs.find((m) => m.t === 'error' && m.fatal);
      assert.ok(FATAL_CODE[c.closeReason]!.includes(e?.code), `the close is announced with one of ${FATAL_CODE[c.closeReason]!.join(', ')}, not ${e?.code}`);
    }
  }
  assert.ok(fatal <= (c.closeReason !== null ? 1 : 0), 'fatal errors only before a close, at most one');
  assert.ok(welcomes <= 1, 'one welcome');
  return msgs;
}
