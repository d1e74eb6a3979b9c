/*
 * The jobs of one Persistency (`Persistency` is its public face): the registry of open jobs,
 * opening (root creation, attach to a thread), closing, dropping, the counters of
 * `p.stats()` and the reporting of writes that failed. Releasing idle jobs: residency.ts.
 */
import { mkdirSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { err, errAsync, ok, okAsync, type Result, ResultAsync } from 'neverthrow';
import { MEMORY_ROOT } from './checks.js';
import type { ClientHost, JobHost, ReportWriteFailure } from './client-host.js';
import { clockAtOpen } from './clock.js';
import { deleteJobFiles } from './drop-files.js';
import { codeOf, PersistencyError } from './errors.js';
import { closeJobHandle, Job, jobClient } from './job.js';
import { JobClient } from './job-client.js';
import { describe } from './keys.js';
import {
  adoptLegacyJobFile,
  jobDbPath,
  jobFileStem,
  jobFilesIn,
  jobPathTooLong,
  jobStemIn,
} from './paths.js';
import type { OpenRequest } from './protocol/messages.js';
import { Residency } from './residency.js';
import { RootLock, type RootLockShare } from './root-lock.js';
import { WorkerThreads } from './threads.js';
import type { PersistencyEvents, PersistencyOptions, PersistencyStats } from './types.js';
import { pollSettings } from './worker/spawn.js';
import { FailureLedger, listedOps } from './write-failures.js';

/** `writes`: how many writes (batches) a `writeFailed` stands for, for the unheard warning. */
type Emit = <K extends keyof PersistencyEvents>(
  t: K,
  e: PersistencyEvents[K],
  writes?: number,
) => void;

interface Slot {
  /** Resolves when the job is open (or failed to open). */
  readonly ready: Promise<Result<Job, PersistencyError>>;
  job: Job | undefined;
  closing: Promise<Result<void, PersistencyError>> | undefined;
}

export class JobRegistry {
  readonly #rootDir: string;
  readonly #options: Required<PersistencyOptions>;
  readonly #emit: Emit;
  readonly #slots = new Map<string, Slot>();
  /** In-memory jobs keep their database image here between close and reopen. */
  readonly #images = new Map<string, Uint8Array>();
  /** The file stem of each job opening or open (see #stem). */
  readonly #stems = new Map<string, string>();
  readonly #jobHost: JobHost;
  readonly #clientHost: ClientHost;
  /** Failed writes per job id that no flush has reported yet. */
  readonly #failures = new FailureLedger();
  readonly #threads: WorkerThreads;
  /** Jobs holding a connection now, and their release when idle or beyond the cap. */
  readonly #residency: Residency;
  /** Jobs open now (released or not), and opens in progress. */
  #openJobs = 0;
  #opening = 0;
  #reopened = 0;
  #closed = false;
  /**
   * Each open job's share of the root's owner lock (src/root-lock.ts), given back when it is
   * no longer open; a drop holds one while it runs, a thread whose open timed out until it
   * has let go of the file.
   */
  readonly #rootShares = new Map<JobClient, RootLockShare>();
  /** Jobs whose attach timed out, until the thread has let go of the file (see attach). */
  readonly #lettingGo = new Map<string, Promise<void>>();

  constructor(rootDir: string, options: Required<PersistencyOptions>, emit: Emit) {
    this.#rootDir = rootDir;
    this.#options = options;
    this.#emit = emit;
    this.#residency = new Residency(options.idleCloseMs, options.maxResidentJobs);
    this.#threads = new WorkerThreads(
      options.workerThreads,
      options.prestartWorker,
      options.openTimeoutMs,
    );
    const writeFailed = this.writeFailed;
    this.#jobHost = {
      maxPayloadBytes: options.maxPayloadBytes,
      iteratorIdleMs: options.iteratorIdleMs,
      now: options.clock,
      writeFailed,
    };
    this.#clientHost = {
      writeFailed,
      clock: options.clock === Date.now ? undefined : options.clock,
      attach: (jobId, pin, image, fileId, died) =>
        this.#threads.attach({ ...this.#openRequest(jobId, image), fileId }, pin, died, (p) =>
          this.#abandoned(jobId, p),
        ),
      resident: (client, resident) => this.#residency.set(client, resident),
      takeFailures: (jobId) => this.#failures.take(jobId),
      recordFailures: (jobId, count, first) => this.#failures.record(jobId, count, first),
      reopened: () => void this.#reopened++,
      died: (client, error) => {
        for (const [id, slot] of this.#slots) {
          if (slot.job === undefined || jobClient(slot.job) !== client) continue;
          if (slot.closing === undefined) this.#forget(id, slot, client);
          this.#emit('jobFailed', { jobId: id, error });
        }
      },
    };
  }

  stats(): PersistencyStats {
    const resident = this.#residency.size;
    return {
      openJobs: this.#openJobs + this.#opening,
      residentJobs: resident,
      releasedJobs: Math.max(0, this.#openJobs - resident),
      reopened: this.#reopened,
      workerThreads: this.#threads.running,
      mode: this.#options.workerThreads,
    };
  }

  open(id: string): ResultAsync<Job, PersistencyError> {
    if (this.#closed) return errAsync(this.closedError());
    const slot = this.#slots.get(id);
    if (slot !== undefined && slot.closing === undefined) return new ResultAsync(slot.ready);
    const file = this.#stem(id);
    if (!file.ok) return errAsync(file.error);
    const tooLong =
      this.#rootDir === MEMORY_ROOT ? undefined : jobPathTooLong(this.#rootDir, file.stem);
    if (tooLong !== undefined) return errAsync(tooLong);
    const previous = slot?.closing;
    const next: Slot = {
      ready: (previous ?? Promise.resolve()).then(() =>
        this.#start(id, (job) => {
          next.job = job;
        }),
      ),
      job: undefined,
      closing: undefined,
    };
    this.#slots.set(id, next);
    void next.ready.then((r) => {
      if (r.isErr() && this.#slots.get(id) === next) this.#slots.delete(id);
    });
    return new ResultAsync(next.ready);
  }

  close(id: string): ResultAsync<void, PersistencyError> {
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

  drop(id: string): ResultAsync<void, PersistencyError> {
    // Closed, or closing: its jobs' last commits may still be on their way to these files.
    if (this.#closed) return errAsync(this.closedError());
    const open = this.#stems.get(id); // the file an open job keeps, even if it is gone
    const file = open === undefined ? this.#stem(id) : { ok: true as const, stem: open };
    if (!file.ok) return errAsync(file.error);
    // The drop occupies the id's slot until the files are gone, so an openJob issued
    // meanwhile waits for it instead of opening a file about to be deleted.
    const closed = this.close(id);
    const dropping = (async (): Promise<Result<void, PersistencyError>> => {
      const close = await closed;
      const drop = await this.#deleteFiles(id, file.stem);
      return drop.isErr() ? drop : close;
    })();
    const slot: Slot = {
      ready: dropping.then(() => err(this.notFound(id))),
      job: undefined,
      closing: dropping,
    };
    this.#slots.set(id, slot);
    void dropping.then(() => {
      if (this.#slots.get(id) === slot) this.#slots.delete(id);
    });
    return new ResultAsync(dropping);
  }

  openJobOf(id: string): Job | undefined {
    const slot = this.#slots.get(id);
    return slot?.closing === undefined && slot?.job?.running === true ? slot.job : undefined;
  }

  notFound(id: unknown): PersistencyError {
    return this.#closed
      ? this.closedError()
      : new PersistencyError('JobNotFound', `job ${describe(id)} is not open`);
  }

  closedError(): PersistencyError {
    return new PersistencyError('Closed', `the Persistency for ${this.#rootDir} is closed`);
  }

  readonly writeFailed: ReportWriteFailure = (jobId, reason, ops, error, count, counted, n = 1) => {
    const listed = listedOps(ops);
    // The next flush counts the failed writes (n batches, whatever their size).
    if (counted !== true) this.#failures.record(jobId, n, error);
    const event = { jobId, reason, ops: listed.ops, count: count ?? listed.count, error };
    this.#emit('writeFailed', event, n);
  };

  /**
   * Create the root if it is missing (also when it was removed after jobs were opened).
   * Synchronous, like the lock taken right after it: an open holds its share of the root
   * lock from its first step, so no drop by another instance can slip in before it.
   */
  #ensureRoot(): Result<void, PersistencyError> {
    try {
      mkdirSync(this.#rootDir, { recursive: true });
      return ok(undefined);
    } catch (e) {
      const message = `cannot create rootDir ${this.#rootDir}: ${(e as Error).message}`;
      return err(new PersistencyError('Backend', message, { code: codeOf(e), cause: e }));
    }
  }

  /** Job `id`'s file stem: this version's, or a 0.1 one it keeps (paths.ts jobStemIn). */
  #stem(id: string): ReturnType<typeof jobFileStem> {
    return this.#rootDir === MEMORY_ROOT ? jobFileStem(id) : jobStemIn(this.#rootDir, id);
  }

  #openRequest(id: string, image: Uint8Array | undefined): OpenRequest {
    const stem = this.#stems.get(id);
    if (stem === undefined) throw new Error(`persistency: job ${id} is neither opening nor open`);
    const o = this.#options;
    const shared = o.workerThreads !== 'per-job';
    return {
      dbPath: this.#rootDir === MEMORY_ROOT ? MEMORY_ROOT : jobDbPath(this.#rootDir, stem),
      image,
      busyTimeoutMs: o.busyTimeoutMs,
      statementBusyMs: shared ? o.sliceMs : undefined,
      journalSizeLimitBytes: o.journalSizeLimitBytes,
      maxJobBytes: o.maxJobBytes,
      verifyOnOpen: o.verifyOnOpen,
      now: clockAtOpen(o.clock),
      poll: shared ? undefined : pollSettings(o.pollMicros), // a shared thread never spins
      sliceMs: shared ? o.sliceMs : undefined,
    };
  }

  /** Open job `id`; `opened` registers it before anyone hears of it (jobOpened, listJobs). */
  async #start(id: string, opened: (job: Job) => void): Promise<Result<Job, PersistencyError>> {
    if (this.#closed) return err(this.closedError());
    // Looked up again: a drop the open waited for may have taken a 0.1 file it would keep.
    const file = this.#stem(id);
    if (!file.ok) return err(file.error);
    const stem = file.stem;
    let share: RootLockShare | undefined;
    let undoAdoption: (() => void) | undefined; // a 0.1 file renamed for this open
    if (this.#rootDir !== MEMORY_ROOT) {
      const root = this.#ensureRoot();
      if (root.isErr()) return err(root.error);
      const owned = RootLock.of(this.#rootDir).acquire(jobDbPath(this.#rootDir, stem), this);
      if (owned.isErr()) return err(owned.error);
      share = owned.value;
      try {
        undoAdoption = adoptLegacyJobFile(this.#rootDir, id);
      } catch (e) {
        share.release();
        const message = `cannot rename the 0.1 file of job ${id}: ${(e as Error).message}`;
        return err(new PersistencyError('Backend', message, { code: codeOf(e), cause: e }));
      }
    }
    const pin = this.#threads.pin();
    // The image stays listed (listJobs) until the job is.
    const image = this.#images.get(id);
    this.#stems.set(id, stem); // fixed while the job is open: its attaches open this file
    const client = new JobClient(id, this.#clientHost, image, pin);
    this.#opening++;
    const attached = await client.open();
    this.#opening--;
    if (attached.isErr()) {
      this.#stems.delete(id);
      if (attached.error.kind !== 'Timeout') undoAdoption?.(); // refused: its thread let go
      this.#releaseShare(id, share);
      this.#threads.unpin(pin);
      return err(attached.error);
    }
    this.#openJobs++;
    if (share !== undefined) this.#rootShares.set(client, share);
    this.#residency.startIdleTimer();
    const job = new Job(id, client, this.#jobHost);
    opened(job);
    this.#images.delete(id);
    this.#emit('jobOpened', { jobId: id, file: attached.value.file });
    return ok(job);
  }

  /** The job is no longer open: unregister it and let go of its pin. */
  #forget(id: string, slot: Slot, client: JobClient): void {
    if (this.#slots.get(id) === slot) this.#slots.delete(id);
    if (client.forgotten) return;
    client.forgotten = true;
    this.#stems.delete(id); // a later open of the id looks its file up again
    this.#openJobs--;
    this.#threads.unpin(client.pin);
    this.#releaseShare(id, this.#rootShares.get(client));
    this.#rootShares.delete(client);
  }

  /** An attach of job `id` timed out: its thread may use the file until `lettingGo`. */
  #abandoned(id: string, lettingGo: Promise<void>): void {
    const all = Promise.all([this.#lettingGo.get(id), lettingGo]).then(() => {
      if (this.#lettingGo.get(id) === all) this.#lettingGo.delete(id);
    });
    this.#lettingGo.set(id, all);
  }

  /**
   * Give back a job's share of the root lock, once no thread that timed out opening the
   * job can still be using its file: another owner must not find it in use.
   */
  #releaseShare(id: string, share: RootLockShare | undefined): void {
    const lettingGo = this.#lettingGo.get(id);
    if (lettingGo === undefined) share?.release();
    else void lettingGo.then(() => share?.release());
  }

  /** The id of every job of the root, open or not, sorted (see Persistency.listJobs). */
  async listJobs(): Promise<Result<string[], PersistencyError>> {
    if (this.#rootDir === MEMORY_ROOT) {
      const ids = new Set(this.#images.keys());
      for (const [id, slot] of this.#slots) if (slot.job !== undefined) ids.add(id);
      return ok([...ids].sort()); // UTF-16 code-unit order, as for files
    }
    try {
      const entries = await readdir(this.#rootDir, { withFileTypes: true });
      return ok(jobFilesIn(entries).map((f) => f.id));
    } catch (e) {
      if (codeOf(e) === 'ENOENT') return ok([]); // no root yet: no job
      const message = `cannot list the jobs of ${this.#rootDir}: ${(e as Error).message}`;
      return err(new PersistencyError('Backend', message, { code: codeOf(e), cause: e }));
    }
  }

  /** Release every resident job idle for `idleForMs`; resolves once they have and a spare booted. */
  async releaseIdle(idleForMs: number): Promise<number> {
    const released = await this.#residency.releaseIdle(idleForMs);
    await this.#threads.spareBooted();
    return released;
  }

  async #deleteFiles(id: string, stem: string): Promise<Result<void, PersistencyError>> {
    if (this.#rootDir === MEMORY_ROOT) {
      this.#images.delete(id);
      this.#emit('jobClosed', { jobId: id, dropped: true });
      return ok(undefined);
    }
    await this.#lettingGo.get(id); // a thread that timed out opening the job may create it
    const deleted = await deleteJobFiles(this.#rootDir, id, stem, this);
    if (deleted.isErr()) return deleted;
    this.#emit('jobClosed', { jobId: id, dropped: true });
    return ok(undefined);
  }

  async closeAll(): Promise<Result<void, PersistencyError>> {
    this.#closed = true;
    this.#residency.stopIdleTimer();
    const results = await Promise.all([...this.#slots.keys()].map((id) => this.close(id)));
    await this.#threads.close();
    const failed = results.find((r) => r.isErr());
    return failed ?? ok(undefined);
  }
}
