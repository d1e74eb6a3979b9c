/*
 * A Persistency owns one root directory: it validates it, keeps the registry of open jobs
 * and their life (open, idle release, close, drop), the event emitter, the worker threads,
 * and the string-id form of every job method.
 */
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import mittImport, { type Emitter } from 'mitt';
import { err, errAsync, ok, okAsync, type Result, ResultAsync } from 'neverthrow';
import { checkOptions, checkRoot, MEMORY_ROOT } from './checks.js';
import { invalidArgument, PersistencyError } from './errors.js';
import { closeJobHandle, Job, type JobHost, jobClient, MAX_BATCH_OPS } from './job.js';
import { type ClientHost, JobClient } from './job-client.js';
import { describe, describeThrown, type Key, type KeyRange } from './keys.js';
import { jobDbPath, jobFileStem, SIDECAR_SUFFIXES } from './paths.js';
import type { toPayload } from './payload.js';
import { fromErrorInfo, type OpenRequest, toErrorInfo } from './protocol/messages.js';
import { WorkerThreads } from './threads.js';
import type {
  KvRow,
  PersistencyEvents,
  PersistencyOptions,
  PersistencyStats,
  ScanOptions,
  TxOp,
  WriteFailureReason,
} from './types.js';
import { KvBackend } from './worker/backend.js';
import { pollSettings } from './worker/spawn.js';

// mitt ships ESM at runtime but CommonJS-style typings, which NodeNext reads as a
// namespace; the runtime default export is the factory itself.
const mitt = mittImport as unknown as typeof mittImport.default;

interface Slot {
  /** Resolves when the job is open (or failed to open). */
  readonly ready: Promise<Result<Job, PersistencyError>>;
  job: Job | undefined;
  closing: Promise<Result<void, PersistencyError>> | undefined;
}

