/**
 * Every failure the library reports is a {@link PersistencyError}. Its `kind` is API and
 * stable across versions (kinds may be added, never removed or renamed: keep a default
 * branch); its `message` is for people and may change.
 *
 * | kind | when |
 * |---|---|
 * | `InvalidArgument` | an argument cannot be encoded or stored (bad key part, empty category, bad job id, bad limit, bad root or option), or a second root while one is live |
 * | `Backend` | SQLite reported an error (see `code`, e.g. `SQLITE_FULL`, `SQLITE_CORRUPT`), a commit failed, or a worker died |
 * | `Closed` | the job or the `Persistency` was closed before or while the call ran, or the job's worker had died |
 * | `Timeout` | a job's worker was not ready within `openTimeoutMs` |
 * | `JobNotFound` | a string-id call (or `p.job(id)`) named a job that is not open |
 * | `Busy` | the job's root is owned by another process or thread, or the job by another `Persistency` of this thread, or another connection holds the job's file (`SQLITE_BUSY`, `SQLITE_LOCKED`) |
 * | `WriteFailed` | a `flush()` after writes that were refused or failed since the previous flush (`count` says how many, `cause` is the first one's error) |
 * | `Overflow` | a watcher fell too far behind (`job.watch`'s `maxQueued`), or an `add` would take a counter out of int64 (code `COUNTER_OVERFLOW`) |
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
  | 'Busy'
  | 'WriteFailed'
  | 'Overflow';

/**
 * Extra detail attached to a {@link PersistencyError}: the third argument of its
 * constructor.
 *
 * @example
 * ```ts
 * new PersistencyError('Backend', 'disk full', { code: 'SQLITE_FULL', cause: sqliteError });
 * ```
 */
export interface PersistencyErrorOptions {
  /** SQLite's error code where there is one, e.g. `SQLITE_BUSY`. */
  readonly code?: string;
  /** The underlying error, if any. */
  readonly cause?: unknown;
  /** How many writes failed (a `WriteFailed` error). */
  readonly count?: number;
}

/**
 * The single error class of the library: every `Err` a read returns, every `error` of an
 * event, and every exception the codec throws is one.
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
  /**
   * What went wrong, as a stable machine-readable kind: branch on this, not on `message`.
   * @example if (r.isErr() && r.error.kind === 'JobNotFound') await p.openJob(id);
   */
  readonly kind: PersistencyErrorKind;
  /**
   * Set on every `Backend` error: SQLite's code (`SQLITE_FULL`, `SQLITE_CORRUPT`,
   * `SQLITE_BUSY`, …), `SCHEMA_TOO_NEW` for a file of a newer schema version, the operating
   * system's (`EACCES`, `EMFILE`, `ENOENT`, …), `WORKER_DIED` when a worker thread died,
   * `UNKNOWN` when the failure carried no code; other kinds carry one where there is one,
   * else `undefined`.
   * @example
   * ```ts
   * p.events.on('writeFailed', (e) => {
   *   if (e.error.code === 'SQLITE_FULL') alertQuota(e.jobId);
   * });
   * ```
   */
  readonly code: string | undefined;

  /**
   * How many writes failed, for a `WriteFailed` error (the first one's error is `cause`);
   * otherwise `undefined`.
   * @example
   * ```ts
   * const r = await job.flush();
   * if (r.isErr() && r.error.kind === 'WriteFailed') log.warn(`${r.error.count} writes lost`);
   * ```
   */
  readonly count: number | undefined;

  /**
   * Made by the library; construct one yourself only to return a matching `Err`, e.g. from
   * a test double.
   * @example new PersistencyError('Closed', 'job tenant-1 is closed')
   */
  constructor(kind: PersistencyErrorKind, message: string, options: PersistencyErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PersistencyError';
    this.kind = kind;
    // The contract promises every Backend error a code, whatever failed beneath it.
    this.code = options.code ?? (kind === 'Backend' ? 'UNKNOWN' : undefined);
    this.count = options.count;
  }
}

/** The message of a `WriteFailed` error: how many writes, and the first one's error. */
export function writesFailedMessage(count: number, first: string): string {
  return `${count} write(s) failed since the previous flush; the first: ${first}`;
}

/** The `Err` of a flush after `count` failed writes, `first` the first one's error. */
export function writesFailed(count: number, first: PersistencyError): PersistencyError {
  return new PersistencyError('WriteFailed', writesFailedMessage(count, first.message), {
    code: first.code,
    cause: first,
    count,
  });
}

/** Shorthand for the most common kind. */
export function invalidArgument(message: string, cause?: unknown): PersistencyError {
  return new PersistencyError('InvalidArgument', message, cause === undefined ? {} : { cause });
}

/** The string `code` of a thrown value (Node's and SQLite's errors carry one), if any. */
export function codeOf(e: unknown): string | undefined {
  const code = e !== null && typeof e === 'object' ? (e as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}
