import { lengthNow, realBytes } from './bytes.js';
import { DETACHED, rangeAfter } from './codec/key.js';
import { counterBytes, inInt64 } from './counter.js';
import { invalidArgument, PersistencyError } from './errors.js';
import {
  describe,
  describeThrown,
  isKeyValue,
  type Key,
  keyBytes,
  liveKeyBytes,
  prefixRange,
} from './keys.js';
import { MAX_GET_MANY_KEYS, MAX_KEY_BYTES, rowTooBig } from './limits.js';
import { OpKind } from './protocol/requests.js';

export const MEMORY_ROOT = ':memory:';
export const MAX_CATEGORY_BYTES = 0xffff;
const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

/** Invalid input found while validating; carries the user-facing message. */
export class Refused extends Error {}

/**
 * The InvalidArgument for anything thrown while reading a caller's arguments: our own
 * refusal, or whatever a hostile getter, proxy or detached buffer threw.
 */
export function refusal(e: unknown, where: string): PersistencyError {
  if (e instanceof Refused) return invalidArgument(e.message);
  if (e instanceof PersistencyError && e.kind === 'InvalidArgument') return e;
  return invalidArgument(`${where}: reading an argument threw: ${describeThrown(e)}`, e);
}

/**
 * One checked op, ready to encode: for a put `last` is the payload, for a prefix the stop;
 * `lastLength` is its length when it was checked.
 */
export interface OpRecord {
  readonly kind: number;
  readonly category: Uint8Array;
  readonly key: Uint8Array;
  readonly last?: Uint8Array;
  readonly lastLength: number;
}

/** A category's UTF-8 bytes. */
export function categoryBytes(category: unknown, where: string): Uint8Array {
  if (typeof category !== 'string')
    throw new Refused(`${where}: category must be a string, got ${describe(category)}`);
  if (category.length === 0) throw new Refused(`${where}: category is empty`);
  if (!category.isWellFormed()) throw new Refused(`${where}: category has a lone surrogate`);
  if (category.length > MAX_CATEGORY_BYTES)
    throw new Refused(`${where}: category exceeds ${MAX_CATEGORY_BYTES} bytes`);
  const bytes = utf8.encode(category);
  if (bytes.length > MAX_CATEGORY_BYTES) {
    throw new Refused(
      `${where}: category of ${bytes.length} UTF-8 bytes exceeds ${MAX_CATEGORY_BYTES}`,
    );
  }
  return bytes;
}

export function checkedKey(k: unknown, where: string, name: string): Uint8Array {
  if (!isKeyValue(k))
    throw new Refused(`${where}: ${name} must be a Key (use key(...)), got ${describe(k)}`);
  const bytes = liveKeyBytes(k);
  if (bytes === undefined) throw new Refused(`${where}: ${name} is a Key ${DETACHED}`);
  if (bytes.length > MAX_KEY_BYTES)
    throw new Refused(
      `${where}: ${name} of ${bytes.length} bytes exceeds the limit of ${MAX_KEY_BYTES}`,
    );
  return bytes;
}

/** The length of a caller's array, read once: a proxy cannot change it under a loop. */
export function checkedLength(list: unknown, where: string, name: string): number {
  if (!Array.isArray(list))
    throw new Refused(`${where}: ${name} must be an array, got ${describe(list)}`);
  const n: unknown = list.length;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new Refused(
      `${where}: ${name}.length must be a non-negative integer, got ${describe(n)}`,
    );
  }
  return n;
}

/**
 * The bytes of each key of a list (an array of Keys, read once). A key that passes is
 * taken as is; only one that is refused goes through `checkedKey`, so the per-key name in
 * its message is built only then (building it for every key of a getMany took about 40%
 * of the main thread's encoding time).
 */
export function checkedKeys(keys: unknown, where: string): Uint8Array[] {
  const n = checkedLength(keys, where, 'keys');
  if (n > MAX_GET_MANY_KEYS)
    throw new Refused(
      `${where}: ${n} keys cannot travel in one request (at most ${MAX_GET_MANY_KEYS}, 4 bytes a key at the least)`,
    );
  const list = keys as readonly unknown[];
  const out = new Array<Uint8Array>(n);
  for (let i = 0; i < n; i++) {
    const k = list[i];
    const bytes = isKeyValue(k) ? liveKeyBytes(k) : undefined;
    out[i] =
      bytes !== undefined && bytes.length <= MAX_KEY_BYTES
        ? bytes
        : checkedKey(k, where, `keys[${i}]`);
  }
  return out;
}

/** A range's start and stop bytes (an empty stop: no upper bound). */
export function checkedRange(range: unknown, where: string): [Uint8Array, Uint8Array] {
  if (range === null || typeof range !== 'object') {
    throw new Refused(`${where}: range must be { start: Key, stop?: Key }, got ${describe(range)}`);
  }
  const { start, stop } = range as { start?: unknown; stop?: unknown };
  const s = checkedKey(start, where, 'range.start');
  if (stop === undefined) return [s, EMPTY];
  return [s, checkedKey(stop, where, 'range.stop')];
}

