/*
 * The SQL of reading a job file from outside its owner (the CLI): a read-only connection,
 * nothing written, no migration, no checkpoint. Errors are SQLite's, thrown as they are.
 */
import Database from 'better-sqlite3';

type Row = [Buffer, Buffer];

export class JobFileReader {
  readonly #db: Database.Database;
  /** `PRAGMA user_version` of the file. */
  readonly version: number;

  private constructor(db: Database.Database, version: number) {
    this.#db = db;
    this.version = version;
  }

  /**
   * Open read-only; the first read takes SQLite's shared lock, so a lock held elsewhere
   * shows here (timeout 0: waiting would only delay the answer).
   */
  static open(path: string): JobFileReader {
    const db = new Database(path, { readonly: true, fileMustExist: true, timeout: 0 });
    try {
      return new JobFileReader(db, db.pragma('user_version', { simple: true }) as number);
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

  rowCount(): number {
    return this.#db.prepare<[], number>('SELECT COUNT(*) FROM kv').pluck().get() ?? 0;
  }

  /** Each category's bytes and row count, in byte order. */
  categories(): IterableIterator<[Buffer, number]> {
    return this.#db
      .prepare<[], [Buffer, number]>(
        'SELECT category, COUNT(*) FROM kv GROUP BY category ORDER BY category',
      )
      .raw()
      .iterate();
  }

  /** Rows of `[start, stop)` (no `stop`: no upper bound), in key order or reversed. */
  scan(
    category: Uint8Array,
    start: Uint8Array,
    stop: Uint8Array | undefined,
    reverse: boolean,
    limit: number,
  ): IterableIterator<Row> {
    const sql = `SELECT key, payload FROM kv WHERE category = ? AND key >= ?${stop === undefined ? '' : ' AND key < ?'} ORDER BY key ${reverse ? 'DESC' : 'ASC'} LIMIT ?`;
    const params: (Uint8Array | number)[] = [category, start];
    if (stop !== undefined) params.push(stop);
    params.push(limit);
    return this.#db
      .prepare<(Uint8Array | number)[], Row>(sql)
      .raw()
      .iterate(...params);
  }

  count(category: Uint8Array, start: Uint8Array, stop: Uint8Array | undefined): number {
    const sql = `SELECT COUNT(*) FROM kv WHERE category = ? AND key >= ?${stop === undefined ? '' : ' AND key < ?'}`;
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
   * Copy the committed state into `dest` (SQLite's online backup). The connection keeps
   * its shared lock for the whole copy, so the copy is one consistent snapshot.
   */
  async backup(dest: string): Promise<void> {
    await this.#db.backup(dest);
    // A copy in rollback-journal mode: whoever reads it makes no -wal or -shm beside it (the
    // library turns WAL back on when it opens the copy as a job).
    const copy = new Database(dest, { fileMustExist: true, timeout: 0 });
    try {
      copy.pragma('journal_mode = DELETE');
    } finally {
      copy.close();
    }
  }

  close(): void {
    this.#db.close();
  }
}
