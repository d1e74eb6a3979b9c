/*
 * `job.iterate`: an async iterator over a snapshot of one job's range, read lazily a page at
 * a time. The snapshot lives in the job's worker (src/worker/snapshots.ts) from the first
 * `next()` until the range or limit is done, `return()` (a `break`), an error, the job's
 * close, or `iteratorIdleMs` without a `next()`. One page is asked for ahead of the one
 * being read, so the worker reads while the caller works: at most two pages are held.
 */
import type { ResultAsync } from 'neverthrow';
import { PersistencyError } from './errors.js';
import type { ByteWriter } from './protocol/bytes.js';
import { Tag, writeIterOpen, writeIterStep } from './protocol/requests.js';
import type { KvRow } from './types.js';

/** What an iterator needs from its job. */
export interface IteratorChannel {
  /** Write a record into the job's frame; its reply is a page of rows. */
  page(write: (w: ByteWriter) => void): ResultAsync<KvRow[], PersistencyError>;
  /** Write a record that has no reply (if the job is still open). */
  post(write: (w: ByteWriter) => void): void;
  /** A snapshot began or ended in the worker (a job holding one is not released when idle). */
  held(delta: 1 | -1): void;
  /** End the snapshot after this many ms without a `next()` (0: never). */
  readonly idleMs: number;
}

/** A checked `iterate` call: what to read, or why not. */
export type IterateRequest =
  | {
      readonly cat: Uint8Array;
      readonly start: Uint8Array;
      readonly stop: Uint8Array;
      readonly reverse: boolean;
      readonly limit: number;
      readonly pageSize: number;
    }
  | { readonly refused: PersistencyError };

/** Node's longest timer; a longer `iteratorIdleMs` is waited out in several. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Iterator ids, unique within the process (and so within every job's worker). */
let lastId = 0;

const DONE: IteratorResult<KvRow> = Object.freeze({ done: true, value: undefined });

export class SnapshotIterator implements AsyncIterableIterator<KvRow> {
  readonly #channel: IteratorChannel;
  readonly #id: number;
  #request: IterateRequest | undefined;
  /** The page being read, and the next row of it. */
  #rows: KvRow[] = [];
  #at = 0;
  /** The page asked for and not yet taken. */
  #ahead: ResultAsync<KvRow[], PersistencyError> | undefined;
  /** The worker holds this iterator's snapshot. */
  #holding = false;
  /** No page will come after `#rows`. */
  #last = false;
  #ended = false;
  /** Why the iterator ended early; the next `next()` rejects with it. */
  #failure: PersistencyError | undefined;
  /** `next()` calls not yet answered; each waits for the one before (`#queue`). */
  #waiting = 0;
  #queue: Promise<unknown> = Promise.resolve();
  #lastNext = 0;
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(channel: IteratorChannel, request: IterateRequest) {
    this.#channel = channel;
    this.#request = request;
    lastId = (lastId + 1) >>> 0;
    this.#id = lastId;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<KvRow>> {
    this.#lastNext = performance.now();
    if (this.#waiting === 0 && this.#at < this.#rows.length) {
      return Promise.resolve({ done: false, value: this.#take() });
    }
    // The snapshot is asked for now, in issue order: a write issued after this call is not in it.
    if (this.#request !== undefined) this.#begin(this.#request);
    this.#waiting++;
    const step = this.#queue.then(() => this.#stepInTurn());
    this.#queue = step.catch(() => undefined);
    return step;
  }

  async #stepInTurn(): Promise<IteratorResult<KvRow>> {
    try {
      return await this.#step();
    } finally {
      this.#waiting--;
    }
  }

  /** Stop: the worker lets go of the snapshot at once (`break` in `for await` calls this). */
  return(): Promise<IteratorResult<KvRow>> {
    this.#end();
    return Promise.resolve(DONE);
  }

  #take(): KvRow {
    const row = this.#rows[this.#at++] as KvRow;
    if (this.#at === this.#rows.length) {
      this.#rows = [];
      this.#at = 0;
    }
    return row;
  }

  async #step(): Promise<IteratorResult<KvRow>> {
    for (;;) {
      if (this.#at < this.#rows.length) return { done: false, value: this.#take() };
      const failure = this.#failure;
      if (failure !== undefined) {
        this.#failure = undefined;
        throw failure;
      }
      if (this.#ended || this.#last) {
        this.#end();
        return DONE;
      }
      const ahead = this.#ahead;
      if (ahead === undefined) {
        this.#end(); // not reached: a page is asked for whenever another may follow
        return DONE;
      }
      const r = await ahead;
      this.#ahead = undefined;
      if (this.#ended) return DONE; // returned (or expired) while the page was on its way
      if (r.isErr()) {
        // The worker may still hold the snapshot (a page failed with a lost commit group it
        // did not depend on): end it there too; an id the worker already ended is ignored.
        this.#end();
        this.#failure = r.error;
        continue;
      }
      this.#gotPage(r.value);
    }
  }

  /** The first `next()`: take the snapshot and ask for the first page. */
  #begin(request: IterateRequest): void {
    this.#request = undefined;
    if ('refused' in request) {
      this.#failure = request.refused;
      this.#ended = true;
      return;
    }
    this.#pageSize = request.pageSize;
    this.#left = request.limit < 0 ? Number.POSITIVE_INFINITY : request.limit;
    this.#ahead = this.#channel.page((w) =>
      writeIterOpen(
        w,
        this.#id,
        request.cat,
        request.start,
        request.stop,
        request.reverse,
        request.limit,
        request.pageSize,
      ),
    );
    this.#holding = true;
    this.#channel.held(1);
    this.#armIdleTimer();
  }

