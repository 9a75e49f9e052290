// Comparing query results, so a live query calls back only when its rows changed.
import type { Row } from './types.js';

/** Whether two results hold the same rows in the same order, column by column (blobs by their bytes). */
export function sameRows(a: readonly Row[], b: readonly Row[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const [x, y] = [a[i], b[i]];
    const keys = Object.keys(x);
    if (keys.length !== Object.keys(y).length) return false;
    for (const k of keys) {
      const [u, v] = [x[k], y[k]];
      if (u instanceof Uint8Array && v instanceof Uint8Array) {
        if (u.length !== v.length || u.some((byte, j) => byte !== v[j])) return false;
      } else if (u !== v) {
        return false;
      }
    }
  }
  return true;
}
