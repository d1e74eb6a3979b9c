/*
 * Persistency: the public face of one root directory. It validates the root and options,
 * keeps the singleton, the event emitter and the string-id form of every job method; the
 * jobs themselves and their life are the registry's (src/registry.ts).
 */
import mittImport, { type Emitter } from 'mitt';
import { err, errAsync, ok, type Result, ResultAsync } from 'neverthrow';
import { AtomicBatch } from './atomic-batch.js';
import { categoryBytes } from './checks.js';
import { invalidArgument, type PersistencyError } from './errors.js';
import type { Job } from './job.js';
import { describe, describeThrown, type Key, type KeyRange } from './keys.js';
import { checkOptions, checkRoot } from './option-checks.js';
import type { toPayload } from './payload.js';
import { JobRegistry } from './registry.js';
import type {
  KvRow,
  PersistencyEvents,
  PersistencyOptions,
  PersistencyStats,
  PutOptions,
  ScanOptions,
  TxOp,
} from './types.js';
import { emitToAll, UnheardFailures } from './warnings.js';

// mitt ships ESM at runtime but CommonJS-style typings, which NodeNext reads as a
// namespace; the runtime default export is the factory itself.
const mitt = mittImport as unknown as typeof mittImport.default;

let releaseIdle: (p: Persistency, idleForMs: number) => Promise<number>;

/** The root, resolved, and the options with their defaults, or why they are refused. */
function checkRootAndOptions(
  rootDir: unknown,
  options: unknown,
): Result<[string, Required<PersistencyOptions>], PersistencyError> {
  const root = checkRoot(rootDir);
  if (root.isErr()) return err(root.error);
  try {
    return checkOptions(options).map((opts) => [root.value, opts]);
  } catch (e) {
    // Options with throwing getters, or a revoked proxy.
    return err(invalidArgument(`Persistency options could not be read: ${describeThrown(e)}`, e));
  }
}

/**
 * The owner of one root directory and every job under it.
 *
 * @example
 * ```ts
 * const p = Persistency.instance('./data')._unsafeUnwrap();
 * const job = (await p.openJob('tenant-1'))._unsafeUnwrap();
 * job.persistPut('users', key('ada'), payload('Ada'));
 * await p.close();
 * ```
 */
export class Persistency {
  static #current: Persistency | undefined;

  /**
   * The root directory, resolved to an absolute path, or `':memory:'`.
   * @example Persistency.instance('./data')._unsafeUnwrap().rootDir // '/srv/app/data' when run in /srv/app
   */
  readonly rootDir: string;
  /**
   * Typed `mitt` emitter: `jobOpened`, `jobClosed`, `jobFailed`, `writeFailed` (see
   * {@link PersistencyEvents}). Every listener is called, whatever one throws; a throw, and
   * a `writeFailed` no listener hears, become a `PersistencyWarning` (process.emitWarning).
   * @example p.events.on('writeFailed', (e) => console.error(e.jobId, e.error.message));
   */
  readonly events: Emitter<PersistencyEvents> = mitt<PersistencyEvents>();
  readonly #unheard = new UnheardFailures();
  readonly #jobs: JobRegistry;
  #closing: Promise<Result<void, PersistencyError>> | undefined;

  static {
    releaseIdle = (p, idleForMs) => p.#jobs.releaseIdle(idleForMs);
  }

  private constructor(rootDir: string, options: Required<PersistencyOptions>) {
    this.rootDir = rootDir;
    this.#jobs = new JobRegistry(rootDir, options, (type, event, writes) =>
      emitToAll(this.events, this.#unheard, type, event, writes),
    );
  }

