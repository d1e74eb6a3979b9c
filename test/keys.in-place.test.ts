/*
 * Keys read from a reply or a change keep their bytes where they arrived (a range of a
 * larger buffer) until asked for: every way of reading a Key must see exactly its range.
 */
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  compareKeys,
  decodeKey,
  type Key,
  key,
  Persistency,
  prefixRange,
  rawKey,
  toKey,
} from '../src/index.js';
import { useTempDirs } from './support/env.js';
import { ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-keys-in-place-');

import { adoptKeyAt, keyBytes } from '../src/keys.js';

/** `k`'s bytes placed at `at` of a buffer with foreign bytes on both sides, as a Key there. */
function inPlace(k: Key, at: number, after = 5): Key {
  const b = keyBytes(k);
  const buf = new Uint8Array(at + b.length + after).fill(0xee);
  buf.set(b, at);
  return adoptKeyAt(buf, at, at + b.length);
}

const KEYS: [string, Key][] = [
  ['empty', key()],
  ['a string and an integer', key('channel-7', 42)],
  ['one byte', rawKey(new Uint8Array([9]))],
];

describe('a Key over a range of a larger buffer', () => {
  it.each(
    KEYS.flatMap(([name, k]) => [
      [`${name}, at offset 0 (the buffer is longer)`, k, 0],
      [`${name}, at offset 3`, k, 3],
    ]) as [string, Key, number][],
  )('%s reads as exactly its own bytes', (_name, k, at) => {
    const lazy = inPlace(k, at);
    expect(lazy.byteLength).toBe(k.byteLength);
    expect(lazy.bytes).toEqual(k.bytes);
    expect(String(lazy)).toBe(String(k));
    expect(inspect(lazy)).toBe(inspect(k));
    expect(lazy.equals(k)).toBe(true);
    expect(k.equals(lazy)).toBe(true);
    expect(lazy.equals(inPlace(k, at + 1))).toBe(true);
    expect(lazy.equals(k.bytes)).toBe(true);
    expect(compareKeys(lazy, k)).toBe(0);
    expect(keyBytes(lazy)).toEqual(keyBytes(k));
    // As a part of another key, a prefix and a range bound.
    expect(key(lazy, 'tail').equals(key(k, 'tail'))).toBe(true);
    expect(toKey([lazy]).equals(k)).toBe(true);
    expect(String(prefixRange(lazy).stop)).toBe(String(prefixRange(k).stop));
  });

  it('keeps its length after its view is made, and makes that view once', () => {
    const k = key('channel-7', 42);
    for (const at of [0, 3]) {
      const lazy = inPlace(k, at);
      const first = keyBytes(lazy); // makes the view
      expect(lazy.byteLength).toBe(k.byteLength);
      expect(keyBytes(lazy)).toBe(first);
      expect(lazy.bytes).toEqual(k.bytes);
      expect(String(lazy)).toBe(String(k));
      expect(lazy.byteLength).toBe(k.byteLength);
    }
  });

  it('whose buffer was detached by a transfer: equals answers false, never throws', () => {
    const k = key('gone', 1);
    const n = k.byteLength;
    for (const readFirst of [false, true]) {
      const buf = new Uint8Array(n + 8);
      buf.set(keyBytes(k), 3);
      const lazy = adoptKeyAt(buf, 3, 3 + n);
      if (readFirst) expect(lazy.equals(k)).toBe(true); // its view is made before the detach
      structuredClone(buf.buffer, { transfer: [buf.buffer] });
      expect(buf.length).toBe(0); // detached
      expect(lazy.byteLength).toBe(0);
      expect(lazy.equals(k)).toBe(false);
      expect(k.equals(lazy)).toBe(false);
    }
  });

  it('decodes its parts, not its neighbours', () => {
    const lazy = inPlace(key('c1', 5n), 7);
    expect(decodeKey(lazy, ['string', 'i64'])).toEqual(['c1', 5n]);
  });

  it('is frozen, and its bytes getter is a copy', () => {
    const lazy = inPlace(key('x'), 2);
    expect(Object.isFrozen(lazy)).toBe(true);
    const copy = lazy.bytes;
    copy[0] = 0xff;
    expect(lazy.equals(key('x'))).toBe(true);
  });

  it('orders by its own bytes against keys of other lengths', () => {
    const a = inPlace(key('a'), 4);
    expect(compareKeys(a, key('b'))).toBe(-1);
    expect(compareKeys(key('aa'), a)).toBe(1);
    expect(a.equals(key('a', 0))).toBe(false);
  });
});

describe.each(ROOT_MODES)('keys read back from a job (%s)', (_name, memory, options) => {
  it('scan, iterate and watch give keys equal to the ones written', async () => {
    const p = Persistency.open(memory ? ':memory:' : tempDir(), options)._unsafeUnwrap();
    try {
      const job = (await p.openJob('keys'))._unsafeUnwrap();
      const written = Array.from({ length: 300 }, (_, i) => key('k', i, 'x'.repeat(i % 7)));
      const feed = job.watch('c', prefixRange(key('k')));
      for (const k of written) job.persistPut('c', k, new Uint8Array([1, 2, 3]));
      (await job.flush())._unsafeUnwrap();
      const scanned = (await job.scan('c', prefixRange(key('k'))))._unsafeUnwrap();
      expect(scanned.map((r) => String(r.key))).toEqual(written.map(String));
      expect(scanned.every((r, i) => r.key.equals(written[i] as Key))).toBe(true);
      // After use (equals made their views), as before it.
      expect(scanned.map((r) => r.key.byteLength)).toEqual(written.map((k) => k.byteLength));
      const iterated: Key[] = [];
      for await (const r of job.iterate('c', prefixRange(key('k')), { pageSize: 64 })) {
        iterated.push(r.key);
      }
      expect(iterated.map((k) => k.byteLength)).toEqual(written.map((k) => k.byteLength));
      expect(iterated.every((k, i) => compareKeys(k, written[i] as Key) === 0)).toBe(true);
      const seen: Key[] = [];
      for await (const changes of feed) {
        for (const c of changes) if ('key' in c) seen.push(c.key);
        if (seen.length >= written.length) break;
      }
      expect(seen.map((k) => String(k))).toEqual(written.map(String));
      expect(seen.map((k) => k.byteLength)).toEqual(written.map((k) => k.byteLength));
      expect(seen.map((k) => decodeKey(k, ['string', 'i64', 'string']))).toEqual(
        written.map((k) => decodeKey(k, ['string', 'i64', 'string'])),
      );
    } finally {
      await p.close();
    }
  });
});
