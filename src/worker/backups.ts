/*
 * A job's backups inside its worker (`job.backup`): SQLite's online backup from a snapshot
 * of the job (src/worker/snapshots.ts) into a new file beside the destination, a hundred
 * pages per step with the worker's other work between steps, so the job's reads and
 * writes wait for one step at most, never for the whole copy. The finished copy is put in
 * rollback-journal mode (reading it leaves no -wal or -shm beside it), made durable, and
 * given the destination's name only then, without ever replacing a file there.
 */
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync } from 'node:fs';
import { link, open, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { MessagePort } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { SIDECAR_SUFFIXES } from '../paths.js';
import { type ErrorInfo, type FromWorker, toErrorInfo } from '../protocol/messages.js';
import type { KvBackend } from './backend.js';
import { openSnapshot } from './snapshots.js';

interface Running {
  readonly source: Database.Database;
  /** The copy being written, renamed to the destination when done. */
  readonly partial: string;
  /** Set when the job is detached first: the copy's own ending is then ignored. */
  ended: boolean;
}

export class Backups {
  readonly #running = new Map<number, Running>();
  readonly #port: MessagePort;
  readonly #backend: KvBackend;
  readonly #path: string;
  readonly #busyMs: number;

  constructor(port: MessagePort, backend: KvBackend, path: string, busyMs: number) {
    this.#port = port;
    this.#backend = backend;
    this.#path = path;
    this.#busyMs = busyMs;
  }

  /**
   * Copy the job's committed data (the caller commits the group's writes first) into
   * `dest`, which must not exist; `backupDone` answers when it is there or has failed.
   */
  start(id: number, dest: string): void {
    const refused = destinationRefused(dest);
    if (refused !== undefined) {
      this.#done(id, refused);
      return;
    }
    const partial = `${dest}.partial-${randomBytes(6).toString('hex')}`;
    let source: Database.Database;
    try {
      source = openSnapshot(this.#path, this.#backend, this.#busyMs);
      source.prepare('SELECT 1 FROM sqlite_schema LIMIT 1').get(); // the snapshot begins
    } catch (e) {
      this.#done(id, toErrorInfo(e, 'backup'));
      return;
    }
    const run: Running = { source, partial, ended: false };
    this.#running.set(id, run);
    const flusher = new BackgroundSync(partial);
    source
      .backup(partial, { progress: () => flusher.step() })
      .then(async () => {
        source.close();
        await flusher.idle();
        return finish(partial, dest);
      })
      .then(
        () => this.#end(id, run, undefined),
        (e: unknown) => this.#end(id, run, toErrorInfo(e, 'backup')),
      );
  }

  /** The job is being detached: every backup under way fails with `error`. */
  endAll(error: ErrorInfo): void {
    for (const [id, run] of this.#running) {
      run.ended = true;
      run.source.close(); // the copy's next step fails, and is ignored
      void removeCopy(run.partial);
      this.#done(id, error);
    }
    this.#running.clear();
  }

  #end(id: number, run: Running, error: ErrorInfo | undefined): void {
    if (run.ended) return;
    this.#running.delete(id);
    if (run.source.open) run.source.close();
    if (error === undefined) this.#done(id, undefined);
    else void removeCopy(run.partial).then(() => this.#done(id, error));
  }

  #done(id: number, error: ErrorInfo | undefined): void {
    this.#port.postMessage({ t: 'backupDone', id, error } satisfies FromWorker);
  }
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

/** Why `dest` cannot be a backup's (undefined: its folder is made and it is free). */
function destinationRefused(dest: string): ErrorInfo | undefined {
  for (const file of [dest, ...SIDECAR_SUFFIXES.map((s) => dest + s)]) {
    // A stale -wal or -journal beside a new copy would be read as part of it.
    if (present(file))
      return {
        kind: 'InvalidArgument',
        message: `backup: ${file} already exists; a backup never replaces a file`,
        code: 'EEXIST',
      };
  }
  try {
    mkdirSync(dirname(dest), { recursive: true });
  } catch (e) {
    return toErrorInfo(e, `backup: cannot make the folder of ${dest}`);
  }
  return undefined;
}

/** Turn the finished copy into the destination: rollback-journal mode, durable, renamed. */
async function finish(partial: string, dest: string): Promise<void> {
  const copy = new Database(partial, { fileMustExist: true });
  try {
    copy.pragma('journal_mode = DELETE');
  } finally {
    copy.close();
  }
  await syncPath(partial, 'r+');
  try {
    await link(partial, dest); // fails if dest appeared meanwhile: never replaced
  } catch (e) {
    if ((e as { code?: unknown }).code === 'EEXIST')
      throw Object.assign(new Error(`${dest} already exists; a backup never replaces a file`), {
        code: 'EEXIST',
      });
    throw e;
  }
  await rm(partial, { force: true });
  await syncPath(dirname(dest), 'r');
}

/** Whether anything is at `file`; a dangling symlink counts (writing through it would create its target). */
function present(file: string): boolean {
  try {
    lstatSync(file);
    return true;
  } catch {
    return false;
  }
}

async function syncPath(path: string, flags: string): Promise<void> {
  const handle = await open(path, flags);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function removeCopy(partial: string): Promise<void> {
  await Promise.all(
    [partial, ...SIDECAR_SUFFIXES.map((s) => partial + s)].map((f) => rm(f, { force: true })),
  );
}
