/*
 * A durable ILocalHistory for @waku/sds's MessageChannel: SDS reads its history
 * synchronously, so the history is held in memory, in SDS's own order, loaded from the job
 * once at start; every push that changes it is written through as one batch
 * (fire-and-forget, in order with the job's other writes).
 */
import { type ContentMessage, isContentMessage } from '@waku/sds';
import { errAsync, ResultAsync } from 'neverthrow';
import { describeThrown } from '../describe.js';
import { codeOf, invalidArgument } from '../errors.js';
import { compareKeys, Job, type Key, PersistencyError, type TxOp } from '../index.js';
import { persistOrRefusal } from '../job.js';
import {
  channelPrefix,
  decodeStored,
  dropSdsChannel,
  HINTS_CATEGORY,
  HISTORY_CATEGORY,
  hintOp,
  messageKey,
  removeOps,
  storeOps,
} from './layout.js';

/**
 * What MessageChannel's constructor takes as its history (@waku/sds 0.0.8 does not export
 * the name); {@link SdsLocalHistory} is one.
 * @example const history: ILocalHistory = (await openSdsHistory(job, 'chat'))._unsafeUnwrap();
 */
export type ILocalHistory = Pick<
  ContentMessage[],
  'some' | 'push' | 'slice' | 'find' | 'length' | 'findIndex'
>;

type Predicate = (value: ContentMessage, index: number, obj: ContentMessage[]) => unknown;

// SDS sorts its history by `a.valueOf().localeCompare(b.valueOf())` (zero-padded lamport
// timestamp, `_`, message id); a collator with no locale is that same comparison.
const collator = new Intl.Collator();
const sdsOrder = (a: ContentMessage, b: ContentMessage): number =>
  collator.compare(a.valueOf(), b.valueOf());

/**
 * One SDS channel's history, kept in a job. Give it to `new MessageChannel(channelId,
 * senderId, options, history)`; it behaves as SDS's in-memory history (same order, one
 * entry per message id, same refusal of sync and ephemeral messages) and writes each
 * change through to the job. Make the writes durable with {@link SdsLocalHistory.flush}.
 * Open one history per channel at a time.
 * @example
 * ```ts
 * const history = (await openSdsHistory(job, 'chat'))._unsafeUnwrap();
 * const channel = new MessageChannel('chat', 'alice', {}, history);
 * ```
 */
export class SdsLocalHistory implements ILocalHistory {
  readonly #items: ContentMessage[];
  readonly #byId = new Map<string, ContentMessage>();

  /** @internal Use {@link openSdsHistory}. */
  constructor(
    /** The job the history is kept in. */
    readonly job: Job,
    /** The SDS channel id. */
    readonly channelId: string,
    items: ContentMessage[],
  ) {
    this.#items = items;
    for (const m of items) this.#byId.set(m.messageId, m);
  }

  /**
   * How many messages the history holds.
   * @example history.length // 0 for a new channel
   */
  get length(): number {
    return this.#items.length;
  }

  /**
   * Add content messages, keeping SDS's order and one entry per message id (the earlier
   * in SDS's order wins, as in SDS's in-memory history); writes what changed to the job as
   * one batch. Throws, adding nothing, for a sync or ephemeral message (as SDS does) or a
   * message the job would refuse to store (`InvalidArgument`: a lamport timestamp outside
   * u64, a message over `maxPayloadBytes`).
   * @example history.push(message) // SDS calls this itself
   */
  push(...items: ContentMessage[]): number {
    const keys = items.map((m) => {
      if (!isContentMessage(m))
        throw new Error(
          'Message must have lamportTimestamp and content defined, sync and ephemeral messages cannot be stored',
        );
      return messageKey(this.channelId, m.lamportTimestamp, m.messageId);
    });
    // Decided first, applied after: nothing changes unless the job takes the batch.
    const decided = new Map<string, ContentMessage>();
    const changes: { readonly add: ContentMessage; readonly replaces?: ContentMessage }[] = [];
    const ops: TxOp[] = [];
    items.forEach((m, i) => {
      const held = decided.get(m.messageId) ?? this.#byId.get(m.messageId);
      if (held !== undefined) {
        // The same object again (SDS resending it) may carry a new hint.
        if (held === m) ops.push(hintOp(keys[i] as Key, m));
        if (sdsOrder(m, held) >= 0) return;
        ops.push(...removeOps(messageKey(this.channelId, held.lamportTimestamp, held.messageId)));
      }
      changes.push({ add: m, replaces: held });
      decided.set(m.messageId, m);
      ops.push(...storeOps(keys[i] as Key, m));
    });
    if (ops.length === 0) return this.#items.length;
    const refused = persistOrRefusal(this.job, ops);
    if (refused !== undefined) throw refused;
    for (const { add, replaces } of changes) {
      if (replaces !== undefined) this.#items.splice(this.#items.indexOf(replaces), 1);
      this.#items.splice(insertionPoint(this.#items, add), 0, add);
      this.#byId.set(add.messageId, add);
    }
    return this.#items.length;
  }

