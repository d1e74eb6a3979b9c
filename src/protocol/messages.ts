/*
 * The messages between the main thread and a worker thread: what a thread is told on its
 * own port (attach a job, quit), what a job's port carries each way (frames and control
 * messages; replies, open and close outcomes), and the errors that cross with them. The
 * bytes inside frames and replies are requests.ts and replies.ts.
 */
import type { MessagePort } from 'node:worker_threads';
import { COUNTER_OVERFLOW, NOT_A_COUNTER } from '../counter.js';
import {
  codeOf,
  PersistencyError,
  type PersistencyErrorKind,
  writesFailed,
  writesFailedMessage,
} from '../errors.js';

/** A serialisable error crossing the thread boundary. */
export interface ErrorInfo {
  readonly kind: PersistencyErrorKind;
  readonly message: string;
  readonly code?: string | undefined;
  /** A `WriteFailed` flush: how many writes, and the first one's error. */
  readonly count?: number | undefined;
  readonly cause?: ErrorInfo | undefined;
}

/** A flush's error after `count` failed writes, `first` the first one's. */
export function writesFailedInfo(count: number, first: ErrorInfo): ErrorInfo {
  return {
    kind: 'WriteFailed',
    message: writesFailedMessage(count, first.message),
    code: first.code,
    count,
    cause: first,
  };
}

/** Map a thrown value to the error shape that crosses the thread boundary. */
export function toErrorInfo(e: unknown, context?: string): ErrorInfo {
  // Every Backend error has a code: better-sqlite3's binding errors carry none. A damaged
  // header is SQLite's NOTADB: damage all the same (CONTRACT.md section 7).
  const raw =
    codeOf(e) ??
    (e instanceof RangeError && /too big/.test(e.message) ? 'SQLITE_TOOBIG' : 'SQLITE_ERROR');
  const code = raw === 'SQLITE_NOTADB' ? 'SQLITE_CORRUPT' : raw;
  const message = e instanceof Error ? e.message : String(e);
  const kind: PersistencyErrorKind =
    code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED'
      ? 'Busy'
      : code === COUNTER_OVERFLOW
        ? 'Overflow'
        : code === NOT_A_COUNTER
          ? 'InvalidArgument'
          : 'Backend';
  return { kind, message: context === undefined ? message : `${context}: ${message}`, code };
}

export function fromErrorInfo(info: ErrorInfo): PersistencyError {
  if (info.cause !== undefined && info.count !== undefined)
    return writesFailed(info.count, fromErrorInfo(info.cause));
  return new PersistencyError(
    info.kind,
    info.message,
    info.code === undefined ? {} : { code: info.code },
  );
}

/** A batch the worker could not apply, sent back so the job can report its ops. */
export interface BatchFailure {
  /** The batch's ops, copied out of its frame (starts at the op count). */
  readonly record: Uint8Array;
  readonly error: ErrorInfo;
}

export interface OpenRequest {
  readonly dbPath: string;
  /**
   * The file a released job had (see `ready`): its reattach opens only that file, never a
   * new one in place of a file that was removed or replaced meanwhile.
   */
  readonly fileId?: string | undefined;
  /** A database image to start from (a `:memory:` job being reopened). */
  readonly image?: Uint8Array | undefined;
  readonly busyTimeoutMs: number;
  /** See BackendOptions.statementBusyMs. */
  readonly statementBusyMs?: number | undefined;
  readonly journalSizeLimitBytes: number;
  /** 0 = no bound. */
  readonly maxJobBytes: number;
  readonly verifyOnOpen: boolean;
  /**
   * The injected clock's time (absent: the system's is the job's): a job's time until its
   * first frame brings a NOW record, for the open and any message that comes first.
   */
  readonly now?: number | undefined;
  /** How the worker polls for the next request after answering one (absent: never). */
  readonly poll?: PollSettings | undefined;
  /**
   * Jobs that share a thread take turns: after this many ms of work on one job the worker
   * lets the thread's other jobs run (absent: the job has its thread to itself).
   */
  readonly sliceMs?: number | undefined;
}

/**
 * After a group that answered a read, flush or deleteAcked, the worker keeps asking its port
 * for the next message for up to `micros` before its thread goes to sleep: a caller that
 * awaits one answer and then asks again is served without waking a sleeping thread (a
 * wake-up costs more than the rest of a get). At most `max` workers poll at once (counted
 * in `slots`, an Int32 shared by every worker this copy of the library starts), and a
 * worker whose poll found nothing skips its next 1, 2, 4, ... up to 64 polls until one
 * finds a message again. Absent (undefined) when polling is off.
 */
export interface PollSettings {
  readonly micros: number;
  /** One Int32: how many workers are polling now. */
  readonly slots: SharedArrayBuffer;
  readonly max: number;
}

/** What a worker's polling did, reported when it closes (tests and diagnostics). */
export interface PollStats {
  /** Polls started. */
  readonly tried: number;
  /** Polls that found a message. */
  readonly caught: number;
  /** Polls not started because `max` workers were polling already. */
  readonly busy: number;
}

