/*
 * Reading the rows of iterators in tests.
 */
import { compareKeys, decodeKey, type Key, type KvRow, key } from '../../src/index.js';

/** The i64 key parts of rows, as numbers. */
export const ids = (rows: readonly KvRow[]): number[] =>
  rows.map((r) => Number(decodeKey(r.key, ['i64'])[0]));

/** Every row an iterator yields. */
export async function all(it: AsyncIterable<KvRow>): Promise<KvRow[]> {
  const rows: KvRow[] = [];
  for await (const row of it) rows.push(row);
  return rows;
}

/**
 * The page a scan of keys `key(i)` gives over the rows `model`: those past `cursor` in scan
 * order (below it with `reverse`), at most `limit`.
 */
export function modelPage(
  model: Iterable<number>,
  cursor: Key | undefined,
  reverse: boolean,
  limit: number,
): number[] {
  return [...model]
    .filter((i) => {
      if (cursor === undefined) return true;
      const c = compareKeys(key(i), cursor);
      return reverse ? c < 0 : c > 0;
    })
    .sort((a, b) => (reverse ? b - a : a - b))
    .slice(0, limit);
}
