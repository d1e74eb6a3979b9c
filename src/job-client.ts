/*
 * A job's side of the conversation with its worker thread: it packs a turn's requests into
 * one frame, sends frames over the job's port, matches reply records to the reads waiting
 * for them (first in, first out), and takes the job through its life: attached to a
 * thread, released when idle (no connection, no file descriptor, under 'per-job' no
 * thread), attached again by its next call, closed, or dead with its thread.
 */
import { type MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import { type Result, ResultAsync } from 'neverthrow';
import { PersistencyError } from './errors.js';
import type { ReportWriteFailure } from './job.js';
import { ByteWriter, COPY_LIMIT, takeBytes } from './protocol/bytes.js';
import {
  type BatchFailure,
  type ErrorInfo,
  type FromWorker,
  fromErrorInfo,
  type PollStats,
  type ReadStats,
  type ToWorker,
} from './protocol/messages.js';
import { batchesOf, batchOps } from './protocol/requests.js';
import { ReplyQueue } from './reply-queue.js';
import type { Attachment, OnThreadDeath } from './threads.js';

/**
 * Send a turn's frame early once it holds this much: a huge turn then streams to the
 * worker, which starts applying it while the rest is still being encoded.
 */
export const FRAME_SEND_BYTES = 1024 * 1024;
const MIN_FRAME_BYTES = 256;
/**
 * Send a turn's frame early once it holds this many reads, so the worker starts on them
 * while the rest of the turn is still being issued.
 */
const FRAME_SEND_READS = 32;
const toInfo = (e: PersistencyError): ErrorInfo => ({
  kind: e.kind,
  message: e.message,
  code: e.code,
});

type Resolver = (r: Result<unknown, PersistencyError>) => void;

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
    died: OnThreadDeath,
  ): Promise<Result<Attachment, PersistencyError>>;
  /** The job now holds (or no longer holds) a connection. */
  resident(client: JobClient, resident: boolean): void;
  /** A released job is being taken up again. */
  reopened(): void;
  readonly writeFailed: ReportWriteFailure;
  /** The job's thread died while it was open. */
  died(client: JobClient, error: PersistencyError): void;
}

