/*
 * A job's watches inside its worker: the ranges watched, and the changes of the open
 * transaction that fall in them (src/protocol/changes.ts). Changes wait until their
 * transaction commits; a batch that fails takes its own back, a lost group all of its.
 */
import { compareBytes } from '../codec/key.js';
import { readU32 } from '../protocol/bytes.js';
import {
  ChangeKind,
  COMMIT_END,
  PUT_REF_BYTES,
  PUT_RUN_BYTES,
  recordEnd,
} from '../protocol/changes.js';
import { singlePutAt } from '../protocol/request-reader.js';
import { ChangeLog, writeU32 } from './change-log.js';

type Bytes = Uint8Array;

interface Watch {
  readonly id: number;
  readonly category: Bytes;
  readonly start: Bytes;
  /** Empty: no upper bound. */
  readonly stop: Bytes;
  /** The last bytes object found to be `category`: the frames hand out one per category. */
  seen: Bytes | undefined;
}

const sameBytes = (a: Bytes, b: Bytes): boolean =>
  a === b || (a.length === b.length && compareBytes(a, b) === 0);

/** A commit's change records, and the shared frames their PUT_REF records point into. */
export interface TakenChanges {
  readonly chunks: Uint8Array[];
  readonly frames: readonly Uint8Array[];
}

export class Watches {
  #list: Watch[] = [];
  /** Changes recorded; those before `#committed` belong to committed transactions. */
  #log = new ChangeLog();
  #committed = 0;
  /** The shared frames the log's PUT_REF records point into, each whole. */
  #frames: Uint8Array[] = [];
  /** The bytes of each of `#frames` that records point to. */
  #refBytes: number[] = [];
  /** The last frame looked up (see #sharedFrame), its index in `#frames` and offset there. */
  #lastFrame: Bytes | undefined;
  #lastIndex = -1;
  #lastBase = 0;
  /** While the group's writes are redone, their changes are already recorded. */
  paused = false;

  /** Whether any watch is open (if not, recording costs one check per op). */
  get active(): boolean {
    return this.#list.length > 0 && !this.paused;
  }

  open(id: number, category: Bytes, start: Bytes, stop: Bytes): void {
    this.#list = [...this.#list, { id, category: category.slice(), start, stop, seen: undefined }];
  }

  close(id: number): void {
    this.#list = this.#list.filter((w) => w.id !== id);
  }

  /** Where the changes recorded so far end (a failed batch goes back to it). */
  mark(): number {
    return this.#log.end;
  }

