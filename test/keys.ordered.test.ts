/*
 * f64(x) and text(s) (CONTRACT.md section 8): fixed bytes, round trips, and byte order
 * equal to numeric order and to code-point order, pairwise (fast-check), alone and followed
 * by more parts; what they refuse. The existing parts keep their bytes
 * (test/keys.vectors.test.ts holds the Nim reference's vectors).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  compareKeys,
  decodeKey,
  decodePayload,
  f64,
  key,
  PersistencyError,
  payload,
  text,
} from '../src/index.js';

const RUNS = { numRuns: Number(process.env.FC_NUM_RUNS ?? 2000) };
const hex = (k: { bytes: Uint8Array }) => Buffer.from(k.bytes).toString('hex');

/** Code-point order of two strings (-1, 0, 1). */
function codePointOrder(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0) as number);
  const y = Array.from(b, (c) => c.codePointAt(0) as number);
  for (let i = 0; i < Math.min(x.length, y.length); i++)
    if (x[i] !== y[i]) return (x[i] as number) < (y[i] as number) ? -1 : 1;
  return Math.sign(x.length - y.length);
}

/** Numeric order with -0 below 0. */
function numericOrder(a: number, b: number): number {
  if (a === b) return Object.is(a, b) ? 0 : Object.is(a, -0) ? -1 : 1;
  return a < b ? -1 : 1;
}

const doubles = fc.double({ noNaN: true });
const strings = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 12 }),
  fc.string({ unit: fc.constantFrom('\0', 'a', 'b', '\u00ff', '\u{1F600}'), maxLength: 6 }),
);

describe('f64', () => {
  it.each([
    [0, '8000000000000000'],
    [-0, '7fffffffffffffff'],
    [1, 'bff0000000000000'],
    [-1, '400fffffffffffff'],
    [1.5, 'bff8000000000000'],
    [Number.POSITIVE_INFINITY, 'fff0000000000000'],
    [Number.NEGATIVE_INFINITY, '000fffffffffffff'],
    [Number.MIN_VALUE, '8000000000000001'],
  ])('f64(%s) = %s', (x, bytes) => {
    expect(hex(f64(x))).toBe(bytes);
    expect(Object.is(decodeKey(f64(x), 'f64'), x)).toBe(true);
  });

  it('sorts in numeric order, pairwise, alone and followed by more parts', () => {
    fc.assert(
      fc.property(doubles, doubles, fc.integer(), (a, b, tail) => {
        expect(compareKeys(f64(a), f64(b))).toBe(numericOrder(a, b));
        if (numericOrder(a, b) !== 0)
          expect(compareKeys(key(f64(a), tail), key(f64(b), -tail))).toBe(numericOrder(a, b));
      }),
      RUNS,
    );
  });

  it('round-trips every double, as a key part and as a payload part', () => {
    fc.assert(
      fc.property(doubles, fc.string(), (x, s) => {
        expect(Object.is(decodeKey(key(f64(x), s), ['f64', 'string'])[0], x)).toBe(true);
        expect(Object.is(decodePayload(payload(f64(x)), 'f64'), x)).toBe(true);
      }),
      RUNS,
    );
  });

  it('decodes from a Buffer view inside a larger buffer, leaving it unchanged', () => {
    const k = key('x', f64(2.5), text('t'));
    const big = Buffer.alloc(k.bytes.length + 16, 0xaa);
    big.set(k.bytes, 7);
    const view = big.subarray(7, 7 + k.bytes.length);
    const before = Buffer.from(big);
    expect(decodeKey(view, ['string', 'f64', 'text'])).toEqual(['x', 2.5, 't']);
    expect(big.equals(before)).toBe(true);
  });

  it('refuses NaN and what is not a number; bytes of a NaN do not decode', () => {
    for (const bad of [Number.NaN, '1', 1n, undefined, null]) {
      expect(() => f64(bad as number)).toThrow(PersistencyError);
    }
    const nan = new Uint8Array([0xff, 0xf8, 0, 0, 0, 0, 0, 0]);
    expect(() => decodeKey(nan, 'f64')).toThrow(/NaN/);
    expect(() => decodeKey(new Uint8Array(7), 'f64')).toThrow(/8 bytes/);
  });
});

describe('text', () => {
  it.each([
    ['', '0000'],
    ['a', '610000'],
    ['ab', '61620000'],
    ['a\0', '6100ff0000'],
    ['\0\0', '00ff00ff0000'],
    ['é', 'c3a90000'],
  ])('text(%j) = %s', (s, bytes) => {
    expect(hex(text(s))).toBe(bytes);
    expect(decodeKey(text(s), 'text')).toBe(s);
  });

  it("sorts in code-point order ('' < 'a' < 'aa' < 'ab' < 'b'), pairwise, alone and followed by more parts", () => {
    expect(
      ['b', 'ab', '', 'aa', 'a']
        .map(text)
        .sort(compareKeys)
        .map((k) => decodeKey(k, 'text')),
    ).toEqual(['', 'a', 'aa', 'ab', 'b']);
    fc.assert(
      fc.property(strings, strings, fc.integer(), fc.integer(), (a, b, x, y) => {
        expect(compareKeys(text(a), text(b))).toBe(codePointOrder(a, b));
        if (a !== b)
          expect(compareKeys(key(text(a), x), key(text(b), y))).toBe(codePointOrder(a, b));
      }),
      RUNS,
    );
  });

  it('round-trips and delimits itself: parts after it read back', () => {
    fc.assert(
      fc.property(strings, strings, fc.integer(), (a, b, n) => {
        expect(decodeKey(key(text(a), text(b), n), ['text', 'text', 'number'])).toEqual([a, b, n]);
        expect(decodePayload(payload(text(a), n), ['text', 'number'])).toEqual([a, n]);
      }),
      RUNS,
    );
  });

  it('refuses lone surrogates and what is not a string; bad bytes do not decode', () => {
    for (const bad of ['\ud800', 'a\udc00b', 1, undefined, null]) {
      expect(() => text(bad as string)).toThrow(PersistencyError);
    }
    expect(() => decodeKey(new Uint8Array([0x61, 0x00]), 'text')).toThrow(/no end/);
    expect(() => decodeKey(new Uint8Array([0x61, 0x00, 0x01]), 'text')).toThrow(/00 1/);
    expect(() => decodeKey(new Uint8Array([0xc3, 0x00, 0x00]), 'text')).toThrow(/UTF-8/);
  });
});
