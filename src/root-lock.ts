/*
 * Ownership of a root directory: one owner per root at a time, in any process.
 *
 * The owner holds an exclusive SQLite lock on `<root>/.persistency-owner` while it has a
 * job open (opening, open, or released while idle) or a drop under way: a POSIX lock on
 * one file descriptor, which the operating system drops when the owner dies, so a killed
 * owner never leaves a stale lock. The job files themselves are not locked beyond what
 * SQLite needs, so other processes can read them through read-only connections.
 *
 * The lock is taken through SQLite, not by hand, because SQLite also tracks locks per
 * inode across the connections of one process (POSIX locks belong to the whole process):
 * a second `Persistency` in another thread of this process is refused like another
 * process. For the same reason nothing in an owning process may open and close the lock
 * file by other means: closing any descriptor of a file drops the process's locks on it.
 *
 * The file stays empty (nothing is ever written to it: the lock is taken by a write
 * transaction that is rolled back, its journal in memory) and stays in the root when
 * released: deleting it would let two processes lock two different files of that name.
 * Its name starts with a dot, which no job file's name can (see paths.ts).
 */
import { accessSync, existsSync, constants as fsConstants } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { err, ok, type Result } from 'neverthrow';
import { codeOf, PersistencyError } from './errors.js';
import { fileIdOf } from './file-identity.js';

/** The name of a root's lock file. */
export const ROOT_LOCK_FILE = '.persistency-owner';

/** One holder's part in a held {@link RootLock}; releasing it twice is a no-op. */
export interface RootLockShare {
  release(): void;
}

/**
 * The owner lock of one root, for one `Persistency` instance: taken by the first
 * `acquire`, given back when the last share is released. Shares count within the
 * instance; a second instance (same process or not) has its own `RootLock` and is refused.
 */
export class RootLock {
  /** The lock file. */
  readonly path: string;
  #db: Database.Database | undefined;
  /** The device and inode of the lock file `#db` locks. */
  #fileId: string | undefined;
  #shares = 0;

  constructor(rootDir: string) {
    this.path = join(rootDir, ROOT_LOCK_FILE);
  }

  /**
   * A share of the root's lock, taking the lock first if this instance does not hold it:
   * `Err(Busy)` when another process or instance owns the root, `Err(Backend)` (with
   * SQLite's code) when the lock file cannot be opened or locked. `jobFile` is the file the
   * share is for; errors name it.
   */
  acquire(jobFile: string): Result<RootLockShare, PersistencyError> {
    // A lock on a file no longer at the path (the root was removed and made again) holds
    // nothing: another process could lock the new file. Lock the file there now.
    if (this.#db === undefined || fileIdOf(this.path) !== this.#fileId) {
      const taken = lockExclusively(this.path, jobFile);
      if (taken.isErr()) return err(taken.error);
      this.#db?.close();
      this.#db = taken.value;
      this.#fileId = fileIdOf(this.path);
    }
    this.#shares++;
    let released = false;
    return ok({
      release: () => {
        if (released) return;
        released = true;
        this.#shares--;
        if (this.#shares === 0) {
          this.#db?.close();
          this.#db = undefined;
        }
      },
    });
  }
}

/** Open the lock file (creating it) and take its exclusive lock, held until `close()`. */
function lockExclusively(
  path: string,
  jobFile: string,
): Result<Database.Database, PersistencyError> {
  let db: Database.Database | undefined;
  try {
    // timeout 0: a held lock is an answer (Busy), not something to wait out.
    db = new Database(path, { timeout: 0 });
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = MEMORY');
    // The write, rolled back, proves the lock is exclusive: SQLite opens a file it cannot
    // write read-only, and a read-only descriptor gets only a shared lock, which a second
    // such opener would share.
    db.exec('BEGIN EXCLUSIVE; PRAGMA user_version = 0; ROLLBACK');
    return ok(db);
  } catch (e) {
    db?.close();
    if (isBusy(e)) {
      return err(
        new PersistencyError(
          'Busy',
          `${jobFile}: its root ${dirname(path)} is owned by another process or Persistency instance (it holds the lock on ${path}; one owner per root at a time)`,
          { code: codeOf(e), cause: e },
        ),
      );
    }
    return err(lockError(path, `${jobFile}: cannot lock its root`, e));
  }
}

function isBusy(e: unknown): boolean {
  const code = codeOf(e) ?? '';
  return code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
}

/** A Backend error keeping SQLite's code; says so when the file or its directory is not writable. */
function lockError(path: string, context: string, e: unknown): PersistencyError {
  const code = codeOf(e);
  let why = e instanceof Error ? e.message : String(e);
  if (/^SQLITE_(READONLY|CANTOPEN|PERM|AUTH)/.test(code ?? '')) {
    // access(2) opens nothing, so it cannot drop a lock this process holds on the file.
    const target = existsSync(path) ? path : dirname(path);
    try {
      accessSync(target, fsConstants.W_OK);
    } catch {
      why = `${target} is not writable by this process (${why})`;
    }
  }
  return new PersistencyError('Backend', `${context}: ${path}: ${why}`, { code, cause: e });
}