  /**
   * Whether a message of this id is in the history: SDS 0.0.8 forgets across a restart
   * which messages it received, so an application skips a redelivered one with this.
   * @example if (!history.has(message.messageId)) channel.pushIncomingMessage(message, hint);
   */
  has(messageId: string): boolean {
    return this.#byId.has(messageId);
  }

  /**
   * Whether a message satisfies `predicate` (as `Array.prototype.some`).
   * @example history.some((m) => m.senderId === 'bob')
   */
  some(predicate: Predicate, thisArg?: unknown): boolean {
    return this.#items.some(predicate, thisArg);
  }

  /**
   * The messages from `start` to `end` (as `Array.prototype.slice`), in SDS's order.
   * @example history.slice(-10) // the ten latest
   */
  slice(start?: number, end?: number): ContentMessage[] {
    return this.#items.slice(start, end);
  }

  /**
   * The first message satisfying `predicate` (as `Array.prototype.find`).
   * @example history.find((m) => m.messageId === id)
   */
  find<S extends ContentMessage>(
    predicate: (value: ContentMessage, index: number, obj: ContentMessage[]) => value is S,
    thisArg?: unknown,
  ): S | undefined;
  /**
   * The first message satisfying `predicate` (as `Array.prototype.find`).
   * @example history.find((m) => m.messageId === id)
   */
  find(predicate: Predicate, thisArg?: unknown): ContentMessage | undefined;
  find(predicate: Predicate, thisArg?: unknown): ContentMessage | undefined {
    return this.#items.find(predicate, thisArg);
  }

  /**
   * The index of the first message satisfying `predicate`, or -1.
   * @example history.findIndex((m) => m.messageId === id)
   */
  findIndex(predicate: Predicate, thisArg?: unknown): number {
    return this.#items.findIndex(predicate, thisArg);
  }

  /**
   * Resolves when every change made so far is durable (the job's `flush()`); `WriteFailed`
   * if a write failed since the job's previous flush.
   * @example (await history.flush())._unsafeUnwrap();
   */
  flush(): ResultAsync<void, PersistencyError> {
    return this.job.flush();
  }

  /**
   * Empty the history and remove the channel's rows from the job (see dropSdsChannel).
   * @example history.drop(); await history.flush();
   */
  drop(): void {
    dropSdsChannel(this.job, this.channelId);
    this.#items.length = 0;
    this.#byId.clear();
  }
}

/** Where `m` goes in `items`: after every message that does not sort after it. */
function insertionPoint(items: readonly ContentMessage[], m: ContentMessage): number {
  const last = items[items.length - 1];
  if (last === undefined || sdsOrder(last, m) <= 0) return items.length;
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sdsOrder(items[mid] as ContentMessage, m) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Load the history of SDS channel `channelId` from `job` (empty for a new channel).
 * `Err` when the job is closed or a stored row is not an SDS content message
 * (`code: 'SDS_UNDECODABLE'`) or not at its message's key (`'SDS_MISPLACED'`).
 * @example
 * ```ts
 * const history = (await openSdsHistory(job, 'chat')).unwrapOr(undefined);
 * const channel = new MessageChannel('chat', 'alice', {}, history);
 * ```
 */
export function openSdsHistory(
  job: Job,
  channelId: string,
): ResultAsync<SdsLocalHistory, PersistencyError> {
  if (!(job instanceof Job)) return errAsync(invalidArgument('openSdsHistory: expected a Job'));
  let prefix: Key;
  try {
    prefix = channelPrefix(channelId, 'openSdsHistory');
  } catch (e) {
    return errAsync(e as PersistencyError);
  }
  return job.scanPrefix(HINTS_CATEGORY, prefix).andThen((hints) =>
    ResultAsync.fromPromise(
      (async () => {
        const items: ContentMessage[] = [];
        const ids = new Map<string, string>();
        let h = 0;
        // SDS messages run to tens of KB (a bloom filter, up to 200 causal-history entries):
        // pages of 1,024 such rows are tens of MB each, which is several times slower.
        const pages = job.iteratePrefix(HISTORY_CATEGORY, prefix, { pageSize: 64 });
        for await (const row of pages) {
          while (h < hints.length && compareKeys(hints[h]?.key as Key, row.key) < 0) h++;
          const hint = hints[h];
          const at = hint?.key.equals(row.key) ? hint.payload : undefined;
          const message = decodeStored(job, channelId, row.key, row.payload, at, ids);
          if (message instanceof PersistencyError) throw message;
          items.push(message);
        }
        items.sort(sdsOrder); // a stable sort: one pass over rows already in SDS's order
        return new SdsLocalHistory(job, channelId, items);
      })(),
      (e) =>
        e instanceof PersistencyError
          ? e
          : new PersistencyError('Backend', `openSdsHistory: ${describeThrown(e)}`, {
              code: codeOf(e),
              cause: e,
            }),
    ),
  );
}
