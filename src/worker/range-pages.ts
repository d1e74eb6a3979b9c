/*
 * The SQL that reads a range of one category a page at a time, prepared on one connection:
 * the job's own (scans) or a snapshot's (iterators, src/worker/snapshots.ts). A page is
 * written as row records (`ByteWriter.blob` of the key, then of the payload: the ROWS
 * records of src/protocol/replies.ts), built by SQLite itself where it can.
 */
import type Database from 'better-sqlite3';
import type { ByteWriter } from '../protocol/bytes.js';
import { liveOnly } from './expiry.js';
import { PAYLOAD } from './kv-table.js';
import { lazy } from './lazy-statement.js';

type Bytes = Uint8Array;
type Row = [Buffer, Buffer];
type PageStatement = Database.Statement<(Bytes | number)[], Row>;
/** One page as records: the bytes (null for no row), the row count, the last key. */
type RecordsStatement = Database.Statement<
  (Bytes | number)[],
  [Buffer | null, number, Buffer | null]
>;

/**
 * Pages and chunks move on from the last key seen; a damaged file whose rows are out of
 * key order could send them back forever. Throws SQLITE_CORRUPT unless `next` is past `key`.
 */
export function inKeyOrder(key: Bytes, next: Bytes, reverse: boolean): void {
  const order = Buffer.compare(next, key);
  if (reverse ? order < 0 : order > 0) return;
  throw Object.assign(new Error('rows out of key order: the file is damaged'), {
    code: 'SQLITE_CORRUPT',
  });
}

/**
 * Whether SQLite builds exact bytes by concatenation on this connection. `||` and
 * group_concat build text and a CAST makes it a blob again, which keeps the bytes as they
 * are only in a UTF-8 database (a file made elsewhere may be UTF-16); ORDER BY inside an
 * aggregate needs SQLite 3.44. A self-test on bytes that are not UTF-8 checks both.
 */
export function concatKeepsBytes(db: Database.Database): boolean {
  try {
    const encoding = db.pragma('encoding', { simple: true });
    const sample = db
      .prepare<[], Buffer>(
        `SELECT CAST(group_concat(x'01' || v, x'' ORDER BY i) AS BLOB)
         FROM (SELECT 1 AS i, x'00ff80c3' AS v UNION ALL SELECT 0, x'' UNION ALL SELECT 2, x'c328')`,
      )
      .pluck()
      .get();
    return (
      encoding === 'UTF-8' &&
      sample !== undefined &&
      Buffer.compare(sample, Buffer.from('0101' + '00ff80c3' + '01c328', 'hex')) === 0
    );
  } catch {
    return false;
  }
}

type Direction = 'asc' | 'desc';
type Bound = 'open' | 'closed';
/** Per direction and stop: [first page, later pages]. */
type ByShape<T> = Record<Direction, Record<Bound, readonly [T, T]>>;

/** The WHERE of each shape: ascending pages go on after the last key, descending ones below it. */
function pageQuery(
  dir: Direction,
  bound: Bound,
  later: boolean,
  expiry: boolean,
  columns = `key, ${PAYLOAD} AS payload`,
): string {
  const from = dir === 'asc' && later ? '>' : '>=';
  // Below the last key, a descending page's range is closed even when the scan's is not.
  const closed = bound === 'closed' || (dir === 'desc' && later);
  return `SELECT ${columns} FROM kv WHERE category = ? AND key ${from} ?${closed ? ' AND key < ?' : ''}${liveOnly(expiry)} ORDER BY key ${dir.toUpperCase()} LIMIT ?`;
}

function byShape<T>(make: (dir: Direction, bound: Bound, later: boolean) => T): ByShape<T> {
  const shape = (dir: Direction, bound: Bound) =>
    [make(dir, bound, false), make(dir, bound, true)] as const;
  return {
    asc: { open: shape('asc', 'open'), closed: shape('asc', 'closed') },
    desc: { open: shape('desc', 'open'), closed: shape('desc', 'closed') },
  };
}

/** A range of one category: `[start, stop)` (an empty `stop`: no upper bound), in key order or reversed. */
export interface Range {
  readonly category: Bytes;
  readonly start: Bytes;
  readonly stop: Bytes;
  readonly reverse: boolean;
}

/**
 * Rows this long on average are read row by row: SQLite builds a long concatenation by
 * copying it as it grows, and past its length limit (1 GB) it fails after building it.
 */
const LARGE_ROW_BYTES = 64 * 1024;

/** The first rows of a range: how many, and the bytes of their keys and payloads. */
export interface Extent {
  readonly rows: number;
  readonly bytes: number;
}

/** What the pages of one job have shown of its rows' size, shared by its connections. */
export interface RowSizeHint {
  large: boolean;
}

export class RangePages {
  readonly #db: Database.Database;
  readonly #hint: RowSizeHint;
  readonly #expiry: boolean;
  readonly #concatWorks: () => boolean;
  /** The statements of each shape, prepared when a page of that shape is first read. */
  readonly #rows: ByShape<() => PageStatement>;
  /**
   * The same pages as records made by SQLite: one value per page instead of two Buffers
   * per row (README, Performance); null where concatenation does not keep bytes,
   * undefined until the first page asks.
   */
  #records: ByShape<() => RecordsStatement> | null | undefined;
  /**
   * A page's row count and bytes of keys and payloads, from their lengths: `octet_length`
   * of a column comes from the row's header and copies no value (stepping over a row that
   * spills onto overflow pages still reads them: this table is a b-tree of whole rows).
   */
  readonly #extents: ByShape<() => Database.Statement<(Bytes | number)[], [number, number]>>;

