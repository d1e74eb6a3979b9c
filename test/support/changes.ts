/*
 * Helpers of the issue-15 suites: a clock a test moves (the `clock` option), counters' int64
 * bounds and values, and keys and watch changes as plain data for comparisons.
 */
import { type Change, decodePayload, type Key } from '../../src/index.js';

/** A clock the test moves: pass `now` as the `clock` option. */
export function testClock(start = Date.UTC(2026, 0, 1)): {
  now: () => number;
  advance(ms: number): void;
} {
  let t = start;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
  };
}

/** Bytes, or a key's bytes, in hex. */
export const hex = (k: Key | Uint8Array): string =>
  Buffer.from(k instanceof Uint8Array ? k : k.bytes).toString('hex');

/** A change as plain data, for comparisons. */
export function plain(c: Change): unknown {
  if ('prefix' in c) return { prefix: hex(c.prefix) };
  return { key: hex(c.key), payload: c.payload === undefined ? null : hex(c.payload) };
}

export const INT64_MAX = 2n ** 63n - 1n;
export const INT64_MIN = -(2n ** 63n);

/** A counter's value (its payload `toPayload(i64(n))`), or undefined for no row. */
export const counter = (bytes: Uint8Array | undefined): bigint | undefined =>
  bytes === undefined ? undefined : decodePayload(bytes, 'i64');
