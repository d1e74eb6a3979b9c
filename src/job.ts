/*
 * The Job handle: the public API of one tenant. Each method checks and normalises its
 * arguments (src/checks.ts), writes one record into the turn's frame and, for a read,
 * returns the `ResultAsync` its reply will settle (src/job-client.ts).
 */
import { errAsync, type ResultAsync } from 'neverthrow';
import { realBytes } from './bytes.js';
import {
  categoryBytes,
  checkedBatchBody,
  checkedLength,
  checkedOp,
  type OpRecord,
  refusal,
} from './checks.js';
import type { CloseOutcome, JobHost } from './client-host.js';
import { invalidArgument, type PersistencyError } from './errors.js';
import type { JobClient } from './job-client.js';
import { isKeyValue, type Key, type KeyRange, keyBytes } from './keys.js';
import { rowFits } from './limits.js';
import { toPayload } from './payload.js';
import type { ByteWriter } from './protocol/bytes.js';
import type { InjectedFault } from './protocol/messages.js';
import { Tag, writeBatch, writeFlush, writePut } from './protocol/requests.js';
import {
  countRecord,
  getManyRecord,
  iterateRequest,
  keyRecord,
  scanRecord,
} from './read-records.js';
import { type IteratorChannel, SnapshotIterator } from './snapshot-iterator.js';
import type { IterateOptions, KvRow, ScanOptions, TxOp } from './types.js';

/** The most ops one atomic batch may hold. */
export const MAX_BATCH_OPS = 1 << 22;
/** A batch's encoded size is a u32 in the frame. */
/** Categories remembered as bytes per job (the cache is emptied when full). */
const CATEGORY_CACHE = 1024;

let clientOf: (job: Job) => JobClient;

