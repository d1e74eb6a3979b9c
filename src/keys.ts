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
import { encodeParts, type KeyPart } from './codec/encode.js';
import { adoptKey, bytesOf, compareBytes, isKeyValue, type Key, keyBytes } from './codec/key.js';
import { describe } from './describe.js';
import { invalidArgument } from './errors.js';
import { MAX_KEY_BYTES } from './limits.js';

export {
  type DecodedParts,
  decodeKey,
  decodeNamed,
  PART_TYPE_NAMES,
  type PartType,
  type PartTypeMap,
} from './codec/decode.js';
export { encodeParts, type KeyPart } from './codec/encode.js';
export { adoptKey, adoptKeyAt, isKeyValue, Key, keyBytes, liveKeyBytes } from './codec/key.js';
export { f64, text } from './codec/ordered.js';
export {
  type IntWidth,
  i8,
  i16,
  i32,
  i64,
  SizedInt,
  u8,
  u16,
  u32,
  u64,
} from './codec/sized-int.js';
export { describe, describeThrown } from './describe.js';

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
  return adoptKey(encodeParts(parts, 'key'));
}

/**
 * Encode one value (a tuple, a plain object, or a single part) into a {@link Key}.
 * Same as `key(value)`.
 * @example toKey({ channel: 'c1', seq: 3 }).equals(key('c1', 3)); // true
 */
export function toKey(value: KeyPart): Key {
  return adoptKey(encodeParts([value], 'key'));
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
  if (real.length > MAX_KEY_BYTES) {
    throw invalidArgument(`rawKey: ${real.length} bytes exceed the limit of ${MAX_KEY_BYTES}`);
  }
  // The Uint8Array constructor copies; `slice()` would follow a subclass's Symbol.species.
  return adoptKey(new Uint8Array(real));
}

// ---------------------------------------------------------------------------------------
// Ordering and ranges

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
  if (!isKeyValue(prefix)) {
    throw invalidArgument(`prefixRange: expected a Key, got ${describe(prefix)}`);
  }
  const b = keyBytes(prefix);
  let end = b.length;
  while (end > 0 && b[end - 1] === 0xff) end--;
  if (end === 0) return { start: prefix };
  const stop = b.slice(0, end);
  stop[end - 1] = (stop[end - 1] as number) + 1;
  return { start: prefix, stop: adoptKey(stop) };
}
