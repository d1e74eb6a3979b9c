/*
 * What the library tells the process when nobody else hears it: a listener that threw,
 * an injected clock that threw, and write failures no listener received (CONTRACT.md
 * section 7). All go through `process.emitWarning` with the name `PersistencyWarning`,
 * which Node prints to stderr unless the application listens for 'warning' itself. And
 * the delivery of events that makes them so.
 */
import type { Emitter } from 'mitt';
import type { PersistencyEvents } from './types.js';

const NAME = 'PersistencyWarning';
/** Unheard write failures of one job are reported at most once per this many ms. */
export const UNHEARD_WARNING_MS = 1000;

/** A listener threw: the event still reached every other listener; say what was thrown. */
export function warnListenerThrew(event: string, thrown: unknown): void {
  const what = thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown);
  process.emitWarning(`a listener of '${event}' threw (${what}); the other listeners ran`, {
    type: NAME,
    code: 'PERSISTENCY_LISTENER_THREW',
    detail: thrown instanceof Error ? thrown.stack : undefined,
  });
}

let clockWarned = false;

/** The injected `clock` threw: frames go without its time (see `clockTime`); said once. */
export function warnClockThrew(thrown: unknown): void {
  if (clockWarned) return;
  clockWarned = true;
  const what = thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown);
  process.emitWarning(
    `the clock option threw (${what}); expiry goes by the last time the clock gave until it answers again (said once)`,
    {
      type: NAME,
      code: 'PERSISTENCY_CLOCK_THREW',
      detail: thrown instanceof Error ? thrown.stack : undefined,
    },
  );
}

/** Write failures that no listener received, reported per job at most once a second. */
export class UnheardFailures {
  readonly #pending = new Map<string, { writes: number; ops: number; first: Error }>();
  readonly #now: () => number;
  /** When each job's last warning went; pruned of those past the interval as it grows. */
  readonly #last = new Map<string, number>();
  #pruneAt = PRUNE_FROM;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** `writes` writes (batches) of `jobId`, of `ops` ops, failed and no listener heard it. */
  add(jobId: string, ops: number, error: Error, writes = 1): void {
    const entry = this.#pending.get(jobId);
    if (entry !== undefined) {
      entry.writes += writes;
      entry.ops += ops;
      return;
    }
    const last = this.#last.get(jobId);
    const wait = last === undefined ? 0 : Math.max(0, last + UNHEARD_WARNING_MS - this.#now());
    this.#pending.set(jobId, { writes, ops, first: error });
    if (wait === 0) this.#report(jobId);
    else setTimeout(() => this.#report(jobId), wait).unref();
  }

  #report(jobId: string): void {
    const entry = this.#pending.get(jobId);
    if (entry === undefined) return;
    this.#pending.delete(jobId);
    if (this.#last.size >= this.#pruneAt) this.#prune();
    this.#last.set(jobId, this.#now());
    // Writes as a flush counts them (batches), then their ops when that says more.
    const { writes, ops } = entry;
    const what = `${writes} write(s)${ops === writes ? '' : ` (${ops} ops)`}`;
    process.emitWarning(
      `job ${jobId}: ${what} failed and no 'writeFailed' listener heard it; first: ${entry.first.message}`,
      { type: NAME, code: 'PERSISTENCY_WRITE_FAILED', detail: entry.first.stack },
    );
  }

  /** Jobs whose last warning is remembered (tests). */
  get remembered(): number {
    return this.#last.size;
  }

  /** Forget the jobs whose last warning is older than the interval: none of them waits. */
  #prune(): void {
    const before = this.#now() - UNHEARD_WARNING_MS;
    for (const [id, at] of this.#last) if (at <= before) this.#last.delete(id);
    this.#pruneAt = Math.max(PRUNE_FROM, this.#last.size * 2);
  }
}

/** Jobs remembered before the first pruning. */
const PRUNE_FROM = 1024;

/**
 * Emit to every listener of `type`, then of `'*'`, whatever one of them throws (mitt
 * would stop at the first that throws): a throw becomes a warning. A write failure that no
 * listener hears becomes a warning too (`unheard`).
 */
export function emitToAll<K extends keyof PersistencyEvents>(
  events: Emitter<PersistencyEvents>,
  unheard: UnheardFailures,
  type: K,
  event: PersistencyEvents[K],
  writes?: number,
): void {
  const typed = events.all.get(type);
  const wild = events.all.get('*');
  if (type === 'writeFailed' && !typed?.length && !wild?.length) {
    const failure = event as PersistencyEvents['writeFailed'];
    unheard.add(failure.jobId, failure.count, failure.error, writes);
    return;
  }
  for (const handler of typed?.slice() ?? []) {
    try {
      (handler as (e: PersistencyEvents[K]) => void)(event);
    } catch (e) {
      warnListenerThrew(type, e);
    }
  }
  for (const handler of wild?.slice() ?? []) {
    try {
      (handler as (t: K, e: PersistencyEvents[K]) => void)(type, event);
    } catch (e) {
      warnListenerThrew(type, e);
    }
  }
}
