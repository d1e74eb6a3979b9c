/*
 * The process-wide singleton: validates the root, owns the registry of open jobs and the
 * event emitter, and offers the string-id form of every job method.
 */
import { existsSync, statSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import mittImport, { type Emitter } from 'mitt';
import { err, errAsync, ok, okAsync, type Result, ResultAsync } from 'neverthrow';
import { invalidArgument, PersistencyError } from './errors.js';
import { closeJobHandle, fromErrorInfo, Job, type JobHost, MAX_BATCH_OPS } from './job.js';
import { describe, describeThrown, type Key, type KeyRange } from './keys.js';
import { jobDbPath, jobFileStem, SIDECAR_SUFFIXES } from './paths.js';
import type { toPayload } from './payload.js';
import { RootLock, type RootLockShare } from './root-lock.js';
import type {
  KvRow,
  PersistencyEvents,
  PersistencyOptions,
  ScanOptions,
  TxOp,
  WriteFailureReason,
} from './types.js';
import type { FromWorker, OpenRequest, ToWorker } from './worker/protocol.js';
import { pollSettings, spawnWorker } from './worker/spawn.js';

// mitt ships ESM at runtime but CommonJS-style typings, which NodeNext reads as a
// namespace; the runtime default export is the factory itself.
const mitt = mittImport as unknown as typeof mittImport.default;

const MEMORY_ROOT = ':memory:';
/** SQLite's default SQLITE_MAX_LENGTH: no string or BLOB may be longer. */
const SQLITE_MAX_LENGTH = 1_000_000_000;

const DEFAULTS: Required<PersistencyOptions> = {
  busyTimeoutMs: 5000,
  journalSizeLimitBytes: 64 * 1024 * 1024,
  openTimeoutMs: 30_000,
  maxPayloadBytes: SQLITE_MAX_LENGTH - 1024,
  maxJobBytes: 0,
  verifyOnOpen: false,
  prestartWorker: true,
  pollMicros: 100,
};
/** The largest `pollMicros` accepted (one second). */
const MAX_POLL_MICROS = 1_000_000;

interface Slot {
  /** Resolves when the job is open (or failed to open). */
  readonly ready: Promise<Result<Job, PersistencyError>>;
  job: Job | undefined;
  closing: Promise<Result<void, PersistencyError>> | undefined;
}

function checkOptions(options: unknown): Result<Required<PersistencyOptions>, PersistencyError> {
  if (options === undefined) return ok(DEFAULTS);
  if (options === null || typeof options !== 'object') {
    return err(invalidArgument(`Persistency options must be an object, got ${describe(options)}`));
  }
  const out: Record<string, number | boolean> = { ...DEFAULTS };
  for (const [name, value] of Object.entries(options)) {
    if (!(name in DEFAULTS)) {
      return err(invalidArgument(`unknown Persistency option ${JSON.stringify(name)}`));
    }
    if (value === undefined) continue;
    const expected = typeof DEFAULTS[name as keyof PersistencyOptions];
    const valid =
      expected === 'boolean'
        ? typeof value === 'boolean'
        : typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
    if (!valid) {
      const what = expected === 'boolean' ? 'a boolean' : 'a non-negative integer';
      return err(
        invalidArgument(`Persistency option ${name} must be ${what}, got ${describe(value)}`),
      );
    }
    out[name] = value;
  }
  if ((out.pollMicros as number) > MAX_POLL_MICROS) {
    return err(invalidArgument(`pollMicros cannot exceed ${MAX_POLL_MICROS} (one second)`));
  }
  if ((out.maxPayloadBytes as number) > SQLITE_MAX_LENGTH) {
    return err(
      invalidArgument(`maxPayloadBytes cannot exceed SQLite's limit of ${SQLITE_MAX_LENGTH} bytes`),
    );
  }
  return ok(out as unknown as Required<PersistencyOptions>);
}

/** Validate a root without touching the disk beyond `stat`. */
function checkRoot(rootDir: unknown): Result<string, PersistencyError> {
  if (typeof rootDir !== 'string')
    return err(invalidArgument(`rootDir must be a string, got ${describe(rootDir)}`));
  if (rootDir.length === 0) return err(invalidArgument('rootDir is empty'));
  if (rootDir === MEMORY_ROOT) return ok(MEMORY_ROOT);
  if (rootDir.includes('\0')) return err(invalidArgument('rootDir contains a NUL byte'));
  const abs = resolve(rootDir);
  let probe = abs;
  for (;;) {
    let isDir: boolean | undefined;
    try {
      isDir = statSync(probe).isDirectory();
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== 'ENOENT') {
        if (code === 'ENOTDIR')
          return err(invalidArgument(`rootDir ${abs}: a parent of it is not a directory`));
        return err(
          invalidArgument(`rootDir ${abs}: cannot inspect ${probe} (${code ?? String(e)})`, e),
        );
      }
    }
    if (isDir === true) return ok(abs);
    if (isDir === false) {
      return err(
        invalidArgument(
          probe === abs
            ? `rootDir ${abs} exists and is not a directory`
            : `rootDir ${abs}: ${probe} is not a directory`,
        ),
      );
    }
    const parent = dirname(probe);
    if (parent === probe) return ok(abs);
    probe = parent;
  }
}

