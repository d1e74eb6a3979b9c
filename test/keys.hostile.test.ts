/*
 * Hostile inputs: everything the codec must refuse with a PersistencyError of kind
 * InvalidArgument that names the offending part — never bytes, never another error.
 */
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  compareKeys,
  decodeKey,
  decodePayload,
  i8,
  i16,
  i32,
  i64,
  Key,
  key,
  PersistencyError,
  payload,
  prefixRange,
  rawKey,
  SizedInt,
  toKey,
  toPayload,
  u8,
  u16,
  u32,
  u64,
} from '../src/index.js';

const SEED = Number(process.env.FC_SEED ?? 20_240_601);

// The public signatures refuse these inputs at compile time; JavaScript callers get no
// such help, so the runtime checks are tested through untyped views of the same functions.
const anyKey = key as (...parts: unknown[]) => Key;
const anyToKey = toKey as (value: unknown) => Key;
const anyPayload = payload as (...parts: unknown[]) => Uint8Array;
const anyToPayload = toPayload as (value: unknown) => Uint8Array;
const anyRawKey = rawKey as (bytes: unknown) => Key;
const anyPrefixRange = prefixRange as (prefix: unknown) => unknown;
const anyCompare = compareKeys as (a: unknown, b: unknown) => number;
const anyDecodeKey = decodeKey as (k: unknown, spec: unknown) => unknown;
const anyDecodePayload = decodePayload as (bytes: unknown, spec: unknown) => unknown;
type AnyWrapper = (x: unknown) => SizedInt;

/** Runs `f`, requires a PersistencyError of kind InvalidArgument, and returns its message. */
function refused(f: () => unknown): string {
  let result: unknown;
  try {
    result = f();
  } catch (e) {
    if (!(e instanceof PersistencyError)) {
      throw new Error(`expected a PersistencyError, got ${inspect(e)}`);
    }
    expect(e.kind).toBe('InvalidArgument');
    return e.message;
  }
  throw new Error(`expected InvalidArgument, got a result: ${inspect(result)}`);
}

function deepArray(levels: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < levels; i++) v = [v];
  return v;
}

function deepObject(levels: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < levels; i++) v = { v };
  return v;
}

class Point {
  x = 1;
  y = 2;
}

const forgedSizedInt = (width: string, value: unknown): unknown =>
  new (SizedInt as unknown as new (w: string, v: unknown) => SizedInt)(width, value);

/**
 * Wraps each value in a thunk, so the test runner formats only the label (an impostor's
 * methods throw when called, and huge values make unreadable names).
 */
function thunks(cases: Array<readonly [string, unknown]>): Array<readonly [string, () => unknown]> {
  return cases.map(([label, v]) => [label, () => v] as const);
}

