/*
 * Big-endian byte writing and reading: the one buffer pair under every frame and reply.
 */

/** Messages up to this size are copied; larger ones are transferred. */
export const COPY_LIMIT = 64 * 1024;

/**
 * The bytes a writer holds, ready to post: `[message, transferList]`. A small message is
 * an exact copy and the writer keeps its buffer; a large one hands the buffer over, and
 * the writer must not be used again.
 */
export function takeBytes(w: ByteWriter): [Uint8Array, ArrayBuffer[], boolean] {
  if (w.pos <= COPY_LIMIT) return [w.buf.slice(0, w.pos), [], false];
  // Shared memory is posted as it is: both threads then see the same bytes.
  const transfer = w.shared ? [] : [w.buf.buffer as ArrayBuffer];
  return [w.buf.subarray(0, w.pos), transfer, true];
}

/**
 * The most bytes one message carries: a posted buffer of 2^32 bytes is detached and never
 * arrives (Node 20), with no error on either side.
 */
export const MAX_MESSAGE_BYTES = 2 ** 32 - 1;

/** A record that would take its message past MAX_MESSAGE_BYTES; nothing of it was kept. */
export class MessageTooLarge extends RangeError {}

/**
 * A growable byte buffer with big-endian writers; `shared`: in a SharedArrayBuffer, which a
 * post hands to the other thread without copying or detaching it.
 */
export class ByteWriter {
  buf: Uint8Array;
  pos = 0;
  #view: DataView;
  readonly shared: boolean;
  /** The most bytes it grows to (tests set less). */
  readonly #limit: number;

  constructor(size = 4096, shared = false, limit = MAX_MESSAGE_BYTES) {
    this.shared = shared;
    this.#limit = limit;
    this.buf = this.#alloc(Math.min(size, limit));
    this.#view = new DataView(this.buf.buffer);
  }

  #alloc(size: number): Uint8Array {
    return this.shared ? new Uint8Array(new SharedArrayBuffer(size)) : new Uint8Array(size);
  }

  reserve(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    if (need > this.#limit) {
      throw new MessageTooLarge(`a message of ${need} bytes; one carries at most ${this.#limit}`);
    }
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    size = Math.min(size, this.#limit);
    const next = this.#alloc(size);
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

  /** Write a u32 at `at` without moving the writer. */
  patchU32(at: number, v: number): void {
    const end = this.pos;
    this.pos = at;
    this.u32(v);
    this.pos = end;
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

/** The big-endian u32 at `p`. */
export function readU32(buf: Uint8Array, p: number): number {
  return (
    (((buf[p] as number) << 24) |
      ((buf[p + 1] as number) << 16) |
      ((buf[p + 2] as number) << 8) |
      (buf[p + 3] as number)) >>>
    0
  );
}
