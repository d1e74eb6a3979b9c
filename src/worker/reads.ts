/*
 * A job's reads inside its worker: each writes one reply record; a failure becomes an Err
 * reply for that read only. Runs of gets are read with one statement; scans go a page at a
 * time and may pause between pages when the thread is shared.
 */
import {
  beginMany,
  beginRows,
  endMany,
  endRows,
  type LeadingValues,
  leadingValues,
  Status,
  writeBoolean,
  writeNumber,
  writeValue,
} from '../protocol/replies.js';
import { endOf, getKeyAt, type RequestReader } from '../protocol/request-reader.js';
import { GET_RUN_MAX, type GetManyMarkers, type KvBackend } from './backend.js';
import type { Faults } from './faults.js';
import type { GroupReplies } from './group-replies.js';
import { PageAhead } from './page-ahead.js';
import { type Pause, RANGE_CHUNK, type SliceClock } from './slice.js';

/**
 * What `KvBackend.getMany` writes per key: reply records as they are (absent, or present
 * with its payload), or a marker for a payload too long to gather, read on its own.
 */
const LARGE = 0xff;
export const GET_MANY_MARKERS: GetManyMarkers = {
  absent: Status.None,
  present: Status.Bytes,
  large: LARGE,
};

/**
 * Runs of at least this many gets of one category are read with one statement
 * (`KvBackend.getMany`, which says where that starts to pay).
 */
const GET_RUN_MIN = 6;
/**
 * After a run meets a payload too long to inline (or its statement fails), the next this
 * many gets (doubling while it repeats, up to GET_MANY_MAX_BACKOFF) are read one by one:
 * large rows would otherwise be looked up twice.
 */
const GET_MANY_BACKOFF = 64;
const GET_MANY_MAX_BACKOFF = 4096;
/**
 * A long scan or getMany is sent in parts of about this size while it runs (clean groups
 * only), so the main thread takes it in pieces instead of one long stop.
 */
const PART_BYTES = 64 * 1024;

export class JobReads {
  /** Gets answered by a `getMany` statement (tests and diagnostics). */
  batched = 0;
  /** Parts of long scans and getManys sent before the read finished (tests). */
  parts = 0;
  /** A pager's next page, read before it is asked for. */
  readonly ahead: PageAhead;
  readonly #backend: KvBackend;
  readonly #replies: GroupReplies;
  readonly #faults: Faults;
  readonly #slice: SliceClock;
  /** Gets still to read one by one after a run met a large payload (see GET_MANY_BACKOFF). */
  #getManySkip = 0;
  #getManyBackoff = 0;
  /** A stretch of gets in this frame, up to this offset, too short to make a run. */
  #shortRunFrame: Uint8Array | undefined;
  #shortRunEnd = 0;

  constructor(backend: KvBackend, replies: GroupReplies, faults: Faults, slice: SliceClock) {
    this.#backend = backend;
    this.#replies = replies;
    this.#faults = faults;
    this.#slice = slice;
    this.ahead = new PageAhead(backend, slice);
  }

  /** The group ended: keep no frame alive, nor a page read ahead that its writes made stale. */
  endGroup(): void {
    this.#shortRunFrame = undefined;
    this.ahead.endGroup();
  }

