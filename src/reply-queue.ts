/*
 * The reads and flushes of one job waiting for their replies. Replies carry no request id:
 * they come in request order, so the queue resolves them first in, first out.
 */
import { err, ok, type Result, ResultAsync } from 'neverthrow';
import type { WriteCount } from './client-port.js';
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

/** A flush's failures outside the worker, which it reports too (more may come: lateFailures). */
interface FlushFailures {
  earlier: Failures | undefined;
}

interface Waiting {
  readonly settle: Resolver;
  readonly flush: FlushFailures | undefined;
  /** The writes issued before the request, which its reply says were committed. */
  readonly after: WriteCount | undefined;
}

export class ReplyQueue {
  #waiting: Waiting[] = [];
  #head = 0;
  /** What has come so far of a scan's or getMany's reply that comes in parts. */
  readonly #partial = new PartialReply();
  /** The writes the last request a reply answered was issued after (see Waiting). */
  answeredAfter: WriteCount | undefined;

  /** Requests still waiting. */
  get pending(): number {
    return this.#waiting.length - this.#head;
  }

  /**
   * A read or flush was just written into a frame: the next reply not yet awaited settles
   * the result. `flush`: a flush's failures outside the worker, which it reports too;
   * `shape`: what the result is made of the reply's value, as it settles (in issue order);
   * `after`: the writes issued before it.
   */
  awaitReply<T>(
    flush?: FlushFailures,
    shape?: (reply: ReplyValue) => T,
    after?: WriteCount,
  ): ResultAsync<T, PersistencyError> {
    return new ResultAsync(
      new Promise<Result<T, PersistencyError>>((resolve) => {
        const settle = resolve as Resolver;
        this.#waiting.push({
          after,
          flush,
          settle:
            flush !== undefined
              ? (r) => settle(flushOutcome(flush.earlier, r))
              : shape !== undefined
                ? (r) => settle(r.map(shape) as Result<ReplyValue, PersistencyError>)
                : settle,
        });
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
      const waiting = this.#next();
      if (waiting === undefined)
        throw new Error('persistency: a reply arrived with no request waiting');
      this.answeredAfter = waiting.after ?? this.answeredAfter;
      waiting.settle(value instanceof PersistencyError ? err(value) : ok(value));
    }
    return frames;
  }

  /**
   * Writes the worker failed before a release, told as it released: the first flush still
   * waiting (issued while the job released, so after those writes) reports them. False
   * when no flush waits.
   */
  lateFailures(count: number, first: PersistencyError): boolean {
    for (let i = this.#head; i < this.#waiting.length; i++) {
      const f = this.#waiting[i]?.flush;
      if (f === undefined) continue;
      if (f.earlier === undefined) f.earlier = { count, first };
      else f.earlier.count += count;
      return true;
    }
    return false;
  }

  /** The oldest waiting request (if any) fails with `error`. */
  failNext(error: PersistencyError): void {
    this.#partial.clear(); // parts received belong to the oldest request
    this.#next()?.settle(err(error));
  }

  /** Every waiting request fails with `error`. */
  failAll(error: PersistencyError): void {
    this.#partial.clear();
    for (let w = this.#next(); w !== undefined; w = this.#next()) w.settle(err(error));
  }

  #next(): Waiting | undefined {
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
