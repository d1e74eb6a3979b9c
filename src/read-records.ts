/*
 * The request record of each read, from the caller's arguments: each builder checks them
 * (src/checks.ts) and returns the writer of the record, or throws what `refusal` turns into
 * InvalidArgument. Only the returned writer touches the turn's frame (see Job's #request).
 */
import {
  checkedIterate,
  checkedKey,
  checkedKeys,
  checkedRange,
  checkedScan,
  prefixBounds,
  refusal,
} from './checks.js';
import type { Key, KeyRange } from './keys.js';
import type { ByteWriter } from './protocol/bytes.js';
import { writeCount, writeGetMany, writeKeyRequest, writeScan } from './protocol/requests.js';
import type { IterateRequest } from './snapshot-iterator.js';
import type { IterateOptions, ScanOptions } from './types.js';

type RecordWriter = (w: ByteWriter) => void;
/** A job's category as bytes (checked, and cached by the job). */
export type CategoryOf = (category: unknown, where: string) => Uint8Array;
/** A range given as a `KeyRange` or as a prefix, as `[start, stop)` bytes. */
export type Bounds = { range: KeyRange } | { prefix: Key };

function boundsOf(bounds: Bounds, where: string): [Uint8Array, Uint8Array] {
  return 'prefix' in bounds
    ? prefixBounds(bounds.prefix, where)
    : checkedRange(bounds.range, where);
}

/** Get, Exists, DeleteAcked. */
export function keyRecord(
  tag: number,
  categoryOf: CategoryOf,
  category: string,
  key: Key,
  where: string,
): RecordWriter {
  const cat = categoryOf(category, where);
  const k = checkedKey(key, where, 'key');
  return (w) => writeKeyRequest(w, tag, cat, k);
}

export function getManyRecord(
  categoryOf: CategoryOf,
  category: string,
  keys: readonly Key[],
): RecordWriter {
  const cat = categoryOf(category, 'getMany');
  const list = checkedKeys(keys, 'getMany');
  return (w) => writeGetMany(w, cat, list);
}

/** Scan and ScanPrefix. */
export function scanRecord(
  categoryOf: CategoryOf,
  category: string,
  bounds: Bounds,
  options: ScanOptions | undefined,
  where: string,
): RecordWriter {
  const { start, stop, reverse, limit } = checkedScan(boundsOf(bounds, where), options, where);
  const cat = categoryOf(category, where);
  return (w) => writeScan(w, cat, start, stop, reverse, limit);
}

export function countRecord(
  categoryOf: CategoryOf,
  category: string,
  range: KeyRange,
): RecordWriter {
  const [start, stop] = checkedRange(range, 'count');
  const cat = categoryOf(category, 'count');
  return (w) => writeCount(w, cat, start, stop);
}

/** An iterator's checked request, or why it is refused (its first `next()` rejects). */
export function iterateRequest(
  categoryOf: CategoryOf,
  category: string,
  bounds: Bounds,
  options: IterateOptions | undefined,
  where: string,
): IterateRequest {
  try {
    const { start, stop, reverse, limit, pageSize } = checkedIterate(
      boundsOf(bounds, where),
      options,
      where,
    );
    return { cat: categoryOf(category, where), start, stop, reverse, limit, pageSize };
  } catch (e) {
    return { refused: refusal(e, where) };
  }
}
