/*
 * The order-preserving key codec. Byte-compatible with the Nim reference
 * (waku/persistency/keys.nim): the same values give the same bytes.
 *
 * | part (TypeScript)                                    | bytes                                                     |
 * |------------------------------------------------------|-----------------------------------------------------------|
 * | string                                               | u16 BE length of its UTF-8 bytes, then the bytes (≤ 65,535) |
 * | Uint8Array (not a Key)                               | u16 BE length, then the bytes (≤ 65,535)                   |
 * | Key                                                  | its bytes verbatim                                         |
 * | number (safe integer), bigint in int64 range,        | (x XOR 0x8000_0000_0000_0000) as 8 bytes BE (sign flip)    |
 * |   i64(x), i32(x), i16(x), i8(x)                      |                                                           |
 * | u64(x), u32(x), u16(x)                               | x as 8 bytes BE (unsigned)                                 |
 * | u8(x)                                                | 1 byte                                                     |
 * | boolean                                              | 1 byte: 0x00 or 0x01                                       |
 * | array / tuple                                        | each element in order, flattened                           |
 * | plain object                                         | each own enumerable property value, in Object.keys order   |
 *
 * Worked examples (hex):
 *   key('')          = 00 00
 *   key('ab')        = 00 02 61 62
 *   key(0)           = 80 00 00 00 00 00 00 00
 *   key(-1)          = 7f ff ff ff ff ff ff ff
 *   key(-(2n**63n))  = 00 00 00 00 00 00 00 00
 *   key(2n**63n-1n)  = ff ff ff ff ff ff ff ff
 *   key(u64(1))      = 00 00 00 00 00 00 00 01
 *   key(u8(7), true) = 07 01
 *
 * Consequences: strings sort by UTF-8 length first, then bytes ('b' < 'aa'); integers
 * sort numerically across the sign; a key sorts before every key that extends it.
 */

import { realBytes } from './bytes.js';
import { invalidArgument, PersistencyError } from './errors.js';
import { ByteWriter } from './protocol/bytes.js';

const MAX_LENGTH_PREFIXED = 0xffff;
const MAX_NESTING = 64;
const TWO_32 = 4294967296;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const SIGN_FLIP = 2n ** 63n;

// ---------------------------------------------------------------------------------------
// Key

let wrapKey: (bytes: Uint8Array) => Key;
let unwrapKey: (k: Key) => Uint8Array;
let isKey: (v: unknown) => v is Key;

/** Only this module can mint a Key: `private` binds TypeScript callers, not JavaScript. */
const MINT: unique symbol = Symbol('Key.mint');

/** Node's `util.inspect.custom`, without importing `node:util` into the public types. */
const inspectCustom: unique symbol = Symbol.for('nodejs.util.inspect.custom');

/**
 * An encoded key: immutable bytes whose byte order is the tuple order of the parts that
 * built it. Make one with {@link key}, {@link toKey} or {@link rawKey}.
 *
 * @example
 * ```ts
 * const k = key('channel-42', 7);
 * k.bytes;                       // Uint8Array(20) [0, 10, 99, …, 128, 0, 0, 0, 0, 0, 0, 7]
 * k.equals(key('channel-42', 7)); // true
 * ```
 */
export class Key {
  readonly #bytes: Uint8Array;

  private constructor(mint: typeof MINT, bytes: Uint8Array) {
    if (mint !== MINT) {
      throw invalidArgument('Key has no public constructor; use key(), toKey() or rawKey()');
    }
    this.#bytes = bytes;
    Object.freeze(this);
  }

  static {
    wrapKey = (bytes) => new Key(MINT, bytes);
    unwrapKey = (k) => k.#bytes;
    isKey = (v): v is Key => typeof v === 'object' && v !== null && #bytes in v;
  }

  /**
   * A copy of the encoded bytes (the key itself never changes).
   * @example key('ab').bytes // Uint8Array(4) [0, 2, 97, 98]
   */
  get bytes(): Uint8Array {
    return this.#bytes.slice();
  }