  get(cat: Uint8Array, key: Uint8Array): void {
    const replies = this.#replies;
    const w = replies.w;
    const pos = w.pos;
    try {
      writeValue(w, this.#backend.get(cat, key));
    } catch (e) {
      replies.failedAt(pos, e);
      return;
    }
    replies.ok();
  }

  /**
   * A getMany: the value of each key, in their order, read GET_RUN_MAX keys to a statement
   * (a payload too long to gather is read alone). With `stream` (as for scans) a long one
   * leaves in parts; on a shared thread it pauses between statements when the turn is up.
   */
  *getMany(
    cat: Uint8Array,
    keys: readonly Uint8Array[],
    stream: boolean,
  ): Generator<Pause, void, void> {
    const replies = this.#replies;
    const b = this.#backend;
    let record = beginMany(replies.w);
    let values = 0;
    try {
      for (let at = 0; at < keys.length; ) {
        const n = Math.min(GET_RUN_MAX, keys.length - at);
        let done = 0;
        if (n >= 2 && b.canGetMany) {
          const args = [...keys.slice(at, at + n), cat];
          this.#faults.fireGetMany();
          const inline = leadingValues(b.getMany(args, GET_MANY_MARKERS), n, LARGE);
          if (inline !== undefined) {
            replies.w.bytes(inline.records);
            done = inline.count;
          }
        }
        // The key that stopped the statement (a large payload), or every key of a short
        // run, is read alone.
        if (done < n) writeValue(replies.w, b.get(cat, keys[at + done++] as Uint8Array));
        at += done;
        values += done;
        if (at === keys.length) break;
        const due = this.#slice.due();
        if (stream && (due || replies.w.pos - record >= PART_BYTES)) {
          endMany(replies.w, record, values, true);
          replies.send(0);
          this.parts++;
          record = beginMany(replies.w);
          values = 0;
        }
        if (due) yield 'slice';
      }
    } catch (e) {
      replies.failedAt(record, e);
      return;
    }
    endMany(replies.w, record, values);
    replies.ok();
  }

  /**
   * If at least GET_RUN_MIN - 1 Get records of the same category follow the one just read
   * (`r.cat`, `r.key`; `r` is past it), read them with one statement, up to GET_RUN_MAX, and
   * move `r` past those answered. False when there is no such run (`r` is left as it was).
   */
  getRun(r: RequestReader): boolean {
    if (this.#getManySkip > 0) {
      this.#getManySkip--;
      return false;
    }
    const buf = r.buf;
    // Inside a stretch of gets that a look-ahead already found too short.
    if (buf === this.#shortRunFrame && r.pos < this.#shortRunEnd) return false;
    if (!this.#backend.canGetMany) return false;
    const cat = r.cat;
    const args = [r.key];
    /** Where each get's record ends. */
    const ends = [r.pos];
    let p = r.pos;
    while (args.length < GET_RUN_MAX) {
      const key = getKeyAt(buf, p, cat);
      if (key === undefined) break;
      args.push(key);
      p = endOf(key, buf);
      ends.push(p);
    }
    const keys = args.length;
    if (keys < GET_RUN_MIN) {
      this.#shortRunFrame = buf;
      this.#shortRunEnd = p;
      return false;
    }
    args.push(cat);
    r.pos = this.#getMany(args, keys, ends);
    return true;
  }

  /**
   * Answer the run's gets (`args`: the keys, then their category); returns where the frame
   * goes on. The run stops at the first payload too long to inline (and if the statement
   * fails, at its first get): that get is read alone, the frame goes on after it — so replies
   * may leave early between large payloads — and the next GET_MANY_BACKOFF gets (doubling
   * while it repeats) are read one by one.
   */
  #getMany(args: Uint8Array[], keys: number, ends: readonly number[]): number {
    const cat = args[keys] as Uint8Array;
    let inline: LeadingValues | undefined;
    try {
      this.#faults.fireGetMany();
      inline = leadingValues(this.#backend.getMany(args, GET_MANY_MARKERS), keys, LARGE);
    } catch {
      inline = undefined;
    }
    let i = 0;
    if (inline !== undefined) {
      // The records are reply records already.
      i = inline.count;
      this.#replies.w.bytes(inline.records);
      this.#replies.ok(i);
      this.batched += i;
      if (i === keys) {
        this.#getManyBackoff = 0;
        return ends[keys - 1] as number;
      }
    }
    this.get(cat, args[i] as Uint8Array);
    this.#getManyBackoff = Math.min(
      Math.max(this.#getManyBackoff * 2, GET_MANY_BACKOFF),
      GET_MANY_MAX_BACKOFF,
    );
    this.#getManySkip = this.#getManyBackoff;
    return ends[i] as number;
  }

  exists(cat: Uint8Array, key: Uint8Array): void {
    const replies = this.#replies;
    const pos = replies.w.pos;
    try {
      writeBoolean(replies.w, this.#backend.exists(cat, key));
    } catch (e) {
      replies.failedAt(pos, e);
      return;
    }
    replies.ok();
  }

  /** A count; on a shared thread in chunks of `RANGE_CHUNK` rows, pausing when the turn is up. */
  *count(cat: Uint8Array, start: Uint8Array, stop: Uint8Array): Generator<Pause, void, void> {
    const b = this.#backend;
    let n = 0;
    try {
      let from = start;
      if (this.#slice.shared) {
        for (let next = b.keyAfter(cat, from, stop, RANGE_CHUNK); next !== undefined; ) {
          // A chunk holds RANGE_CHUNK rows, some of which may have expired.
          n += b.expiry ? b.count(cat, from, next) : RANGE_CHUNK;
          from = next;
          if (this.#slice.due()) yield 'slice';
          next = b.keyAfter(cat, from, stop, RANGE_CHUNK);
        }
      }
      n += b.count(cat, from, stop);
    } catch (e) {
      this.#replies.failedAt(this.#replies.w.pos, e);
      return;
    }
    writeNumber(this.#replies.w, n);
    this.#replies.ok();
  }

  /**
   * A scan's rows as one reply record. With `stream` (no write of the group before it: the
   * rows are committed data) a long scan leaves in parts while it runs. Between pages it
   * pauses when the thread's other jobs are due a turn; the job's later requests wait.
   */
  *scan(
    cat: Uint8Array,
    start: Uint8Array,
    stop: Uint8Array,
    reverse: boolean,
    limit: number,
    stream: boolean,
  ): Generator<Pause, void, void> {
    const replies = this.#replies;
    const request = { cat, start, stop, reverse, limit };
    if (this.ahead.answer(request, replies)) {
      replies.ok();
      return;
    }
    let at = beginRows(replies.w);
    let rows = 0;
    let bytes = 0;
    let last: Uint8Array | undefined;
    try {
      let n = 0;
      const writer = () => replies.w;
      for (const page of this.#backend.scanPages(writer, cat, start, stop, reverse, limit)) {
        n += page.rows;
        last = page.last ?? last;
        const w = replies.w;
        if (stream && (w.pos - at >= PART_BYTES || this.#slice.due())) {
          endRows(w, at, n, true);
          bytes += w.pos - at;
          rows += n;
          replies.send(0);
          this.parts++;
          at = beginRows(replies.w);
          n = 0;
        }
        if (this.#slice.due()) yield 'slice';
      }
      endRows(replies.w, at, n);
      bytes += replies.w.pos - at;
      rows += n;
    } catch (e) {
      replies.failedAt(at, e);
      this.ahead.failed();
      return;
    }
    replies.ok();
    this.ahead.read(request, rows, last, bytes);
  }
}
