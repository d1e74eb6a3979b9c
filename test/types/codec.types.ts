/*
 * Compile-only type tests for the key codec, checked by `tsc --noEmit` (npm run typecheck).
 * Vitest does not run this file (it is not *.test.ts); every line here is a type assertion.
 */
import { expectTypeOf } from 'vitest';
import {
  type DecodedParts,
  decodeKey,
  decodePayload,
  i64,
  Key,
  type KeyPart,
  type KeyRange,
  key,
  type PartType,
  payload,
  prefixRange,
  rawKey,
  type SizedInt,
  toKey,
  toPayload,
  u8,
} from '../../src/index.js';

/** Exact type equality, independent of vitest's matcher. */
type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(_proof?: T): void {}

declare const k: Key;
declare const bytes: Uint8Array;

// ---------------------------------------------------------------------------------------
// Encoders

expectTypeOf(key('a', 1, 2n, true, u8(1), i64(-1), new Uint8Array(), k)).toEqualTypeOf<Key>();
expectTypeOf(key()).toEqualTypeOf<Key>();
expectTypeOf(key(['a', [1, { n: 2 }]])).toEqualTypeOf<Key>();
expectTypeOf(toKey({ channel: 'c1', seq: 3 })).toEqualTypeOf<Key>();
expectTypeOf(rawKey(bytes)).toEqualTypeOf<Key>();
expectTypeOf(payload('a', 1)).toEqualTypeOf<Uint8Array>();
expectTypeOf(toPayload(['a', 1])).toEqualTypeOf<Uint8Array>();
expectTypeOf(u8(1)).toEqualTypeOf<SizedInt>();
expectTypeOf(prefixRange(k)).toEqualTypeOf<KeyRange>();
expectTypeOf<KeyRange['stop']>().toEqualTypeOf<Key | undefined>();
expectTypeOf(k.bytes).toEqualTypeOf<Uint8Array>();
expectTypeOf(k.equals(bytes)).toEqualTypeOf<boolean>();
assertType<Equal<ReturnType<typeof key>, Key>>();
assertType<Equal<ReturnType<typeof payload>, Uint8Array>>();

// @ts-expect-error null is not a key part
key(null);
// @ts-expect-error undefined is not a key part
key(undefined);
// @ts-expect-error nor inside a tuple
key(['a', null]);
// @ts-expect-error a symbol is not a key part
key(Symbol('s'));
// @ts-expect-error a function is not a key part
key(() => 1);
// @ts-expect-error payload shares the same part type
payload(undefined);
// @ts-expect-error toKey takes exactly one value
toKey();
// @ts-expect-error rawKey wants bytes
rawKey('ab');
// @ts-expect-error prefixRange wants a Key, not bytes
prefixRange(bytes);
// @ts-expect-error the wrappers take numbers or bigints
u8('7');
// @ts-expect-error Key has no public constructor
new Key(bytes);

// ---------------------------------------------------------------------------------------
// Decoders

expectTypeOf(decodeKey(k, ['string', 'i64'])).toEqualTypeOf<[string, bigint]>();
expectTypeOf(decodeKey(bytes, ['string', 'i64'])).toEqualTypeOf<[string, bigint]>();
expectTypeOf(decodeKey(k, 'string')).toEqualTypeOf<string>();
expectTypeOf(decodeKey(k, 'u64')).toEqualTypeOf<bigint>();
expectTypeOf(decodeKey(k, 'bytes')).toEqualTypeOf<Uint8Array>();
expectTypeOf(decodeKey(k, [])).toEqualTypeOf<[]>();
expectTypeOf(
  decodeKey(k, [
    'string',
    'bytes',
    'bool',
    'u8',
    'i64',
    'u64',
    'number',
    'i32',
    'i16',
    'i8',
    'u32',
    'u16',
  ]),
).toEqualTypeOf<
  [
    string,
    Uint8Array,
    boolean,
    number,
    bigint,
    bigint,
    number,
    number,
    number,
    number,
    number,
    number,
  ]
>();
const decoded = decodeKey(k, ['bool', 'u8']);
assertType<Equal<typeof decoded, [boolean, number]>>();

expectTypeOf(decodePayload(bytes, ['string', 'number', 'bool'])).toEqualTypeOf<
  [string, number, boolean]
>();
expectTypeOf(decodePayload(bytes, 'string')).toEqualTypeOf<string>();
expectTypeOf(decodePayload(bytes, 'i64')).toEqualTypeOf<bigint>();

// A spec only known as an array of names decodes to an array of the union.
declare const loose: PartType[];
expectTypeOf(decodeKey(k, loose)).toEqualTypeOf<
  (string | Uint8Array | boolean | number | bigint)[]
>();
assertType<Equal<DecodedParts<readonly ['string']>, [string]>>();

// @ts-expect-error an unknown type name in a spec
decodeKey(k, ['nope']);
// @ts-expect-error an unknown single type name
decodeKey(k, 'nope');
// @ts-expect-error decodePayload wants bytes, not a Key
decodePayload(k, 'string');
// @ts-expect-error decoded tuples are typed: a string is not a bigint
const wrong: [string, string] = decodeKey(k, ['string', 'i64']);
void wrong;

// KeyPart admits the documented shapes.
const parts: KeyPart[] = ['s', 1, 2n, true, bytes, k, u8(1), ['t', [1]], { a: 'x', b: [1] }];
void parts;
