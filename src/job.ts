/*
 * The Job handle: the public API of one tenant. Each method checks and normalises its
 * arguments (src/checks.ts), writes one record into the turn's frame and, for a read,
 * returns the `ResultAsync` its reply will settle (src/job-client.ts).
 */
import { errAsync, type ResultAsync } from 'neverthrow';
import { AtomicBatch, type AtomicChannel, atomicResult } from './atomic-batch.js';
import { checkedBatchBody, refusal } from './checks.js';
import type { CloseOutcome, JobHost } from './client-host.js';
import type { PersistencyError } from './errors.js';
import { JobBackups } from './job-backups.js';
import type { JobClient } from './job-client.js';
import { JobWrites } from './job-writes.js';
import type { Key, KeyRange } from './keys.js';
import type { toPayload } from './payload.js';
import type { ByteWriter } from './protocol/bytes.js';
import type { Change } from './protocol/changes.js';
import type { InjectedFault } from './protocol/messages.js';
import type { ReplyValue } from './protocol/replies.js';
import { Tag, writeBatch, writeFlush } from './protocol/requests.js';
import {
  type CategoryOf,
  countRecord,
  getManyRecord,
  iterateRequest,
  keyRecord,
  scanRecord,
} from './read-records.js';
import { type IteratorChannel, SnapshotIterator } from './snapshot-iterator.js';
import type {
  IterateOptions,
  KvRow,
  PutOptions,
  ScanOptions,
  TxOp,
  WatchOptions,
} from './types.js';
import { JobWatches } from './watch-registry.js';

