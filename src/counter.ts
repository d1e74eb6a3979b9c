/*
 * Counters (`add`): a counter's payload is `toPayload(i64(n))`, 8 bytes big-endian with the
 * sign bit flipped, so counters sort in numeric order when used as keys elsewhere. Shared
 * by the main thread (a delta's bytes) and the worker (the sum, inside SQLite).
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

/** The value of a counter's payload (8 bytes). */
export function counterValue(bytes: Uint8Array): bigint {
  const view = new DataView(bytes.buffer, bytes.byteOffset, COUNTER_BYTES);
  return BigInt.asIntN(64, view.getBigUint64(0) ^ SIGN_FLIP);
}

/** Whether `n` fits an int64. */
export function inInt64(n: bigint): boolean {
  return n >= INT64_MIN && n <= INT64_MAX;
}

/**
 * The payload `stored + delta` (both counter payloads); throws an error with code
 * COUNTER_OVERFLOW when the sum leaves int64, NOT_A_COUNTER when `stored` is not 8 bytes.
 */
export function addToCounter(stored: Uint8Array, delta: Uint8Array): Uint8Array {
  if (stored.length !== COUNTER_BYTES) {
    throw Object.assign(
      new Error(
        `add: the stored payload of ${stored.length} bytes is not a counter (8 bytes of i64)`,
      ),
      { code: NOT_A_COUNTER },
    );
  }
  const sum = counterValue(stored) + counterValue(delta);
  if (!inInt64(sum)) {
    throw Object.assign(new Error(`add: counter overflow (${sum} is outside int64)`), {
      code: COUNTER_OVERFLOW,
    });
  }
  return counterBytes(sum);
}
