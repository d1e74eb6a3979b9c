/*
 * Group commit for one job: the writes of a group go into one transaction (src/worker/
 * group-tx.ts keeps it), each batch under its own savepoint so that a failing batch rolls
 * back alone: plain batches, runs of single puts, atomic batches with their checks, and
 * deleteAcked. Replies that depend on the group's writes wait for its commit.
 */
import { type ErrorInfo, toErrorInfo } from '../protocol/messages.js';
import { writeBoolean, writeNumber } from '../protocol/replies.js';
import { type RequestReader, singleOpEnd } from '../protocol/request-reader.js';
import { AtomicOutcome, OpKind, Tag } from '../protocol/requests.js';
import { counterFailure, NeedsExpiry, OpApplier } from './apply-ops.js';
import { type KvBackend, PUT_RUN } from './backend.js';
import { BY_SQL } from './counters.js';
import type { DirtyReplies } from './dirty-replies.js';
import type { Faults } from './faults.js';
import type { GroupReplies } from './group-replies.js';
import { GroupTx } from './group-tx.js';
import { type Pause, RANGE_CHUNK, type SliceClock } from './slice.js';
import type { Watches } from './watches.js';

/** On a shared thread a batch's ops are applied this many at a time between turn checks. */
export const SLICE_OPS = 1024;

export class GroupCommit {
  readonly #backend: KvBackend;
  readonly #replies: GroupReplies;
  readonly #faults: Faults;
  readonly #slice: SliceClock;
  readonly #busyTimeoutMs: number;
  readonly #ops: OpApplier;
  readonly #watches: Watches;
  /** Test hook: run inside the expiry migration, before its commit (a crash there). */
  migrationHook: (() => void) | undefined;

  readonly #tx: GroupTx;
  /** The bound values of a run of single puts. */
  readonly #runArgs: Uint8Array[] = new Array(PUT_RUN * 3);
  /** Where each put of the run is in the frame (see RequestReader.keyAt). */
  readonly #runAt: number[] = new Array(PUT_RUN).fill(0);