type State =
  /** Served by a thread through `#port`. */
  | 'attached'
  /** Asked to release its connection; work waits in the backlog until it has. */
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
  #port: MessagePort | undefined;
  #attachment: Attachment | undefined;
  #deathError: PersistencyError | undefined;
  /** A released `:memory:` job's database, kept until it is attached again. */
  #image: Uint8Array | undefined;

  /** The frame of the current turn, sent at the end of the turn. */
  #frame: ByteWriter | undefined;
  #frameSizeHint = MIN_FRAME_BYTES;
  /** Reads in the current frame. */
  #frameReads = 0;
  /** A writer whose bytes were copied out, ready for the next turn. */
  #idleWriter: ByteWriter | undefined;
  /** Messages waiting for the job to be attached, in order. */
  #backlog: [ToWorker, ArrayBuffer[]][] = [];
  /** Reads and flushes waiting for their reply, in issue order. */
  readonly #replies = new ReplyQueue();
  #framesInFlight = 0;
  #referenced = false;
  /** When the job last had work (`performance.now()`), for idle release. */
  lastActive = performance.now();

  #closeRequested = false;
  #closed: Promise<CloseOutcome> | undefined;
  #closeResolve: ((o: CloseOutcome) => void) | undefined;

  /** The pool thread the job is pinned to while open (undefined: a thread of its own). */
  readonly pin: number | undefined;
  /** Set by the owner once the job is no longer counted as open. */
  forgotten = false;
  /** Resolved when a release asked for has happened. */
  #releaseDone: (() => void) | undefined;

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
  }

  /** Attach for the first time; the job is usable once this resolves Ok. */
  async open(): Promise<Result<{ file: string | undefined }, PersistencyError>> {
    const r = await this.#attach();
    return r.map((a) => ({ file: a.file }));
  }

  /** Open: taking calls (attached, released or on the way between). */
  get running(): boolean {
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

  /** The current turn's frame, started on first use and sent at the end of the turn. */
  frame(): ByteWriter {
    if (this.#frame !== undefined) return this.#frame;
    // Reuse the last frame's writer when its bytes were copied out, not handed over.
    const w = this.#idleWriter ?? new ByteWriter(this.#frameSizeHint);
    this.#idleWriter = undefined;
    w.pos = 0;
    this.#frame = w;
    this.#frameReads = 0;
    this.lastActive = performance.now();
    queueMicrotask(() => {
      if (this.#frame === w) this.send();
    });
    return w;
  }

  /** Send the turn's frame now if it has grown large. */
  sendIfLarge(w: ByteWriter): void {
    if (w.pos >= FRAME_SEND_BYTES) this.send();
  }

  /** A read or flush record was just written into the frame: its reply will resolve this. */
  request<T>(): ResultAsync<T, PersistencyError> {
    if (++this.#frameReads >= FRAME_SEND_READS) this.send();
    return new ResultAsync(
      new Promise<Result<T, PersistencyError>>((resolve) => {
        this.#replies.push(resolve as Resolver);
        this.#updateRef();
      }),
    );
  }

  send(): void {
    const w = this.#frame;
    if (w === undefined) return;
    this.#frame = undefined;
    if (w.pos === 0) {
      this.#idleWriter = w;
      return;
    }
    // Size a new frame like this one: small for a get, large for a bulk load.
    this.#frameSizeHint = Math.min(Math.max(w.pos, MIN_FRAME_BYTES), FRAME_SEND_BYTES * 2);
    const [bytes, transfer, handedOver] = takeBytes(w);
    this.post(bytes, transfer);
    if (!handedOver && w.buf.length <= COPY_LIMIT * 2) this.#idleWriter = w;
  }

  /** Post to the worker, or keep it for when the job is attached again. */
  post(msg: ToWorker, transfer: ArrayBuffer[] = []): void {
    const port = this.#port;
    if (this.#state === 'attached' && port !== undefined) {
      if (msg instanceof Uint8Array) this.#framesInFlight++;
      port.postMessage(msg, transfer);
      this.#updateRef();
      return;
    }
    this.#backlog.push([msg, transfer]);
    if (this.#state === 'released') {
      this.#host.reopened();
      void this.#attach();
    }
  }

  /** Keep the process alive only while the worker has work we wait on. */
  #updateRef(): void {
    const port = this.#port;
    if (port === undefined) return;
    const busy =
      this.#framesInFlight > 0 ||
      this.#replies.pending > 0 ||
      this.#state === 'closing' ||
      this.#backlog.length > 0;
    if (busy === this.#referenced) return;
    this.#referenced = busy;
    if (busy) port.ref();
    else port.unref();
  }

  // -------------------------------------------------------------------------------------
  // Life

  async #attach(): Promise<Result<Attachment, PersistencyError>> {
    this.#state = 'attaching';
    const r = await this.#host.attach(this.#id, this.pin, this.#image, (e) => this.#died(e));
    if (r.isErr()) {
      this.#attachFailed(r.error);
      return r;
    }
    const a = r.value;
    this.#image = undefined; // the worker has it now
    this.#attachment = a;
    this.#port = a.port;
    this.#referenced = true; // the handshake's listener left the port referenced
    a.listen((m) => this.#onMessage(m));
    this.#state = 'attached';
    this.lastActive = performance.now();
    this.#host.resident(this, true);
    const backlog = this.#backlog;
    this.#backlog = [];
    for (const [msg, transfer] of backlog) this.post(msg, transfer);
    if (this.#closeRequested) this.#postClose();
    this.#updateRef();
    return r;
  }

  /** Everything waiting for this attach fails with its error; the job stays released. */
  #attachFailed(error: PersistencyError): void {
    this.#state = 'released';
    const backlog = this.#backlog;
    this.#backlog = [];
    this.#replies.failAll(error);
    for (const [msg] of backlog) {
      if (!(msg instanceof Uint8Array)) continue;
      for (const record of batchesOf(msg))
        this.#reportFailure({ record, error: toInfo(error) }, error);
    }
    if (this.#closeRequested) this.#finishClose({ image: this.#image, error });
  }

  /**
   * Release the connection if the job has had no work since `before` (performance.now());
   * the promise resolves once it is released (or is anything else but releasing).
   */
  releaseIfIdle(before: number): Promise<void> | undefined {
    if (
      this.#state !== 'attached' ||
      this.lastActive > before ||
      this.#frame !== undefined ||
      this.#framesInFlight > 0 ||
      this.#replies.pending > 0
    ) {
      return undefined;
    }
    (this.#port as MessagePort).postMessage({ t: 'release' } satisfies ToWorker);
    this.#state = 'releasing';
    return new Promise((resolve) => {
      this.#releaseDone = resolve;
    });
  }

  #settleRelease(): void {
    const done = this.#releaseDone;
    this.#releaseDone = undefined;
    done?.();
  }

  /** Drain, commit, checkpoint, close the connection (and the job's own thread). */
  close(): Promise<CloseOutcome> {
    if (this.#closed !== undefined) return this.#closed;
    if (!this.running) {
      this.#closed = Promise.resolve({ image: undefined, error: undefined });
      return this.#closed;
    }
    this.send();
    this.#closeRequested = true;
    this.#closed = new Promise((resolve) => {
      this.#closeResolve = resolve;
    });
    if (this.#state === 'attached') this.#postClose();
    else if (this.#state === 'released')
      this.#finishClose({ image: this.#image, error: undefined });
    // 'attaching' and 'releasing' close once they are done.
    return this.#closed;
  }

  #postClose(): void {
    (this.#port as MessagePort).postMessage({ t: 'close' } satisfies ToWorker);
    this.#state = 'closing';
    this.#updateRef();
  }

  #finishClose(outcome: CloseOutcome): void {
    if (this.#state !== 'dead') this.#state = 'closed';
    this.#host.resident(this, false);
    this.#replies.failAll(new PersistencyError('Closed', `job ${this.#id} is closed`));
    this.#closeResolve?.(outcome);
  }

  /** The port closed after `closed` or `released`: let go of the thread. */
  #detached(m: {
    t: 'closed' | 'released';
    image: Uint8Array | undefined;
    error?: ErrorInfo;
    polls: PollStats;
    reads: ReadStats;
  }): void {
    const attachment = this.#attachment as Attachment;
    this.#attachment = undefined;
    this.#port = undefined;
    this.#referenced = false;
    this.#framesInFlight = 0;
    this.#host.resident(this, false);
    const exited = attachment.detach();
    if (m.t === 'released') {
      this.#image = m.image;
      this.#state = 'released';
      this.#idleWriter = undefined; // a released job keeps as little as it can
      void exited.then(() => this.#settleRelease());
      if (this.#backlog.length > 0) {
        this.#host.reopened();
        void this.#attach();
      } else if (this.#closeRequested) this.#finishClose({ image: this.#image, error: undefined });
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
    const port = this.#port;
    if (port !== undefined) {
      for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
        this.#onMessage(m.message as FromWorker);
        if (this.#port === undefined) return; // closed or released before it died
      }
      port.close();
    }
    const wasRunning = this.running || this.#state === 'closing';
    this.#state = 'dead';
    this.#port = undefined;
    this.#attachment = undefined;
    this.#frame = undefined;
    this.#framesInFlight = 0;
    this.#backlog = [];
    this.#deathError = new PersistencyError('Backend', `job ${this.#id}: ${error.message}`, {
      cause: error.cause ?? error,
    });
    this.#replies.failAll(this.#deathError);
    this.#settleRelease();
    if (wasRunning) this.#host.died(this, this.#deathError);
    this.#host.resident(this, false);
    if (this.#closeRequested) this.#closeResolve?.({ image: undefined, error: this.#deathError });
  }

  // -------------------------------------------------------------------------------------
  // Replies

  #onMessage(m: FromWorker): void {
    if (m instanceof Uint8Array) {
      this.#onReplies(m, []);
      return;
    }
    switch (m.t) {
      case 'replies':
        this.#onReplies(m.bytes, m.errors);
        for (const f of m.failures) this.#reportFailure(f);
        return;
      case 'closed':
      case 'released':
        this.#detached(m);
        return;
      default:
        return;
    }
  }

  /** A group's replies: how many frames it finished, then one record per read or flush. */
  #onReplies(bytes: Uint8Array, errors: readonly ErrorInfo[]): void {
    this.#framesInFlight -= this.#replies.settle(bytes, errors);
    this.lastActive = performance.now();
    this.#updateRef();
  }

  /** Report a batch that did not reach the database, its ops decoded from its record. */
  #reportFailure(f: BatchFailure, error = fromErrorInfo(f.error)): void {
    const { ops, count } = batchOps(f.record);
    this.#host.writeFailed(this.#id, 'backend', ops, error, count);
  }
}