  /**
   * The singleton for `rootDir` (created on first call; the same object for the same
   * root), or, without arguments, the current one. `Err(InvalidArgument)` for an invalid
   * root or option, a different root while one is live, or no current instance. Checks
   * the root with `stat` only: the directory is created by the first `openJob`.
   * `':memory:'` keeps every job in memory.
   * @example const p = Persistency.instance(':memory:')._unsafeUnwrap();
   */
  static instance(
    rootDir?: string,
    options?: PersistencyOptions,
  ): Result<Persistency, PersistencyError> {
    const current = Persistency.#current;
    if (rootDir === undefined && options === undefined) {
      return current !== undefined
        ? ok(current)
        : err(
            invalidArgument(
              'no Persistency instance is live; call Persistency.instance(rootDir) first',
            ),
          );
    }
    const checked = checkRootAndOptions(rootDir, options);
    if (checked.isErr()) return err(checked.error);
    const [root, opts] = checked.value;
    if (current !== undefined) {
      if (current.rootDir === root) return ok(current);
      return err(
        invalidArgument(
          `a Persistency for ${current.rootDir} is live; close it or call Persistency.reset() before using ${root}`,
        ),
      );
    }
    const p = new Persistency(root, opts);
    Persistency.#current = p;
    return ok(p);
  }

  /**
   * A new instance for `rootDir`, independent of the singleton and of every other: its own
   * jobs, events and options; `instance()` neither returns nor replaces it, and closing it
   * leaves the others. Two instances never own one job: while one has a job open, another's
   * `openJob` of it is `Err(Busy)`. Instances of one thread may share a root (and own
   * different jobs of it); one in another thread or process is refused the whole root.
   * `Err(InvalidArgument)` for an invalid root or option.
   * @example const p = Persistency.open(':memory:')._unsafeUnwrap(); // a library's own store
   */
  static open(
    rootDir: string,
    options?: PersistencyOptions,
  ): Result<Persistency, PersistencyError> {
    return checkRootAndOptions(rootDir, options).map(([root, opts]) => new Persistency(root, opts));
  }

  /**
   * Close every job of the current instance (committing their writes) and forget it.
   * Never rejects; safe to call when there is no instance.
   * @example afterEach(() => Persistency.reset());
   */
  static async reset(): Promise<void> {
    const current = Persistency.#current;
    Persistency.#current = undefined;
    if (current !== undefined) await current.close();
  }

  // -------------------------------------------------------------------------------------
  // Lifecycle

  /**
   * Open (or create) job `id` and resolve when its worker is ready. Concurrent and repeated
   * calls give the same `Job`. `Err(Busy)` when another process or thread owns the root,
   * or another instance of this thread has the job open.
   * @example const job = (await p.openJob('tenant-1'))._unsafeUnwrap();
   */
  openJob(id: string): ResultAsync<Job, PersistencyError> {
    return this.#jobs.open(id);
  }

  /**
   * Close job `id`: resolves after every earlier write is committed, the WAL is
   * checkpointed and its worker has let go of the file (under `'per-job'`, its thread has
   * exited). A no-op for a job that is not open. `Err` if the checkpoint or the close
   * failed, or the worker died (commits made before stand).
   * @example await p.closeJob('tenant-1');
   */
  closeJob(id: string): ResultAsync<void, PersistencyError> {
    return this.#jobs.close(id);
  }

  /**
   * Close job `id` if open, then delete its database and every sidecar file (the root's
   * lock file stays). `Err(Busy)` if another process or thread owns the root, or another
   * instance of this thread has the job open. Dropping a job that has no file is `Ok` (and
   * still emits `jobClosed` with `dropped: true`).
   * @example await p.dropJob('tenant-1');
   */
  dropJob(id: string): ResultAsync<void, PersistencyError> {
    return this.#jobs.drop(id);
  }

