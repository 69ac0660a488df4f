// Stable error codes (undici style). Codes never change meaning once shipped:
// operators grep logs for them and nodes receive them in binary ERROR messages.
// Errors cross postMessage as plain {code, message} and are rebuilt with fromPlain().

export const ErrorCodes = {
  CONFIG: 'RADAR_ERR_CONFIG',
  FRAME_TOO_LARGE: 'RADAR_ERR_FRAME_TOO_LARGE',
  MALFORMED: 'RADAR_ERR_MALFORMED',
  INVALID_UTF8: 'RADAR_ERR_INVALID_UTF8',
  INVALID_FRAME: 'RADAR_ERR_INVALID_FRAME',
  AUTH_FAILED: 'RADAR_ERR_AUTH_FAILED',
  NOT_AUTHENTICATED: 'RADAR_ERR_NOT_AUTHENTICATED',
  PROTOCOL: 'RADAR_ERR_PROTOCOL',
  UNSUPPORTED_VERSION: 'RADAR_ERR_UNSUPPORTED_VERSION',
  FIRST_MESSAGE_TIMEOUT: 'RADAR_ERR_FIRST_MESSAGE_TIMEOUT',
  IDLE_TIMEOUT: 'RADAR_ERR_IDLE_TIMEOUT',
  SUPERSEDED: 'RADAR_ERR_SUPERSEDED',
  NODE_REFUSED: 'RADAR_ERR_NODE_REFUSED',
  FLAPPING: 'RADAR_ERR_FLAPPING',
  MAX_CONNECTIONS: 'RADAR_ERR_MAX_CONNECTIONS',
  SHARD_CRASHED: 'RADAR_ERR_SHARD_CRASHED',
  SHUTTING_DOWN: 'RADAR_ERR_SHUTTING_DOWN',
  DUPLICATE: 'RADAR_ERR_DUPLICATE',
  RING_OVERFLOW: 'RADAR_ERR_RING_OVERFLOW',
  OUTPUT_OVERFLOW: 'RADAR_ERR_OUTPUT_OVERFLOW',
  SEQ_JUMP: 'RADAR_ERR_SEQ_JUMP',
  TOO_MANY_DETECTIONS: 'RADAR_ERR_TOO_MANY_DETECTIONS',
  CLOCK_SKEW: 'RADAR_ERR_CLOCK_SKEW',
  MAX_NODES: 'RADAR_ERR_MAX_NODES',
  MAX_AGENTS: 'RADAR_ERR_MAX_AGENTS',
  INVALID_HELLO: 'RADAR_ERR_INVALID_HELLO',
  UNHANDLED: 'RADAR_ERR_UNHANDLED',
  NODE_OWNED: 'RADAR_ERR_NODE_OWNED',
  CLUSTER_UNAVAILABLE: 'RADAR_ERR_CLUSTER_UNAVAILABLE',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface PlainError {
  code: ErrorCode;
  message: string;
}

export class RadarError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'RadarError';
    this.code = code;
  }
  toPlain(): PlainError {
    return { code: this.code, message: this.message };
  }
  static fromPlain(p: PlainError): RadarError {
    return new RadarError(p.code, p.message);
  }
}

/** Thrown by config loading; the message always starts with the key path. */
export class ConfigError extends RadarError {
  readonly path: string;
  constructor(path: string, message: string) {
    super(ErrorCodes.CONFIG, path ? `${path}: ${message}` : message);
    this.name = 'ConfigError';
    this.path = path;
  }
}
