/*
 * `job.watch`: an async iterator of a range's committed changes, one array per commit, in
 * commit order. The watch starts where `watch()` is called in the job's order of calls;
 * the worker records what its transactions change in the range and sends it after each
 * commit (src/worker/watches.ts). The changes wait here, up to `maxQueued` of them, until the
 * caller takes them; a caller that falls further behind (changes still waiting when a commit
 * would take the queue past `maxQueued`) is ended with `Overflow` after the changes already
 * queued, never skipped silently. One commit is never split: it can exceed `maxQueued` alone.
 */
import { PersistencyError } from './errors.js';
import type { Change, CommitChanges } from './protocol/changes.js';

/** What a watch needs from its job. */
export interface WatchChannel {
  /** Stop the watch in the worker (a WATCH_CLOSE record) and forget it. */
  stop(id: number): void;
}

/** Watch ids, unique within the process. */
let lastId = 0;

export class ChangeFeed implements AsyncIterableIterator<Change[]> {
  readonly id: number;
  readonly #channel: WatchChannel;
  readonly #maxQueued: number;
  #queue: CommitChanges[] = [];
  #queued = 0;
  /** `next()` calls waiting for changes, in order. */
  #waiting: {
    resolve: (r: IteratorResult<Change[]>) => void;
    reject: (e: PersistencyError) => void;
  }[] = [];
  /** Why the feed ends once its queue is taken (undefined: it goes on). */
  #end: PersistencyError | 'done' | undefined;
  #stopped = false;
  /** Answers to waiting next() calls made in a task of their own, not yet given. */
  #deferred = 0;

  constructor(channel: WatchChannel, maxQueued: number) {
    lastId = (lastId + 1) >>> 0;
    this.id = lastId;
    this.#channel = channel;
    this.#maxQueued = maxQueued;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /**
   * One commit's changes in the range arrived. A waiting `next()` gets them in a task of its
   * own: whoever awaits a reply of the same commit goes first, not held up while a large
   * commit's changes are made into objects.
   */
  deliver(changes: CommitChanges): void {
    if (this.#end !== undefined) return;
    const waiting = this.#waiting.shift();
    if (waiting !== undefined) {
      this.#deferred += 1;
      setImmediate(() => {
        this.#deferred -= 1;
        waiting.resolve({ done: false, value: changes.read() });
      });
      return;
    }
    // A commit is never split, and one that finds nothing waiting is always taken: only a
    // watcher with changes still waiting can fall behind.
    if (this.#queued > 0 && this.#queued + changes.count > this.#maxQueued) {
      this.#finish(
        new PersistencyError(
          'Overflow',
          `watch: more than ${this.#maxQueued} changes waited for the watcher (maxQueued); it was ended after the ${this.#queued} queued`,
        ),
      );
      return;
    }
    this.#queue.push(changes);
    this.#queued += changes.count;
  }

  /** The job closed or its worker died: the feed ends with `error` after what is queued. */
  ended(error: PersistencyError): void {
    this.#stopped = true; // the worker has let go of it
    this.#finish(error);
  }

  next(): Promise<IteratorResult<Change[]>> {
    // A next() called while an earlier one's answer is on its way answers after it.
    if (this.#deferred > 0)
      return new Promise((resolve, reject) =>
        setImmediate(() => this.next().then(resolve, reject)),
      );
    const changes = this.#queue.shift();
    if (changes !== undefined) {
      this.#queued -= changes.count;
      return Promise.resolve({ done: false, value: changes.read() });
    }
    const end = this.#end;
    if (end === 'done') return Promise.resolve({ done: true, value: undefined });
    if (end !== undefined) {
      this.#end = 'done';
      return Promise.reject(end);
    }
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
    });
  }

  /** Stop watching at once (a `break` out of `for await`). */
  return(): Promise<IteratorResult<Change[]>> {
    this.#queue = [];
    this.#queued = 0;
    this.#finish('done');
    return Promise.resolve({ done: true, value: undefined });
  }

  #finish(end: PersistencyError | 'done'): void {
    if (this.#end !== undefined) return;
    this.#end = end;
    try {
      if (!this.#stopped) {
        this.#stopped = true;
        this.#channel.stop(this.id);
      }
    } finally {
      this.#settleWaiting(end);
    }
  }

  /** Every next() waiting when the feed ended: the first rejects with `end`, the rest are done. */
  #settleWaiting(end: PersistencyError | 'done'): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const w of waiting) {
      if (this.#end === 'done') w.resolve({ done: true, value: undefined });
      else {
        this.#end = 'done'; // the first waiting next() rejects, the rest are done
        w.reject(end as PersistencyError);
      }
    }
  }
}
