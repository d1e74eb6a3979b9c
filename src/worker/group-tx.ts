/*
 * The open transaction of a job's commit group: when it began, which write records it
 * holds (the group's frames from its first write on, not copied), which of them failed
 * alone, and the failures no flush has reported yet. It can redo the group's writes when
 * SQLite drops the transaction, and lose the group, failing every write and dependent
 * reply in it, when that fails too. The records themselves are applied by GroupCommit.
 */
import { type ErrorInfo, toErrorInfo, writesFailedInfo } from '../protocol/messages.js';
import { writeDone } from '../protocol/replies.js';
import { RequestReader } from '../protocol/request-reader.js';
import { Tag } from '../protocol/requests.js';
import type { KvBackend } from './backend.js';
import { DirtyReplies } from './dirty-replies.js';
import type { Faults } from './faults.js';
import type { GroupReplies } from './group-replies.js';
import type { Watches } from './watches.js';

/** A write record of the open transaction: the frame it is in and the offset of its tag. */
export interface RecordAt {
  readonly buf: Uint8Array;
  readonly at: number;
}

/** Apply a write record again (the reader past its header), as GroupCommit first did. */
export type Redo = (r: RequestReader, tag: number) => void;

export class GroupTx {
  readonly #backend: KvBackend;
  readonly #replies: GroupReplies;
  readonly #watches: Watches;
  readonly #redo: Redo;
  /** What the worker knows of the data besides SQLite (counter values) is stale: drop it. */
  readonly #forget: () => void;
  // The write records of `#frames` (from offset `#from` in the first), minus those in
  // `#failed`, which failed alone (or were not applied) and were already answered.
  #frames: Uint8Array[] = [];
  #from = 0;
  #failed: RecordAt[] = [];
  /** Replies that depend on the open transaction's writes. */
  readonly dirty: DirtyReplies;

  /** Write failures not yet reported to a flush: the next flush returns Err. */
  #unflushedFailures = 0;
  #firstUnflushedFailure: ErrorInfo | undefined;

  constructor(
    backend: KvBackend,
    replies: GroupReplies,
    watches: Watches,
    redo: Redo,
    forget: () => void,
  ) {
    this.#backend = backend;
    this.#forget = forget;
    this.#replies = replies;
    this.#watches = watches;
    this.#redo = redo;
    this.dirty = new DirtyReplies(replies);
  }

  /** No write of the open group yet: replies gathered so far are final. */
  get clean(): boolean {
    return this.dirty.clean;
  }

  /** A frame of the group begins: part of the transaction if one is open. */
  frame(buf: Uint8Array): void {
    if (this.#backend.inTransaction) this.#frames.push(buf);
  }

  /** The write record at `at` left nothing to redo (it failed alone, or applied nothing). */
  notApplied(buf: Uint8Array, at: number): void {
    this.#failed.push({ buf, at });
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

  /** Open the group's transaction if it is not open; the error if it cannot be. */
  begin(buf: Uint8Array, at: number): ErrorInfo | undefined {
    if (this.#backend.inTransaction) return undefined;
    try {
      this.#backend.begin();
    } catch (e) {
      return toErrorInfo(e, 'begin transaction');
    }
    this.#frames = [buf];
    this.#from = at;
    this.#failed = [];
    this.dirty.begin();
    return undefined;
  }

  /**
   * Undo the write at `at`, which failed: its savepoint (or, for one statement, SQLite's
   * statement rollback) takes it back alone. If SQLite dropped the whole transaction (it
   * does on some I/O errors), the group's earlier writes are redone in a new one.
   */
  undoFailedWrite(savepoint: boolean, buf: Uint8Array, at: number, error: ErrorInfo): void {
    this.#forget();
    const b = this.#backend;
    if (b.inTransaction) {
      if (savepoint) {
        try {
          b.rollbackToSavepoint();
        } catch (e) {
          this.loseGroup(toErrorInfo(e, 'rollback to savepoint'), { buf, at });
          return;
        }
      }
      this.#failed.push({ buf, at });
      return;
    }
    if (this.redoBefore({ buf, at }, error)) this.#failed.push({ buf, at });
  }

  /**
   * SQLite dropped the transaction: begin a new one and redo the group's writes before
   * `until`. If that fails too, the group is lost. Returns whether the redo succeeded.
   */
  redoBefore(until: RecordAt, cause?: ErrorInfo): boolean {
    this.#forget();
    const b = this.#backend;
    this.#watches.paused = true; // the changes of what is redone are recorded already
    try {
      b.begin();
      this.#eachTxWrite(until, this.#redo);
      return true;
    } catch (e) {
      const info = toErrorInfo(e, cause === undefined ? 'redo' : `redo after ${cause.message}`);
      this.loseGroup(info, until);
      return false;
    } finally {
      this.#watches.paused = false;
    }
  }

  /**
   * Visit the open transaction's applied writes before `until`, the reader past each one's
   * header (a batch at its first op).
   */
  #eachTxWrite(until: RecordAt | undefined, visit: (r: RequestReader, tag: number) => void): void {
    const frames = this.#frames;
    for (let f = 0; f < frames.length; f++) {
      const buf = frames[f] as Uint8Array;
      const r = new RequestReader(buf, f === 0 ? this.#from : 0);
      while (!r.done) {
        const at = r.pos;
        if (until !== undefined && buf === until.buf && at >= until.at) return;
        const end = r.skip(r.tag());
        const failed = this.#failed.some((x) => x.buf === buf && x.at === at);
        const tag = r.reopen(at);
        const write = tag === Tag.Batch || tag === Tag.Atomic || tag === Tag.DeleteAcked;
        if (write && !failed) visit(r, tag);
        r.pos = end;
      }
      if (until !== undefined && buf === until.buf) return;
    }
  }

  /**
   * The open transaction is gone for good: every write in it failed. Each lost write counts
   * for the first flush answered after it (whose reply is rewritten), or else for the next.
   */
  loseGroup(error: ErrorInfo, until?: RecordAt): void {
    this.#forget();
    this.#backend.rollback();
    this.#watches.lose();
    const frames = this.#frames;
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
      else if (tag === Tag.Batch) lostAfter++; // an atomic's or deleteAcked's reply says it failed
    });
    this.#frames = [];
    this.#failed = [];
    // Replies computed from the lost writes must not reach the caller as Ok.
    this.dirty.fail(error, lostBefore);
    for (let i = 0; i < lostAfter; i++) this.#countFailure(error);
  }

  /** The batch `r` is at (after its header) failed: report its ops record. */
  batchFailed(r: RequestReader, error: ErrorInfo): void {
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

  /**
   * Commit the group's transaction; the group's replies can then be sent. `until`: the
   * commit is made mid-frame, before that record; if it fails, only the writes before it
   * are lost (the rest are still to be applied).
   */
  commit(faults: Faults, until?: RecordAt): void {
    if (this.#backend.inTransaction) {
      try {
        if (faults.any) faults.fire(['commit'], this.#backend);
        this.#backend.commit();
        this.#watches.commit();
      } catch (e) {
        this.loseGroup(toErrorInfo(e, 'commit'), until);
      }
    }
    this.#frames = [];
    this.#failed = [];
    this.dirty.reset();
  }
}
