/*
 * Ordering: every case of the Nim reference's key tests (tests/persistency/test_keys.nim),
 * checked both with compareKeys and with plain byte order (Buffer.compare), since SQLite
 * orders BLOBs by memcmp.
 */
import { describe, expect, it } from 'vitest';
import {
  compareKeys,
  i64,
  type Key,
  type KeyRange,
  key,
  prefixRange,
  rawKey,
  u8,
  u16,
  u64,
} from '../src/index.js';

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

const hex = (k: Key): string => k.toString();

/** Plain memcmp order of the encoded bytes, independent of compareKeys. */
const byteOrder = (a: Key, b: Key): number => Buffer.compare(a.bytes, b.bytes);

/** Asserts `sorted` is strictly increasing, and that shuffled copies sort back to it. */
function expectStrictlyAscending(sorted: readonly Key[]): void {
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1] as Key;
    const b = sorted[i] as Key;
    expect(compareKeys(a, b), `${hex(a)} < ${hex(b)}`).toBe(-1);
    expect(compareKeys(b, a), `${hex(b)} > ${hex(a)}`).toBe(1);
    expect(byteOrder(a, b), `${hex(a)} < ${hex(b)} by bytes`).toBe(-1);
  }
  const want = sorted.map(hex);
  const reversed = [...sorted].reverse();
  expect(reversed.sort(compareKeys).map(hex)).toEqual(want);
  expect([...sorted].reverse().sort(byteOrder).map(hex)).toEqual(want);
  // A fixed interleaving, so the natural order is neither the input nor its reverse.
  const interleaved = [
    ...sorted.filter((_, i) => i % 2 === 1),
    ...sorted.filter((_, i) => i % 2 === 0),
  ];
  expect(interleaved.sort(compareKeys).map(hex)).toEqual(want);
}

function inRange(r: KeyRange, k: Key): boolean {
  return compareKeys(r.start, k) <= 0 && (r.stop === undefined || compareKeys(k, r.stop) < 0);
}

describe('strings', () => {
  it('sort by length, then byte order', () => {
    const ks = [key('ab'), key(''), key('a'), key('aa'), key('b')];
    expect(ks.sort(compareKeys).map(hex)).toEqual(
      [key(''), key('a'), key('b'), key('aa'), key('ab')].map(hex),
    );
  });

  it('same-length strings sort in byte order', () => {
    const ks = [key('delta'), key('alpha'), key('gamma'), key('bravo')];
    expect(ks.sort(compareKeys).map(hex)).toEqual(
      [key('alpha'), key('bravo'), key('delta'), key('gamma')].map(hex),
    );
  });

  it("'b' < 'aa' (length first) and 'ab' < 'ba' (then bytes)", () => {
    expectStrictlyAscending([key('b'), key('aa')]);
    expectStrictlyAscending([key('ab'), key('ba')]);
    expectStrictlyAscending([key('z'), key('aa'), key('ab'), key('ba'), key('aaa')]);
  });

  it('compares UTF-8 bytes: length in bytes, then code point order', () => {
    // 'z' (1 byte) < 'aa' < 'é' (2 bytes: 61 61 < c3 a9) < 'aaa' < '€' (3 bytes) < '😀'
    // (4 bytes) < U+10FFFF; U+FFFF sorts before U+10000 because it is shorter in UTF-8.
    expectStrictlyAscending([
      key('z'),
      key('aa'),
      key('é'),
      key('aaa'),
      key('€'),
      key('\uffff'),
      key('😀'),
      key('\u{10ffff}'),
    ]);
    expectStrictlyAscending([key('\uffff'), key('\u{10000}')]);
    expectStrictlyAscending([key('\0'), key('\x7f'), key('\x80\0'), key('\x80\x80')]);
  });
});

