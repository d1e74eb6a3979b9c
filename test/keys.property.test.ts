/*
 * Property tests of the key codec over random typed tuples that mix every part type, with
 * boundary values mixed in. Each generated leaf carries its type, so a key can be decoded
 * and compared against a reference model written without the codec.
 *
 * Seeded: FC_SEED=<n> reproduces a run (fast-check also prints seed and path on failure).
 * Property bodies assert with node:assert, which costs a fraction of vitest's expect per run.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import {
  compareKeys,
  decodeKey,
  decodePayload,
  f64,
  i8,
  i16,
  i32,
  i64,
  type Key,
  type KeyPart,
  key,
  type PartType,
  PersistencyError,
  payload,
  prefixRange,
  rawKey,
  text,
  toKey,
  u8,
  u16,
  u32,
  u64,
} from '../src/index.js';

const SEED = Number(process.env.FC_SEED ?? 20_240_601);
const RUNS = { numRuns: 10_000, seed: SEED } as const;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

// ---------------------------------------------------------------------------------------
// Typed leaves

/** How a leaf is written: the plain JS types, and each fixed-width wrapper. */
type Kind =
  | 'string'
  | 'bytes'
  | 'number'
  | 'bigint'
  | 'boolean'
  | 'i64'
  | 'i32'
  | 'i16'
  | 'i8'
  | 'u64'
  | 'u32'
  | 'u16'
  | 'u8';

const KINDS: readonly Kind[] = [
  'string',
  'bytes',
  'number',
  'bigint',
  'boolean',
  'i64',
  'i32',
  'i16',
  'i8',
  'u64',
  'u32',
  'u16',
  'u8',
];

type Value = string | Uint8Array | number | bigint | boolean;

interface Leaf {
  readonly kind: Kind;
  /** What is passed to key(). */
  readonly part: KeyPart;
  /** The value the part stands for (a wrapper's argument, as given). */
  readonly value: Value;
}

/** The decoder type that reads each kind back. */
const DECODE_AS: Record<Kind, PartType> = {
  string: 'string',
  bytes: 'bytes',
  number: 'number',
  bigint: 'i64',
  boolean: 'bool',
  i64: 'i64',
  i32: 'i32',
  i16: 'i16',
  i8: 'i8',
  u64: 'u64',
  u32: 'u32',
  u16: 'u16',
  u8: 'u8',
};

/** What decoding gives back: bigint for i64/u64, a number (never -0) for the rest. */
function expectedDecoded(leaf: Leaf): Value {
  const t = DECODE_AS[leaf.kind];
  if (t === 'i64' || t === 'u64') return BigInt(leaf.value as number | bigint);
  if (typeof leaf.value === 'number' || typeof leaf.value === 'bigint') {
    const n = Number(leaf.value);
    return n === 0 ? 0 : n;
  }
  return leaf.value;
}

const BOUNDARIES: readonly bigint[] = [
  0n,
  1n,
  -1n,
  2n,
  -2n,
  127n,
  128n,
  -128n,
  -129n,
  255n,
  256n,
  32_767n,
  32_768n,
  -32_768n,
  -32_769n,
  65_535n,
  65_536n,
  2n ** 31n - 1n,
  2n ** 31n,
  -(2n ** 31n),
  -(2n ** 31n) - 1n,
  2n ** 32n - 1n,
  2n ** 32n,
  -(2n ** 32n),
  SAFE,
  -SAFE,
  SAFE + 1n,
  -SAFE - 1n,
  INT64_MIN,
  INT64_MIN + 1n,
  INT64_MAX,
  INT64_MAX - 1n,
  2n ** 63n,
  UINT64_MAX,
  UINT64_MAX - 1n,
];

/** Integers in [min, max]: uniform, small (so equal values are common), and boundaries. */
function intIn(min: bigint, max: bigint): fc.Arbitrary<bigint> {
  const lo = min > -300n ? min : -300n;
  const hi = max < 300n ? max : 300n;
  return fc.oneof(
    { weight: 2, arbitrary: fc.bigInt({ min, max }) },
    { weight: 2, arbitrary: fc.bigInt({ min: lo, max: hi }) },
    { weight: 3, arbitrary: fc.constantFrom(...BOUNDARIES.filter((b) => b >= min && b <= max)) },
  );
}

/** As a number when it is safe and the coin says so, otherwise as a bigint. */
function numberOrBigint(min: bigint, max: bigint): fc.Arbitrary<number | bigint> {
  return fc
    .tuple(intIn(min, max), fc.boolean())
    .map(([b, asNumber]) => (asNumber && b >= -SAFE && b <= SAFE ? Number(b) : b));
}

