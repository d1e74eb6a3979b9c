/*
 * A job's writes on the main thread: each checks its arguments (src/checks.ts), then writes
 * one batch record into the turn's frame; a refused write is reported as a `writeFailed`
 * event and queues nothing. `persistPut` of a known category is the hot path.
 */
import { realBytes } from './bytes.js';
import {
  categoryBytes,
  checkedAdd,
  checkedBatchBody,
  checkedLength,
  checkedOp,
  expiryOption,
  type OpRecord,
  refusal,
} from './checks.js';
import type { JobHost } from './client-host.js';
import { COUNTER_BYTES } from './counter.js';
import { invalidArgument, type PersistencyError } from './errors.js';
import type { JobClient } from './job-client.js';
import { isKeyValue, type Key, liveKeyBytes } from './keys.js';
import { MAX_BATCH_OPS, rowFits } from './limits.js';
import { toPayload } from './payload.js';
import type { ByteWriter } from './protocol/bytes.js';
import { writeAdd, writeBatch, writePut } from './protocol/requests.js';
import type { PutOptions, TxOp } from './types.js';

/** Categories remembered as bytes per job (the cache is emptied when full). */
const CATEGORY_CACHE = 1024;

/** A batch `queue` refused: what the `writeFailed` event reports. */
export interface Refusal {
  readonly list: readonly TxOp[];
  readonly error: PersistencyError;
  readonly count?: number;
}

export class JobWrites {
  readonly #id: string;
  readonly #client: JobClient;
  readonly #host: JobHost;
  readonly #categories = new Map<string, Uint8Array>();

  constructor(id: string, client: JobClient, host: JobHost) {
    this.#id = id;
    this.#client = client;
    this.#host = host;
  }

  /** A category's bytes, checked (throws what `refusal` reports) and cached. */
  readonly category = (category: unknown, where: string): Uint8Array => {
    const cached = typeof category === 'string' ? this.#categories.get(category) : undefined;
    if (cached !== undefined) return cached;
    const bytes = categoryBytes(category, where);
    if (this.#categories.size >= CATEGORY_CACHE) this.#categories.clear();
    this.#categories.set(category as string, bytes);
    return bytes;
  };

  /**
   * Apply `ops` as one atomic batch: all of them or none. Invalid ops, or more than
   * 4,194,304 of them, refuse the whole batch (reported as a `writeFailed` event with
   * reason `'invalid'`); nothing is queued. An empty batch is a no-op on an open job.
   * @example job.persist([{ kind: 'put', category: 'log', key: key('c1', 1), payload: payload('hi') }])
   */
  persist(ops: readonly TxOp[]): void {
    const refused = this.queue(ops);
    if (refused !== undefined)
      this.#host.writeFailed(this.#id, 'invalid', refused.list, refused.error, refused.count);
  }

  /**
   * `persist(ops)` answering a refused batch (nothing queued) instead of reporting it: for
   * a caller that changes state of its own with the batch (persistency/sds).
   */
  queue(ops: readonly TxOp[]): Refusal | undefined {
    let n: number;
    try {
      n = checkedLength(ops, 'persist', 'ops');
    } catch (e) {
      return { list: [], error: refusal(e, 'persist') };
    }
    if (n > MAX_BATCH_OPS) {
      const error = invalidArgument(
        `persist: a batch holds at most ${MAX_BATCH_OPS} ops, got ${n}`,
      );
      return { list: [], error, count: n };
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
      return { list, error: refusal(e, 'persist'), count: n };
    }
    return this.#batch(list, records);
  }

  /**
   * Insert or replace one row. A bad category, key or payload (not a `Uint8Array`, or over
   * `maxPayloadBytes`) is reported as a `writeFailed` event and not queued.
   * @example job.persistPut('users', key('ada'), payload('Ada'))
   */
  persistPut(category: string, key: Key, payload: Uint8Array, options?: PutOptions): void {
    if (options !== undefined) {
      this.#single({ kind: 'put', category, key, payload }, options);
      return;
    }
    // The hot path: a known category, a real Key and payload. Anything else goes through
    // the general path, which validates and reports.
    const cat = typeof category === 'string' ? this.#categories.get(category) : undefined;
    const bytes = realBytes(payload);
    const k = isKeyValue(key) ? liveKeyBytes(key) : undefined;
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
    this.#client.wrote(w, 1);
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
      this.#host.writeFailed(this.#id, 'invalid', [], refusal(e, 'persistEncoded'), 1);
      return;
    }
    this.#single({ kind: 'put', category, key, payload: bytes });
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
    // The hot path: a known category, a real Key, a safe integer.
    const cat = typeof category === 'string' ? this.#categories.get(category) : undefined;
    const k = isKeyValue(key) ? liveKeyBytes(key) : undefined;
    if (
      cat !== undefined &&
      k !== undefined &&
      rowFits(cat.length, k.length, COUNTER_BYTES) &&
      Number.isSafeInteger(delta) &&
      this.#client.running
    ) {
      const w = this.#client.frame();
      writeAdd(w, cat, k, delta as number);
      this.#client.wrote(w, 1);
      return;
    }
    let record: OpRecord;
    try {
      record = checkedAdd(this.category(category, 'persistAdd'), key, delta, 'persistAdd');
    } catch (e) {
      this.#host.writeFailed(this.#id, 'invalid', [], refusal(e, 'persistAdd'), 1);
      return;
    }
    this.#report(this.#batch([], [record], 1));
  }

  #checkedOp(op: unknown, where: string): OpRecord {
    return checkedOp(op, where, this.#host, this.category);
  }

  #single(op: TxOp, options?: unknown): void {
    let record: OpRecord;
    try {
      const where =
        op.kind === 'put'
          ? 'persistPut'
          : op.kind === 'delete'
            ? 'persistDelete'
            : 'persistDeletePrefix';
      const expireInMs = options === undefined ? undefined : expiryOption(options, where);
      const checked = expireInMs === undefined ? op : { ...op, expireInMs };
      record = this.#checkedOp(checked, where);
    } catch (e) {
      this.#host.writeFailed(this.#id, 'invalid', [op], refusal(e, 'write'));
      return;
    }
    this.#report(this.#batch([op], [record]));
  }

  /** Report a write refused after its ops were checked (see `#batch`). */
  #report(refused: Refusal | undefined): void {
    if (refused !== undefined)
      this.#host.writeFailed(this.#id, 'invalid', refused.list, refused.error, refused.count);
  }

  /**
   * Append one atomic batch of checked records to the turn's frame, or answer why it is
   * refused as a whole (too large to encode or to send); nothing is queued then. A closed
   * job is reported here. No caller code runs here (it all ran in `checkedOp`), so nothing
   * can call back into the job mid-record.
   */
  #batch(ops: readonly TxOp[], records: readonly OpRecord[], count?: number): Refusal | undefined {
    if (!this.#client.running) {
      this.#host.writeFailed(this.#id, 'closed', ops, this.#client.notOpenError(), count);
      return undefined;
    }
    if (records.length === 0) return undefined; // an empty batch is a no-op
    let w: ByteWriter;
    try {
      const body = checkedBatchBody(records);
      // From here on no caller code runs: the records are checked bytes.
      w = this.#client.frame((frame) => writeBatch(frame, records, body));
    } catch (e) {
      return { list: ops, error: refusal(e, 'persist'), count };
    }
    this.#client.wrote(w, records.length);
    return undefined;
  }
}
