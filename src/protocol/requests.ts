/*
 * Request records: what a job sends its worker, written here on the main thread and read
 * here in the worker. Everything a job issues in one event-loop turn — write batches,
 * reads, flushes — is packed into one frame in issue order, so the worker sees reads and
 * writes in the order they were made and can apply a turn's writes in one transaction.
 *
 * Frame records (all integers big-endian):
 *   BATCH        u8 tag, u32 byteLength (of what follows), u32 opCount, then per op:
 *                  u8 kind, u16 catLen, cat, u32 keyLen, key,
 *                  then the op's `last` (u32 len, bytes) unless it is a delete or checkAbsent:
 *                  put: the payload | deletePrefix: the stop (0 = open) | add: the delta as
 *                  8 bytes of i64 | putExpiring: f64 expiry (ms since the epoch), then the
 *                  payload | checkValue: the payload expected
 *   ATOMIC       as BATCH (its ops may hold checks); answered by a NUMBER (AtomicOutcome)
 *   GET/EXISTS/DELETE_ACKED   u8 tag, u16 catLen, cat, u32 keyLen, key
 *   SCAN         u8 tag, u16 catLen, cat, u32 startLen, start, u32 stopLen, stop,
 *                u8 reverse, f64 limit (-1 = none)
 *   COUNT        u8 tag, u16 catLen, cat, u32 startLen, start, u32 stopLen, stop
 *   FLUSH        u8 tag
 *   GET_MANY     u8 tag, u16 catLen, cat, u32 n, (u32 keyLen, key)*
 *   ITER_OPEN    u8 tag, u32 id, then as SCAN, then u32 pageSize
 *   ITER_NEXT    u8 tag, u32 id
 *   ITER_CLOSE   u8 tag, u32 id (no reply)
 *   WATCH_OPEN   u8 tag, u32 id, u16 catLen, cat, u32 startLen, start, u32 stopLen, stop
 *                (no reply: changes come with later replies)
 *   WATCH_CLOSE  u8 tag, u32 id (no reply)
 *   NOW          u8 tag, f64 ms since the epoch: the injected clock's time (no reply)
 *
 * A batch's "ops record" (from its op count to its end) is also what a failed batch is
 * sent back as, to be reported with its ops.
 */
import type { ByteWriter } from './bytes.js';

export const Tag = {
  Batch: 1,
  Get: 2,
  Exists: 3,
  Scan: 4,
  Count: 5,
  DeleteAcked: 6,
  Flush: 7,
  GetMany: 8,
  /** Take an iterator's snapshot and read its first page. */
  IterOpen: 9,
  IterNext: 10,
  IterClose: 11,
  /** A batch with checks whose caller awaits its outcome. */
  Atomic: 12,
  WatchOpen: 13,
  WatchClose: 14,
  Now: 15,
} as const;

export const OpKind = {
  Put: 1,
  Delete: 2,
  DeletePrefix: 3,
  Add: 4,
  CheckValue: 5,
  CheckAbsent: 6,
  PutExpiring: 7,
} as const;

/** Whether an op of `kind` has a `last` field (see the BATCH record). */
export function opHasLast(kind: number): boolean {
  return kind !== OpKind.Delete && kind !== OpKind.CheckAbsent;
}

/** An atomic batch's outcome, the NUMBER its ATOMIC record is answered with. */
export const AtomicOutcome = {
  Applied: 0,
  /** A check did not hold: nothing was applied. */
  CheckFailed: 1,
  /** An `add` would leave int64: nothing was applied. */
  Overflow: 2,
  /** An `add` met a payload that is not 8 bytes: nothing was applied. */
  NotCounter: 3,
} as const;

/** Records that the worker answers with no reply. */
export function hasReply(tag: number): boolean {
  return (
    tag !== Tag.Batch &&
    tag !== Tag.IterClose &&
    tag !== Tag.WatchOpen &&
    tag !== Tag.WatchClose &&
    tag !== Tag.Now
  );
}

/** Tag and body length of a batch. */
export const BATCH_HEADER = 5;

/** One op of a batch as bytes: for a put `last` is the payload, for a prefix the stop. */
export interface OpBytes {
  readonly kind: number;
  readonly category: Uint8Array;
  readonly key: Uint8Array;
  readonly last?: Uint8Array | undefined;
}

// ---------------------------------------------------------------------------------------
// Writing (main thread)

/** The bytes after a batch's header: the op count and the ops. */
export function batchBodyBytes(ops: readonly OpBytes[]): number {
  let body = 4;
  for (const op of ops) {
    body += 1 + 2 + op.category.length + 4 + op.key.length;
    if (op.last !== undefined) body += 4 + op.last.length;
  }
  return body;
}

