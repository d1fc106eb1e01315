/** Levenshtein distance, for "did you mean" on a mistyped key. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(above + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The nearest of `known` to `typed`, if it is near enough to be what was meant. */
export function nearestName(typed: string, known: readonly string[]): string | undefined {
  const nearest = known
    .map((name) => ({ name, d: distance(typed, name) }))
    .sort((x, y) => x.d - y.d)[0];
  return nearest && nearest.d <= Math.max(2, Math.floor(typed.length / 4))
    ? nearest.name
    : undefined;
}
