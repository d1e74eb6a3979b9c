/**
 * Every failure the library reports is a {@link PersistencyError}. Its `kind` is API and
 * stable across versions; its `message` is for people and may change.
 *
 * | kind | when |
 * |---|---|
 * | `InvalidArgument` | an argument cannot be encoded or stored (bad key part, empty category, bad job id, bad limit) |
 * | `Backend` | SQLite reported an error (see `code`, e.g. `SQLITE_FULL`, `SQLITE_CORRUPT`), or a worker died |
 * | `Closed` | the job or the `Persistency` was closed before or while the call ran |
 * | `Timeout` | an operation did not finish within its time limit |
 * | `JobNotFound` | a string-id call named a job that is not open |
 * | `Busy` | the job's file is owned by another process or another `Persistency` in this process |
 *
 * @example
 * ```ts
 * const r = await job.get('users', key('ada'));
 * if (r.isErr() && r.error.kind === 'Closed') reopen();
 * ```
 */
export type PersistencyErrorKind =
  | 'Backend'
  | 'Closed'
  | 'InvalidArgument'
  | 'Timeout'
  | 'JobNotFound'
  | 'Busy';

/** Extra detail attached to a {@link PersistencyError}. */
export interface PersistencyErrorOptions {
  /** SQLite's error code where there is one, e.g. `SQLITE_BUSY`. */
  readonly code?: string;
  /** The underlying error, if any. */
  readonly cause?: unknown;
}

/**
 * The single error class of the library.
 *
 * @example
 * ```ts
 * try {
 *   key(1.5);
 * } catch (e) {
 *   if (e instanceof PersistencyError && e.kind === 'InvalidArgument') console.log(e.message);
 * }
 * ```
 */
export class PersistencyError extends Error {
  /** What went wrong, as a stable machine-readable kind. */
  readonly kind: PersistencyErrorKind;
  /** SQLite's error code (`SQLITE_FULL`, `SQLITE_CORRUPT`, …) where there is one. */
  readonly code: string | undefined;

  constructor(kind: PersistencyErrorKind, message: string, options: PersistencyErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PersistencyError';
    this.kind = kind;
    this.code = options.code;
  }
}

/** Shorthand for the most common kind. */
export function invalidArgument(message: string, cause?: unknown): PersistencyError {
  return new PersistencyError('InvalidArgument', message, cause === undefined ? {} : { cause });
}
