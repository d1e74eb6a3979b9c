/*
 * Change records: what a job's watchers are told, written by the worker after a commit and
 * read on the main thread (src/change-feed.ts). One message's changes are a sequence of
 *
 *   u32 watch id, u8 kind, u32 keyLen, key, then for a put: u32 payloadLen, payload
 *     (kind PUT: a row written; DELETE: a row removed; PREFIX: rows under `key` removed)
 *   u32 COMMIT_END: the changes before it (since the last one) were one commit's
 */
import { adoptKey, type Key } from '../keys.js';
import { ByteReader } from './bytes.js';

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
  const r = new ByteReader(bytes);
  const commit = new Map<number, Change[]>();
  while (!r.done) {
    const id = r.u32();
    if (id === COMMIT_END) {
      for (const [watch, changes] of commit) deliver(watch, changes);
      commit.clear();
      continue;
    }
    const kind = r.u8();
    const key = adoptKey(r.blob());
    let change: Change;
    if (kind === ChangeKind.Put) change = { key, payload: r.blob() };
    else if (kind === ChangeKind.Delete) change = { key, payload: undefined };
    else change = { prefix: key, deleted: true };
    let list = commit.get(id);
    if (list === undefined) {
      list = [];
      commit.set(id, list);
    }
    list.push(change);
  }
  for (const [watch, changes] of commit) deliver(watch, changes);
}
