/*
 * What a job's client (src/job-client.ts) and the Persistency that owns the job (its
 * registry) promise each other.
 */
import type { Result } from 'neverthrow';
import type { PersistencyError } from './errors.js';
import type { ReportWriteFailure } from './job.js';
import type { JobClient } from './job-client.js';
import type { PollStats, ReadStats } from './protocol/messages.js';
import type { Attachment, OnThreadDeath } from './threads.js';
import type { Failures } from './write-failures.js';

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
  readonly writeFailed: ReportWriteFailure;
  /** Failed writes of the job no flush has reported yet (see src/write-failures.ts). */
  takeFailures(jobId: string): Failures | undefined;
  /** `count` more of them (a worker hands its count over when it lets go of the job). */
  recordFailures(jobId: string, count: number, first: PersistencyError): void;
  /** The job's thread died while it was open. */
  died(client: JobClient, error: PersistencyError): void;
}
