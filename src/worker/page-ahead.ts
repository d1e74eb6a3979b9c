/*
 * A pager's next page, read right after the page before it is answered. Paging with
 * `after` is one request after another, so the worker would wait while the caller decodes
 * each page: once a scan asks for exactly the page after a limited scan that filled its
 * limit, the job is taken for a pager and the page after that is read ahead, to answer the
 * next such scan if no row of the job has changed since (SQLite's total_changes).
 */
import { rangeAfter } from '../codec/key.js';
import { ByteWriter } from '../protocol/bytes.js';
import { beginRows, endRows } from '../protocol/replies.js';
import type { KvBackend } from './backend.js';
import type { GroupReplies } from './group-replies.js';
import type { Pause, SliceClock } from './slice.js';

/**
 * A page is read ahead only after a page of at most this many bytes of rows, and only if
 * its own keys and payloads come to at most this many.
 */
export const READ_AHEAD_MAX_BYTES = 256 * 1024;

/** A scan's request as the worker reads it (its cursor already applied to its range). */
export interface PageRequest {
  readonly cat: Uint8Array;
  readonly start: Uint8Array;
  readonly stop: Uint8Array;
  readonly reverse: boolean;
  readonly limit: number;
}

/** A page read ahead: its row records, as a scan writes them. */
interface HeldPage {
  readonly request: PageRequest;
  readonly records: Uint8Array;
  readonly rows: number;
  readonly last: Uint8Array | undefined;
  /** `KvBackend.changes()` when it was read. */
  readonly changes: number;
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0;

function sameRequest(a: PageRequest, b: PageRequest): boolean {
  return (
    a.limit === b.limit &&
    a.reverse === b.reverse &&
    sameBytes(a.cat, b.cat) &&
    sameBytes(a.start, b.start) &&
    sameBytes(a.stop, b.stop)
  );
}

export class PageAhead {
  /** Scans answered from a page read ahead (tests and diagnostics). */
  served = 0;
  readonly #backend: KvBackend;
  readonly #slice: SliceClock;
  /**
   * The request that would go on from the last scan, had it filled its limit: copies, since
   * a request's bytes are views of the frame it came in, which may be large.
   */
  #expected: PageRequest | undefined;
  /** A pager's next page, to read before the job sleeps. */
  #due: PageRequest | undefined;
  #held: HeldPage | undefined;

  constructor(backend: KvBackend, slice: SliceClock) {
    this.#backend = backend;
    this.#slice = slice;
  }

  /**
   * Answer `request` with the page read ahead for it, when it is that page and still what a
   * read would give; false to read it as usual (then call `read`). Either way the held page
   * is let go: a job holds one only until its next scan.
   */
  answer(request: PageRequest, replies: GroupReplies): boolean {
    const held = this.#held;
    this.#held = undefined;
    if (held === undefined || !sameRequest(held.request, request)) return false;
    const b = this.#backend;
    if (b.expiry || held.changes !== b.changes()) return false;
    const w = replies.w;
    const at = beginRows(w);
    w.bytes(held.records);
    endRows(w, at, held.rows);
    this.served++;
    this.read(request, held.rows, held.last, held.records.length);
    return true;
  }

  /** A scan failed: no pager goes on from it. */
  failed(): void {
    this.#expected = undefined;
    this.#due = undefined;
  }

  /** The job's group ended: a held page that its writes made stale is let go at once. */
  endGroup(): void {
    if (this.#held !== undefined && this.#held.changes !== this.#backend.changes())
      this.#held = undefined;
  }

  /**
   * `request` was answered: `rows` rows of `bytes` bytes of records, the last one's key
   * `last`. Expect the page after it, and read that one ahead if this one was expected.
   */
  read(request: PageRequest, rows: number, last: Uint8Array | undefined, bytes: number): void {
    const pager = this.#expected !== undefined && sameRequest(this.#expected, request);
    this.failed();
    if (last === undefined || request.limit <= 0 || rows < request.limit) return;
    if (bytes > READ_AHEAD_MAX_BYTES) return;
    // Rows with expiry drop out of a page by the clock alone, which no change count shows.
    if (this.#backend.expiry) return;
    const next = rangeAfter([request.start, request.stop], last, request.reverse);
    if (next === undefined) return;
    const { cat, reverse, limit } = request;
    this.#expected = {
      cat: cat.slice(),
      start: next[0].slice(),
      stop: next[1].slice(),
      reverse,
      limit,
    };
    if (pager) this.#due = this.#expected;
  }

  /**
   * Read the page a pager asks for next, if one is due and no longer than
   * READ_AHEAD_MAX_BYTES, outside any transaction (a page read inside one could show writes
   * its rollback takes back). Its length is summed first from the rows' headers, which
   * steps over its rows once more: cheap for small rows, and large rows after small pages
   * are what it keeps out of memory. It runs right after the answer, whatever waits: the
   * job's next request (most often that page) waits for at most one such page. On a shared
   * thread it pauses between SQLite's pages when the others are due; this job's requests
   * wait meanwhile, so nothing changes its rows before the page is held. A failure is left
   * to the scan that asks for the page, which reads it again.
   */
  *readAhead(): Generator<Pause, void, void> {
    const request = this.#due;
    this.#due = undefined;
    const b = this.#backend;
    if (request === undefined || b.db.inTransaction) return;
    this.#held = undefined;
    try {
      const { cat, start, stop, reverse, limit } = request;
      const extent = b.scanExtent(cat, start, stop, reverse, limit);
      if (extent.bytes > READ_AHEAD_MAX_BYTES) return;
      const changes = b.changes();
      // The records: two u32 lengths a row besides the bytes.
      const w = new ByteWriter(extent.bytes + 8 * extent.rows + 64);
      let rows = 0;
      let last: Uint8Array | undefined;
      for (const page of b.scanPages(() => w, cat, start, stop, reverse, limit)) {
        rows += page.rows;
        last = page.last ?? last;
        if (this.#slice.due()) yield 'slice';
      }
      this.#held = { request, records: w.buf.subarray(0, w.pos), rows, last, changes };
    } catch {
      // The scan that asks for this page reads it again and answers with the error.
    }
  }
}