  undo(mark: number): void {
    this.#log.truncate(Math.max(mark, this.#committed));
    if (this.#log.end === 0) this.#forgetFrames();
  }

  /** Whether a watch covers `key` of `category`. */
  covers(category: Bytes, key: Bytes): boolean {
    for (const w of this.#list) if (Watches.#inRange(w, category, key)) return true;
    return false;
  }

  /**
   * A row written. `frame`: the request frame holding the put as `u32 keyLen, key, u32
   * payloadLen, payload` from offset `at`; one in shared memory is pointed into, not copied.
   */
  put(category: Bytes, key: Bytes, payload: Bytes, frame?: Bytes, at = 0): void {
    for (const w of this.#list) {
      if (!Watches.#inRange(w, category, key)) continue;
      const index = frame === undefined ? -1 : this.#sharedFrame(frame);
      this.#put(w.id, key, payload, index, at);
    }
  }

  /**
   * A run of `count` batches of one put each from `at` of `frame` written (the category, key
   * and payload of put i in `args[3i..3i+2]`, its key at `keyAts[i]`): one PUT_RUN record
   * for a watch that covers the whole run of a shared frame, else one per put it covers.
   */
  putRun(
    args: readonly Bytes[],
    keyAts: readonly number[],
    count: number,
    frame: Bytes,
    at: number,
  ): void {
    let index: number | undefined; // the frame is looked up (and kept) only once it is told
    for (const w of this.#list) {
      // The puts the watch covers, and the bytes their changes would keep a view of (as for
      // PUT_REF: not the batches' headers).
      let covered = 0;
      let bytes = 0;
      for (let i = 0; i < count; i++) {
        const key = args[i * 3 + 1] as Bytes;
        if (!Watches.#inRange(w, args[i * 3] as Bytes, key)) continue;
        covered++;
        bytes += 8 + key.length + (args[i * 3 + 2] as Bytes).length;
      }
      if (covered === 0) continue;
      index ??= this.#sharedFrame(frame);
      if (covered === count && index >= 0) {
        const out = this.#log;
        out.room(9 + PUT_RUN_BYTES);
        const buf = out.buf;
        let p = writeU32(buf, out.pos, w.id);
        buf[p++] = ChangeKind.PutRun;
        p = writeU32(buf, p, PUT_RUN_BYTES);
        p = writeU32(buf, p, index);
        p = writeU32(buf, p, this.#lastBase + at);
        out.pos = writeU32(buf, p, count);
        this.#refBytes[index] = (this.#refBytes[index] as number) + bytes;
        continue;
      }
      for (let i = 0; i < count; i++) {
        const key = args[i * 3 + 1] as Bytes;
        if (Watches.#inRange(w, args[i * 3] as Bytes, key))
          this.#put(w.id, key, args[i * 3 + 2] as Bytes, index, keyAts[i] as number);
      }
    }
  }

  /** A put's record for watch `id`: a PUT_REF into frame `index` at `at`, or (-1) a copy. */
  #put(id: number, key: Bytes, payload: Bytes, index: number, at: number): void {
    const out = this.#log;
    if (index >= 0) {
      out.room(9 + PUT_REF_BYTES);
      const buf = out.buf;
      let p = writeU32(buf, out.pos, id);
      buf[p++] = ChangeKind.PutRef;
      p = writeU32(buf, p, PUT_REF_BYTES);
      p = writeU32(buf, p, index);
      out.pos = writeU32(buf, p, this.#lastBase + at);
      this.#refBytes[index] = (this.#refBytes[index] as number) + 8 + key.length + payload.length;
      return;
    }
    // The whole record at once: one bounds check, then the bytes.
    out.room(13 + key.length + payload.length);
    const buf = out.buf;
    let p = writeU32(buf, out.pos, id);
    buf[p++] = ChangeKind.Put;
    p = writeU32(buf, p, key.length);
    buf.set(key, p);
    p = writeU32(buf, p + key.length, payload.length);
    buf.set(payload, p);
    out.pos = p + payload.length;
  }

  delete(category: Bytes, key: Bytes): void {
    for (const w of this.#list)
      if (Watches.#inRange(w, category, key)) this.#record(w.id, ChangeKind.Delete, key);
  }

  /**
   * The watches a deletePrefix of `[start, stop)` of `category` would tell: those with a row
   * in the part of their range it covers (`hasRow(from, to)`, an empty `to`: no bound).
   */
  touchedBy(
    category: Bytes,
    start: Bytes,
    stop: Bytes,
    hasRow: (from: Bytes, to: Bytes) => boolean,
  ): number[] {
    const touched: number[] = [];
    for (const w of this.#list) {
      if (!sameBytes(w.category, category)) continue;
      const from = compareBytes(start, w.start) >= 0 ? start : w.start;
      const to =
        stop.length === 0
          ? w.stop
          : w.stop.length === 0 || compareBytes(stop, w.stop) < 0
            ? stop
            : w.stop;
      if (to.length > 0 && compareBytes(from, to) >= 0) continue;
      if (hasRow(from, to)) touched.push(w.id);
    }
    return touched;
  }

  /** The rows under `prefix` were removed: tell the watches it touched (see touchedBy). */
  prefix(touched: readonly number[], prefix: Bytes): void {
    for (const id of touched) this.#record(id, ChangeKind.Prefix, prefix);
  }

  /** The open transaction committed: its changes can go. */
  commit(): void {
    if (this.#log.end === this.#committed) return;
    this.#log.u32(COMMIT_END);
    this.#committed = this.#log.end;
  }

  /** The open transaction is lost: forget its changes. */
  lose(): void {
    this.#log.truncate(this.#committed);
    if (this.#log.end === 0) this.#forgetFrames();
  }

  /** The committed changes not yet sent, handed over in chunks (undefined: none). */
  take(): TakenChanges | undefined {
    const n = this.#committed;
    if (n === 0) return undefined;
    this.#committed = 0;
    let chunks = this.#log.take(n);
    // A change keeps its whole frame alive until the watcher lets it go: a frame that the
    // changes point to less than a quarter of (its buffer may be up to twice what it
    // holds) has their bytes copied out instead.
    const frames = this.#frames.map((f, i) =>
      (this.#refBytes[i] as number) * 4 < f.byteLength ? EMPTY : f,
    );
    if (frames.includes(EMPTY)) chunks = copyOut(chunks, this.#frames, frames);
    // Records of the open transaction stay, and may point into these frames.
    if (this.#log.end === 0) this.#forgetFrames();
    return { chunks, frames };
  }

  /**
   * The index in `#frames` of the shared memory `frame` is a view of (its offset there in
   * `#lastBase`), or -1 if it is not shared. Looked up once per frame: a put's own views
   * are not asked for their buffer, which costs more than the rest of recording it.
   */
  #sharedFrame(frame: Bytes): number {
    if (frame === this.#lastFrame) return this.#lastIndex;
    this.#lastFrame = frame;
    this.#lastBase = frame.byteOffset;
    const buffer = frame.buffer;
    if (!(buffer instanceof SharedArrayBuffer)) {
      this.#lastIndex = -1;
      return -1;
    }
    if (this.#frames.at(-1)?.buffer !== buffer) {
      this.#frames.push(new Uint8Array(buffer));
      this.#refBytes.push(0);
    }
    this.#lastIndex = this.#frames.length - 1;
    return this.#lastIndex;
  }

  #forgetFrames(): void {
    this.#frames = [];
    this.#refBytes = [];
    this.#lastFrame = undefined;
  }

  #record(id: number, kind: number, key: Bytes): void {
    const out = this.#log;
    out.room(9 + key.length);
    const buf = out.buf;
    let p = writeU32(buf, out.pos, id);
    buf[p++] = kind;
    p = writeU32(buf, p, key.length);
    buf.set(key, p);
    out.pos = p + key.length;
  }

  static #inRange(w: Watch, category: Bytes, key: Bytes): boolean {
    if (category !== w.seen) {
      if (!sameBytes(w.category, category)) return false;
      w.seen = category;
    }
    return (
      compareBytes(key, w.start) >= 0 && (w.stop.length === 0 || compareBytes(key, w.stop) < 0)
    );
  }
}

const EMPTY = new Uint8Array(0);

/**
 * `chunks` with each PUT_REF or PUT_RUN record into a frame that `kept` no longer holds
 * (EMPTY) made PUT records of the bytes it points to in `frames`.
 */
function copyOut(
  chunks: readonly Uint8Array[],
  frames: readonly Uint8Array[],
  kept: readonly Uint8Array[],
): Uint8Array[] {
  const out = new ChangeLog();
  /** A PUT record of `bytes`'s `u32 keyLen, key, u32 payloadLen, payload` for `watch`. */
  const put = (watch: Uint8Array, bytes: Uint8Array): void => {
    out.room(5 + bytes.length);
    out.buf.set(watch, out.pos);
    out.buf[out.pos + 4] = ChangeKind.Put;
    out.buf.set(bytes, out.pos + 5);
    out.pos += 5 + bytes.length;
  };
  for (const bytes of chunks) {
    for (let p = 0; p < bytes.length; ) {
      const end = recordEnd(bytes, p);
      const kind = readU32(bytes, p) === COMMIT_END ? 0 : bytes[p + 4];
      const refers = kind === ChangeKind.PutRef || kind === ChangeKind.PutRun;
      if (refers && kept[readU32(bytes, p + 9)] === EMPTY) {
        const from = frames[readU32(bytes, p + 9)] as Uint8Array;
        const watch = bytes.subarray(p, p + 4);
        let at = readU32(bytes, p + 13);
        if (kind === ChangeKind.PutRef) {
          const keyEnd = at + 4 + readU32(from, at);
          put(watch, from.subarray(at, keyEnd + 4 + readU32(from, keyEnd)));
        } else
          for (let n = readU32(bytes, p + 17); n > 0; n--) {
            const one = singlePutAt(from, at);
            put(watch, from.subarray(one.keyAt - 4, one.end));
            at = one.end;
          }
      } else {
        out.room(end - p);
        out.buf.set(bytes.subarray(p, end), out.pos);
        out.pos += end - p;
      }
      p = end;
    }
  }
  return out.take(out.end);
}