/**
 * One open tenant: its own SQLite file, served by a worker thread. Get one from
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
  readonly #client: JobClient;
  readonly #host: JobHost;
  readonly #iteratorChannel: IteratorChannel;
  readonly #categories = new Map<string, Uint8Array>();
  readonly #category = (category: unknown, where: string): Uint8Array => {
    const cached = typeof category === 'string' ? this.#categories.get(category) : undefined;
    if (cached !== undefined) return cached;
    const bytes = categoryBytes(category, where);
    if (this.#categories.size >= CATEGORY_CACHE) this.#categories.clear();
    this.#categories.set(category as string, bytes);
    return bytes;
  };

  static {
    clientOf = (job) => job.#client;
  }

  /** @internal Made by Persistency once the job's worker is ready. */
  constructor(id: string, client: JobClient, host: JobHost) {
    this.id = id;
    this.#client = client;
    this.#host = host;
    this.#iteratorChannel = {
      page: (write) => this.#request('iterate', () => write),
      post: (write) => {
        if (client.running) write(client.frame());
      },
      held: (delta) => {
        client.snapshots += delta;
      },
      idleMs: host.iteratorIdleMs,
    };
  }

  /**
   * True while the job is open (also while it has released its connection when idle): false
   * once it is closed (or closing) or its worker has died.
   * @example await p.closeJob(job.id); job.running // false
   */
  get running(): boolean {
    return this.#client.running;
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
      n = checkedLength(ops, 'persist', 'ops');
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
      for (let i = 0; i < n; i++) records[i] = this.#checkedOp(list[i], `persist: ops[${i}]`);
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
    const k = isKeyValue(key) ? keyBytes(key) : undefined;
    if (
      cat === undefined ||
      bytes === undefined ||
      k === undefined ||
      !this.#client.running ||
      bytes.length > this.#host.maxPayloadBytes ||
      !rowFits(cat.length, k.length, bytes.length)
    ) {
      this.#single({ kind: 'put', category, key, payload });
      return;
    }
    const w = this.#client.frame();
    writePut(w, cat, k, bytes);
    this.#client.sendIfLarge(w);
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

  #checkedOp(op: unknown, where: string): OpRecord {
    return checkedOp(op, where, this.#host.maxPayloadBytes, this.#category);
  }

  #single(op: TxOp): void {
    let record: OpRecord;
    try {
      const where =
        op.kind === 'put'
          ? 'persistPut'
          : op.kind === 'delete'
            ? 'persistDelete'
            : 'persistDeletePrefix';
      record = this.#checkedOp(op, where);
    } catch (e) {
      this.#host.writeFailed(this.id, 'invalid', [op], refusal(e, 'write'));
      return;
    }
    this.#batch([op], [record]);
  }

  /**
   * Append one atomic batch of checked records to the turn's frame. No caller code runs
   * here (it all ran in `checkedOp`), so nothing can call back into the job mid-record.
   */
  #batch(ops: readonly TxOp[], records: readonly OpRecord[]): void {
    if (!this.#client.running) {
      this.#host.writeFailed(this.id, 'closed', ops, this.#client.notOpenError());
      return;
    }
    if (records.length === 0) return; // an empty batch is a no-op
    let body: number;
    try {
      body = checkedBatchBody(records);
    } catch (e) {
      this.#host.writeFailed(this.id, 'invalid', ops, refusal(e, 'persist'));
      return;
    }
    // From here on no caller code runs: the records are checked bytes.
    const w = this.#client.frame();
    const start = w.pos;
    try {
      writeBatch(w, records, body);
    } catch (e) {
      w.pos = start; // never leave half a batch in the frame
      this.#host.writeFailed(this.id, 'invalid', ops, refusal(e, 'persist'));
      return;
    }
    this.#client.sendIfLarge(w);
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
    return this.#request('get', () => keyRecord(Tag.Get, this.#category, category, key, 'get'));
  }

  /**
   * The payload under each of `keys` (`undefined` where there is none), in the order of
   * `keys`: one request and one reply however many (duplicates and an empty list too).
   * @example const [ada, bob] = (await job.getMany('users', [key('ada'), key('bob')]))._unsafeUnwrap();
   */
  getMany(
    category: string,
    keys: readonly Key[],
  ): ResultAsync<(Uint8Array | undefined)[], PersistencyError> {
    return this.#request('getMany', () => getManyRecord(this.#category, category, keys));
  }

  /**
   * Whether a row exists under `key`.
   * @example await job.exists('users', key('ada')) // Ok(true)
   */
  exists(category: string, key: Key): ResultAsync<boolean, PersistencyError> {
    return this.#request('exists', () =>
      keyRecord(Tag.Exists, this.#category, category, key, 'exists'),
    );
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
      scanRecord(this.#category, category, { range }, options, 'scan'),
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
    return this.#request('scanPrefix', () =>
      scanRecord(this.#category, category, { prefix }, options, 'scanPrefix'),
    );
  }

  /**
   * The rows of `range` (as `scan`), read lazily a page (`pageSize` rows) at a time from a
   * snapshot taken at the first `next()`: later writes are not seen. `break` lets go of the
   * snapshot at once; a failure rejects `next()` (the one place the API rejects).
   * @example for await (const { key, payload } of job.iterate('log', prefixRange(key('c1')))) use(key, payload);
   */
  iterate(
    category: string,
    range: KeyRange,
    options?: IterateOptions,
  ): AsyncIterableIterator<KvRow> {
    const request = iterateRequest(this.#category, category, { range }, options, 'iterate');
    return new SnapshotIterator(this.#iteratorChannel, request);
  }

  /**
   * `iterate(category, prefixRange(prefix), options)`: the rows whose key starts with `prefix`.
   * @example for await (const row of job.iteratePrefix('msg', key('general'), { reverse: true })) show(row);
   */
  iteratePrefix(
    category: string,
    prefix: Key,
    options?: IterateOptions,
  ): AsyncIterableIterator<KvRow> {
    const where = 'iteratePrefix';
    const request = iterateRequest(this.#category, category, { prefix }, options, where);
    return new SnapshotIterator(this.#iteratorChannel, request);
  }

  /**
   * Number of rows of `category` in `range`.
   * @example await job.count('log', prefixRange(key('c1')))
   */
  count(category: string, range: KeyRange): ResultAsync<number, PersistencyError> {
    return this.#request('count', () => countRecord(this.#category, category, range));
  }

  /**
   * Delete one row and report whether it existed, once the delete is committed.
   * @example await job.deleteAcked('users', key('ada')) // Ok(true), then Ok(false)
   */
  deleteAcked(category: string, key: Key): ResultAsync<boolean, PersistencyError> {
    return this.#request('deleteAcked', () =>
      keyRecord(Tag.DeleteAcked, this.#category, category, key, 'deleteAcked'),
    );
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
    const client = this.#client;
    if (!client.running) return errAsync(client.notOpenError());
    let write: (w: ByteWriter) => void;
    try {
      write = prepare();
    } catch (e) {
      return errAsync(refusal(e, what));
    }
    // A getter may have closed the job meanwhile.
    if (!client.running) return errAsync(client.notOpenError());
    write(client.frame());
    return client.request<T>(what === 'flush');
  }
}

/** @internal Close a job (Persistency.closeJob is the public way). */
export function closeJobHandle(job: Job): Promise<CloseOutcome> {
  return clientOf(job).close();
}

/** @internal Test hook: make SQLite fail once in the job's worker (see `InjectedFault`). */
export function injectFault(job: Job, fault: InjectedFault, skipWrites = 0): void {
  const client = clientOf(job);
  client.send(); // the fault applies to what comes after the writes already issued
  client.post({ t: 'inject', fault, skipWrites });
}

/** @internal Test hook: make the job's worker die (`throw` an uncaught error, or `exit`). */
export function crashJobWorker(job: Job, how: 'throw' | 'exit' = 'throw'): void {
  clientOf(job).post({ t: 'crash', how });
}

/** @internal The job's client (for the Persistency that owns it). */
export function jobClient(job: Job): JobClient {
  return clientOf(job);
}
