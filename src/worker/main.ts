/*
 * The job worker: the only code that touches the job's SQLite connection.
 *
 * Group commit: when a frame arrives, the worker also drains every frame already queued
 * behind it, applies all their writes in one transaction (each batch under its own
 * savepoint, so a failing batch rolls back alone), runs their reads in order inside that
 * transaction (so reads see earlier writes), commits once, and answers. A read or flush
 * is never answered with data that a failed commit later takes back: replies that depend
 * on a write of the group wait for its commit; those before the group's first write see
 * only committed data and leave early, as they gather (see EARLY_REPLIES).
 *
 * After a group that answered a read, flush or deleteAcked, the worker polls its port for a
 * short while before sleeping (see PollSettings): a caller awaiting one answer at a time is
 * then served without a thread wake-up per request.
 */
import { accessSync, constants as fsConstants } from 'node:fs';
import { isMainThread, parentPort, receiveMessageOnPort } from 'node:worker_threads';
import { GET_MANY_LARGE, GET_RUN_MAX, KvBackend, PUT_RUN, toErrorInfo } from './backend.js';
import {
  type BatchFailure,
  ByteReader,
  ByteWriter,
  type ErrorInfo,
  type FromWorker,
  type InjectedFault,
  type OpenRequest,
  OpKind,
  type PollSettings,
  Status,
  skipRecord,
  Tag,
  type ToWorker,
  takeBytes,
} from './protocol.js';

/** Replies start with a u32: how many frames the group finished. */
const REPLY_HEADER = 4;

function initialReplies(): ByteWriter {
  const w = new ByteWriter(REPLY_HEADER + 256);
  w.pos = REPLY_HEADER;
  return w;
}

/**
 * Replies that depend on no uncommitted write are sent before the group ends once this
 * many have gathered (or this many bytes), so the main thread works on them while the
 * worker goes on: reads pipeline instead of waiting for the whole group. Chosen by an
 * interleaved A/B of 256 gets in flight (two jobs in one process): every 64 with frames of
 * 32 reads was 1.07x every 32 with frames of 64, and 1.14x no early replies at all.
 */
const EARLY_REPLIES = 64;
const EARLY_REPLY_BYTES = 64 * 1024;
/** A long scan is sent in parts of about this size while it runs (clean groups only). */
const SCAN_PART_BYTES = 256 * 1024;

/** A poll that found nothing makes the worker skip up to this many of its next polls. */
const MAX_POLL_BACKOFF = 64;

/**
 * Runs of at least this many gets of one category are read with one statement
 * (`KvBackend.getMany`, which measures where that starts to pay).
 */
const GET_RUN_MIN = 6;
/**
 * After a run meets a payload too long to inline (or its statement fails), the next this
 * many gets (doubling while it repeats, up to GET_MANY_MAX_BACKOFF) are read one by one:
 * large rows would otherwise be looked up twice.
 */
const GET_MANY_BACKOFF = 64;
const GET_MANY_MAX_BACKOFF = 4096;

/** Stop draining the queue into one group past this many bytes of frames. */
const MAX_GROUP_BYTES = 64 * 1024 * 1024;
const EMPTY = new Uint8Array(0);

type Port = NonNullable<typeof parentPort>;

/** A write record of the open transaction: the frame it is in and the offset of its tag. */
interface RecordAt {
  readonly buf: Uint8Array;
  readonly at: number;
}

class JobWorker {
  readonly #port: Port;
  readonly #backend: KvBackend;
  readonly #memory: boolean;

  // The current group's answers.
  #replies = initialReplies();
  #replyCount = 0;
  #errors: ErrorInfo[] = [];
  #failures: BatchFailure[] = [];
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
  /** Test-injected faults still to fire, in order. */
  #injected: { fault: InjectedFault; skip: number }[] = [];
  /** The bound values of a run of single puts. */
  readonly #runArgs: Uint8Array[] = new Array(PUT_RUN * 3);
  /** Consecutive ops usually share a category: bind the same bytes object again. */
  #lastCategory: Uint8Array = EMPTY;