/** How the worker answered requests, reported when it closes (tests and diagnostics). */
export interface ReadStats {
  /** Gets answered by a statement that read several keys (`KvBackend.getMany`). */
  readonly batched: number;
  /** Parts of long scans and getManys sent before the read finished. */
  readonly parts: number;
  /** Scans answered from a page read ahead for a pager (src/worker/page-ahead.ts). */
  readonly readAhead: number;
  /** Times the job gave its thread to the other jobs on it before finishing its work. */
  readonly slices: number;
  /** Requests of the job taken up while another job's work on the thread was paused. */
  readonly besidePaused: number;
}

/** What a thread is told on its own port (`parentPort`). */
export type ToThread =
  /** Serve one more job: open its file and answer on `port` (`ready` or `openFailed`). */
  | {
      readonly t: 'attach';
      readonly req: OpenRequest;
      readonly port: MessagePort;
      /** The thread serves this job alone and exits once the job is detached. */
      readonly dedicated: boolean;
    }
  /** Exit once the thread serves no job (a spare, or a pool thread at shutdown). */
  | { readonly t: 'quit' };

/** A thread's one message to the main thread: its modules are loaded (see WorkerThreads.booted). */
export type FromThread = 'booted';

/**
 * A frame travels as a bare Uint8Array; control messages are objects. Small byte messages
 * are copied (cheaper than a transfer), large ones transferred. Everything goes over the
 * job's own port.
 */
export type ToWorker =
  | Uint8Array
  /** Commit, checkpoint, close the connection and the port: the job is closed. */
  | { readonly t: 'close' }
  /** As close, but the job stays open in the main thread and is attached again on use. */
  | { readonly t: 'release' }
  /**
   * Copy the job's committed data, with every write sent before this, into the new file
   * `dest` (src/worker/backups.ts); `backupDone` with this `id` answers.
   */
  | { readonly t: 'backup'; readonly id: number; readonly dest: string }
  /** Test hook: make the worker die as if it crashed. */
  | { readonly t: 'crash'; readonly how: 'throw' | 'exit' }
  /** Test hook: make SQLite fail once, the way a full or failing disk does. */
  | { readonly t: 'inject'; readonly fault: InjectedFault; readonly skipWrites: number };

/**
 * Faults a test can inject (LevelDB-style fault injection); a write fault passes over the
 * first `skipWrites` write records (batches or deleteAcked) that come after it:
 * - `commit`: the next COMMIT fails (SQLITE_IOERR) and the transaction is rolled back;
 * - `rollback`: the next write fails and SQLite drops the whole open transaction
 *   (SQLITE_FULL), as it may on I/O errors; the group's earlier writes must be redone;
 * - `rollback-twice`: as `rollback`, and the redo fails too, so the group is lost;
 * - `getMany`: the next statement reading several keys fails, after `skipWrites` of them;
 * - `serialize`: the next image of a `:memory:` job (taken to release it) fails;
 * - `kill-in-migration`: the process is killed (SIGKILL) inside the next expiry migration,
 *   after its schema change and before its commit (crash tests, in a child process).
 */
export type InjectedFault =
  | 'commit'
  | 'rollback'
  | 'rollback-twice'
  | 'getMany'
  | 'serialize'
  | 'kill-in-migration';

/**
 * The worker's answers on a job's port. A group's replies travel as a bare Uint8Array
 * (u32 frames done, then the reply records) when nothing failed and nothing is attached;
 * otherwise as a `replies` object.
 */
export type FromWorker =
  | Uint8Array
  /** `fileId`: the file's device and inode, which a reattach checks (see OpenRequest). */
  | { readonly t: 'ready'; readonly file: string | undefined; readonly fileId?: string | undefined }
  /** A release could not keep what the job holds (a `:memory:` image): it stays attached. */
  | { readonly t: 'releaseDeclined'; readonly error: ErrorInfo }
  | { readonly t: 'openFailed'; readonly error: ErrorInfo }
  /** The backup `id` is in its file (no error) or failed; it may come before older replies. */
  | { readonly t: 'backupDone'; readonly id: number; readonly error: ErrorInfo | undefined }
  | {
      readonly t: 'replies';
      /** u32 frames done, then the reply records, as in the bare form. */
      readonly bytes: Uint8Array;
      readonly errors: readonly ErrorInfo[];
      readonly failures: readonly BatchFailure[];
      /** Bytes handed over whole that ATTACHED_ROWS records point to. */
      readonly attached: readonly Uint8Array[];
      /** Committed changes for the job's watchers, in chunks (src/protocol/changes.ts). */
      readonly changes?: Uint8Array[] | undefined;
      /** The shared frames that PUT_REF and PUT_RUN change records point into (posted, not copied). */
      readonly changeFrames?: readonly Uint8Array[] | undefined;
    }
  | {
      /** The answer to `close` (`released`: to `release`); the port closes after it. */
      readonly t: 'closed' | 'released';
      readonly image: Uint8Array | undefined;
      readonly error: ErrorInfo | undefined;
      /** Writes that failed since the last flush, which the next flush must still report. */
      readonly unflushed: ErrorInfo | undefined;
      readonly polls: PollStats;
      readonly reads: ReadStats;
    };
