/*
 * Applying the ops of one batch to a job's connection, op by op, telling the job's watches
 * what changed. Shared by plain batches, atomic batches (whose checks are evaluated here
 * first, against the state before any of their ops) and the redo of a group.
 */
import { COUNTER_OVERFLOW, NOT_A_COUNTER } from '../counter.js';
import type { RequestReader } from '../protocol/request-reader.js';
import { AtomicOutcome, OpKind } from '../protocol/requests.js';
import type { KvBackend } from './backend.js';
import { BY_SQL, Counters } from './counters.js';
import type { Watches } from './watches.js';

const F64_BYTES = 8;
const NONE: readonly number[] = [];

/**
 * Thrown by an expiring put on a file without expiry: the caller commits its group, gives
 * the file expiry in a transaction of its own, and applies the batch again.
 */
export class NeedsExpiry extends Error {}

/** The outcome of an atomic batch that an `add` failed, or undefined for another error. */
export function counterFailure(e: unknown): number | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (code === COUNTER_OVERFLOW) return AtomicOutcome.Overflow;
  if (code === NOT_A_COUNTER) return AtomicOutcome.NotCounter;
  return undefined;
}

export class OpApplier {
  readonly #backend: KvBackend;
  readonly #watches: Watches;
  readonly counters: Counters;

  constructor(backend: KvBackend, watches: Watches) {
    this.#backend = backend;
    this.#watches = watches;
    this.counters = new Counters(backend);
  }

  /** Apply the op `r.op()` just read (a check is skipped: see `checksHold`). */
  apply(kind: number, r: RequestReader): void {
    const b = this.#backend;
    const watches = this.#watches;
    const { cat, key, stop } = r;
    if (kind !== OpKind.Add) this.counters.forget(); // a write that may change a counter
    switch (kind) {
      case OpKind.Put:
        b.put(cat, key, stop);
        if (watches.active) watches.put(cat, key, stop, r.buf, r.keyAt);
        return;
      case OpKind.Delete:
        if (b.delete(cat, key) > 0 && watches.active) watches.delete(cat, key);
        return;
      case OpKind.DeletePrefix: {
        const touched = this.touchedBy(cat, key, stop);
        b.deleteRange(cat, key, stop);
        this.told(touched, key);
        return;
      }
      case OpKind.Add: {
        const sum = this.counters.sum(cat, key, stop);
        if (sum !== BY_SQL) {
          b.put(cat, key, sum); // a row without an expiry: a put keeps it so
          if (watches.active) watches.put(cat, key, sum);
          return;
        }
        b.add(cat, key, stop); // a row with an expiry: SQL knows the time
        if (watches.active && watches.covers(cat, key))
          watches.put(cat, key, b.get(cat, key) as Uint8Array);
        return;
      }
      case OpKind.PutExpiring: {
        if (!b.expiry) throw new NeedsExpiry('the file has no expiry yet');
        const expiresAt = new DataView(stop.buffer, stop.byteOffset, F64_BYTES).getFloat64(0);
        const payload = stop.subarray(F64_BYTES);
        b.putExpiring(cat, key, payload, expiresAt);
        if (watches.active) watches.put(cat, key, payload);
        return;
      }
      default:
        return; // a check
    }
  }

  /**
   * The watches a deletePrefix of `[start, stop)` will tell (asked before it runs): those
   * with rows in the part of their range it covers.
   */
  touchedBy(category: Uint8Array, start: Uint8Array, stop: Uint8Array): readonly number[] {
    if (!this.#watches.active) return NONE;
    const b = this.#backend;
    return this.#watches.touchedBy(category, start, stop, (from, to) =>
      b.hasRow(category, from, to),
    );
  }

  /** A deletePrefix of `prefix` is done: tell the watches it touched. */
  told(touched: readonly number[], prefix: Uint8Array): void {
    if (touched.length > 0) this.#watches.prefix(touched, prefix);
  }

  /** Delete a chunk `[start, stop)` of a deletePrefix (its watches are told by `told`). */
  deleteChunk(category: Uint8Array, start: Uint8Array, stop: Uint8Array): void {
    this.counters.forget();
    this.#backend.deleteRange(category, start, stop);
  }

  /** Apply the next `n` ops of the batch `r` is in. */
  applyAll(r: RequestReader, n: number): void {
    for (let i = 0; i < n; i++) this.apply(r.op(), r);
  }

  /** A row deleted by a deleteAcked (`removed`: a live row was there). */
  deleted(category: Uint8Array, key: Uint8Array, removed: boolean): void {
    this.counters.forget();
    if (removed && this.#watches.active) this.#watches.delete(category, key);
  }

  /**
   * Whether every check among the next `n` ops holds now; `r` is left where it was.
   * A check reads what the batch's own earlier writes cannot have changed: none applied yet.
   */
  checksHold(r: RequestReader, n: number): boolean {
    const from = r.pos;
    const b = this.#backend;
    let holds = true;
    for (let i = 0; i < n && holds; i++) {
      const kind = r.op();
      if (kind === OpKind.CheckAbsent) holds = !b.exists(r.cat, r.key);
      else if (kind === OpKind.CheckValue) {
        const found = b.get(r.cat, r.key);
        holds = found !== undefined && Buffer.compare(found, r.stop) === 0;
      }
    }
    r.pos = from;
    return holds;
  }
}
