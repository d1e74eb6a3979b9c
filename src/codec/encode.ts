/*
 * Encoding key and payload parts (the byte table is at the top of src/keys.ts).
 */
import { realBytes } from '../bytes.js';
import { describe, describeThrown } from '../describe.js';
import { invalidArgument, PersistencyError } from '../errors.js';
import { ByteWriter } from '../protocol/bytes.js';
import { isKeyValue, type Key, keyBytes } from './key.js';
import { INT64_MAX, INT64_MIN, SIGN_FLIP, SizedInt, TWO_32, WIDTHS } from './sized-int.js';

const MAX_LENGTH_PREFIXED = 0xffff;
/**
 * Empty arrays and objects one encoding may hold. They add no bytes, so no size limit would
 * stop a list (a proxy, say) that claims billions of them: visiting 2^32 took minutes.
 */
const MAX_EMPTY_CONTAINERS = 1 << 20;
const MAX_NESTING = 64;

/**
 * A value `key()` and `payload()` accept. Anything else (a non-integer or unsafe number,
 * NaN, an out-of-range bigint, `null`, `undefined`, a function, a symbol, a class
 * instance, a cyclic object) throws `InvalidArgument`.
 * @example
 * ```ts
 * const parts: KeyPart[] = ['c1', 42, 7n, true, u8(3), new Uint8Array([1]), ['c', 1], { a: 'b' }];
 * key(...parts);
 * ```
 */
export type KeyPart =
  | string
  | number
  | bigint
  | boolean
  | Uint8Array
  | Key
  | SizedInt
  | readonly KeyPart[]
  | { readonly [field: string]: KeyPart };

/** Raised inside the encoder; the top level prefixes where in the input it happened. */
/** A part the codec refuses: where it is (`path`) and why. */
export class PartError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/** The codec's writer: the protocol's byte buffer, plus what encoding nested parts needs. */
class Writer extends ByteWriter {
  busy = false;
  /** Arrays and objects in this encoding that added no bytes (see MAX_EMPTY_CONTAINERS). */
  empties = 0;
  readonly #ancestors: object[] = [];

  take(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }

  part(v: unknown, depth: number): void {
    switch (typeof v) {
      case 'string':
        this.string(v);
        return;
      case 'number':
        if (!Number.isSafeInteger(v)) {
          throw new PartError(
            '',
            `number ${describe(v)} is not a safe integer (use a bigint or i64() for 64-bit values)`,
          );
        }
        this.reserve(8);
        writeInt64Number(this.buf, this.pos, v);
        this.pos += 8;
        return;
      case 'bigint':
        if (v < INT64_MIN || v > INT64_MAX) {
          throw new PartError('', `bigint ${v} is outside int64 (use u64() for unsigned values)`);
        }
        this.reserve(8);
        writeUint64Big(this.buf, this.pos, v + SIGN_FLIP);
        this.pos += 8;
        return;
      case 'boolean':
        this.reserve(1);
        this.buf[this.pos++] = v ? 1 : 0;
        return;
      case 'object':
        this.object(v, depth);
        return;
      default:
        throw new PartError('', `${typeof v} is not encodable`);
    }
  }

  object(v: object | null, depth: number): void {
    if (v === null) throw new PartError('', 'null is not encodable');
    if (isKeyValue(v)) {
      const b = keyBytes(v);
      this.reserve(b.length);
      this.buf.set(b, this.pos);
      this.pos += b.length;
      return;
    }
    const bytes = realBytes(v);
    if (bytes !== undefined) {
      const n = bytes.length;
      if (n > MAX_LENGTH_PREFIXED) {
        throw new PartError('', `Uint8Array of ${n} bytes exceeds ${MAX_LENGTH_PREFIXED}`);
      }
      this.reserve(2 + n);
      this.buf[this.pos] = n >>> 8;
      this.buf[this.pos + 1] = n & 0xff;
      this.buf.set(bytes, this.pos + 2);
      this.pos += 2 + n;
      return;
    }
    if (v instanceof SizedInt) {
      this.sized(v);
      return;
    }
    const isArray = Array.isArray(v);
    if (!isArray) {
      const proto: unknown = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) {
        const name = (v as { constructor?: { name?: unknown } }).constructor?.name;
        throw new PartError(
          '',
          `${typeof name === 'string' && name !== '' ? name : 'class'} instance is not encodable (only plain objects, arrays and the documented part types are)`,
        );
      }
    }
    if (this.#ancestors.includes(v)) throw new PartError('', 'cyclic reference');
    if (depth >= MAX_NESTING) {
      throw new PartError('', `nesting deeper than ${MAX_NESTING} levels`);
    }
    this.#ancestors.push(v);
    const start = this.pos;
    try {
      if (isArray) {
        const arr = v as readonly unknown[];
        for (let i = 0; i < arr.length; i++) this.nested(arr[i], depth, i);
      } else {
        const rec = v as Record<string, unknown>;
        if (Object.getOwnPropertySymbols(rec).length > 0) {
          // Silently skipping them would make different objects the same key.
          throw new PartError(
            '',
            'plain object has symbol-keyed properties, which are not encodable',
          );
        }
        for (const field of Object.keys(rec)) this.nested(rec[field], depth, field);
      }
    } finally {
      this.#ancestors.pop();
    }
    if (this.pos === start && ++this.empties > MAX_EMPTY_CONTAINERS) {
      throw new PartError('', `more than ${MAX_EMPTY_CONTAINERS} empty arrays and objects`);
    }
  }

  nested(v: unknown, depth: number, at: number | string): void {
    try {
      this.part(v, depth + 1);
    } catch (e) {
      if (e instanceof PartError) {
        throw new PartError((typeof at === 'number' ? `[${at}]` : `.${at}`) + e.path, e.reason);
      }
      throw e;
    }
  }

