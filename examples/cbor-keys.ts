/*
 * Bring your own key encoding: CBOR bytes (cbor-x) wrapped with rawKey, stored and scanned
 * beside the built-in codec. SQLite orders keys by their bytes, so an encoding gives exactly
 * the order its bytes give, no more: this example writes the same values under each
 * encoding in a shuffled order, scans them back, and prints the order that comes out.
 * (If cbor-x ever encodes differently, the example stops and says which claim broke.)
 *
 *   npm run example:cbor            # root ./data/cbor-keys
 *   npm run example:cbor -- /tmp/x  # another root
 */
import { decode, encode } from 'cbor-x';
import type { Result } from 'neverthrow';
import {
  decodeKey,
  decodePayload,
  type Job,
  type Key,
  key,
  Persistency,
  PersistencyError,
  payload,
  rawKey,
} from '../src/index.js';

const root = process.argv[2] ?? './data/cbor-keys';

type Scalar = number | bigint | string;
type Value = Scalar | readonly Scalar[];

interface Encoding {
  readonly name: string;
  /** Throws (InvalidArgument) for a value the encoding refuses. */
  readonly key: (v: Value) => Key;
}

const utf8 = new TextEncoder();
const hex = (b: Uint8Array): string =>
  Buffer.from(b)
    .toString('hex')
    .replace(/(..)(?!$)/g, '$1 ');
const show = (v: Value): string =>
  typeof v === 'bigint'
    ? `${v}n`
    : typeof v === 'number'
      ? String(v)
      : JSON.stringify(v, (_, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x));

const builtIn: Encoding = {
  name: 'built-in key(v)',
  key: (v) => (Array.isArray(v) ? key(...(v as Scalar[])) : key(v as Scalar)),
};
const cborItem: Encoding = { name: 'CBOR rawKey(encode(v))', key: (v) => rawKey(encode(v)) };
const cborSequence: Encoding = {
  name: 'CBOR sequence of items',
  key: (v) => rawKey(Buffer.concat((v as readonly Scalar[]).map((x) => encode(x)))),
};
const rawUtf8: Encoding = {
  name: 'raw UTF-8 bytes',
  key: (v) => rawKey(utf8.encode(v as string)),
};

