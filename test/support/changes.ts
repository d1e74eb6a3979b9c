/*
 * Helpers of the issue-15 suites: a clock a test moves (the `clock` option), and keys and
 * watch changes as plain data for comparisons.
 */
import type { Change, Key } from '../../src/index.js';

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