/** A prefix's range as start and stop bytes. */
export function prefixBounds(prefix: unknown, where: string): [Uint8Array, Uint8Array] {
  checkedKey(prefix, where, 'prefix');
  const { start, stop } = prefixRange(prefix as Key);
  return [keyBytes(start), stop === undefined ? EMPTY : keyBytes(stop)];
}

export function checkedScanOptions(
  options: unknown,
  where: string,
): { reverse: boolean; limit: number; after: Uint8Array | undefined } {
  if (options === undefined) return { reverse: false, limit: -1, after: undefined };
  if (options === null || typeof options !== 'object') {
    throw new Refused(`${where}: options must be an object, got ${describe(options)}`);
  }
  const { reverse, limit, after } = options as {
    reverse?: unknown;
    limit?: unknown;
    after?: unknown;
  };
  if (reverse !== undefined && typeof reverse !== 'boolean') {
    throw new Refused(`${where}: options.reverse must be a boolean, got ${describe(reverse)}`);
  }
  if (
    limit !== undefined &&
    !(typeof limit === 'number' && Number.isSafeInteger(limit) && limit >= 0)
  ) {
    throw new Refused(
      `${where}: options.limit must be a non-negative integer, got ${describe(limit)}`,
    );
  }
  return {
    reverse: reverse === true,
    limit: limit === undefined ? -1 : limit,
    after: after === undefined ? undefined : checkedKey(after, where, 'options.after'),
  };
}

/**
 * A scan's bounds and options, checked, its range narrowed by its cursor (`after`); when
 * nothing can come after the cursor, limit 0 (an empty scan keeps its place in order).
 */
export function checkedScan(
  range: [Uint8Array, Uint8Array],
  options: unknown,
  where: string,
): { start: Uint8Array; stop: Uint8Array; reverse: boolean; limit: number } {
  const { reverse, limit, after } = checkedScanOptions(options, where);
  const narrowed = after === undefined ? range : rangeAfter(range, after, reverse);
  if (narrowed === undefined) return { start: range[0], stop: range[1], reverse, limit: 0 };
  return { start: narrowed[0], stop: narrowed[1], reverse, limit };
}

/** `iterate`'s rows per page: the default and the most (a page is read in one turn). */
export const ITERATE_PAGE_ROWS = 1024;
export const MAX_ITERATE_PAGE_ROWS = 65_536;

/** An iterate's range, options and page size, checked (see checkedScan). */
export function checkedIterate(
  range: [Uint8Array, Uint8Array],
  options: unknown,
  where: string,
): { start: Uint8Array; stop: Uint8Array; reverse: boolean; limit: number; pageSize: number } {
  const scan = checkedScan(range, options, where);
  const pageSize = (options as { pageSize?: unknown } | undefined)?.pageSize;
  if (pageSize === undefined) return { ...scan, pageSize: ITERATE_PAGE_ROWS };
  if (
    !(typeof pageSize === 'number' && Number.isSafeInteger(pageSize)) ||
    pageSize < 1 ||
    pageSize > MAX_ITERATE_PAGE_ROWS
  ) {
    throw new Refused(
      `${where}: options.pageSize must be an integer from 1 to ${MAX_ITERATE_PAGE_ROWS}, got ${describe(pageSize)}`,
    );
  }
  return { ...scan, pageSize };
}

/** The most bytes one atomic batch may encode to. */
const MAX_BATCH_BYTES = 0xffff_fff0;

/**
 * The encoded length of a batch of checked records (after its tag and length). Refused when
 * a payload was detached or resized by a getter run after it was read, or when the batch is
 * too large.
 */
export function checkedBatchBody(records: readonly OpRecord[]): number {
  let body = 4;
  for (const r of records) {
    body += 1 + 2 + r.category.length + 4 + r.key.length;
    if (r.last === undefined) continue;
    if (lengthNow(r.last) !== r.lastLength) {
      throw new Refused(
        `persist: a payload of ${r.lastLength} bytes was detached or resized while the batch was read`,
      );
    }
    body += 4 + r.lastLength;
  }
  if (body > MAX_BATCH_BYTES)
    throw new Refused(`persist: a batch encodes to at most ${MAX_BATCH_BYTES} bytes, got ${body}`);
  return body;
}

/**
 * Read and check one op of a caller (this may run the caller's getters). `category` gives
 * a category's bytes (the job caches them).
 */
