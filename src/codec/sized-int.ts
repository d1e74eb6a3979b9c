/*
 * The fixed-width integer wrappers `i64 … u8`: a number or bigint checked against its
 * width's range, encoded in 8 bytes (1 for u8) by the codec.
 */
import { describe } from '../describe.js';
import { invalidArgument } from '../errors.js';

export const TWO_32 = 4294967296;
export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;
export const UINT64_MAX = 2n ** 64n - 1n;
export const SIGN_FLIP = 2n ** 63n;

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

export const WIDTHS: Record<IntWidth, WidthSpec> = {
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
