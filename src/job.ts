/*
 * The Job handle: validates and normalises every call, packs the turn's work into one
 * frame for the worker, and matches the worker's replies to the reads waiting for them.
 */
import type { Worker } from 'node:worker_threads';
import { err, errAsync, ok, type Result, ResultAsync } from 'neverthrow';
import { lengthNow, realBytes } from './bytes.js';
import { invalidArgument, PersistencyError } from './errors.js';
import {
  adoptKey,
  describe,
  describeThrown,
  isKeyValue,
  type Key,
  type KeyRange,
  keyBytes,
  prefixRange,
} from './keys.js';
import { toPayload } from './payload.js';
import type { KvRow, ScanOptions, TxOp, WriteFailureReason } from './types.js';
import {
  type BatchFailure,
  ByteReader,
  ByteWriter,
  COPY_LIMIT,
  type ErrorInfo,
  type FromWorker,
  type InjectedFault,
  OpKind,
  type PollStats,
  type ReadStats,
  Status,
  Tag,
  type ToWorker,
  takeBytes,
} from './worker/protocol.js';

/**
 * Send a turn's frame early once it holds this much: a huge turn then streams to the
 * worker, which starts applying it while the rest is still being encoded.
 */
const FRAME_SEND_BYTES = 1024 * 1024;
const MIN_FRAME_BYTES = 256;
/**
 * Send a turn's frame early once it holds this many reads, so the worker starts on them
 * while the rest of the turn is still being issued.
 */
const FRAME_SEND_READS = 32;
/** The most ops one atomic batch may hold. */
export const MAX_BATCH_OPS = 1 << 22;
/** A batch's encoded size is a u32 in the frame. */
const MAX_BATCH_BYTES = 0xffff_fff0;
const MAX_CATEGORY_BYTES = 0xffff;
const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

const writeFlush = (w: ByteWriter): void => w.u8(Tag.Flush);

type Resolver = (r: Result<unknown, PersistencyError>) => void;

/**
 * One checked op, ready to encode: for a put `last` is the payload, for a prefix the stop;
 * `lastLength` is its length when it was checked.
 */
interface OpRecord {
  readonly kind: number;
  readonly category: Uint8Array;
  readonly key: Uint8Array;
  readonly last?: Uint8Array;
  readonly lastLength: number;
}

/** What a Job needs from the Persistency that owns it. */
export interface JobHost {
  readonly maxPayloadBytes: number;
  /** `count` defaults to the number of `ops` (pass it when the ops cannot be listed). */
  writeFailed(
    jobId: string,
    reason: WriteFailureReason,
    ops: readonly TxOp[],
    error: PersistencyError,
    count?: number,
  ): void;
  jobDied(job: Job, error: PersistencyError): void;
}

/** Read a rows record's count and rows, appending them to `rows`. */
function readRows(r: ByteReader, rows: KvRow[]): void {
  const n = r.u32();
  for (let i = 0; i < n; i++) {
    const key = adoptKey(r.blob());
    rows.push({ key, payload: r.blob() });
  }
}

/** The result of a job's close, for its owner. */
export interface CloseOutcome {
  readonly image: Uint8Array | undefined;
  readonly error: PersistencyError | undefined;
  /** What the worker's polling did (absent when the worker did not close normally). */
  readonly polls?: PollStats | undefined;
  /** How its gets were answered (absent when the worker did not close normally). */
  readonly reads?: ReadStats | undefined;
}

export function fromErrorInfo(info: ErrorInfo): PersistencyError {
  return new PersistencyError(
    info.kind,
    info.message,
    info.code === undefined ? {} : { code: info.code },
  );
}

/** Invalid input found while validating; carries the user-facing message. */
class Refused extends Error {}

/**
 * The InvalidArgument for anything thrown while reading a caller's arguments: our own
 * refusal, or whatever a hostile getter, proxy or detached buffer threw.
 */
