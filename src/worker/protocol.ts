/*
 * The messages between a Job (main thread) and its worker.
 *
 * Everything a job issues in one event-loop turn — write batches, reads, flushes — is
 * packed into one transferred ArrayBuffer (a "frame"), in issue order, so the worker sees
 * reads and writes in the order they were made and can apply a turn's writes in one
 * transaction. The worker answers each group of frames with one transferred reply buffer
 * holding the results in request order.
 *
 * Frame records (all integers big-endian):
 *   BATCH        u8 tag, u32 byteLength (of what follows), u32 opCount, then per op:
 *                  u8 kind, u16 catLen, cat, u32 keyLen, key,
 *                  put: u32 payloadLen, payload | deletePrefix: u32 stopLen, stop (0 = open)
 *   GET/EXISTS/DELETE_ACKED   u8 tag, u16 catLen, cat, u32 keyLen, key
 *   SCAN         u8 tag, u16 catLen, cat, u32 startLen, start, u32 stopLen, stop,
 *                u8 reverse, f64 limit (-1 = none)
 *   COUNT        u8 tag, u16 catLen, cat, u32 startLen, start, u32 stopLen, stop
 *   FLUSH        u8 tag
 *
 * Reply records, one per read/flush in order:
 *   u8 status, then: BYTES u32 len, bytes | NUMBER f64 | ROWS u32 n, (u32 klen, key,
 *   u32 plen, payload)* | ERROR u32 index into the reply's `errors`.
 */
import type { PersistencyErrorKind } from '../errors.js';

export const Tag = {
  Batch: 1,
  Get: 2,
  Exists: 3,
  Scan: 4,
  Count: 5,
  DeleteAcked: 6,
  Flush: 7,
} as const;

export const OpKind = { Put: 1, Delete: 2, DeletePrefix: 3 } as const;

export const Status = {
  None: 0,
  Bytes: 1,
  False: 2,
  True: 3,
  Number: 4,
  Rows: 5,
  Error: 6,
  Done: 7,
  /** Some rows of a scan; more follow, then its final `Rows` (or `Error`) record. */
  RowsPart: 8,
} as const;

/** A serialisable error crossing the thread boundary. */
export interface ErrorInfo {
  readonly kind: PersistencyErrorKind;
  readonly message: string;
  readonly code?: string | undefined;
}

/** A batch the worker could not apply, sent back so the job can report its ops. */
export interface BatchFailure {
  /** The batch's ops, copied out of its frame (starts at the op count). */
  readonly record: Uint8Array;
  readonly error: ErrorInfo;
}

export interface OpenRequest {
  readonly dbPath: string;
  /** A database image to start from (a `:memory:` job being reopened). */
  readonly image?: Uint8Array | undefined;
  readonly busyTimeoutMs: number;
  readonly journalSizeLimitBytes: number;
  /** 0 = no bound. */
  readonly maxJobBytes: number;
  readonly verifyOnOpen: boolean;
  /** How the worker polls for the next request after answering one (absent: never). */
  readonly poll?: PollSettings | undefined;
}

/**
 * After a group that answered a read, flush or deleteAcked, the worker keeps asking its port
 * for the next message for up to `micros` before its thread goes to sleep: a caller that
 * awaits one answer and then asks again is served without waking a sleeping thread (on this
 * machine a wake-up costs 20-90 µs, more than the rest of a get). At most `max` workers poll
 * at once (counted in `slots`, an Int32 shared by every worker this copy of the library
 * starts), and a worker whose poll found nothing skips its next 1, 2, 4, ... up to 64 polls
 * until one finds a message again. Absent (undefined) when polling is off.
 */
export interface PollSettings {
  readonly micros: number;
  /** One Int32: how many workers are polling now. */
  readonly slots: SharedArrayBuffer;
  readonly max: number;
}

/** What a worker's polling did, reported when it closes (tests and diagnostics). */
export interface PollStats {
  /** Polls started. */
  readonly tried: number;
  /** Polls that found a message. */
  readonly caught: number;
  /** Polls not started because `max` workers were polling already. */
  readonly busy: number;
}

/** How the worker answered gets, reported when it closes (tests and diagnostics). */
export interface ReadStats {
  /** Gets answered by a statement that read several keys (`KvBackend.getMany`). */
  readonly batched: number;
}

/**
 * A frame travels as a bare Uint8Array; control messages are objects. Small byte messages
 * are copied (cheaper than a transfer, measured here), large ones transferred.
 */
export type ToWorker =
  | Uint8Array
  /** The first message a worker gets: which job to open. */
  | { readonly t: 'open'; readonly req: OpenRequest }
  /** To a worker that never opened a job: exit. */
  | { readonly t: 'quit' }
  | { readonly t: 'close' }
  /** Test hook: make the worker die as if it crashed. */
  | { readonly t: 'crash'; readonly how: 'throw' | 'exit' }
  /** Test hook: make SQLite fail once, the way a full or failing disk does. */
  | { readonly t: 'inject'; readonly fault: InjectedFault; readonly skipWrites: number };

