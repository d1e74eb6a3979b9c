/*
 * One job inside a worker thread: the only code that touches the job's SQLite connection.
 *
 * Group commit: when a frame arrives, the worker also drains every frame already queued
 * behind it, applies all their writes in one transaction (each batch under its own
 * savepoint, so a failing batch rolls back alone), runs their reads in order inside that
 * transaction (so reads see earlier writes), commits once, and answers. A read or flush
 * is never answered with data that a failed commit later takes back: replies that depend
 * on a write of the group wait for its commit; those before the group's first write see
 * only committed data and leave early, as they gather.
 *
 * On a thread shared by several jobs the work of a group pauses at turn ends (see
 * SliceClock) and resumes from the event loop; the job's later messages wait meanwhile.
 */
import { type MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import {
  type ErrorInfo,
  type FromWorker,
  type OpenRequest,
  type ToWorker,
  toErrorInfo,
} from '../protocol/messages.js';
import { writeBoolean, writeDone } from '../protocol/replies.js';
import { OpKind, RequestReader, singlePutEnd, Tag } from '../protocol/requests.js';
import { type KvBackend, PUT_RUN } from './backend.js';
import { Faults } from './faults.js';
import { GroupReplies } from './group-replies.js';
import { Poller } from './poll.js';
import { JobReads } from './reads.js';
import { type Pause, SliceClock } from './slice.js';

/** Stop draining the queue into one group past this many bytes of frames. */
const MAX_GROUP_BYTES = 64 * 1024 * 1024;
/** On a shared thread a batch's ops are applied this many at a time between turn checks. */
const SLICE_OPS = 1024;
/** On a shared thread, how long to wait before asking again for a write lock held elsewhere. */
const LOCK_RETRY_MS = 5;

/** A write record of the open transaction: the frame it is in and the offset of its tag. */
interface RecordAt {
  readonly buf: Uint8Array;
  readonly at: number;
}

export class JobWorker {
  readonly #port: MessagePort;
  readonly #backend: KvBackend;
  readonly #memory: boolean;
  readonly #busyTimeoutMs: number;
  readonly #replies: GroupReplies;
  readonly #reads: JobReads;
  readonly #faults = new Faults();
  readonly #slice: SliceClock;
  readonly #poller: Poller | undefined;
  /** Called once the job's connection and port are closed. */
  readonly #detached: () => void;

  /** Messages that arrived while a group was paused, in order. */
  #inbox: ToWorker[] = [];
  /** The work in progress, when it paused (see SliceClock). */
  #task: Generator<Pause, void, void> | undefined;
  #slices = 0;
  #frames = 0;

  // The open transaction. Its writes are not copied anywhere: they are the write records of
  // `#txFrames` (from offset `#txFrom` in the first), minus those in `#txFailed`, which
  // failed alone and were already reported. That is enough to redo or report them all.
  #txFrames: Uint8Array[] = [];
  #txFrom = 0;
  #txFailed: RecordAt[] = [];
  /** Replies from here on depend on the open transaction's writes. */
  #dirtyPos = -1;
  #dirtyCount = 0;
  #flushSinceDirty = false;

  /** Write failures not yet reported to a flush: the next flush returns Err. */
  #unflushedFailures = 0;
  #firstUnflushedFailure: ErrorInfo | undefined;
  /** The bound values of a run of single puts. */
  readonly #runArgs: Uint8Array[] = new Array(PUT_RUN * 3);
  /** The reader of the last frame: its remembered category carries over to the next. */
  #reader: RequestReader | undefined;

  constructor(port: MessagePort, backend: KvBackend, req: OpenRequest, detached: () => void) {
    this.#port = port;
    this.#backend = backend;
    this.#memory = req.dbPath === ':memory:';
    this.#busyTimeoutMs = req.busyTimeoutMs;
    this.#detached = detached;
    this.#replies = new GroupReplies(port);
    this.#slice = new SliceClock(req.sliceMs);
    this.#reads = new JobReads(backend, this.#replies, this.#faults, this.#slice);
    this.#poller = req.poll === undefined ? undefined : new Poller(port, req.poll);
  }

  /** The port's listener: start on the message, or queue it behind paused work. */
  onMessage(m: ToWorker): void {
    if (this.#task !== undefined) {
      this.#inbox.push(m);
      return;
    }
    this.#task = this.#serve(m);
    this.#resume();
  }

  readonly #resume = (): void => {
    const task = this.#task as Generator<Pause, void, void>;
    this.#slice.start();
    const step = task.next();
    if (step.done === true) {
      this.#task = undefined;
      return;
    }
    this.#slices++;
    if (step.value === 'wait') setTimeout(this.#resume, LOCK_RETRY_MS);
    else setImmediate(this.#resume);
  };

  /**
   * Handle one message and everything queued behind it, group by group, then commit and
   * answer; while the next message arrives within the poll window, go on with it.
   */
  *#serve(first: ToWorker): Generator<Pause, void, void> {
    let msg: ToWorker | undefined = first;
    while (msg !== undefined) {
      this.#replies.answered = false;
      if (yield* this.#group(msg)) return;
      // Later messages come from the port's listener (other jobs of the thread go first),
      // or, right after an answer, from the poll.
      msg = this.#inbox.shift() ?? (this.#replies.answered ? this.#poller?.next() : undefined);
    }
  }

  #next(): ToWorker | undefined {
    if (this.#inbox.length > 0) return this.#inbox.shift();
    return receiveMessageOnPort(this.#port)?.message as ToWorker | undefined;
  }

  /** One group: `first` and everything queued behind it. True when the job is detached. */
  *#group(first: ToWorker): Generator<Pause, boolean, void> {
    let msg: ToWorker | undefined = first;
    let bytes = 0;
    while (msg !== undefined) {
      if (msg instanceof Uint8Array) {
        yield* this.#frame(msg);
        bytes += msg.length;
      } else {
        switch (msg.t) {
          case 'close':
          case 'release':
            this.#endGroup();
            this.#detach(msg.t);
            return true;
          case 'crash':
            if (msg.how === 'exit') process.exit(70);
            throw new Error('persistency worker: crash requested by a test');
          case 'inject':
            this.#faults.add(msg.fault, msg.skipWrites);
            break;
        }
      }
      if (bytes >= MAX_GROUP_BYTES) break;
      msg = this.#next();
    }
    this.#endGroup();
    return false;
  }

  /** The turn is over: let replies that are final leave, then pause. */
  #pause(): Pause {
    if (this.#dirtyPos < 0) this.#replies.send(0);
    return 'slice';
  }

  *#frame(buf: Uint8Array): Generator<Pause, void, void> {
    this.#frames++;
    if (this.#backend.inTransaction) this.#txFrames.push(buf);
    const r = new RequestReader(buf).follow(this.#reader);
    this.#reader = r;
    const reads = this.#reads;
    while (!r.done) {
      if (this.#slice.due()) yield this.#pause();
      const tag = r.tag();
      switch (tag) {
        case Tag.Batch: {
          const at = r.at;
          if (this.#slice.shared) yield* this.#awaitWriteLock(buf, at);
          if (!this.#faults.any && this.#putRun(r)) break; // r is past the run
          r.reopen(at);
          if (this.#slice.shared && r.opCount > SLICE_OPS) yield* this.#batchInSlices(r);
          else this.#batch(r);
          r.pos = r.end;
          break;
        }
        case Tag.Get:
          r.keyRequest();
          if (!reads.getRun(r)) reads.get(r.cat, r.key);
          break;
        case Tag.Exists:
          r.keyRequest();
          reads.exists(r.cat, r.key);
          break;
        case Tag.Scan:
          r.scan();
          yield* reads.scan(r.cat, r.key, r.stop, r.reverse, r.limit, this.#dirtyPos < 0);
          break;
        case Tag.Count:
          r.count();
          reads.count(r.cat, r.key, r.stop);
          break;
        case Tag.DeleteAcked:
          if (this.#slice.shared) yield* this.#awaitWriteLock(buf, r.at);
          r.keyRequest();
          this.#deleteAcked(buf, r.at, r.cat, r.key);
          break;
        case Tag.Flush:
          this.#flush();
          break;
        default:
          throw new Error(`persistency worker: unknown frame tag ${tag} at ${r.at}`);
      }
      if (this.#dirtyPos < 0 && this.#replies.full) this.#replies.send(0);
    }
  }

  #flush(): void {
    if (this.#dirtyPos >= 0) this.#flushSinceDirty = true;
    const replies = this.#replies;
    if (this.#unflushedFailures === 0) {
      writeDone(replies.w);
      replies.ok();
      return;
    }
    const first = this.#firstUnflushedFailure;
    replies.error({
      kind: first?.kind ?? 'Backend',
      message: `${this.#unflushedFailures} write batch(es) failed since the last flush; first: ${first?.message ?? 'unknown'}`,
      code: first?.code,
    });
    this.#clearFailures();
  }

  // -------------------------------------------------------------------------------------
  // Writes

  /**
   * On a shared thread, a write lock held by another connection is waited for in pauses
   * (up to busyTimeoutMs), not in SQLite's busy handler, which would hold the whole thread.
   */
  *#awaitWriteLock(buf: Uint8Array, at: number): Generator<Pause, void, void> {
    const giveUp = performance.now() + this.#busyTimeoutMs;
    while (!this.#backend.inTransaction) {
      const error = this.#beginIfNeeded(buf, at);
      if (error === undefined || error.kind !== 'Busy' || performance.now() >= giveUp) return;
      if (this.#dirtyPos < 0) this.#replies.send(0);
      yield 'wait';
    }
  }

  /**
   * If the frame holds `PUT_RUN` single-put batches in a row from the record whose tag was
   * just read, insert them with one statement and leave `r` past them. Each batch stays
   * atomic on its own: if the statement fails (SQLite undoes all of it), they are applied
   * one by one instead, so only the failing one fails. False when there is no such run, or
   * on failure.
   */
  #putRun(r: RequestReader): boolean {
    const buf = r.buf;
    const at = r.at;
    // First look, without decoding: PUT_RUN records, each a batch of one put.
    let p = at;
    for (let i = 0; i < PUT_RUN && p >= 0; i++) p = singlePutEnd(buf, p);
    if (p < 0) return false;
    const args = this.#runArgs;
    r.pos = at;
    for (let i = 0; i < PUT_RUN; i++) {
      r.reopen(r.pos);
      r.op();
      args[i * 3] = r.cat;
      args[i * 3 + 1] = r.key;
      args[i * 3 + 2] = r.stop;
    }
    const notBegun = this.#beginIfNeeded(buf, at);
    if (notBegun !== undefined) return false; // each batch then reports it
    try {
      this.#backend.putRun(args);
    } catch {
      // The statement undid itself; redo the group's earlier writes if SQLite dropped the
      // transaction, then let each batch of the run go alone and fail alone.
      if (!this.#backend.inTransaction) this.#redoBefore({ buf, at });
      return false;
    }
    return true;
  }

  /** Apply `n` ops of the batch `r` is in. */
  #applyOps(r: RequestReader, n: number): void {
    const b = this.#backend;
    for (let i = 0; i < n; i++) {
      const kind = r.op();
      if (kind === OpKind.Put) b.put(r.cat, r.key, r.stop);
      else if (kind === OpKind.Delete) b.delete(r.cat, r.key);
      else b.deleteRange(r.cat, r.key, r.stop);
    }
  }

  /** Apply a whole batch's ops, `r` at its first op (also used to redo it). */
  #applyBatch(r: RequestReader): void {
    if (this.#faults.any) this.#faults.fire(['rollback', 'rollback-twice'], this.#backend);
    this.#applyOps(r, r.opCount);
  }

  /**
   * Begin the batch `r` is at: the group's transaction, and a savepoint when it has several
   * ops (one statement is atomic by itself). Undefined when the transaction cannot begin
   * (the batch is then reported failed), else whether a savepoint was taken.
   */
  #beginBatch(r: RequestReader): boolean | undefined {
    const notBegun = this.#beginIfNeeded(r.buf, r.at);
    if (notBegun !== undefined) {
      this.#batchFailed(r, notBegun);
      return undefined;
    }
    const multi = r.opCount > 1;
    if (multi) this.#backend.savepoint();
    return multi;
  }

  #batch(r: RequestReader): void {
    const multi = this.#beginBatch(r);
    if (multi === undefined) return;
    try {
      this.#applyBatch(r);
      if (multi) this.#backend.release();
    } catch (e) {
      this.#batchError(e, multi, r);
    }
  }

  /** A batch too long for one turn: its ops go in slices, still under one savepoint. */
  *#batchInSlices(r: RequestReader): Generator<Pause, void, void> {
    const multi = this.#beginBatch(r);
    if (multi === undefined) return;
    try {
      if (this.#faults.any) this.#faults.fire(['rollback', 'rollback-twice'], this.#backend);
      let left = r.opCount;
      while (left > 0) {
        const n = Math.min(left, SLICE_OPS);
        this.#applyOps(r, n);
        left -= n;
        if (left > 0 && this.#slice.due()) yield this.#pause();
      }
      if (multi) this.#backend.release();
    } catch (e) {
      this.#batchError(e, multi, r);
    }
  }

  #batchError(e: unknown, savepoint: boolean, r: RequestReader): void {
    const error = toErrorInfo(e);
    this.#undoFailedWrite(savepoint, r.buf, r.at, error);
    this.#batchFailed(r, error);
  }

  #deleteAcked(buf: Uint8Array, at: number, cat: Uint8Array, key: Uint8Array): void {
    const notBegun = this.#beginIfNeeded(buf, at);
    if (notBegun !== undefined) {
      this.#replies.error(notBegun);
      return;
    }
    let removed: boolean;
    try {
      removed = this.#backend.delete(cat, key) > 0;
    } catch (e) {
      const error = toErrorInfo(e);
      this.#undoFailedWrite(false, buf, at, error);
      this.#replies.error(error);
      return;
    }
    // If the group is lost later, this reply is rewritten with the other dirty ones.
    writeBoolean(this.#replies.w, removed);
    this.#replies.ok();
  }

  /** Open the group's transaction if it is not open; the error if it cannot be. */
  #beginIfNeeded(buf: Uint8Array, at: number): ErrorInfo | undefined {
    if (this.#backend.inTransaction) return undefined;
    try {
      this.#backend.begin();
    } catch (e) {
      return toErrorInfo(e, 'begin transaction');
    }
    this.#txFrames = [buf];
    this.#txFrom = at;
    this.#txFailed = [];
    if (this.#dirtyPos < 0) {
      this.#dirtyPos = this.#replies.w.pos;
      this.#dirtyCount = this.#replies.count;
      this.#flushSinceDirty = false;
    }
    return undefined;
  }

  /**
   * Undo the write at `at`, which failed: its savepoint (or, for one statement, SQLite's
   * statement rollback) takes it back alone. If SQLite dropped the whole transaction (it
   * does on some I/O errors), the group's earlier writes are redone in a new one.
   */
  #undoFailedWrite(savepoint: boolean, buf: Uint8Array, at: number, error: ErrorInfo): void {
    const b = this.#backend;
    if (b.inTransaction) {
      if (savepoint) {
        try {
          b.rollbackToSavepoint();
        } catch (e) {
          this.#loseGroup(toErrorInfo(e, 'rollback to savepoint'), { buf, at });
          return;
        }
      }
      this.#txFailed.push({ buf, at });
      return;
    }
    if (this.#redoBefore({ buf, at }, error)) this.#txFailed.push({ buf, at });
  }

  /**
   * SQLite dropped the transaction: begin a new one and redo the group's writes before
   * `until`. If that fails too, the group is lost. Returns whether the redo succeeded.
   */
  #redoBefore(until: RecordAt, cause?: ErrorInfo): boolean {
    const b = this.#backend;
    try {
      b.begin();
      this.#eachTxWrite(until, (r, tag) => {
        if (tag === Tag.Batch) {
          this.#applyBatch(r);
        } else {
          r.keyRequest();
          b.delete(r.cat, r.key);
        }
      });
      return true;
    } catch (e) {
      const info = toErrorInfo(e, cause === undefined ? 'redo' : `redo after ${cause.message}`);
      this.#loseGroup(info, until);
      return false;
    }
  }

  /**
   * Visit the open transaction's applied writes before `until`, the reader past each one's
   * header (a batch at its first op).
   */
  #eachTxWrite(until: RecordAt | undefined, visit: (r: RequestReader, tag: number) => void): void {
    const frames = this.#txFrames;
    for (let f = 0; f < frames.length; f++) {
      const buf = frames[f] as Uint8Array;
      const r = new RequestReader(buf, f === 0 ? this.#txFrom : 0);
      while (!r.done) {
        const at = r.pos;
        if (until !== undefined && buf === until.buf && at >= until.at) return;
        const end = r.skip(r.tag());
        const failed = this.#txFailed.some((x) => x.buf === buf && x.at === at);
        const tag = r.reopen(at);
        if ((tag === Tag.Batch || tag === Tag.DeleteAcked) && !failed) visit(r, tag);
        r.pos = end;
      }
      if (until !== undefined && buf === until.buf) return;
    }
  }

  /** The open transaction is gone for good: every write in it failed. */
  #loseGroup(error: ErrorInfo, until?: RecordAt): void {
    this.#backend.rollback();
    this.#eachTxWrite(until, (r, tag) => {
      if (tag === Tag.Batch) this.#batchFailed(r, error);
    });
    this.#txFrames = [];
    this.#txFailed = [];
    if (this.#dirtyPos >= 0) {
      // Replies computed from the lost writes must not reach the caller as Ok.
      const replies = this.#replies;
      const n = replies.count - this.#dirtyCount;
      replies.w.pos = this.#dirtyPos;
      replies.count = this.#dirtyCount;
      for (let i = 0; i < n; i++) replies.error(error);
      if (this.#flushSinceDirty) this.#clearFailures();
      this.#dirtyPos = -1;
    }
  }

  /** The batch `r` is at (after its header) failed: report its ops record. */
  #batchFailed(r: RequestReader, error: ErrorInfo): void {
    this.#replies.batchFailed({ record: r.opsRecord(), error });
    if (this.#unflushedFailures++ === 0) this.#firstUnflushedFailure = error;
  }

  #clearFailures(): void {
    this.#unflushedFailures = 0;
    this.#firstUnflushedFailure = undefined;
  }

  /** Commit the group's transaction, then send every reply of the group. */
  #endGroup(): void {
    if (this.#backend.inTransaction) {
      try {
        if (this.#faults.any) this.#faults.fire(['commit'], this.#backend);
        this.#backend.commit();
      } catch (e) {
        this.#loseGroup(toErrorInfo(e, 'commit'));
      }
    }
    this.#txFrames = [];
    this.#txFailed = [];
    this.#dirtyPos = -1;
    this.#reads.endGroup();
    this.#replies.send(this.#frames);
    this.#frames = 0;
  }

  /** Checkpoint and close the connection, say so on the port, and close it. */
  #detach(how: 'close' | 'release'): void {
    let image: Uint8Array | undefined;
    let error: ErrorInfo | undefined;
    try {
      if (this.#memory) image = this.#backend.serialize();
      else this.#backend.checkpoint();
    } catch (e) {
      error = toErrorInfo(e, 'checkpoint on close');
    }
    try {
      this.#backend.close();
    } catch (e) {
      error ??= toErrorInfo(e, 'close');
    }
    const msg: FromWorker = {
      t: how === 'close' ? 'closed' : 'released',
      image,
      error,
      polls: { ...(this.#poller?.stats ?? Poller.none) },
      reads: { batched: this.#reads.batched, slices: this.#slices },
    };
    this.#port.postMessage(msg, image === undefined ? [] : [image.buffer as ArrayBuffer]);
    this.#port.close();
    this.#inbox = [];
    this.#detached();
  }
}
