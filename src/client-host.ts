/*
 * What a job (its handle, src/job.ts, and its client, src/job-client.ts) and the Persistency
 * that owns it (its registry) promise each other.
 */
import type { Result } from 'neverthrow';
import type { PersistencyError } from './errors.js';
import type { JobClient } from './job-client.js';
import type { PollStats, ReadStats } from './protocol/messages.js';
import type { Attachment, OnThreadDeath } from './threads.js';
import type { TxOp, WriteFailureReason } from './types.js';
import type { Failures } from './write-failures.js';

/**
 * Report a write that did not reach the database (a `writeFailed` event); `count`
 * defaults to the number of `ops` (pass it when the ops cannot be listed). The job's next
 * flush reports it too, unless `counted` (the worker's flush counts it). `writes`: how many
 * writes (batches) the event stands for (1 unless its ops are not listed).
 */
export type ReportWriteFailure = (
  jobId: string,
  reason: WriteFailureReason,
  ops: readonly TxOp[],
  error: PersistencyError,
  count?: number,
  counted?: boolean,
  writes?: number,
) => void;

/** What a Job needs from the Persistency that owns it. */
export interface JobHost {
  readonly maxPayloadBytes: number;
  readonly iteratorIdleMs: number;
  /** The clock expiry is measured by (the `clock` option). */
  readonly now: () => number;
  readonly writeFailed: ReportWriteFailure;
}

/** The result of a job's close, for its owner. */
export interface CloseOutcome {
  readonly image: Uint8Array | undefined;
  readonly error: PersistencyError | undefined;
  /** What the worker's polling did (absent when the worker did not close normally). */
  readonly polls?: PollStats | undefined;
  /** How its requests were answered (absent when the worker did not close normally). */
  readonly reads?: ReadStats | undefined;
}

/** What a job's client needs from the Persistency that owns it. */
export interface ClientHost {
  /** Attach the job to a thread (`image`: a `:memory:` job's data to start from). */
  attach(
    jobId: string,
    pin: number | undefined,
    image: Uint8Array | undefined,
    fileId: string | undefined,
    died: OnThreadDeath,
  ): Promise<Result<Attachment, PersistencyError>>;
  /** The job now holds (or no longer holds) a connection. */
  resident(client: JobClient, resident: boolean): void;
  /** A released job is being taken up again. */
  reopened(): void;
  /** An injected clock, whose time each frame takes to the worker (undefined: the system's). */
  readonly clock: (() => number) | undefined;
  readonly writeFailed: ReportWriteFailure;
  /** Failed writes of the job no flush has reported yet (see src/write-failures.ts). */
  takeFailures(jobId: string): Failures | undefined;
  /** `count` more of them (a worker hands its count over when it lets go of the job). */
  recordFailures(jobId: string, count: number, first: PersistencyError): void;
  /** The job's thread died while it was open. */
  died(client: JobClient, error: PersistencyError): void;
}
