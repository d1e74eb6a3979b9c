/*
 * What a job's worker holds for it besides its connection: iterator snapshots, watches
 * (src/watch-registry.ts) and backups (src/job-backups.ts). While any is held the job is
 * not released when idle, and a backup under way keeps the process alive. The job's
 * client hands them what the worker sends and tells them when the job ends.
 */
import type { PersistencyError } from './errors.js';
import type { ErrorInfo, ToWorker } from './protocol/messages.js';
import { watchesOpenedIn } from './protocol/request-reader.js';

export interface WatchHolds {
  /** A commit's change records (src/protocol/changes.ts) and the shared frames they point into. */
  changes(chunks: Uint8Array[], frames: readonly Uint8Array[]): void;
  ended(error: PersistencyError): void;
  /** Watch `id`'s open never reached a thread: it ends with `error`. */
  unsent(id: number, error: PersistencyError): void;
  /** Whether a watch is open. */
  watching(): boolean;
}

export interface BackupHolds {
  running(): number;
  done(id: number, error: ErrorInfo | undefined): void;
  /** Its request never reached a thread. */
  failed(id: number, error: PersistencyError): void;
  ended(error: PersistencyError): void;
}

export class WorkerHolds {
  /** Snapshots, watches and backups open in the worker. */
  count = 0;
  watches: WatchHolds | undefined;
  backups: BackupHolds | undefined;

  /** Whether the process must wait for the worker (a backup is under way). */
  get keepProcess(): boolean {
    return (this.backups?.running() ?? 0) > 0;
  }

  /** A reply message's committed changes, for the watches. */
  changes(chunks: Uint8Array[], frames: readonly Uint8Array[]): void {
    this.watches?.changes(chunks, frames);
  }

  backupDone(id: number, error: ErrorInfo | undefined): void {
    this.backups?.done(id, error);
  }

  /**
   * Messages that never reached a thread: the backups among them fail with `error`, and the
   * watches they open end with it (a watch never opened would wait for changes forever).
   */
  unsent(messages: readonly ToWorker[], error: PersistencyError): void {
    for (const m of messages) {
      if (m instanceof Uint8Array)
        for (const id of watchesOpenedIn(m)) this.watches?.unsent(id, error);
      else if (m.t === 'backup') this.backups?.failed(m.id, error);
    }
  }

  /** The job closed or its worker died: everything held ends with `error`. */
  ended(error: PersistencyError): void {
    this.watches?.ended(error);
    this.backups?.ended(error);
  }
}
