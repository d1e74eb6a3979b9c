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
import { isMainThread, parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { KvBackend, toErrorInfo } from './backend.js';
import {
  type BatchFailure,
  ByteReader,
  ByteWriter,
  type ErrorInfo,
  type FromWorker,
  type OpenRequest,
  OpKind,
  Status,
  Tag,
  type ToWorker,
} from './protocol.js';

/** Stop draining the queue into one group past this many bytes of frames. */
const MAX_GROUP_BYTES = 64 * 1024 * 1024;

type Port = NonNullable<typeof parentPort>;

/** A write applied in the open transaction, kept until commit so it can be redone or reported. */
interface AppliedWrite {
  readonly redo: () => void;
  readonly fail: (error: ErrorInfo) => void;
}

class JobWorker {
  readonly #port: Port;
  readonly #backend: KvBackend;
  readonly #memory: boolean;

  // The current group.
  #replies = new ByteWriter(1024);
  #replyCount = 0;
  #errors: ErrorInfo[] = [];
  #failures: BatchFailure[] = [];
  #frames = 0;
  #applied: AppliedWrite[] = [];
  /** Replies from here on depend on the open transaction's writes. */
  #dirtyPos = -1;
  #dirtyCount = 0;
  #flushSinceDirty = false;

  /** Write failures not yet reported to a flush: the next flush returns Err. */
  #unflushedFailures = 0;
  #firstUnflushedFailure: ErrorInfo | undefined;

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
      switch (msg.t) {
        case 'frame':
          this.#frame(new Uint8Array(msg.buf, 0, msg.len));
          bytes += msg.len;
          break;
        case 'close':
          this.#endGroup();
          this.#close();
          return;
        case 'crash':
          this.#crash(msg.how);
          return;
      }
      if (bytes >= MAX_GROUP_BYTES) break;
      msg = (receiveMessageOnPort(this.#port)?.message as ToWorker | undefined) ?? undefined;
    }
    this.#endGroup();
  }

  #frame(buf: Uint8Array): void {
    this.#frames++;
    const r = new ByteReader(buf);
    while (!r.done) {
      const tag = r.u8();
      switch (tag) {
        case Tag.Batch: {
          const len = r.u32();
          const start = r.pos;
          r.pos += len;
          this.#batch(buf, start, start + len);
          break;
        }
        case Tag.Get: {
          const cat = r.shortBlob();
          const key = r.blob();
          this.#read(() => {
            const v = this.#backend.get(cat, key);
            if (v === undefined) {
              this.#replies.u8(Status.None);
            } else {
              this.#replies.u8(Status.Bytes);
              this.#replies.blob(v);
            }
          });
          break;
        }
        case Tag.Exists: {
          const cat = r.shortBlob();
          const key = r.blob();
          this.#read(() =>
            this.#replies.u8(this.#backend.exists(cat, key) ? Status.True : Status.False),
          );
          break;
        }
        case Tag.Scan: {
          const cat = r.shortBlob();
          const start = r.blob();
          const stop = r.blob();
          const reverse = r.u8() === 1;
          const limit = r.f64();
          this.#read(() => this.#scan(cat, start, stop, reverse, limit));
          break;
        }
        case Tag.Count: {
          const cat = r.shortBlob();
          const start = r.blob();
          const stop = r.blob();
          this.#read(() => {
            const n = this.#backend.count(cat, start, stop);
            this.#replies.u8(Status.Number);
            this.#replies.f64(n);
          });
          break;
        }
        case Tag.DeleteAcked: {
          const cat = r.shortBlob();
          const key = r.blob();
          this.#deleteAcked(cat, key);
          break;
        }
        case Tag.Flush:
          this.#flush();
          break;
        default:
          throw new Error(`persistency worker: unknown frame tag ${tag} at ${r.pos - 1}`);
      }
    }
  }

  /** Run a read and write its reply; a failure becomes an Err reply for that read only. */
  #read(run: () => void): void {
    const pos = this.#replies.pos;
    try {
      run();
    } catch (e) {
      this.#replies.pos = pos;
      this.#replyError(toErrorInfo(e));
      return;
    }
    this.#replyCount++;
  }

  #replyError(error: ErrorInfo): void {
    this.#replies.u8(Status.Error);
    this.#replies.u32(this.#errors.length);
    this.#errors.push(error);
    this.#replyCount++;
  }

  #scan(
    cat: Uint8Array,
    start: Uint8Array,
    stop: Uint8Array,
    reverse: boolean,
    limit: number,
  ): void {
    const w = this.#replies;
    w.u8(Status.Rows);
    const countAt = w.pos;
    w.u32(0);
    let n = 0;
    for (const [k, p] of this.#backend.scan(cat, start, stop, reverse, limit)) {
      w.blob(k);
      w.blob(p);
      n++;
    }
    const b = w.buf;
    b[countAt] = n >>> 24;
    b[countAt + 1] = (n >>> 16) & 0xff;
    b[countAt + 2] = (n >>> 8) & 0xff;
    b[countAt + 3] = n & 0xff;
  }

  #ensureTransaction(): void {
    if (this.#backend.inTransaction) return;
    this.#backend.begin();
    if (this.#dirtyPos < 0) {
      this.#dirtyPos = this.#replies.pos;
      this.#dirtyCount = this.#replyCount;
      this.#flushSinceDirty = false;
    }
  }

  #applyBatch(buf: Uint8Array, start: number, end: number): void {
    const b = this.#backend;
    const r = new ByteReader(buf.subarray(0, end), start);
    const n = r.u32();
    for (let i = 0; i < n; i++) {
      const kind = r.u8();
      const cat = r.shortBlob();
      const key = r.blob();
      if (kind === OpKind.Put) b.put(cat, key, r.blob());
      else if (kind === OpKind.Delete) b.delete(cat, key);
      else b.deleteRange(cat, key, r.blob());
    }
  }

  #batch(buf: Uint8Array, start: number, end: number): void {
    const redo = () => this.#applyBatch(buf, start, end);
    const fail = (error: ErrorInfo) => {
      this.#failures.push({ record: buf.slice(start, end), error });
      this.#noteFailure(error);
    };
    const opCount = new DataView(buf.buffer, buf.byteOffset + start, 4).getUint32(0);
    // One statement is atomic by itself; only a multi-op batch needs a savepoint.
    this.#write(redo, fail, opCount > 1);
  }

  #deleteAcked(cat: Uint8Array, key: Uint8Array): void {
    let removed = false;
    const redo = () => {
      removed = this.#backend.delete(cat, key) > 0;
    };
    // If the group is lost later, this reply is rewritten with the others; nothing to report.
    const ok = this.#write(
      redo,
      () => {},
      false,
      (error) => this.#replyError(error),
    );
    if (ok) {
      this.#replies.u8(removed ? Status.True : Status.False);
      this.#replyCount++;
    }
  }

  /**
   * Apply one write inside the group's transaction. On failure only this write is undone
   * (savepoint or statement rollback); if SQLite dropped the whole transaction (it does on
   * some I/O errors), the group's earlier writes are redone in a new one.
   */
  #write(
    redo: () => void,
    fail: (error: ErrorInfo) => void,
    savepoint: boolean,
    onOwnFailure?: (error: ErrorInfo) => void,
  ): boolean {
    const b = this.#backend;
    try {
      this.#ensureTransaction();
    } catch (e) {
      const error = toErrorInfo(e, 'begin transaction');
      (onOwnFailure ?? fail)(error);
      return false;
    }
    try {
      if (savepoint) b.savepoint();
      redo();
      if (savepoint) b.release();
      this.#applied.push({ redo, fail });
      return true;
    } catch (e) {
      const error = toErrorInfo(e);
      if (b.inTransaction) {
        if (savepoint) {
          try {
            b.rollbackToSavepoint();
          } catch (e2) {
            this.#loseGroup(toErrorInfo(e2, 'rollback to savepoint'));
          }
        }
      } else {
        this.#redoGroup(error);
      }
      (onOwnFailure ?? fail)(error);
      return false;
    }
  }

  /** SQLite rolled the transaction back: redo the group's applied writes, or fail them all. */
  #redoGroup(cause: ErrorInfo): void {
    const applied = this.#applied;
    if (applied.length === 0) return;
    try {
      this.#backend.begin();
      for (const w of applied) w.redo();
    } catch (e) {
      this.#backend.rollback();
      this.#loseGroup(toErrorInfo(e, `redo after ${cause.message}`));
    }
  }

  /** The open transaction is gone for good: every write in it failed. */
  #loseGroup(error: ErrorInfo): void {
    try {
      this.#backend.rollback();
    } catch {
      // Already rolled back by SQLite.
    }
    for (const w of this.#applied) w.fail(error);
    this.#applied = [];
    if (this.#dirtyPos >= 0) {
      // Replies computed from the lost writes must not reach the caller as Ok.
      const n = this.#replyCount - this.#dirtyCount;
      this.#replies.pos = this.#dirtyPos;
      this.#replyCount = this.#dirtyCount;
      for (let i = 0; i < n; i++) this.#replyError(error);
      if (this.#flushSinceDirty) this.#clearFailures();
      this.#dirtyPos = this.#replies.pos;
      this.#dirtyCount = this.#replyCount;
      this.#flushSinceDirty = false;
    }
  }

  #noteFailure(error: ErrorInfo): void {
    if (this.#unflushedFailures++ === 0) this.#firstUnflushedFailure = error;
  }

  #clearFailures(): void {
    this.#unflushedFailures = 0;
    this.#firstUnflushedFailure = undefined;
  }

  #flush(): void {
    if (this.#dirtyPos >= 0) this.#flushSinceDirty = true;
    if (this.#unflushedFailures === 0) {
      this.#replies.u8(Status.Done);
      this.#replyCount++;
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

  /** Commit the group's transaction, then send every reply of the group. */
  #endGroup(): void {
    if (this.#backend.inTransaction) {
      try {
        this.#backend.commit();
      } catch (e) {
        this.#loseGroup(toErrorInfo(e, 'commit'));
      }
    }
    this.#applied = [];
    this.#dirtyPos = -1;
    const w = this.#replies;
    const msg: FromWorker = {
      t: 'replies',
      frames: this.#frames,
      buf: this.#replyCount > 0 ? (w.buf.buffer as ArrayBuffer) : undefined,
      len: w.pos,
      errors: this.#errors,
      failures: this.#failures,
    };
    this.#port.postMessage(msg, msg.buf === undefined ? [] : [msg.buf]);
    if (this.#replyCount > 0) this.#replies = new ByteWriter(1024);
    this.#replies.pos = 0;
    this.#replyCount = 0;
    this.#errors = [];
    this.#failures = [];
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

if (!isMainThread && parentPort) start(parentPort, workerData as OpenRequest);