let releaseIdle: (p: Persistency, idleForMs: number) => Promise<number>;

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
   * {@link PersistencyEvents}). A listener that throws does not disturb the library; its
   * error is rethrown in a microtask.
   * @example p.events.on('writeFailed', (e) => console.error(e.jobId, e.error.message));
   */
  readonly events: Emitter<PersistencyEvents> = mitt<PersistencyEvents>();
  readonly #options: Required<PersistencyOptions>;
  readonly #slots = new Map<string, Slot>();
  /** In-memory jobs keep their database image here between close and reopen. */
  readonly #images = new Map<string, Uint8Array>();
  readonly #jobHost: JobHost;
  readonly #clientHost: ClientHost;
  readonly #threads: WorkerThreads;
  /** Jobs holding a connection now: the ones idle release looks at. */
  readonly #resident = new Set<JobClient>();
  /** Jobs open now (released or not), and opens in progress. */
  #openJobs = 0;
  #opening = 0;
  #reopened = 0;
  #idleTimer: ReturnType<typeof setInterval> | undefined;
  #rootReady: Promise<Result<void, PersistencyError>> | undefined;
  #closing: Promise<Result<void, PersistencyError>> | undefined;

  static {
    releaseIdle = (p, idleForMs) => p.#releaseIdle(idleForMs);
  }

  private constructor(rootDir: string, options: Required<PersistencyOptions>) {
    this.rootDir = rootDir;
    this.#options = options;
    this.#threads = new WorkerThreads(
      options.workerThreads,
      options.prestartWorker,
      options.openTimeoutMs,
    );
    const writeFailed = this.#writeFailed.bind(this);
    this.#jobHost = { maxPayloadBytes: options.maxPayloadBytes, writeFailed };
    this.#clientHost = {
      writeFailed,
      attach: (jobId, pin, image, died) =>
        this.#threads.attach(this.#openRequest(jobId, image), pin, died),
      resident: (client, resident) => {
        if (resident) this.#resident.add(client);
        else this.#resident.delete(client);
      },
      reopened: () => {
        this.#reopened++;
      },
      died: (client, error) => {
        for (const [id, slot] of this.#slots) {
          if (slot.job === undefined || jobClient(slot.job) !== client) continue;
          if (slot.closing === undefined) this.#forget(id, slot, client);
          this.#emit('jobFailed', { jobId: id, error });
        }
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
   * calls give the same `Job`. `Err(Busy)` when another process or instance owns the file.
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
      ready: (previous ?? Promise.resolve()).then(() => this.#start(id)),
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
   * checkpointed and its worker has let go of the file (under `'per-job'`, its thread has
   * exited). A no-op for a job that is not open. `Err` if the checkpoint or the close
   * failed, or the worker died (commits made before stand).
   * @example await p.closeJob('tenant-1');
   */
  closeJob(id: string): ResultAsync<void, PersistencyError> {
    const slot = this.#slots.get(id);
    if (slot === undefined) return okAsync(undefined);
    if (slot.closing !== undefined) return new ResultAsync(slot.closing);
    const closeOpened = async (job: Job): Promise<Result<void, PersistencyError>> => {
      const outcome = await closeJobHandle(job);
      if (outcome.image !== undefined) this.#images.set(id, outcome.image);
      this.#forget(id, slot, jobClient(job));
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
   * Close job `id` if open, then delete its database and every sidecar file.
   * `Err(Busy)` if another process owns it. Dropping a job that has no file is `Ok`
   * (and still emits `jobClosed` with `dropped: true`).
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
   * Whether job `id` is open (an idle job that released its connection is still open).
   * @example if (!p.hasJob('tenant-1')) await p.openJob('tenant-1');
   */
  hasJob(id: string): boolean {
    return this.#openJob(id) !== undefined;
  }

  /**
   * What this instance holds now: jobs open, resident (holding a connection) and released,
   * and worker threads running. Counters only: cheap to call often.
   * @example const { openJobs, residentJobs, workerThreads } = p.stats();
   */
  stats(): PersistencyStats {
    const resident = this.#resident.size;
    return {
      openJobs: this.#openJobs + this.#opening,
      residentJobs: resident,
      releasedJobs: Math.max(0, this.#openJobs - resident),
      reopened: this.#reopened,
      workerThreads: this.#threads.running,
      mode: this.#options.workerThreads,
    };
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
  persistPut(jobId: string, category: string, key: Key, payload: Uint8Array): void {
    this.#write(jobId, [{ kind: 'put', category, key, payload }], (j) =>
      j.persistPut(category, key, payload),
    );
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

  /** @example await p.deleteAcked('t1', 'users', key('ada')) */
  deleteAcked(jobId: string, category: string, key: Key): ResultAsync<boolean, PersistencyError> {
    return this.#read(jobId, (j) => j.deleteAcked(category, key));
  }

  // -------------------------------------------------------------------------------------
  // Internals

  #openJob(id: string): Job | undefined {
    const slot = this.#slots.get(id);
    return slot?.closing === undefined && slot?.job?.running === true ? slot.job : undefined;
  }

  #write(jobId: string, ops: readonly TxOp[], run: (job: Job) => void, count?: number): void {
    const job = this.#openJob(jobId);
    if (job !== undefined) {
      run(job);
      return;
    }
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
            { code: (e as { code?: string }).code, cause: e },
          ),
        );
      },
    );
    return this.#rootReady;
  }

  #openRequest(id: string, image: Uint8Array | undefined): OpenRequest {
    const memory = this.rootDir === MEMORY_ROOT;
    const o = this.#options;
    const shared = o.workerThreads !== 'per-job';
    return {
      dbPath: memory
        ? MEMORY_ROOT
        : jobDbPath(this.rootDir, (jobFileStem(id) as { stem: string }).stem),
      image,
      busyTimeoutMs: o.busyTimeoutMs,
      statementBusyMs: shared ? o.sliceMs : undefined,
      journalSizeLimitBytes: o.journalSizeLimitBytes,
      maxJobBytes: o.maxJobBytes,
      verifyOnOpen: o.verifyOnOpen,
      // A thread shared by several jobs must not spin on one job's port.
      poll: shared ? undefined : pollSettings(o.pollMicros),
      sliceMs: shared ? o.sliceMs : undefined,
    };
  }

  async #start(id: string): Promise<Result<Job, PersistencyError>> {
    if (this.#closing !== undefined) return err(this.#closedError());
    if (this.rootDir !== MEMORY_ROOT) {
      const root = await this.#ensureRoot();
      if (root.isErr()) return err(root.error);
    }
    const pin = this.#threads.pin();
    const image = this.#images.get(id);
    this.#images.delete(id);
    const client = new JobClient(id, this.#clientHost, image, pin);
    this.#opening++;
    const opened = await client.open();
    this.#opening--;
    if (opened.isErr()) {
      this.#threads.unpin(pin);
      if (image !== undefined) this.#images.set(id, image);
      return err(opened.error);
    }
    this.#openJobs++;
    this.#startIdleRelease();
    const job = new Job(id, client, this.#jobHost);
    this.#emit('jobOpened', { jobId: id, file: opened.value.file });
    return ok(job);
  }

  /** The job is no longer open: unregister it and let go of its pin. */
  #forget(id: string, slot: Slot, client: JobClient): void {
    if (this.#slots.get(id) === slot) this.#slots.delete(id);
    if (client.forgotten) return;
    client.forgotten = true;
    this.#openJobs--;
    this.#threads.unpin(client.pin);
  }

  #startIdleRelease(): void {
    const idleMs = this.#options.idleCloseMs;
    if (idleMs <= 0 || this.#idleTimer !== undefined) return;
    // A job is released between idleCloseMs and 1.25 x idleCloseMs after its last work.
    this.#idleTimer = setInterval(() => void this.#releaseIdle(idleMs), Math.max(5, idleMs / 4));
    this.#idleTimer.unref();
  }

  /** Release every resident job idle for `idleForMs`; resolves once they have. */
  #releaseIdle(idleForMs: number): Promise<number> {
    const before = performance.now() - idleForMs;
    const released: Promise<void>[] = [];
    for (const client of this.#resident) {
      const done = client.releaseIfIdle(before);
      if (done !== undefined) released.push(done);
    }
    return Promise.all(released).then(() => released.length);
  }

  async #drop(id: string, stem: string): Promise<Result<void, PersistencyError>> {
    if (this.rootDir === MEMORY_ROOT) {
      this.#images.delete(id);
      this.#emit('jobClosed', { jobId: id, dropped: true });
      return ok(undefined);
    }
    const dbPath = jobDbPath(this.rootDir, stem);
    const files = [dbPath, ...SIDECAR_SUFFIXES.map((s) => dbPath + s)];
    if (existsSync(dbPath)) {
      // Take the file's lock first: never delete a job another process is using.
      try {
        KvBackend.probeLock(dbPath);
      } catch (e) {
        const error = fromErrorInfo(toErrorInfo(e, dbPath));
        if (error.kind === 'Busy') return err(error);
      }
    }
    try {
      for (const f of files) await rm(f, { force: true });
    } catch (e) {
      return err(
        new PersistencyError('Backend', `dropJob ${id}: ${(e as Error).message}`, { cause: e }),
      );
    }
    this.#emit('jobClosed', { jobId: id, dropped: true });
    return ok(undefined);
  }

  async #closeAll(): Promise<Result<void, PersistencyError>> {
    clearInterval(this.#idleTimer);
    const results = await Promise.all([...this.#slots.keys()].map((id) => this.closeJob(id)));
    await this.#threads.close();
    const failed = results.find((r) => r.isErr());
    return failed ?? ok(undefined);
  }
}

/**
 * @internal Release every job of `p` idle for at least `idleForMs` now, as the idle timer
 * would; resolves with how many were released once they have (tests use it in place of time).
 */
export function releaseIdleJobs(p: Persistency, idleForMs = 0): Promise<number> {
  return releaseIdle(p, idleForMs);
}
