/*
 * The SQL of reading a job file from outside its owner (the CLI), while the owner runs or
 * not: nothing written, no migration, no checkpoint. Errors are SQLite's, thrown as they are.
 */
import { existsSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { EXPIRY_VERSION } from './expiry.js';
import { kvColumns, PAYLOAD, READABLE_ROWS } from './kv-table.js';

/**
 * Why a file whose header says schema `version` (0 up to this library's) is not a job file,
 * or undefined when it is one. No application id; at version 0 (a file this library has not
 * taken yet, or the reference's) nothing of its own but the kv table: tables, views,
 * triggers or indexes make it another program's database, or one whose triggers could
 * refuse every put. Later a job file may have gained such things (Litestream adds tables,
 * a tool a trigger): its writes then answer for them. From version 1 on the kv table must be
 * there. The kv table has exactly its version's columns, keyed by (category, key) with no
 * other unique index, or a put could not replace its row, or would replace another's. Checked before anything is written, at every open, and by the
 * inspector before it reads.
 */
export function notAJobFile(db: Database.Database, version: number): string | undefined {
  const appId = db.pragma('application_id', { simple: true }) as number;
  if (appId !== 0) return `it carries another application's id (application_id ${appId})`;
  if (version === 0) {
    const own = db
      .prepare<[], string>(
        `SELECT type || ' ' || name FROM sqlite_master WHERE name NOT IN (${SQLITE_OWN}) AND NOT (type = 'index' AND name LIKE 'sqlite\\_autoindex\\_kv\\_%' ESCAPE '\\') AND NOT (type = 'table' AND name = 'kv') ORDER BY type, name`,
      )
      .pluck()
      .all();
    if (own.length > 0)
      return `schema version 0 with objects of its own (${own.slice(0, 5).join(', ')})`;
  }
  // table_xinfo: generated columns too, which table_info leaves out.
  const columns = db.pragma('table_xinfo(kv)') as { name: string; pk: number }[];
  if (columns.length === 0)
    return version === 0 ? undefined : `schema version ${version} without a kv table`;
  const want = kvColumns(Math.max(version, 1));
  const names = columns.map((c) => c.name.toLowerCase()); // as SQLite compares them
  const odd = [
    ...want.filter((n) => !names.includes(n)).map((n) => `no ${n}`),
    ...names.filter((n) => !want.includes(n)),
  ];
  if (odd.length > 0)
    return `its kv table's columns are not schema version ${version}'s (${odd.join(', ')})`;
  const pk = (name: string) => columns.find((c) => c.name.toLowerCase() === name)?.pk;
  const keyed = pk('category') === 1 && pk('key') === 2;
  if (!keyed || columns.some((c) => c.pk > 2))
    return 'its kv table is not keyed by (category, key)';
  // A put is INSERT OR REPLACE: a clash on any other unique index would delete that row.
  const unique = (db.pragma('index_list(kv)') as { name: string; unique: number; origin: string }[])
    .filter((i) => i.unique === 1 && i.origin !== 'pk')
    .map((i) => i.name);
  return unique.length === 0
    ? undefined
    : `its kv table has unique indexes besides its key (${unique.slice(0, 5).join(', ')})`;
}

/** The names SQLite itself gives objects it makes (ANALYZE's statistics, AUTOINCREMENT's). */
const SQLITE_OWN = ['sequence', 'stat1', 'stat2', 'stat3', 'stat4']
  .map((n) => `'sqlite_${n}'`)
  .join(', ');

/**
 * Why the file at `path` cannot be whole: SQLite writes whole pages, and reads the missing
 * end of a page cut short as zeros, which can parse as a page with fewer rows and so hide
 * rows without an error. Undefined: whole pages. Pages over 4 KiB are checked in 4 KiB
 * units: a checkpoint (Litestream's, say) extending the file by such a page may be seen
 * halfway, at a boundary of the system's pages, but never inside one.
 */
export function cutShort(db: Database.Database, path: string): string | undefined {
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  const unit = Math.min(pageSize, 4096);
  const bytes = statSync(path, { throwIfNoEntry: false })?.size ?? 0;
  return bytes % unit === 0
    ? undefined
    : `it is ${bytes} bytes, not a whole number of ${pageSize}-byte pages: it was cut short`;
}

/** Key, payload, and when the row expires (ms since the epoch; null: never). */
type Row = [Buffer, Buffer, number | null];

export class JobFileReader {
  readonly #db: Database.Database;
  /** `PRAGMA user_version` of the file. */
  readonly version: number;

  /** Whether the connection could write (opened while the job had no WAL). */
  readonly #mayWrite: boolean;

  private constructor(db: Database.Database, version: number, mayWrite: boolean) {
    this.#db = db;
    this.version = version;
    this.#mayWrite = mayWrite;
  }

  /**
   * Open for reading, beside a live owner or none, leaving the job's files as they were.
   * With a WAL there (the job is open, or its owner died) a read-only connection reads
   * through it and adds nothing. Without one (the job is closed) a read-only connection
   * would leave the -wal and -shm it makes behind, so the connection may write but is
   * kept from it (`query_only`): SQLite then removes them when it closes, as the last
   * connection. A lock held elsewhere shows at the first read (timeout 0: waiting would
   * only delay the answer).
   */
  static open(path: string): JobFileReader {
    const live = existsSync(`${path}-wal`);
    const db = new Database(path, { readonly: live, fileMustExist: true, timeout: 0 });
    try {
      if (!live) db.pragma('query_only = ON');
      return new JobFileReader(db, db.pragma('user_version', { simple: true }) as number, !live);
    } catch (e) {
      db.close();
      throw e;
    }
  }

  /** Whether `e` is SQLite saying the file is damaged or not a database. */
  static isDamage(e: unknown): boolean {
    const code = (e as { code?: unknown }).code;
    return (
      e instanceof Database.SqliteError &&
      typeof code === 'string' &&
      (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB')
    );
  }

  /** SQLite's error code of `e`, or undefined when `e` is not an SQLite error. */
  static sqliteCode(e: unknown): string | undefined {
    return e instanceof Database.SqliteError ? e.code : undefined;
  }

  /** Why the file is damaged in a way SQLite's reads would not report (see cutShort). */
  cutShort(): string | undefined {
    return cutShort(this.#db, this.#db.name);
  }

  /** Why the file is not a job's though its header says it is (undefined: it is one). */
  notAJob(): string | undefined {
    if (this.version < 1) return undefined; // the header already says it
    return notAJobFile(this.#db, this.version);
  }

  /** Rows not expired at `now`. */
  rowCount(now = Date.now()): number {
    const sql = `SELECT COUNT(*) FROM kv WHERE ${READABLE_ROWS}${this.#live(now)}`;
    return this.#db.prepare<[], number>(sql).pluck().get() ?? 0;
  }

  /** Each category's bytes and count of rows not expired at `now`, in byte order. */
  categories(now = Date.now()): IterableIterator<[Buffer, number]> {
    return this.#db
      .prepare<[], [Buffer, number]>(
        `SELECT category, COUNT(*) FROM kv WHERE ${READABLE_ROWS}${this.#live(now)} GROUP BY category ORDER BY category`,
      )
      .raw()
      .iterate();
  }

  /** Whether the file has expiry (src/worker/expiry.ts). */
  get #expiry(): boolean {
    return this.version >= EXPIRY_VERSION;
  }

  /** The condition that leaves out rows expired at `now`, as the library's reads do. */
  #live(now: number): string {
    return this.#expiry ? ` AND (expires_at IS NULL OR expires_at > ${Math.floor(now)})` : '';
  }

  /**
   * Rows of `[start, stop)` (no `stop`: no upper bound), in key order or reversed, with
   * their expiry; rows expired at `now` are left out.
   */
  scan(
    category: Uint8Array,
    start: Uint8Array,
    stop: Uint8Array | undefined,
    reverse: boolean,
    limit: number,
    now = Date.now(),
  ): IterableIterator<Row> {
    const expires = this.#expiry ? 'expires_at' : 'NULL';
    const sql = `SELECT key, ${PAYLOAD}, ${expires} FROM kv WHERE category = ? AND key >= ?${stop === undefined ? '' : ' AND key < ?'}${this.#live(now)} ORDER BY key ${reverse ? 'DESC' : 'ASC'} LIMIT ?`;
    const params: (Uint8Array | number)[] = [category, start];
    if (stop !== undefined) params.push(stop);
    params.push(limit);
    return this.#db
      .prepare<(Uint8Array | number)[], Row>(sql)
      .raw()
      .iterate(...params);
  }

  /** Rows of `[start, stop)` not expired at `now`. */
  count(
    category: Uint8Array,
    start: Uint8Array,
    stop: Uint8Array | undefined,
    now = Date.now(),
  ): number {
    const sql = `SELECT COUNT(*) FROM kv WHERE category = ? AND key >= ?${stop === undefined ? '' : ' AND key < ?'}${this.#live(now)}`;
    const params: Uint8Array[] = [category, start];
    if (stop !== undefined) params.push(stop);
    return (
      this.#db
        .prepare<Uint8Array[], number>(sql)
        .pluck()
        .get(...params) ?? 0
    );
  }

  /** `PRAGMA integrity_check`'s lines ('ok' alone when intact). */
  integrityCheck(): string[] {
    return (this.#db.pragma('integrity_check') as { integrity_check: string }[]).map(
      (r) => r.integrity_check,
    );
  }

  /**
   * Copy the committed state into `dest` (SQLite's online backup); resolves with the rows
   * copied. The connection keeps its shared lock for the whole copy, so the copy (and the
   * count) is one consistent snapshot.
   */
  async backup(dest: string): Promise<number> {
    // A read transaction open across the copy's steps: an owner writing meanwhile neither
    // restarts the copy nor shows in it.
    this.#db.exec('BEGIN');
    let rows: number;
    try {
      rows = this.rowCount();
      await this.#db.backup(dest);
    } finally {
      this.#db.exec('COMMIT');
    }
    toRollbackJournal(dest);
    return rows;
  }

  /**
   * Close. A connection that could write, closed last, checkpoints the WAL into the file and
   * deletes it: if an owner came, wrote and went meanwhile (or died), its frames are there,
   * and a read-only holder opened first keeps this close from being the last. Between the
   * look at the WAL and the close an owner's release could still leave it frames: that
   * narrow window stays (better-sqlite3 cannot turn off the checkpoint at close).
   */
  close(): void {
    const path = this.#db.name;
    let holder: Database.Database | undefined;
    if (this.#mayWrite && (statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0) > 0) {
      try {
        holder = walHolder(path, 0);
      } catch {
        // No holder (the file gone, a lock held): close as before.
      }
    }
    try {
      this.#db.close();
    } finally {
      holder?.close();
    }
  }
}

/**
 * A read-only connection that has read the file: one more on its WAL, so that a connection
 * that could write, closed before it, is not the last and neither checkpoints nor deletes
 * the WAL; being read-only, it cannot either when it closes last.
 */
export function walHolder(path: string, timeout: number): Database.Database {
  const holder = new Database(path, { readonly: true, fileMustExist: true, timeout });
  try {
    holder.pragma('user_version');
    return holder;
  } catch (e) {
    holder.close();
    throw e;
  }
}

/**
 * Put a finished copy of a job in rollback-journal mode: whoever reads it makes no -wal or
 * -shm beside it (the library turns WAL back on when it opens the copy as a job).
 */
export function toRollbackJournal(file: string): void {
  const copy = new Database(file, { fileMustExist: true, timeout: 0 });
  try {
    copy.pragma('journal_mode = DELETE');
  } finally {
    copy.close();
  }
}