function refusal(e: unknown, where: string): PersistencyError {
  if (e instanceof Refused) return invalidArgument(e.message);
  if (e instanceof PersistencyError && e.kind === 'InvalidArgument') return e;
  return invalidArgument(`${where}: reading an argument threw: ${describeThrown(e)}`, e);
}

let closeJob: (job: Job) => Promise<CloseOutcome>;
let crashJob: (job: Job, how: 'throw' | 'exit') => void;
let injectJob: (job: Job, fault: InjectedFault, skipWrites: number) => void;

/**
 * One open tenant: its own SQLite file and its own worker thread. Get one from
 * `p.openJob(id)`. Writes return nothing and are applied in order; reads return
 * `ResultAsync` and observe every earlier write of this job.
 *
 * @example
 * ```ts
 * const job = (await p.openJob('tenant-1'))._unsafeUnwrap();
 * job.persistPut('users', key('ada'), payload('Ada Lovelace'));
 * const name = await job.get('users', key('ada')); // Ok(Uint8Array)
 * ```
 */
export class Job {
  /**
   * The job id it was opened with.
   * @example (await p.openJob('tenant-1'))._unsafeUnwrap().id // 'tenant-1'
   */
  readonly id: string;
  readonly #worker: Worker;
  readonly #host: JobHost;
  #state: 'open' | 'closing' | 'closed' | 'dead' = 'open';
  #deathError: PersistencyError | undefined;

  /** The frame of the current turn, sent at the end of the turn. */
  #frame: ByteWriter | undefined;
  #frameSizeHint = MIN_FRAME_BYTES;
  /** Reads in the current frame. */
  #frameReads = 0;
  /** A writer whose bytes were copied out, ready for the next turn. */
  #idleWriter: ByteWriter | undefined;
  /** Reads and flushes waiting for their reply, in issue order. */
  #waiting: Resolver[] = [];
  #waitingHead = 0;
  #framesInFlight = 0;
  #referenced = true;
  /** The rows received so far of a scan whose reply comes in parts. */
  #partialRows: KvRow[] | undefined;

  #closed: Promise<CloseOutcome> | undefined;
  #closeResolve: ((o: CloseOutcome) => void) | undefined;
  #closeOutcome: CloseOutcome | undefined;
  #categories = new Map<string, Uint8Array>();

  static {
    closeJob = (job) => job.#close();
    crashJob = (job, how) => job.#post({ t: 'crash', how });
    injectJob = (job, fault, skipWrites) => {
      job.#send(); // the fault applies to what comes after the writes already issued
      job.#post({ t: 'inject', fault, skipWrites });
    };
  }

  /** @internal Made by Persistency once the worker is ready. */
  constructor(id: string, worker: Worker, host: JobHost) {
    this.id = id;
    this.#worker = worker;
    this.#host = host;
    worker.on('message', (m: FromWorker) => this.#onMessage(m));
    worker.on('error', (e: unknown) => {
      this.#deathError ??= new PersistencyError(
        'Backend',
        `job ${id}: worker failed: ${describe(e)} ${e instanceof Error ? e.message : ''}`,
        { cause: e },
      );
    });
    worker.on('exit', (code) => this.#onExit(code));
    this.#updateRef();
  }

  /**
   * True while the job is open: false once it is closed (or closing) or its worker has died.
   * @example await p.closeJob(job.id); job.running // false
   */
  get running(): boolean {
    return this.#state === 'open';
  }

  // -------------------------------------------------------------------------------------
  // Writes

  /**
   * Apply `ops` as one atomic batch: all of them or none. Invalid ops, or more than
   * 4,194,304 of them, refuse the whole batch (reported as a `writeFailed` event with
   * reason `'invalid'`); nothing is queued. An empty batch is a no-op.
   * @example job.persist([{ kind: 'put', category: 'log', key: key('c1', 1), payload: payload('hi') }])
   */
  persist(ops: readonly TxOp[]): void {
    let n: number;
    try {
      if (!Array.isArray(ops))
        throw new Refused(`persist: ops must be an array, got ${describe(ops)}`);
      const length: unknown = ops.length; // read once: a proxy cannot change it under the loop
      if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0) {
        throw new Refused(
          `persist: ops.length must be a non-negative integer, got ${describe(length)}`,
        );
      }
      n = length;
    } catch (e) {
      this.#host.writeFailed(this.id, 'invalid', [], refusal(e, 'persist'));
      return;
    }
    if (n > MAX_BATCH_OPS) {
      const error = invalidArgument(
        `persist: a batch holds at most ${MAX_BATCH_OPS} ops, got ${n}`,
      );
      this.#host.writeFailed(this.id, 'invalid', [], error, n);
      return;
    }
    // A snapshot, each element read once (at most MAX_BATCH_OPS of them): getters or
    // proxies cannot change the batch while it is checked and encoded, and the event for a
    // refused batch lists it whole without reading the caller's array again.
    const list: TxOp[] = new Array(n);
    const records: OpRecord[] = new Array(n);
    try {
      for (let i = 0; i < n; i++) list[i] = ops[i] as TxOp;
      for (let i = 0; i < n; i++) records[i] = this.#readOp(list[i], `persist: ops[${i}]`);
    } catch (e) {
      this.#host.writeFailed(this.id, 'invalid', list, refusal(e, 'persist'), n);
      return;
    }
    this.#batch(list, records);
  }