  /**
   * Number of encoded bytes, without copying them.
   * @example key('ab', 1).byteLength // 12: 2 + 2 for the string, 8 for the integer
   */
  get byteLength(): number {
    return this.#bytes.length;
  }

  /**
   * True when `other` (a Key or plain bytes) holds exactly the same bytes.
   * @example key('c1', 3).equals(toKey(['c1', 3])) // true
   */
  equals(other: Key | Uint8Array): boolean {
    const b = isKey(other) ? other.#bytes : realBytes(other);
    return b !== undefined && compareBytes(this.#bytes, b) === 0;
  }

  /**
   * Lower-case hex of the bytes.
   * @example String(key('ab', 0)) // '000261628000000000000000'
   */
  toString(): string {
    return Buffer.from(this.#bytes.buffer, this.#bytes.byteOffset, this.#bytes.length).toString(
      'hex',
    );
  }

  /**
   * How `console.log` and `util.inspect` show a key: its hex in `Key<…>`.
   * @example console.log(key('ab')) // Key<00026162>
   */
  [inspectCustom](): string {
    return `Key<${this.toString()}>`;
  }
}

/** Internal: the key's own bytes, without the defensive copy of `Key#bytes`. */
export function keyBytes(k: Key): Uint8Array {
  return unwrapKey(k);
}

/** Internal: whether `v` is a genuine Key (a brand check, unlike `instanceof`). */
export function isKeyValue(v: unknown): v is Key {
  return isKey(v);
}

/** Internal: wrap bytes the caller promises never to mutate again. */
export function adoptKey(bytes: Uint8Array): Key {
  return wrapKey(bytes);
}

// ---------------------------------------------------------------------------------------
// Fixed-width integer wrappers

/**
 * The integer widths of the wrappers `i64 … u8`: a {@link SizedInt}'s `width`.
 * @example const w: IntWidth = u16(7).width; // 'u16'
 */
export type IntWidth = 'i64' | 'i32' | 'i16' | 'i8' | 'u64' | 'u32' | 'u16' | 'u8';

interface WidthSpec {
  readonly min: bigint;
  readonly max: bigint;
  readonly signed: boolean;
}

const WIDTHS: Record<IntWidth, WidthSpec> = {
  i64: { min: INT64_MIN, max: INT64_MAX, signed: true },
  i32: { min: -(2n ** 31n), max: 2n ** 31n - 1n, signed: true },
  i16: { min: -(2n ** 15n), max: 2n ** 15n - 1n, signed: true },
  i8: { min: -128n, max: 127n, signed: true },
  u64: { min: 0n, max: UINT64_MAX, signed: false },
  u32: { min: 0n, max: 2n ** 32n - 1n, signed: false },
  u16: { min: 0n, max: 2n ** 16n - 1n, signed: false },
  u8: { min: 0n, max: 255n, signed: false },
};

let makeSized: (width: IntWidth, x: unknown) => SizedInt;

/**
 * An integer tagged with the width it is encoded at. Made by {@link i64}, {@link u64}
 * and their siblings (it has no public constructor); the value is range-checked when the
 * wrapper is made. Immutable.
 * @example
 * ```ts
 * const n = u64(2n ** 64n - 1n);
 * key('counter', n);  // encodes 8 bytes, all 0xFF
 * ```
 */
export class SizedInt {
  /**
   * The declared width.
   * @example i32(-5).width // 'i32'
   */
  readonly width: IntWidth;
  /**
   * The value: a `number` when it is a safe integer, otherwise a `bigint`.
   * @example [u64(7).value, u64(2n ** 63n).value] // [7, 9223372036854775808n]
   */
  readonly value: number | bigint;

  private constructor(width: IntWidth, value: number | bigint) {
    this.width = width;
    this.value = value;
    Object.freeze(this);
  }

