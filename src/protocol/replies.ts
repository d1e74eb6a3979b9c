/*
 * Reply records: the answers a worker sends a job, one per read or flush, in request order,
 * written here in the worker and read here on the main thread. A group's replies travel as
 * one message: a u32 (how many frames the group finished), then the records.
 *
 *   u8 status, then: BYTES u32 len, bytes | NUMBER f64 | ROWS u32 n, (u32 klen, key,
 *   u32 plen, payload)* | ROWS_PART (as ROWS: some rows of a long scan, more follow) |
 *   ERROR u32 index into the message's `errors` | NONE, FALSE, TRUE, DONE: nothing more |
 *   MANY u32 n, then n NONE or BYTES records (a getMany's values, in the order of its keys) |
 *   MANY_PART (as MANY: some values of a long getMany, more follow) |
 *   ATTACHED_ROWS u32 n, u32 index: as ROWS, the rows' bytes being the message's attachment
 *   `index` (an iterator's page as SQLite built it, handed over rather than copied) |
 *   ATTACHED_ROWS_PART (as ATTACHED_ROWS: some rows of a page, more follow)
 */
import { PersistencyError } from '../errors.js';
import { adoptKeyAt, type Key } from '../keys.js';
import type { KvRow } from '../types.js';
import { ByteReader, type ByteWriter, readU32 } from './bytes.js';
import { type ErrorInfo, fromErrorInfo } from './messages.js';

export const Status = {
  None: 0,
  Bytes: 1,
  False: 2,
  True: 3,
  Number: 4,
  Rows: 5,
  Error: 6,
  Done: 7,
  /** Some rows of a scan; more follow, then its final `Rows` (or `Error`) record. */
  RowsPart: 8,
  Many: 9,
  AttachedRows: 10,
  /** As RowsPart, with the rows' bytes attached. */
  AttachedRowsPart: 11,
  /** Some values of a getMany; more follow, then its final `Many` (or `Error`) record. */
  ManyPart: 12,
} as const;

/** A reply message starts with a u32: how many frames the group finished. */
export const REPLY_HEADER = 4;

// ---------------------------------------------------------------------------------------
// Writing (worker)

export function writeValue(w: ByteWriter, v: Uint8Array | undefined): void {
  if (v === undefined) {
    w.u8(Status.None);
    return;
  }
  w.u8(Status.Bytes);
  w.blob(v);
}

export function writeBoolean(w: ByteWriter, v: boolean): void {
  w.u8(v ? Status.True : Status.False);
}

export function writeNumber(w: ByteWriter, n: number): void {
  w.u8(Status.Number);
  w.f64(n);
}

export function writeDone(w: ByteWriter): void {
  w.u8(Status.Done);
}

export function writeError(w: ByteWriter, index: number): void {
  w.u8(Status.Error);
  w.u32(index);
}

/** Start a getMany's record (NONE or BYTES records follow); returns where, for `endMany`. */
export function beginMany(w: ByteWriter): number {
  const at = w.pos;
  w.u8(Status.Many);
  w.u32(0);
  return at;
}

/** Close the getMany record at `at` with its `n` values; `part`: more values of it follow. */
export function endMany(w: ByteWriter, at: number, n: number, part = false): void {
  if (part) w.buf[at] = Status.ManyPart;
  w.patchU32(at + 1, n);
}

/** Start a rows record; returns where it starts, for `endRows`. */
export function beginRows(w: ByteWriter): number {
  const at = w.pos;
  w.u8(Status.Rows);
  w.u32(0);
  return at;
}

export function writeRow(w: ByteWriter, key: Uint8Array, payload: Uint8Array): void {
  w.blob(key);
  w.blob(payload);
}

/** Close the rows record at `at` with its `n` rows; `part`: more rows of it follow. */
export function endRows(w: ByteWriter, at: number, n: number, part = false): void {
  if (part) w.buf[at] = Status.RowsPart;
  w.patchU32(at + 1, n);
}

/**
 * A rows record of `n` rows whose bytes are attachment `index` of the reply message;
 * `part`: more rows of it follow.
 */
export function writeAttachedRows(w: ByteWriter, n: number, index: number, part = false): void {
  w.u8(part ? Status.AttachedRowsPart : Status.AttachedRows);
  w.u32(n);
  w.u32(index);
}

/** Patch the frames-finished count at the head of a reply message. */
export function writeFramesDone(w: ByteWriter, frames: number): void {
  w.patchU32(0, frames);
}

// ---------------------------------------------------------------------------------------
// Reading (main thread)

/** What a reply message carries beside its records: the errors and attachments they point to. */
export interface ReplyExtras {
  readonly errors: readonly ErrorInfo[];
  readonly attached: readonly Uint8Array[];
}

