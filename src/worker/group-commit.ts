/*
 * Group commit for one job: the writes of a group go into one transaction, each batch under
 * its own savepoint so that a failing batch rolls back alone. The transaction's writes are
 * not copied anywhere: they are the write records of the group's frames, enough to redo
 * them when SQLite drops the transaction on an I/O error, or to report them all when the
 * group is lost. Replies that depend on the group's writes wait for its commit.
 */
import { type ErrorInfo, toErrorInfo, writesFailedInfo } from '../protocol/messages.js';
import { writeBoolean, writeDone } from '../protocol/replies.js';
import { OpKind, RequestReader, singlePutEnd, Tag } from '../protocol/requests.js';
import { type KvBackend, PUT_RUN } from './backend.js';
import { DirtyReplies } from './dirty-replies.js';
import type { Faults } from './faults.js';
import type { GroupReplies } from './group-replies.js';
import { type Pause, RANGE_CHUNK, type SliceClock } from './slice.js';

/** On a shared thread a batch's ops are applied this many at a time between turn checks. */
export const SLICE_OPS = 1024;

/** A write record of the open transaction: the frame it is in and the offset of its tag. */
interface RecordAt {
  readonly buf: Uint8Array;
  readonly at: number;
}

export class GroupCommit {
  readonly #backend: KvBackend;
  readonly #replies: GroupReplies;
  readonly #faults: Faults;
  readonly #slice: SliceClock;
  readonly #busyTimeoutMs: number;

  // The open transaction: the write records of `#txFrames` (from offset `#txFrom` in the
  // first), minus those in `#txFailed`, which failed alone and were already reported.
  #txFrames: Uint8Array[] = [];
  #txFrom = 0;
  #txFailed: RecordAt[] = [];
  /** Replies that depend on the open transaction's writes. */
  readonly dirty: DirtyReplies;

  /** Write failures not yet reported to a flush: the next flush returns Err. */
  #unflushedFailures = 0;
  #firstUnflushedFailure: ErrorInfo | undefined;
  /** The bound values of a run of single puts. */
  readonly #runArgs: Uint8Array[] = new Array(PUT_RUN * 3);

  constructor(
    backend: KvBackend,
    replies: GroupReplies,
    faults: Faults,
    slice: SliceClock,
    busyTimeoutMs: number,
  ) {
    this.#backend = backend;
    this.#replies = replies;
    this.dirty = new DirtyReplies(replies);
    this.#faults = faults;
    this.#slice = slice;
    this.#busyTimeoutMs = busyTimeoutMs;
  }

  /** No write of the open group yet: replies gathered so far are final. */
  get clean(): boolean {
    return this.dirty.clean;
  }