  /**
   * Close every job and this instance (idempotent); resolves once every worker thread, the
   * prestarted one included, has exited. `Err` with the first job close that failed. Later
   * calls on it return `Err(Closed)`, and `Persistency.instance(rootDir)` makes a new one.
   * @example await p.close();
   */
  close(): ResultAsync<void, PersistencyError> {
    if (this.#closing === undefined) {
      if (Persistency.#current === this) Persistency.#current = undefined;
      this.#closing = this.#jobs.closeAll();
    }
    return new ResultAsync(this.#closing);
  }

  /**
   * The open job `id`, or `Err(JobNotFound)`.
   * @example p.job('tenant-1').map((job) => job.persistPut('t', key(1), payload('x')));
   */
  job(id: string): Result<Job, PersistencyError> {
    const job = this.#jobs.openJobOf(id);
    return job !== undefined ? ok(job) : err(this.#jobs.notFound(id));
  }

  /**
   * Whether job `id` is open (an idle job that released its connection is still open).
   * @example if (!p.hasJob('tenant-1')) await p.openJob('tenant-1');
   */
  hasJob(id: string): boolean {
    return this.#jobs.openJobOf(id) !== undefined;
  }

  /**
   * The id of every job in the root, open or not, sorted: each job file's name decoded back
   * (files that are not job files are ignored; a root not made yet has none). For
   * `':memory:'`, the jobs open or closed with their data kept. The CLI's `ls` lists the same.
   * @example (await p.listJobs()).map((ids) => ids.length)
   */
  listJobs(): ResultAsync<string[], PersistencyError> {
    return new ResultAsync(this.#jobs.listJobs());
  }

  /**
   * What this instance holds now: jobs open, resident (holding a connection) and released,
   * and worker threads running. Counters only: cheap to call often.
   * @example const { openJobs, residentJobs, workerThreads } = p.stats();
   */
  stats(): PersistencyStats {
    return this.#jobs.stats();
  }

  // -------------------------------------------------------------------------------------
  // String-id forms: `p.method(jobId, ...)` is `job(jobId).method(...)` on the open job
  // `jobId`. On a job that is not open a read is Err(JobNotFound), and a write is dropped
  // and reported as a `writeFailed` event with reason 'notFound'.

  /** @example p.persist('t1', [{ kind: 'delete', category: 'c', key: key(1) }]) */
  persist(jobId: string, ops: readonly TxOp[]): void {
    this.#write(jobId, ops, (j) => j.persist(ops));
  }

  /** @example p.persistPut('t1', 'users', key('ada'), payload('Ada')) */
  persistPut(
    jobId: string,
    category: string,
    key: Key,
    payload: Uint8Array,
    options?: PutOptions,
  ): void {
    this.#write(jobId, [{ kind: 'put', category, key, payload }], (j) =>
      j.persistPut(category, key, payload, options),
    );
  }

  /** @example p.persistAdd('t1', 'counters', key('visits'), 1) */
  persistAdd(jobId: string, category: string, key: Key, delta: number | bigint): void {
    this.#write(jobId, [], (j) => j.persistAdd(category, key, delta), 1);
  }

  /**
   * `job(jobId).atomic()`; on a job that is not open, its `commit()` is Err(JobNotFound).
   * @example await p.atomic('t1').add('counters', key('visits'), 1).commit()
   */
  atomic(jobId: string): AtomicBatch {
    const job = this.#jobs.openJobOf(jobId);
    if (job !== undefined) return job.atomic();
    const notFound = this.#jobs.notFound(jobId);
    return new AtomicBatch({
      limits: { maxPayloadBytes: Number.MAX_SAFE_INTEGER, now: Date.now },
      category: categoryBytes,
      commit: () => errAsync(notFound),
    });
  }

  /** @example p.persistDelete('t1', 'users', key('ada')) */
  persistDelete(jobId: string, category: string, key: Key): void {
    this.#write(jobId, [{ kind: 'delete', category, key }], (j) => j.persistDelete(category, key));
  }

  /** @example p.persistDeletePrefix('t1', 'log', key('c1')) */
  persistDeletePrefix(jobId: string, category: string, prefix: Key): void {
    this.#write(jobId, [{ kind: 'deletePrefix', category, prefix }], (j) =>
      j.persistDeletePrefix(category, prefix),
    );
  }

  /** @example p.persistEncoded('t1', 'meta', key('c1'), ['general', 42]) */
  persistEncoded(
    jobId: string,
    category: string,
    key: Key,
    value: Parameters<typeof toPayload>[0],
  ): void {
    // One write, not listed when dropped: its value is not encoded.
    this.#write(jobId, [], (j) => j.persistEncoded(category, key, value), 1);
  }

  /** @example await p.flush('t1') */
  flush(jobId: string): ResultAsync<void, PersistencyError> {
    return this.#read(jobId, (j) => j.flush());
  }

  /** @example await p.get('t1', 'users', key('ada')) */
  get(
    jobId: string,
    category: string,
    key: Key,
  ): ResultAsync<Uint8Array | undefined, PersistencyError> {
    return this.#read(jobId, (j) => j.get(category, key));
  }

  /** @example await p.exists('t1', 'users', key('ada')) */
  exists(jobId: string, category: string, key: Key): ResultAsync<boolean, PersistencyError> {
    return this.#read(jobId, (j) => j.exists(category, key));
  }

  /** @example await p.getMany('t1', 'users', [key('ada'), key('bob')]) */
  getMany(
    jobId: string,
    category: string,
    keys: readonly Key[],
  ): ResultAsync<(Uint8Array | undefined)[], PersistencyError> {
    return this.#read(jobId, (j) => j.getMany(category, keys));
  }

  /** @example await p.scan('t1', 'log', prefixRange(key('c1'))) */
  scan(
    jobId: string,
    category: string,
    range: KeyRange,
    options?: ScanOptions,
  ): ResultAsync<KvRow[], PersistencyError> {
    return this.#read(jobId, (j) => j.scan(category, range, options));
  }

  /** @example await p.scanPrefix('t1', 'log', key('c1'), { limit: 10 }) */
  scanPrefix(
    jobId: string,
    category: string,
    prefix: Key,
    options?: ScanOptions,
  ): ResultAsync<KvRow[], PersistencyError> {
    return this.#read(jobId, (j) => j.scanPrefix(category, prefix, options));
  }

  /** @example await p.count('t1', 'log', prefixRange(key('c1'))) */
  count(jobId: string, category: string, range: KeyRange): ResultAsync<number, PersistencyError> {
    return this.#read(jobId, (j) => j.count(category, range));
  }

  /** `job.backup(destFile)` of the open job `jobId`. @example await p.backupJob('t1', '/backups/t1.db') */
  backupJob(jobId: string, destFile: string): ResultAsync<void, PersistencyError> {
    return this.#read(jobId, (j) => j.backup(destFile));
  }

  /** @example await p.deleteAcked('t1', 'users', key('ada')) */
  deleteAcked(jobId: string, category: string, key: Key): ResultAsync<boolean, PersistencyError> {
    return this.#read(jobId, (j) => j.deleteAcked(category, key));
  }

  // -------------------------------------------------------------------------------------
  // Internals

  #write(jobId: string, ops: readonly TxOp[], run: (job: Job) => void, count?: number): void {
    const job = this.#jobs.openJobOf(jobId);
    if (job !== undefined) {
      run(job);
      return;
    }
    // A write under an id that is not a string is reported under a description of it,
    // and counted by no job's flush: it names none (a job '7' is not the number 7).
    const named = typeof jobId === 'string';
    const label = named ? jobId : describe(jobId);
    this.#jobs.writeFailed(label, 'notFound', ops, this.#jobs.notFound(jobId), count, !named);
  }

  #read<T>(
    jobId: string,
    run: (job: Job) => ResultAsync<T, PersistencyError>,
  ): ResultAsync<T, PersistencyError> {
    const job = this.#jobs.openJobOf(jobId);
    return job !== undefined ? run(job) : errAsync(this.#jobs.notFound(jobId));
  }
}

/**
 * @internal Release every job of `p` idle for at least `idleForMs` now, as the idle timer
 * would; resolves with how many were released once they have, and a prestarted spare thread
 * has booted, so that a test's next step does not race its start (tests use it in place of time).
 */
export function releaseIdleJobs(p: Persistency, idleForMs = 0): Promise<number> {
  return releaseIdle(p, idleForMs);
}
