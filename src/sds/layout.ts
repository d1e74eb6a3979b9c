/*
 * Where an SDS channel's history lives in a job (CONTRACT.md section 11). One category per
 * concern, both keyed (channel id, lamport timestamp, message id):
 *
 * | category     | key                                          | payload                         |
 * |--------------|----------------------------------------------|---------------------------------|
 * | `sds.history`| `key(channelId, u64(lamport), text(messageId))` | the message's SDS wire encoding |
 * | `sds.hints`  | the same key                                 | its retrieval hint's bytes      |
 *
 * The wire encoding is what `Message.encode()` writes, so any SDS implementation reads the
 * rows back; it leaves the retrieval hint out, hence the second category (no row when a
 * message has no hint; an empty hint is an empty payload). `text` sorts message ids in code-point order, which is SDS's order
 * for its own ids (lowercase hex); the channel id is a length-prefixed string, so one
 * channel's prefix never matches another's keys.
 */
import { type ContentMessage, isContentMessage, Message } from '@waku/sds';
import { err, ok, type Result } from 'neverthrow';
import { describe } from '../describe.js';
import { invalidArgument } from '../errors.js';
import { type Job, type Key, key, PersistencyError, type TxOp, text, u64 } from '../index.js';

/**
 * The category of the messages, each in its SDS wire encoding (`Message.encode()`).
 * @example Message.decode((await job.get(HISTORY_CATEGORY, messageKey('chat', ts, id)))._unsafeUnwrap()!)
 */
export const HISTORY_CATEGORY = 'sds.history';
/**
 * The category of the retrieval hints, keyed as their messages (no row for a message
 * without one).
 * @example await job.get(HINTS_CATEGORY, messageKey('chat', ts, id)) // the hint's bytes
 */
export const HINTS_CATEGORY = 'sds.hints';

/**
 * The prefix of every key of one channel, in both categories. Throws `InvalidArgument` for
 * a channel id that is not a string or is over 65,535 UTF-8 bytes (`key` would take an
 * array or object as a tuple, and an empty one as the prefix of every channel).
 */
export function channelPrefix(channelId: string, where: string): Key {
  if (typeof channelId !== 'string')
    throw invalidArgument(`${where}: channelId must be a string, got ${describe(channelId)}`);
  return key(channelId);
}

/**
 * The key of one message of a channel: SDS's history order (lamport timestamp, then
 * message id) as byte order.
 * @example messageKey('chat', 1_700_000_000_000n, 'ab12…')
 */
export function messageKey(channelId: string, lamportTimestamp: bigint, messageId: string): Key {
  return key(channelId, u64(lamportTimestamp), text(messageId));
}

/**
 * Message ids longer than this (UTF-16 units) are read back before they are stored: SDS's
 * wire codec (protons-runtime's UTF-8 reader, which works in chunks of 8,192 units) can
 * read a longer one back as another string.
 */
const ID_READ_BACK_FROM = 4096;

/**
 * The ops that store `message` (and its hint) under `at`. A message whose encoding would
 * not read back with its own id and timestamp is InvalidArgument (thrown): stored, it
 * could never be loaded again, nor its channel with it.
 */
export function storeOps(at: Key, message: ContentMessage): [TxOp, TxOp] {
  const bytes = message.encode();
  if (message.messageId.length > ID_READ_BACK_FROM) {
    const back = Message.decode(bytes);
    if (
      back === undefined ||
      back.messageId !== message.messageId ||
      back.lamportTimestamp !== message.lamportTimestamp
    )
      throw invalidArgument(
        `sds history: message id of ${message.messageId.length} UTF-16 units does not read back from SDS's encoding as it was written (SDS's UTF-8 reader splits long strings), so it could not be loaded again`,
      );
  }
  return [
    { kind: 'put', category: HISTORY_CATEGORY, key: at, payload: bytes },
    hintOp(at, message),
  ];
}

