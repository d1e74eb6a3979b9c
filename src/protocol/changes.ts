/*
 * Change records: what a job's watchers are told, written by the worker after a commit and
 * read on the main thread (src/change-feed.ts). One message's changes are a sequence of
 *
 *   u32 watch id, u8 kind, u32 keyLen, key, then for a put: u32 payloadLen, payload
 *     (kind PUT: a row written; DELETE: a row removed; PREFIX: rows under `key` removed)
 *   u32 COMMIT_END: the changes before it (since the last one) were one commit's
 */
import { adoptKey, type Key } from '../keys.js';
import { readU32 } from './bytes.js';

export const ChangeKind = { Put: 1, Delete: 2, Prefix: 3 } as const;
export const COMMIT_END = 0xffff_ffff;

/**
 * One committed change in a watched range: a row written (`payload`), a row removed
 * (`payload: undefined`), or every row under `prefix` removed (a `deletePrefix`).
 * @example for await (const changes of job.watch('users', prefixRange(key()))) for (const c of changes) apply(c);
 */
export type Change =
  | { readonly key: Key; readonly payload: Uint8Array }
  | { readonly key: Key; readonly payload: undefined }
  | { readonly prefix: Key; readonly deleted: true };

/**
 * Read a message's changes: `deliver(id, changes)` once per commit and watch, in commit
 * order. Keys and payloads are views into `bytes`, which the caller hands over.
 */
export function readChanges(
  bytes: Uint8Array,
  deliver: (watch: number, changes: Change[]) => void,
): void {
  const commit = new Map<number, Change[]>();
  // The watch of the records just read: usually one per message.
  let id = -1;
  let list: Change[] = [];
  const end = bytes.length;
  for (let p = 0; p < end; ) {
    const watch = readU32(bytes, p);
    p += 4;
    if (watch === COMMIT_END) {
      for (const [w, changes] of commit) deliver(w, changes);
      commit.clear();
      id = -1;
      continue;
    }
    const kind = bytes[p++] as number;
    const keyLength = readU32(bytes, p);
    const key = adoptKey(bytes.subarray(p + 4, p + 4 + keyLength));
    p += 4 + keyLength;
    let change: Change;
    if (kind === ChangeKind.Put) {
      const n = readU32(bytes, p);
      change = { key, payload: bytes.subarray(p + 4, p + 4 + n) };
      p += 4 + n;
    } else if (kind === ChangeKind.Delete) change = { key, payload: undefined };
    else change = { prefix: key, deleted: true };
    if (watch !== id) {
      id = watch;
      list = commit.get(watch) ?? [];
      if (list.length === 0) commit.set(watch, list);
    }
    list.push(change);
  }
  for (const [w, changes] of commit) deliver(w, changes);
}
