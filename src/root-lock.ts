/*
 * Ownership of a root directory: one owning thread per root at a time, in any process;
 * within it, the `Persistency` instances of that thread own the root's jobs one by one.
 *
 * The owner holds an exclusive SQLite lock on `<root>/.persistency-owner` while it has a
 * job open (opening, open, or released while idle) or a drop under way: a POSIX lock on
 * one file descriptor, which the operating system drops when the owner dies, so a killed
 * owner never leaves a stale lock. The job files themselves are not locked beyond what
 * SQLite needs, so other processes can read them through read-only connections.
 *
 * The lock is taken through SQLite, not by hand, because SQLite also tracks locks per
 * inode across the connections of one process (POSIX locks belong to the whole process):
 * a `Persistency` in another thread of this process is refused like another process.
 * For the same reason nothing in an owning process may open and close the lock file by
 * other means: closing any descriptor of a file drops the process's locks on it. Instances
 * of one thread share one lock (`RootLock.of`) and are kept apart job by job.
 *
 * The file stays empty (nothing is ever written to it: the lock is taken by a write
 * transaction that is rolled back, its journal in memory) and stays in the root when
 * released: deleting it would let two processes lock two different files of that name.
 * Its name starts with a dot, which no job file's name can (see paths.ts).
 */
import { accessSync, existsSync, constants as fsConstants, lstatSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { err, ok, type Result } from 'neverthrow';
import { codeOf, PersistencyError } from './errors.js';
import { fileIdOf } from './file-identity.js';
import { irregularFile, ROOT_LOCK_FILE, realPathOf } from './paths.js';

export { ROOT_LOCK_FILE };

/** One holder's part in a held {@link RootLock}; releasing it twice is a no-op. */
export interface RootLockShare {
  release(): void;
}

/** Who holds a job file among the instances of this thread, and how many shares. */
interface JobHold {
  readonly owner: object;
  shares: number;
}

/**
 * The owner lock of one root in this thread: taken by the first `acquire`, given back when
 * the last share is released. The instances of this thread share it (see `of`) and own the
 * root's jobs one by one; another thread or process has its own and is refused the root.
 */
export class RootLock {
  /** The lock of each root some instance of this thread holds a share of, by lock file. */
  static readonly #held = new Map<string, RootLock>();

  /** The lock file. */
  readonly path: string;
  #db: Database.Database | undefined;
  /** The device and inode of the lock file `#db` locks. */
  #fileId: string | undefined;
  #shares = 0;
  /** The jobs shares are held for, and by which instance. */
  readonly #jobs = new Map<string, JobHold>();

  private constructor(path: string) {
    this.path = path;
  }

  /** The lock of `rootDir` that every instance of this thread shares. */
  static of(rootDir: string): RootLock {
    const path = join(realPathOf(rootDir), ROOT_LOCK_FILE);
    // Kept in the map from its first share (acquire) to its last: use it at once.
    return RootLock.#held.get(path) ?? new RootLock(path);
  }

  /** `Busy` if another instance of this thread holds a share for job file `jobFile`. */
  heldByAnother(jobFile: string, owner: object): PersistencyError | undefined {
    const hold = this.#jobs.get(basename(jobFile));
    if (hold === undefined || hold.owner === owner) return undefined;
    return new PersistencyError(
      'Busy',
      `${jobFile}: the job is owned by another Persistency instance of this thread (one owner per job)`,
    );
  }

  /**
   * A share of the root's lock for job file `jobFile` on behalf of `owner` (an instance),
   * taking the lock first if this thread does not hold it: `Err(Busy)` when another
   * process or thread owns the root, or another instance of this thread holds `jobFile`;
   * `Err(Backend)` (with SQLite's code) when the lock file cannot be opened or locked.
   * Errors name `jobFile`.
   */
  acquire(jobFile: string, owner: object): Result<RootLockShare, PersistencyError> {
    const job = basename(jobFile);
    const held = this.heldByAnother(jobFile, owner);
    if (held !== undefined) return err(held);
    const hold = this.#jobs.get(job);
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
    RootLock.#held.set(this.path, this);
    if (hold === undefined) this.#jobs.set(job, { owner, shares: 1 });
    else hold.shares++;
    let released = false;
    return ok({
      release: () => {
        if (released) return;
        released = true;
        const h = this.#jobs.get(job);
        if (h !== undefined && --h.shares === 0) this.#jobs.delete(job);
        if (--this.#shares === 0) {
          this.#db?.close();
          this.#db = undefined;
          RootLock.#held.delete(this.path);
        }
      },
    });
  }
}

/**
 * Open the lock file (creating it) and take its exclusive lock, held until `close()`. Two
 * openers racing for a free lock can each hold the shared lock SQLite takes first and so
 * keep each other from the exclusive one: both back off and try again, a few times.
 */
function lockExclusively(
  path: string,
  jobFile: string,
): Result<Database.Database, PersistencyError> {
  const unsafe = unsafeLockFile(path, jobFile);
  if (unsafe !== undefined) return err(unsafe);
  for (let attempt = 1; ; attempt++) {
    const taken = tryLock(path, jobFile);
    if (!(taken instanceof Raced)) return taken;
    if (attempt === RACE_ATTEMPTS) return err(busyError(path, jobFile, taken.error));
    Atomics.wait(PAUSE, 0, 0, 1 + Math.random() * 4); // ms; a race is over in one
  }
}

const RACE_ATTEMPTS = 10;
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/** Another opener holds the shared lock too: neither can take the exclusive one now. */
class Raced {
  constructor(readonly error: unknown) {}
}

function tryLock(
  path: string,
  jobFile: string,
): Result<Database.Database, PersistencyError> | Raced {
  let db: Database.Database | undefined;
  let shared = false;
  try {
    // timeout 0: a held lock is an answer (Busy), not something to wait out.
    db = new Database(path, { timeout: 0 });
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = MEMORY');
    shared = true; // the shared lock is taken: no owner holds the exclusive one
    // The write, rolled back, proves the lock is exclusive: SQLite opens a file it cannot
    // write read-only, and a read-only descriptor gets only a shared lock, which a second
    // such opener would share.
    db.exec('BEGIN EXCLUSIVE; PRAGMA user_version = 0; ROLLBACK');
    return ok(db);
  } catch (e) {
    db?.close();
    if (!isBusy(e)) return err(lockError(path, `${jobFile}: cannot lock its root`, e));
    return shared ? new Raced(e) : err(busyError(path, jobFile, e));
  }
}

function busyError(path: string, jobFile: string, e: unknown): PersistencyError {
  return new PersistencyError(
    'Busy',
    `${jobFile}: its root ${dirname(path)} is owned by another process or Persistency instance (it holds the lock on ${path}; one owner per root at a time)`,
    { code: codeOf(e), cause: e },
  );
}

/** A lock file that is a link or not a regular file is never opened (SQLite would follow it). */
function unsafeLockFile(path: string, jobFile: string): PersistencyError | undefined {
  const odd = irregularFile(lstatSync(path, { throwIfNoEntry: false }));
  if (odd === undefined) return undefined;
  return new PersistencyError(
    'Backend',
    `${jobFile}: cannot lock its root: ${path} is ${odd.what}; the lock file is never reached through links (left as it is)`,
    { code: odd.code },
  );
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