  static {
    makeSized = (width, x) => {
      const spec = WIDTHS[width];
      let big: bigint;
      if (typeof x === 'number') {
        if (!Number.isSafeInteger(x)) {
          throw invalidArgument(`${width}(${describe(x)}): not a safe integer; pass a bigint`);
        }
        big = BigInt(x);
      } else if (typeof x === 'bigint') {
        big = x;
      } else {
        throw invalidArgument(`${width}(${describe(x)}): expected a number or bigint`);
      }
      if (big < spec.min || big > spec.max) {
        throw invalidArgument(`${width}(${describe(x)}): out of range [${spec.min}, ${spec.max}]`);
      }
      const value =
        big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER)
          ? Number(big)
          : big;
      return new SizedInt(width, value);
    };
  }
}

/**
 * Signed 64-bit integer part (sign-flipped, 8 bytes). Throws `InvalidArgument` outside
 * int64 or for a non-integer.
 * @example key('t', i64(-(2n ** 63n)))
 */
export const i64 = (x: number | bigint): SizedInt => makeSized('i64', x);
/** Signed 32-bit integer part; encoded like every signed integer (8 bytes). @example key(i32(-5)) */
export const i32 = (x: number | bigint): SizedInt => makeSized('i32', x);
/** Signed 16-bit integer part; encoded in 8 bytes. @example key(i16(300)) */
export const i16 = (x: number | bigint): SizedInt => makeSized('i16', x);
/** Signed 8-bit integer part; encoded in 8 bytes. @example key(i8(-1)) */
export const i8 = (x: number | bigint): SizedInt => makeSized('i8', x);
/** Unsigned 64-bit integer part (8 bytes BE). @example key(u64(2n ** 64n - 1n)) */
export const u64 = (x: number | bigint): SizedInt => makeSized('u64', x);
/** Unsigned 32-bit integer part; encoded in 8 bytes. @example key(u32(4_000_000_000)) */
export const u32 = (x: number | bigint): SizedInt => makeSized('u32', x);
/** Unsigned 16-bit integer part; encoded in 8 bytes. @example key(u16(65535)) */
export const u16 = (x: number | bigint): SizedInt => makeSized('u16', x);
/** Unsigned 8-bit integer part; encoded in 1 byte. @example key(u8(7)) */
export const u8 = (x: number | bigint): SizedInt => makeSized('u8', x);

