/*
 * The background removal of expired rows of one job (they are invisible to reads from the
 * moment they expire; this only reclaims their space). It runs between groups, a chunk of
 * rows per transaction, giving way to the job's requests (and the thread's other jobs)
 * between chunks, so it holds them back by one small commit at most; and when the job is
 * idle, from a timer set for the next expiry.
 */
import type { KvBackend } from './backend.js';
import type { JobClock } from './expiry.js';
import type { GroupReplies } from './group-replies.js';
import type { Pause } from './slice.js';
import type { Watches } from './watches.js';

/** Expired rows removed per transaction. */
export const SWEEP_ROWS = 512;
/** After a failed sweep (a lock held elsewhere, a full disk), wait this long to try again. */
const RETRY_MS = 1000;
/** The longest a timer may be set for (setTimeout's limit). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class ExpirySweep {
  readonly #backend: KvBackend;
  readonly #clock: JobClock;
  readonly #watches: Watches;
  readonly #replies: GroupReplies;
  /** The earliest expiry known (undefined: none, or not looked up since the last write). */
  #next: number | undefined;
  #stale = true;
  #notBefore = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Rows removed so far (tests and diagnostics). */
  removed = 0;

  constructor(backend: KvBackend, clock: JobClock, watches: Watches, replies: GroupReplies) {
    this.#backend = backend;
    this.#clock = clock;
    this.#watches = watches;
    this.#replies = replies;
  }

  /** A group was committed: an expiry may have been written. */
  written(): void {
    this.#stale = true;
  }

  /** Whether expired rows wait to be removed (no transaction may be open). */
  due(): boolean {
    if (!this.#backend.expiry) return false;
    const now = this.#clock.now();
    if (now < this.#notBefore) return false;
    if (this.#stale) {
      this.#next = this.#backend.nextExpiry();
      this.#stale = false;
    }
    return this.#next !== undefined && this.#next <= now;
  }

  /**
   * Remove what has expired, a chunk per transaction, until the job has requests waiting
   * (`waiting()`, asked after each chunk and the pause that lets them arrive); the rest
   * waits for the next time the job is between groups, or idle.
   */
  *run(waiting: () => boolean): Generator<Pause, void, void> {
    while (this.due()) {
      if (!this.#chunk()) return;
      yield 'slice';
      if (waiting()) return;
    }
  }

  #chunk(): boolean {
    const b = this.#backend;
    try {
      b.begin();
      const rows = b.sweep(this.#clock.now(), SWEEP_ROWS);
      if (this.#watches.active) for (const [cat, key] of rows) this.#watches.delete(cat, key);
      b.commit();
      this.#watches.commit();
      this.removed += rows.length;
    } catch {
      // Nothing was removed: the rows stay invisible, and the sweep tries again later.
      b.rollback();
      this.#watches.lose();
      this.#notBefore = this.#clock.now() + RETRY_MS;
      return false;
    }
    this.#stale = true;
    this.#replies.send(0); // the watchers' changes
    return true;
  }

  /**
   * Call `wake` when the next expiry comes, if the job stays idle until then (an injected
   * clock moves only with the job's requests: no timer then).
   */
  schedule(wake: () => void): void {
    this.cancel();
    if (this.#clock.injected !== undefined || !this.#backend.expiry) return;
    if (this.#stale) {
      this.#next = this.#backend.nextExpiry();
      this.#stale = false;
    }
    if (this.#next === undefined) return;
    const at = Math.max(this.#next, this.#notBefore);
    const delay = Math.min(Math.max(at - this.#clock.now(), 0), MAX_TIMER_MS);
    this.#timer = setTimeout(wake, delay);
    this.#timer.unref();
  }

  cancel(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
