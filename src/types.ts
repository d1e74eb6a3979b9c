/*
 * The public value types of the job API, in one readable place.
 */
import type { PersistencyError } from './errors.js';
import type { Key, KeyRange } from './keys.js';

export type { Key, KeyRange };

/**
 * One row of a scan, in key order. The rows of one scan share one buffer: each `payload`
 * is a view into it (copy one with `slice()` to keep it apart from the rest).
 * @example
 * ```ts
 * for (const { key, payload } of rows) console.log(decodeKey(key, ['string', 'i64']), payload);
 * ```
 */
export interface KvRow {
  readonly key: Key;
  readonly payload: Uint8Array;
}

/**
 * One operation of an atomic batch given to `job.persist(ops)`.
 * @example
 * ```ts
 * job.persist([
 *   { kind: 'put', category: 'log', key: key('c1', 8), payload: payload('hi') },
 *   { kind: 'delete', category: 'log', key: key('c1', 1) },
 *   { kind: 'deletePrefix', category: 'log', prefix: key('c0') },
 * ]);
 * ```
 */
export type TxOp =
  | {
      readonly kind: 'put';
      readonly category: string;
      readonly key: Key;
      readonly payload: Uint8Array;
      /** The row expires this many ms from now (see `PutOptions`). */
      readonly expireInMs?: number;
    }
  | { readonly kind: 'delete'; readonly category: string; readonly key: Key }
  | { readonly kind: 'deletePrefix'; readonly category: string; readonly prefix: Key };

/**
 * Options of a put (`persistPut`, an atomic batch's `put`, a `put` op of `persist`).
 * @example job.persistPut('sessions', key(id), payload(user), { expireInMs: 30 * 60_000 })
 */
export interface PutOptions {
  /**
   * The row expires this many ms after the put is issued (by the instance's `clock`): from
   * then on every read acts as if it were absent, and it is removed in the background. A
   * later put without it keeps the row for good; `add` keeps a row's expiry. A
   * non-negative finite number. (default: never)
   */
  readonly expireInMs?: number;
}

/**
 * What an atomic batch's `commit()` resolves to: `ok: true` once it is applied and durable;
 * `ok: false` when nothing of it was applied, `reason` saying why: a check did not hold
 * (`'check'`), an `add` would leave int64 (`'overflow'`) or met a payload that is not a
 * counter (`'notCounter'`).
 * @example const r = await job.atomic().check('c', k, old).put('c', k, next).commit(); if (r.isOk() && !r.value.ok) retry();
 */
export type AtomicResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'check' | 'overflow' | 'notCounter' };

/**
 * Options of `job.watch`.
 * @example job.watch('counters', prefixRange(key('tenant-1')), { maxQueued: 1000 })
 */
export interface WatchOptions {
  /**
   * The most changes waiting for the watcher to take them; past it the watcher ends: its
   * next `next()` (after the changes already queued) rejects with `Overflow`. A positive
   * integer. (default: 100,000)
   */
  readonly maxQueued?: number;
}

/**
 * Options of `iterate` and `iteratePrefix`: those of a scan, and the rows per page.
 * @example for await (const row of job.iteratePrefix('log', key('c1'), { pageSize: 256 })) use(row);
 */
export interface IterateOptions extends ScanOptions {
  /** Rows read per trip to the worker, 1 to 65,536. (default: 1024) */
  readonly pageSize?: number;
}

/**
 * Options of `scan` and `scanPrefix`.
 * @example job.scanPrefix('log', key('c1'), { reverse: true, limit: 20 })
 */
export interface ScanOptions {
  /** Newest (highest key) first. (default: false) */
  readonly reverse?: boolean;
  /** At most this many rows; a non-negative integer. (default: no limit) */
  readonly limit?: number;
  /**
   * A cursor: start strictly after this key in scan order (strictly below it with
   * `reverse`), so the last key of a page is where the next page starts. A key outside the
   * range is allowed and only narrows it. (default: none)
   */
  readonly after?: Key;
}

