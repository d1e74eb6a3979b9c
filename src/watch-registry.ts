/*
 * The watches of one job on the main thread: each `job.watch` call's feed (src/change-feed.ts),
 * its WATCH_OPEN and WATCH_CLOSE records, and the changes and the end its job's client
 * hands over.
 */
import { ChangeFeed } from './change-feed.js';
import { checkedRange, refusal } from './checks.js';
import type { PersistencyError } from './errors.js';
import type { JobClient } from './job-client.js';
import { describe, type KeyRange } from './keys.js';
import { splitChanges } from './protocol/changes.js';
import { writeWatchClose, writeWatchOpen } from './protocol/requests.js';
import type { CategoryOf } from './read-records.js';
import type { WatchOptions } from './types.js';

/** The changes a watcher may fall behind by before it is ended (`maxQueued`'s default). */
export const WATCH_MAX_QUEUED = 100_000;

export class JobWatches {
  readonly #client: JobClient;
  readonly #category: CategoryOf;
  readonly #feeds = new Map<number, ChangeFeed>();
  readonly #channel = { stop: (id: number) => this.#stop(id) };

  constructor(client: JobClient, category: CategoryOf) {
    this.#client = client;
    this.#category = category;
    client.holds.watches = {
      changes: (chunks, frames) =>
        splitChanges(chunks, frames, (id, changes) => this.#feeds.get(id)?.deliver(changes)),
      ended: (error) => this.#endAll(error),
      unsent: (id, error) => {
        const feed = this.#feeds.get(id);
        if (feed === undefined) return;
        this.#feeds.delete(id);
        this.#client.holds.count -= 1;
        feed.ended(error);
      },
      watching: () => this.#feeds.size > 0,
    };
  }

  watch(category: unknown, range: unknown, options: unknown): ChangeFeed {
    const client = this.#client;
    let cat: Uint8Array;
    let bounds: [Uint8Array, Uint8Array];
    let maxQueued: number;
    try {
      cat = this.#category(category, 'watch');
      bounds = checkedRange(range as KeyRange, 'watch');
      maxQueued = checkedMaxQueued(options);
    } catch (e) {
      return endedFeed(refusal(e, 'watch'));
    }
    if (!client.running) return endedFeed(client.notOpenError());
    const feed = new ChangeFeed(this.#channel, maxQueued);
    // Registered first: the turn's frame is shared memory only while the job is watched.
    this.#feeds.set(feed.id, feed);
    client.holds.count += 1; // a watched job stays resident: its watch lives in the worker
    try {
      client.frame((w) => writeWatchOpen(w, feed.id, cat, bounds[0], bounds[1]));
    } catch (e) {
      this.#feeds.delete(feed.id);
      client.holds.count -= 1;
      return endedFeed(refusal(e, 'watch')); // bounds too large for one message
    }
    return feed;
  }

  #stop(id: number): void {
    if (!this.#feeds.delete(id)) return;
    const client = this.#client;
    client.holds.count -= 1;
    if (client.running) client.frame((w) => writeWatchClose(w, id));
  }

  #endAll(error: PersistencyError): void {
    const feeds = [...this.#feeds.values()];
    this.#client.holds.count -= feeds.length;
    this.#feeds.clear();
    for (const feed of feeds) feed.ended(error);
  }
}

function checkedMaxQueued(options: unknown): number {
  if (options === undefined) return WATCH_MAX_QUEUED;
  if (options === null || typeof options !== 'object')
    throw refusal(new Error(`options must be an object, got ${describe(options)}`), 'watch');
  const n = (options as WatchOptions).maxQueued;
  if (n === undefined) return WATCH_MAX_QUEUED;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1)
    throw refusal(
      new Error(`options.maxQueued must be a positive integer, got ${describe(n)}`),
      'watch',
    );
  return n;
}

/** A feed that ends at its first `next()` with `error`. */
function endedFeed(error: PersistencyError): ChangeFeed {
  const feed = new ChangeFeed({ stop: () => {} }, 1);
  feed.ended(error);
  return feed;
}