  // Polling for the next request (see PollSettings).
  readonly #poll: PollSettings | undefined;
  readonly #pollSlots: Int32Array | undefined;
  /** The current group answered a request (read, flush, deleteAcked): someone awaits it. */
  #answered = false;
  #pollSkip = 0;
  #pollBackoff = 0;
  readonly #pollStats = { tried: 0, caught: 0, busy: 0 };
  /** Gets answered by a `getMany` statement (tests and diagnostics). */
  readonly #readStats = { batched: 0 };
  /** Gets still to read one by one after a run met a large payload (see GET_MANY_BACKOFF). */
  #getManySkip = 0;
  #getManyBackoff = 0;
  /** A stretch of gets in this frame, up to this offset, too short to make a run. */
  #shortRunFrame: Uint8Array | undefined;
  #shortRunEnd = 0;

  constructor(port: Port, backend: KvBackend, memory: boolean, poll: PollSettings | undefined) {
    this.#port = port;
    this.#backend = backend;
    this.#memory = memory;
    // `pollSettings` gives none when polling is off (pollMicros 0, or one core).
    this.#poll = poll;
    this.#pollSlots = poll === undefined ? undefined : new Int32Array(poll.slots, 0, 1);
  }

  /**
   * Handle one message and everything queued behind it, then commit and answer; while the
   * next message arrives within the poll window, go on with it without sleeping.
   */
  onMessage(first: ToWorker): void {
    let msg: ToWorker | undefined = first;
    while (msg !== undefined) {
      this.#answered = false;
      if (this.#group(msg)) return;
      msg = this.#pollNext();
    }
  }

  /** One group: `first` and everything queued behind it. True when the worker is done. */
  #group(first: ToWorker): boolean {
    let msg: ToWorker | undefined = first;
    let bytes = 0;
    while (msg !== undefined) {
      if (msg instanceof Uint8Array) {
        this.#frame(msg);
        bytes += msg.length;
        if (bytes >= MAX_GROUP_BYTES) break;
        msg = receiveMessageOnPort(this.#port)?.message as ToWorker | undefined;
        continue;
      }
      switch (msg.t) {
        case 'close':
          this.#endGroup();
          this.#close();
          return true;
        case 'crash':
          this.#crash(msg.how);
          return true;
        case 'inject':
          this.#injected.push({ fault: msg.fault, skip: msg.skipWrites });
          break;
      }
      if (bytes >= MAX_GROUP_BYTES) break;
      msg = receiveMessageOnPort(this.#port)?.message as ToWorker | undefined;
    }
    this.#endGroup();
    return false;
  }

  /**
   * After a group that answered someone, the next message if it arrives within the poll
   * window (see `PollSettings`); undefined to go to sleep.
   */
  #pollNext(): ToWorker | undefined {
    const poll = this.#poll;
    if (poll === undefined || !this.#answered) return undefined;
    if (this.#pollSkip > 0) {
      this.#pollSkip--;
      return undefined;
    }
    const slots = this.#pollSlots as Int32Array;
    if (Atomics.add(slots, 0, 1) >= poll.max) {
      Atomics.sub(slots, 0, 1);
      this.#pollStats.busy++;
      return undefined;
    }
    this.#pollStats.tried++;
    const until = performance.now() + poll.micros / 1000;
    let got = receiveMessageOnPort(this.#port);
    while (got === undefined && performance.now() < until) got = receiveMessageOnPort(this.#port);
    Atomics.sub(slots, 0, 1);
    if (got === undefined) {
      this.#pollBackoff = Math.min(this.#pollBackoff * 2 || 1, MAX_POLL_BACKOFF);
      this.#pollSkip = this.#pollBackoff;
      return undefined;
    }
    this.#pollStats.caught++;
    this.#pollBackoff = 0;
    return got.message as ToWorker;
  }

  #frame(buf: Uint8Array): void {
    this.#frames++;
    if (this.#backend.inTransaction) this.#txFrames.push(buf);
    const r = new ByteReader(buf);
    while (!r.done) {
      const at = r.pos;
      const tag = r.u8();
      switch (tag) {
        case Tag.Batch: {
          const end = r.u32() + r.pos;
          if (this.#injected.length === 0 && this.#putRun(r, at)) break; // r is past the run
          r.pos = at + 5;
          this.#batch(r, at, end);
          r.pos = end;
          break;
        }
        case Tag.Get: {
          const cat = this.#category(r);
          const key = r.blob();
          if (!this.#getRun(r, cat, key)) this.#get(cat, key);
          break;
        }
        case Tag.Exists:
          this.#exists(this.#category(r), r.blob());
          break;
        case Tag.Scan:
          this.#scan(this.#category(r), r.blob(), r.blob(), r.u8() === 1, r.f64());
          break;
        case Tag.Count:
          this.#count(this.#category(r), r.blob(), r.blob());
          break;
        case Tag.DeleteAcked:
          this.#deleteAcked(buf, at, this.#category(r), r.blob());
          break;
        case Tag.Flush:
          this.#flush();
          break;
        default:
          throw new Error(`persistency worker: unknown frame tag ${tag} at ${at}`);
      }
      if (
        this.#dirtyPos < 0 &&
        (this.#replyCount >= EARLY_REPLIES || this.#replies.pos >= EARLY_REPLY_BYTES)
      ) {
        this.#sendReplies(0);
      }
    }
  }

  #category(r: ByteReader): Uint8Array {
    const n = r.u16();
    const buf = r.buf;
    const p = r.pos;
    r.pos += n;
    const last = this.#lastCategory;
    if (last.length === n) {
      let i = 0;
      while (i < n && last[i] === buf[p + i]) i++;
      if (i === n) return last;
    }
    // A copy, so that remembering it does not keep a whole frame alive.
    this.#lastCategory = buf.slice(p, p + n);
    return this.#lastCategory;
  }

  // -------------------------------------------------------------------------------------
  // Reads: each writes one reply; a failure becomes an Err reply for that read only.

  #replyOk(n = 1): void {
    this.#replyCount += n;
    this.#answered = true;
  }

  #replyError(error: ErrorInfo): void {
    this.#replies.u8(Status.Error);
    this.#replies.u32(this.#errors.length);
    this.#errors.push(error);
    this.#replyCount++;
    this.#answered = true;
  }

  #readFailed(pos: number, e: unknown): void {
    this.#replies.pos = pos;
    this.#replyError(toErrorInfo(e));
  }

  #get(cat: Uint8Array, key: Uint8Array): void {
    const w = this.#replies;
    const pos = w.pos;
    try {
      const v = this.#backend.get(cat, key);
      if (v === undefined) {
        w.u8(Status.None);
      } else {
        w.u8(Status.Bytes);
        w.blob(v);
      }
    } catch (e) {
      this.#readFailed(pos, e);
      return;
    }
    this.#replyOk();
  }

  /**
   * If at least GET_RUN_MIN - 1 Get records of the same category follow the one just read
   * (`cat`, `key`; `r` is past it), read them with one statement, up to GET_RUN_MAX, and
   * move `r` past those answered. False when there is no such run (`r` is left as it was).
   */
  #getRun(r: ByteReader, cat: Uint8Array, key: Uint8Array): boolean {
    if (this.#getManySkip > 0) {
      this.#getManySkip--;
      return false;
    }
    const buf = r.buf;
    // Inside a stretch of gets that a look-ahead already found too short.
    if (buf === this.#shortRunFrame && r.pos < this.#shortRunEnd) return false;
    if (!this.#backend.canGetMany) return false;
    const args = [key];
    /** Where each get's record ends. */
    const ends = [r.pos];
    let p = r.pos;
    while (args.length < GET_RUN_MAX && isGetOf(buf, p, cat)) {
      const keyAt = p + 3 + cat.length;
      const end = keyAt + 4 + readU32(buf, keyAt);
      args.push(buf.subarray(keyAt + 4, end));
      ends.push(end);
      p = end;
    }
    const keys = args.length;
    if (keys < GET_RUN_MIN) {
      this.#shortRunFrame = buf;
      this.#shortRunEnd = p;
      return false;
    }
    args.push(cat);
    r.pos = this.#getMany(args, keys, ends);
    return true;
  }

  /**
   * Answer the run's gets (`args`: the keys, then their category); returns where the frame
   * goes on. The run stops at the first payload too long to inline (and if the statement
   * fails, at its first get): that get is read alone, the frame goes on after it — so replies
   * may leave early between large payloads — and the next GET_MANY_BACKOFF gets (doubling
   * while it repeats) are read one by one: large rows would otherwise be looked up twice.
   */
  #getMany(args: Uint8Array[], keys: number, ends: readonly number[]): number {
    const cat = args[keys] as Uint8Array;
    let inline: Inline | undefined;
    try {
      const next = this.#injected[0];
      if (next?.fault === 'getMany') {
        this.#injected.shift();
        throw new Error('injected fault: getMany');
      }
      inline = inlineRecords(this.#backend.getMany(args), keys);
    } catch {
      inline = undefined;
    }
    let i = 0;
    if (inline !== undefined) {
      // The records are reply records already.
      i = inline.count;
      this.#replies.bytes(inline.records);
      this.#replyOk(i);
      this.#readStats.batched += i;
      if (i === keys) {
        this.#getManyBackoff = 0;
        return ends[keys - 1] as number;
      }
    }
    this.#get(cat, args[i] as Uint8Array);
    this.#getManyBackoff = Math.min(
      Math.max(this.#getManyBackoff * 2, GET_MANY_BACKOFF),
      GET_MANY_MAX_BACKOFF,
    );
    this.#getManySkip = this.#getManyBackoff;
    return ends[i] as number;
  }

  #exists(cat: Uint8Array, key: Uint8Array): void {
    const pos = this.#replies.pos;
    try {
      this.#replies.u8(this.#backend.exists(cat, key) ? Status.True : Status.False);
    } catch (e) {
      this.#readFailed(pos, e);
      return;
    }
    this.#replyOk();
  }

  #count(cat: Uint8Array, start: Uint8Array, stop: Uint8Array): void {
    const pos = this.#replies.pos;
    try {
      const n = this.#backend.count(cat, start, stop);
      this.#replies.u8(Status.Number);
      this.#replies.f64(n);
    } catch (e) {
      this.#readFailed(pos, e);
      return;
    }
    this.#replyOk();
  }

  #scan(
    cat: Uint8Array,
    start: Uint8Array,
    stop: Uint8Array,
    reverse: boolean,
    limit: number,
  ): void {
    let w = this.#replies;
    let at = w.pos;
    // Rows read before any write of this group are committed data: they may leave in
    // parts while the scan goes on. After a write they wait for the commit like the rest.
    const stream = this.#dirtyPos < 0;
    try {
      w.u8(Status.Rows);
      w.u32(0);
      let n = 0;
      this.#backend.scanPages(cat, start, stop, reverse, limit, (rows) => {
        for (let i = 0; i < rows.length; i++) {
          const [k, p] = rows[i] as [Uint8Array, Uint8Array];
          w.blob(k);
          w.blob(p);
          n++;
          if (stream && w.pos - at >= SCAN_PART_BYTES) {
            w.buf[at] = Status.RowsPart;
            patchU32(w, at + 1, n);
            this.#sendReplies(0);
            w = this.#replies;
            at = w.pos;
            w.u8(Status.Rows);
            w.u32(0);
            n = 0;
          }
        }
      });
      patchU32(w, at + 1, n);
    } catch (e) {
      this.#readFailed(at, e);
      return;
    }
    this.#replyOk();
  }

  #flush(): void {
    if (this.#dirtyPos >= 0) this.#flushSinceDirty = true;
    if (this.#unflushedFailures === 0) {
      this.#replies.u8(Status.Done);
      this.#replyOk();
      return;
    }
    const first = this.#firstUnflushedFailure;
    this.#replyError({
      kind: first?.kind ?? 'Backend',
      message: `${this.#unflushedFailures} write batch(es) failed since the last flush; first: ${first?.message ?? 'unknown'}`,
      code: first?.code,
    });
    this.#clearFailures();
  }

  // -------------------------------------------------------------------------------------
  // Writes

  /** Fire an injected fault of one of these kinds, if one is due. */
  #inject(kinds: readonly InjectedFault[]): void {
    const next = this.#injected[0];
    if (next === undefined || !kinds.includes(next.fault)) return;
    if (next.skip > 0) {
      next.skip--;
      return;
    }
    if (next.fault === 'rollback-twice') next.fault = 'rollback';
    else this.#injected.shift();
    this.#backend.rollback();
    const code = next.fault === 'commit' ? 'SQLITE_IOERR' : 'SQLITE_FULL';
    throw Object.assign(new Error(`injected fault: ${next.fault}`), { code });
  }

  /**
   * If the frame holds `PUT_RUN` single-put batches in a row from `at`, insert them with
   * one statement and set `#runEnd` past them. Each batch stays atomic on its own: if the
   * statement fails (SQLite undoes all of it), they are applied one by one instead, so
   * only the failing one fails. Returns false when there is no such run, or on failure.
   */
  #putRun(r: ByteReader, at: number): boolean {
    const buf = r.buf;
    // First look, without decoding: PUT_RUN records, each a batch of one put.
    let p = at;
    for (let i = 0; i < PUT_RUN; i++) {
      if (p + 10 > buf.length || buf[p] !== Tag.Batch) return false;
      const body = readU32(buf, p + 1);
      // count 0,0,0,1 then the kind
      if (
        buf[p + 5] !== 0 ||
        buf[p + 6] !== 0 ||
        buf[p + 7] !== 0 ||
        buf[p + 8] !== 1 ||
        buf[p + 9] !== OpKind.Put
      ) {
        return false;
      }
      p += 5 + body;
    }
    const args = this.#runArgs;
    r.pos = at;
    for (let i = 0; i < PUT_RUN; i++) {
      r.pos += 10; // tag, body length, op count, kind
      args[i * 3] = this.#category(r);
      args[i * 3 + 1] = r.blob();
      args[i * 3 + 2] = r.blob();
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

  /** Apply a batch's ops; `r` is at its op count. */
  #applyOps(r: ByteReader): void {
    if (this.#injected.length > 0) this.#inject(['rollback', 'rollback-twice']);
    const b = this.#backend;
    const n = r.u32();
    for (let i = 0; i < n; i++) {
      const kind = r.u8();
      const cat = this.#category(r);
      const key = r.blob();
      if (kind === OpKind.Put) b.put(cat, key, r.blob());
      else if (kind === OpKind.Delete) b.delete(cat, key);
      else b.deleteRange(cat, key, r.blob());
    }
  }

  #batch(r: ByteReader, at: number, end: number): void {
    const buf = r.buf;
    const opsAt = r.pos;
    const notBegun = this.#beginIfNeeded(buf, at);
    if (notBegun !== undefined) {
      this.#batchFailed(buf, opsAt, end, notBegun);
      return;
    }
    const b = this.#backend;
    // One statement is atomic by itself; only a multi-op batch needs a savepoint.
    const multi =
      buf[opsAt] !== 0 ||
      buf[opsAt + 1] !== 0 ||
      buf[opsAt + 2] !== 0 ||
      (buf[opsAt + 3] as number) > 1;
    try {
      if (multi) b.savepoint();
      this.#applyOps(r);
      if (multi) b.release();
    } catch (e) {
      const error = toErrorInfo(e);
      this.#undoFailedWrite(multi, buf, at, error);
      this.#batchFailed(buf, opsAt, end, error);
    }
  }

  #deleteAcked(buf: Uint8Array, at: number, cat: Uint8Array, key: Uint8Array): void {
    const notBegun = this.#beginIfNeeded(buf, at);
    if (notBegun !== undefined) {
      this.#replyError(notBegun);
      return;
    }
    let removed: boolean;
    try {
      removed = this.#backend.delete(cat, key) > 0;
    } catch (e) {
      const error = toErrorInfo(e);
      this.#undoFailedWrite(false, buf, at, error);
      this.#replyError(error);
      return;
    }
    // If the group is lost later, this reply is rewritten with the other dirty ones.
    this.#replies.u8(removed ? Status.True : Status.False);
    this.#replyOk();
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
      this.#dirtyPos = this.#replies.pos;
      this.#dirtyCount = this.#replyCount;
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
        if (tag === Tag.Batch) this.#applyOps(r);
        else b.delete(this.#category(r), r.blob());
      });
      return true;
    } catch (e) {
      const info = toErrorInfo(e, cause === undefined ? 'redo' : `redo after ${cause.message}`);
      this.#loseGroup(info, until);
      return false;
    }
  }

  /** Visit the open transaction's applied writes before `until`, reader at their body. */
  #eachTxWrite(
    until: RecordAt | undefined,
    visit: (r: ByteReader, tag: number, at: number) => void,
  ): void {
    const frames = this.#txFrames;
    for (let f = 0; f < frames.length; f++) {
      const buf = frames[f] as Uint8Array;
      const r = new ByteReader(buf, f === 0 ? this.#txFrom : 0);
      while (!r.done) {
        const at = r.pos;
        if (until !== undefined && buf === until.buf && at >= until.at) return;
        const tag = r.u8();
        const end = skipRecord(tag, r);
        const failed = this.#txFailed.some((x) => x.buf === buf && x.at === at);
        if ((tag === Tag.Batch || tag === Tag.DeleteAcked) && !failed) {
          r.pos = at + (tag === Tag.Batch ? 5 : 1);
          visit(r, tag, at);
        }
        r.pos = end;
      }
      if (until !== undefined && buf === until.buf) return;
    }
  }

  /** The open transaction is gone for good: every write in it failed. */
  #loseGroup(error: ErrorInfo, until?: RecordAt): void {
    this.#backend.rollback();
    this.#eachTxWrite(until, (r, tag) => {
      if (tag !== Tag.Batch) return;
      const opsAt = r.pos;
      const end = skipRecord(Tag.Batch, new ByteReader(r.buf, opsAt - 4));
      this.#batchFailed(r.buf, opsAt, end, error);
    });
    this.#txFrames = [];
    this.#txFailed = [];
    if (this.#dirtyPos >= 0) {
      // Replies computed from the lost writes must not reach the caller as Ok.
      const n = this.#replyCount - this.#dirtyCount;
      this.#replies.pos = this.#dirtyPos;
      this.#replyCount = this.#dirtyCount;
      for (let i = 0; i < n; i++) this.#replyError(error);
      if (this.#flushSinceDirty) this.#clearFailures();
      this.#dirtyPos = -1;
    }
  }

  #batchFailed(buf: Uint8Array, opsAt: number, end: number, error: ErrorInfo): void {
    this.#failures.push({ record: buf.slice(opsAt, end), error });
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
        if (this.#injected.length > 0) this.#inject(['commit']);
        this.#backend.commit();
      } catch (e) {
        this.#loseGroup(toErrorInfo(e, 'commit'));
      }
    }
    this.#txFrames = [];
    this.#txFailed = [];
    this.#dirtyPos = -1;
    this.#shortRunFrame = undefined; // not to keep a frame alive
    this.#sendReplies(this.#frames);
    this.#frames = 0;
  }

  /**
   * Send the replies gathered so far, headed by how many frames are finished (0 for
   * replies sent before their group ends), with the errors they refer to and the batch
   * failures found so far: a flush answered early with Err must not arrive before the
   * writeFailed events it counts.
   */
  #sendReplies(framesDone: number): void {
    const w = this.#replies;
    if (framesDone === 0 && this.#replyCount === 0 && w.pos === REPLY_HEADER) return;
    patchU32(w, 0, framesDone);
    const [bytes, transfer, handedOver] = takeBytes(w);
    const failures = this.#failures;
    const simple = this.#errors.length === 0 && failures.length === 0;
    const msg: FromWorker = simple
      ? bytes
      : { t: 'replies', bytes, errors: this.#errors, failures };
    this.#port.postMessage(msg, transfer);
    if (handedOver) this.#replies = new ByteWriter(REPLY_HEADER + 256);
    this.#replies.pos = REPLY_HEADER;
    this.#replyCount = 0;
    if (this.#errors.length > 0) this.#errors = [];
    if (failures.length > 0) this.#failures = [];
  }

  #close(): void {
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
      t: 'closed',
      image,
      error,
      polls: { ...this.#pollStats },
      reads: { ...this.#readStats },
    };
    this.#port.postMessage(msg, image === undefined ? [] : [image.buffer as ArrayBuffer]);
    this.#port.close();
  }

  #crash(how: 'throw' | 'exit'): never {
    if (how === 'exit') process.exit(70);
    throw new Error('persistency worker: crash requested by a test');
  }
}