export function checkedOp(
  op: unknown,
  where: string,
  limits: WriteLimits,
  category: (c: unknown, where: string) => Uint8Array,
): OpRecord {
  const { maxPayloadBytes } = limits;
  if (op === null || typeof op !== 'object')
    throw new Refused(`${where}: expected an op object, got ${describe(op)}`);
  const o = op as Record<string, unknown>;
  const kind = o.kind;
  switch (kind) {
    case 'put': {
      const cat = category(o.category, where);
      const k = checkedKey(o.key, where, 'key');
      const given = o.payload;
      const payload = realBytes(given);
      if (payload === undefined) {
        throw new Refused(`${where}: payload must be a Uint8Array, got ${describe(given)}`);
      }
      if (payload.length > maxPayloadBytes) {
        throw new Refused(
          `${where}: payload of ${payload.length} bytes exceeds the limit of ${maxPayloadBytes}`,
        );
      }
      const tooBig = rowTooBig(where, cat.length, k.length, payload.length);
      if (tooBig !== undefined) throw new Refused(tooBig);
      const expireInMs = o.expireInMs;
      if (expireInMs === undefined)
        return {
          kind: OpKind.Put,
          category: cat,
          key: k,
          last: payload,
          lastLength: payload.length,
        };
      return expiringPut(cat, k, payload, checkedExpiry(expireInMs, where, limits.now));
    }
    case 'delete': {
      const cat = category(o.category, where);
      return {
        kind: OpKind.Delete,
        category: cat,
        key: checkedKey(o.key, where, 'key'),
        lastLength: 0,
      };
    }
    case 'deletePrefix': {
      const cat = category(o.category, where);
      const [start, stop] = prefixBounds(o.prefix, where);
      return {
        kind: OpKind.DeletePrefix,
        category: cat,
        key: start,
        last: stop,
        lastLength: stop.length,
      };
    }
    default:
      throw new Refused(
        `${where}: kind must be 'put', 'delete' or 'deletePrefix', got ${describe(kind)}`,
      );
  }
}

/** What a write is checked against: the instance's payload limit and clock. */
export interface WriteLimits {
  readonly maxPayloadBytes: number;
  readonly now: () => number;
}

/** The `expireInMs` of a put's options (checked with the op, by checkedExpiry). */
export function expiryOption(options: unknown, where: string): unknown {
  if (options === null || typeof options !== 'object')
    throw new Refused(`${where}: options must be an object, got ${describe(options)}`);
  return (options as { expireInMs?: unknown }).expireInMs;
}

const MAX_TIME_MS = 8.64e15;

/** When a put with `expireInMs` expires (ms since the epoch, by `now`). */
export function checkedExpiry(expireInMs: unknown, where: string, now: () => number): number {
  if (!(typeof expireInMs === 'number' && Number.isFinite(expireInMs) && expireInMs >= 0)) {
    throw new Refused(
      `${where}: expireInMs must be a non-negative finite number of ms, got ${describe(expireInMs)}`,
    );
  }
  const at = now() + expireInMs;
  // A time a Date can hold (±8.64e15 ms: about 275,000 years either way of 1970).
  if (!(Math.abs(at) <= MAX_TIME_MS))
    throw new Refused(
      `${where}: expireInMs ${expireInMs} from now (${describe(at)} ms after 1970) is past the last time a Date can hold`,
    );
  return at;
}

/** A put that expires at `expiresAt`: its `last` is the expiry (f64), then the payload. */
function expiringPut(
  cat: Uint8Array,
  k: Uint8Array,
  payload: Uint8Array,
  expiresAt: number,
): OpRecord {
  const last = new Uint8Array(8 + payload.length);
  new DataView(last.buffer).setFloat64(0, expiresAt);
  last.set(payload, 8);
  return { kind: OpKind.PutExpiring, category: cat, key: k, last, lastLength: last.length };
}

/** An `add` of `delta` (a safe integer or an int64 bigint) to the counter at `key`. */
export function checkedAdd(
  category: Uint8Array,
  key: unknown,
  delta: unknown,
  where: string,
): OpRecord {
  const k = checkedKey(key, where, 'key');
  let n: bigint;
  if (typeof delta === 'bigint') n = delta;
  else if (typeof delta === 'number' && Number.isSafeInteger(delta)) n = BigInt(delta);
  else
    throw new Refused(`${where}: delta must be a safe integer or a bigint, got ${describe(delta)}`);
  if (!inInt64(n)) throw new Refused(`${where}: delta ${n} is outside int64`);
  const last = counterBytes(n);
  const tooBig = rowTooBig(where, category.length, k.length, last.length);
  if (tooBig !== undefined) throw new Refused(tooBig);
  return { kind: OpKind.Add, category, key: k, last, lastLength: last.length };
}

/** An atomic batch's check: `key` holds exactly `expected`, or (undefined) no live row. */
export function checkedCheck(
  category: Uint8Array,
  key: unknown,
  expected: unknown,
  where: string,
): OpRecord {
  const k = checkedKey(key, where, 'key');
  if (expected === undefined) return { kind: OpKind.CheckAbsent, category, key: k, lastLength: 0 };
  const bytes = realBytes(expected);
  if (bytes === undefined) {
    throw new Refused(
      `${where}: expected must be a Uint8Array or undefined (absent), got ${describe(expected)}`,
    );
  }
  return { kind: OpKind.CheckValue, category, key: k, last: bytes, lastLength: bytes.length };
}
