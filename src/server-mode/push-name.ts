// The name a pushing node posts under. It names the node's track file
// ({output_dir}/{name}_{date}.jsonl), so it is checked before anything touches the
// file system: tracker-host's alphabet ([A-Za-z0-9_-], no dot, no separator, so no
// path can be formed), bounded to 64 characters like node ids.
export const PUSH_NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** null when `name` is acceptable, else the message for the 400 answer. */
export function pushNameError(name: string): string | null {
  if (PUSH_NAME_PATTERN.test(name)) return null;
  const shown = name.length > 80 ? `${name.slice(0, 80)}...` : name;
  return `Invalid node name ${JSON.stringify(shown)}: must match [a-zA-Z0-9_-]+ (at most 64 characters)`;
}
