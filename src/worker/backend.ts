/*
 * The SQL the library runs on an open job file: its statements (those that depend on the
 * file's schema are src/worker/kv-statements.ts; the schema, migrations and pragmas it is
 * opened with are src/worker/job-database.ts; the root's lock is src/root-lock.ts). Runs inside the job's worker, which alone owns the connection.
 *
 * Locking: a file job runs WAL in SQLite's normal locking mode, so its `-shm` index exists
 * while it is open and other processes can read its committed data through read-only
 * connections. Ownership is not this file's lock but the root's (src/root-lock.ts), taken
 * before a job opens: an exclusive lock on the job file would keep every reader out.
 */
import type Database from 'better-sqlite3';
import { COUNTER_BYTES, sumInto } from '../counter.js';
import type { ByteWriter } from '../protocol/bytes.js';
import { EXPIRY_MIGRATION, EXPIRY_VERSION, hasExpiry, JobClock } from './expiry.js';
import { type BackendOptions, openJobDatabase } from './job-database.js';
import {
  ExpiryStatements,
  type GetManyMarkers,
  getManySql,
  ReadStatements,
} from './kv-statements.js';
import { type Lazy, lazy } from './lazy-statement.js';
import { concatKeepsBytes, type Extent, inKeyOrder, type RowSizeHint } from './range-pages.js';

export { type BackendOptions, SCHEMA_VERSION } from './job-database.js';
export { GET_MANY_INLINE_BYTES, type GetManyMarkers } from './kv-statements.js';

type Bytes = Uint8Array;

/**
 * Rows per multi-row insert: runs of single puts go to SQLite this many at a time, which
 * inserts faster than one statement per row (README, Design).
 */
export const PUT_RUN = 32;

/**
 * At most this many keys are read by one `getMany` statement: the most reads a frame holds
 * (runs do not cross frames).
 */
export const GET_RUN_MAX = 32;

/** Rows per page of a scan (see `scanPage`). */
export const SCAN_PAGE_ROWS = 256;

export class KvBackend {
  readonly db: Database.Database;
  /** The identity of the job's file once opened (undefined in memory): see file-identity.ts. */
  readonly fileId: string | undefined;
  readonly #put: Database.Statement<[Bytes, Bytes, Bytes]>;
  readonly #delete: Database.Statement<[Bytes, Bytes]>;
  readonly #deleteFrom: Lazy<[Bytes, Bytes]>;
  readonly #nthFrom: Lazy<[Bytes, Bytes, number], Buffer>;
  readonly #nthInRange: Lazy<[Bytes, Bytes, Bytes, number], Buffer>;
  readonly #deleteRange: Lazy<[Bytes, Bytes, Bytes]>;
  readonly #anyFrom: Lazy<[Bytes, Bytes], number>;
  readonly #anyInRange: Lazy<[Bytes, Bytes, Bytes], number>;
  readonly #putRun: Lazy<[readonly Bytes[]]>;
  readonly #totalChanges: Lazy<[], number>;
  #reads: ReadStatements;
  #expiry: ExpiryStatements | undefined;
  /** `getMany` statements by key count, prepared when first needed. */
  readonly #getMany = new Map<string, Database.Statement<[readonly Bytes[]], Buffer>>();
  /** Whether `getMany` works on this connection; undefined until first asked. */
  #getManyWorks: boolean | undefined;
  /** Whether this job's pages have shown large rows (its snapshots' pages share it). */
  readonly rowSize: RowSizeHint = { large: false };
  readonly #begin: Database.Statement;
  readonly #commit: Database.Statement;
  /**
   * Prepared at open: the way into and out of a batch must not need a prepare, which can
   * fail in the state a failure left (and SAVEPOINT runs outside a batch's try).
   */
  readonly #rollback: Database.Statement;
  readonly #savepoint: Database.Statement;
  readonly #release: Database.Statement;
  readonly #rollbackTo: Database.Statement;

