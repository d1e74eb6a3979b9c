/*
 * Opening a job file: its schema and migrations, and the pragmas it runs with. A file of an
 * unknown (newer, or negative: damaged) schema version is refused before anything is
 * written. Runs inside the job's worker (src/worker/backend.ts holds the statements).
 */
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { fileIdOf, openedElsewhere } from '../file-identity.js';
import { EXPIRY_VERSION } from './expiry.js';
import { cutShort, notAJobFile, walHolder } from './job-file-reader.js';
import { createJobFile, newJobFileImage, removeSideFile } from './new-job-file.js';

/**
 * The newest schema version this library knows (`PRAGMA user_version`): 2 adds expiry
 * (src/worker/expiry.ts), applied only by the first write that uses it.
 */
export const SCHEMA_VERSION = EXPIRY_VERSION;
/** The version a file is brought to at open: the reference's schema. */
export const BASE_VERSION = 1;

/**
 * Ordered migrations run at open; entry i takes a file from version i to i + 1. Each runs
 * in its own transaction together with its version bump, so a crash leaves a file at one
 * version. Version 1 is the Nim reference's schema, byte for byte; version 2 is applied on
 * first use instead (KvBackend.migrateToExpiry), so that a file that never used expiry stays
 * readable by the reference.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS kv (
     category BLOB NOT NULL,
     key BLOB NOT NULL,
     payload BLOB NOT NULL,
     PRIMARY KEY (category, key)
   ) WITHOUT ROWID`,
];

let baseImage: Uint8Array | undefined;
/** An empty job file at BASE_VERSION (built once per thread): what a new job starts from. */
const newFileImage = (): Uint8Array =>
  (baseImage ??= newJobFileImage(MIGRATIONS.slice(0, BASE_VERSION), BASE_VERSION));

export interface BackendOptions {
  readonly busyTimeoutMs: number;
  /**
   * How long one statement waits in SQLite's busy handler (default: busyTimeoutMs). A
   * thread shared by several jobs waits less and retries between turns instead.
   */
  readonly statementBusyMs?: number | undefined;
  readonly journalSizeLimitBytes: number;
  /** Bound on the file size via max_page_count; 0 = none. */
  readonly maxJobBytes?: number;
  /** Run quick_check at open and refuse a damaged file. */
  readonly verifyOnOpen?: boolean;
  /** Open an existing file only (a released job's), never create one. */
  readonly mustExist?: boolean;
  /** The file a released job had (its identity): a reattach opens that file or fails. */
  readonly fileId?: string | undefined;
}

/** An error refusing the file at open, with the code the owner reports it under. */
function refusal(message: string, code = 'SQLITE_CORRUPT'): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * A job file's connection, set up: refuse an unknown schema without writing, check it with
 * `verifyOnOpen`, set the pragmas, run pending migrations, and find out now whether it can
 * be written. `image` restores an in-memory job.
 */
export function openJobDatabase(
  path: string,
  options: BackendOptions,
  image?: Uint8Array,
): { db: Database.Database; fileId: string | undefined } {
  // A -wal the file came with must outlive a refusal: closed last, the refusing connection
  // would checkpoint it into the file and delete it; a read-only one, opened first and
  // closed after it, does not (and if it cannot open, nothing else is tried).
  const walThere =
    path !== ':memory:' && image === undefined && existsSync(`${path}-wal`) && existsSync(path);
  const holder = walThere
    ? walHolder(path, options.statementBusyMs ?? options.busyTimeoutMs)
    : undefined;
  try {
    return openConnection(path, options, image);
  } finally {
    holder?.close();
  }
}

