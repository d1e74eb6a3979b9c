/*
 * A job's side of the conversation with its worker thread: it packs a turn's requests into
 * one frame, sends frames over the job's port (src/client-port.ts), hands replies to the
 * reads waiting for them (src/reply-queue.ts), and takes the job through its life:
 * attached to a thread, released when idle (no connection, no file descriptor, under
 * 'per-job' no thread), attached again by its next call, closed, or dead with its thread.
 */
import type { Result, ResultAsync } from 'neverthrow';
import type { ClientHost, CloseOutcome } from './client-host.js';
import { ClientPort } from './client-port.js';
import { PersistencyError } from './errors.js';
import { fileMoved } from './file-identity.js';
import type { ByteWriter } from './protocol/bytes.js';
import { type FromWorker, fromErrorInfo, type ToWorker } from './protocol/messages.js';
import type { ReplyExtras, ReplyValue } from './protocol/replies.js';
import { batchOps } from './protocol/request-reader.js';
import { ReplyQueue } from './reply-queue.js';
import type { Attachment } from './threads.js';
import { TurnFrame } from './turn-frame.js';
import { WorkerHolds } from './worker-holds.js';
import { failUnsent, handOverUnflushed, reportUnconfirmed } from './write-failures.js';

const NO_EXTRAS: ReplyExtras = { errors: [], attached: [] };

type State =
  /** Served by a thread through `#link`. */
  | 'attached'
  /** Asked to release its connection; work waits in `#link` until it has. */
  | 'releasing'
  /** Open, holding no connection: the next frame attaches it again. */
  | 'released'
  | 'attaching'
  | 'closing'
  | 'closed'
  | 'dead';

export class JobClient {
  readonly #id: string;
  readonly #host: ClientHost;
  #state: State = 'attaching';
  /** The thread's port while attached, and the messages waiting for one. */
  readonly #link = new ClientPort();
  /** The job's file (undefined: `:memory:`) and its identity: a reattach opens that file or fails. */
  #file: string | undefined;
  #fileId: string | undefined;
  #deathError: PersistencyError | undefined;
  /** A released `:memory:` job's database, kept until it is attached again. */
  #image: Uint8Array | undefined;

  readonly #turn: TurnFrame;
  /** Reads and flushes waiting for their reply, in issue order. */
  readonly #replies = new ReplyQueue();
  /** What the worker holds for the job besides its connection. */
  readonly holds = new WorkerHolds();
  /** When the job last had work (`performance.now()`), for idle release. */
  lastActive = performance.now();

  #closeRequested = false;
  /** Resolves once the thread a release let go of is gone (a job's own thread exits). */
  #releaseExited: Promise<void> = Promise.resolve();
  #closed: Promise<CloseOutcome> | undefined;
  #closeResolve: ((o: CloseOutcome) => void) | undefined;

  /** The pool thread the job is pinned to while open (undefined: a thread of its own). */
  readonly pin: number | undefined;
  /** Set by the owner once the job is no longer counted as open. */
  forgotten = false;
  /** Settles the release asked for: true once it has happened, false if it did not. */
  #releaseDone: ((released: boolean) => void) | undefined;

