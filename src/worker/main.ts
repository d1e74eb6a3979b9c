/*
 * The job worker: the only code that touches the job's SQLite connection.
 *
 * Group commit: when a frame arrives, the worker also drains every frame already queued
 * behind it, applies all their writes in one transaction (each batch under its own
 * savepoint, so a failing batch rolls back alone), runs their reads in order inside that
 * transaction (so reads see earlier writes), commits once, and only then answers. A read
 * or flush is never answered with data that a failed commit later takes back.
 */
import { accessSync, constants as fsConstants } from 'node:fs';
import { isMainThread, parentPort, receiveMessageOnPort } from 'node:worker_threads';
import { KvBackend, toErrorInfo } from './backend.js';
import {
  type BatchFailure,
  ByteReader,
  ByteWriter,
  type ErrorInfo,
  type FromWorker,
  type InjectedFault,
  type OpenRequest,
  OpKind,
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
  /** Consecutive ops usually share a category: bind the same bytes object again. */
  #lastCategory: Uint8Array = EMPTY;

  constructor(port: Port, backend: KvBackend, memory: boolean) {
    this.#port = port;
    this.#backend = backend;
    this.#memory = memory;
  }

  /** Handle one message and everything queued behind it, then commit and answer. */
  onMessage(first: ToWorker): void {
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
          return;
        case 'crash':
          this.#crash(msg.how);
          return;
        case 'inject':
          this.#injected.push({ fault: msg.fault, skip: msg.skipWrites });
          break;
      }
      if (bytes >= MAX_GROUP_BYTES) break;
      msg = receiveMessageOnPort(this.#port)?.message as ToWorker | undefined;
    }
    this.#endGroup();
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
          this.#batch(r, at, end);
          r.pos = end;
          break;
        }
        case Tag.Get:
          this.#get(this.#category(r), r.blob());
          break;
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

  #replyOk(): void {
    this.#replyCount++;
  }

  #replyError(error: ErrorInfo): void {
    this.#replies.u8(Status.Error);
    this.#replies.u32(this.#errors.length);
    this.#errors.push(error);
    this.#replyCount++;
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
    const w = this.#replies;
    const pos = w.pos;
    try {
      w.u8(Status.Rows);
      const countAt = w.pos;
      w.u32(0);
      let n = 0;
      for (const [k, p] of this.#backend.scan(cat, start, stop, reverse, limit)) {
        w.blob(k);
        w.blob(p);
        n++;
      }
      const end = w.pos;
      w.pos = countAt;
      w.u32(n);
      w.pos = end;
    } catch (e) {
      this.#readFailed(pos, e);
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
    try {
      b.begin();
      this.#eachTxWrite({ buf, at }, (r, tag) => {
        if (tag === Tag.Batch) this.#applyOps(r);
        else b.delete(this.#category(r), r.blob());
      });
      this.#txFailed.push({ buf, at });
    } catch (e) {
      this.#loseGroup(toErrorInfo(e, `redo after ${error.message}`), { buf, at });
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
    const w = this.#replies;
    const end = w.pos;
    w.pos = 0;
    w.u32(this.#frames);
    w.pos = end;
    const [bytes, transfer, handedOver] = takeBytes(w);
    const simple = this.#errors.length === 0 && this.#failures.length === 0;
    const msg: FromWorker = simple
      ? bytes
      : { t: 'replies', bytes, errors: this.#errors, failures: this.#failures };
    this.#port.postMessage(msg, transfer);
    if (handedOver) this.#replies = new ByteWriter(REPLY_HEADER + 256);
    this.#replies.pos = REPLY_HEADER;
    this.#replyCount = 0;
    if (!simple) {
      this.#errors = [];
      this.#failures = [];
    }
    this.#frames = 0;
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
    const msg: FromWorker = { t: 'closed', image, error };
    this.#port.postMessage(msg, image === undefined ? [] : [image.buffer as ArrayBuffer]);
    this.#port.close();
  }

  #crash(how: 'throw' | 'exit'): never {
    if (how === 'exit') process.exit(70);
    throw new Error('persistency worker: crash requested by a test');
  }
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
  if (req.drop) {
    try {
      KvBackend.probeLock(req.dbPath);
      // "ready" here means: the lock was free, and has been released again.
      port.postMessage({ t: 'ready', file: req.dbPath } satisfies FromWorker);
    } catch (e) {
      port.postMessage({ t: 'openFailed', error: toErrorInfo(e, req.dbPath) } satisfies FromWorker);
    }
    port.close();
    return;
  }
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
  const worker = new JobWorker(port, backend, req.dbPath === ':memory:');
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
