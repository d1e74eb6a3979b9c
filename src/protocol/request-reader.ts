/*
 * Reading request records (src/protocol/requests.ts has their format and writers): in the
 * worker, record by record; on the main thread, a failed batch's ops and a frame's records
 * for reporting what failed.
 */
import { adoptKey } from '../keys.js';
import type { TxOp } from '../types.js';
import { ByteReader, readU32 } from './bytes.js';
import { BATCH_HEADER, hasReply, OpKind, opHasLast, Tag } from './requests.js';

const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder();

/**
 * Reads a frame's records. After `tag()`, one of the record readers fills the fields
 * (`cat`, `key`, `stop`, `reverse`, `limit`) without allocating. Consecutive records
 * usually share a category: the same bytes object is handed out again (a copy, so that
 * keeping it does not keep a frame alive).
 */
export class RequestReader extends ByteReader {
  /** Where the current record starts (its tag). */
  at = 0;
  cat: Uint8Array = EMPTY;
  key: Uint8Array = EMPTY;
  /** A scan's or count's stop, a deletePrefix op's stop. */
  stop: Uint8Array = EMPTY;
  /** Where an op's `u32 keyLen, key` begins in `buf` (a put's `u32 payloadLen, payload` follows). */
  keyAt = 0;
  reverse = false;
  limit = -1;
  /** An iterator's id and page size (IterOpen, IterNext, IterClose). */
  iterator = 0;
  pageSize = 0;
  /** A batch's end, and its op count (after `batch()`). */
  end = 0;
  opCount = 0;

  constructor(buf: Uint8Array, start = 0) {
    super(buf, start);
  }

  tag(): number {
    this.at = this.pos;
    return this.u8();
  }

  /** Get, Exists, DeleteAcked: `cat`, `key`. */
  keyRequest(): void {
    this.cat = this.category();
    this.key = this.blob();
  }

  /** Scan: `cat`, `key` (the start), `stop`, `reverse`, `limit` (-1: none). */
  scan(): void {
    this.count();
    this.reverse = this.u8() === 1;
    this.limit = this.f64();
  }

  /** IterOpen: `iterator`, the fields of a scan, `pageSize`. */
  iterOpen(): void {
    this.iterator = this.u32();
    this.scan();
    this.pageSize = this.u32();
  }

  /** WatchOpen: the watch's id in `iterator`, then `cat`, `key` (the start), `stop`. */
  watchOpen(): void {
    this.iterator = this.u32();
    this.count();
  }

  /** IterNext, IterClose, WatchClose: the id (also left in `iterator`). */
  iteratorId(): number {
    this.iterator = this.u32();
    return this.iterator;
  }

  /** GetMany: `cat`, and its keys (views into the frame). */
  getMany(): Uint8Array[] {
    this.cat = this.category();
    const keys = new Array<Uint8Array>(this.u32());
    for (let i = 0; i < keys.length; i++) keys[i] = this.blob();
    return keys;
  }

  /** Count: `cat`, `key` (the start), `stop`. */
  count(): void {
    this.cat = this.category();
    this.key = this.blob();
    this.stop = this.blob();
  }

  /** Batch: `end`, `opCount`; the reader is then at the first op. */
  batch(): void {
    this.end = this.u32() + this.pos;
    this.opCount = this.u32();
  }

  /** One op of a batch: its kind; `cat`, `key`, and `stop` (a put's payload, a prefix's stop). */
  op(): number {
    const kind = this.u8();
    this.cat = this.category();
    this.keyAt = this.pos;
    this.key = this.blob();
    this.stop = opHasLast(kind) ? this.blob() : EMPTY;
    return kind;
  }

  /** The ops record of the batch just read (from its op count to its end), copied. */
  opsRecord(): Uint8Array {
    return this.buf.slice(this.at + BATCH_HEADER, this.end);
  }

  /** Move to the record at `at` and past its header, so that a record reader can read it. */
  reopen(at: number): number {
    this.pos = at;
    const tag = this.tag();
    if (tag === Tag.Batch || tag === Tag.Atomic) this.batch();
    return tag;
  }

  /** Move past the rest of the record whose tag was just read; returns its end. */
  skip(tag: number): number {
    switch (tag) {
      case Tag.Batch:
      case Tag.Atomic:
        this.pos = this.u32() + this.pos;
        break;
      case Tag.Get:
      case Tag.Exists:
      case Tag.DeleteAcked:
        this.pos += 2 + this.peekU16();
        this.pos += 4 + readU32(this.buf, this.pos);
        break;
      case Tag.Scan:
      case Tag.Count:
        this.pos += 2 + this.peekU16();
        this.pos += 4 + readU32(this.buf, this.pos);
        this.pos += 4 + readU32(this.buf, this.pos);
        if (tag === Tag.Scan) this.pos += 9; // reverse flag, f64 limit
        break;
      case Tag.Flush:
        break;
      case Tag.IterOpen:
        this.iterOpen();
        break;
      case Tag.IterNext:
      case Tag.IterClose:
      case Tag.WatchClose:
        this.pos += 4;
        break;
      case Tag.WatchOpen:
        this.watchOpen();
        break;
      case Tag.Now:
        this.pos += 8;
        break;
      case Tag.GetMany: {
        this.pos += 2 + this.peekU16();
        const n = this.u32();
        for (let i = 0; i < n; i++) this.pos += 4 + readU32(this.buf, this.pos);
        break;
      }
      default:
        throw new Error(`persistency: unknown frame tag ${tag} at ${this.at}`);
    }
    return this.pos;
  }

  #lastCategory: Uint8Array = EMPTY;

