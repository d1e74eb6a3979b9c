/*
 * Every check of a caller's input, in one place: job method arguments (categories, keys,
 * ranges, scan options, write ops), and the options and root of a Persistency. A check
 * either returns the normalised bytes or throws `Refused` with the user-facing message;
 * `refusal` turns whatever was thrown while reading arguments into InvalidArgument.
 */
import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { err, ok, type Result } from 'neverthrow';
import { lengthNow, realBytes } from './bytes.js';
import { compareBytes } from './codec/key.js';
import { invalidArgument, PersistencyError } from './errors.js';
import { describe, describeThrown, isKeyValue, keyBytes, prefixRange } from './keys.js';
import { MAX_KEY_BYTES, ROW_OVERHEAD, rowFits, SQLITE_MAX_LENGTH } from './limits.js';
import { OpKind } from './protocol/requests.js';
import type { PersistencyOptions } from './types.js';

export const MEMORY_ROOT = ':memory:';
export const MAX_CATEGORY_BYTES = 0xffff;
/** The largest `pollMicros` accepted (one second). */
const MAX_POLL_MICROS = 1_000_000;
/** The most worker threads `workerThreads: N` may ask for. */
const MAX_WORKER_THREADS = 256;
const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

/** Every option with its default (README, API). */
export const DEFAULTS: Required<PersistencyOptions> = {
  busyTimeoutMs: 5000,
  journalSizeLimitBytes: 64 * 1024 * 1024,
  openTimeoutMs: 30_000,
  maxPayloadBytes: SQLITE_MAX_LENGTH - 1024,
  maxJobBytes: 0,
  verifyOnOpen: false,
  prestartWorker: true,
  pollMicros: 100,
  workerThreads: 'per-job',
  idleCloseMs: 60_000,
  sliceMs: 2,
  iteratorIdleMs: 60_000,
};

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
  const bytes = keyBytes(k);
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
  const list = keys as readonly unknown[];
  const out = new Array<Uint8Array>(n);
  for (let i = 0; i < n; i++) {
    const k = list[i];
    const bytes = isKeyValue(k) ? keyBytes(k) : undefined;
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
  if (!isKeyValue(prefix))
    throw new Refused(`${where}: prefix must be a Key, got ${describe(prefix)}`);
  const { start, stop } = prefixRange(prefix);
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
 * The range `[start, stop)` (empty `stop`: no bound) narrowed to what comes strictly after
 * `after` in scan order; undefined when nothing can. Appending a 0 byte gives the least
 * key above `after`; with `reverse`, `after` itself is the (exclusive) stop.
 */
export function rangeAfter(
  [start, stop]: [Uint8Array, Uint8Array],
  after: Uint8Array,
  reverse: boolean,
): [Uint8Array, Uint8Array] | undefined {
  if (reverse) {
    if (after.length === 0) return undefined; // nothing is below the empty key
    return stop.length === 0 || compareBytes(after, stop) < 0 ? [start, after] : [start, stop];
  }
  const next = new Uint8Array(after.length + 1);
  next.set(after);
  return compareBytes(next, start) > 0 ? [next, stop] : [start, stop];
}

/**
 * Read and check one op of a caller (this may run the caller's getters). `category` gives
 * a category's bytes (the job caches them).
 */
export function checkedOp(
  op: unknown,
  where: string,
  maxPayloadBytes: number,
  category: (c: unknown, where: string) => Uint8Array,
): OpRecord {
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
      if (!rowFits(cat.length, k.length, payload.length)) {
        const row = cat.length + k.length + payload.length + ROW_OVERHEAD;
        throw new Refused(
          `${where}: a row of ${row} bytes (category, key, payload and ${ROW_OVERHEAD} of header) exceeds SQLite's limit of ${SQLITE_MAX_LENGTH}`,
        );
      }
      return { kind: OpKind.Put, category: cat, key: k, last: payload, lastLength: payload.length };
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

/** Check a Persistency's options and fill in the defaults. */
export function checkOptions(
  options: unknown,
): Result<Required<PersistencyOptions>, PersistencyError> {
  if (options === undefined) return ok(DEFAULTS);
  if (options === null || typeof options !== 'object') {
    return err(invalidArgument(`Persistency options must be an object, got ${describe(options)}`));
  }
  const out: Record<string, unknown> = { ...DEFAULTS };
  for (const [name, value] of Object.entries(options)) {
    if (!(name in DEFAULTS)) {
      return err(invalidArgument(`unknown Persistency option ${JSON.stringify(name)}`));
    }
    if (value === undefined) continue;
    const problem = optionProblem(name as keyof PersistencyOptions, value);
    if (problem !== undefined) {
      return err(invalidArgument(`Persistency option ${name} ${problem}, got ${describe(value)}`));
    }
    out[name] = value;
  }
  return ok(out as unknown as Required<PersistencyOptions>);
}

/** What is wrong with one option's value, or undefined. */
function optionProblem(name: keyof PersistencyOptions, value: unknown): string | undefined {
  const natural = typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
  switch (name) {
    case 'verifyOnOpen':
    case 'prestartWorker':
      return typeof value === 'boolean' ? undefined : 'must be a boolean';
    case 'workerThreads':
      if (value === 'per-job') return undefined;
      return natural && value >= 1 && value <= MAX_WORKER_THREADS
        ? undefined
        : `must be 'per-job' or an integer from 1 to ${MAX_WORKER_THREADS}`;
    case 'pollMicros':
      return natural && value <= MAX_POLL_MICROS
        ? undefined
        : `must be a non-negative integer of at most ${MAX_POLL_MICROS} (one second)`;
    case 'maxPayloadBytes':
      return natural && value <= SQLITE_MAX_LENGTH
        ? undefined
        : `must be a non-negative integer within SQLite's limit of ${SQLITE_MAX_LENGTH} bytes`;
    case 'sliceMs':
      return natural && value >= 1 ? undefined : 'must be a positive integer';
    default:
      return natural ? undefined : 'must be a non-negative integer';
  }
}

/** Validate a root without touching the disk beyond `stat`. */
export function checkRoot(rootDir: unknown): Result<string, PersistencyError> {
  if (typeof rootDir !== 'string')
    return err(invalidArgument(`rootDir must be a string, got ${describe(rootDir)}`));
  if (rootDir.length === 0) return err(invalidArgument('rootDir is empty'));
  if (rootDir === MEMORY_ROOT) return ok(MEMORY_ROOT);
  if (rootDir.includes('\0')) return err(invalidArgument('rootDir contains a NUL byte'));
  const abs = resolve(rootDir);
  let probe = abs;
  for (;;) {
    let isDir: boolean | undefined;
    try {
      isDir = statSync(probe).isDirectory();
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== 'ENOENT') {
        if (code === 'ENOTDIR')
          return err(invalidArgument(`rootDir ${abs}: a parent of it is not a directory`));
        return err(
          invalidArgument(`rootDir ${abs}: cannot inspect ${probe} (${code ?? String(e)})`, e),
        );
      }
    }
    if (isDir === true) return ok(abs);
    if (isDir === false) {
      return err(
        invalidArgument(
          probe === abs
            ? `rootDir ${abs} exists and is not a directory`
            : `rootDir ${abs}: ${probe} is not a directory`,
        ),
      );
    }
    const parent = dirname(probe);
    if (parent === probe) return ok(abs);
    probe = parent;
  }
}