let clientOf: (job: Job) => JobClient;
let writesOf: (job: Job) => JobWrites;

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
  readonly #iteratorChannel: IteratorChannel;
  readonly #atomicChannel: AtomicChannel;
  readonly #watches: JobWatches;
  readonly #backups: JobBackups;
  readonly #writes: JobWrites;
  readonly #category: CategoryOf;

  static {
    clientOf = (job) => job.#client;
    writesOf = (job) => job.#writes;
  }

  /** @internal Made by Persistency once the job's worker is ready. */
  constructor(id: string, client: JobClient, host: JobHost) {
    this.id = id;
    this.#client = client;
    this.#writes = new JobWrites(id, client, host);
    this.#category = this.#writes.category;
    this.#iteratorChannel = {
      page: (write) => this.#request('iterate', () => write),
      post: (write) => {
        if (client.running) client.frame(write);
      },
      held: (delta) => {
        client.holds.count += delta;
      },
      idleMs: host.iteratorIdleMs,
    };
    this.#atomicChannel = {
      limits: host,
      category: this.#category,
      commit: (records) =>
        this.#request(
          'commit',
          () => {
            const body = checkedBatchBody(records);
            return (w) => writeBatch(w, records, body, Tag.Atomic);
          },
          // Shaped as the reply settles: a later .map would settle it after later reads.
          (outcome) => atomicResult(outcome as number),
        ),
    };
    this.#watches = new JobWatches(client, this.#category);
    this.#backups = new JobBackups(client);
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
  // Writes (src/job-writes.ts)

  /**
   * Apply `ops` as one atomic batch: all of them or none. Invalid ops, or more than
   * 4,194,304 of them, refuse the whole batch (reported as a `writeFailed` event with
   * reason `'invalid'`); nothing is queued. An empty batch is a no-op.
   * @example job.persist([{ kind: 'put', category: 'log', key: key('c1', 1), payload: payload('hi') }])
   */
  persist(ops: readonly TxOp[]): void {
    this.#writes.persist(ops);
  }

  /**
   * Insert or replace one row; with `{ expireInMs }`, one that expires. A bad category, key,
   * payload (not a `Uint8Array`, or over `maxPayloadBytes`) or option is reported as a
   * `writeFailed` event and not queued.
   * @example job.persistPut('users', key('ada'), payload('Ada'))
   */
  persistPut(category: string, key: Key, payload: Uint8Array, options?: PutOptions): void {
    this.#writes.persistPut(category, key, payload, options);
  }

  /**
   * Delete one row (no error if it is absent).
   * @example job.persistDelete('users', key('ada'))
   */
  persistDelete(category: string, key: Key): void {
    this.#writes.persistDelete(category, key);
  }

  /**
   * Delete every row of `category` whose key starts with `prefix`.
   * @example job.persistDeletePrefix('log', key('channel-42'))
   */
  persistDeletePrefix(category: string, prefix: Key): void {
    this.#writes.persistDeletePrefix(category, prefix);
  }

  /**
   * Put `toPayload(value)`; a value the codec refuses is reported as a `writeFailed` event.
   * @example job.persistEncoded('meta', key('c1'), { name: 'general', members: 42 })
   */
  persistEncoded(category: string, key: Key, value: Parameters<typeof toPayload>[0]): void {
    this.#writes.persistEncoded(category, key, value);
  }

  /**
   * Add `delta` (a safe integer or a bigint) to the int64 counter at `key`: an absent row
   * counts as 0, the payload is `toPayload(i64(n))`, and a row's expiry is kept. Applied in
   * order with the other writes, with no read on this thread, so concurrent adds never
   * conflict. A sum outside int64, or a payload that is not a counter, fails this write alone
   * (a `writeFailed` event with an `Overflow` or `InvalidArgument` error; the next flush is Err).
   * @example job.persistAdd('counters', key('visits', day), 1)
   */
  persistAdd(category: string, key: Key, delta: number | bigint): void {
    this.#writes.persistAdd(category, key, delta);
  }

  /**
   * A batch of checks and writes applied all or none, where the job's writes are applied and
   * in their order: see AtomicBatch.
   * @example
   * ```ts
   * const seen = (await job.get('stock', k))._unsafeUnwrap();
   * const r = await job.atomic().check('stock', k, seen).put('stock', k, next(seen)).commit();
   * if (r.isOk() && !r.value.ok) retry();
   * ```
   */
  atomic(): AtomicBatch {
    return new AtomicBatch(this.#atomicChannel);
  }

  /**
   * The committed changes of `range` in `category` from now on, one array per commit, in
   * commit order (see ChangeFeed). `break` stops it at once; a watcher that falls more than
   * `maxQueued` changes behind ends with `Overflow`; closing the job ends it with `Closed`.
   * A watched job is not released when idle.
   * @example for await (const changes of job.watch('counters', prefixRange(key()))) render(changes);
   */
  watch(
    category: string,
    range: KeyRange,
    options?: WatchOptions,
  ): AsyncIterableIterator<Change[]> {
    return this.#watches.watch(category, range, options);
  }

  /**
   * Copy the job's committed data, with every write issued before this call, into the new
   * file `destFile` (its folder is made; an existing file is never replaced), while the
   * job's reads and writes go on: SQLite's online backup in the job's worker, a step at a
   * time. The copy opens as a job file (put it in a root as `<job file name>`).
   * @example await job.backup('/backups/2026-12-05/tenant-1.db');
   */
  backup(destFile: string): ResultAsync<void, PersistencyError> {
    return this.#backups.backup(destFile);
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
   * @example for await (const row of job.iterate('log', prefixRange(key('c1')))) use(row.key, row.payload);
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
    shape?: (reply: ReplyValue) => T,
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
    try {
      client.frame(write);
    } catch (e) {
      return errAsync(refusal(e, what));
    }
    return client.request<T>(what === 'flush', shape);
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

/**
 * @internal `job.persist(ops)`, answering a refused batch (nothing queued) instead of
 * reporting it: for a caller that changes state of its own with the batch (persistency/sds).
 */
export function persistOrRefusal(job: Job, ops: readonly TxOp[]): PersistencyError | undefined {
  return writesOf(job).queue(ops)?.error;
}

/** @internal The job's client (for the Persistency that owns it). */
export function jobClient(job: Job): JobClient {
  return clientOf(job);
}
