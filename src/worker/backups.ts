/*
 * A job's backups inside its worker (`job.backup`): SQLite's online backup from a snapshot
 * of the job (src/worker/snapshots.ts) into a new file beside the destination, a hundred
 * pages per step with the worker's other work between steps, so the job's reads and
 * writes wait for one step at most, never for the whole copy. The finished copy is put in
 * rollback-journal mode (reading it leaves no -wal or -shm beside it), made durable, and
 * given the destination's name only then, without ever replacing a file there.
 */
import type { MessagePort } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import { type ErrorInfo, type FromWorker, toErrorInfo } from '../protocol/messages.js';
import type { KvBackend } from './backend.js';
import { nameCopy, placeCopy, removeCopy, syncPath } from './backup-files.js';
import { toRollbackJournal } from './job-file-reader.js';
import { openSnapshot } from './snapshots.js';

interface Running {
  readonly source: Database.Database;
  /** The copy being written, linked to the destination when done. */
  readonly partial: string;
  readonly dest: string;
  /** The copy has the destination's name: the backup is made, whatever happens next. */
  linked: boolean;
}

export class Backups {
  readonly #running = new Map<number, Running>();
  readonly #port: MessagePort;
  readonly #backend: KvBackend;
  readonly #path: string;
  readonly #busyMs: number;
  /** Why the job's path no longer holds the file the job opened, if it does not. */
  readonly #fileMoved: () => ErrorInfo | undefined;

  constructor(
    port: MessagePort,
    backend: KvBackend,
    path: string,
    busyMs: number,
    fileMoved: () => ErrorInfo | undefined,
  ) {
    this.#port = port;
    this.#backend = backend;
    this.#path = path;
    this.#busyMs = busyMs;
    this.#fileMoved = fileMoved;
  }

  /**
   * Copy the job's committed data (the caller commits the group's writes first) into
   * `dest`, which must not exist; `backupDone` answers when it is there or has failed.
   */
  start(id: number, dest: string): void {
    const place = placeCopy(dest);
    if (place.refused !== undefined) {
      this.#done(id, place.refused);
      return;
    }
    let source: Database.Database | undefined;
    let failed = this.#fileMoved();
    try {
      if (failed === undefined) {
        source = openSnapshot(this.#path, this.#backend, this.#busyMs);
        source.prepare('SELECT 1 FROM sqlite_schema LIMIT 1').get(); // the snapshot begins
        failed = this.#fileMoved(); // the snapshot is of the file at the path: the job's own?
      }
    } catch (e) {
      failed = toErrorInfo(e, 'backup');
    }
    if (failed !== undefined || source === undefined) {
      source?.close();
      removeCopy(place.partial);
      this.#done(id, failed);
      return;
    }
    const run: Running = { source, partial: place.partial, dest, linked: false };
    this.#running.set(id, run);
    const flusher = new BackgroundSync(place.partial);
    source
      .backup(place.partial, { progress: () => flusher.step() })
      .then(async () => {
        source.close();
        await flusher.idle();
        await this.#finish(id, run);
      })
      .then(
        () => this.#end(id, undefined),
        (e: unknown) => this.#end(id, errorOf(e)),
      );
  }

  /**
   * The job is being detached: a backup whose copy has its name is reported made; every
   * other one is stopped, its copy removed, and reported failed with `error`.
   */
  endAll(error: ErrorInfo): void {
    for (const [id, run] of this.#running) {
      if (run.linked) {
        this.#done(id, undefined); // made: #finish linked and synced it
        continue;
      }
      run.source.close(); // the copy's next step fails, and is ignored
      removeCopy(run.partial);
      this.#done(id, error);
    }
    this.#running.clear();
  }

  /** Turn the finished copy into the destination: rollback-journal mode, durable, linked. */
  async #finish(id: number, run: Running): Promise<void> {
    toRollbackJournal(run.partial);
    await syncPath(run.partial, 'r+');
    if (!this.#running.has(id)) return; // the job was detached meanwhile: endAll answered
    nameCopy(run.partial, run.dest);
    run.linked = true;
  }

  /** The copy ended by itself (made, or failed with `error`), unless endAll answered first. */
  #end(id: number, error: ErrorInfo | undefined): void {
    const run = this.#running.get(id);
    if (run === undefined) return;
    this.#running.delete(id);
    if (run.source.open) run.source.close();
    if (error !== undefined && !run.linked) removeCopy(run.partial);
    this.#done(id, run.linked ? undefined : error);
  }

  #done(id: number, error: ErrorInfo | undefined): void {
    this.#port.postMessage({ t: 'backupDone', id, error } satisfies FromWorker);
  }
}

function errorOf(e: unknown): ErrorInfo {
  const info = e as Partial<ErrorInfo>;
  return typeof info.kind === 'string' && typeof info.message === 'string'
    ? (info as ErrorInfo)
    : toErrorInfo(e, 'backup');
}

/**
 * Writes the copy's pages back to disk as it grows, from the thread pool: the copy's last
 * step commits it with an fsync, on the job's worker, and every request of the job waits
 * for that fsync, which would otherwise find the whole copy still in the page cache.
 */
class BackgroundSync {
  readonly #file: string;
  #steps = 0;
  #running: Promise<void> | undefined;

  constructor(file: string) {
    this.#file = file;
  }

  /** After each step of the copy; returns the pages of the next step. */
  step(): number {
    this.#steps += 1;
    if (this.#steps % SYNC_EVERY_STEPS === 0 && this.#running === undefined) {
      this.#running = syncPath(this.#file, 'r').then(
        () => {
          this.#running = undefined;
        },
        () => {
          this.#running = undefined; // the final fsync reports a failure that matters
        },
      );
    }
    return STEP_PAGES;
  }

  idle(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }
}

/** Pages copied per step: a request of the job waits for one step at most. */
const STEP_PAGES = 100;
/** About 64 MiB of 4 KiB pages. */
const SYNC_EVERY_STEPS = 160;