  #pageSize = 0;
  #left = 0;

  /** A page came: the worker's snapshot goes on after a full one; ask for the next now. */
  #gotPage(rows: KvRow[]): void {
    this.#rows = rows;
    this.#at = 0;
    const want = Math.min(this.#pageSize, this.#left);
    this.#left -= rows.length;
    if (rows.length < want || this.#left === 0) {
      this.#last = true;
      this.#release(); // the worker ended the snapshot with this page
      return;
    }
    this.#ahead = this.#channel.page((w) => writeIterStep(w, Tag.IterNext, this.#id));
  }

  /** The snapshot is gone from the worker (or never was). */
  #release(): void {
    if (!this.#holding) return;
    this.#holding = false;
    this.#channel.held(-1);
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  /** End the iterator; the worker ends its snapshot if it still holds one. */
  #end(): void {
    this.#ended = true;
    this.#request = undefined;
    this.#rows = [];
    this.#at = 0;
    try {
      if (this.#holding) this.#channel.post((w) => writeIterStep(w, Tag.IterClose, this.#id));
    } finally {
      this.#release();
    }
  }

  /** While the snapshot is held, end it once `next()` has not been called for `idleMs`. */
  #armIdleTimer(): void {
    const idleMs = this.#channel.idleMs;
    if (idleMs === 0) return;
    const check = (): void => {
      if (!this.#holding) return;
      // A next() waiting for its page is not idle.
      const idle = this.#waiting === 0 ? performance.now() - this.#lastNext : 0;
      if (idle < idleMs) {
        this.#idleTimer = setTimeout(check, Math.min(idleMs - idle, MAX_TIMER_MS)).unref();
        return;
      }
      this.#end();
      this.#failure = new PersistencyError(
        'Timeout',
        `iterator not advanced for ${idleMs} ms (iteratorIdleMs): its snapshot was released`,
        { code: 'SNAPSHOT_EXPIRED' },
      );
    };
    this.#idleTimer = setTimeout(check, Math.min(idleMs, MAX_TIMER_MS)).unref();
  }
}
