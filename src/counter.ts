/*
 * Counters (`add`): a counter's payload is `toPayload(i64(n))`, 8 bytes big-endian with the
 * sign bit flipped, so counters sort in numeric order when used as keys elsewhere. Shared
 * by the main thread (a delta's bytes) and the worker (the sum).
 */
import { INT64_MAX, INT64_MIN, SIGN_FLIP } from './codec/sized-int.js';

export const COUNTER_BYTES = 8;

/** Thrown inside the worker when an add cannot be applied; `code` says why. */
export const COUNTER_OVERFLOW = 'COUNTER_OVERFLOW';
export const NOT_A_COUNTER = 'NOT_A_COUNTER';

/** The payload of counter value `n` (an int64). */
export function counterBytes(n: bigint): Uint8Array {
  const out = new Uint8Array(COUNTER_BYTES);
  new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, n) ^ SIGN_FLIP);
  return out;
}

/** Whether `n` fits an int64. */
export function inInt64(n: bigint): boolean {
  return n >= INT64_MIN && n <= INT64_MAX;
}

const TWO_32 = 4294967296;

/** An error that fails an add (see counterFailure in src/worker/apply-ops.ts). */
function failure(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** The big-endian u32 at `i`. */
function u32(b: Uint8Array, i: number): number {
  return (
    (b[i] as number) * 0x1000000 +
    (((b[i + 1] as number) << 16) | ((b[i + 2] as number) << 8) | (b[i + 3] as number))
  );
}

/**
 * `stored + delta` (absent: `delta`), both counter payloads, into `out` (8 bytes), in two
 * 32-bit halves (no BigInt); throws an error with code COUNTER_OVERFLOW when the sum leaves
 * int64, NOT_A_COUNTER when `stored` is not 8 bytes.
 */
export function sumInto(out: Uint8Array, stored: Uint8Array | null, delta: Uint8Array): Uint8Array {
  if (stored === null) {
    out.set(delta);
    return out;
  }
  if (stored.length !== COUNTER_BYTES) {
    throw failure(
      NOT_A_COUNTER,
      `add: the stored payload of ${stored.length} bytes is not a counter (8 bytes of i64)`,
    );
  }
  const a = stored;
  const d = delta;
  // High halves as signed 32-bit numbers (their sign bit flipped back), low halves unsigned.
  let top = (u32(a, 0) ^ 0x80000000) + (u32(d, 0) ^ 0x80000000);
  let lo = u32(a, 4) + u32(d, 4);
  if (lo >= TWO_32) {
    lo -= TWO_32;
    top += 1;
  }
  if (top > 0x7fffffff || top < -0x80000000) {
    throw failure(COUNTER_OVERFLOW, 'add: counter overflow (the sum is outside int64)');
  }
  const h = (top ^ 0x80000000) >>> 0;
  out[0] = h >>> 24;
  out[1] = (h >>> 16) & 0xff;
  out[2] = (h >>> 8) & 0xff;
  out[3] = h & 0xff;
  out[4] = lo >>> 24;
  out[5] = (lo >>> 16) & 0xff;
  out[6] = (lo >>> 8) & 0xff;
  out[7] = lo & 0xff;
  return out;
}
