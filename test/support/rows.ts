/*
 * Reading the rows of iterators in tests.
 */
import { decodeKey, type KvRow } from '../../src/index.js';

/** The i64 key parts of rows, as numbers. */
export const ids = (rows: readonly KvRow[]): number[] =>
  rows.map((r) => Number(decodeKey(r.key, ['i64'])[0]));

/** Every row an iterator yields. */
export async function all(it: AsyncIterable<KvRow>): Promise<KvRow[]> {
  const rows: KvRow[] = [];
  for await (const row of it) rows.push(row);
  return rows;
}