/**
 * The process-wide owner of one root directory and every job under it.
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
   * {@link PersistencyEvents}). A listener that throws does not disturb the library; its
   * error is rethrown in a microtask.
   * @example p.events.on('writeFailed', (e) => console.error(e.jobId, e.error.message));
   */
  readonly events: Emitter<PersistencyEvents> = mitt<PersistencyEvents>();
  readonly #options: Required<PersistencyOptions>;
  readonly #slots = new Map<string, Slot>();
  /** In-memory jobs keep their database image here between close and reopen. */
  readonly #images = new Map<string, Uint8Array>();
  readonly #host: JobHost;
  #rootReady: Promise<Result<void, PersistencyError>> | undefined;
  /** A worker started ahead of the next openJob (see `prestartWorker`). */
  #spare: import('node:worker_threads').Worker | undefined;
  #closing: Promise<Result<void, PersistencyError>> | undefined;
  /** The root's owner lock: held while a job is opening or open, or a drop is under way. */
  readonly #rootLock: RootLock;
  /** Each open job's share of the root lock, given back once its worker has exited. */
  readonly #rootShares = new Map<Job, RootLockShare>();

  private constructor(rootDir: string, options: Required<PersistencyOptions>) {
    this.rootDir = rootDir;
    this.#options = options;
    this.#rootLock = new RootLock(rootDir);
    this.#host = {
      maxPayloadBytes: options.maxPayloadBytes,
      writeFailed: (jobId, reason, ops, error, count) =>
        this.#writeFailed(jobId, reason, ops, error, count),
      jobDied: (job, error) => {
        this.#releaseRoot(job);
        const slot = this.#slots.get(job.id);
        if (slot?.job === job && slot.closing === undefined) this.#slots.delete(job.id);
        this.#emit('jobFailed', { jobId: job.id, error });
      },
    };
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
    const root = checkRoot(rootDir);
    if (root.isErr()) return err(root.error);
    let opts: Result<Required<PersistencyOptions>, PersistencyError>;
    try {
      opts = checkOptions(options);
    } catch (e) {
      // Options with throwing getters, or a revoked proxy.
      opts = err(invalidArgument(`Persistency options could not be read: ${describeThrown(e)}`, e));
    }
    if (opts.isErr()) return err(opts.error);
    if (current !== undefined) {
      if (current.rootDir === root.value) return ok(current);
      return err(
        invalidArgument(
          `a Persistency for ${current.rootDir} is live; close it or call Persistency.reset() before using ${root.value}`,
        ),
      );
    }
    const p = new Persistency(root.value, opts.value);
    Persistency.#current = p;
    return ok(p);
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
   * calls give the same `Job`. `Err(Busy)` when another process or instance owns the root.
   * @example const job = (await p.openJob('tenant-1'))._unsafeUnwrap();
   */
  openJob(id: string): ResultAsync<Job, PersistencyError> {
    if (this.#closing !== undefined) return errAsync(this.#closedError());
    const file = jobFileStem(id);
    if (!file.ok) return errAsync(file.error);
    const slot = this.#slots.get(id);
    if (slot !== undefined && slot.closing === undefined) return new ResultAsync(slot.ready);
    const previous = slot?.closing;
    const next: Slot = {
      ready: (previous ?? Promise.resolve()).then(() => this.#start(id, file.stem)),
      job: undefined,
      closing: undefined,
    };
    this.#slots.set(id, next);
    void next.ready.then((r) => {
      if (r.isOk()) next.job = r.value;
      else if (this.#slots.get(id) === next) this.#slots.delete(id);
    });
    return new ResultAsync(next.ready);
  }

  /**
   * Close job `id`: resolves after every earlier write is committed, the WAL is
   * checkpointed and the worker has exited. A no-op for a job that is not open. `Err` if
   * the checkpoint or the close failed, or the worker died (commits made before stand).
   * @example await p.closeJob('tenant-1');
   */
  closeJob(id: string): ResultAsync<void, PersistencyError> {
    const slot = this.#slots.get(id);
    if (slot === undefined) return okAsync(undefined);
    if (slot.closing !== undefined) return new ResultAsync(slot.closing);
    const closeOpened = async (job: Job): Promise<Result<void, PersistencyError>> => {
      const outcome = await closeJobHandle(job);
      this.#releaseRoot(job);
      if (outcome.image !== undefined) this.#images.set(id, outcome.image);
      if (this.#slots.get(id) === slot) this.#slots.delete(id);
      if (outcome.error !== undefined) return err(outcome.error);
      this.#emit('jobClosed', { jobId: id, dropped: false });
      return ok(undefined);
    };
    // An open job stops taking work now, not a tick later.
    const closing =
      slot.job !== undefined
        ? closeOpened(slot.job)
        : slot.ready.then((opened) => (opened.isErr() ? ok(undefined) : closeOpened(opened.value)));
    slot.closing = closing;
    return new ResultAsync(closing);
  }

  /**
   * Close job `id` if open, then delete its database and every sidecar file (the root's
   * lock file stays). `Err(Busy)` if another process or instance owns the root. Dropping
   * a job that has no file is `Ok` (and still emits `jobClosed` with `dropped: true`).
   * @example await p.dropJob('tenant-1');
   */
  dropJob(id: string): ResultAsync<void, PersistencyError> {
    const file = jobFileStem(id);
    if (!file.ok) return errAsync(file.error);
    // The drop occupies the id's slot until the files are gone, so an openJob issued
    // meanwhile waits for it instead of opening a file about to be deleted.
    const closed = this.closeJob(id);
    const dropping = (async (): Promise<Result<void, PersistencyError>> => {
      const close = await closed;
      const drop = await this.#drop(id, file.stem);
      return drop.isErr() ? drop : close;
    })();
    const slot: Slot = {
      ready: dropping.then(() => err(this.#notFound(id))),
      job: undefined,
      closing: dropping,
    };
    this.#slots.set(id, slot);
    void dropping.then(() => {
      if (this.#slots.get(id) === slot) this.#slots.delete(id);
    });
    return new ResultAsync(dropping);
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
      this.#closing = this.#closeAll();
    }
    return new ResultAsync(this.#closing);
  }

  /**
   * The open job `id`, or `Err(JobNotFound)`.
   * @example p.job('tenant-1').map((job) => job.persistPut('t', key(1), payload('x')));
   */
  job(id: string): Result<Job, PersistencyError> {
    const job = this.#openJob(id);
    return job !== undefined ? ok(job) : err(this.#notFound(id));
  }

  /**
   * Whether job `id` is open.
   * @example if (!p.hasJob('tenant-1')) await p.openJob('tenant-1');
   */
  hasJob(id: string): boolean {
    return this.#openJob(id) !== undefined;
  }

  // -------------------------------------------------------------------------------------
  // String-id forms: a read on a job that is not open is Err(JobNotFound); a write is
  // dropped with a `writeFailed` event.

  /**
   * `job(jobId).persist(ops)` on the open job `jobId`. When it is not open, the write
   * is dropped and reported as a `writeFailed` event with reason `'notFound'`.
   * @example p.persist('t1', [{ kind: 'delete', category: 'c', key: key(1) }])
   */
  persist(jobId: string, ops: readonly TxOp[]): void {
    const job = this.#openJob(jobId);
    if (job !== undefined) job.persist(ops);
    else this.#dropUnknown(jobId, ops);
  }

  /**
   * `job(jobId).persistPut(...)` on the open job `jobId`. When it is not open, the write
   * is dropped and reported as a `writeFailed` event with reason `'notFound'`.
   * @example p.persistPut('t1', 'users', key('ada'), payload('Ada'))
   */
  persistPut(jobId: string, category: string, key: Key, payload: Uint8Array): void {
    const job = this.#openJob(jobId);
    if (job !== undefined) job.persistPut(category, key, payload);
    else this.#dropUnknown(jobId, [{ kind: 'put', category, key, payload }]);
  }

  /**
   * `job(jobId).persistDelete(...)` on the open job `jobId`. When it is not open, the write
   * is dropped and reported as a `writeFailed` event with reason `'notFound'`.
   * @example p.persistDelete('t1', 'users', key('ada'))
   */
  persistDelete(jobId: string, category: string, key: Key): void {
    const job = this.#openJob(jobId);
    if (job !== undefined) job.persistDelete(category, key);
    else this.#dropUnknown(jobId, [{ kind: 'delete', category, key }]);
  }

  /**
   * `job(jobId).persistDeletePrefix(...)` on the open job `jobId`. When it is not open, the write
   * is dropped and reported as a `writeFailed` event with reason `'notFound'`.
   * @example p.persistDeletePrefix('t1', 'log', key('c1'))
   */
  persistDeletePrefix(jobId: string, category: string, prefix: Key): void {
    const job = this.#openJob(jobId);
    if (job !== undefined) job.persistDeletePrefix(category, prefix);
    else this.#dropUnknown(jobId, [{ kind: 'deletePrefix', category, prefix }]);
  }

  /**
   * `job(jobId).persistEncoded(...)` on the open job `jobId`. When it is not open, the write
   * is dropped and reported as a `writeFailed` event with reason `'notFound'`.
   * @example p.persistEncoded('t1', 'meta', key('c1'), ['general', 42])
   */
  persistEncoded(
    jobId: string,
    category: string,
    key: Key,
    value: Parameters<typeof toPayload>[0],
  ): void {
    const job = this.#openJob(jobId);
    if (job !== undefined) job.persistEncoded(category, key, value);
    else this.#dropUnknown(jobId, [], 1); // one write, not listed: its value is not encoded
  }

  /**
   * `job(jobId).flush()` on the open job `jobId`. `Err(JobNotFound)` when `jobId` is not open.
   * @example await p.flush('t1')
   */
  flush(jobId: string): ResultAsync<void, PersistencyError> {
    return this.#read(jobId, (j) => j.flush());
  }

  /**
   * `job(jobId).get(...)` on the open job `jobId`. `Err(JobNotFound)` when `jobId` is not open.
   * @example await p.get('t1', 'users', key('ada'))
   */
  get(
    jobId: string,
    category: string,
    key: Key,
  ): ResultAsync<Uint8Array | undefined, PersistencyError> {
    return this.#read(jobId, (j) => j.get(category, key));
  }

  /**
   * `job(jobId).exists(...)` on the open job `jobId`. `Err(JobNotFound)` when `jobId` is not open.
   * @example await p.exists('t1', 'users', key('ada'))
   */
  exists(jobId: string, category: string, key: Key): ResultAsync<boolean, PersistencyError> {
    return this.#read(jobId, (j) => j.exists(category, key));
  }

  /**
   * `job(jobId).scan(...)` on the open job `jobId`. `Err(JobNotFound)` when `jobId` is not open.
   * @example await p.scan('t1', 'log', prefixRange(key('c1')))
   */
  scan(
    jobId: string,
    category: string,
    range: KeyRange,
    options?: ScanOptions,
  ): ResultAsync<KvRow[], PersistencyError> {
    return this.#read(jobId, (j) => j.scan(category, range, options));
  }

  /**
   * `job(jobId).scanPrefix(...)` on the open job `jobId`. `Err(JobNotFound)` when `jobId` is not open.
   * @example await p.scanPrefix('t1', 'log', key('c1'), { limit: 10 })
   */
  scanPrefix(
    jobId: string,
    category: string,
    prefix: Key,
    options?: ScanOptions,
  ): ResultAsync<KvRow[], PersistencyError> {
    return this.#read(jobId, (j) => j.scanPrefix(category, prefix, options));
  }

  /**
   * `job(jobId).count(...)` on the open job `jobId`. `Err(JobNotFound)` when `jobId` is not open.
   * @example await p.count('t1', 'log', prefixRange(key('c1')))
   */
  count(jobId: string, category: string, range: KeyRange): ResultAsync<number, PersistencyError> {
    return this.#read(jobId, (j) => j.count(category, range));
  }

  /**
   * `job(jobId).deleteAcked(...)` on the open job `jobId`. `Err(JobNotFound)` when `jobId` is not open.
   * @example await p.deleteAcked('t1', 'users', key('ada'))
   */
  deleteAcked(jobId: string, category: string, key: Key): ResultAsync<boolean, PersistencyError> {
    return this.#read(jobId, (j) => j.deleteAcked(category, key));
  }

  // -------------------------------------------------------------------------------------
  // Internals

  #openJob(id: string): Job | undefined {
    const slot = this.#slots.get(id);
    return slot?.closing === undefined && slot?.job?.running === true ? slot.job : undefined;
  }

  /** A string-id write naming a job that is not open: report it, queue nothing. */
  #dropUnknown(jobId: unknown, ops: readonly TxOp[], count?: number): void {
    const label = typeof jobId === 'string' ? jobId : describe(jobId);
    this.#writeFailed(label, 'notFound', ops, this.#notFound(jobId), count);
  }

  #read<T>(
    jobId: string,
    run: (job: Job) => ResultAsync<T, PersistencyError>,
  ): ResultAsync<T, PersistencyError> {
    const job = this.#openJob(jobId);
    return job !== undefined ? run(job) : errAsync(this.#notFound(jobId));
  }

  #notFound(id: unknown): PersistencyError {
    return this.#closing !== undefined
      ? this.#closedError()
      : new PersistencyError('JobNotFound', `job ${describe(id)} is not open`);
  }

  #closedError(): PersistencyError {
    return new PersistencyError('Closed', `the Persistency for ${this.rootDir} is closed`);
  }

  #writeFailed(
    jobId: string,
    reason: WriteFailureReason,
    ops: readonly TxOp[],
    error: PersistencyError,
    count?: number,
  ): void {
    let listed: readonly TxOp[] = [];
    let n = count;
    try {
      // `ops` may be whatever a caller passed (a proxy can make even isArray throw): report
      // a plain copy of it, or no ops at all. Copied element by element, and only up to a
      // batch's limit: `slice` on a sparse array of length 2^32-1 would stall the event
      // loop for a minute.
      const length: unknown = Array.isArray(ops) ? ops.length : undefined;
      if (typeof length === 'number' && Number.isSafeInteger(length) && length >= 0) {
        n ??= length;
        if (length <= MAX_BATCH_OPS) {
          const copy: TxOp[] = new Array(length);
          for (let i = 0; i < length; i++) copy[i] = ops[i] as TxOp;
          listed = copy;
        }
      }
    } catch {
      listed = [];
    }
    this.#emit('writeFailed', { jobId, reason, ops: listed, count: n ?? listed.length, error });
  }

  /** Emit without letting a throwing listener break our bookkeeping. */
  #emit<K extends keyof PersistencyEvents>(type: K, event: PersistencyEvents[K]): void {
    try {
      this.events.emit(type, event);
    } catch (e) {
      queueMicrotask(() => {
        throw e;
      });
    }
  }

  #ensureRoot(): Promise<Result<void, PersistencyError>> {
    this.#rootReady ??= mkdir(this.rootDir, { recursive: true }).then(
      () => ok(undefined),
      (e: unknown) => {
        this.#rootReady = undefined;
        return err(
          new PersistencyError(
            'Backend',
            `cannot create rootDir ${this.rootDir}: ${(e as Error).message}`,
            {
              code: (e as { code?: string }).code,
              cause: e,
            },
          ),
        );
      },
    );
    return this.#rootReady;
  }

  async #start(id: string, stem: string): Promise<Result<Job, PersistencyError>> {
    if (this.#closing !== undefined) return err(this.#closedError());
    const memory = this.rootDir === MEMORY_ROOT;
    let share: RootLockShare | undefined;
    if (!memory) {
      const root = await this.#ensureRoot();
      if (root.isErr()) return err(root.error);
      const owned = this.#rootLock.acquire(jobDbPath(this.rootDir, stem));
      if (owned.isErr()) return err(owned.error);
      share = owned.value;
    }
    const req: OpenRequest = {
      dbPath: memory ? MEMORY_ROOT : jobDbPath(this.rootDir, stem),
      image: memory ? this.#images.get(id) : undefined,
      busyTimeoutMs: this.#options.busyTimeoutMs,
      journalSizeLimitBytes: this.#options.journalSizeLimitBytes,
      maxJobBytes: this.#options.maxJobBytes,
      verifyOnOpen: this.#options.verifyOnOpen,
      poll: pollSettings(this.#options.pollMicros),
    };
    const first = await this.#handshake(req);
    if (first.isErr()) {
      share?.release();
      return err(first.error);
    }
    const { worker, file } = first.value;
    const job = new Job(id, worker, this.#host);
    if (share !== undefined) this.#rootShares.set(job, share);
    this.#emit('jobOpened', { jobId: id, file });
    return ok(job);
  }

  /**
   * A worker for a job about to open: the spare started in advance (its thread booted and
   * its modules loaded: that is most of an open's cost), then a new spare for the next.
   */
  #takeWorker(): import('node:worker_threads').Worker {
    const spare = this.#spare;
    this.#spare = undefined;
    const worker = spare !== undefined && spare.threadId !== -1 ? spare : spawnWorker();
    worker.ref(); // the open in progress must keep the process alive
    this.#startSpare();
    return worker;
  }

  #startSpare(): void {
    if (!this.#options.prestartWorker || this.#closing !== undefined || this.#spare !== undefined)
      return;
    try {
      const spare = spawnWorker();
      spare.unref(); // an idle spare never keeps the process alive
      spare.on('error', () => {}); // a spare that fails is replaced when it is needed
      spare.once('exit', () => {
        if (this.#spare === spare) this.#spare = undefined;
      });
      this.#spare = spare;
    } catch {
      // No spare: the next open starts its own worker.
    }
  }

  /** Tell the spare to quit; resolves once its thread has exited. */
  #stopSpare(): Promise<void> {
    const spare = this.#spare;
    this.#spare = undefined;
    if (spare === undefined || spare.threadId === -1) return Promise.resolve();
    const exited = new Promise<void>((resolve) => spare.once('exit', () => resolve()));
    spare.ref(); // until it has exited: close() waits for it
    spare.postMessage({ t: 'quit' } satisfies ToWorker);
    return exited;
  }

  /** Start a worker and wait for its first word: ready, or why it could not open. */
  #handshake(
    req: OpenRequest,
    /** Resolve on `ready` only once the worker has exited (a lock probe, which then ends). */
    readyMeansDone = false,
  ): Promise<
    Result<
      { worker: import('node:worker_threads').Worker; file: string | undefined },
      PersistencyError
    >
  > {
    let worker: import('node:worker_threads').Worker;
    try {
      worker = this.#takeWorker();
      worker.postMessage({ t: 'open', req } satisfies ToWorker);
    } catch (e) {
      return Promise.resolve(
        err(
          new PersistencyError('Backend', `cannot start job worker: ${(e as Error).message}`, {
            cause: e,
          }),
        ),
      );
    }
    return new Promise((settle) => {
      let failure: unknown;
      /** A final answer that waits for the worker's exit, so no thread outlives the call. */
      let afterExit:
        | Result<{ worker: typeof worker; file: string | undefined }, PersistencyError>
        | undefined;
      const done = (
        r: Result<{ worker: typeof worker; file: string | undefined }, PersistencyError>,
      ) => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        settle(r);
      };
      const onMessage = (m: FromWorker) => {
        if (m instanceof Uint8Array) return; // replies come only after ready
        if (m.t === 'ready') {
          if (readyMeansDone) afterExit = ok({ worker, file: m.file });
          else done(ok({ worker, file: m.file }));
        } else if (m.t === 'openFailed') {
          afterExit = err(fromErrorInfo(m.error));
        }
      };
      const onError = (e: unknown) => {
        failure = e;
      };
      const onExit = (code: number) => {
        if (afterExit !== undefined) {
          done(afterExit);
          return;
        }
        done(
          err(
            new PersistencyError(
              'Backend',
              `job worker exited with code ${code} before it was ready${failure === undefined ? '' : `: ${(failure as Error).message ?? String(failure)}`}`,
              { cause: failure },
            ),
          ),
        );
      };
      const timer = setTimeout(() => {
        worker.postMessage({ t: 'close' });
        done(
          err(
            new PersistencyError(
              'Timeout',
              `job worker for ${req.dbPath} was not ready within ${this.#options.openTimeoutMs} ms`,
            ),
          ),
        );
      }, this.#options.openTimeoutMs);
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    });
  }

  async #drop(id: string, stem: string): Promise<Result<void, PersistencyError>> {
    if (this.rootDir === MEMORY_ROOT) {
      this.#images.delete(id);
      this.#emit('jobClosed', { jobId: id, dropped: true });
      return ok(undefined);
    }
    const dbPath = jobDbPath(this.rootDir, stem);
    const files = [dbPath, ...SIDECAR_SUFFIXES.map((s) => dbPath + s)];
    let share: RootLockShare | undefined;
    if (existsSync(dbPath)) {
      // Own the root first: never delete a job another process or instance may be using.
      const owned = this.#rootLock.acquire(dbPath);
      if (owned.isErr()) return err(owned.error);
      share = owned.value;
    }
    try {
      for (const f of files) await rm(f, { force: true });
    } catch (e) {
      return err(
        new PersistencyError('Backend', `dropJob ${id}: ${(e as Error).message}`, { cause: e }),
      );
    } finally {
      share?.release();
    }
    this.#emit('jobClosed', { jobId: id, dropped: true });
    return ok(undefined);
  }

  /** Give back a job's share of the root lock, once (its close and its death may both ask). */
  #releaseRoot(job: Job): void {
    this.#rootShares.get(job)?.release();
    this.#rootShares.delete(job);
  }

  async #closeAll(): Promise<Result<void, PersistencyError>> {
    const [results] = await Promise.all([
      Promise.all([...this.#slots.keys()].map((id) => this.closeJob(id))),
      this.#stopSpare(),
    ]);
    const failed = results.find((r) => r.isErr());
    return failed ?? ok(undefined);
  }
}