/**
 * Faults a test can inject (LevelDB-style fault injection); a write fault passes over the
 * first `skipWrites` write records (batches or deleteAcked) that come after it:
 * - `commit`: the next COMMIT fails (SQLITE_IOERR) and the transaction is rolled back;
 * - `rollback`: the next write fails and SQLite drops the whole open transaction
 *   (SQLITE_FULL), as it may on I/O errors; the group's earlier writes must be redone;
 * - `rollback-twice`: as `rollback`, and the redo fails too, so the group is lost;
 * - `getMany`: the next statement reading several keys fails (`skipWrites` is ignored).
 */
export type InjectedFault = 'commit' | 'rollback' | 'rollback-twice' | 'getMany';

/**
 * The worker's answers. A group's replies travel as a bare Uint8Array (u32 frames done,
 * then the reply records) when nothing failed; otherwise as a `replies` object.
 */
export type FromWorker =
  | Uint8Array
  | { readonly t: 'ready'; readonly file: string | undefined }
  | { readonly t: 'openFailed'; readonly error: ErrorInfo }
  | {
      readonly t: 'replies';
      /** u32 frames done, then the reply records, as in the bare form. */
      readonly bytes: Uint8Array;
      readonly errors: readonly ErrorInfo[];
      readonly failures: readonly BatchFailure[];
    }
  | {
      readonly t: 'closed';
      readonly image: Uint8Array | undefined;
      readonly error: ErrorInfo | undefined;
      readonly polls: PollStats;
      readonly reads: ReadStats;
    };

/** Messages up to this size are copied; larger ones are transferred. */
export const COPY_LIMIT = 64 * 1024;

/**
 * The bytes a writer holds, ready to post: `[message, transferList]`. A small message is
 * an exact copy and the writer keeps its buffer; a large one hands the buffer over, and
 * the writer must not be used again.
 */
export function takeBytes(w: ByteWriter): [Uint8Array, ArrayBuffer[], boolean] {
  if (w.pos <= COPY_LIMIT) return [w.buf.slice(0, w.pos), [], false];
  return [w.buf.subarray(0, w.pos), [w.buf.buffer as ArrayBuffer], true];
}

/** A growable byte buffer with big-endian writers. */
export class ByteWriter {
  buf: Uint8Array;
  pos = 0;
  #view: DataView;

  constructor(size = 4096) {
    this.buf = new Uint8Array(size);
    this.#view = new DataView(this.buf.buffer);
  }

  reserve(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.#view = new DataView(next.buffer);
  }

  u8(v: number): void {
    this.reserve(1);
    this.buf[this.pos++] = v;
  }

  u16(v: number): void {
    this.reserve(2);
    this.buf[this.pos++] = v >>> 8;
    this.buf[this.pos++] = v & 0xff;
  }

  u32(v: number): void {
    this.reserve(4);
    const b = this.buf;
    let p = this.pos;
    b[p++] = v >>> 24;
    b[p++] = (v >>> 16) & 0xff;
    b[p++] = (v >>> 8) & 0xff;
    b[p++] = v & 0xff;
    this.pos = p;
  }

  f64(v: number): void {
    this.reserve(8);
    this.#view.setFloat64(this.pos, v);
    this.pos += 8;
  }

  bytes(v: Uint8Array): void {
    this.reserve(v.length);
    this.buf.set(v, this.pos);
    this.pos += v.length;
  }

  /** u32 length, then the bytes. */
  blob(v: Uint8Array): void {
    this.u32(v.length);
    this.bytes(v);
  }

  /** u16 length, then the bytes. */
  shortBlob(v: Uint8Array): void {
    this.u16(v.length);
    this.bytes(v);
  }
}

/** Reads what a ByteWriter wrote. Views returned by `blob` alias the frame. */
export class ByteReader {
  pos: number;
  readonly #view: DataView;

  constructor(
    readonly buf: Uint8Array,
    start = 0,
  ) {
    this.pos = start;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  u8(): number {
    return this.buf[this.pos++] as number;
  }

  u16(): number {
    const v = this.#view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number {
    const v = this.#view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  f64(): number {
    const v = this.#view.getFloat64(this.pos);
    this.pos += 8;
    return v;
  }

  blob(): Uint8Array {
    const n = this.u32();
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  shortBlob(): Uint8Array {
    const n = this.u16();
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** Skip a u32-length blob. */
  skipBlob(): void {
    this.pos += 4 + this.#view.getUint32(this.pos);
  }
}

/** Move `r` (just past a record's tag) past the record; returns the record's end. */
export function skipRecord(tag: number, r: ByteReader): number {
  const skipShort = () => {
    const n = r.u16();
    r.pos += n;
  };
  switch (tag) {
    case Tag.Batch: {
      const n = r.u32();
      r.pos += n;
      break;
    }
    case Tag.Get:
    case Tag.Exists:
    case Tag.DeleteAcked:
      skipShort();
      r.skipBlob();
      break;
    case Tag.Scan:
      skipShort();
      r.skipBlob();
      r.skipBlob();
      r.pos += 9; // reverse flag, f64 limit
      break;
    case Tag.Count:
      skipShort();
      r.skipBlob();
      r.skipBlob();
      break;
    case Tag.Flush:
      break;
    default:
      throw new Error(`persistency: unknown frame tag ${tag}`);
  }
  return r.pos;
}