const SPECIAL_CHARS = [
  'a',
  'b',
  '\0',
  '\x7f',
  '\x80',
  '\xff',
  'é',
  '\u07ff',
  '\u0800',
  '€',
  '\ufeff',
  '\uffff',
  '\u{10000}',
  '😀',
  '\u{10ffff}',
];

/** Well-formed strings: a small alphabet (for ties), specials, and any code point. */
const stringArb = fc.string({
  maxLength: 5,
  unit: fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom('a', 'b') },
    { weight: 2, arbitrary: fc.constantFrom(...SPECIAL_CHARS) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  ),
});

const bytesArb = fc.oneof(
  fc.uint8Array({ maxLength: 5 }),
  fc.array(fc.constantFrom(0, 1, 0xfe, 0xff), { maxLength: 4 }).map((a) => new Uint8Array(a)),
);

type Wrapper = (x: number | bigint) => KeyPart;

function wrapped(kind: Kind, wrap: Wrapper, min: bigint, max: bigint): fc.Arbitrary<Leaf> {
  return numberOrBigint(min, max).map((value) => ({ kind, part: wrap(value), value }));
}

const LEAF: Record<Kind, fc.Arbitrary<Leaf>> = {
  string: stringArb.map((value) => ({ kind: 'string', part: value, value })),
  bytes: bytesArb.map((value) => ({ kind: 'bytes', part: value, value })),
  number: intIn(-SAFE, SAFE).map((b) => {
    const value = Number(b);
    return { kind: 'number', part: value, value };
  }),
  bigint: intIn(INT64_MIN, INT64_MAX).map((value) => ({ kind: 'bigint', part: value, value })),
  boolean: fc.boolean().map((value) => ({ kind: 'boolean', part: value, value })),
  i64: wrapped('i64', i64, INT64_MIN, INT64_MAX),
  i32: wrapped('i32', i32, -(2n ** 31n), 2n ** 31n - 1n),
  i16: wrapped('i16', i16, -32_768n, 32_767n),
  i8: wrapped('i8', i8, -128n, 127n),
  u64: wrapped('u64', u64, 0n, UINT64_MAX),
  u32: wrapped('u32', u32, 0n, 2n ** 32n - 1n),
  u16: wrapped('u16', u16, 0n, 65_535n),
  u8: wrapped('u8', u8, 0n, 255n),
};

const kindArb = fc.constantFrom(...KINDS);
const leafArb: fc.Arbitrary<Leaf> = kindArb.chain((k) => LEAF[k]);

function tupleOf(schema: readonly Kind[]): fc.Arbitrary<Leaf[]> {
  return fc.tuple(...schema.map((k) => LEAF[k]));
}

/** A part tree: leaves nested in arrays, plain objects and embedded keys, with its leaves. */
interface Node {
  readonly part: KeyPart;
  readonly leaves: readonly Leaf[];
}

const nodeArb: fc.Arbitrary<Node> = fc.letrec<{ node: Node }>((tie) => {
  const children = fc.array(tie('node'), { maxLength: 3 });
  const leaves = (ns: readonly Node[]): Leaf[] => ns.flatMap((n) => n.leaves);
  return {
    node: fc.oneof(
      { maxDepth: 3, depthSize: 'small' },
      { weight: 6, arbitrary: leafArb.map((l) => ({ part: l.part, leaves: [l] })) },
      children.map((ns) => ({ part: ns.map((n) => n.part), leaves: leaves(ns) })),
      fc.tuple(children, fc.boolean()).map(([ns, nullProto]) => {
        const o: Record<string, KeyPart> = nullProto ? Object.create(null) : {};
        ns.forEach((n, i) => {
          o[`f${i}`] = n.part;
        });
        return { part: o, leaves: leaves(ns) };
      }),
      children.map((ns) => ({ part: key(...ns.map((n) => n.part)), leaves: leaves(ns) })),
    ),
  };
}).node;

// ---------------------------------------------------------------------------------------
// Reference model

function utf8(s: string): Buffer {
  return Buffer.from(s, 'utf8');
}

/** Length first, then bytes: how length-prefixed strings and byte arrays order. */
function compareLengthThenBytes(a: Uint8Array, b: Uint8Array): number {
  return a.length !== b.length ? a.length - b.length : Buffer.compare(a, b);
}