  /**
   * Insert or replace one row. A bad category, key or payload (not a `Uint8Array`, or over
   * `maxPayloadBytes`) is reported as a `writeFailed` event and not queued.
   * @example job.persistPut('users', key('ada'), payload('Ada'))
   */
  persistPut(category: string, key: Key, payload: Uint8Array): void {
    // The hot path: a known category, a real Key and payload. Anything else goes through
    // the general path, which validates and reports.
    const cat = typeof category === 'string' ? this.#categories.get(category) : undefined;
    const bytes = realBytes(payload);
    if (
      cat === undefined ||
      bytes === undefined ||
      this.#state !== 'open' ||
      !isKeyValue(key) ||
      bytes.length > this.#host.maxPayloadBytes
    ) {
      this.#single({ kind: 'put', category, key, payload });
      return;
    }
    const k = keyBytes(key);
    const w = this.#turnFrame();
    // tag, byteLength, opCount, kind, category, key, payload
    const body = 4 + 1 + 2 + cat.length + 4 + k.length + 4 + bytes.length;
    w.reserve(5 + body);
    w.u8(Tag.Batch);
    w.u32(body);
    w.u32(1);
    w.u8(OpKind.Put);
    w.shortBlob(cat);
    w.blob(k);
    w.blob(bytes);
    if (w.pos >= FRAME_SEND_BYTES) this.#send();
  }

  /**
   * Delete one row (no error if it is absent).
   * @example job.persistDelete('users', key('ada'))
   */
  persistDelete(category: string, key: Key): void {
    this.#single({ kind: 'delete', category, key });
  }

  /**
   * Delete every row of `category` whose key starts with `prefix`.
   * @example job.persistDeletePrefix('log', key('channel-42'))
   */
  persistDeletePrefix(category: string, prefix: Key): void {
    this.#single({ kind: 'deletePrefix', category, prefix });
  }

  /**
   * Put `toPayload(value)`; a value the codec refuses is reported as a `writeFailed` event.
   * @example job.persistEncoded('meta', key('c1'), { name: 'general', members: 42 })
   */
  persistEncoded(category: string, key: Key, value: Parameters<typeof toPayload>[0]): void {
    let bytes: Uint8Array;
    try {
      bytes = toPayload(value);
    } catch (e) {
      this.#host.writeFailed(this.id, 'invalid', [], refusal(e, 'persistEncoded'), 1);
      return;
    }
    this.#single({ kind: 'put', category, key, payload: bytes });
  }

