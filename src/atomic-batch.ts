/*
 * `job.atomic()`: a batch of checks and writes applied all or none, checked where the writes
 * are applied (the job's worker, in the order of every other write of the job), so that a
 * read-modify-write loop retries only when another writer really changed what it read.
 * Arguments are checked as each call is made; the first refusal is what `commit()` returns.
 */
import { errAsync, type ResultAsync } from 'neverthrow';
import {
  checkedAdd,
  checkedCheck,
  checkedOp,
  expiryOption,
  type OpRecord,
  refusal,
  type WriteLimits,
} from './checks.js';
import { invalidArgument, type PersistencyError } from './errors.js';
import type { Key } from './keys.js';
import { AtomicOutcome } from './protocol/requests.js';
import type { AtomicResult, PutOptions } from './types.js';

/** What an atomic batch needs from its job. */
export interface AtomicChannel {
  readonly limits: WriteLimits;
  /** A category's bytes (checked, cached by the job). */
  category(category: unknown, where: string): Uint8Array;
  /** Send the batch; resolves with its outcome once it is applied and durable, or not applied. */
  commit(records: readonly OpRecord[]): ResultAsync<AtomicResult, PersistencyError>;
}

/**
 * Checks and writes applied all or none, from `job.atomic()`; each method returns the batch,
 * `commit()` sends it.
 * @example
 * ```ts
 * const seen = (await job.get('stock', k))._unsafeUnwrap();
 * const r = await job.atomic().check('stock', k, seen).put('stock', k, next(seen)).commit();
 * ```
 */
export class AtomicBatch {
  readonly #channel: AtomicChannel;
  readonly #records: OpRecord[] = [];
  #refused: PersistencyError | undefined;
  #committed = false;

  /** @internal Made by `job.atomic()`. */
  constructor(channel: AtomicChannel) {
    this.#channel = channel;
  }

  /**
   * The batch applies only if `key` holds exactly `expected` when it is applied, or, with
   * `undefined`, has no row. Every check is evaluated before any write of the batch.
   * @example job.atomic().check('users', key('ada'), undefined).put('users', key('ada'), p).commit()
   */
  check(category: string, key: Key, expected: Uint8Array | undefined): this {
    return this.#add('check', () =>
      checkedCheck(this.#channel.category(category, 'check'), key, expected, 'atomic: check'),
    );
  }

  /**
   * Insert or replace one row (with `expireInMs`, one that expires).
   * @example job.atomic().put('sessions', key(id), p, { expireInMs: 60_000 }).commit()
   */
  put(category: string, key: Key, payload: Uint8Array, options?: PutOptions): this {
    return this.#add('put', () => {
      const expireInMs = options === undefined ? undefined : expiryOption(options, 'atomic: put');
      return this.#op({ kind: 'put', category, key, payload, expireInMs }, 'atomic: put');
    });
  }

  /**
   * Delete one row (no error if it is absent).
   * @example job.atomic().check('users', key('ada'), seen).delete('users', key('ada')).commit()
   */
  delete(category: string, key: Key): this {
    return this.#add('delete', () => this.#op({ kind: 'delete', category, key }, 'atomic: delete'));
  }

  /**
   * Delete every row of `category` whose key starts with `prefix`.
   * @example job.atomic().check('rooms', key('r1'), undefined).deletePrefix('msg', key('r1')).commit()
   */
  deletePrefix(category: string, prefix: Key): this {
    return this.#add('deletePrefix', () =>
      this.#op({ kind: 'deletePrefix', category, prefix }, 'atomic: deletePrefix'),
    );
  }

  /**
   * Add `delta` to the int64 counter at `key` (an absent row counts as 0; the payload is
   * `toPayload(i64(n))`). A sum outside int64 fails the batch (`reason: 'overflow'`).
   * @example job.atomic().add('counters', key('visits'), 1).commit()
   */
  add(category: string, key: Key, delta: number | bigint): this {
    return this.#add('add', () =>
      checkedAdd(this.#channel.category(category, 'add'), key, delta, 'atomic: add'),
    );
  }

  /**
   * Apply the batch: `Ok({ ok: true })` once it is applied and durable; `Ok({ ok: false,
   * reason })` when nothing of it was applied; `Err` for refused arguments, a closed job or a
   * failed commit. A batch commits once.
   * @example const r = await job.atomic().check('c', k, seen).put('c', k, next).commit();
   */
  commit(): ResultAsync<AtomicResult, PersistencyError> {
    if (this.#committed) return errAsync(invalidArgument('atomic: commit() was called already'));
    this.#committed = true;
    if (this.#refused !== undefined) return errAsync(this.#refused);
    return this.#channel.commit(this.#records);
  }

  #op(op: unknown, where: string): OpRecord {
    const channel = this.#channel;
    return checkedOp(op, where, channel.limits, (c, w) => channel.category(c, w));
  }

  #add(what: string, make: () => OpRecord): this {
    if (this.#refused !== undefined || this.#committed) return this;
    try {
      // Bytes as they are now (a payload, an expected value): the caller may reuse its buffer.
      const record = make();
      const last = record.last;
      this.#records.push(last === undefined ? record : { ...record, last: last.slice() });
    } catch (e) {
      this.#refused = refusal(e, `atomic: ${what}`);
    }
    return this;
  }
}

const NOT_APPLIED = {
  [AtomicOutcome.CheckFailed]: { ok: false, reason: 'check' },
  [AtomicOutcome.Overflow]: { ok: false, reason: 'overflow' },
  [AtomicOutcome.NotCounter]: { ok: false, reason: 'notCounter' },
} as const;

/** The result of an atomic batch from the outcome its record was answered with. */
export function atomicResult(outcome: number): AtomicResult {
  if (outcome === AtomicOutcome.Applied) return { ok: true };
  const result = NOT_APPLIED[outcome as keyof typeof NOT_APPLIED];
  if (result === undefined) throw new Error(`persistency: unknown atomic outcome ${outcome}`);
  return result;
}
