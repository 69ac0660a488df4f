// What a tracker's stdout line is: a track event (one JSON object per line) or
// something to skip. Skipped lines go neither to the track file nor to the API
// forwarder; they are counted by reason and logged (rate-limited).

/** Why a stdout line was not taken as a track event. */
export const OUTPUT_SKIP_REASONS = ['not_json', 'not_object', 'too_long'] as const;
export type OutputSkipReason = (typeof OUTPUT_SKIP_REASONS)[number];

export type TrackLine =
  /** `text` is the line without surrounding white space, as it is stored and forwarded. */
  | { kind: 'event'; text: string; event: Record<string, unknown> }
  | { kind: 'blank' }
  | { kind: 'skip'; reason: Exclude<OutputSkipReason, 'too_long'> };

/** Classifies one stdout line (the line splitter has already removed its newline). */
export function classifyTrackLine(line: string): TrackLine {
  const text = line.trim();
  // Blank lines carry nothing: skipped without a warning.
  if (text === '') return { kind: 'blank' };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: 'skip', reason: 'not_json' };
  }
  // A track event is an object; an array, a number or a string is not one.
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { kind: 'skip', reason: 'not_object' };
  return { kind: 'event', text, event: value as Record<string, unknown> };
}