describe('integers', () => {
  it('int64 sign flip preserves order across negative, zero and positive', () => {
    const values = [INT64_MIN, -2n, -1n, 0n, 1n, 2n, INT64_MAX];
    expectStrictlyAscending(values.map((v) => key('c', v)));
    expectStrictlyAscending(values.map((v) => key(v)));
    expectStrictlyAscending(values.map((v) => key(i64(v))));
  });

  it('-2^63 < -1 < 0 < 1 < 2^63-1 by compareKeys and by byte order', () => {
    const ks = [key(INT64_MIN), key(-1), key(0), key(1), key(INT64_MAX)];
    expectStrictlyAscending(ks);
    expect(hex(ks[0] as Key)).toBe('0000000000000000');
    expect(hex(ks[4] as Key)).toBe('ffffffffffffffff');
  });

  it('numbers and bigints interleave numerically', () => {
    expectStrictlyAscending([
      key(INT64_MIN),
      key(-Number.MAX_SAFE_INTEGER),
      key(-(2 ** 32)),
      key(-(2n ** 31n)),
      key(-256),
      key(-1n),
      key(0),
      key(255n),
      key(256),
      key(2 ** 31),
      key(2n ** 32n),
      key(Number.MAX_SAFE_INTEGER),
      key(2n ** 53n),
      key(INT64_MAX),
    ]);
  });

  it('uint64 big-endian preserves order from 0 to the maximum', () => {
    expectStrictlyAscending(
      [0n, 1n, 256n, 1_000_000n, 2n ** 53n, 2n ** 63n, UINT64_MAX - 1n, UINT64_MAX].map((v) =>
        key('u', u64(v)),
      ),
    );
  });

  it('u8, u16 and booleans sort numerically', () => {
    expectStrictlyAscending([0, 1, 127, 128, 255].map((v) => key(u8(v))));
    expectStrictlyAscending([0, 1, 255, 256, 65_535].map((v) => key(u16(v))));
    expectStrictlyAscending([key(false), key(true)]);
  });
});

describe('composite keys', () => {
  it('(string, string) sorts component-major', () => {
    // First component 'a' / 'b' (same length, byte order); within each group the second
    // component again sorts length-then-bytes: '' < 'a', 'z' < 'ab'.
    expectStrictlyAscending([
      key('a', ''),
      key('a', 'a'),
      key('a', 'z'),
      key('a', 'ab'),
      key('b', ''),
      key('b', 'a'),
    ]);
  });

  it('(string, int64) sorts component-major', () => {
    expectStrictlyAscending([
      key('a', INT64_MIN),
      key('a', -1),
      key('a', 0),
      key('a', 1),
      key('b', INT64_MIN),
      key('b', 0),
    ]);
  });

  it('the first component dominates whatever follows', () => {
    expectStrictlyAscending([key('a', INT64_MAX, 'zzz'), key('b', INT64_MIN, '')]);
    expectStrictlyAscending([key(-1, 'zzzz'), key(0, '')]);
  });

  it('a shorter key sorts before a longer one sharing its prefix', () => {
    expectStrictlyAscending([key('a'), key('a', 0)]);
    expectStrictlyAscending([key('a'), key('a', '')]);
    expectStrictlyAscending([key('a', 'x'), key('a', 'x', 'y')]);
    expectStrictlyAscending([key(), key(false)]);
  });

  it('equality is byte-wise', () => {
    expect(compareKeys(key('a', 1), key('a', 1))).toBe(0);
    expect(key('a', 1).equals(key('a', 1))).toBe(true);
    expect(key('a', 1).equals(key('a', 2))).toBe(false);
    expect(compareKeys(key('a', 1), key(['a', i64(1)]))).toBe(0);
  });

  it('compareKeys accepts Uint8Arrays and returns exactly -1, 0 or 1', () => {
    expect(compareKeys(key('a').bytes, key('b'))).toBe(-1);
    expect(compareKeys(key('b'), key('a').bytes)).toBe(1);
    expect(compareKeys(new Uint8Array([5]), new Uint8Array([5]))).toBe(0);
    expect(compareKeys(new Uint8Array([0]), new Uint8Array([255]))).toBe(-1);
  });
});