/**
 * Options of `Persistency.instance(rootDir, options)`. Every field is optional; numbers are
 * non-negative integers. An unknown name or a value of the wrong type is
 * `Err(InvalidArgument)`. Options of a later `instance` call for the live root are checked,
 * then ignored.
 * @example Persistency.instance('./data', { busyTimeoutMs: 1000, maxJobBytes: 256 * 1024 * 1024 })
 */
export interface PersistencyOptions {
  /** How long a job waits on a lock held by another connection, at open too (then Busy). (default: 5000) */
  readonly busyTimeoutMs?: number;
  /** WAL size SQLite truncates back to after a checkpoint, in bytes. (default: 64 MiB) */
  readonly journalSizeLimitBytes?: number;
  /** How long `openJob` waits for the worker to be ready before `Err(Timeout)`. (default: 30000) */
  readonly openTimeoutMs?: number;
  /** Largest payload accepted by writes, in bytes; at most SQLite's limit as better-sqlite3 sets it, the longest string Node can make. (default: that limit - 1024) */
  readonly maxPayloadBytes?: number;
  /**
   * Upper bound on each job file's size, in bytes (rounded down to whole pages; 0 means no
   * bound). A write that would grow the file past it fails with `SQLITE_FULL`, as on a full
   * disk: a per-tenant quota. (default: 0)
   */
  readonly maxJobBytes?: number;
  /**
   * Run `PRAGMA quick_check` when a job opens and refuse a damaged file with
   * `Err(Backend, code SQLITE_CORRUPT)`. Costs a read of the whole file per open; without
   * it, damage shows up as `SQLITE_CORRUPT` errors from the reads that touch it. (default: false)
   */
  readonly verifyOnOpen?: boolean;
  /**
   * Under `'per-job'`, keep one worker thread started ahead of the next `openJob`, so that opening a job does
   * not wait for a thread to boot (most of an open's cost). Costs one idle thread; it never keeps
   * the process alive. (default: true)
   */
  readonly prestartWorker?: boolean;
  /**
   * After a job's worker answers a request its caller awaits (a read, a flush or
   * `deleteAcked`), it keeps polling for the next request for this many microseconds before
   * its thread sleeps, so that a caller awaiting one answer at a time is not slowed by a
   * thread wake-up per request. A poll ends as soon as a request
   * arrives; one that finds none makes the worker skip its next 1, 2, 4 … 64 polls; at most
   * (cores - 1) workers poll at once, none on one core (counted per copy of the library: a
   * process that loads it in several threads has a cap per thread). 0 turns polling off,
   * trading latency for CPU time; at most 1,000,000. (default: 100)
   */
  readonly pollMicros?: number;
  /**
   * Which threads serve the jobs. `'per-job'`: each job its own worker thread (the lowest
   * latency; a few hundred jobs per process). A positive integer N (at most 256): N worker
   * threads serve every job of this instance, each job pinned to one of them while it is
   * open, so a process holds thousands of jobs; jobs that share a thread take turns (see
   * `sliceMs`). Polling (`pollMicros`) applies to `'per-job'` only. (default: 'per-job')
   */
  readonly workerThreads?: number | 'per-job';
  /**
   * A job with no call and no pending work for this many ms releases its SQLite connection
   * and file descriptors (under `'per-job'` also its thread) and stays open: its handle stays
   * valid, it keeps its ownership, and its next call takes it up again, in order. 0 = never.
   * (default: 60000)
   */
  readonly idleCloseMs?: number;
  /**
   * The most jobs holding a connection (3 file descriptors each: the file, its WAL and the
   * shared-memory index) at once; 0 = no cap. When a job is taken up (opened or reopened)
   * beyond it, the jobs used least recently that have no work in flight are released as if
   * idle, so a busy job is never released and the count can exceed the cap by busy jobs
   * until the next take-up. For services with many active jobs and a descriptor budget.
   * (default: 0)
   */
  readonly maxResidentJobs?: number;
  /**
   * Under `workerThreads: N`, the longest stretch of work one job does before the other jobs
   * of its thread get their turn, in ms: a long scan, a huge batch or a wait for a lock held
   * elsewhere pauses at the next record, page of 256 rows or slice of 1,024 ops. (default: 2)
   */
  readonly sliceMs?: number;
  /**
   * An iterator (`job.iterate`) whose `next()` has not been called for this many ms ends:
   * its snapshot is let go of (while one is held the job's WAL cannot be checkpointed past
   * it, and the job is not released when idle), and its next `next()` rejects with
   * `Timeout` (code `SNAPSHOT_EXPIRED`). 0 = never. (default: 60000)
   */
  readonly iteratorIdleMs?: number;
  /**
   * The clock expiry is measured by, in ms since the epoch: read on the main thread when a
   * put with `expireInMs` is issued and, with a job's open and each turn's requests, taken to
   * the worker, whose reads and background removal go by it. For tests (a clock they move) and
   * simulations. (default: `Date.now`)
   */
  readonly clock?: () => number;
}