/** Values that are not key parts at all, labelled for the test names. */
function hostileParts(): Array<readonly [string, unknown]> {
  const cyclicObject: Record<string, unknown> = { a: 1 };
  cyclicObject.self = cyclicObject;
  const cyclicArray: unknown[] = [1];
  cyclicArray.push(cyclicArray);
  const indirect: Record<string, unknown> = { list: [] };
  (indirect.list as unknown[]).push({ back: indirect });
  const sparse: unknown[] = new Array(3);
  sparse[0] = 1;
  sparse[2] = 2;
  const revocable = Proxy.revocable({}, {});
  revocable.revoke();
  return [
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
    ['1.5', 1.5],
    ['-0.5', -0.5],
    ['Number.EPSILON', Number.EPSILON],
    ['2^53 (unsafe)', 2 ** 53],
    ['-2^53 (unsafe)', -(2 ** 53)],
    ['Number.MAX_VALUE', Number.MAX_VALUE],
    ['2^63 as bigint', 2n ** 63n],
    ['-2^63-1 as bigint', -(2n ** 63n) - 1n],
    ['2^64 as bigint', 2n ** 64n],
    ['null', null],
    ['undefined', undefined],
    ['a function', () => 1],
    ['a class', Point],
    ['a symbol', Symbol('s')],
    ['a plain object with a symbol-keyed property', { [Symbol('k')]: 1 }],
    ['a Date', new Date(0)],
    ['a Map', new Map([['a', 1]])],
    ['a Set', new Set([1])],
    ['a WeakMap', new WeakMap()],
    ['a class instance', new Point()],
    ['an Error', new Error('x')],
    ['a RegExp', /a/],
    ['a Promise', Promise.resolve(1)],
    ['a boxed String', new String('a')],
    ['a boxed Number', new Number(1)],
    ['a boxed Boolean', new Boolean(true)],
    ['a boxed BigInt', Object(1n)],
    ['an ArrayBuffer', new ArrayBuffer(2)],
    ['a SharedArrayBuffer', new SharedArrayBuffer(2)],
    ['an Int16Array', new Int16Array(2)],
    ['an Int8Array', new Int8Array(2)],
    ['a Uint8ClampedArray', new Uint8ClampedArray(2)],
    ['a Uint16Array', new Uint16Array(2)],
    ['a Float64Array', new Float64Array(1)],
    ['a BigInt64Array', new BigInt64Array(1)],
    ['a DataView', new DataView(new ArrayBuffer(2))],
    ['a cyclic object', cyclicObject],
    ['a cyclic array', cyclicArray],
    ['a cycle through an array and an object', indirect],
    ['a sparse array', sparse],
    ['an array nested 10,000 levels', deepArray(10_000)],
    ['an object nested 10,000 levels', deepObject(10_000)],
    ['an array nested 65 levels', deepArray(65)],
    [
      'an object whose getter throws',
      {
        get boom(): never {
          throw new Error('boom');
        },
      },
    ],
    [
      'an object whose getter throws an unprintable value',
      {
        get boom(): never {
          throw Object.create(null);
        },
      },
    ],
    [
      'an object whose getter throws undefined',
      {
        get boom(): never {
          throw undefined;
        },
      },
    ],
    [
      'a proxy whose ownKeys trap throws',
      new Proxy(
        {},
        {
          ownKeys() {
            throw new Error('trap');
          },
        },
      ),
    ],
    ['a revoked proxy', revocable.proxy],
    ['a lone high surrogate', '\ud83d'],
    ['a lone low surrogate', '\ude00'],
    ['a high surrogate at the end', 'ok\ud83d'],
    ['a low surrogate in the middle', 'a\ude00b'],
    ['a reversed surrogate pair', '\ude00\ud83d'],
    ['two high surrogates', '\ud83d\ud83d'],
    ['two low surrogates', '\ude00\ude00'],
    ['a low surrogate before a valid pair', '\ude00\ud83d\ude00'],
    ['a string of 65,536 bytes', 'x'.repeat(65_536)],
    ['a string of 21,846 three-byte chars', '€'.repeat(21_846)],
    ['a string of 1,000,000 chars', 'x'.repeat(1_000_000)],
    ['a Uint8Array of 65,536 bytes', new Uint8Array(65_536)],
    ['a Buffer of 1 MiB', Buffer.alloc(1 << 20)],
    ['null inside an array', ['a', null]],
    ['NaN inside an object', { a: { b: Number.NaN } }],
    ['a forged SizedInt u8(300)', forgedSizedInt('u8', 300)],
    ['a forged SizedInt i8(1.5)', forgedSizedInt('i8', 1.5)],
    ['a forged SizedInt u64(-1n)', forgedSizedInt('u64', -1n)],
    ['a forged SizedInt of unknown width', forgedSizedInt('u128', 1)],
    ['a forged SizedInt holding a string', forgedSizedInt('i32', '7')],
    [
      'an Object.create(SizedInt.prototype) impostor',
      Object.assign(Object.create(SizedInt.prototype), { width: 'u16', value: 2 ** 70 }),
    ],
    ['an Object.create(Key.prototype) impostor', Object.create(Key.prototype)],
  ];
}