// ---------------------------------------------------------------------------------------
// Encoder

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
class PartError extends Error {
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
    if (isKey(v)) {
      const b = unwrapKey(v);
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

function writeInt64Number(buf: Uint8Array, p: number, x: number): void {
  const hi = Math.floor(x / TWO_32);
  const lo = x - hi * TWO_32;
  // |hi| < 2^21 for a safe integer, so ToInt32(hi) is its two's complement high word.
  const h = (hi ^ 0x80000000) >>> 0;
  buf[p] = h >>> 24;
  buf[p + 1] = (h >>> 16) & 0xff;
  buf[p + 2] = (h >>> 8) & 0xff;
  buf[p + 3] = h & 0xff;
  buf[p + 4] = lo >>> 24;
  buf[p + 5] = (lo >>> 16) & 0xff;
  buf[p + 6] = (lo >>> 8) & 0xff;
  buf[p + 7] = lo & 0xff;
}

function writeUint64Number(buf: Uint8Array, p: number, x: number): void {
  const hi = Math.floor(x / TWO_32);
  const lo = x - hi * TWO_32;
  buf[p] = hi >>> 24;
  buf[p + 1] = (hi >>> 16) & 0xff;
  buf[p + 2] = (hi >>> 8) & 0xff;
  buf[p + 3] = hi & 0xff;
  buf[p + 4] = lo >>> 24;
  buf[p + 5] = (lo >>> 16) & 0xff;
  buf[p + 6] = (lo >>> 8) & 0xff;
  buf[p + 7] = lo & 0xff;
}

function writeUint64Big(buf: Uint8Array, p: number, u: bigint): void {
  const hi = Number(u >> 32n);
  const lo = Number(u & 0xffffffffn);
  buf[p] = hi >>> 24;
  buf[p + 1] = (hi >>> 16) & 0xff;
  buf[p + 2] = (hi >>> 8) & 0xff;
  buf[p + 3] = hi & 0xff;
  buf[p + 4] = lo >>> 24;
  buf[p + 5] = (lo >>> 16) & 0xff;
  buf[p + 6] = (lo >>> 8) & 0xff;
  buf[p + 7] = lo & 0xff;
}

const shared = new Writer(256);

/** Encode `parts` into a fresh exact-size array; `what` names the caller in errors. */
export function encodeParts(parts: readonly unknown[], what: 'key' | 'payload'): Uint8Array {
  // A getter on a plain object may call key() again; give the nested call its own writer.
  const w = shared.busy ? new Writer(64) : shared;
  w.busy = true;
  w.pos = 0;
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

/**
 * Encode parts into a {@link Key} whose byte order is their tuple order.
 *
 * @throws PersistencyError `InvalidArgument`, naming the part, for anything unencodable.
 * @example
 * ```ts
 * key('channel-42', 7);              // (string, int64)
 * key('log', u64(2n ** 64n - 1n));   // unsigned 64-bit
 * key(prefix, 'suffix');             // embed a pre-built Key verbatim
 * ```
 */
export function key(...parts: KeyPart[]): Key {
  return wrapKey(encodeParts(parts, 'key'));
}

/**
 * Encode one value (a tuple, a plain object, or a single part) into a {@link Key}.
 * Same as `key(value)`.
 * @example toKey({ channel: 'c1', seq: 3 }).equals(key('c1', 3)); // true
 */
export function toKey(value: KeyPart): Key {
  return wrapKey(encodeParts([value], 'key'));
}

/**
 * Wrap bytes of your own encoding (CBOR, protobuf, …) as a {@link Key}, copied so later
 * changes to `bytes` do not affect it. Ordering is then plain byte order.
 * @example rawKey(new Uint8Array([0xa1, 0x61, 0x61, 0x01]))
 */
export function rawKey(bytes: Uint8Array): Key {
  const real = realBytes(bytes);
  if (real === undefined) {
    throw invalidArgument(`rawKey: expected a Uint8Array, got ${describe(bytes)}`);
  }
  // The Uint8Array constructor copies; `slice()` would follow a subclass's Symbol.species.
  return wrapKey(new Uint8Array(real));
}

// ---------------------------------------------------------------------------------------
// Ordering and ranges

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

function bytesOf(k: Key | Uint8Array, what: string): Uint8Array {
  if (isKey(k)) return unwrapKey(k);
  const bytes = realBytes(k);
  if (bytes !== undefined) return bytes;
  throw invalidArgument(`${what}: expected a Key or Uint8Array, got ${describe(k)}`);
}

/**
 * Byte-wise comparison (-1, 0 or 1); a key sorts before every longer key that extends it.
 * This is the order SQLite stores and scans keys in.
 * @example [key(2), key(-1), key(0)].sort(compareKeys) // -1, 0, 2
 */
export function compareKeys(a: Key | Uint8Array, b: Key | Uint8Array): number {
  return compareBytes(bytesOf(a, 'compareKeys'), bytesOf(b, 'compareKeys'));
}

/**
 * A half-open key range `[start, stop)`. `stop` absent (or empty) means no upper bound.
 * @example const r: KeyRange = { start: key('a'), stop: key('b') };
 */
export interface KeyRange {
  readonly start: Key;
  readonly stop?: Key;
}

/**
 * The range of every key that starts with `prefix`: `[prefix, successor(prefix))`, where
 * the successor drops trailing 0xFF bytes and increments the last byte. An empty or
 * all-0xFF prefix gives an open-ended range.
 * @example job.scan('log', prefixRange(key('channel-42')))
 */
export function prefixRange(prefix: Key): KeyRange {
  if (!isKey(prefix)) {
    throw invalidArgument(`prefixRange: expected a Key, got ${describe(prefix)}`);
  }
  const b = unwrapKey(prefix);
  let end = b.length;
  while (end > 0 && b[end - 1] === 0xff) end--;
  if (end === 0) return { start: prefix };
  const stop = b.slice(0, end);
  stop[end - 1] = (stop[end - 1] as number) + 1;
  return { start: prefix, stop: wrapKey(stop) };
}

// ---------------------------------------------------------------------------------------
// Decoder

/**
 * Part types `decodeKey`/`decodePayload` read back, each mapped to the value it gives.
 * `i64`/`u64` give `bigint`; `number` reads a signed 8-byte integer into a `number`
 * (refusing unsafe values); the narrower integer names read the same 8 bytes and check the
 * range (`u8` reads one byte).
 * @example const seq: PartTypeMap['i64'] = decodeKey(key(5), 'i64'); // 5n
 */
export interface PartTypeMap {
  string: string;
  bytes: Uint8Array;
  bool: boolean;
  u8: number;
  i64: bigint;
  u64: bigint;
  number: number;
  i32: number;
  i16: number;
  i8: number;
  u32: number;
  u16: number;
}

/**
 * A part type name for {@link decodeKey} and {@link decodePayload}: `'string' 'bytes'
 * 'bool' 'u8' 'i64' 'u64' 'number' 'i32' 'i16' 'i8' 'u32' 'u16'`.
 * @example const spec = ['string', 'i64'] as const satisfies readonly PartType[];
 */
export type PartType = keyof PartTypeMap;

/**
 * The tuple a spec decodes to, e.g. `['string', 'i64']` → `[string, bigint]`.
 * @example const [channel, seq]: DecodedParts<['string', 'i64']> = decodeKey(k, ['string', 'i64']);
 */
export type DecodedParts<S extends readonly PartType[]> = {
  -readonly [I in keyof S]: S[I] extends PartType ? PartTypeMap[S[I]] : never;
};

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  need(n: number, type: PartType): void {
    if (this.pos + n > this.buf.length) {
      throw new PartError(
        '',
        `${type} needs ${n} bytes at offset ${this.pos}, ${this.buf.length - this.pos} left`,
      );
    }
  }

  read(type: PartType): PartTypeMap[PartType] {
    const buf = this.buf;
    switch (type) {
      case 'string':
      case 'bytes': {
        this.need(2, type);
        const len = ((buf[this.pos] as number) << 8) | (buf[this.pos + 1] as number);
        this.pos += 2;
        this.need(len, type);
        const body = buf.subarray(this.pos, this.pos + len);
        this.pos += len;
        if (type === 'bytes') return body.slice();
        try {
          return utf8.decode(body);
        } catch {
          throw new PartError('', 'string bytes are not valid UTF-8');
        }
      }
      case 'bool': {
        this.need(1, type);
        const b = buf[this.pos++];
        if (b !== 0 && b !== 1)
          throw new PartError('', `bool byte is 0x${(b as number).toString(16)}, not 0 or 1`);
        return b === 1;
      }
      case 'u8':
        this.need(1, type);
        return buf[this.pos++] as number;
      default: {
        this.need(8, type);
        const hi = readWord(buf, this.pos);
        const lo = readWord(buf, this.pos + 4);
        this.pos += 8;
        const spec = WIDTHS[type as IntWidth] ?? WIDTHS.i64;
        if (type === 'i64' || type === 'u64') {
          const u = (BigInt(hi) << 32n) | BigInt(lo);
          return type === 'i64' ? u - SIGN_FLIP : u;
        }
        const value = spec.signed ? ((hi ^ 0x80000000) | 0) * TWO_32 + lo : hi * TWO_32 + lo;
        if (!Number.isSafeInteger(value) || value < Number(spec.min) || value > Number(spec.max)) {
          throw new PartError('', `${type} value out of range`);
        }
        return value;
      }
    }
  }
}

function readWord(buf: Uint8Array, p: number): number {
  return (
    ((buf[p] as number) * 0x1000000 +
      (((buf[p + 1] as number) << 16) | ((buf[p + 2] as number) << 8) | (buf[p + 3] as number))) >>>
    0
  );
}

/**
 * Every part type of the codec, in the order help texts list them (internal: not part of
 * the public surface). `satisfies` keeps it equal to `PartType`.
 */
export const PART_TYPE_NAMES = Object.keys({
  string: true,
  bytes: true,
  bool: true,
  u8: true,
  i64: true,
  u64: true,
  number: true,
  i32: true,
  i16: true,
  i8: true,
  u32: true,
  u16: true,
} satisfies Record<PartType, true>) as readonly PartType[];

const PART_TYPES: ReadonlySet<string> = new Set<string>(PART_TYPE_NAMES);

function decodeWith(bytes: Uint8Array, spec: unknown, what: string): unknown {
  try {
    return decodeParts(bytes, spec, what);
  } catch (e) {
    if (e instanceof PersistencyError && e.kind === 'InvalidArgument') throw e;
    // A spec with throwing getters or a revoked proxy: still the caller's bad argument.
    throw invalidArgument(`${what}: reading the spec threw: ${describeThrown(e)}`, e);
  }
}

function decodeParts(bytes: Uint8Array, spec: unknown, what: string): unknown {
  const single = typeof spec === 'string';
  const types: readonly unknown[] = single ? [spec] : Array.isArray(spec) ? spec : [];
  if (!single && !Array.isArray(spec)) {
    throw invalidArgument(
      `${what}: spec must be a part type name or an array of them, got ${describe(spec)}`,
    );
  }
  const r = new Reader(bytes);
  const out: unknown[] = [];
  for (let i = 0; i < types.length; i++) {
    const t = types[i];
    if (typeof t !== 'string' || !PART_TYPES.has(t)) {
      throw invalidArgument(
        `${what}: spec[${i}] ${describe(t)} is not one of ${[...PART_TYPES].join(', ')}`,
      );
    }
    try {
      out.push(r.read(t as PartType));
    } catch (e) {
      if (e instanceof PartError) throw invalidArgument(`${what}: part ${i} (${t}): ${e.reason}`);
      throw e;
    }
  }
  if (r.pos !== bytes.length) {
    throw invalidArgument(
      `${what}: ${bytes.length - r.pos} trailing bytes after ${types.length} parts`,
    );
  }
  return single ? out[0] : out;
}

/**
 * Read a key's parts back, given their types. Missing or trailing bytes are
 * `InvalidArgument`. A single type name returns the value itself.
 * @example
 * ```ts
 * decodeKey(key('c1', 5), ['string', 'i64']); // ['c1', 5n]
 * decodeKey(key('c1'), 'string');             // 'c1'
 * ```
 */
export function decodeKey<const S extends readonly PartType[]>(
  k: Key | Uint8Array,
  spec: S,
): DecodedParts<S>;
/**
 * Read a key of a single part back: the spec is that part's type name, the result its
 * value. Missing or trailing bytes are `InvalidArgument`.
 * @example decodeKey(key(u64(9)), 'u64') // 9n
 */
export function decodeKey<T extends PartType>(k: Key | Uint8Array, spec: T): PartTypeMap[T];
export function decodeKey(k: Key | Uint8Array, spec: PartType | readonly PartType[]): unknown {
  return decodeNamed(k, spec, 'decodeKey');
}

/** Internal: decode for `decodeKey` or `decodePayload`, named so in errors. */
export function decodeNamed(input: unknown, spec: unknown, what: string): unknown {
  return decodeWith(bytesOf(input as Uint8Array, what), spec, what);
}

// ---------------------------------------------------------------------------------------
// Shared helpers

/** What user code threw, as text; never throws (`String` can, e.g. on a null-prototype object). */
export function describeThrown(e: unknown): string {
  try {
    return String(e);
  } catch {
    return describe(e);
  }
}

/** A short, safe description of any value for error messages (never throws). */
export function describe(v: unknown): string {
  try {
    switch (typeof v) {
      case 'string':
        return v.length > 40 ? `string(${v.length})` : JSON.stringify(v);
      case 'number':
      case 'boolean':
      case 'undefined':
        return String(v);
      case 'bigint':
        return `${v}n`;
      case 'symbol':
        return 'symbol';
      case 'function':
        return 'function';
      default: {
        if (v === null) return 'null';
        if (Array.isArray(v)) return `array(${v.length})`;
        const name = (v as { constructor?: { name?: unknown } }).constructor?.name;
        return typeof name === 'string' && name !== '' ? name : 'object';
      }
    }
  } catch {
    return 'value';
  }
}
