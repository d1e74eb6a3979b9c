/*
 * Writes a job's client failed itself, before they reached a thread (an attach refused,
 * a thread dead): each is reported at once and counted until a flush reports it too, so
 * that a flush never answers Ok after a write it could not see was lost.
 */
import { err, type Result } from 'neverthrow';
import { PersistencyError } from './errors.js';
import type { ToWorker } from './protocol/messages.js';
import { recordsOf } from './protocol/requests.js';
import type { ReplyQueue } from './reply-queue.js';

export class UnsentFailures {
  #count = 0;
  #first: PersistencyError | undefined;
  readonly #report: (batch: Uint8Array, error: PersistencyError) => void;

  /** `report`: tell the user of one failed batch (its ops record). */
  constructor(report: (batch: Uint8Array, error: PersistencyError) => void) {
    this.#report = report;
  }

  /** A flush's result, made Err if writes failed here since the previous flush. */
  flushed(r: Result<unknown, PersistencyError>): Result<unknown, PersistencyError> {
    const count = this.#count;
    const first = this.#first;
    this.#count = 0;
    this.#first = undefined;
    if (first === undefined || r.isErr()) return r;
    const message = `${count} write batch(es) failed since the last flush; first: ${first.message}`;
    return err(new PersistencyError(first.kind, message, { code: first.code, cause: first }));
  }

  /**
   * Fail messages that never reached a thread, in issue order: each batch reported and
   * counted, each read or flush answered with `error`. Requests already sent (to a thread
   * that died) were issued before them and fail first.
   */
  fail(unsent: readonly ToWorker[], replies: ReplyQueue, error: PersistencyError): void {
    const records = unsent.flatMap((m) => (m instanceof Uint8Array ? recordsOf(m) : []));
    const awaiting = records.filter((r) => typeof r === 'number').length;
    for (let sent = replies.pending - awaiting; sent > 0; sent--) replies.failNext(error);
    for (const record of records) {
      if (typeof record === 'number') {
        replies.failNext(error);
        continue;
      }
      this.#count++;
      this.#first ??= error;
      this.#report(record, error);
    }
  }
}
