// A batch of track events as a node posts it: NDJSON, one event per line. Each
// line is checked on its own (UTF-8, JSON, an object, nesting of at most 32) and
// a line that fails is skipped and counted, as tracker-host skipped a line that
// was not JSON; blank lines are nothing. What a line passes as is its own text,
// trimmed, never re-serialised.
import { TextDecoder } from 'node:util';
import { jsonDepthExceeds } from '../http/json-depth.js';

const MAX_DEPTH = 32;

export interface TrackLine {
  /** The line, trimmed. */
  text: string;
  /** `track_id` as text, or null when the event has none. */
  trackId: string | null;
  /** `length` (else `n_associated`) when it is a number, else 0. */
  length: number;
}

export interface TrackBatch {
  lines: TrackLine[];
  /** Lines that were not UTF-8, not JSON, not an object, or nested too deeply. */
  invalid: number;
}

export function parseTrackBatch(body: Buffer): TrackBatch {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const lines: TrackLine[] = [];
  let invalid = 0;
  let start = 0;
  while (start <= body.length) {
    let end = body.indexOf(0x0a, start);
    if (end === -1) end = body.length;
    const line = parseLine(decoder, body.subarray(start, end));
    if (line === 'invalid') invalid++;
    else if (line !== null) lines.push(line);
    start = end + 1;
  }
  return { lines, invalid };
}

/** null for a blank line. */
function parseLine(decoder: TextDecoder, bytes: Buffer): TrackLine | 'invalid' | null {
  let text: string;
  try {
    text = decoder.decode(bytes).trim();
  } catch {
    return 'invalid';
  }
  if (text === '') return null;
  if (jsonDepthExceeds(text, MAX_DEPTH)) return 'invalid';
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'invalid';
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'invalid';
  const e = v as Record<string, unknown>;
  return { text, trackId: trackIdOf(e.track_id), length: lengthOf(e) };
}

/** tracker-host keys a track by any truthy track_id. */
function trackIdOf(id: unknown): string | null {
  if (typeof id === 'string' && id !== '') return id;
  if (typeof id === 'number' && id !== 0 && Number.isFinite(id)) return String(id);
  return null;
}

function lengthOf(e: Record<string, unknown>): number {
  for (const k of ['length', 'n_associated']) {
    const v = e[k];
    if (typeof v === 'number' && Number.isFinite(v) && v !== 0) return v;
  }
  return 0;
}