  #single(op: TxOp): void {
    let record: OpRecord;
    try {
      record = this.#readOp(
        op,
        op.kind === 'put'
          ? 'persistPut'
          : op.kind === 'delete'
            ? 'persistDelete'
            : 'persistDeletePrefix',
      );
    } catch (e) {
      this.#host.writeFailed(this.id, 'invalid', [op], refusal(e, 'write'));
      return;
    }
    this.#batch([op], [record]);
  }

  /**
   * Append one atomic batch of checked records to the turn's frame. No caller code runs
   * here (it all ran in `#readOp`), so nothing can call back into the job mid-record.
   */
  #batch(ops: readonly TxOp[], records: readonly OpRecord[]): void {
    if (this.#state !== 'open') {
      this.#host.writeFailed(this.id, 'closed', ops, this.#notOpenError());
      return;
    }
    if (records.length === 0) return; // an empty batch is a no-op
    let body = 4;
    for (const r of records) {
      body += 1 + 2 + r.category.length + 4 + r.key.length;
      if (r.last === undefined) continue;
      // A getter run after this op was read may have detached or resized its payload.
      if (lengthNow(r.last) !== r.lastLength) {
        this.#host.writeFailed(
          this.id,
          'invalid',
          ops,
          invalidArgument(
            `persist: a payload of ${r.lastLength} bytes was detached or resized while the batch was read`,
          ),
        );
        return;
      }
      body += 4 + r.lastLength;
    }
    if (body > MAX_BATCH_BYTES) {
      this.#host.writeFailed(
        this.id,
        'invalid',
        ops,
        invalidArgument(
          `persist: a batch encodes to at most ${MAX_BATCH_BYTES} bytes, got ${body}`,
        ),
      );
      return;
    }
    // From here on no caller code runs: the records are checked bytes.
    const w = this.#turnFrame();
    const start = w.pos;
    try {
      w.reserve(5 + body);
      w.u8(Tag.Batch);
      w.u32(body);
      w.u32(records.length);
      for (const r of records) {
        w.u8(r.kind);
        w.shortBlob(r.category);
        w.blob(r.key);
        if (r.last !== undefined) w.blob(r.last);
      }
    } catch (e) {
      w.pos = start; // never leave half a batch in the frame
      this.#host.writeFailed(this.id, 'invalid', ops, refusal(e, 'persist'));
      return;
    }
    if (w.pos >= FRAME_SEND_BYTES) this.#send();
  }

  /**
   * Read and check one op of a caller (this may run the caller's getters), without
   * touching the frame.
   */
  #readOp(op: unknown, where: string): OpRecord {
    if (op === null || typeof op !== 'object')
      throw new Refused(`${where}: expected an op object, got ${describe(op)}`);
    const o = op as Record<string, unknown>;
    const kind = o.kind;
    switch (kind) {
      case 'put': {
        const category = this.#category(o.category, where);
        const k = this.#keyBytes(o.key, where, 'key');
        const given = o.payload;
        const payload = realBytes(given);
        if (payload === undefined) {
          throw new Refused(`${where}: payload must be a Uint8Array, got ${describe(given)}`);
        }
        if (payload.length > this.#host.maxPayloadBytes) {
          throw new Refused(
            `${where}: payload of ${payload.length} bytes exceeds the limit of ${this.#host.maxPayloadBytes}`,
          );
        }
        return { kind: OpKind.Put, category, key: k, last: payload, lastLength: payload.length };
      }
      case 'delete': {
        const category = this.#category(o.category, where);
        return {
          kind: OpKind.Delete,
          category,
          key: this.#keyBytes(o.key, where, 'key'),
          lastLength: 0,
        };
      }
      case 'deletePrefix': {
        const category = this.#category(o.category, where);
        const prefix = o.prefix;
        if (!isKeyValue(prefix))
          throw new Refused(`${where}: prefix must be a Key, got ${describe(prefix)}`);
        const range = prefixRange(prefix);
        const stop = range.stop === undefined ? EMPTY : keyBytes(range.stop);
        return {
          kind: OpKind.DeletePrefix,
          category,
          key: keyBytes(range.start),
          last: stop,
          lastLength: stop.length,
        };
      }
      default:
        throw new Refused(
          `${where}: kind must be 'put', 'delete' or 'deletePrefix', got ${describe(kind)}`,
        );
    }
  }

  #category(category: unknown, where: string): Uint8Array {
    if (typeof category !== 'string')
      throw new Refused(`${where}: category must be a string, got ${describe(category)}`);
    const cached = this.#categories.get(category);
    if (cached !== undefined) return cached;
    if (category.length === 0) throw new Refused(`${where}: category is empty`);
    if (!category.isWellFormed()) throw new Refused(`${where}: category has a lone surrogate`);
    if (category.length > MAX_CATEGORY_BYTES)
      throw new Refused(`${where}: category exceeds ${MAX_CATEGORY_BYTES} bytes`);
    const bytes = utf8.encode(category);
    if (bytes.length > MAX_CATEGORY_BYTES) {
      throw new Refused(
        `${where}: category of ${bytes.length} UTF-8 bytes exceeds ${MAX_CATEGORY_BYTES}`,
      );
    }
    if (this.#categories.size >= 1024) this.#categories.clear();
    this.#categories.set(category, bytes);
    return bytes;
  }

  #keyBytes(k: unknown, where: string, name: string): Uint8Array {
    if (!isKeyValue(k))
      throw new Refused(`${where}: ${name} must be a Key (use key(...)), got ${describe(k)}`);
    return keyBytes(k);
  }

  // -------------------------------------------------------------------------------------
  // Reads

  /**
   * Resolve after every earlier write of this job is committed to disk (`synchronous=FULL`).
   * `Err` if the commit failed, or if any write since the previous flush failed.
   * @example (await job.flush()).isOk()
   */
  flush(): ResultAsync<void, PersistencyError> {
    return this.#request<void>('flush', () => writeFlush);
  }

  /**
   * The payload stored under `key`, or `undefined`.
   * @example const r = await job.get('users', key('ada')); if (r.isOk() && r.value) use(r.value);
   */
  get(category: string, key: Key): ResultAsync<Uint8Array | undefined, PersistencyError> {
    return this.#request('get', () => this.#catKey(Tag.Get, category, key, 'get'));
  }

  /**
   * Whether a row exists under `key`.
   * @example await job.exists('users', key('ada')) // Ok(true)
   */
  exists(category: string, key: Key): ResultAsync<boolean, PersistencyError> {
    return this.#request('exists', () => this.#catKey(Tag.Exists, category, key, 'exists'));
  }

  /**
   * Rows of `category` with `range.start <= key < range.stop` (no upper bound without
   * `stop`), in key order, or reversed with `reverse: true`.
   * @example await job.scan('log', { start: key('c1', 10), stop: key('c1', 20) }, { limit: 5 })
   */
  scan(
    category: string,
    range: KeyRange,
    options?: ScanOptions,
  ): ResultAsync<KvRow[], PersistencyError> {
    return this.#request('scan', () =>
      this.#scanRecord(category, this.#range(range, 'scan'), options, 'scan'),
    );
  }

  /**
   * Rows of `category` whose key starts with `prefix`, in key order.
   * @example await job.scanPrefix('log', key('c1'), { reverse: true, limit: 20 }) // newest 20
   */
  scanPrefix(
    category: string,
    prefix: Key,
    options?: ScanOptions,
  ): ResultAsync<KvRow[], PersistencyError> {
    return this.#request('scanPrefix', () => {
      if (!isKeyValue(prefix)) {
        throw new Refused(`scanPrefix: prefix must be a Key, got ${describe(prefix)}`);
      }
      const { start, stop } = prefixRange(prefix);
      const bounds: [Uint8Array, Uint8Array] = [
        keyBytes(start),
        stop === undefined ? EMPTY : keyBytes(stop),
      ];
      return this.#scanRecord(category, bounds, options, 'scanPrefix');
    });
  }

  #scanRecord(
    category: string,
    [start, stop]: [Uint8Array, Uint8Array],
    options: ScanOptions | undefined,
    where: string,
  ): (w: ByteWriter) => void {
    const { reverse, limit } = this.#scanOptions(options, where);
    const cat = this.#category(category, where);
    return (w) => {
      w.u8(Tag.Scan);
      w.shortBlob(cat);
      w.blob(start);
      w.blob(stop);
      w.u8(reverse ? 1 : 0);
      w.f64(limit);
    };
  }

  /**
   * Number of rows of `category` in `range`.
   * @example await job.count('log', prefixRange(key('c1')))
   */
  count(category: string, range: KeyRange): ResultAsync<number, PersistencyError> {
    return this.#request('count', () => {
      const [start, stop] = this.#range(range, 'count');
      const cat = this.#category(category, 'count');
      return (w) => {
        w.u8(Tag.Count);
        w.shortBlob(cat);
        w.blob(start);
        w.blob(stop);
      };
    });
  }

  /**
   * Delete one row and report whether it existed, once the delete is committed.
   * @example await job.deleteAcked('users', key('ada')) // Ok(true), then Ok(false)
   */
  deleteAcked(category: string, key: Key): ResultAsync<boolean, PersistencyError> {
    return this.#request('deleteAcked', () =>
      this.#catKey(Tag.DeleteAcked, category, key, 'deleteAcked'),
    );
  }

  #catKey(tag: number, category: string, key: Key, where: string): (w: ByteWriter) => void {
    const cat = this.#category(category, where);
    const k = this.#keyBytes(key, where, 'key');
    return (w) => {
      w.u8(tag);
      w.shortBlob(cat);
      w.blob(k);
    };
  }

  #range(range: unknown, where: string): [Uint8Array, Uint8Array] {
    if (range === null || typeof range !== 'object') {
      throw new Refused(
        `${where}: range must be { start: Key, stop?: Key }, got ${describe(range)}`,
      );
    }
    const { start, stop } = range as { start?: unknown; stop?: unknown };
    const s = this.#keyBytes(start, where, 'range.start');
    if (stop === undefined) return [s, EMPTY];
    return [s, this.#keyBytes(stop, where, 'range.stop')];
  }

  #scanOptions(options: unknown, where: string): { reverse: boolean; limit: number } {
    if (options === undefined) return { reverse: false, limit: -1 };
    if (options === null || typeof options !== 'object') {
      throw new Refused(`${where}: options must be an object, got ${describe(options)}`);
    }
    const { reverse, limit } = options as { reverse?: unknown; limit?: unknown };
    if (reverse !== undefined && typeof reverse !== 'boolean') {
      throw new Refused(`${where}: options.reverse must be a boolean, got ${describe(reverse)}`);
    }
    if (
      limit !== undefined &&
      !(typeof limit === 'number' && Number.isSafeInteger(limit) && limit >= 0)
    ) {
      throw new Refused(
        `${where}: options.limit must be a non-negative integer, got ${describe(limit)}`,
      );
    }
    return { reverse: reverse === true, limit: limit === undefined ? -1 : limit };
  }

  /**
   * Queue a request record and a resolver for its reply. `prepare` reads and checks the
   * caller's arguments (which may run the caller's getters, even call back into this job)
   * and returns the writer of the record; only that writer touches the turn's frame.
   */
  #request<T>(
    what: string,
    prepare: () => (w: ByteWriter) => void,
  ): ResultAsync<T, PersistencyError> {
    if (this.#state !== 'open') return errAsync(this.#notOpenError());
    let write: (w: ByteWriter) => void;
    try {
      write = prepare();
    } catch (e) {
      return errAsync(refusal(e, what));
    }
    // A getter may have closed the job meanwhile.
    if (this.#state !== 'open') return errAsync(this.#notOpenError());
    write(this.#turnFrame());
    if (++this.#frameReads >= FRAME_SEND_READS) this.#send();
    return new ResultAsync(
      new Promise<Result<T, PersistencyError>>((resolve) => {
        this.#waiting.push(resolve as Resolver);
      }),
    );
  }

  #notOpenError(): PersistencyError {
    if (this.#state === 'dead') {
      return new PersistencyError(
        'Closed',
        `job ${this.id}: its worker died (${this.#deathError?.message ?? 'unknown cause'}); open it again`,
      );
    }
    return new PersistencyError('Closed', `job ${this.id} is closed`);
  }

  // -------------------------------------------------------------------------------------
  // Transport

  #turnFrame(): ByteWriter {
    if (this.#frame !== undefined) return this.#frame;
    // Reuse the last frame's writer when its bytes were copied out, not handed over.
    const w = this.#idleWriter ?? new ByteWriter(this.#frameSizeHint);
    this.#idleWriter = undefined;
    w.pos = 0;
    this.#frame = w;
    this.#frameReads = 0;
    queueMicrotask(() => {
      if (this.#frame === w) this.#send();
    });
    return w;
  }

  #send(): void {
    const w = this.#frame;
    if (w === undefined) return;
    this.#frame = undefined;
    if (w.pos === 0) {
      this.#idleWriter = w;
      return;
    }
    // Size a new frame like this one: small for a get, large for a bulk load.
    this.#frameSizeHint = Math.min(Math.max(w.pos, MIN_FRAME_BYTES), FRAME_SEND_BYTES * 2);
    this.#framesInFlight++;
    const [bytes, transfer, handedOver] = takeBytes(w);
    this.#post(bytes, transfer);
    if (!handedOver && w.buf.length <= COPY_LIMIT * 2) this.#idleWriter = w;
    this.#updateRef();
  }

  #post(msg: ToWorker, transfer: ArrayBuffer[] = []): void {
    this.#worker.postMessage(msg, transfer);
  }

  /** Keep the process alive only while the worker has work we wait on. */
  #updateRef(): void {
    const busy =
      this.#framesInFlight > 0 ||
      this.#waitingHead < this.#waiting.length ||
      this.#state === 'closing';
    if (busy === this.#referenced) return;
    this.#referenced = busy;
    if (busy) this.#worker.ref();
    else this.#worker.unref();
  }

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
        this.#closeOutcome = {
          image: m.image,
          error: m.error === undefined ? undefined : fromErrorInfo(m.error),
          polls: m.polls,
          reads: m.reads,
        };
        return;
      default:
        return;
    }
  }

  /** A group's replies: u32 frames finished, then one record per read or flush. */
  #onReplies(bytes: Uint8Array, errors: readonly ErrorInfo[]): void {
    const done =
      ((bytes[0] as number) << 24) |
      ((bytes[1] as number) << 16) |
      ((bytes[2] as number) << 8) |
      (bytes[3] as number);
    this.#framesInFlight -= done;
    if (bytes.length > 4) this.#resolveReplies(bytes.subarray(4), errors);
    this.#updateRef();
  }

  #nextWaiting(): Resolver | undefined {
    const r = this.#waiting[this.#waitingHead];
    if (r === undefined) return undefined;
    this.#waitingHead++;
    if (this.#waitingHead === this.#waiting.length) {
      this.#waiting = [];
      this.#waitingHead = 0;
    } else if (this.#waitingHead > 1024 && this.#waitingHead * 2 > this.#waiting.length) {
      this.#waiting = this.#waiting.slice(this.#waitingHead);
      this.#waitingHead = 0;
    }
    return r;
  }

  #resolveReplies(buf: Uint8Array, errors: readonly ErrorInfo[]): void {
    const r = new ByteReader(buf);
    while (!r.done) {
      const status = r.u8();
      let value: Result<unknown, PersistencyError>;
      switch (status) {
        case Status.None:
        case Status.Done:
          value = ok(undefined);
          break;
        case Status.Bytes:
          value = ok(r.blob().slice());
          break;
        case Status.True:
          value = ok(true);
          break;
        case Status.False:
          value = ok(false);
          break;
        case Status.Number:
          value = ok(r.f64());
          break;
        case Status.RowsPart:
          // Part of a long scan, sent while it runs: gather until its final record.
          this.#partialRows ??= [];
          readRows(r, this.#partialRows);
          continue;
        case Status.Rows: {
          const rows = this.#partialRows ?? [];
          this.#partialRows = undefined;
          readRows(r, rows);
          value = ok(rows);
          break;
        }
        case Status.Error: {
          const info = errors[r.u32()];
          value = err(
            info === undefined
              ? new PersistencyError('Backend', 'missing error detail')
              : fromErrorInfo(info),
          );
          break;
        }
        default:
          throw new Error(`persistency: unknown reply status ${status}`);
      }
      this.#partialRows = undefined; // a scan that failed after sending parts
      const resolve = this.#nextWaiting();
      if (resolve === undefined)
        throw new Error('persistency: a reply arrived with no request waiting');
      resolve(value);
    }
  }

  #reportFailure(f: BatchFailure): void {
    const ops: TxOp[] = [];
    let n = 0;
    try {
      const r = new ByteReader(f.record);
      n = r.u32();
      for (let i = 0; i < n; i++) {
        const kind = r.u8();
        const category = utf8Decoder.decode(r.shortBlob());
        const key = adoptKey(r.blob().slice());
        if (kind === OpKind.Put)
          ops.push({ kind: 'put', category, key, payload: r.blob().slice() });
        else if (kind === OpKind.Delete) ops.push({ kind: 'delete', category, key });
        else {
          r.skipBlob();
          ops.push({ kind: 'deletePrefix', category, prefix: key });
        }
      }
    } catch {
      // The error below still reports the failure; the ops are a courtesy.
    }
    this.#host.writeFailed(
      this.id,
      'backend',
      ops,
      fromErrorInfo(f.error),
      Math.max(n, ops.length),
    );
  }

  #failWaiting(error: PersistencyError): void {
    for (let r = this.#nextWaiting(); r !== undefined; r = this.#nextWaiting()) r(err(error));
  }

  #onExit(code: number): void {
    const wasOpen = this.#state === 'open';
    const closing = this.#state === 'closing';
    this.#frame = undefined;
    this.#framesInFlight = 0;
    this.#partialRows = undefined;
    if (closing && this.#closeOutcome !== undefined) {
      this.#state = 'closed';
      this.#failWaiting(new PersistencyError('Closed', `job ${this.id} is closed`));
    } else {
      this.#state = 'dead';
      const error =
        this.#deathError ??
        new PersistencyError(
          'Backend',
          `job ${this.id}: worker exited unexpectedly with code ${code}`,
        );
      this.#deathError = error;
      this.#failWaiting(error);
      if (closing) this.#closeOutcome = { image: undefined, error };
      if (wasOpen || closing) this.#host.jobDied(this, error);
    }
    this.#closeResolve?.(this.#closeOutcome ?? { image: undefined, error: undefined });
  }

  /** Drain, commit, checkpoint, close the connection and let the worker exit. */
  #close(): Promise<CloseOutcome> {
    if (this.#closed !== undefined) return this.#closed;
    if (this.#state !== 'open') {
      this.#closed = Promise.resolve({ image: undefined, error: undefined });
      return this.#closed;
    }
    this.#state = 'closing';
    this.#send();
    this.#post({ t: 'close' });
    this.#updateRef();
    this.#closed = new Promise((resolve) => {
      this.#closeResolve = resolve;
    });
    return this.#closed;
  }
}

/** @internal Close a job (Persistency.closeJob is the public way). */
export function closeJobHandle(job: Job): Promise<CloseOutcome> {
  return closeJob(job);
}

/** @internal Test hook: make SQLite fail once in the job's worker (see `InjectedFault`). */
export function injectFault(job: Job, fault: InjectedFault, skipWrites = 0): void {
  injectJob(job, fault, skipWrites);
}

/** @internal Test hook: make the job's worker die (`throw` an uncaught error, or `exit`). */
export function crashJobWorker(job: Job, how: 'throw' | 'exit' = 'throw'): void {
  crashJob(job, how);
}