  private constructor(db: Database.Database, fileId: string | undefined) {
    this.db = db;
    this.fileId = fileId;
    this.#put = db.prepare('INSERT OR REPLACE INTO kv (category, key, payload) VALUES (?, ?, ?)');
    this.#totalChanges = lazy(() => db.prepare<[], number>('SELECT total_changes()').pluck());
    this.#putRun = lazy(() =>
      db.prepare<[readonly Bytes[]]>(
        `INSERT OR REPLACE INTO kv (category, key, payload) VALUES ${Array(PUT_RUN).fill('(?, ?, ?)').join(', ')}`,
      ),
    );
    this.#delete = db.prepare('DELETE FROM kv WHERE category = ? AND key = ?');
    this.#deleteFrom = lazy(() =>
      db.prepare<[Bytes, Bytes]>('DELETE FROM kv WHERE category = ? AND key >= ?'),
    );
    this.#deleteRange = lazy(() =>
      db.prepare<[Bytes, Bytes, Bytes]>(
        'DELETE FROM kv WHERE category = ? AND key >= ? AND key < ?',
      ),
    );
    const nth = (range: string) =>
      `SELECT key FROM kv WHERE category = ? AND ${range} ORDER BY key LIMIT 1 OFFSET ?`;
    this.#nthFrom = lazy(() => db.prepare<[Bytes, Bytes, number], Buffer>(nth('key >= ?')).pluck());
    this.#nthInRange = lazy(() =>
      db.prepare<[Bytes, Bytes, Bytes, number], Buffer>(nth('key >= ? AND key < ?')).pluck(),
    );
    const any = (range: string) => `SELECT 1 FROM kv WHERE category = ? AND ${range} LIMIT 1`;
    this.#anyFrom = lazy(() => db.prepare<[Bytes, Bytes], number>(any('key >= ?')).pluck());
    this.#anyInRange = lazy(() =>
      db.prepare<[Bytes, Bytes, Bytes], number>(any('key >= ? AND key < ?')).pluck(),
    );
    db.function('persistency_add', { deterministic: true }, (stored: unknown, delta: unknown) =>
      sumInto(Buffer.alloc(COUNTER_BYTES), stored as Buffer, delta as Buffer),
    );
    const expiry = hasExpiry(db);
    this.#reads = new ReadStatements(db, expiry, this.rowSize, () => this.canGetMany);
    this.#expiry = expiry ? new ExpiryStatements(db) : undefined;
    this.#begin = db.prepare('BEGIN IMMEDIATE');
    this.#commit = db.prepare('COMMIT');
    this.#rollback = db.prepare('ROLLBACK');
    this.#savepoint = db.prepare('SAVEPOINT batch');
    this.#release = db.prepare('RELEASE batch');
    this.#rollbackTo = db.prepare('ROLLBACK TO batch');
  }

  /** Whether the file has expiry (schema version 2). */
  get expiry(): boolean {
    return this.#expiry !== undefined;
  }

  /**
   * Give the file expiry (schema version 1 to 2) in a transaction of its own; the caller
   * has no transaction open. `crashInside` (tests) runs between the change and its commit.
   */
  migrateToExpiry(crashInside?: () => void): void {
    if (this.#expiry !== undefined) return;
    const db = this.db;
    db.transaction(() => {
      db.exec(EXPIRY_MIGRATION);
      crashInside?.();
      db.pragma(`user_version = ${EXPIRY_VERSION}`);
    }).immediate();
    this.#reads = new ReadStatements(db, true, this.rowSize, () => this.canGetMany);
    this.#expiry = new ExpiryStatements(db);
    this.#getMany.clear();
  }

  /**
   * Open (creating if needed) a job file, set up by `openJobDatabase`. `image` restores an
   * in-memory job. The caller owns the root (src/root-lock.ts).
   */
  static open(
    path: string,
    options: BackendOptions,
    image?: Uint8Array,
    clock: JobClock = new JobClock(),
  ): KvBackend {
    const { db, fileId } = openJobDatabase(path, options, image);
    try {
      clock.install(db);
      return new KvBackend(db, fileId);
    } catch (e) {
      db.close();
      throw e;
    }
  }

  get inTransaction(): boolean {
    return this.db.inTransaction;
  }

  begin(): void {
    this.#begin.run();
  }

  commit(): void {
    this.#commit.run();
  }

  rollback(): void {
    if (this.db.inTransaction) this.#rollback.run();
  }

  savepoint(): void {
    this.#savepoint.run();
  }

  release(): void {
    this.#release.run();
  }

  rollbackToSavepoint(): void {
    this.#rollbackTo.run();
    this.#release.run();
  }

  put(category: Bytes, key: Bytes, payload: Bytes): void {
    this.#put.run(category, key, payload);
  }

  /**
   * Insert or replace `PUT_RUN` rows in one statement: `args` is category, key, payload
   * for each, in order (a later row with the same key wins, as with single puts). One
   * statement is atomic: if it fails, none of its rows is applied.
   */
  putRun(args: readonly Bytes[]): void {
    this.#putRun().run(args);
  }

  delete(category: Bytes, key: Bytes): number {
    return this.#delete.run(category, key).changes;
  }

  /** Delete one row: whether one was there, and whether it was live (not expired). */
  deleteLive(category: Bytes, key: Bytes): { removed: boolean; live: boolean } {
    const statement = this.#reads.deleteLive?.();
    if (statement === undefined) {
      const removed = this.#delete.run(category, key).changes > 0;
      return { removed, live: removed };
    }
    const live = statement.get(category, key);
    return { removed: live !== undefined, live: live === 1 };
  }

  /** A row's payload and expiry (null: none), expired or not; undefined when absent. */
  counterRow(category: Bytes, key: Bytes): [Buffer, number | null] | undefined {
    return this.#reads.counterRow().get(category, key);
  }

  /** Add the counter payload `delta` to the counter at `key` (absent or expired: 0), in SQL. */
  add(category: Bytes, key: Bytes, delta: Bytes): void {
    this.#reads.add().run(category, key, delta);
  }

  /** Put a row that expires at `expiresAt` (ms since the epoch); the file must have expiry. */
  putExpiring(category: Bytes, key: Bytes, payload: Bytes, expiresAt: number): void {
    (this.#expiry as ExpiryStatements).putExpiring().run(category, key, payload, expiresAt);
  }

  /** When `key` expires (undefined: never, or no such row, or no expiry on this file). */
  expiresAt(category: Bytes, key: Bytes): number | undefined {
    return this.#expiry?.expiresAt().get(category, key) ?? undefined;
  }

  /** The earliest expiry of any row (undefined: none). */
  nextExpiry(): number | undefined {
    // Another tool may have stored text or a blob there: such a row never expires.
    const next = this.#expiry?.next().get();
    return typeof next === 'number' ? next : undefined;
  }

  /** Delete up to `max` rows expired at `now`, earliest first; their categories and keys. */
  sweep(now: number, max: number): [Buffer, Buffer][] {
    return this.#expiry?.sweep().all(now, max) ?? [];
  }

  /** Delete `[start, stop)`; an empty `stop` means no upper bound. */
  deleteRange(category: Bytes, start: Bytes, stop: Bytes): number {
    return stop.length === 0
      ? this.#deleteFrom().run(category, start).changes
      : this.#deleteRange().run(category, start, stop).changes;
  }

  /** Whether `[start, stop)` (empty `stop`: no bound) holds a row, expired or not. */
  hasRow(category: Bytes, start: Bytes, stop: Bytes): boolean {
    const found =
      stop.length === 0
        ? this.#anyFrom().get(category, start)
        : this.#anyInRange().get(category, start, stop);
    return found !== undefined;
  }

  /** The key `n` rows past `start` in `[start, stop)` (empty `stop`: no bound), if any. */
  keyAfter(category: Bytes, start: Bytes, stop: Bytes, n: number): Buffer | undefined {
    const next =
      stop.length === 0
        ? this.#nthFrom().get(category, start, n)
        : this.#nthInRange().get(category, start, stop, n);
    if (next !== undefined) inKeyOrder(start, next, false);
    return next;
  }

  get(category: Bytes, key: Bytes): Buffer | undefined {
    return this.#reads.get.get(category, key);
  }

  /**
   * Read several keys of one category with one statement. The result holds, per key in
   * order, what `markers` says: `absent`; or `present`, a u32 big-endian length and the
   * payload; or, for a payload over `GET_MANY_INLINE_BYTES`, `large`, to be read with `get`.
   * `args` is the keys, then the category; 2 to `GET_RUN_MAX` keys.
   *
   * One statement instead of one per key: better-sqlite3's per-call work (the call, the read
   * transaction, a Buffer per payload) is paid once (README, Performance, for where that
   * starts to pay).
   */
  getMany(args: readonly Bytes[], markers: GetManyMarkers): Buffer {
    const n = args.length - 1;
    const name = `${n} ${markers.absent} ${markers.present} ${markers.large}`;
    let statement = this.#getMany.get(name);
    if (statement === undefined) {
      if (n < 2 || n > GET_RUN_MAX) throw new RangeError(`getMany takes 2 to ${GET_RUN_MAX} keys`);
      if (!this.canGetMany) throw new Error('getMany does not work on this connection');
      try {
        statement = this.db
          .prepare<[readonly Bytes[]], Buffer>(getManySql(n, markers, this.expiry))
          .pluck();
      } catch (e) {
        this.#getManyWorks = false; // an SQLite without what it needs: do not try again
        throw e;
      }
      this.#getMany.set(name, statement);
    }
    const found = statement.get(args);
    if (found === undefined) throw new Error('getMany: no result row');
    return found;
  }

  /**
   * Whether concatenation gives exact bytes on this file (see concatKeepsBytes), found out
   * once: for getMany and the pages of scans and iterators.
   */
  get canGetMany(): boolean {
    this.#getManyWorks ??= concatKeepsBytes(this.db);
    return this.#getManyWorks;
  }

  exists(category: Bytes, key: Bytes): boolean {
    return this.#reads.exists().get(category, key) !== undefined;
  }

  /**
   * Write the rows of `[start, stop)` (an empty `stop`: no upper bound) in key order, or
   * reversed, at most `limit` of them (-1: no limit), into `w` as row records, a page at a
   * time (see RangePages), yielding each page's row count and last key. Pages read a long
   * range faster than one `iterate()` or one `all()` (README, Performance), and between
   * pages the worker may serve another job.
   */
  *scanPages(
    w: () => ByteWriter,
    category: Bytes,
    start: Bytes,
    stop: Bytes,
    reverse: boolean,
    limit: number,
  ): Generator<{ rows: number; last: Buffer | undefined }, void, void> {
    const range = { category, start, stop, reverse };
    let left = limit < 0 ? Number.POSITIVE_INFINITY : limit;
    let after: Bytes | undefined;
    while (left > 0) {
      const want = Math.min(SCAN_PAGE_ROWS, left);
      const out = w();
      const page = this.#reads.pages.page(out, range, after, want);
      if (page.built !== undefined) out.bytes(page.built);
      yield page;
      if (page.rows < want) return;
      left -= want;
      after = page.last;
    }
  }

  /**
   * Rows inserted, changed or deleted through this connection since it opened: unchanged
   * means no row changed (a rollback only undoes changes that counted).
   */
  changes(): number {
    return this.#totalChanges().get() as number;
  }

  /** What `scanPages` would write of the same range (see Extent), without reading a payload. */
  scanExtent(category: Bytes, start: Bytes, stop: Bytes, reverse: boolean, limit: number): Extent {
    return this.#reads.pages.extent({ category, start, stop, reverse }, limit);
  }

  count(category: Bytes, start: Bytes, stop: Bytes): number {
    return (
      (stop.length === 0
        ? this.#reads.countFrom().get(category, start)
        : this.#reads.countRange().get(category, start, stop)) ?? 0
    );
  }

  /**
   * Checkpoint the WAL into the database and truncate it to zero bytes, as far as readers
   * let it: a reader holding the WAL (the CLI, a backup, Litestream's long read) is not
   * waited for, since closing or releasing the job must not; the WAL then stays for the
   * next checkpoint (the connection closes right after, so its busy timeout can go).
   */
  checkpoint(): void {
    this.db.pragma('busy_timeout = 0');
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  /** The whole database as bytes (used to keep an in-memory job across close/reopen). */
  serialize(): Uint8Array {
    return this.db.serialize();
  }

  close(): void {
    this.db.close();
  }
}
