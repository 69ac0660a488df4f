// "Did you mean ...?" for a mistyped name (a config key, a command): the closest
// known name by edit distance, if it is close enough to be the likely intent.

/**
 * Edit distance counting an insertion, a deletion, a substitution or a swap of two
 * neighbouring characters as one edit each (the usual typos: `prot` for `port`).
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  const at = (i: number, j: number): number => d[i * cols + j]!;
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, at(i - 2, j - 2) + 1);
      d[i * cols + j] = v;
    }
  }
  return at(rows - 1, cols - 1);
}

/**
 * The known name closest to `word`, or undefined when none is close: at most one
 * edit in three characters (at least one), ignoring case, `-` versus `_`. Ties go
 * to the earlier candidate, so callers list the likelier names first.
 */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  const norm = (s: string): string => s.toLowerCase().replaceAll('-', '_');
  const w = norm(word);
  const limit = Math.max(1, Math.floor(word.length / 3));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    if (c === word) continue;
    const dist = editDistance(w, norm(c));
    if (dist <= limit && dist < bestDistance) {
      best = c;
      bestDistance = dist;
    }
  }
  return best;
}