  category(): Uint8Array {
    const n = this.u16();
    const buf = this.buf;
    const p = this.pos;
    this.pos += n;
    const last = this.#lastCategory;
    if (last.length === n) {
      let i = 0;
      while (i < n && last[i] === buf[p + i]) i++;
      if (i === n) return last;
    }
    this.#lastCategory = buf.slice(p, p + n);
    return this.#lastCategory;
  }

  /** Carry the remembered category over from the reader of the frame before. */
  follow(previous: RequestReader | undefined): this {
    if (previous !== undefined) this.#lastCategory = previous.#lastCategory;
    return this;
  }

  peekU16(): number {
    return ((this.buf[this.pos] as number) << 8) | (this.buf[this.pos + 1] as number);
  }
}

/** The op count of the batch whose ops record starts at `opsAt`. */
export function opCountAt(buf: Uint8Array, opsAt: number): number {
  return readU32(buf, opsAt);
}

/**
 * Where the batch of one op of `kind` that starts at `p` ends, or -1 when no such record is
 * there.
 */
export function singleOpEnd(buf: Uint8Array, p: number, kind: number): number {
  if (p + 10 > buf.length || buf[p] !== Tag.Batch) return -1;
  if (readU32(buf, p + 5) !== 1 || buf[p + 9] !== kind) return -1;
  return p + BATCH_HEADER + readU32(buf, p + 1);
}

/**
 * Where the key (`keyAt` to `keyEnd`, after its u32 length) and the payload (after its u32
 * length, to `end`) of the batch of one put at `p` are; `end` is also where the batch ends.
 */
export function singlePutAt(
  buf: Uint8Array,
  p: number,
): { keyAt: number; keyEnd: number; end: number } {
  // u32 opCount, u8 kind, u16 catLen, cat, u32 keyLen, then the key.
  const keyAt = p + BATCH_HEADER + 11 + (((buf[p + 10] as number) << 8) | (buf[p + 11] as number));
  const keyEnd = keyAt + readU32(buf, keyAt - 4);
  return { keyAt, keyEnd, end: keyEnd + 4 + readU32(buf, keyEnd) };
}

/**
 * The key of the Get record of category `cat` that starts at `p` (a view into the frame,
 * ending where the record ends), or undefined when no such record is there.
 */
export function getKeyAt(buf: Uint8Array, p: number, cat: Uint8Array): Uint8Array | undefined {
  if (p >= buf.length || buf[p] !== Tag.Get) return undefined;
  const n = cat.length;
  if (((buf[p + 1] as number) << 8) + (buf[p + 2] as number) !== n) return undefined;
  if (n > 64) {
    if (!Buffer.from(buf.buffer, buf.byteOffset + p + 3, n).equals(cat)) return undefined;
  } else {
    for (let i = 0; i < n; i++) if (buf[p + 3 + i] !== cat[i]) return undefined;
  }
  const keyAt = p + 3 + n + 4;
  return buf.subarray(keyAt, keyAt + readU32(buf, keyAt - 4));
}

/** Where a view returned by `getKeyAt` ends in its frame. */
export function endOf(view: Uint8Array, frame: Uint8Array): number {
  return view.byteOffset - frame.byteOffset + view.length;
}

/**
 * A batch's ops record (a failed batch) as the ops a caller gave, and how many there were:
 * the ops are a courtesy of the report, the count is known even if they cannot be read (or
 * are not all TxOps: a `persistAdd`).
 */
export function batchOps(record: Uint8Array): { ops: TxOp[]; count: number } {
  const count = record.length >= 4 ? readU32(record, 0) : 0;
  const ops: TxOp[] = [];
  try {
    const r = new RequestReader(record);
    r.u32();
    for (let i = 0; i < count; i++) {
      const kind = r.op();
      const category = utf8.decode(r.cat);
      const key = adoptKey(r.key.slice());
      if (kind === OpKind.Put) ops.push({ kind: 'put', category, key, payload: r.stop.slice() });
      else if (kind === OpKind.Delete) ops.push({ kind: 'delete', category, key });
      else if (kind === OpKind.Add)
        return { ops: [], count }; // not a TxOp: listed as none
      else if (kind === OpKind.PutExpiring) {
        const expiresAt = new DataView(r.stop.buffer, r.stop.byteOffset, 8).getFloat64(0);
        const expireInMs = Math.max(0, expiresAt - Date.now());
        ops.push({ kind: 'put', category, key, payload: r.stop.slice(8), expireInMs });
      } else ops.push({ kind: 'deletePrefix', category, prefix: key });
    }
  } catch {
    return { ops: [], count };
  }
  return { ops, count };
}

/** The ids of the watches a frame opens (WATCH_OPEN records). */
export function watchesOpenedIn(frame: Uint8Array): number[] {
  const r = new RequestReader(frame);
  const ids: number[] = [];
  while (!r.done) {
    const tag = r.tag();
    r.skip(tag);
    if (tag === Tag.WatchOpen) ids.push(r.iterator);
  }
  return ids;
}

/**
 * A frame's records in order: a batch as its ops record, a record answered by a reply as
 * its tag (records with no reply are left out).
 */
export function recordsOf(frame: Uint8Array): (Uint8Array | number)[] {
  const r = new RequestReader(frame);
  const out: (Uint8Array | number)[] = [];
  while (!r.done) {
    const tag = r.tag();
    const end = r.skip(tag);
    if (tag === Tag.Batch) out.push(frame.subarray(r.at + BATCH_HEADER, end));
    else if (hasReply(tag)) out.push(tag);
  }
  return out;
}