/** Whether a Get record of category `cat` starts at `p` (a frame is whole: no bounds to check). */
function isGetOf(buf: Uint8Array, p: number, cat: Uint8Array): boolean {
  if (p >= buf.length || buf[p] !== Tag.Get) return false;
  const n = cat.length;
  if (((buf[p + 1] as number) << 8) + (buf[p + 2] as number) !== n) return false;
  if (n > 64) return Buffer.from(buf.buffer, buf.byteOffset + p + 3, n).equals(cat);
  for (let i = 0; i < n; i++) if (buf[p + 3 + i] !== cat[i]) return false;
  return true;
}

function readU32(buf: Uint8Array, p: number): number {
  return (
    (((buf[p] as number) << 24) |
      ((buf[p + 1] as number) << 16) |
      ((buf[p + 2] as number) << 8) |
      (buf[p + 3] as number)) >>>
    0
  );
}

/** The reply records that lead a `getMany` result, before its first large payload. */
interface Inline {
  readonly records: Uint8Array;
  readonly count: number;
}

/**
 * The leading inline records of `found`, which must be exactly `keys` records of
 * `KvBackend.getMany`'s result; undefined when it is not.
 */
function inlineRecords(found: Buffer, keys: number): Inline | undefined {
  let p = 0;
  let count = -1; // records before the first large one, once one is met
  let end = 0;
  for (let i = 0; i < keys; i++) {
    const status = found[p];
    if (status === GET_MANY_LARGE && count < 0) {
      count = i;
      end = p;
    }
    if (status === Status.None || status === GET_MANY_LARGE) p += 1;
    else if (status === Status.Bytes && p + 5 <= found.length) p += 5 + readU32(found, p + 1);
    else return undefined;
  }
  if (p !== found.length) return undefined;
  return count < 0 ? { records: found, count: keys } : { records: found.subarray(0, end), count };
}