/** JavaScript's own order: numeric for numbers and bigints, code units for strings. */
function natural(a: Scalar, b: Scalar): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Tuple order: component by component, a tuple before every tuple that extends it. */
function tupleOrder(a: readonly Scalar[], b: readonly Scalar[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const d = natural(a[i] as Scalar, b[i] as Scalar);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

function unwrap<T>(r: Result<T, PersistencyError>): T {
  if (r.isErr()) throw r.error;
  return r.value;
}

const p = Persistency.instance(root)._unsafeUnwrap();
// The values are the demo: start from nothing, whatever an earlier run left.
unwrap(await p.dropJob('cbor-keys'));
const job: Job = unwrap(await p.openJob('cbor-keys'));

function step(title: string): void {
  console.log(`\n== ${title}`);
}

let section = 0;

/**
 * Store `values` (in the order given) under each encoding in a category of its own, scan
 * each category in key order, print that order and whether it is the `wanted` order, and
 * check it against what the text of this example claims (`expect`).
 */
async function compare<V extends Value>(
  values: readonly V[],
  wanted: { readonly name: string; readonly order: (a: V, b: V) => number },
  encodings: readonly { readonly encoding: Encoding; readonly expect: boolean }[],
  heading = 'inserted in this order',
): Promise<Map<Encoding, string>> {
  section++;
  console.log(`  ${heading}: ${values.map(show).join(', ')}`);
  const categories = new Map<Encoding, string>();
  for (const { encoding, expect } of encodings) {
    const category = `s${section}/${encoding.name}`;
    categories.set(encoding, category);
    const accepted: V[] = [];
    const refused: string[] = [];
    for (const v of values) {
      let k: Key;
      try {
        k = encoding.key(v);
      } catch (e) {
        if (!(e instanceof PersistencyError)) throw e;
        refused.push(`${show(v)} (${e.kind})`);
        continue;
      }
      accepted.push(v);
      job.persistPut(category, k, payload(show(v)));
    }
    const rows = unwrap(await job.scan(category, { start: key() }));
    const order = rows.map((row) => decodePayload(row.payload, 'string'));
    const sorted = [...accepted].sort(wanted.order).map(show);
    const holds = order.length === sorted.length && order.every((s, i) => s === sorted[i]);
    console.log(`  ${encoding.name.padEnd(24)} ${order.join(' < ')}`);
    console.log(`  ${''.padEnd(24)} ${wanted.name}: ${holds ? 'yes' : 'no'}`);
    if (refused.length > 0) console.log(`  ${''.padEnd(24)} refused: ${refused.join(', ')}`);
    if (holds !== expect) {
      throw new Error(
        `${encoding.name} ${holds ? 'keeps' : 'breaks'} ${wanted.name} for ${values.map(show).join(', ')}, unlike what this example explains`,
      );
    }
  }
  return categories;
}

const numeric = { name: 'numeric order', order: natural };

step('integers within ±2^32');
await compare([1000000, -2, 24, 0, -1000, 255, 23, -1, 256, 1], numeric, [
  { encoding: builtIn, expect: true },
  { encoding: cborItem, expect: false },
]);
await compare(
  [1000000, 24, 0, 255, 23, 256, 1],
  numeric,
  [{ encoding: cborItem, expect: true }],
  'the non-negative ones alone',
);
console.log(
  `  why: CBOR keeps the sign in the major type. Non-negative integers use the shortest head,
       which grows with the value (0 → ${hex(encode(0))}, 23 → ${hex(encode(23))}, 24 → ${hex(encode(24))}, 256 → ${hex(encode(256))}),
       so they alone sort numerically. A negative n is stored as -1-n under major type 1
       (-1 → ${hex(encode(-1))}, -1000 → ${hex(encode(-1000))}): after every non-negative, largest magnitude last.
       The built-in codec writes 8 bytes with the sign bit flipped (-1 → ${hex(key(-1).bytes)}, 0 → ${hex(key(0).bytes)}).`,
);

step('integers from 2^32 on, and bigints');
await compare([2 ** 40, 7, 2 ** 32, 5n, 2 ** 32 - 1, 100n], numeric, [
  { encoding: builtIn, expect: true },
  { encoding: cborItem, expect: false },
]);
await compare(
  [2 ** 40, 7, 2 ** 32, 2 ** 32 - 1],
  numeric,
  [{ encoding: cborItem, expect: true }],
  'the numbers alone',
);
console.log(
  `  why: cbor-x writes a number from 2^32 on as a float64 (2^32 → ${hex(encode(2 ** 32))}), which
       still sorts after the integers, but every bigint as a full 8-byte integer (5n → ${hex(encode(5n))}),
       which sorts between 2^32-1 and 2^32. And one integer has two CBOR keys:
       encode(5) = ${hex(encode(5))} vs encode(5n) = ${hex(encode(5n))}, while key(5).equals(key(5n)) is ${key(5).equals(key(5n))}.`,
);

step('non-integers');
await compare([1000, 1.5, -0.5, 0.25, 3, -2.5], numeric, [
  { encoding: builtIn, expect: true },
  { encoding: cborItem, expect: false },
]);
await compare(
  [1.5, 1e300, 0.25, 1e-9, 2.75],
  numeric,
  [{ encoding: cborItem, expect: true }],
  'positive floats alone',
);
console.log(
  `  why: CBOR floats are major type 7, the last one: 0.25 → ${hex(encode(0.25))} sorts after every integer.
       Positive floats sort among themselves (IEEE 754 bits grow with the value); the sign bit
       puts negatives after them, largest magnitude last (-0.5 → ${hex(encode(-0.5))}).
       The built-in codec refuses a non-integer rather than order it wrongly.`,
);

step('strings of different lengths');
await compare(
  ['b', 'aa', 'ab', '', 'a', 'ba', 'abc'],
  { name: 'alphabetical order', order: natural },
  [
    { encoding: builtIn, expect: false },
    { encoding: cborItem, expect: false },
    { encoding: rawUtf8, expect: true },
  ],
);
console.log(
  `  why: both codecs put the length first ("b" → CBOR ${hex(encode('b'))}, built-in ${hex(key('b').bytes)};
       "aa" → CBOR ${hex(encode('aa'))}, built-in ${hex(key('aa').bytes)}), so a shorter string sorts first.
       CBOR does not lift the built-in codec's caveat. Bare UTF-8 bytes sort alphabetically
       (by code point) but carry no length, so nothing can follow them in a key: "a" + "b" and
       "ab" are the same bytes. Use them as a key's last part, or escape and terminate them.`,
);

step('tuples: CBOR arrays vs a CBOR sequence (items written one after another)');
const tuples: (readonly Scalar[])[] = [
  ['b', 1],
  ['a', 10],
  ['a', 2],
  ['a'],
  ['a', 1, 'x'],
  ['a', 1],
];
const categories = await compare(tuples, { name: 'tuple order', order: tupleOrder }, [
  { encoding: builtIn, expect: true },
  { encoding: cborItem, expect: false },
  { encoding: cborSequence, expect: true },
]);
for (const encoding of [builtIn, cborItem, cborSequence]) {
  const category = categories.get(encoding) as string;
  const rows = unwrap(await job.scanPrefix(category, encoding.key(['a'])));
  console.log(
    `  scanPrefix(${encoding.name} of ["a"]) -> ${rows.length} row${rows.length === 1 ? '' : 's'}: ${rows
      .map((row) => decodePayload(row.payload, 'string'))
      .join(' ')}`,
  );
}
const [firstArray] = unwrap(
  await job.scan(categories.get(cborItem) as string, { start: key() }, { limit: 1 }),
);
const [firstBuiltIn] = unwrap(
  await job.scan(categories.get(builtIn) as string, { start: key() }, { limit: 1 }),
);
console.log(
  `  why: a CBOR array starts with its element count (["a",1] → ${hex(encode(['a', 1]))}, ["a"] → ${hex(encode(['a']))}):
       arrays sort by length first, and ["a"] is no byte prefix of ["a",1]. Items written one
       after another stay self-delimiting, so a sequence sorts component by component and
       prefix scans work, with each component in its own CBOR order (see above).
  what CBOR adds: keys that describe themselves. decode(key.bytes) of the first array row
       gives ${show(decode(firstArray?.key.bytes ?? new Uint8Array()) as Value)}; the built-in codec needs the types:
       decodeKey(k, 'string') gives ${JSON.stringify(firstBuiltIn === undefined ? null : decodeKey(firstBuiltIn.key, 'string'))}.`,
);

step('summary');
console.log(`  CBOR keys (cbor-x) give: numeric order for integers 0 … 2^32-1 and for positive floats
    among themselves; tuple order and prefix scans when a tuple is written as a sequence
    of items; keys that decode without a spec; floats as key parts.
  They do not give: order across the sign (negatives after positives, in reverse), order
    between integers and floats, order of numbers from 2^32 on against bigints, one key per
    integer (5 and 5n differ), alphabetical strings (length first, as in the built-in codec),
    nor order or prefix scans for tuples written as arrays.
  The built-in codec gives numeric order across the sign for every int64, one key per
    integer, tuple order and prefix scans; it refuses floats; its strings sort length first.`);

const closed = await p.close();
console.log(`\nclose -> ${closed.isOk() ? 'Ok' : `Err ${closed.error.message}`}`);
