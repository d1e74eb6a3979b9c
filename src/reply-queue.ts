/*
 * The reads and flushes of one job waiting for their replies. Replies carry no request id:
 * they come in request order, so the queue resolves them first in, first out.
 */
import { err, ok, type Result, ResultAsync } from 'neverthrow';
import { PersistencyError } from './errors.js';
import { ByteReader } from './protocol/bytes.js';
import {
  framesDone,
  MORE_PARTS,
  PartialReply,
  type ReplyExtras,
  type ReplyValue,
  readReply,
} from './protocol/replies.js';
import { type Failures, flushOutcome } from './write-failures.js';

/** Settles one request; a MORE_PARTS part never reaches one (the type keeps it out). */
type Resolver = (r: Result<ReplyValue, PersistencyError>) => void;

export class ReplyQueue {
  #waiting: Resolver[] = [];
  #head = 0;
  /** What has come so far of a scan's or getMany's reply that comes in parts. */
  readonly #partial = new PartialReply();

  /** Requests still waiting. */
  get pending(): number {
    return this.#waiting.length - this.#head;
  }

  /**
   * A read or flush was just written into a frame: the next reply not yet awaited settles
   * the result. `earlier`: a flush's failures outside the worker, which it reports too;
   * `shape`: what the result is made of the reply's value, as it settles (in issue order).
   */
  awaitReply<T>(
    earlier?: Failures,
    shape?: (reply: ReplyValue) => T,
  ): ResultAsync<T, PersistencyError> {
    return new ResultAsync(
      new Promise<Result<T, PersistencyError>>((resolve) => {
        const settle = resolve as Resolver;
        this.#waiting.push(
          earlier !== undefined
            ? (r) => settle(flushOutcome(earlier, r))
            : shape !== undefined
              ? (r) => settle(r.map(shape) as Result<ReplyValue, PersistencyError>)
              : settle,
        );
      }),
    );
  }

  /** Settle the requests a reply message answers; returns how many frames it finished. */
  settle(bytes: Uint8Array, extras: ReplyExtras): number {
    const r = new ByteReader(bytes);
    const frames = framesDone(r);
    while (!r.done) {
      const value = readReply(r, extras, this.#partial);
      if (value === MORE_PARTS) continue; // part of a long read: more of it follows
      const resolve = this.#next();
      if (resolve === undefined)
        throw new Error('persistency: a reply arrived with no request waiting');
      resolve(value instanceof PersistencyError ? err(value) : ok(value));
    }
    return frames;
  }

  /** The oldest waiting request (if any) fails with `error`. */
  failNext(error: PersistencyError): void {
    this.#partial.clear(); // parts received belong to the oldest request
    this.#next()?.(err(error));
  }

  /** Every waiting request fails with `error`. */
  failAll(error: PersistencyError): void {
    this.#partial.clear();
    for (let r = this.#next(); r !== undefined; r = this.#next()) r(err(error));
  }

  #next(): Resolver | undefined {
    const r = this.#waiting[this.#head];
    if (r === undefined) return undefined;
    this.#head++;
    if (this.#head === this.#waiting.length) {
      this.#waiting = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
      this.#waiting = this.#waiting.slice(this.#head);
      this.#head = 0;
    }
    return r;
  }
}
