/*
 * Every failed write is told twice: at once by a `writeFailed` event, and by the job's next
 * flush, which is `Err(WriteFailed)` (CONTRACT.md section 7). The worker counts what fails
 * in it; the ledger here counts the rest (writes refused before they were queued, sent
 * through a closed handle or by a string id of a job not open, that never reached a thread,
 * or that a thread died before confirming), per job id, so that a job closed and opened
 * again still reports them.
 */
import { err, type Result } from 'neverthrow';
import type { ClientHost } from './client-host.js';
import type { WriteCount } from './client-port.js';
import { type PersistencyError, writesFailed } from './errors.js';
import { MAX_BATCH_OPS } from './limits.js';
import type { ToWorker } from './protocol/messages.js';
import { recordsOf } from './protocol/request-reader.js';
import { Tag } from './protocol/requests.js';
import type { ReplyQueue } from './reply-queue.js';
import type { TxOp } from './types.js';

/** Failed writes (batches) not yet reported by a flush: how many, the first one's error. */
export interface Failures {
  count: number;
  readonly first: PersistencyError;
}

/** Job ids the ledger holds at most (hostile ids must not grow it without bound). */
export const LEDGER_JOBS = 100_000;
const FLUSH_TAG: number = Tag.Flush;

export class FailureLedger {
  readonly #byJob = new Map<string, Failures>();

  record(jobId: string, count: number, error: PersistencyError): void {
    const entry = this.#byJob.get(jobId);
    if (entry !== undefined) entry.count += count;
    else if (this.#byJob.size < LEDGER_JOBS) this.#byJob.set(jobId, { count, first: error });
  }

  /** The failures of `jobId` since its previous flush; a flush issued now reports them. */
  take(jobId: string): Failures | undefined {
    const entry = this.#byJob.get(jobId);
    if (entry !== undefined) this.#byJob.delete(jobId);
    return entry;
  }
}

/** A flush's result, given what failed before it outside the worker (`earlier`). */
export function flushOutcome<T>(
  earlier: Failures | undefined,
  r: Result<T, PersistencyError>,
): Result<T, PersistencyError> {
  if (earlier === undefined) return r;
  if (r.isOk()) return err(writesFailed(earlier.count, earlier.first));
  const e = r.error;
  if (e.kind !== 'WriteFailed') return r; // the flush itself failed (a closed or dead job)
  return err(writesFailed(earlier.count + (e.count ?? 0), earlier.first));
}

/**
 * Fail messages that never reached a thread, in issue order: each batch reported, each
 * read answered with `error`, each flush with `WriteFailed` for the batches before it, or
 * with `error` itself when it says the job's file is gone from its path (as an open job's
 * flush does: CONTRACT.md section 7). Requests sent earlier (to a thread that died) fail
 * first. `report(batch, error, counted)`: `counted` when a flush in `unsent` reports the
 * batch; otherwise the next flush must.
 */
export function failUnsent(
  unsent: readonly ToWorker[],
  replies: ReplyQueue,
  error: PersistencyError,
  report: (batch: Uint8Array, error: PersistencyError, counted: boolean) => void,
): void {
  const records = unsent.flatMap((m) => (m instanceof Uint8Array ? recordsOf(m) : []));
  const awaiting = records.filter((r) => typeof r === 'number').length;
  for (let sent = replies.pending - awaiting; sent > 0; sent--) replies.failNext(error);
  const fileGone = error.kind === 'Backend' && (error.code === 'ENOENT' || error.code === 'ESTALE');
  const lastFlush = records.lastIndexOf(FLUSH_TAG);
  let sinceFlush = 0;
  records.forEach((record, i) => {
    if (typeof record !== 'number') {
      sinceFlush++;
      report(record, error, i < lastFlush);
      return;
    }
    replies.failNext(
      record === FLUSH_TAG && sinceFlush > 0 && !fileGone ? writesFailed(sinceFlush, error) : error,
    );
    if (record === FLUSH_TAG) sinceFlush = 0;
  });
}

/**
 * The worker's count of failed writes no flush reported, handed over as it let go of the
 * job: the first flush issued meanwhile reports them, else the next one (`record`: the ledger).
 */
export function handOverUnflushed(
  failed: PersistencyError,
  replies: ReplyQueue,
  record: (count: number, first: PersistencyError) => void,
): void {
  const [count, first] = [failed.count ?? 1, failed.cause as PersistencyError];
  if (!replies.lateFailures(count, first)) record(count, first);
}

/**
 * Report the writes a thread that died never confirmed committed (a group's reply confirms
 * its frames, and a reply to a request every write issued before it): one `writeFailed`
 * event with their ops' count (the ops went with the frames); the next flush counts each.
 */
export function reportUnconfirmed(
  host: ClientHost,
  jobId: string,
  lost: WriteCount,
  error: PersistencyError,
): void {
  if (lost.writes > 0) host.writeFailed(jobId, 'closed', [], error, lost.ops, false, lost.writes);
}

/**
 * What a `writeFailed` event lists of a batch's `ops`, which may be whatever a caller passed
 * (a proxy can make even `isArray` throw): a plain copy and its length, or no ops at all.
 * Copied element by element, and only up to a batch's limit: `slice` on a sparse array of
 * length 2^32-1 would stall the event loop for a minute.
 */
export function listedOps(ops: unknown): { ops: readonly TxOp[]; count: number } {
  let count = 0;
  try {
    const length: unknown = Array.isArray(ops) ? ops.length : undefined;
    if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0) {
      return { ops: [], count };
    }
    count = length;
    if (length > MAX_BATCH_OPS) return { ops: [], count };
    const copy: TxOp[] = new Array(length);
    for (let i = 0; i < length; i++) copy[i] = (ops as readonly TxOp[])[i] as TxOp;
    return { ops: copy, count };
  } catch {
    return { ops: [], count };
  }
}