describe('prefixRange', () => {
  it('start equals the prefix', () => {
    const p = key('a');
    const r = prefixRange(p);
    expect(r.start.equals(p)).toBe(true);
    expect(compareKeys(r.start, p)).toBe(0);
  });

  it('stop is the successor: the last byte plus one', () => {
    expect(prefixRange(key('a')).stop?.toString()).toBe('000162');
    expect(prefixRange(key('a', 1)).stop?.toString()).toBe('0001618000000000000002');
    expect(prefixRange(rawKey(new Uint8Array([0, 0]))).stop?.toString()).toBe('0001');
  });

  it('admits every extension of the prefix', () => {
    const r = prefixRange(key('a'));
    for (const k of [
      key('a'),
      key('a', 0),
      key('a', INT64_MIN),
      key('a', INT64_MAX),
      key('a', 'x'),
      key('a', u64(UINT64_MAX)),
      key('a', u64(UINT64_MAX), INT64_MAX),
    ]) {
      expect(compareKeys(r.start, k), hex(k)).toBeLessThanOrEqual(0);
      expect(compareKeys(k, r.stop as Key), hex(k)).toBe(-1);
      expect(inRange(r, k)).toBe(true);
    }
  });

  it('excludes siblings outside the prefix', () => {
    const r = prefixRange(key('a'));
    // 'b' has the same encoded length as 'a' but a higher last byte: at or above stop.
    expect(compareKeys(key('b'), r.stop as Key)).toBeGreaterThanOrEqual(0);
    // 'ab' is longer, so its 2-byte length prefix puts it past stop.
    expect(compareKeys(key('ab'), r.stop as Key)).toBeGreaterThanOrEqual(0);
    // The empty string sits before the start.
    expect(compareKeys(key(''), r.start)).toBe(-1);
    for (const k of [key('b'), key('ab'), key(''), key('`'), key('b', INT64_MIN)]) {
      expect(inRange(r, k), hex(k)).toBe(false);
    }
  });

  it("excludes key('a', 1) from prefixRange(key('b')) and keys past it", () => {
    const r = prefixRange(key('b'));
    expect(inRange(r, key('a', 1))).toBe(false);
    expect(inRange(r, key('a', INT64_MAX))).toBe(false);
    expect(inRange(r, key('c'))).toBe(false);
    expect(inRange(r, key('c', INT64_MIN))).toBe(false);
    expect(inRange(r, key('b', 1))).toBe(true);
  });

  it('strips trailing 0xFF bytes before incrementing', () => {
    expect(prefixRange(rawKey(new Uint8Array([0x01, 0xff, 0xff]))).stop?.toString()).toBe('02');
    expect(prefixRange(rawKey(new Uint8Array([0x00, 0x01, 0xff]))).stop?.toString()).toBe('0002');
    expect(prefixRange(rawKey(new Uint8Array([0xfe, 0xff]))).stop?.toString()).toBe('ff');
    // key('a', 2^63-1) ends in eight 0xFF bytes; its successor bumps the 'a'.
    const r = prefixRange(key('a', INT64_MAX));
    expect(r.stop?.toString()).toBe('000162');
    expect(inRange(r, key('a', INT64_MAX))).toBe(true);
    expect(inRange(r, key('a', INT64_MAX, 'z'))).toBe(true);
    expect(inRange(r, key('a', INT64_MAX - 1n))).toBe(false);
    expect(inRange(r, key('b'))).toBe(false);
  });

  it('an all-0xFF prefix gives an open-ended range', () => {
    const p = rawKey(new Uint8Array([0xff, 0xff, 0xff]));
    const r = prefixRange(p);
    expect(r.start.equals(p)).toBe(true);
    expect(r.stop).toBeUndefined();
    expect(inRange(r, rawKey(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x00])))).toBe(true);
    expect(inRange(r, rawKey(new Uint8Array([0xff, 0xff, 0xfe, 0xff])))).toBe(false);
    // Encoded keys can be all 0xFF too.
    expect(prefixRange(key(INT64_MAX)).stop).toBeUndefined();
    expect(prefixRange(key(u64(UINT64_MAX), u8(255))).stop).toBeUndefined();
  });

  it('an empty prefix gives an open-ended range covering every key', () => {
    const r = prefixRange(key());
    expect(r.start.byteLength).toBe(0);
    expect(r.stop).toBeUndefined();
    for (const k of [key(), key(''), key(INT64_MIN), key(INT64_MAX), key('zzz')]) {
      expect(inRange(r, k)).toBe(true);
    }
  });

  it('does not alias the prefix bytes', () => {
    const p = key('a');
    const r = prefixRange(p);
    const stop = r.stop?.bytes ?? new Uint8Array();
    stop[0] = 0xff;
    expect(r.stop?.toString()).toBe('000162');
    expect(p.toString()).toBe('000161');
  });
});
