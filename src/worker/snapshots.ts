/*
 * A job's iterators inside its worker. Each holds a snapshot of the job as it was when the
 * iterator opened, read a page per request: for a file job a read-only connection of its
 * own with a read transaction open (WAL lets the job's writer go on beside it), for a
 * `:memory:` job a copy of the database. A snapshot ends with its range, its limit, an
 * error, the iterator's IterClose, or the job's release or close.
 *
 * While a file snapshot is open, checkpoints cannot move the WAL past the frames it reads
 * from, so the WAL grows with the job's writes until the snapshot ends (README, Paging and
 * iterating).
 */
import Database from 'better-sqlite3';
import type { ErrorInfo } from '../protocol/messages.js';
import { beginRows, endRows, writeAttachedRows } from '../protocol/replies.js';
import { type KvBackend, SCAN_PAGE_ROWS } from './backend.js';
import { hasExpiry, type JobClock } from './expiry.js';
import type { GroupReplies } from './group-replies.js';
import { type Range, RangePages } from './range-pages.js';
import type { Pause, SliceClock } from './slice.js';

interface Snapshot {
  readonly db: Database.Database;
  readonly pages: RangePages;
  readonly range: Range;
  readonly pageSize: number;
  /** Rows the iterator's limit still allows. */
  left: number;
  /** The last key read: the next page goes on past it. */
  after: Buffer | undefined;
}

/**
 * A connection holding the job's committed data as it is now, for as long as it is open:
 * for a file job a read-only connection of its own with a read transaction begun (the
 * caller's first read starts it; WAL lets the job's writer go on beside it), for a
 * `:memory:` job a copy of the database.
 */
export function openSnapshot(path: string, backend: KvBackend, busyMs: number): Database.Database {
  if (path === ':memory:') {
    const image = backend.serialize();
    return new Database(Buffer.from(image.buffer, image.byteOffset, image.byteLength));
  }
  const db = new Database(path, { readonly: true, fileMustExist: true, timeout: busyMs });
  try {
    db.exec('BEGIN');
  } catch (e) {
    db.close();
    throw e;
  }
  return db;
}

export class Snapshots {
  readonly #open = new Map<number, Snapshot>();
  readonly #backend: KvBackend;
  readonly #replies: GroupReplies;
  /** The job file, or `:memory:`. */
  readonly #path: string;
  readonly #busyMs: number;
  readonly #slice: SliceClock;
  /** Why the job's path no longer holds the file the job opened, if it does not. */
  readonly #fileMoved: () => ErrorInfo | undefined;
  readonly #clock: JobClock;

  constructor(
    backend: KvBackend,
    replies: GroupReplies,
    path: string,
    busyMs: number,
    slice: SliceClock,
    fileMoved: () => ErrorInfo | undefined,
    clock: JobClock,
  ) {
    this.#clock = clock;
    this.#slice = slice;
    this.#backend = backend;
    this.#replies = replies;
    this.#path = path;
    this.#busyMs = busyMs;
    this.#fileMoved = fileMoved;
  }

  get size(): number {
    return this.#open.size;
  }

  /**
   * Take iterator `id`'s snapshot of the job's committed data (the caller commits the
   * group's writes first) and answer with its first page.
   */
  *open(id: number, range: Range, limit: number, pageSize: number): Generator<Pause, void, void> {
    const replies = this.#replies;
    const moved = this.#fileMoved();
    if (moved !== undefined) {
      replies.error(moved);
      return;
    }
    this.close(id); // an id is never reused while open; be safe if it were
    let db: Database.Database | undefined;
    try {
      db = openSnapshot(this.#path, this.#backend, this.#busyMs);
      this.#clock.install(db);
      const backend = this.#backend;
      const pages = new RangePages(db, backend.rowSize, hasExpiry(db), () => backend.canGetMany);
      const left = limit < 0 ? Number.POSITIVE_INFINITY : limit;
      this.#open.set(id, {
        db,
        pages,
        range,
        pageSize,
        left,
        after: undefined,
      });
    } catch (e) {
      db?.close();
      replies.failedAt(replies.w.pos, e);
      return;
    }
    yield* this.next(id);
  }

  /**
   * Answer with iterator `id`'s next page; the snapshot ends after its last. On a shared
   * thread the page is read SCAN_PAGE_ROWS rows at a time, pausing between them when the
   * thread's other jobs are due a turn (it goes out as one record per part).
   */
  *next(id: number): Generator<Pause, void, void> {
    const replies = this.#replies;
    const s = this.#open.get(id);
    if (s === undefined) {
      replies.error({
        kind: 'Closed',
        message: `iterator ${id} has no snapshot: the job was released or closed since it began`,
      });
      return;
    }
    const start = replies.w.pos;
    try {
      const want = Math.min(s.pageSize, s.left);
      const partRows = this.#slice.shared ? SCAN_PAGE_ROWS : want;
      let rows = 0;
      for (;;) {
        const ask = Math.min(partRows, want - rows);
        const at = beginRows(replies.w);
        const part = ask > 0 ? s.pages.page(replies.w, s.range, s.after, ask) : undefined;
        const got = part?.rows ?? 0;
        rows += got;
        s.after = part?.last ?? s.after;
        const more = got === ask && rows < want;
        if (part?.built === undefined) endRows(replies.w, at, got, more);
        else {
          // Rows SQLite built go over as they are: not copied, and no garbage left in this
          // thread (its collector would let many pages pile up before freeing them).
          replies.w.pos = at;
          writeAttachedRows(replies.w, got, replies.attach(part.built), more);
        }
        if (!more) break;
        if (this.#slice.due()) yield 'slice';
      }
      s.left -= rows;
      if (rows < want || s.left === 0) this.close(id);
    } catch (e) {
      this.close(id);
      replies.failedAt(start, e);
      return;
    }
    replies.ok();
  }

  /** End iterator `id`'s snapshot, if it is open. */
  close(id: number): void {
    const s = this.#open.get(id);
    if (s === undefined) return;
    this.#open.delete(id);
    try {
      s.db.close();
    } catch {
      // A read-only connection has nothing to lose.
    }
  }

  /** End every snapshot (the job is being released or closed). */
  closeAll(): void {
    for (const id of [...this.#open.keys()]) this.close(id);
  }
}
