// Everything the benchmarks take from the engine, in one place: the only file
// under bench/ that imports from src/, so moving a source file is a one-file fix here.
import { fileURLToPath } from 'node:url';

export { parseConfig } from '../../src/config.js';
export { Engine, type EngineOptions } from '../../src/engine/engine.js';
export type { EngineProbe } from '../../src/nodes/ring-sink.js';
export type { Totals } from '../../src/engine/metrics.js';
export {
  C_HEARTBEATS, C_BYTES_RECEIVED, C_CONNECTIONS_ACCEPTED, C_ACKS_SENT, CLOSE_REASONS, REJECT_REASONS, closeIndex,
} from '../../src/telemetry/counters.js';
export {
  encodeFrame, encodeHello, encodeMessage, decodeBody, PROTOCOL_VERSION, HEARTBEAT_MS, T_WELCOME, T_ACK, T_ERROR, T_HEARTBEAT,
} from '../../src/protocol/binary-protocol.js';

/** The engine's command-line entry (compiled), for workloads that run it as a process. */
export const ENGINE_CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

// The shard's line path, stage by stage (bench/decode.ts).
export { Shard } from '../../src/shard/shard.js';
export { LineFramer, F_MESSAGE, F_NONE } from '../../src/shard/line/line-framer.js';
export { LineScan, scanLine, SCAN_OK } from '../../src/shard/line/json-scan.js';
export { TokenCheck } from '../../src/shard/token.js';
export { RingWriter } from '../../src/ring/ring-writer.js';
export { createRingBuffer } from '../../src/ring/ring-reader.js';
export { writeLineFrame } from '../../src/ring/record-codec.js';
export { HEAD64, TAIL64, HEADER_BYTES } from '../../src/ring/ring-layout.js';
export { COUNTER_SLOTS, C_FRAMES_WRITTEN, C_FRAMES_RECEIVED } from '../../src/telemetry/counters.js';
export { M_OPEN, M_DATA, M_GRANT, S_CLAIM, S_CLOSE } from '../../src/protocol/thread-messages.js';
