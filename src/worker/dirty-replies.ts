/*
 * The replies of a group written after its first write. They may depend on the group's
 * uncommitted writes, so they wait for its commit; if the group is lost they are rewritten
 * as errors, except those known to depend on none of its writes (an iterator's page, read
 * from its own snapshot).
 */
import { type ErrorInfo, writesFailedInfo } from '../protocol/messages.js';
import type { GroupReplies } from './group-replies.js';

/** A flush answered while the transaction was open: rewritten if the group is lost. */
export interface DirtyFlush {
  /** The frame and offset of its record. */
  readonly buf: Uint8Array;
  readonly at: number;
  /** Its reply's index in the group's replies. */
  readonly reply: number;
  /** The failures it reported, and the first of them. */
  readonly failed: number;
  readonly first: ErrorInfo | undefined;
}

export class DirtyReplies {
  readonly #replies: GroupReplies;
  /** Where the dependent replies start, and how many replies came before them. */
  #pos = -1;
  #count = 0;
  #flushes: DirtyFlush[] = [];
  /** Dependent by position only: where their records are, by reply index. */
  #kept = new Map<number, readonly [number, number]>();

  constructor(replies: GroupReplies) {
    this.#replies = replies;
  }

  /** No write of the open group yet: replies gathered so far are final. */
  get clean(): boolean {
    return this.#pos < 0;
  }

  get flushes(): readonly DirtyFlush[] {
    return this.#flushes;
  }

  /** The group's first write: replies from here on wait for its commit. */
  begin(): void {
    if (this.#pos >= 0) return;
    this.#pos = this.#replies.w.pos;
    this.#count = this.#replies.count;
  }

  /** A flush is about to be answered (its reply is the next one). */
  flush(buf: Uint8Array, at: number, failed: number, first: ErrorInfo | undefined): void {
    if (this.#pos >= 0) this.#flushes.push({ buf, at, reply: this.#replies.count, failed, first });
  }

  /** The reply just written from `pos` on depends on none of the group's writes. */
  keep(pos: number): void {
    const replies = this.#replies;
    if (this.#pos >= 0) this.#kept.set(replies.count - 1, [pos, replies.w.pos]);
  }

  /**
   * The group is lost: every dependent reply becomes `error`, and flush `f` reports
   * `lostBefore[f]` more failed writes (those issued before it).
   */
  fail(error: ErrorInfo, lostBefore: readonly number[]): void {
    if (this.#pos < 0) return;
    const replies = this.#replies;
    const n = replies.count - this.#count;
    // Copied out only now: the rewrite below may overwrite where they are.
    const kept = new Map<number, Uint8Array>();
    for (const [i, [from, to]] of this.#kept) kept.set(i, replies.w.buf.slice(from, to));
    replies.w.pos = this.#pos;
    replies.count = this.#count;
    let f = 0;
    for (let i = this.#count; i < this.#count + n; i++) {
      const bytes = kept.get(i);
      const flush = this.#flushes[f];
      if (bytes !== undefined) {
        replies.w.bytes(bytes);
        replies.ok();
      } else if (flush?.reply === i) {
        replies.error(writesFailedInfo(flush.failed + (lostBefore[f] ?? 0), flush.first ?? error));
        f++;
      } else replies.error(error);
    }
    this.reset();
  }

  /** The group committed (or is over): its replies are final. */
  reset(): void {
    this.#pos = -1;
    this.#flushes = [];
    if (this.#kept.size > 0) this.#kept.clear();
  }
}