/** A batch (or, with `tag` Atomic, an atomic batch) whose body is `body` bytes (batchBodyBytes). */
export function writeBatch(
  w: ByteWriter,
  ops: readonly OpBytes[],
  body: number,
  tag: typeof Tag.Batch | typeof Tag.Atomic = Tag.Batch,
): void {
  w.reserve(BATCH_HEADER + body);
  w.u8(tag);
  w.u32(body);
  w.u32(ops.length);
  for (const op of ops) {
    w.u8(op.kind);
    w.shortBlob(op.category);
    w.blob(op.key);
    if (op.last !== undefined) w.blob(op.last);
  }
}

/** A batch of one put: the hot path of `persistPut`. */
export function writePut(
  w: ByteWriter,
  cat: Uint8Array,
  key: Uint8Array,
  payload: Uint8Array,
): void {
  writeSingleOpHead(w, OpKind.Put, cat, key, payload.length);
  w.blob(payload);
}

/**
 * A batch of one op of `kind` up to its last field, which is `lastBytes` long and which the
 * caller writes next (room for it is reserved).
 */
function writeSingleOpHead(
  w: ByteWriter,
  kind: number,
  cat: Uint8Array,
  key: Uint8Array,
  lastBytes: number,
): void {
  const body = 4 + 1 + 2 + cat.length + 4 + key.length + 4 + lastBytes;
  w.reserve(BATCH_HEADER + body);
  w.u8(Tag.Batch);
  w.u32(body);
  w.u32(1);
  w.u8(kind);
  w.shortBlob(cat);
  w.blob(key);
}

/**
 * A batch of one add of `delta`, a safe integer: the hot path of `persistAdd`. The delta is
 * written as its counter payload (the i64 with its sign bit flipped), from two 32-bit halves.
 */
export function writeAdd(w: ByteWriter, cat: Uint8Array, key: Uint8Array, delta: number): void {
  writeSingleOpHead(w, OpKind.Add, cat, key, 8);
  w.u32(8);
  const high = Math.floor(delta / 4294967296);
  w.u32((high ^ 0x80000000) >>> 0);
  w.u32(delta - high * 4294967296);
}

/** A get, exists or deleteAcked. */
export function writeKeyRequest(
  w: ByteWriter,
  tag: number,
  cat: Uint8Array,
  key: Uint8Array,
): void {
  w.u8(tag);
  w.shortBlob(cat);
  w.blob(key);
}

export function writeGetMany(w: ByteWriter, cat: Uint8Array, keys: readonly Uint8Array[]): void {
  w.u8(Tag.GetMany);
  w.shortBlob(cat);
  w.u32(keys.length);
  for (const k of keys) w.blob(k);
}

export function writeScan(
  w: ByteWriter,
  cat: Uint8Array,
  start: Uint8Array,
  stop: Uint8Array,
  reverse: boolean,
  limit: number,
  tagged = true,
): void {
  if (tagged) w.u8(Tag.Scan);
  w.shortBlob(cat);
  w.blob(start);
  w.blob(stop);
  w.u8(reverse ? 1 : 0);
  w.f64(limit);
}

/** Open iterator `id`: its range and options as a scan's, and its page size. */
export function writeIterOpen(
  w: ByteWriter,
  id: number,
  cat: Uint8Array,
  start: Uint8Array,
  stop: Uint8Array,
  reverse: boolean,
  limit: number,
  pageSize: number,
): void {
  w.u8(Tag.IterOpen);
  w.u32(id);
  writeScan(w, cat, start, stop, reverse, limit, false);
  w.u32(pageSize);
}

/** Iterator `id`'s next page (IterNext) or its end (IterClose). */
export function writeIterStep(
  w: ByteWriter,
  tag: typeof Tag.IterNext | typeof Tag.IterClose,
  id: number,
): void {
  w.u8(tag);
  w.u32(id);
}

export function writeCount(
  w: ByteWriter,
  cat: Uint8Array,
  start: Uint8Array,
  stop: Uint8Array,
): void {
  w.u8(Tag.Count);
  w.shortBlob(cat);
  w.blob(start);
  w.blob(stop);
}

export function writeFlush(w: ByteWriter): void {
  w.u8(Tag.Flush);
}

/** Start watching `[start, stop)` of `cat` as watch `id`. */
export function writeWatchOpen(
  w: ByteWriter,
  id: number,
  cat: Uint8Array,
  start: Uint8Array,
  stop: Uint8Array,
): void {
  w.u8(Tag.WatchOpen);
  w.u32(id);
  w.shortBlob(cat);
  w.blob(start);
  w.blob(stop);
}

export function writeWatchClose(w: ByteWriter, id: number): void {
  w.u8(Tag.WatchClose);
  w.u32(id);
}

/** The time of the injected clock, at the head of a frame. */
export function writeNow(w: ByteWriter, ms: number): void {
  w.u8(Tag.Now);
  w.f64(ms);
}