/**
 * What `p.stats()` counts, now.
 * @example const { openJobs, residentJobs, workerThreads } = p.stats();
 */
export interface PersistencyStats {
  /** Jobs open (released or not), opening included. */
  readonly openJobs: number;
  /** Open jobs holding a SQLite connection now. */
  readonly residentJobs: number;
  /** Open jobs that released their connection (idle, or beyond `maxResidentJobs`). */
  readonly releasedJobs: number;
  /** Times a released job was taken up again by a call (since the instance was made). */
  readonly reopened: number;
  /** Worker threads running now (a prestarted spare included). */
  readonly workerThreads: number;
  /** The `workerThreads` option in force. */
  readonly mode: number | 'per-job';
}

/**
 * Why a write did not reach the database: the `reason` of a `writeFailed` event.
 * @example
 * ```ts
 * p.events.on('writeFailed', (e) => {
 *   if (e.reason === 'backend') retryLater(e.jobId, e.ops); // SQLite refused it
 *   else log.warn(e.reason, e.error.message);               // a caller's mistake
 * });
 * ```
 */
export type WriteFailureReason =
  /** The write's arguments were refused before it was queued. */
  | 'invalid'
  /**
   * The job was closed (or its worker had died) when the write was issued, or its worker
   * died before confirming the write committed (then one event for all such writes, with
   * their ops' count and no ops listed).
   */
  | 'closed'
  /** A string-id write named a job that is not open. */
  | 'notFound'
  /** SQLite refused the batch, or the commit holding it failed. */
  | 'backend';

/**
 * The events of `p.events` (a `mitt` emitter). Every payload carries `jobId`.
 * @example
 * ```ts
 * p.events.on('writeFailed', (e) => log.error(e.jobId, e.count, e.error.message));
 * p.events.on('*', (type, e) => metrics.count(type));
 * ```
 */
export type PersistencyEvents = {
  /** A job's worker is ready. */
  jobOpened: { readonly jobId: string; readonly file: string | undefined };
  /** A job was closed (every earlier write committed) or dropped. */
  jobClosed: { readonly jobId: string; readonly dropped: boolean };
  /** A job's worker died; its pending reads resolved `Err` and it is no longer open. */
  jobFailed: { readonly jobId: string; readonly error: PersistencyError };
  /** A write batch failed or was dropped; nothing of it was applied. */
  writeFailed: {
    readonly jobId: string;
    readonly reason: WriteFailureReason;
    /**
     * The ops of the batch (as given, or as decoded from the database's view of them);
     * empty when they cannot be listed (a value `persistEncoded` could not encode, a
     * batch over the op limit, something that is not an array).
     */
    readonly ops: readonly TxOp[];
    /** How many ops were dropped: `ops.length` when they are listed, else as far as known. */
    readonly count: number;
    readonly error: PersistencyError;
  };
};
