/*
 * Change records: what a job's watchers are told, written by the worker after a commit and
 * read on the main thread (src/change-feed.ts). One message's changes are chunks (a record
 * never spans two) of
 *
 *   u32 watch id, u8 kind, u32 keyLen, key, then for a put: u32 payloadLen, payload
 *     (kind PUT: a row written; DELETE: a row removed; PREFIX: rows under `key` removed;
 *     PUT_REF: a row written whose `u32 keyLen, key, u32 payloadLen, payload` are in a
 *     frame in shared memory, the record's 8-byte "key" saying where: u32 frame (in the
 *     message's `changeFrames`), u32 offset; PUT_RUN: `count` rows written by as many
 *     batches of one put in a row in such a frame, its 12-byte "key" being u32 frame,
 *     u32 offset of the first batch, u32 count)
 *   u32 COMMIT_END: the changes before it (since the last one) were one commit's
 *
 * PUT_REF spares the worker copying every payload of a watched bulk write into new memory;
 * PUT_RUN spares it a record per put of the runs it writes with one statement.
 */
import { adoptKeyAt, type Key } from '../keys.js';
import { readU32 } from './bytes.js';
import { singlePutAt } from './request-reader.js';

export const ChangeKind = { Put: 1, Delete: 2, Prefix: 3, PutRef: 4, PutRun: 5 } as const;
/** The bytes of a PUT_REF record's body: u32 frame, u32 offset. */
export const PUT_REF_BYTES = 8;
/** The bytes of a PUT_RUN record's body: u32 frame, u32 offset, u32 count. */
export const PUT_RUN_BYTES = 12;
export const COMMIT_END = 0xffff_ffff;

/** How many changes the record at `p` of `bytes` stands for (not COMMIT_END). */
export function changesIn(bytes: Uint8Array, p: number): number {
  return bytes[p + 4] === ChangeKind.PutRun ? readU32(bytes, p + 17) : 1;
}

/**
 * One committed change in a watched range: a row written (`payload`), a row removed
 * (`payload: undefined`), or every row under `prefix` removed (a `deletePrefix`).
 * @example for await (const changes of job.watch('users', prefixRange(key()))) for (const c of changes) apply(c);
 */
export type Change =
  | { readonly key: Key; readonly payload: Uint8Array }
  | { readonly key: Key; readonly payload: undefined }
  | { readonly prefix: Key; readonly deleted: true };

/** Where the record (or COMMIT_END) at `p` of `bytes` ends. */
export function recordEnd(bytes: Uint8Array, p: number): number {
  if (readU32(bytes, p) === COMMIT_END) return p + 4;
  const end = p + 9 + readU32(bytes, p + 5);
  return bytes[p + 4] === ChangeKind.Put ? end + 4 + readU32(bytes, end) : end;
}

/** Where a record starts: the chunk and the offset in it. */
interface At {
  chunk: number;
  pos: number;
}

/**
 * One commit's changes for one watch, still as bytes: they become `Change`s when the
 * watcher takes them, so a large commit costs the thread that receives it one pass over
 * record headers, and the objects are made by the watcher's own `next()`.
 */
export class CommitChanges {
  readonly #chunks: readonly Uint8Array[];
  readonly #frames: readonly Uint8Array[];
  readonly #watch: number;
  readonly #from: At;
  readonly #to: At;
  /** How many changes the commit made in the watch's range. */
  readonly count: number;

  constructor(
    chunks: readonly Uint8Array[],
    frames: readonly Uint8Array[],
    watch: number,
    from: At,
    to: At,
    count: number,
  ) {
    this.#chunks = chunks;
    this.#frames = frames;
    this.#watch = watch;
    this.#from = from;
    this.#to = to;
    this.count = count;
  }

  /**
   * The changes, in commit order; keys and payloads are views into the message's bytes or
   * into the frame that carried the put (shared memory that no thread writes again).
   */
  read(): Change[] {
    const out: Change[] = [];
    const to = this.#to;
    for (let c = this.#from.chunk; c <= to.chunk; c++) {
      const bytes = this.#chunks[c] as Uint8Array;
      const end = c === to.chunk ? to.pos : bytes.length;
      for (let p = c === this.#from.chunk ? this.#from.pos : 0; p < end; ) {
        const at = p;
        p = recordEnd(bytes, at);
        if (readU32(bytes, at) !== this.#watch) continue;
        const kind = bytes[at + 4] as number;
        if (kind === ChangeKind.PutRun) {
          readRun(this.#frames[readU32(bytes, at + 9)] as Uint8Array, bytes, at, out);
          continue;
        }
        let src = bytes;
        let keyAt = at + 9;
        if (kind === ChangeKind.PutRef) {
          src = this.#frames[readU32(bytes, keyAt)] as Uint8Array;
          keyAt = readU32(bytes, keyAt + 4) + 4;
        }
        const keyEnd = keyAt + readU32(src, keyAt - 4);
        let payload: Uint8Array | undefined;
        if (kind === ChangeKind.Put || kind === ChangeKind.PutRef) {
          const n = readU32(src, keyEnd);
          payload = src.subarray(keyEnd + 4, keyEnd + 4 + n);
        }
        const key = adoptKeyAt(src, keyAt, keyEnd);
        out.push(
          kind === ChangeKind.Prefix
            ? { prefix: key, deleted: true }
            : ({ key, payload } as Change),
        );
      }
    }
    return out;
  }
}

/** The changes of the PUT_RUN record at `at` of `bytes`, its batches in `frame`, onto `out`. */
function readRun(frame: Uint8Array, bytes: Uint8Array, at: number, out: Change[]): void {
  let p = readU32(bytes, at + 13);
  for (let n = readU32(bytes, at + 17); n > 0; n--) {
    const put = singlePutAt(frame, p);
    out.push({
      key: adoptKeyAt(frame, put.keyAt, put.keyEnd),
      payload: frame.subarray(put.keyEnd + 4, put.end),
    });
    p = put.end;
  }
}

/**
 * Split a message's changes (chunks of records; a record never spans two) into commits:
 * `deliver(id, changes)` once per commit and watch, in commit order.
 */
export function splitChanges(
  chunks: readonly Uint8Array[],
  frames: readonly Uint8Array[],
  deliver: (watch: number, changes: CommitChanges) => void,
): void {
  // How many changes each watch has in the commit being read, the run of the last watch
  // seen kept apart (a commit's records are usually all one watch's).
  const counts = new Map<number, number>();
  let last = -1;
  let run = 0;
  let from: At = { chunk: 0, pos: 0 };
  for (let c = 0; c < chunks.length; c++) {
    const bytes = chunks[c] as Uint8Array;
    for (let p = 0; p < bytes.length; ) {
      const watch = readU32(bytes, p);
      if (watch !== last) {
        if (run > 0) counts.set(last, (counts.get(last) ?? 0) + run);
        last = watch;
        run = 0;
      }
      if (watch === COMMIT_END) {
        const to = { chunk: c, pos: p };
        for (const [w, n] of counts) deliver(w, new CommitChanges(chunks, frames, w, from, to, n));
        counts.clear();
        p += 4;
        from = { chunk: c, pos: p };
        continue;
      }
      run += changesIn(bytes, p);
      p = recordEnd(bytes, p);
    }
  }
}