function openConnection(
  path: string,
  options: BackendOptions,
  image: Uint8Array | undefined,
): { db: Database.Database; fileId: string | undefined } {
  const memory = path === ':memory:';
  // A new file from the image, unless maxJobBytes is below its size: SQLite's own making
  // of the file then fails as the bound says.
  const bound = options.maxJobBytes ?? 0;
  if (!memory && image === undefined && options.mustExist !== true) {
    if (bound === 0 || bound >= newFileImage().length) createJobFile(path, newFileImage);
    else removeSideFile(path);
  }
  // The root's lock already keeps other owners out (src/root-lock.ts): a lock met here is a
  // reader's moment (a checkpointing Litestream holds the write lock briefly), waited out:
  // here on a thread of the job's own, in pauses between tries on a shared one (main.ts).
  // The file SQLite is about to open: once the open is done the path must still name it, or
  // every later check (flush, close, reattach) would watch a file the job does not have.
  const before = memory ? undefined : fileIdOf(path);
  const db = image
    ? new Database(Buffer.from(image.buffer, image.byteOffset, image.byteLength))
    : new Database(path, {
        timeout: options.statementBusyMs ?? options.busyTimeoutMs,
        fileMustExist: options.mustExist === true,
      });
  try {
    // A file SQLite made itself (none was there): the one at the path right after it did.
    const opened = memory ? undefined : (before ?? fileIdOf(path));
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version < 0) {
      throw refusal(
        `${path} has schema version ${version} in its header, which no version of this library writes: the file is damaged or not a job file; it was left untouched`,
      );
    }
    if (version > SCHEMA_VERSION) {
      throw refusal(
        `${path} has schema version ${version}, newer than version ${SCHEMA_VERSION} this library knows; it was left untouched`,
        'SCHEMA_TOO_NEW',
      );
    }
    // A job's file is at version 1 or later once opened: a reattach finding version 0 finds
    // it emptied while released, which a new job's making must not hide.
    if (version === 0 && options.mustExist === true)
      throw refusal(
        `${path} is empty: the job's file was emptied while the job was released; it was left untouched`,
      );
    const notAJob = notAJobFile(db, version);
    if (notAJob !== undefined)
      throw refusal(`${path} is not a job file: ${notAJob}; it was left untouched`);
    const short = memory ? undefined : cutShort(db, path);
    if (short !== undefined) throw refusal(`${path} is damaged: ${short}; it was left untouched`);
    if (options.verifyOnOpen === true) {
      let problems: { quick_check: string }[];
      try {
        problems = db.pragma('quick_check(5)') as { quick_check: string }[];
      } catch (e) {
        const code = (e as { code?: string }).code ?? 'SQLITE_CORRUPT';
        throw refusal(`quick_check: ${(e as Error).message}`, code);
      }
      if (problems[0]?.quick_check !== 'ok') {
        throw refusal(`quick_check found damage: ${problems.map((p) => p.quick_check).join('; ')}`);
      }
    }
    if (!memory) {
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal')
        throw new Error(`${path}: could not enable WAL (journal_mode is ${String(mode)})`);
    }
    db.pragma('synchronous = FULL');
    db.pragma(`journal_size_limit = ${Math.floor(options.journalSizeLimitBytes)}`);
    if (options.maxJobBytes !== undefined && options.maxJobBytes > 0) {
      const pageSize = db.pragma('page_size', { simple: true }) as number;
      db.pragma(`max_page_count = ${Math.max(1, Math.floor(options.maxJobBytes / pageSize))}`);
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      db.transaction(() => {
        db.exec(MIGRATIONS[v] as string);
        db.pragma(`user_version = ${v + 1}`);
      }).immediate();
    }
    // SQLite quietly opens a file it cannot write read-only; find out now, at open,
    // rather than at the first write. In WAL's normal locking mode BEGIN IMMEDIATE alone
    // succeeds on such a file (its write lock lives in the -shm), so a write that is
    // rolled back, never reaching the WAL, tells.
    const current = db.pragma('user_version', { simple: true }) as number;
    db.exec(`BEGIN IMMEDIATE; PRAGMA user_version = ${current}; ROLLBACK`);
    const busyMs = Math.min(
      options.statementBusyMs ?? options.busyTimeoutMs,
      options.busyTimeoutMs,
    );
    db.pragma(`busy_timeout = ${Math.floor(busyMs)}`);
    const fileId = memory ? undefined : fileIdOf(path);
    const elsewhere = memory ? undefined : openedElsewhere(path, fileId, opened, options.fileId);
    if (elsewhere !== undefined) throw elsewhere;
    return { db, fileId };
  } catch (e) {
    db.close();
    throw e;
  }
}
