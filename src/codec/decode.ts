/*
 * Decoding keys and payloads back into their parts, given the parts' types.
 */
import { describe, describeThrown } from '../describe.js';
import { invalidArgument, PersistencyError } from '../errors.js';
import { readU32 } from '../protocol/bytes.js';
import { PartError } from './encode.js';
import { bytesOf, type Key } from './key.js';
import { readF64, readText } from './ordered.js';
import { type IntWidth, SIGN_FLIP, TWO_32, WIDTHS } from './sized-int.js';

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
  f64: number;
  text: string;
}

/**
 * A part type name for {@link decodeKey} and {@link decodePayload}: `'string' 'bytes'
 * 'bool' 'u8' 'i64' 'u64' 'number' 'i32' 'i16' 'i8' 'u32' 'u16' 'f64' 'text'`.
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
      case 'f64': {
        const [x, end] = readF64(buf, this.pos);
        this.pos = end;
        return x;
      }
      case 'text': {
        const [s, end] = readText(buf, this.pos);
        this.pos = end;
        return s;
      }
      default: {
        this.need(8, type);
        const hi = readU32(buf, this.pos);
        const lo = readU32(buf, this.pos + 4);
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
  f64: true,
  text: true,
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