describe('key / toKey / payload / toPayload refuse hostile parts', () => {
  it.each(thunks(hostileParts()))('%s', (_label, make) => {
    const bad = make();
    expect(refused(() => anyKey(bad))).toMatch(/^key part 0\b/);
    expect(refused(() => anyKey('ok', bad))).toMatch(/^key part 1\b/);
    expect(refused(() => anyKey('ok', 1, bad, 'after'))).toMatch(/^key part 2\b/);
    expect(refused(() => anyToKey(bad))).toMatch(/^key part 0\b/);
    expect(refused(() => anyPayload('ok', bad))).toMatch(/^payload part 1\b/);
    expect(refused(() => anyToPayload(bad))).toMatch(/^payload part 0\b/);
    // Nested inside a tuple or an object, still refused and blamed on the outer part.
    expect(refused(() => anyKey('ok', ['x', bad]))).toMatch(/^key part 1\b/);
    expect(refused(() => anyKey({ a: 'x', b: bad }))).toMatch(/^key part 0\b/);
  });

  it('names the path of a nested offender', () => {
    expect(refused(() => anyKey('ok', ['a', [1, null]]))).toContain('part 1[1][1]');
    expect(refused(() => anyKey({ a: { b: undefined } }))).toContain('part 0.a.b');
    expect(refused(() => anyKey('ok', { list: ['x', Number.NaN] }))).toContain('part 1.list[1]');
    expect(refused(() => anyKey([new Date(0)]))).toContain('part 0[0]');
    expect(refused(() => anyKey('ok', '\ud800'))).toContain('part 1');
  });

  it('says why: cycles, nesting, surrogates and lengths are named', () => {
    const cyclic: unknown[] = ['a'];
    cyclic.push(cyclic);
    expect(refused(() => anyKey(cyclic))).toMatch(/cycl/i);
    expect(refused(() => anyKey(deepArray(10_000)))).toMatch(/nest/i);
    expect(refused(() => anyKey('\ude00\ude00'))).toMatch(/surrogate/i);
    expect(refused(() => anyKey('€'.repeat(21_846)))).toContain('65538');
    expect(refused(() => anyKey(new Uint8Array(65_536)))).toContain('65536');
  });

  it('keeps the thrown value of a failing getter as the cause', () => {
    const boom = new Error('boom');
    let caught: unknown;
    try {
      anyKey('ok', {
        get x(): never {
          throw boom;
        },
      });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(PersistencyError);
    expect((caught as PersistencyError).message).toContain('part 1');
    expect((caught as PersistencyError).message).toContain('boom');
    expect((caught as PersistencyError).cause).toBe(boom);
  });

  it('a refused call leaves the encoder clean for the next one', () => {
    refused(() => anyKey('a'.repeat(1000), 1, 2, 3, 'x'.repeat(70_000)));
    refused(() => anyKey(['deep', deepArray(100)]));
    expect(key('a', 1).toString()).toBe('0001618000000000000001');
    expect(Buffer.from(payload('b')).toString('hex')).toBe('000162');
  });

  it('a getter may build keys itself (re-entrant encoding)', () => {
    const part = {
      get inner() {
        return key('in', 1);
      },
      get bytes() {
        return payload(true);
      },
    };
    expect(anyKey('out', part).equals(key('out', key('in', 1), new Uint8Array([1])))).toBe(true);
    const failing = {
      get inner(): Key {
        return anyKey(null);
      },
    };
    expect(refused(() => anyKey('out', failing))).toContain('part');
    expect(key('after').toString()).toBe('00056166746572');
  });

  it('a shared (acyclic) reference is not a cycle', () => {
    const shared = ['s', 1];
    expect(key([shared, { again: shared }]).equals(key('s', 1, 's', 1))).toBe(true);
  });

  it('nesting up to the limit is fine', () => {
    expect(key(deepArray(63) as never).toString()).toBe('8000000000000001');
  });
});

describe('the integer wrappers refuse what they cannot hold', () => {
  const wrappers: Array<readonly [string, AnyWrapper]> = [
    ['i64', i64 as AnyWrapper],
    ['i32', i32 as AnyWrapper],
    ['i16', i16 as AnyWrapper],
    ['i8', i8 as AnyWrapper],
    ['u64', u64 as AnyWrapper],
    ['u32', u32 as AnyWrapper],
    ['u16', u16 as AnyWrapper],
    ['u8', u8 as AnyWrapper],
  ];
  const notIntegers: Array<readonly [string, unknown]> = [
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
    ['1.5', 1.5],
    ['-0.5', -0.5],
    ['2^53 (unsafe number)', 2 ** 53],
    ["'7'", '7'],
    ["''", ''],
    ['null', null],
    ['undefined', undefined],
    ['true', true],
    ['a function', () => 7],
    ['a symbol', Symbol('7')],
    ['an object', { valueOf: () => 7 }],
    ['an array', [7]],
    ['a boxed Number', new Number(7)],
    ['a boxed BigInt', Object(7n)],
    ['a Date', new Date(7)],
  ];
  const cases = wrappers.flatMap(([name, wrap]) =>
    notIntegers.map(([label, v]) => [`${name}(${label})`, name, wrap, v] as const),
  );

  it.each(cases)('%s', (_label, name, wrap, v) => {
    expect(refused(() => wrap(v))).toContain(`${name}(`);
  });

  it.each([
    ['u64(-1)', () => u64(-1), 'u64('],
    ['u64(-1n)', () => u64(-1n), 'u64('],
    ['u64(2^64)', () => u64(2n ** 64n), 'u64('],
    ['u64(2^64) as number', () => u64(2 ** 64), 'u64('],
    ['i64(2^63)', () => i64(2n ** 63n), 'i64('],
    ['i64(-2^63-1)', () => i64(-(2n ** 63n) - 1n), 'i64('],
    ['i32(2^31)', () => i32(2 ** 31), 'i32('],
    ['i32(-2^31-1)', () => i32(-(2 ** 31) - 1), 'i32('],
    ['i16(32768)', () => i16(32_768), 'i16('],
    ['i16(-32769)', () => i16(-32_769), 'i16('],
    ['i16(1.5)', () => i16(1.5), 'i16('],
    ['i8(128)', () => i8(128), 'i8('],
    ['i8(-129)', () => i8(-129), 'i8('],
    ['u32(2^32)', () => u32(2 ** 32), 'u32('],
    ['u32(-1)', () => u32(-1), 'u32('],
    ['u16(65536)', () => u16(65_536), 'u16('],
    ['u8(256)', () => u8(256), 'u8('],
    ['u8(-1)', () => u8(-1), 'u8('],
    ['u8(256n)', () => u8(256n), 'u8('],
  ])('%s is out of range', (_label, f, name) => {
    expect(refused(f)).toContain(name);
  });

  it('SizedInt cannot be constructed around the range check', () => {
    // The constructor is private to TypeScript only; whatever JavaScript builds must still
    // never encode a value outside its width.
    const Forge = SizedInt as unknown as new (w: string, v: unknown) => SizedInt;
    let forged: SizedInt | undefined;
    try {
      forged = new Forge('u8', 300);
    } catch (e) {
      expect(e).toBeInstanceOf(PersistencyError);
    }
    if (forged !== undefined) refused(() => key(forged as SizedInt));
  });
});

describe('the other entry points refuse what is not theirs', () => {
  const notBytes: Array<readonly [string, unknown]> = [
    ['null', null],
    ['undefined', undefined],
    ["'ab'", 'ab'],
    ['5', 5],
    ['[1, 2]', [1, 2]],
    ['{}', {}],
    ['an ArrayBuffer', new ArrayBuffer(2)],
    ['an Int16Array', new Int16Array(1)],
    ['a Uint8ClampedArray', new Uint8ClampedArray(1)],
    ['a DataView', new DataView(new ArrayBuffer(1))],
    ['an Object.create(Key.prototype) impostor', Object.create(Key.prototype)],
    ['an Object.create(Uint8Array.prototype) impostor', Object.create(Uint8Array.prototype)],
  ];

  it.each(thunks(notBytes))('rawKey(%s)', (_label, make) => {
    const v = make();
    expect(refused(() => anyRawKey(v))).toContain('rawKey');
  });

  it.each(thunks(notBytes))('compareKeys(%s, k) and compareKeys(k, %s)', (_label, make) => {
    const v = make();
    expect(refused(() => anyCompare(v, key('a')))).toContain('compareKeys');
    expect(refused(() => anyCompare(key('a'), v))).toContain('compareKeys');
  });

  it.each(thunks([...notBytes, ['a Uint8Array', new Uint8Array([1])]]))(
    'prefixRange(%s)',
    (_label, make) => {
      const v = make();
      expect(refused(() => anyPrefixRange(v))).toContain('prefixRange');
    },
  );

  it.each(thunks(notBytes))('decodeKey(%s, spec) and decodePayload(%s, spec)', (_label, make) => {
    const v = make();
    expect(refused(() => anyDecodeKey(v, 'string'))).toContain('decodeKey');
    expect(refused(() => anyDecodePayload(v, 'string'))).toContain('decodePayload');
  });

  it('decodePayload wants bytes, not a Key', () => {
    expect(refused(() => anyDecodePayload(key('a'), 'string'))).toContain('decodePayload');
  });

  it.each([
    ['null', null],
    ['undefined', undefined],
    ['42', 42],
    ['{}', {}],
    ["'nope'", 'nope'],
    ["'String'", 'String'],
    ["['nope']", ['nope']],
    ["['string', 7]", ['string', 7]],
    ['[null]', [null]],
    ["['toString']", ['toString']],
    ["'__proto__'", '__proto__'],
  ])('decodeKey(k, %s) refuses the spec', (_label, spec) => {
    expect(refused(() => anyDecodeKey(key('a'), spec))).toContain('decodeKey');
    expect(refused(() => anyDecodePayload(payload('a'), spec))).toContain('decodePayload');
  });

  it('Key#equals answers false, never throws, for anything that is not the same bytes', () => {
    const k = key('a');
    const equals = k.equals.bind(k) as (other: unknown) => boolean;
    for (const v of [null, undefined, '000161', [0, 1, 0x61], {}, Object.create(Key.prototype)]) {
      expect(equals(v)).toBe(false);
    }
  });

  it('Key cannot be constructed around the encoder', () => {
    // The constructor is private to TypeScript only. From JavaScript it must not yield a
    // Key that aliases the caller's array or holds something other than bytes.
    const Forge = Key as unknown as new (...args: unknown[]) => Key;
    for (const arg of [new Uint8Array([1]), 'abc', null]) {
      expect(() => new Forge(arg)).toThrow(PersistencyError);
    }
  });
});

describe('fuzz', () => {
  const anything = fc.anything({
    maxDepth: 4,
    withBigInt: true,
    withBoxedValues: true,
    withDate: true,
    withMap: true,
    withSet: true,
    withNullPrototype: true,
    withObjectString: true,
    withSparseArray: true,
    withTypedArray: true,
    stringUnit: 'binary',
  });
  const hostileString = fc.string({
    unit: fc.oneof(
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
      fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)),
    ),
    maxLength: 6,
  });
  const value = fc.oneof(anything, hostileString, fc.array(hostileString, { maxLength: 3 }));

  /** Either a Key-like result or InvalidArgument; anything else fails. */
  function keyOrInvalid(f: () => unknown): unknown {
    try {
      return f();
    } catch (e) {
      if (!(e instanceof PersistencyError)) throw new Error(`threw ${inspect(e)}`);
      assert.equal(e.kind, 'InvalidArgument');
      assert.match(e.message, /part \d/);
      return undefined;
    }
  }

  it('key(v) returns a Key or throws InvalidArgument, nothing else', () => {
    fc.assert(
      fc.property(value, (v) => {
        const k = keyOrInvalid(() => anyKey(v));
        if (k === undefined) return;
        assert.ok(k instanceof Key);
        // Deterministic, and the same through every entry point.
        assert.ok(anyKey(v).equals(k));
        assert.ok(anyToKey(v).equals(k));
        assert.ok(k.equals(anyPayload(v)));
        assert.ok(k.equals(anyToPayload(v)));
      }),
      { numRuns: 10_000, seed: SEED },
    );
  });

  it('key(...vs) over several random values behaves the same way', () => {
    fc.assert(
      fc.property(fc.array(value, { maxLength: 4 }), (vs) => {
        const k = keyOrInvalid(() => anyKey(...vs));
        if (k !== undefined) assert.ok(k instanceof Key);
      }),
      { numRuns: 2_000, seed: SEED },
    );
  });

  it('decodeKey over random bytes and specs returns or throws InvalidArgument', () => {
    const spec = fc.oneof(
      fc.constantFrom('string', 'bytes', 'bool', 'u8', 'i64', 'u64', 'number', 'i32', 'u16'),
      fc.array(
        fc.oneof(
          fc.constantFrom('string', 'bytes', 'bool', 'u8', 'i64', 'u64', 'number', 'i32', 'i16'),
          fc.constantFrom('i8', 'u32', 'u16'),
          anything,
        ),
        { maxLength: 4 },
      ),
      anything,
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 24 }), spec, (bytes, s) => {
        for (const f of [() => anyDecodeKey(bytes, s), () => anyDecodePayload(bytes, s)]) {
          try {
            f();
          } catch (e) {
            if (!(e instanceof PersistencyError)) throw new Error(`threw ${inspect(e)}`);
            assert.equal(e.kind, 'InvalidArgument');
          }
        }
      }),
      { numRuns: 10_000, seed: SEED },
    );
  });

  it('compareKeys, prefixRange and rawKey on random values return or throw InvalidArgument', () => {
    fc.assert(
      fc.property(anything, anything, (a, b) => {
        for (const f of [() => anyCompare(a, b), () => anyPrefixRange(a), () => anyRawKey(a)]) {
          try {
            f();
          } catch (e) {
            if (!(e instanceof PersistencyError)) throw new Error(`threw ${inspect(e)}`);
            assert.equal(e.kind, 'InvalidArgument');
          }
        }
      }),
      { numRuns: 5_000, seed: SEED },
    );
  });
});