function compareLeaf(a: Leaf, b: Leaf): number {
  switch (a.kind) {
    case 'string':
      return compareLengthThenBytes(utf8(a.value as string), utf8(b.value as string));
    case 'bytes':
      return compareLengthThenBytes(a.value as Uint8Array, b.value as Uint8Array);
    case 'boolean':
      return Number(a.value) - Number(b.value);
    default: {
      const x = BigInt(a.value as number | bigint);
      const y = BigInt(b.value as number | bigint);
      return x < y ? -1 : x > y ? 1 : 0;
    }
  }
}

/** The documented tuple order: component-major, a proper prefix first. */
function compareTuples(a: readonly Leaf[], b: readonly Leaf[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = compareLeaf(a[i] as Leaf, b[i] as Leaf);
    if (d !== 0) return Math.sign(d);
  }
  return Math.sign(a.length - b.length);
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  return (
    bytes.length >= prefix.length && Buffer.compare(bytes.subarray(0, prefix.length), prefix) === 0
  );
}

const parts = (ls: readonly Leaf[]): KeyPart[] => ls.map((l) => l.part);

// ---------------------------------------------------------------------------------------
// Properties

describe('key codec properties', () => {
  it('(a) compareKeys order equals the documented tuple order for tuples of one schema', () => {
    // Two tuples of the same type schema; the second shares a random-length head with the
    // first (so later components get compared) and may be cut short (prefix order).
    const pairArb = fc.array(kindArb, { minLength: 1, maxLength: 5 }).chain((schema) =>
      fc
        .tuple(
          tupleOf(schema),
          tupleOf(schema),
          // How many leading components b copies from a: mostly fewer than all of them.
          fc.oneof(
            { weight: 4, arbitrary: fc.nat(schema.length - 1) },
            { weight: 1, arbitrary: fc.constant(schema.length) },
          ),
          // Where b is cut short, if it is.
          fc.oneof(
            { weight: 4, arbitrary: fc.constant(null) },
            { weight: 1, arbitrary: fc.nat(schema.length) },
          ),
        )
        .map(([a, b, shared, cut]) => {
          const joined = [...a.slice(0, shared), ...b.slice(shared)];
          return [a, cut === null ? joined : joined.slice(0, Math.max(cut, shared))] as const;
        }),
    );
    fc.assert(
      fc.property(pairArb, ([a, b]) => {
        const ka = key(...parts(a));
        const kb = key(...parts(b));
        const want = compareTuples(a, b);
        assert.equal(compareKeys(ka, kb), want);
        assert.equal(compareKeys(kb, ka), want === 0 ? 0 : -want);
        assert.equal(Math.sign(Buffer.compare(ka.bytes, kb.bytes)), want);
        assert.equal(ka.equals(kb), want === 0);
      }),
      RUNS,
    );
  });

  it('(b) decodeKey(key(...x), types) returns x, through arrays, objects and embedded keys', () => {
    fc.assert(
      fc.property(fc.array(nodeArb, { maxLength: 5 }), (nodes) => {
        const leaves = nodes.flatMap((n) => n.leaves);
        const spec = leaves.map((l) => DECODE_AS[l.kind]);
        const want = leaves.map(expectedDecoded);
        const k = key(...nodes.map((n) => n.part));
        assert.deepEqual(decodeKey(k, spec), want);
        const p = payload(...nodes.map((n) => n.part));
        assert.ok(Buffer.from(p).equals(Buffer.from(k.bytes)));
        assert.deepEqual(decodePayload(p, spec), want);
        assert.ok(toKey(nodes.map((n) => n.part)).equals(k));
        // Flattening: the same leaves spread give the same key.
        assert.ok(key(...parts(leaves)).equals(k));
      }),
      RUNS,
    );
  });

  it('(c) prefixRange(p) holds exactly the keys whose bytes start with p', () => {
    const rawBytes = fc
      .array(fc.constantFrom(0x00, 0x01, 0x61, 0xfe, 0xff), { maxLength: 6 })
      .map((a) => new Uint8Array(a));
    const prefixArb: fc.Arbitrary<Key> = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.array(nodeArb, { maxLength: 3 }).map((ns) => key(...ns.map((n) => n.part))),
      },
      { weight: 1, arbitrary: rawBytes.map(rawKey) },
    );
    const caseArb = fc
      .tuple(prefixArb, fc.array(nodeArb, { maxLength: 3 }))
      .chain(([prefix, tail]) => {
        const p = prefix.bytes;
        const extension = key(prefix, ...tail.map((n) => n.part));
        const ext = extension.bytes;
        const other: fc.Arbitrary<Uint8Array> = fc.oneof(
          // an unrelated key
          fc.array(leafArb, { maxLength: 4 }).map((ls) => key(...parts(ls)).bytes),
          // random raw bytes near the prefix's alphabet
          rawBytes,
          // the extension with one byte changed (inside or outside the prefix)
          fc
            .tuple(fc.nat(Math.max(ext.length - 1, 0)), fc.integer({ min: 0, max: 255 }))
            .map(([i, b]) => {
              const m = ext.slice();
              if (m.length > 0) m[i] = b;
              return m;
            }),
          // the prefix cut short, or with its last byte nudged
          fc.nat(p.length).map((n) => p.slice(0, n)),
          fc.constantFrom(-1, 1).map((d) => {
            const m = p.slice();
            if (m.length > 0) m[m.length - 1] = ((m[m.length - 1] as number) + d) & 0xff;
            return m;
          }),
          // the stop key itself and what extends it
          fc.constant(prefixRange(prefix).stop?.bytes ?? p),
          fc.uint8Array({ maxLength: 2 }).map((t) => {
            const s = prefixRange(prefix).stop?.bytes ?? p;
            return new Uint8Array([...s, ...t]);
          }),
        );
        return fc.tuple(fc.constant(prefix), fc.constant(extension), other);
      });
    fc.assert(
      fc.property(caseArb, ([prefix, extension, other]) => {
        const r = prefixRange(prefix);
        const inRange = (k: Key | Uint8Array): boolean =>
          compareKeys(r.start, k) <= 0 && (r.stop === undefined || compareKeys(k, r.stop) < 0);
        assert.ok(r.start.equals(prefix));
        assert.ok(inRange(extension));
        assert.ok(inRange(prefix));
        assert.equal(inRange(other), startsWith(other, prefix.bytes));
        if (r.stop !== undefined) {
          assert.equal(inRange(r.stop), false);
          assert.equal(compareKeys(prefix, r.stop), -1);
        } else {
          // Open-ended only when no byte can be incremented.
          assert.ok(prefix.bytes.every((b) => b === 0xff));
        }
      }),
      RUNS,
    );
  });

  it('(d) key(...p) sorts before key(...p, ...q) for non-empty q', () => {
    fc.assert(
      fc.property(
        fc.array(nodeArb, { maxLength: 4 }),
        fc.array(leafArb, { minLength: 1, maxLength: 4 }),
        (p, q) => {
          const short = key(...p.map((n) => n.part));
          const long = key(...p.map((n) => n.part), ...parts(q));
          assert.equal(compareKeys(short, long), -1);
          assert.equal(compareKeys(long, short), 1);
          assert.ok(startsWith(long.bytes, short.bytes));
          assert.ok(long.byteLength > short.byteLength);
        },
      ),
      RUNS,
    );
  });

  it('(e) decoding is canonical: whatever decodes re-encodes to the same bytes', () => {
    const encodeAs: Record<PartType, (v: unknown) => KeyPart> = {
      string: (v) => v as string,
      bytes: (v) => v as Uint8Array,
      bool: (v) => v as boolean,
      u8: (v) => u8(v as number),
      i64: (v) => i64(v as bigint),
      u64: (v) => u64(v as bigint),
      number: (v) => v as number,
      i32: (v) => i32(v as number),
      i16: (v) => i16(v as number),
      i8: (v) => i8(v as number),
      u32: (v) => u32(v as number),
      u16: (v) => u16(v as number),
      f64: (v) => f64(v as number),
      text: (v) => text(v as string),
    };
    const types = Object.keys(encodeAs) as PartType[];
    // Bytes made of real encodings, sometimes damaged, read with a random spec.
    const inputArb = fc.tuple(
      fc.array(leafArb, { maxLength: 4 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 2 }),
      fc.array(fc.constantFrom(...types), { maxLength: 5 }),
    );
    fc.assert(
      fc.property(inputArb, ([leaves, damage, spec]) => {
        const bytes = key(...parts(leaves)).bytes;
        for (const [i, b] of damage) if (bytes.length > 0) bytes[i % bytes.length] = b;
        let decoded: unknown[];
        try {
          decoded = decodeKey(bytes, spec);
        } catch (e) {
          assert.ok(e instanceof PersistencyError);
          assert.equal((e as PersistencyError).kind, 'InvalidArgument');
          return;
        }
        const again = key(...decoded.map((v, i) => encodeAs[spec[i] as PartType](v)));
        assert.equal(again.toString(), Buffer.from(bytes).toString('hex'));
      }),
      RUNS,
    );
  });
});