/** How many frames the reply message finished. */
export function framesDone(r: ByteReader): number {
  return r.u32();
}

/** What `readReply` returns for a part of a long scan or getMany: more of it follows. */
export const MORE_PARTS: unique symbol = Symbol('more parts');

/** What the parts of the reply being received have brought so far (one reply at a time). */
export class PartialReply {
  readonly rows: KvRow[] = [];
  readonly values: (Uint8Array | undefined)[] = [];

  clear(): void {
    this.rows.length = 0;
    this.values.length = 0;
  }
}

/** The value a reply record settles its request with, one shape per kind of request. */
export type ReplyValue =
  | undefined
  | boolean
  | number
  | Uint8Array
  | KvRow[]
  | (Uint8Array | undefined)[];

/**
 * Read one reply record: its value, its error (a `PersistencyError`, which no value is), or
 * MORE_PARTS for a part of a long scan or getMany (its rows or values are added to
 * `partial`, which the final record then returns with its own). Plain values rather than `Result`s: the worker
 * loads this module too, and every module it loads is paid in each worker's memory.
 */
export function readReply(
  r: ByteReader,
  { errors, attached }: ReplyExtras,
  partial: PartialReply,
): ReplyValue | PersistencyError | typeof MORE_PARTS {
  const status = r.u8();
  switch (status) {
    case Status.None:
    case Status.Done:
      return undefined;
    case Status.Bytes:
      return r.blob().slice();
    case Status.True:
      return true;
    case Status.False:
      return false;
    case Status.Number:
      return r.f64();
    case Status.RowsPart:
      readRows(r, partial.rows);
      return MORE_PARTS;
    case Status.Rows:
      readRows(r, partial.rows);
      return partial.rows.splice(0);
    case Status.AttachedRowsPart:
    case Status.AttachedRows: {
      const n = r.u32();
      const bytes = attached[r.u32()];
      if (bytes === undefined) throw new Error('persistency: a reply lacks its attachment');
      readRowRecords(new ByteReader(bytes), n, partial.rows);
      return status === Status.AttachedRows ? partial.rows.splice(0) : MORE_PARTS;
    }
    case Status.ManyPart:
      readValues(r, partial.values);
      return MORE_PARTS;
    case Status.Many:
      if (partial.values.length === 0) return readValues(r, []);
      readValues(r, partial.values);
      return partial.values.splice(0);
    case Status.Error: {
      partial.clear(); // a scan or getMany that failed after sending parts
      const info = errors[r.u32()];
      return info === undefined
        ? new PersistencyError('Backend', 'missing error detail', { code: 'SQLITE_ERROR' })
        : fromErrorInfo(info);
    }
    default:
      throw new Error(`persistency: unknown reply status ${status}`);
  }
}

/** A getMany record's values, copied out of the reply, added to `values`. */
function readValues(r: ByteReader, values: (Uint8Array | undefined)[]): (Uint8Array | undefined)[] {
  const n = r.u32();
  for (let i = 0; i < n; i++) values.push(r.u8() === Status.Bytes ? r.blob().slice() : undefined);
  return values;
}

function readRows(r: ByteReader, rows: KvRow[]): void {
  readRowRecords(r, r.u32(), rows);
}

function readRowRecords(r: ByteReader, n: number, rows: KvRow[]): void {
  for (let i = 0; i < n; i++) {
    const key = keyBlob(r);
    rows.push({ key, payload: r.blob() });
  }
}

/** A u32-length blob as a key, its bytes left where they are (see Key). */
function keyBlob(r: ByteReader): Key {
  const n = r.u32();
  const key = adoptKeyAt(r.buf, r.pos, r.pos + n);
  r.pos += n;
  return key;
}

/** The value records that lead a run of records, before the first `large` marker. */
export interface LeadingValues {
  readonly records: Uint8Array;
  readonly count: number;
}

/**
 * `found` must be exactly `keys` records, each a value record (None, or Bytes with its
 * payload) or the one byte `large` (a payload to read on its own): the value records before
 * the first `large`, or undefined when `found` is not that.
 */
export function leadingValues(
  found: Uint8Array,
  keys: number,
  large: number,
): LeadingValues | undefined {
  let p = 0;
  let count = -1; // records before the first large one, once one is met
  let end = 0;
  for (let i = 0; i < keys; i++) {
    const status = found[p];
    if (status === large && count < 0) {
      count = i;
      end = p;
    }
    if (status === Status.None || status === large) p += 1;
    else if (status === Status.Bytes && p + 5 <= found.length) p += 5 + readU32(found, p + 1);
    else return undefined;
  }
  if (p !== found.length) return undefined;
  return count < 0 ? { records: found, count: keys } : { records: found.subarray(0, end), count };
}