  /**
   * `expiry`: the file has expiry, whose expired rows the pages leave out. `concatWorks`:
   * whether SQLite builds exact bytes by concatenation on this file (the job's backend finds
   * out once, see concatKeepsBytes; its snapshots read the same file).
   */
  constructor(
    db: Database.Database,
    hint: RowSizeHint,
    expiry: boolean,
    concatWorks: () => boolean,
  ) {
    this.#db = db;
    this.#hint = hint;
    this.#expiry = expiry;
    this.#concatWorks = concatWorks;
    this.#rows = byShape((dir, bound, later) =>
      lazy(() => db.prepare<(Bytes | number)[], Row>(pageQuery(dir, bound, later, expiry)).raw()),
    );
    const lengths = 'octet_length(key) + octet_length(payload) AS n';
    this.#extents = byShape((dir, bound, later) =>
      lazy(() =>
        db
          .prepare<(Bytes | number)[], [number, number]>(
            `SELECT total(n), count(*) FROM (${pageQuery(dir, bound, later, expiry, lengths)})`,
          )
          .raw(),
      ),
    );
  }

  #recordStatements(): ByShape<() => RecordsStatement> | null {
    if (this.#records !== undefined) return this.#records;
    const db = this.#db;
    const expiry = this.#expiry;
    const length = (column: string) => `unhex(printf('%08x', length(${column})))`;
    this.#records = !this.#concatWorks()
      ? null
      : byShape((dir, bound, later) =>
          lazy(() =>
            db
              .prepare<(Bytes | number)[], [Buffer | null, number, Buffer | null]>(
                `SELECT CAST(group_concat(${length('key')} || key || ${length('payload')} || payload, x'' ORDER BY key ${dir.toUpperCase()}) AS BLOB),
                        count(*), ${dir === 'asc' ? 'max' : 'min'}(key)
                 FROM (${pageQuery(dir, bound, later, expiry)})`,
              )
              .raw(),
          ),
        );
    return this.#records;
  }

  /**
   * Read up to `want` rows of `range` as row records; `after`: the last key of the page
   * before (undefined for the first page). Returns how many rows, the last key (checked to
   * be past `after`) when there was one, and the records when SQLite built them (owned by
   * the caller); otherwise they were written row by row into `w`.
   */
  page(
    w: ByteWriter,
    range: Range,
    after: Bytes | undefined,
    want: number,
  ): { rows: number; last: Buffer | undefined; built: Buffer | undefined } {
    const { reverse } = range;
    const args = RangePages.#args(range, after, want);
    const shape = RangePages.#shape(range);
    const later = after === undefined ? 0 : 1;
    let rows = 0;
    let last: Buffer | undefined;
    let built: Buffer | undefined;
    const hint = this.#hint;
    const records = hint.large
      ? undefined
      : this.#recordStatements()?.[shape[0]][shape[1]][later]?.();
    let made: [Buffer | null, number, Buffer | null] | undefined;
    try {
      made = records?.get(...args);
    } catch (e) {
      // A page too long for one value: read it row by row below.
      if ((e as { code?: string }).code !== 'SQLITE_TOOBIG') throw e;
    }
    if (made !== undefined) {
      built = made[0] ?? undefined;
      rows = made[1];
      last = made[2] ?? undefined;
      hint.large = rows > 0 && (built?.length ?? 0) / rows >= LARGE_ROW_BYTES;
    } else {
      const found = (this.#rows[shape[0]][shape[1]][later] as () => PageStatement)().all(...args);
      const from = w.pos;
      for (const [k, p] of found) {
        w.blob(k);
        w.blob(p);
      }
      rows = found.length;
      last = found[rows - 1]?.[0];
      if (rows > 0) hint.large = (w.pos - from) / rows >= LARGE_ROW_BYTES;
    }
    if (last !== undefined && after !== undefined) inKeyOrder(after, last, reverse);
    return { rows, last, built };
  }

  /**
   * The first `want` rows of `range`: how many, and the bytes of their keys and payloads,
   * read from their lengths.
   */
  extent(range: Range, want: number): Extent {
    const shape = RangePages.#shape(range);
    const statement = this.#extents[shape[0]][shape[1]][0]();
    const [bytes, rows] = statement.get(...RangePages.#args(range, undefined, want)) as [
      number,
      number,
    ];
    return { rows, bytes };
  }

  static #shape({ stop, reverse }: Range): readonly [Direction, Bound] {
    return [reverse ? 'desc' : 'asc', stop.length === 0 ? 'open' : 'closed'];
  }

  static #args(
    { category, start, stop, reverse }: Range,
    after: Bytes | undefined,
    want: number,
  ): (Bytes | number)[] {
    if (after === undefined)
      return stop.length === 0 ? [category, start, want] : [category, start, stop, want];
    if (reverse) return [category, start, after, want];
    return stop.length === 0 ? [category, after, want] : [category, after, stop, want];
  }
}