/**
 * The op that stores `message`'s retrieval hint under `at`, or removes a stored one: SDS
 * sets a new hint on a message it sends again and pushes the same object once more.
 */
export function hintOp(at: Key, message: ContentMessage): TxOp {
  const hint = message.retrievalHint;
  return hint !== undefined
    ? { kind: 'put', category: HINTS_CATEGORY, key: at, payload: hint }
    : { kind: 'delete', category: HINTS_CATEGORY, key: at };
}

/** The ops that remove the message stored under `at` (and its hint). */
export function removeOps(at: Key): TxOp[] {
  return [
    { kind: 'delete', category: HISTORY_CATEGORY, key: at },
    { kind: 'delete', category: HINTS_CATEGORY, key: at },
  ];
}

/**
 * The message stored under `at`, with its hint, its ids shared through `ids` (one map for a
 * whole load); a row that is not an SDS content message, or whose key does not match the
 * message it holds, is an `Err`, never skipped silently.
 */
export function decodeStored(
  job: Job,
  channelId: string,
  at: Key,
  bytes: Uint8Array,
  hint: Uint8Array | undefined,
  ids: Map<string, string>,
): ContentMessage | PersistencyError {
  const message = Message.decode(bytes);
  const where = `sds history of channel ${JSON.stringify(channelId)} in job ${JSON.stringify(job.id)}`;
  if (message === undefined || !isContentMessage(message))
    return new PersistencyError(
      'Backend',
      `${where}: the row at key ${at} is not an SDS content message`,
      { code: 'SDS_UNDECODABLE' },
    );
  if (!keyOf(channelId, message)?.equals(at))
    return new PersistencyError(
      'Backend',
      `${where}: the row at key ${at} holds message ${message.messageId} of lamport timestamp ${message.lamportTimestamp}, which belongs elsewhere`,
      { code: 'SDS_MISPLACED' },
    );
  if (hint !== undefined) message.retrievalHint = hint;
  shareIds(message, ids);
  return message;
}

/** The key `message` is stored under, or undefined when it has none (an id no key holds). */
function keyOf(channelId: string, message: ContentMessage): Key | undefined {
  try {
    return messageKey(channelId, message.lamportTimestamp, message.messageId);
  } catch {
    return undefined; // a lone surrogate in an id read back from a file: not where it is
  }
}

/**
 * Point the ids a message names (its own, its causal history's and repair requests') at one
 * string per id, as in a running SDS node, where history entries are built from the
 * messages themselves: decoded, each of up to 200 entries a message would hold copies.
 */
function shareIds(message: ContentMessage, ids: Map<string, string>): void {
  const shared = (s: string): string => {
    const held = ids.get(s);
    if (held !== undefined) return held;
    ids.set(s, s);
    return s;
  };
  message.messageId = shared(message.messageId);
  message.senderId = shared(message.senderId);
  for (const entries of [message.causalHistory, message.repairRequest])
    for (const e of entries) {
      e.messageId = shared(e.messageId);
      if (e.senderId !== undefined) e.senderId = shared(e.senderId);
    }
}

/**
 * Remove a channel's whole history from `job` (fire-and-forget, in order with the job's
 * other writes; `job.flush()` makes it durable). Other channels are untouched. `Err`
 * (`InvalidArgument`), queuing nothing, for a channel id that is not a string or too long.
 * @example dropSdsChannel(job, 'old-room'); await job.flush();
 */
export function dropSdsChannel(job: Job, channelId: string): Result<void, PersistencyError> {
  let prefix: Key;
  try {
    prefix = channelPrefix(channelId, 'dropSdsChannel');
  } catch (e) {
    return err(e as PersistencyError);
  }
  job.persist([
    { kind: 'deletePrefix', category: HISTORY_CATEGORY, prefix },
    { kind: 'deletePrefix', category: HINTS_CATEGORY, prefix },
  ]);
  return ok(undefined);
}
