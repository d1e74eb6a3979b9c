/*
 * The bytes of a job's change records in its worker (src/protocol/changes.ts), kept in
 * chunks that are handed over whole after each commit. A chunk is never grown: a full one
 * is set aside and a new one begun, so a large commit costs no copying and no large fresh
 * allocations (a doubling buffer spent more time growing than recording).
 */

/** The first chunk after each hand-over; later ones double up to CHUNK_MAX. */
const CHUNK_MIN = 4096;
const CHUNK_MAX = 256 * 1024;

export class ChangeLog {
  /** Full chunks, each a view of its buffer from byte 0 to its end. */
  #full: Uint8Array[] = [];
  /** Bytes in `#full`. */
  #fullBytes = 0;
  /** The chunk being written, and its end. */
  buf: Uint8Array = new Uint8Array(CHUNK_MIN);
  pos = 0;

  /** Offset of the end of the log: a mark to truncate back to. */
  get end(): number {
    return this.#fullBytes + this.pos;
  }

  /** Make room for `n` bytes in one chunk at `pos` (a record never spans chunks). */
  room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    if (this.pos > 0) {
      this.#full.push(this.buf.subarray(0, this.pos));
      this.#fullBytes += this.pos;
    }
    this.buf = new Uint8Array(Math.max(n, Math.min(this.buf.length * 2, CHUNK_MAX)));
    this.pos = 0;
  }

  u32(v: number): void {
    this.room(4);
    this.pos = writeU32(this.buf, this.pos, v);
  }

  /** Forget everything after offset `to`. */
  truncate(to: number): void {
    while (to < this.#fullBytes) {
      const last = this.#full.pop() as Uint8Array;
      this.#fullBytes -= last.length;
      this.buf = new Uint8Array(last.buffer, 0, last.buffer.byteLength);
      this.pos = last.length;
    }
    this.pos = Math.min(this.pos, to - this.#fullBytes);
  }

  /**
   * The chunks holding the log's first `n` bytes, handed over (their buffers may be
   * transferred); what follows them stays, copied into a new first chunk.
   */
  take(n: number): Uint8Array[] {
    const tail = this.#tail(n);
    if (this.pos > 0) this.#full.push(this.buf.subarray(0, this.pos));
    const taken = this.#full;
    let cut = n;
    const out: Uint8Array[] = [];
    for (const c of taken) {
      if (cut <= 0) break;
      out.push(c.length <= cut ? c : c.subarray(0, cut));
      cut -= c.length;
    }
    this.#full = [];
    this.#fullBytes = 0;
    this.buf = new Uint8Array(Math.max(CHUNK_MIN, tail.length));
    this.buf.set(tail);
    this.pos = tail.length;
    return out;
  }

  /** A copy of the bytes from offset `from` to the end. */
  #tail(from: number): Uint8Array {
    const out = new Uint8Array(this.end - from);
    let at = 0;
    let offset = 0;
    for (const c of [...this.#full, this.buf.subarray(0, this.pos)]) {
      const start = Math.max(0, from - offset);
      if (start < c.length) {
        out.set(c.subarray(start), at);
        at += c.length - start;
      }
      offset += c.length;
    }
    return out;
  }
}

/** Write `v` as a big-endian u32 at `p` (room for it is made); returns `p + 4`. */
export function writeU32(buf: Uint8Array, p: number, v: number): number {
  buf[p] = v >>> 24;
  buf[p + 1] = (v >>> 16) & 0xff;
  buf[p + 2] = (v >>> 8) & 0xff;
  buf[p + 3] = v & 0xff;
  return p + 4;
}
