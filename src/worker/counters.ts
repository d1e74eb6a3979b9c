/*
 * Counter sums made in the worker's JavaScript: the value of each counter a run of adds
 * touches is read once and then known (`#known`) until something else may have changed it
 * (any other write, a rollback: `forget`), so that an add costs a put of its new value,
 * or a share of one statement for a run of adds, and never a call from SQLite back into
 * JavaScript per row. A row that has an expiry is left to SQL (KvBackend.add), which
 * knows the time and keeps the expiry; any other row, present or not, has none to keep.
 */

import { compareBytes } from '../codec/key.js';
import { COUNTER_BYTES, sumInto } from '../counter.js';
import { type KvBackend, PUT_RUN } from './backend.js';

/** Counters' own value bytes are cut from buffers of this size (see #slot). */
const SLAB_BYTES = 2048;
/** Counters remembered at most (they are all forgotten when there are more). */
const MAX_KNOWN = 4096;
const latin1Slice = Buffer.prototype.latin1Slice as (
  this: Uint8Array,
  start: number,
  end: number,
) => string;
/** A category's bytes as a string (one char per byte), to index a Map. */
const idOf = (b: Uint8Array): string => latin1Slice.call(b, 0, b.length);

/** What an add needs from SQL instead: the row has an expiry. */
export const BY_SQL = 0;

/** A counter known: its key (a copy), its value (null: no row; undefined: to read again). */
interface Entry {
  readonly key: Uint8Array;
  value: Uint8Array | null | undefined;
  /** Where the entry keeps its value's bytes (`value` is this when it has some). */
  own: Uint8Array | undefined;
  /** Another key of the same hash. */
  next: Entry | undefined;
}

/** One category's counters, by a hash of the key. */
type Known = Map<number, Entry>;

/** FNV-1a: cheaper than a string per key, and the bytes are compared on a hit anyway. */
export function hashOf(b: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ (b[i] as number), 0x01000193);
  return h;
}

export class Counters {
  readonly #backend: KvBackend;
  /** Counters by category, then key. */
  #known = new Map<string, Known>();
  #size = 0;
  /** The category looked up last, and its map: consecutive adds share one. */
  #lastCategory: Uint8Array | undefined;
  #lastKnown: Known | undefined;
  /**
   * What the run being prepared changed, to take back if its statement does not run: the
   * entries, and the value each had before.
   */
  readonly #journal: Entry[] = [];
  readonly #journalBefore: (Uint8Array | null | undefined)[] = [];
  /** The bytes of each journaled value, one view per add of a run. */
  readonly #journalBytes = views(PUT_RUN);
  /**
   * The sums handed out, in turn: a caller reads each before 32 more are made (a run's
   * statement and watches before the next run, a single add's put at once).
   */
  readonly #sums = views(PUT_RUN);
  #sumAt = 0;
  #slab = new Uint8Array(SLAB_BYTES);
  #slabAt = 0;

  constructor(backend: KvBackend) {
    this.#backend = backend;
  }

  /** Something else may have changed a counter: read each again. */
  forget(): void {
    if (this.#size === 0) return;
    this.#known = new Map();
    this.#size = 0;
    this.#lastCategory = undefined;
    this.#lastKnown = undefined;
  }

  /**
   * The counter payload `stored + delta` for an add to `key`, or BY_SQL when the row has an
   * expiry; throws the add's failure (overflow, not a counter). `pending`: part of a run
   * whose statement has not run yet (see `settle`); otherwise the sum is written already.
   */
  sum(
    category: Uint8Array,
    key: Uint8Array,
    delta: Uint8Array,
    pending = false,
  ): Uint8Array | typeof BY_SQL {
    const known = this.#knownOf(category);
    const hash = hashOf(key);
    const first = known.get(hash);
    let entry = first;
    while (entry !== undefined && compareBytes(entry.key, key) !== 0) entry = entry.next;
    let stored = entry?.value;
    if (stored === undefined) {
      const row = this.#backend.counterRow(category, key);
      if (row !== undefined && row[1] !== null) return BY_SQL;
      stored = row === undefined ? null : row[0];
    }
    const next = sumInto(this.#sums[this.#sumAt++ % PUT_RUN] as Uint8Array, stored, delta);
    if (entry === undefined) {
      let chain = first;
      if (!pending && this.#size >= MAX_KNOWN) {
        this.forget(); // too many: start again (never inside a run, whose journal needs them)
        chain = undefined;
      }
      entry = { key: key.slice(), value: undefined, own: undefined, next: chain };
      this.#knownOf(category).set(hash, entry);
      this.#size++;
    }
    if (pending) {
      const value = entry.value;
      const j = this.#journal.length;
      // A run makes at most PUT_RUN sums; more would overwrite views it still needs.
      if (j >= PUT_RUN) throw new Error(`more than ${PUT_RUN} pending sums before settle`);
      this.#journal.push(entry);
      if (value === null || value === undefined) this.#journalBefore.push(value);
      else this.#journalBefore.push(copy8(this.#journalBytes[j] as Uint8Array, value));
    }
    entry.own ??= this.#slot();
    entry.value = copy8(entry.own, next);
    return next;
  }

  /** 8 bytes for a counter's own value, cut from a larger buffer (see `views`). */
  #slot(): Uint8Array {
    if (this.#slabAt === SLAB_BYTES) {
      this.#slab = new Uint8Array(SLAB_BYTES);
      this.#slabAt = 0;
    }
    const at = this.#slabAt;
    this.#slabAt += COUNTER_BYTES;
    return new Uint8Array(this.#slab.buffer, at, COUNTER_BYTES);
  }

  /** The run's statement ran (`written`) or not: keep its sums, or take them back. */
  settle(written: boolean): void {
    const journal = this.#journal;
    const before = this.#journalBefore;
    if (!written)
      for (let i = journal.length - 1; i >= 0; i--) {
        const entry = journal[i] as Entry;
        const value = before[i];
        entry.value =
          value === null || value === undefined ? value : copy8(entry.own as Uint8Array, value);
      }
    journal.length = 0;
    before.length = 0;
    this.#sumAt = 0;
    if (this.#size > MAX_KNOWN) this.forget(); // runs alone would never check the bound
  }

  #knownOf(category: Uint8Array): Known {
    if (category === this.#lastCategory && this.#lastKnown !== undefined) return this.#lastKnown;
    const name = idOf(category);
    let known = this.#known.get(name);
    if (known === undefined) {
      known = new Map();
      this.#known.set(name, known);
    }
    this.#lastCategory = category;
    this.#lastKnown = known;
    return known;
  }
}

/**
 * `n` views of 8 bytes over one buffer: SQLite reads a small Uint8Array of its own much
 * more slowly (V8 keeps its bytes on the heap and must move them out first).
 */
function views(n: number): Uint8Array[] {
  const buffer = new ArrayBuffer(Math.max(n * COUNTER_BYTES, 128));
  return Array.from(
    { length: n },
    (_, i) => new Uint8Array(buffer, i * COUNTER_BYTES, COUNTER_BYTES),
  );
}

/** Copy a counter's 8 bytes from `from` into `to`; returns `to`. */
function copy8(to: Uint8Array, from: Uint8Array): Uint8Array {
  for (let i = 0; i < COUNTER_BYTES; i++) to[i] = from[i] as number;
  return to;
}