  /** A frame of the group begins: part of the transaction if one is open. */
  frame(buf: Uint8Array): void {
    if (this.#backend.inTransaction) this.#txFrames.push(buf);
  }

  /** The turn is over: let replies that are final leave, then pause. */
  pause(): Pause {
    if (this.dirty.clean) this.#replies.send(0);
    return 'slice';
  }

  /**
   * A flush (the record at `at`): Ok, or Err when a write failed since the previous flush,
   * or `moved` when the job's file is no longer at its path (nothing written is there).
   */
  flush(buf: Uint8Array, at: number, moved: ErrorInfo | undefined): void {
    const replies = this.#replies;
    if (moved !== undefined) {
      replies.error(moved);
      this.#clearFailures();
      return;
    }
    const failed = this.#unflushedFailures;
    const first = this.#firstUnflushedFailure;
    this.dirty.flush(buf, at, failed, first);
    if (first === undefined) {
      writeDone(replies.w);
      replies.ok();
    } else replies.error(writesFailedInfo(failed, first));
    this.#clearFailures();
  }

  /**
   * On a shared thread, a write lock held by another connection is waited for in pauses
   * (up to busyTimeoutMs), not in SQLite's busy handler, which would hold the whole thread.
   */
  *awaitWriteLock(buf: Uint8Array, at: number): Generator<Pause, void, void> {
    const giveUp = performance.now() + this.#busyTimeoutMs;
    while (!this.#backend.inTransaction) {
      const error = this.#beginIfNeeded(buf, at);
      if (error === undefined || error.kind !== 'Busy' || performance.now() >= giveUp) return;
      if (this.dirty.clean) this.#replies.send(0);
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
  putRun(r: RequestReader): boolean {
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
   * ops or its op runs as several `statements` (one statement is atomic by itself).
   * Undefined when the transaction cannot begin (the batch is then reported failed), else
   * whether a savepoint was taken.
   */
  #beginBatch(r: RequestReader, statements = false): boolean | undefined {
    const notBegun = this.#beginIfNeeded(r.buf, r.at);
    if (notBegun !== undefined) {
      this.#batchFailed(r, notBegun);
      return undefined;
    }
    const multi = r.opCount > 1 || statements;
    if (multi) this.#backend.savepoint();
    return multi;
  }

  batch(r: RequestReader): void {
    const multi = this.#beginBatch(r);
    if (multi === undefined) return;
    try {
      this.#applyBatch(r);
      if (multi) this.#backend.release();
    } catch (e) {
      this.#batchError(e, multi, r);
    }
  }

  /**
   * A batch on a shared thread: its ops go in slices, and a range delete in chunks of
   * `RANGE_CHUNK` rows, pausing when the turn is up; still all under one savepoint.
   */
  *batchInSlices(r: RequestReader): Generator<Pause, void, void> {
    const multi = this.#beginBatch(r, r.buf[r.pos] === OpKind.DeletePrefix);
    if (multi === undefined) return;
    try {
      if (this.#faults.any) this.#faults.fire(['rollback', 'rollback-twice'], this.#backend);
      const b = this.#backend;
      for (let i = 1; i <= r.opCount; i++) {
        const kind = r.op();
        if (kind === OpKind.Put) b.put(r.cat, r.key, r.stop);
        else if (kind === OpKind.Delete) b.delete(r.cat, r.key);
        else {
          const { cat, stop } = r;
          for (let from = r.key; ; ) {
            const next = b.keyAfter(cat, from, stop, RANGE_CHUNK);
            b.deleteRange(cat, from, next ?? stop);
            if (next === undefined) break;
            from = next;
            if (this.#slice.due()) yield this.pause();
          }
        }
        if (i % SLICE_OPS === 0 && i < r.opCount && this.#slice.due()) yield this.pause();
      }
      if (multi) b.release();
    } catch (e) {
      this.#batchError(e, multi, r);
    }
  }

  #batchError(e: unknown, savepoint: boolean, r: RequestReader): void {
    const error = toErrorInfo(e);
    this.#undoFailedWrite(savepoint, r.buf, r.at, error);
    this.#batchFailed(r, error);
  }

  deleteAcked(buf: Uint8Array, at: number, cat: Uint8Array, key: Uint8Array): void {
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
    this.dirty.begin();
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

  /**
   * The open transaction is gone for good: every write in it failed. Each lost write counts
   * for the first flush answered after it (whose reply is rewritten), or else for the next.
   */
  #loseGroup(error: ErrorInfo, until?: RecordAt): void {
    this.#backend.rollback();
    const frames = this.#txFrames;
    const flushes = this.dirty.flushes;
    const lostBefore = new Array<number>(flushes.length).fill(0);
    let lostAfter = 0;
    this.#eachTxWrite(until, (r, tag) => {
      if (tag === Tag.Batch) this.#replies.batchFailed({ record: r.opsRecord(), error });
      const frame = frames.indexOf(r.buf);
      const f = flushes.findIndex((x) => {
        const xFrame = frames.indexOf(x.buf);
        return frame < xFrame || (frame === xFrame && r.at < x.at);
      });
      if (f >= 0) lostBefore[f] = (lostBefore[f] as number) + 1;
      else if (tag === Tag.Batch) lostAfter++; // a deleteAcked's own reply says it failed
    });
    this.#txFrames = [];
    this.#txFailed = [];
    // Replies computed from the lost writes must not reach the caller as Ok.
    this.dirty.fail(error, lostBefore);
    for (let i = 0; i < lostAfter; i++) this.#countFailure(error);
  }

  /** The batch `r` is at (after its header) failed: report its ops record. */
  #batchFailed(r: RequestReader, error: ErrorInfo): void {
    this.#replies.batchFailed({ record: r.opsRecord(), error });
    this.#countFailure(error);
  }

  #countFailure(error: ErrorInfo): void {
    if (this.#unflushedFailures++ === 0) this.#firstUnflushedFailure = error;
  }

  /** The failures no flush has reported yet (as a flush would), handed over at detach. */
  takeUnflushed(): ErrorInfo | undefined {
    const first = this.#firstUnflushedFailure;
    if (first === undefined) return undefined;
    const info = writesFailedInfo(this.#unflushedFailures, first);
    this.#clearFailures();
    return info;
  }

  #clearFailures(): void {
    this.#unflushedFailures = 0;
    this.#firstUnflushedFailure = undefined;
  }

  /** Commit the group's transaction; the group's replies can then be sent. */
  commit(): void {
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
    this.dirty.reset();
  }
}
