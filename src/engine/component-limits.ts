// The config as each component takes it: the same views at start and at every reload.
import type { Config } from '../config.js';
import type { ShardLimits } from '../protocol/thread-messages.js';

/** The node table's limits, from the config. */
export function nodeLimits(c: Config): { maxNodes: number; releaseMs: number } {
  return { maxNodes: c.limits.max_nodes, releaseMs: c.limits.node_release_ms };
}

/** The limits the shards apply, from the config. */
export function shardLimits(c: Config): ShardLimits {
  const l = c.limits;
  return { maxFrameBytes: l.max_frame_bytes, maxDetections: l.max_detections_per_frame, maxClockSkewMs: l.max_clock_skew_ms, maxSeqJump: l.max_seq_jump };
}

/** The connection handoff's limits, from the config. */
export function handoffLimits(c: Config): {
  maxConnections: number; firstMessageTimeoutMs: number; idleTimeoutMs: number; maxInflightBytes: number; maxOutputBytes: number;
} {
  const l = c.limits;
  return {
    maxConnections: l.max_connections, firstMessageTimeoutMs: l.first_message_timeout_ms,
    idleTimeoutMs: l.idle_timeout_ms, maxInflightBytes: l.max_inflight_bytes, maxOutputBytes: l.max_output_bytes,
  };
}

/** The flapping guard, from the config. */
export function reconnectGuard(c: Config): { max: number; windowMs: number; banMs: number } {
  const l = c.limits;
  return { max: l.reconnect_max, windowMs: l.reconnect_window_ms, banMs: l.reconnect_ban_ms };
}
