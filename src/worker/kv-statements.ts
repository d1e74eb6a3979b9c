/*
 * The statements of a job's connection whose SQL depends on the file's schema: those that
 * read rows (a file with expiry leaves expired rows out, src/worker/expiry.ts; getMany's
 * too), the counter upsert, and those that exist only on a file with expiry. KvBackend
 * prepares them again when the file gains expiry.
 */
import type Database from 'better-sqlite3';
import { liveOnly } from './expiry.js';
import { PAYLOAD } from './kv-table.js';
import { type Lazy, lazy } from './lazy-statement.js';
import { RangePages, type RowSizeHint } from './range-pages.js';

type Bytes = Uint8Array;

/** Statements whose SQL depends on whether the file has expiry (see src/worker/expiry.ts). */
export class ReadStatements {
  readonly get: Database.Statement<[Bytes, Bytes], Buffer>;
  readonly exists: Lazy<[Bytes, Bytes], number>;
  readonly countFrom: Lazy<[Bytes, Bytes], number>;
  readonly countRange: Lazy<[Bytes, Bytes, Bytes], number>;
  /** Delete one row; its one result row says whether it was live (not expired). */
  readonly deleteLive: Lazy<[Bytes, Bytes], number> | undefined;
  readonly add: Lazy<[Bytes, Bytes, Bytes]>;
  /** A row's payload and expiry (null: none), whether expired or not. */
  readonly counterRow: Lazy<[Bytes, Bytes], [Buffer, number | null]>;
  readonly pages: RangePages;

  constructor(
    db: Database.Database,
    expiry: boolean,
    hint: RowSizeHint,
    concatWorks: () => boolean,
  ) {
    const live = liveOnly(expiry);
    this.get = db
      .prepare<[Bytes, Bytes], Buffer>(
        `SELECT ${PAYLOAD} FROM kv WHERE category = ? AND key = ?${live}`,
      )
      .pluck();
    this.exists = lazy(() =>
      db
        .prepare<[Bytes, Bytes], number>(`SELECT 1 FROM kv WHERE category = ? AND key = ?${live}`)
        .pluck(),
    );
    this.countFrom = lazy(() =>
      db
        .prepare<[Bytes, Bytes], number>(
          `SELECT COUNT(*) FROM kv WHERE category = ? AND key >= ?${live}`,
        )
        .pluck(),
    );
    this.countRange = lazy(() =>
      db
        .prepare<[Bytes, Bytes, Bytes], number>(
          `SELECT COUNT(*) FROM kv WHERE category = ? AND key >= ? AND key < ?${live}`,
        )
        .pluck(),
    );
    this.deleteLive = expiry
      ? lazy(() =>
          db
            .prepare<[Bytes, Bytes], number>(
              `DELETE FROM kv WHERE category = ? AND key = ?
               RETURNING expires_at IS NULL OR expires_at > persistency_now()`,
            )
            .pluck(),
        )
      : undefined;
    // The inserted value is the delta's own counter payload: 0 + delta. An expired row
    // counts as absent, and the sum keeps a live row's expiry.
    const expired = 'expires_at IS NOT NULL AND expires_at <= persistency_now()';
    this.add = lazy(() =>
      db.prepare<[Bytes, Bytes, Bytes]>(
        `INSERT INTO kv (category, key, payload) VALUES (?, ?, ?)
         ON CONFLICT (category, key) DO UPDATE SET ${
           expiry
             ? `payload = CASE WHEN ${expired} THEN excluded.payload ELSE persistency_add(${PAYLOAD}, excluded.payload) END,
                expires_at = CASE WHEN ${expired} THEN NULL ELSE expires_at END`
             : `payload = persistency_add(${PAYLOAD}, excluded.payload)`
         }`,
      ),
    );
    this.counterRow = lazy(() =>
      db
        .prepare<[Bytes, Bytes], [Buffer, number | null]>(
          `SELECT ${PAYLOAD}, ${expiry ? 'expires_at' : 'NULL'} FROM kv WHERE category = ? AND key = ?`,
        )
        .raw(),
    );
    this.pages = new RangePages(db, hint, expiry, concatWorks);
  }
}

/** Statements that exist only on a file with expiry (each prepared at its first use). */
export class ExpiryStatements {
  readonly putExpiring: Lazy<[Bytes, Bytes, Bytes, number]>;
  readonly sweep: Lazy<[number, number], [Buffer, Buffer]>;
  readonly next: Lazy<[], number | null>;
  readonly expiresAt: Lazy<[Bytes, Bytes], number | null>;

  constructor(db: Database.Database) {
    this.putExpiring = lazy(() =>
      db.prepare<[Bytes, Bytes, Bytes, number]>(
        'INSERT OR REPLACE INTO kv (category, key, payload, expires_at) VALUES (?, ?, ?, ?)',
      ),
    );
    this.sweep = lazy(() =>
      db
        .prepare<[number, number], [Buffer, Buffer]>(
          `DELETE FROM kv WHERE (category, key) IN (
             SELECT category, key FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?
             ORDER BY expires_at LIMIT ?)
           RETURNING category, key`,
        )
        .raw(),
    );
    this.next = lazy(() =>
      db
        .prepare<[], number | null>('SELECT min(expires_at) FROM kv WHERE expires_at IS NOT NULL')
        .pluck(),
    );
    this.expiresAt = lazy(() =>
      db
        .prepare<[Bytes, Bytes], number | null>(
          'SELECT expires_at FROM kv WHERE category = ? AND key = ?',
        )
        .pluck(),
    );
  }
}

/**
 * A payload longer than this is not copied into `getMany`'s result; the caller reads it
 * alone. Gathering payloads into one value pays for itself only while they are small
 * (README, Performance).
 */
export const GET_MANY_INLINE_BYTES = 1024;

/** The bytes `getMany` writes for each key: the caller's format, not the SQL layer's. */
export interface GetManyMarkers {
  /** The key has no row: this byte alone. */
  readonly absent: number;
  /** This byte, the payload's length (u32 big-endian), the payload. */
  readonly present: number;
  /** The payload is longer than GET_MANY_INLINE_BYTES: this byte alone. */
  readonly large: number;
}

const hexByte = (b: number): string => b.toString(16).padStart(2, '0');

/**
 * The statement that reads `n` keys of one category (its arguments: the keys, then the
 * category) into one value: per key in order, what `markers` says. The VALUES rows number
 * the keys; the aggregate concatenates one record per key in that order (`||` and
 * group_concat copy the bytes of a UTF-8 database's text as they are, see
 * concatKeepsBytes; the CAST makes the whole a blob again). A LEFT JOIN miss has a NULL
 * key; a payload that is not a blob (see PAYLOAD) is read alone.
 */
export function getManySql(n: number, markers: GetManyMarkers, expiry: boolean): string {
  const keys = Array.from({ length: n }, (_, i) => `(${i}, ?)`).join(', ');
  return `WITH q(i, k) AS (VALUES ${keys})
    SELECT CAST(group_concat(
      CASE WHEN kv.key IS NULL THEN x'${hexByte(markers.absent)}'
           WHEN length(kv.payload) > ${GET_MANY_INLINE_BYTES} OR typeof(kv.payload) <> 'blob'
             THEN x'${hexByte(markers.large)}'
           ELSE x'${hexByte(markers.present)}' || unhex(printf('%08x', length(kv.payload))) || kv.payload
      END, x'' ORDER BY q.i) AS BLOB)
    FROM q LEFT JOIN kv ON kv.category = ? AND kv.key = q.k${liveOnly(expiry)}`;
}
