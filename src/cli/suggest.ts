/** "Did you mean": the known words nearest to a mistyped one. */

/** Edits (insert, delete, replace, swap of neighbours) from a to b. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.length][b.length];
}

/**
 * The candidates close enough to be what was meant, nearest first: a few edits away (more for
 * longer words), or begun by what was typed (`cr` for `create`).
 */
export function nearest(typed: string, candidates: Iterable<string>, most = 3): string[] {
  const limit = Math.max(1, Math.min(3, Math.floor(typed.length / 3)));
  return [...new Set(candidates)]
    .map((c) => ({ c, d: editDistance(typed, c) }))
    .filter(({ c, d }) => d <= limit || (typed.length >= 2 && c.startsWith(typed)))
    .sort((x, y) => x.d - y.d || x.c.localeCompare(y.c))
    .slice(0, most)
    .map(({ c }) => c);
}

/** `; did you mean vm list?` or nothing. */
export function didYouMean(suggestions: string[]): string {
  if (suggestions.length === 0) return '';
  return `; did you mean ${suggestions.length === 1 ? suggestions[0] : `${suggestions.slice(0, -1).join(', ')} or ${suggestions.at(-1)}`}?`;
}
