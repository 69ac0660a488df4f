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
