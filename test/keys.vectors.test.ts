/*
 * Fixed byte vectors for every row of the key codec's byte table (CONTRACT.md §2), and the
 * decoder's round trips and refusals. Bytes are the contract here: every case asserts hex.
 */
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  decodeKey,
  decodePayload,
  i8,
  i16,
  i32,
  i64,
  Key,
  type KeyPart,
  key,
  type PartType,
  PersistencyError,
  payload,
  rawKey,
  toKey,
  toPayload,
  u8,
  u16,
  u32,
  u64,
} from '../src/index.js';

/** Lower-case hex of a key or byte array, independent of `Key#toString`. */
function hex(b: Key | Uint8Array): string {
  return Buffer.from(b instanceof Key ? b.bytes : b).toString('hex');
}

/** Hex written with spaces for readability. */
function h(spaced: string): string {
  return spaced.replace(/\s+/g, '');
}

function bytesOf(spaced: string): Uint8Array {
  return new Uint8Array(Buffer.from(h(spaced), 'hex'));
}

/** Runs `f`, requires a PersistencyError of kind InvalidArgument, and returns it. */
function invalid(f: () => unknown): PersistencyError {
  let result: unknown;
  try {
    result = f();
  } catch (e) {
    expect(e).toBeInstanceOf(PersistencyError);
    expect((e as PersistencyError).kind).toBe('InvalidArgument');
    return e as PersistencyError;
  }
  throw new Error(`expected InvalidArgument, got a result: ${inspect(result)}`);
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

type Vector = readonly [label: string, parts: readonly KeyPart[], hex: string];

function checkVectors(vectors: readonly Vector[]): void {
  it.each(vectors)('%s', (_label, parts, expected) => {
    const k = key(...parts);
    expect(hex(k)).toBe(h(expected));
    expect(k.toString()).toBe(h(expected));
    // The same encoder backs every entry point.
    expect(hex(payload(...parts))).toBe(h(expected));
    expect(hex(toKey([...parts]))).toBe(h(expected));
    expect(hex(toPayload([...parts]))).toBe(h(expected));
  });
}

describe('string: u16 BE UTF-8 length, then the UTF-8 bytes', () => {
  checkVectors([
    ["''", [''], '0000'],
    ["'a'", ['a'], '0001 61'],
    ["'ab'", ['ab'], '0002 6162'],
    ["'a\\0b' (NUL is data)", ['a\0b'], '0003 610062'],
    ["'\\x7f' (last 1-byte)", ['\x7f'], '0001 7f'],
    ["'\\x80' (first 2-byte)", ['\x80'], '0002 c280'],
    ["'\\xff' (ÿ)", ['\xff'], '0002 c3bf'],
    ["'é'", ['é'], '0002 c3a9'],
    ["'\\u07ff' (last 2-byte)", ['\u07ff'], '0002 dfbf'],
    ["'\\u0800' (first 3-byte)", ['\u0800'], '0003 e0a080'],
    ["'€'", ['€'], '0003 e282ac'],
    ["'\\ufeff' (BOM kept)", ['\ufeff'], '0003 efbbbf'],
    ["'\\uffff' (last 3-byte)", ['\uffff'], '0003 efbfbf'],
    ["'\\u{10000}' (first astral)", ['\u{10000}'], '0004 f0908080'],
    ["'😀' (astral, surrogate pair)", ['😀'], '0004 f09f9880'],
    ["'\\u{10ffff}' (last code point)", ['\u{10ffff}'], '0004 f48fbfbf'],
    ["'é€😀' (mixed widths)", ['é€😀'], '0009 c3a9 e282ac f09f9880'],
    ["'channel-42'", ['channel-42'], '000a 6368616e6e656c2d3432'],
  ]);

  it('accepts a string of exactly 65,535 UTF-8 bytes (ASCII)', () => {
    const b = key('x'.repeat(65_535)).bytes;
    expect(b.length).toBe(65_537);
    expect(hex(b.subarray(0, 4))).toBe('ffff7878');
    expect(b.subarray(2).every((x) => x === 0x78)).toBe(true);
  });

  it('accepts 21,845 three-byte chars (65,535 bytes) and 32,767 two-byte chars plus one', () => {
    const euros = key('€'.repeat(21_845)).bytes;
    expect(euros.length).toBe(65_537);
    expect(hex(euros.subarray(0, 8))).toBe('ffffe282ace282ac');
    expect(decodeKey(euros, 'string')).toBe('€'.repeat(21_845));
    const mixed = key(`${'é'.repeat(32_767)}a`).bytes;
    expect(mixed.length).toBe(65_537);
    expect(hex(mixed.subarray(-3))).toBe('c3a961');
  });

  it('refuses a string of 65,536 UTF-8 bytes', () => {
    expect(invalid(() => key('x'.repeat(65_536))).message).toContain('part 0');
    expect(invalid(() => key('ok', 'x'.repeat(65_536))).message).toContain('part 1');
  });

  it('refuses strings whose UTF-8 form exceeds 65,535 bytes though they have fewer UTF-16 units', () => {
    // 21,846 × 3 = 65,538 bytes from 21,846 UTF-16 units.
    expect(invalid(() => key('ok', '€'.repeat(21_846))).message).toContain('part 1');
    // 32,768 × 2 = 65,536 bytes.
    expect(invalid(() => key('ok', 'é'.repeat(32_768))).message).toContain('part 1');
    // 16,384 × 4 = 65,536 bytes from 32,768 UTF-16 units.
    expect(invalid(() => key('ok', '😀'.repeat(16_384))).message).toContain('part 1');
  });

  it('writes the same bytes as Node’s UTF-8 encoder for well-formed strings', () => {
    const s = 'héllo wörld € 😀 \u{10ffff} \0';
    const utf8 = Buffer.from(s, 'utf8');
    expect(hex(key(s))).toBe(utf8.length.toString(16).padStart(4, '0') + utf8.toString('hex'));
  });
});

describe('Uint8Array: u16 BE length, then the bytes', () => {
  checkVectors([
    ['empty', [new Uint8Array()], '0000'],
    ['[1, 2, 3]', [new Uint8Array([1, 2, 3])], '0003 010203'],
    ['[0x00, 0xff]', [new Uint8Array([0, 0xff])], '0002 00ff'],
    ['a Buffer is a Uint8Array', [Buffer.from('hi')], '0002 6869'],
    [
      'a subarray encodes only its view',
      [new Uint8Array([9, 1, 2, 9]).subarray(1, 3)],
      '0002 0102',
    ],
  ]);

  it('accepts 65,535 bytes and refuses 65,536', () => {
    const b = key(new Uint8Array(65_535).fill(0xab)).bytes;
    expect(b.length).toBe(65_537);
    expect(hex(b.subarray(0, 3))).toBe('ffffab');
    expect(invalid(() => key('ok', new Uint8Array(65_536))).message).toContain('part 1');
  });
});

describe('Key: its bytes verbatim', () => {
  checkVectors([
    ["key('a') then 1", [key('a'), 1], '0001 61 8000000000000001'],
    ['rawKey(de ad be ef)', [rawKey(bytesOf('deadbeef'))], 'deadbeef'],
    ['an empty key adds nothing', [rawKey(new Uint8Array()), 'a', key()], '0001 61'],
    ['nested embedding', [key(key('a'), key(u8(1))), true], '0001 61 01 01'],
  ]);

  it('embedding a prefix equals spelling out its parts', () => {
    const prefix = key('channel-42', u64(7));
    expect(key(prefix, 'x', -1).equals(key('channel-42', u64(7), 'x', -1))).toBe(true);
  });
});

describe('signed integers: x XOR 2^63 as 8 bytes BE', () => {
  checkVectors([
    ['number 0', [0], '8000000000000000'],
    ['number -0 is 0', [-0], '8000000000000000'],
    ['number 1', [1], '8000000000000001'],
    ['number -1', [-1], '7fffffffffffffff'],
    ['number 255', [255], '80000000000000ff'],
    ['number 256', [256], '8000000000000100'],
    ['number 2^31', [2 ** 31], '8000000080000000'],
    ['number -2^31', [-(2 ** 31)], '7fffffff80000000'],
    ['number 2^32', [2 ** 32], '8000000100000000'],
    ['number -2^32', [-(2 ** 32)], '7fffffff00000000'],
    ['number 2^53-1', [MAX_SAFE], '801fffffffffffff'],
    ['number -(2^53-1)', [-MAX_SAFE], '7fe0000000000001'],
    ['bigint 0n', [0n], '8000000000000000'],
    ['bigint -1n', [-1n], '7fffffffffffffff'],
    ['bigint 2^53', [2n ** 53n], '8020000000000000'],
    ['bigint -2^53', [-(2n ** 53n)], '7fe0000000000000'],
    ['bigint 0x0102030405060708', [0x0102030405060708n], '8102030405060708'],
    ['bigint -2^63 (int64 min)', [INT64_MIN], '0000000000000000'],
    ['bigint -2^63+1', [INT64_MIN + 1n], '0000000000000001'],
    ['bigint 2^63-1 (int64 max)', [INT64_MAX], 'ffffffffffffffff'],
    ['i64(-2^63)', [i64(INT64_MIN)], '0000000000000000'],
    ['i64(2^63-1)', [i64(INT64_MAX)], 'ffffffffffffffff'],
    ['i64(-1)', [i64(-1)], '7fffffffffffffff'],
    ['i64(0)', [i64(0)], '8000000000000000'],
    ['i64(2^53-1) as number', [i64(MAX_SAFE)], '801fffffffffffff'],
    ['i32(0)', [i32(0)], '8000000000000000'],
    ['i32(-1)', [i32(-1)], '7fffffffffffffff'],
    ['i32(-2^31)', [i32(-(2 ** 31))], '7fffffff80000000'],
    ['i32(2^31-1)', [i32(2 ** 31 - 1)], '800000007fffffff'],
    ['i16(-32768)', [i16(-32_768)], '7fffffffffff8000'],
    ['i16(32767)', [i16(32_767)], '8000000000007fff'],
    ['i8(-128)', [i8(-128)], '7fffffffffffff80'],
    ['i8(127)', [i8(127)], '800000000000007f'],
    ['i8(-1)', [i8(-1)], '7fffffffffffffff'],
    ['i8 as bigint', [i8(-2n)], '7ffffffffffffffe'],
  ]);

  it('number, bigint and every signed wrapper give the same bytes for the same value', () => {
    for (const v of [0, 1, -1, 127, -128]) {
      const expected = hex(key(v));
      for (const k of [key(BigInt(v)), key(i64(v)), key(i32(v)), key(i16(v)), key(i8(v))]) {
        expect(hex(k)).toBe(expected);
      }
    }
  });
});

describe('unsigned integers: 8 bytes BE (u8: 1 byte)', () => {
  checkVectors([
    ['u64(0)', [u64(0)], '0000000000000000'],
    ['u64(1)', [u64(1)], '0000000000000001'],
    ['u64(2^32)', [u64(2 ** 32)], '0000000100000000'],
    ['u64(2^53-1) as number', [u64(MAX_SAFE)], '001fffffffffffff'],
    ['u64(2^53) as bigint', [u64(2n ** 53n)], '0020000000000000'],
    ['u64(2^63)', [u64(2n ** 63n)], '8000000000000000'],
    ['u64(0x0102030405060708)', [u64(0x0102030405060708n)], '0102030405060708'],
    ['u64(2^64-1)', [u64(UINT64_MAX)], 'ffffffffffffffff'],
    ['u32(0)', [u32(0)], '0000000000000000'],
    ['u32(2^32-1)', [u32(2 ** 32 - 1)], '00000000ffffffff'],
    ['u16(0x1234)', [u16(0x1234)], '0000000000001234'],
    ['u16(65535)', [u16(65_535)], '000000000000ffff'],
    ['u8(0)', [u8(0)], '00'],
    ['u8(7)', [u8(7)], '07'],
    ['u8(255)', [u8(255)], 'ff'],
    ['u8 as bigint', [u8(200n)], 'c8'],
  ]);
});

describe('boolean: one byte', () => {
  checkVectors([
    ['false', [false], '00'],
    ['true', [true], '01'],
    ['u8(7), true', [u8(7), true], '0701'],
  ]);
});

describe('arrays and tuples: flattened in order', () => {
  checkVectors([
    ['no parts', [], ''],
    ['empty array', [[]], ''],
    ['nested empty arrays', [[[], [[]]]], ''],
    ["['a', 1]", [['a', 1]], '0001 61 8000000000000001'],
    ["['a', [1, [true]]]", [['a', [1, [true]]]], '0001 61 8000000000000001 01'],
    ["'a', ['b'], 'c'", ['a', ['b'], 'c'], '0001 61 0001 62 0001 63'],
  ]);

  it('a tuple equals the same parts spread', () => {
    const tuple: readonly KeyPart[] = ['c1', u64(3), true, new Uint8Array([7])];
    expect(toKey(tuple).equals(key(...tuple))).toBe(true);
  });
});

describe('plain objects: property values in insertion order', () => {
  checkVectors([
    ['{ b: "x", a: 1 } keeps insertion order', [{ b: 'x', a: 1 }], '0001 78 8000000000000001'],
    ['{ a: 1, b: "x" }', [{ a: 1, b: 'x' }], '8000000000000001 0001 78'],
    ['empty object', [{}], ''],
    ['nested object', [{ id: 'c', at: { seq: u8(1), ok: false } }], '0001 63 01 00'],
    ['object inside array', [['a', { n: -1 }]], '0001 61 7fffffffffffffff'],
  ]);

  it('a null-prototype object is a plain object', () => {
    const o: Record<string, KeyPart> = Object.create(null);
    o.z = 'q';
    o.y = u16(1);
    expect(hex(key(o))).toBe(h('0001 71 0000000000000001'));
  });

  it('toKey(object) equals key(values…)', () => {
    expect(toKey({ channel: 'c1', seq: 3 }).equals(key('c1', 3))).toBe(true);
  });

  it('integer-like property names come first, as Object.keys orders them', () => {
    // JavaScript itself orders integer-like names ascending before all others, so an
    // object cannot carry another order for them; callers needing one should use a tuple.
    const o = { b: 1, 2: 'x', 1: true } as unknown as KeyPart;
    expect(hex(key(o))).toBe(h('01 0001 78 8000000000000001'));
  });
});

describe('payload helpers use the same encoder', () => {
  it('payload() and toPayload() return plain Uint8Arrays equal to the key bytes', () => {
    const p = payload('general', 42, true);
    expect(p).toBeInstanceOf(Uint8Array);
    expect(p).not.toBeInstanceOf(Key);
    expect(hex(p)).toBe(hex(key('general', 42, true)));
    const q = toPayload({ name: 'general', topic: 'chat', members: 42 });
    expect(hex(q)).toBe(hex(key('general', 'chat', 42)));
  });

  it('every call returns a fresh array', () => {
    const a = payload('a');
    const b = payload('a');
    expect(a).not.toBe(b);
    a[0] = 0xff;
    expect(hex(payload('a'))).toBe('000161');
  });
});

// ---------------------------------------------------------------------------------------
// Decoding

type Decoded = string | Uint8Array | boolean | number | bigint;
type RoundTrip = readonly [type: PartType, part: KeyPart, expected: Decoded, hex: string];

const ROUND_TRIPS: readonly RoundTrip[] = [
  ['string', '', '', '0000'],
  ['string', 'héllo 😀', 'héllo 😀', '000b 68c3a96c6c6f20f09f9880'],
  ['string', '\ufeffbom', '\ufeffbom', '0006 efbbbf626f6d'],
  ['string', 'a\0b', 'a\0b', '0003 610062'],
  ['bytes', new Uint8Array(), new Uint8Array(), '0000'],
  ['bytes', new Uint8Array([0, 1, 255]), new Uint8Array([0, 1, 255]), '0003 0001ff'],
  ['bool', false, false, '00'],
  ['bool', true, true, '01'],
  ['u8', u8(0), 0, '00'],
  ['u8', u8(255), 255, 'ff'],
  ['i64', INT64_MIN, INT64_MIN, '0000000000000000'],
  ['i64', INT64_MAX, INT64_MAX, 'ffffffffffffffff'],
  ['i64', -1, -1n, '7fffffffffffffff'],
  ['i64', i32(5), 5n, '8000000000000005'],
  ['u64', u64(0), 0n, '0000000000000000'],
  ['u64', u64(UINT64_MAX), UINT64_MAX, 'ffffffffffffffff'],
  ['u64', u64(2n ** 63n), 2n ** 63n, '8000000000000000'],
  ['number', 0, 0, '8000000000000000'],
  ['number', -1, -1, '7fffffffffffffff'],
  ['number', MAX_SAFE, MAX_SAFE, '801fffffffffffff'],
  ['number', -MAX_SAFE, -MAX_SAFE, '7fe0000000000001'],
  ['number', i64(-(2 ** 40)), -(2 ** 40), '7fffff0000000000'],
  ['i32', i32(-(2 ** 31)), -(2 ** 31), '7fffffff80000000'],
  ['i32', i32(2 ** 31 - 1), 2 ** 31 - 1, '800000007fffffff'],
  ['i16', i16(-32_768), -32_768, '7fffffffffff8000'],
  ['i16', i16(32_767), 32_767, '8000000000007fff'],
  ['i8', i8(-128), -128, '7fffffffffffff80'],
  ['i8', i8(127), 127, '800000000000007f'],
  ['u32', u32(0), 0, '0000000000000000'],
  ['u32', u32(2 ** 32 - 1), 2 ** 32 - 1, '00000000ffffffff'],
  ['u16', u16(0), 0, '0000000000000000'],
  ['u16', u16(65_535), 65_535, '000000000000ffff'],
];

describe('decodeKey / decodePayload round trips, one per type name', () => {
  it.each(ROUND_TRIPS)('%s: %o', (type, part, expected, expectedHex) => {
    const k = key(part);
    expect(hex(k)).toBe(h(expectedHex));
    // A single type name returns the bare value; an array returns a tuple.
    expect(decodeKey(k, type)).toEqual(expected);
    expect(decodeKey(k, [type])).toEqual([expected]);
    expect(decodeKey(k.bytes, type)).toEqual(expected);
    expect(decodePayload(payload(part), type)).toEqual(expected);
    expect(decodePayload(payload(part), [type])).toEqual([expected]);
  });

  it('covers every type name of PartTypeMap', () => {
    const names: readonly PartType[] = [
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
    ];
    expect(new Set(ROUND_TRIPS.map(([t]) => t))).toEqual(new Set(names));
  });

  it('decodes all twelve types in one composite key', () => {
    const k = key(
      'c1',
      new Uint8Array([1, 2]),
      true,
      u8(9),
      INT64_MIN,
      u64(UINT64_MAX),
      -42,
      i32(-7),
      i16(300),
      i8(-3),
      u32(4_000_000_000),
      u16(65_535),
    );
    const spec = [
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
    ] as const;
    const expected = [
      'c1',
      new Uint8Array([1, 2]),
      true,
      9,
      INT64_MIN,
      UINT64_MAX,
      -42,
      -7,
      300,
      -3,
      4_000_000_000,
      65_535,
    ];
    expect(decodeKey(k, spec)).toEqual(expected);
    expect(decodePayload(k.bytes, spec)).toEqual(expected);
  });

  it('an empty spec decodes an empty key to an empty tuple', () => {
    expect(decodeKey(key(), [])).toEqual([]);
    expect(decodePayload(new Uint8Array(), [])).toEqual([]);
  });

  it('a single-name spec returns the bare value, not a tuple', () => {
    expect(decodeKey(key('a'), 'string')).toBe('a');
    expect(decodeKey(key(7), 'i64')).toBe(7n);
    expect(decodePayload(payload(true), 'bool')).toBe(true);
  });

  it('decoded bytes are a copy', () => {
    const k = key(new Uint8Array([1, 2, 3]));
    const out = decodeKey(k, 'bytes');
    out[0] = 99;
    expect(hex(k)).toBe('0003010203');
    const input = payload(new Uint8Array([4, 5]));
    const read = decodePayload(input, 'bytes');
    read[0] = 99;
    expect(hex(input)).toBe('00020405');
  });

  it('reads through a Uint8Array view with an offset', () => {
    const backing = new Uint8Array([0xee, ...key('hi', u8(3)).bytes, 0xee]);
    expect(decodeKey(backing.subarray(1, -1), ['string', 'u8'])).toEqual(['hi', 3]);
  });

  it('reading a value as a wider or other type follows the bytes', () => {
    // i64 -1 read as u64 is its sign-flipped bit pattern.
    expect(decodeKey(key(-1), 'u64')).toBe(2n ** 63n - 1n);
    // A string's bytes read as bytes, and a u8 as a bool.
    expect(decodeKey(key('hi'), 'bytes')).toEqual(new Uint8Array([0x68, 0x69]));
    expect(decodeKey(key(u8(1)), 'bool')).toBe(true);
  });
});

describe('decoding refuses bytes that do not fit the spec', () => {
  it('rejects trailing bytes', () => {
    expect(invalid(() => decodeKey(key('a', 1), 'string')).message).toMatch(/trailing/);
    invalid(() => decodeKey(key('a', 1), ['string']));
    invalid(() => decodeKey(key(1), []));
    invalid(() => decodeKey(key(u8(1), u8(2)), 'u8'));
    invalid(() => decodeKey(key(true), 'string'));
    expect(invalid(() => decodePayload(payload('a', true), 'string')).message).toMatch(
      /^decodePayload/,
    );
  });

  it('rejects missing bytes', () => {
    invalid(() => decodeKey(key('ab'), ['string', 'i64']));
    invalid(() => decodeKey(key(), 'bool'));
    invalid(() => decodeKey(key(), 'u8'));
    invalid(() => decodeKey(key(), 'string'));
    invalid(() => decodeKey(bytesOf('00'), 'string'));
    invalid(() => decodeKey(bytesOf('0005 61'), 'string'));
    invalid(() => decodeKey(bytesOf('0003 0102'), 'bytes'));
    for (const t of ['i64', 'u64', 'number', 'i32', 'i16', 'i8', 'u32', 'u16'] as const) {
      expect(invalid(() => decodeKey(bytesOf('80000000000000'), t)).message).toContain(t);
    }
    expect(invalid(() => decodePayload(payload(u8(1)), ['u8', 'u8'])).message).toMatch(
      /^decodePayload: part 1/,
    );
  });

  it('rejects invalid UTF-8 in a string', () => {
    for (const bad of [
      '0001 ff', // never valid
      '0001 80', // lone continuation byte
      '0002 c328', // bad continuation
      '0002 c080', // overlong NUL
      '0003 e282', // truncated inside the part (length says 3, 2 given)
      '0002 e282', // truncated sequence
      '0003 eda080', // UTF-16 surrogate encoded in UTF-8
      '0004 f4908080', // above U+10FFFF
    ]) {
      invalid(() => decodeKey(bytesOf(bad), 'string'));
      invalid(() => decodePayload(bytesOf(bad), 'string'));
    }
    // The same bytes are fine as 'bytes'.
    expect(decodeKey(bytesOf('0002 c328'), 'bytes')).toEqual(new Uint8Array([0xc3, 0x28]));
  });

  it('rejects a bool byte other than 0 or 1', () => {
    expect(invalid(() => decodeKey(bytesOf('02'), 'bool')).message).toContain('part 0');
    invalid(() => decodeKey(bytesOf('ff'), 'bool'));
    invalid(() => decodePayload(bytesOf('0002'), ['bool', 'bool']));
  });

  it('rejects values outside the decoded type', () => {
    invalid(() => decodeKey(key(2n ** 53n), 'number'));
    invalid(() => decodeKey(key(-(2n ** 53n)), 'number'));
    invalid(() => decodeKey(key(INT64_MAX), 'number'));
    invalid(() => decodeKey(key(2 ** 31), 'i32'));
    invalid(() => decodeKey(key(-(2 ** 31) - 1), 'i32'));
    invalid(() => decodeKey(key(32_768), 'i16'));
    invalid(() => decodeKey(key(-32_769), 'i16'));
    invalid(() => decodeKey(key(128), 'i8'));
    invalid(() => decodeKey(key(-129), 'i8'));
    invalid(() => decodeKey(key(u64(2 ** 32)), 'u32'));
    invalid(() => decodeKey(key(u64(65_536)), 'u16'));
    invalid(() => decodeKey(key(u64(UINT64_MAX)), 'u32'));
    // The edges themselves are fine.
    expect(decodeKey(key(-MAX_SAFE), 'number')).toBe(-MAX_SAFE);
    expect(decodeKey(key(u64(2 ** 32 - 1)), 'u32')).toBe(2 ** 32 - 1);
  });

  it('rejects an unknown type name or a malformed spec', () => {
    const decode = decodeKey as (k: unknown, spec: unknown) => unknown;
    invalid(() => decode(key('a'), 'nope'));
    invalid(() => decode(key('a'), ['nope']));
    invalid(() => decode(key('a'), 'String'));
    invalid(() => decode(key('a'), 42));
    invalid(() => decode(key('a'), null));
  });
});

// ---------------------------------------------------------------------------------------
// Key

describe('Key', () => {
  it('bytes returns a copy; mutating it does not change the key', () => {
    const k = key('ab');
    const b = k.bytes;
    expect(b).not.toBe(k.bytes);
    b[0] = 0xff;
    b.fill(0);
    expect(hex(k)).toBe('00026162');
    expect(k.equals(key('ab'))).toBe(true);
  });

  it('rawKey copies its input', () => {
    const input = new Uint8Array([1, 2, 3]);
    const k = rawKey(input);
    input[0] = 9;
    expect(hex(k)).toBe('010203');
    const view = new Uint8Array([7, 1, 2, 7]).subarray(1, 3);
    expect(hex(rawKey(view))).toBe('0102');
    expect(rawKey(view).byteLength).toBe(2);
  });

  it('rawKey does no encoding', () => {
    expect(hex(rawKey(bytesOf('a1616101')))).toBe('a1616101');
    expect(hex(rawKey(new Uint8Array()))).toBe('');
  });

  it('equals compares bytes, against a Key or a Uint8Array', () => {
    expect(key('a', 1).equals(key('a', 1))).toBe(true);
    expect(key('a', 1).equals(key('a', 2))).toBe(false);
    expect(key('a').equals(key('a', 1))).toBe(false);
    expect(key('a', 1).equals(key(['a', 1]))).toBe(true);
    expect(key('a').equals(bytesOf('000161'))).toBe(true);
    expect(key('a').equals(bytesOf('000162'))).toBe(false);
    expect(key().equals(new Uint8Array())).toBe(true);
    expect(rawKey(bytesOf('000161')).equals(key('a'))).toBe(true);
  });

  it('toString is lower-case hex and byteLength counts bytes', () => {
    const k = key('channel-42', 7);
    expect(k.toString()).toBe('000a6368616e6e656c2d34328000000000000007');
    expect(String(k)).toBe(k.toString());
    expect(k.byteLength).toBe(20);
    expect(key().toString()).toBe('');
    expect(key().byteLength).toBe(0);
    expect(key(u64(UINT64_MAX)).toString()).toBe('ffffffffffffffff');
  });

  it('inspects as Key<hex>', () => {
    expect(inspect(key('a'))).toBe('Key<000161>');
  });

  it('is frozen', () => {
    const k = key('a');
    expect(Object.isFrozen(k)).toBe(true);
    expect(k).toBeInstanceOf(Key);
    expect(toKey('a')).toBeInstanceOf(Key);
    expect(rawKey(new Uint8Array([1]))).toBeInstanceOf(Key);
  });
});