  constructor(
    backend: KvBackend,
    replies: GroupReplies,
    faults: Faults,
    slice: SliceClock,
    busyTimeoutMs: number,
    watches: Watches,
  ) {
    this.#backend = backend;
    this.#watches = watches;
    this.#ops = new OpApplier(backend, watches);
    this.#replies = replies;
    this.#tx = new GroupTx(
      backend,
      replies,
      watches,
      (r, tag) => {
        if (tag === Tag.DeleteAcked) {
          r.keyRequest();
          this.#ops.deleted(r.cat, r.key, backend.delete(r.cat, r.key) > 0);
        } else this.#applyBatch(r);
      },
      () => this.#ops.counters.forget(),
    );
    this.#faults = faults;
    this.#slice = slice;
    this.#busyTimeoutMs = busyTimeoutMs;
  }

  /** No write of the open group yet: replies gathered so far are final. */
  get clean(): boolean {
    return this.#tx.clean;
  }

  /** Replies that depend on the open transaction's writes. */
  get dirty(): DirtyReplies {
    return this.#tx.dirty;
  }

  /** A frame of the group begins: part of the transaction if one is open. */
  frame(buf: Uint8Array): void {
    this.#tx.frame(buf);
  }

  /** A flush (the record at `at`); see GroupTx.flush. */
  flush(buf: Uint8Array, at: number, moved: ErrorInfo | undefined): void {
    this.#tx.flush(buf, at, moved);
  }

  /** Commit the group's transaction; the group's replies can then be sent. */
  commit(): void {
    this.#tx.commit(this.#faults);
  }

  /** The failures no flush has reported yet (as a flush would), handed over at detach. */
  takeUnflushed(): ErrorInfo | undefined {
    return this.#tx.takeUnflushed();
  }

  /** The turn is over: let replies that are final leave, then pause. */
  pause(): Pause {
    if (this.dirty.clean) this.#replies.send(0);
    return 'slice';
  }

  /**
   * On a shared thread, a write lock held by another connection is waited for in pauses
   * (up to busyTimeoutMs), not in SQLite's busy handler, which would hold the whole thread.
   */
  *awaitWriteLock(buf: Uint8Array, at: number): Generator<Pause, void, void> {
    const giveUp = performance.now() + this.#busyTimeoutMs;
    while (!this.#backend.inTransaction) {
      const error = this.#tx.begin(buf, at);
      if (error === undefined || error.kind !== 'Busy' || performance.now() >= giveUp) return;
      if (this.dirty.clean) this.#replies.send(0);
      yield 'wait';
    }
  }

  /**
   * If the frame holds `PUT_RUN` batches of one put, or of one add, in a row from the record
   * at `at`, apply them with one statement (for adds, of the sums made in JavaScript: see
   * src/worker/counters.ts) and leave `r` past them. Each batch stays atomic on its own: if
   * the statement fails (SQLite undoes all of it), or an add of the run would fail or needs
   * SQL, they are applied one by one instead, so only the failing one fails. False when
   * there is no such run, or on failure.
   */
  run(r: RequestReader, at: number): boolean {
    const buf = r.buf;
    // First look, without decoding: PUT_RUN records, each a batch of one op of one kind.
    const kind = buf[at + 9];
    if (kind !== OpKind.Put && kind !== OpKind.Add) return false;
    let p = at;
    for (let i = 0; i < PUT_RUN && p >= 0; i++) p = singleOpEnd(buf, p, kind);
    if (p < 0) return false;
    const args = this.#runArgs;
    const counters = this.#ops.counters;
    r.pos = at;
    try {
      for (let i = 0; i < PUT_RUN; i++) {
        r.reopen(r.pos);
        r.op();
        const last = kind === OpKind.Put ? r.stop : counters.sum(r.cat, r.key, r.stop, true);
        if (last === BY_SQL) throw new Error('an add the run cannot make');
        args[i * 3] = r.cat;
        args[i * 3 + 1] = r.key;
        args[i * 3 + 2] = last;
        this.#runAt[i] = r.keyAt;
      }
    } catch {
      counters.settle(false);
      return false; // the adds go one by one: the one that fails fails alone
    }
    const notBegun = this.#tx.begin(buf, at);
    if (notBegun !== undefined) {
      counters.settle(false);
      return false; // each batch then reports it
    }
    try {
      if (kind === OpKind.Put) counters.forget();
      this.#backend.putRun(args); // sums of rows without an expiry: a put keeps them so
    } catch {
      // The statement undid itself; redo the group's earlier writes if SQLite dropped the
      // transaction, then let each batch of the run go alone and fail alone.
      counters.settle(false);
      if (!this.#backend.inTransaction) this.#tx.redoBefore({ buf, at });
      return false;
    }
    counters.settle(true);
    if (this.#watches.active) {
      if (kind === OpKind.Put) this.#watches.putRun(args, this.#runAt, PUT_RUN, buf, at);
      else {
        // A sum is not in the frame: each is copied.
        for (let i = 0; i < PUT_RUN; i++)
          this.#watches.put(
            args[i * 3] as Uint8Array,
            args[i * 3 + 1] as Uint8Array,
            args[i * 3 + 2] as Uint8Array,
          );
      }
    }
    return true;
  }

  /** Apply a whole batch's ops, `r` at its first op (also used to redo it: checks held). */
  #applyBatch(r: RequestReader): void {
    if (this.#faults.any) this.#faults.fire(['rollback', 'rollback-twice'], this.#backend);
    this.#ops.applyAll(r, r.opCount);
  }

  /**
   * Begin the batch `r` is at: the group's transaction, and a savepoint when it has several
   * ops or its op runs as several `statements` (one statement is atomic by itself).
   * Undefined when the transaction cannot begin (the batch is then reported failed), else
   * whether a savepoint was taken.
   */
  #beginBatch(r: RequestReader, statements = false): boolean | undefined {
    const notBegun = this.#tx.begin(r.buf, r.at);
    if (notBegun !== undefined) {
      this.#tx.batchFailed(r, notBegun);
      return undefined;
    }
    const multi = r.opCount > 1 || statements;
    if (multi) this.#backend.savepoint();
    return multi;
  }

  batch(r: RequestReader): void {
    const at = r.pos;
    const multi = this.#beginBatch(r);
    if (multi === undefined) return;
    const mark = this.#watches.mark();
    try {
      this.#applyBatch(r);
      if (multi) this.#backend.release();
    } catch (e) {
      if (this.#failed(e, multi, r, mark)) {
        r.pos = at;
        this.batch(r);
      }
    }
  }

  /**
   * The batch `r` is in failed with `e`: undo it and report it. True when instead it is to
   * be applied again: it needed the file to gain expiry, which it now has.
   */
  #failed(e: unknown, savepoint: boolean, r: RequestReader, mark: number): boolean {
    this.#watches.undo(mark);
    if (e instanceof NeedsExpiry) return this.#migrated(savepoint, r); // it reports a failure
    this.#batchError(e, savepoint, r);
    return false;
  }

  /**
   * An expiring put met a file without expiry: undo the batch so far, commit the group,
   * and give the file expiry in its own transaction. False (the batch then fails with
   * the reason) when that cannot be done.
   */
  #migrated(savepoint: boolean, r: RequestReader): boolean {
    const b = this.#backend;
    if (savepoint) b.rollbackToSavepoint();
    this.#ops.counters.forget();
    // The group's writes before this one are committed; if that fails, only they are lost:
    // this one and those after it are applied after the migration.
    this.#tx.commit(this.#faults, { buf: r.buf, at: r.at });
    try {
      b.migrateToExpiry(this.migrationHook);
      return true;
    } catch (e) {
      const error = toErrorInfo(e, 'adding expiry to the file (schema version 2)');
      if (r.at >= 0) this.#batchFailedOrAnswered(r, error);
      return false;
    }
  }

  /** A batch that could not be applied: reported (plain) or answered (atomic). */
  #batchFailedOrAnswered(r: RequestReader, error: ErrorInfo): void {
    if (r.buf[r.at] === Tag.Atomic) this.#replies.error(error);
    else this.#tx.batchFailed(r, error);
  }

  /**
   * An atomic batch: its checks, then its ops, all under one savepoint; answered with its
   * outcome (AtomicOutcome), or Err. Its reply waits for the group's commit like any
   * reply after a write, so `commit()` resolves once the batch is durable.
   */
  *atomic(r: RequestReader): Generator<Pause, void, void> {
    const at = r.pos;
    const notBegun = this.#tx.begin(r.buf, r.at);
    if (notBegun !== undefined) {
      this.#replies.error(notBegun);
      return;
    }
    const b = this.#backend;
    const mark = this.#watches.mark();
    b.savepoint();
    let outcome: number = AtomicOutcome.Applied;
    try {
      if (this.#faults.any) this.#faults.fire(['rollback', 'rollback-twice'], b);
      if (!this.#ops.checksHold(r, r.opCount)) outcome = AtomicOutcome.CheckFailed;
      else if (this.#slice.shared) yield* this.#applySliced(r);
      else this.#ops.applyAll(r, r.opCount);
    } catch (e) {
      this.#watches.undo(mark);
      if (e instanceof NeedsExpiry) {
        if (this.#migrated(true, r)) {
          r.pos = at;
          yield* this.atomic(r);
        }
        return;
      }
      const failed = counterFailure(e);
      if (failed === undefined) {
        const error = toErrorInfo(e);
        this.#tx.undoFailedWrite(true, r.buf, r.at, error);
        this.#replies.error(error);
        return;
      }
      outcome = failed;
    }
    if (outcome === AtomicOutcome.Applied) b.release();
    else {
      this.#ops.counters.forget();
      this.#watches.undo(mark);
      b.rollbackToSavepoint();
      this.#tx.notApplied(r.buf, r.at); // nothing of it to redo
    }
    writeNumber(this.#replies.w, outcome);
    this.#replies.ok();
  }

  /**
   * A batch on a shared thread: its ops go in slices, and a range delete in chunks of
   * `RANGE_CHUNK` rows, pausing when the turn is up; still all under one savepoint.
   */
  *batchInSlices(r: RequestReader): Generator<Pause, void, void> {
    const at = r.pos;
    const multi = this.#beginBatch(r, r.buf[r.pos] === OpKind.DeletePrefix);
    if (multi === undefined) return;
    const mark = this.#watches.mark();
    try {
      if (this.#faults.any) this.#faults.fire(['rollback', 'rollback-twice'], this.#backend);
      yield* this.#applySliced(r);
      if (multi) this.#backend.release();
    } catch (e) {
      if (this.#failed(e, multi, r, mark)) {
        r.pos = at;
        yield* this.batchInSlices(r);
      }
    }
  }

  /** The ops of the batch `r` is at, pausing between slices of them and chunks of a range. */
  *#applySliced(r: RequestReader): Generator<Pause, void, void> {
    const b = this.#backend;
    for (let i = 1; i <= r.opCount; i++) {
      const kind = r.op();
      if (kind !== OpKind.DeletePrefix) this.#ops.apply(kind, r);
      else {
        const { cat, key, stop } = r;
        const touched = this.#ops.touchedBy(cat, key, stop);
        for (let from = key; ; ) {
          const next = b.keyAfter(cat, from, stop, RANGE_CHUNK);
          this.#ops.deleteChunk(cat, from, next ?? stop);
          if (next === undefined) break;
          from = next;
          if (this.#slice.due()) yield this.pause();
        }
        this.#ops.told(touched, key);
      }
      if (i % SLICE_OPS === 0 && i < r.opCount && this.#slice.due()) yield this.pause();
    }
  }

  #batchError(e: unknown, savepoint: boolean, r: RequestReader): void {
    const error = toErrorInfo(e);
    this.#tx.undoFailedWrite(savepoint, r.buf, r.at, error);
    this.#tx.batchFailed(r, error);
  }

  /** The write at `at` is refused with `error` before anything of it is applied: never redone. */
  refuse(buf: Uint8Array, at: number, error: ErrorInfo): void {
    this.#tx.notApplied(buf, at);
    this.#replies.error(error);
  }

  deleteAcked(buf: Uint8Array, at: number, cat: Uint8Array, key: Uint8Array): void {
    const notBegun = this.#tx.begin(buf, at);
    if (notBegun !== undefined) {
      this.#replies.error(notBegun);
      return;
    }
    let removed: boolean;
    try {
      const gone = this.#backend.deleteLive(cat, key);
      this.#ops.deleted(cat, key, gone.removed); // an expired row too: watchers mirror rows
      removed = gone.live;
    } catch (e) {
      const error = toErrorInfo(e);
      this.#tx.undoFailedWrite(false, buf, at, error);
      this.#replies.error(error);
      return;
    }
    // If the group is lost later, this reply is rewritten with the other dirty ones.
    writeBoolean(this.#replies.w, removed);
    this.#replies.ok();
  }
}