  constructor(
    id: string,
    host: ClientHost,
    image: Uint8Array | undefined,
    pin: number | undefined,
  ) {
    this.#id = id;
    this.#host = host;
    this.#image = image;
    this.pin = pin;
    this.#turn = new TurnFrame(
      () => this.send(),
      () => this.holds.watches?.watching() === true,
      host.clock,
    );
  }

  /** Attach for the first time; the job is usable once this resolves Ok. */
  async open(): Promise<Result<{ file: string | undefined }, PersistencyError>> {
    const r = await this.#attach();
    return r.map((a) => ({ file: a.file }));
  }

  /** Open: taking calls (attached, released or on the way between, no close asked for). */
  get running(): boolean {
    return this.#open && !this.#closeRequested;
  }

  get #open(): boolean {
    const s = this.#state;
    return s === 'attached' || s === 'releasing' || s === 'released' || s === 'attaching';
  }

  notOpenError(): PersistencyError {
    if (this.#state === 'dead') {
      return new PersistencyError(
        'Closed',
        `job ${this.#id}: its worker died (${this.#deathError?.message ?? 'unknown cause'}); open it again`,
      );
    }
    return new PersistencyError('Closed', `job ${this.#id} is closed`);
  }

  // -------------------------------------------------------------------------------------
  // Frames

  /**
   * The current turn's frame, started on first use and sent at the end of the turn; with
   * `write`, one record written into it (see TurnFrame.write).
   */
  frame(write?: (w: ByteWriter) => void): ByteWriter {
    if (!this.#turn.open) this.lastActive = performance.now();
    return write === undefined ? this.#turn.writer() : this.#turn.write(write);
  }

  /** A fire-and-forget write of `ops` ops was just written into the frame `w`. */
  wrote(w: ByteWriter, ops: number): void {
    this.#link.wrote(ops);
    this.#turn.sendIfLarge(w);
  }

  /**
   * A read or flush record was just written into the frame: its reply will resolve this.
   * A flush also reports the writes this client failed since the previous flush.
   */
  request<T>(flush = false, shape?: (reply: ReplyValue) => T): ResultAsync<T, PersistencyError> {
    this.#turn.readAdded();
    const failures = flush ? { earlier: this.#host.takeFailures(this.#id) } : undefined;
    const reply = this.#replies.awaitReply<T>(failures, shape, this.#link.issued());
    this.#updateRef();
    return reply;
  }

  send(): void {
    const taken = this.#turn.take();
    if (taken !== undefined) this.post(taken[0], taken[1]);
  }

  /** Post to the worker, or keep it for when the job is attached again. */
  post(msg: ToWorker, transfer: ArrayBuffer[] = []): void {
    const posted = this.#link.post(msg, transfer, this.#state === 'attached');
    if (!posted && this.#state === 'released') {
      this.#host.reopened();
      void this.#attach();
    }
    this.#updateRef();
  }

  /**
   * Keep the process alive only while the worker has work we wait on, a release or close
   * is under way, or work waits for the job to be attached again.
   */
  #updateRef(): void {
    this.#link.keepProcess(
      this.#link.framesInFlight > 0 ||
        this.#replies.pending > 0 ||
        this.#state === 'closing' ||
        this.#state === 'releasing' ||
        this.#closeRequested ||
        this.holds.keepProcess ||
        this.#link.waiting > 0,
    );
  }

  // -------------------------------------------------------------------------------------
  // Life

  async #attach(): Promise<Result<Attachment, PersistencyError>> {
    this.#state = 'attaching';
    const died = (e: PersistencyError) => this.#died(e);
    const r = await this.#host.attach(this.#id, this.pin, this.#image, this.#fileId, died);
    if (r.isErr()) {
      this.#attachFailed(r.error);
      return r;
    }
    const a = r.value;
    this.#image = undefined; // the worker has it now
    this.#file = a.file;
    this.#fileId = a.fileId;
    this.#link.connect(a, (m) => this.#onMessage(m));
    this.#host.resident(this, true);
    this.#serve();
    return r;
  }

  /** Attached (again): send what waited, then the close if one was asked for. */
  #serve(): void {
    this.#state = 'attached';
    this.lastActive = performance.now();
    this.#link.postWaiting();
    if (this.#closeRequested) this.#postClose();
    this.#updateRef();
  }

  /** Everything waiting for this attach fails with its error; the job stays released. */
  #attachFailed(error: PersistencyError): void {
    if (this.#state !== 'attaching') return;
    this.#failUnsent(error);
    this.#state = 'released';
    if (this.#closeRequested) this.#finishClose({ image: this.#image, error });
  }

  /** Fail what never reached a thread (see failUnsent). */
  #failUnsent(error: PersistencyError): void {
    const unsent = this.#link.takeWaiting();
    const taken = this.#turn.take();
    if (taken !== undefined) unsent.push(taken[0]);
    this.holds.unsent(unsent, error);
    failUnsent(unsent, this.#replies, error, (batch, e, counted) =>
      this.#reportBatch(batch, e, counted),
    );
  }

  /**
   * Release the connection if the job has had no work since `before` (performance.now());
   * the promise resolves true once it is released (its own thread gone), false if the
   * worker declined or died instead.
   */
  releaseIfIdle(before: number): Promise<boolean> | undefined {
    if (
      this.#state !== 'attached' ||
      this.#closeRequested ||
      this.holds.count > 0 ||
      this.lastActive > before ||
      this.#turn.open ||
      this.#link.framesInFlight > 0 ||
      this.#replies.pending > 0
    ) {
      return undefined;
    }
    this.#link.post({ t: 'release' });
    this.#state = 'releasing';
    this.#updateRef(); // until it is released, the process waits for it
    return new Promise((resolve) => {
      this.#releaseDone = resolve;
    });
  }

  /** The release asked for, taken: a later release of the job has its own. */
  #takeRelease(): ((released: boolean) => void) | undefined {
    const done = this.#releaseDone;
    this.#releaseDone = undefined;
    return done;
  }

  /** Drain, commit, checkpoint, close the connection (and the job's own thread). */
  close(): Promise<CloseOutcome> {
    if (this.#closed !== undefined) return this.#closed;
    if (!this.running) {
      this.#closed = Promise.resolve({ image: undefined, error: undefined });
      return this.#closed;
    }
    this.send();
    this.#closeRequested = true; // from now on the handle takes no calls
    this.#closed = new Promise((resolve) => {
      this.#closeResolve = resolve;
    });
    if (this.#state === 'attached') this.#postClose();
    else if (this.#state === 'released') {
      void this.#releaseExited.then(() =>
        this.#finishClose({ image: this.#image, error: this.#fileMoved() }),
      );
    }
    // 'attaching' and 'releasing' close once they are done.
    this.#updateRef();
    return this.#closed;
  }

  /** A released job's file, if it is no longer the one it had (closing it then is Err). */
  #fileMoved(): PersistencyError | undefined {
    if (this.#file === undefined || this.#fileId === undefined) return undefined;
    const moved = fileMoved(this.#file, this.#fileId, 'while the job was released');
    return moved === undefined ? undefined : fromErrorInfo(moved);
  }

  #postClose(): void {
    this.#link.post({ t: 'close' });
    this.#state = 'closing';
    this.#updateRef();
  }

  #finishClose(outcome: CloseOutcome): void {
    if (this.#state !== 'dead') this.#state = 'closed';
    this.#host.resident(this, false);
    const closed = new PersistencyError('Closed', `job ${this.#id} is closed`);
    this.#replies.failAll(closed);
    this.holds.ended(closed);
    this.#closeResolve?.(outcome);
  }

  /** The port closed after `closed` or `released`: let go of the thread. */
  #detached(m: Extract<FromWorker, { t: 'closed' | 'released' }>): void {
    if (m.unflushed !== undefined) {
      const record = (n: number, first: PersistencyError) =>
        this.#host.recordFailures(this.#id, n, first);
      handOverUnflushed(fromErrorInfo(m.unflushed), this.#replies, record);
    }
    const exited = this.#link.detach();
    this.#host.resident(this, false);
    if (m.t === 'released') {
      this.#image = m.image;
      this.#state = 'released';
      this.#turn.dropIdle(); // a released job keeps as little as it can
      this.#releaseExited = exited;
      // Taken now: a call waiting in `#link` may take the job up and release it again before
      // the thread has exited.
      const done = this.#takeRelease();
      void exited.then(() => done?.(true));
      if (this.#link.waiting > 0) {
        this.#host.reopened();
        void this.#attach();
      } else if (this.#closeRequested) {
        void exited.then(() => this.#finishClose({ image: this.#image, error: this.#fileMoved() }));
      }
      return;
    }
    const outcome: CloseOutcome = {
      image: m.image,
      error: m.error === undefined ? undefined : fromErrorInfo(m.error),
      polls: m.polls,
      reads: m.reads,
    };
    void exited.then(() => this.#finishClose(outcome));
  }

  /** The thread died. Messages it sent before dying are read first (a close may be among them). */
  #died(error: PersistencyError): void {
    if (!this.#link.drain((m) => this.#onMessage(m))) return; // closed or released before it died
    const wasOpen = this.#open || this.#state === 'closing';
    this.#state = 'dead';
    this.#deathError = new PersistencyError('Backend', `job ${this.#id}: ${error.message}`, {
      cause: error.cause ?? error,
      code: error.code,
    });
    this.#failUnsent(this.#deathError);
    reportUnconfirmed(this.#host, this.#id, this.#link.takeUnconfirmed(), this.#deathError);
    this.#takeRelease()?.(false);
    this.holds.ended(this.notOpenError());
    if (wasOpen) this.#host.died(this, this.#deathError);
    this.#host.resident(this, false);
    if (this.#closeRequested) this.#closeResolve?.({ image: undefined, error: this.#deathError });
  }

  // -------------------------------------------------------------------------------------
  // Replies

  #onMessage(m: FromWorker): void {
    if (m instanceof Uint8Array) {
      this.#onReplies(m, NO_EXTRAS);
      return;
    }
    switch (m.t) {
      case 'replies':
        // Watchers first: whoever awaits a reply of the same commit finds them told.
        if (m.changes !== undefined) this.holds.changes(m.changes, m.changeFrames ?? []);
        this.#onReplies(m.bytes, m);
        for (const f of m.failures) this.#reportBatch(f.record, fromErrorInfo(f.error), true);
        return;
      case 'backupDone':
        this.holds.backupDone(m.id, m.error);
        this.#updateRef();
        return;
      case 'closed':
      case 'released':
        this.#detached(m);
        return;
      case 'releaseDeclined':
        // A `:memory:` job whose image could not be taken stays attached.
        if (this.#state !== 'releasing') return;
        this.#takeRelease()?.(false);
        this.#serve();
        return;
    }
  }

  /** A group's replies: how many frames it finished, then one record per read or flush. */
  #onReplies(bytes: Uint8Array, extras: ReplyExtras): void {
    this.#link.settled(this.#replies.settle(bytes, extras), this.#replies.answeredAfter);
    this.lastActive = performance.now();
    this.#updateRef();
  }

  /**
   * Report a batch that did not reach the database, its ops decoded from its record;
   * `counted`: a flush reports it (the worker's, or one that failed with it).
   */
  #reportBatch(record: Uint8Array, error: PersistencyError, counted: boolean): void {
    const { ops, count } = batchOps(record);
    this.#host.writeFailed(this.#id, 'backend', ops, error, count, counted);
  }
}