/** Write a u32 at `at` without moving the writer. */
function patchU32(w: ByteWriter, at: number, v: number): void {
  const end = w.pos;
  w.pos = at;
  w.u32(v);
  w.pos = end;
}

/** Turn SQLite's terse open errors into ones that say what to do. */
function explainOpenFailure(dbPath: string, e: unknown): ErrorInfo {
  const info = toErrorInfo(e, dbPath);
  if (info.kind === 'Busy') {
    return {
      ...info,
      message: `${dbPath} is open in another process or Persistency instance (${info.message})`,
    };
  }
  const code = info.code ?? '';
  if (dbPath !== ':memory:' && /^SQLITE_(READONLY|CANTOPEN|PERM|IOERR_LOCK|AUTH)/.test(code)) {
    try {
      accessSync(dbPath, fsConstants.W_OK);
    } catch {
      return { ...info, message: `${dbPath} is not writable by this process (${info.message})` };
    }
  }
  return info;
}

function start(port: Port, req: OpenRequest): void {
  let backend: KvBackend;
  try {
    backend = KvBackend.open(req.dbPath, req, req.image);
  } catch (e) {
    port.postMessage({
      t: 'openFailed',
      error: explainOpenFailure(req.dbPath, e),
    } satisfies FromWorker);
    port.close();
    return;
  }
  const worker = new JobWorker(port, backend, req.dbPath === ':memory:', req.poll);
  port.on('message', (m: ToWorker) => worker.onMessage(m));
  port.postMessage({
    t: 'ready',
    file: req.dbPath === ':memory:' ? undefined : req.dbPath,
  } satisfies FromWorker);
}

// A worker is started ahead of need (its modules loaded, better-sqlite3 included) and
// learns which job it serves from its first message.
if (!isMainThread && parentPort) {
  const port = parentPort;
  port.once('message', (m: ToWorker) => {
    if (m instanceof Uint8Array || m.t !== 'open') {
      port.close();
      return;
    }
    start(port, m.req);
  });
}
