// Node ids name files ({name}_{date}.jsonl), metric labels and URL paths, so they
// are restricted to a safe alphabet. Every name that shares those uses (tracker names,
// per-node token keys, agent ids, groups) takes this one rule.
export const NODE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** The rule in words, for error messages that name their own field. */
export const ID_SHAPE = '1-64 characters of [A-Za-z0-9._-] starting with a letter or digit';
export const NODE_ID_RULE = `node_id must be ${ID_SHAPE}`;

export function isValidNodeId(s: unknown): s is string {
  return typeof s === 'string' && NODE_ID_PATTERN.test(s);
}

/** Byte-level check of the same rule (line protocol fast path, no string built). */
export function isValidNodeIdBytes(b: Uint8Array, s: number, e: number): boolean {
  const n = e - s;
  if (n < 1 || n > 64) return false;
  for (let i = s; i < e; i++) {
    const c = b[i]!;
    const alnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
    if (alnum) continue;
    if (i === s) return false;
    if (c !== 0x2e && c !== 0x5f && c !== 0x2d) return false;
  }
  return true;
}