  sized(v: SizedInt): void {
    const { width, value } = v;
    // SizedInt's constructor is private to TypeScript only: JavaScript can call it, or
    // forge one with Object.create, so check again what the wrappers promise.
    const spec = Object.hasOwn(WIDTHS, width) ? WIDTHS[width] : undefined;
    const valid =
      spec !== undefined &&
      (typeof value === 'number'
        ? Number.isSafeInteger(value) && value >= Number(spec.min) && value <= Number(spec.max)
        : typeof value === 'bigint' && value >= spec.min && value <= spec.max);
    if (!valid) {
      throw new PartError(
        '',
        `forged SizedInt (${describe(width)}, ${describe(value)}); use i64() … u8()`,
      );
    }
    if (width === 'u8') {
      this.reserve(1);
      this.buf[this.pos++] = Number(value);
      return;
    }
    this.reserve(8);
    if (WIDTHS[width].signed) {
      if (typeof value === 'number') writeInt64Number(this.buf, this.pos, value);
      else writeUint64Big(this.buf, this.pos, value + SIGN_FLIP);
    } else if (typeof value === 'number') {
      writeUint64Number(this.buf, this.pos, value);
    } else {
      writeUint64Big(this.buf, this.pos, value);
    }
    this.pos += 8;
  }

  string(s: string): void {
    const n = s.length;
    // Every UTF-16 unit yields at least one UTF-8 byte, so this bound is exact enough.
    if (n > MAX_LENGTH_PREFIXED) {
      throw new PartError(
        '',
        `string of ${n} UTF-16 units exceeds ${MAX_LENGTH_PREFIXED} UTF-8 bytes`,
      );
    }
    this.reserve(2 + n * 3);
    const buf = this.buf;
    const start = this.pos;
    let p = start + 2;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x80) {
        buf[p++] = c;
      } else if (c < 0x800) {
        buf[p++] = 0xc0 | (c >>> 6);
        buf[p++] = 0x80 | (c & 0x3f);
      } else if (c < 0xd800 || c > 0xdfff) {
        buf[p++] = 0xe0 | (c >>> 12);
        buf[p++] = 0x80 | ((c >>> 6) & 0x3f);
        buf[p++] = 0x80 | (c & 0x3f);
      } else {
        const d = i + 1 < n ? s.charCodeAt(i + 1) : 0;
        if (c > 0xdbff || d < 0xdc00 || d > 0xdfff) {
          // A lone surrogate has no UTF-8 form; TextEncoder would turn it into U+FFFD
          // and so map different strings to the same key.
          throw new PartError('', `string has a lone surrogate 0x${c.toString(16)} at index ${i}`);
        }
        const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        buf[p++] = 0xf0 | (cp >>> 18);
        buf[p++] = 0x80 | ((cp >>> 12) & 0x3f);
        buf[p++] = 0x80 | ((cp >>> 6) & 0x3f);
        buf[p++] = 0x80 | (cp & 0x3f);
        i++;
      }
    }
    const len = p - start - 2;
    if (len > MAX_LENGTH_PREFIXED) {
      throw new PartError('', `string of ${len} UTF-8 bytes exceeds ${MAX_LENGTH_PREFIXED}`);
    }
    buf[start] = len >>> 8;
    buf[start + 1] = len & 0xff;
    this.pos = p;
  }
}

/** Two 32-bit words, big-endian: the 8 bytes of every 64-bit part. */
function writeWords(buf: Uint8Array, p: number, hi: number, lo: number): void {
  buf[p] = hi >>> 24;
  buf[p + 1] = (hi >>> 16) & 0xff;
  buf[p + 2] = (hi >>> 8) & 0xff;
  buf[p + 3] = hi & 0xff;
  buf[p + 4] = lo >>> 24;
  buf[p + 5] = (lo >>> 16) & 0xff;
  buf[p + 6] = (lo >>> 8) & 0xff;
  buf[p + 7] = lo & 0xff;
}

function writeInt64Number(buf: Uint8Array, p: number, x: number): void {
  const hi = Math.floor(x / TWO_32);
  // |hi| < 2^21 for a safe integer, so ToInt32(hi) is its two's complement high word.
  writeWords(buf, p, (hi ^ 0x80000000) >>> 0, x - hi * TWO_32);
}

function writeUint64Number(buf: Uint8Array, p: number, x: number): void {
  const hi = Math.floor(x / TWO_32);
  writeWords(buf, p, hi, x - hi * TWO_32);
}

function writeUint64Big(buf: Uint8Array, p: number, u: bigint): void {
  writeWords(buf, p, Number(u >> 32n), Number(u & 0xffffffffn));
}

const shared = new Writer(256);

/** Encode `parts` into a fresh exact-size array; `what` names the caller in errors. */
export function encodeParts(parts: readonly unknown[], what: 'key' | 'payload'): Uint8Array {
  // A getter on a plain object may call key() again; give the nested call its own writer.
  const w = shared.busy ? new Writer(64) : shared;
  w.busy = true;
  w.pos = 0;
  w.empties = 0;
  let i = 0;
  try {
    for (; i < parts.length; i++) w.part(parts[i], 0);
    return w.take();
  } catch (e) {
    if (e instanceof PartError) {
      throw invalidArgument(`${what} part ${i}${e.path}: ${e.reason}`);
    }
    if (e instanceof PersistencyError) throw e;
    // User code (a getter, a proxy trap) threw while we read the value.
    throw invalidArgument(`${what} part ${i}: reading the value threw: ${describeThrown(e)}`, e);
  } finally {
    w.busy = false;
  }
}
