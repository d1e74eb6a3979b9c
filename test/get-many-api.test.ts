/*
 * CONTRACT.md section 8: job.getMany(category, keys) — one call, one request record and one
 * reply record, answers in the order of the keys, undefined for a miss; duplicates, an
 * empty list and 100,000 keys; the string-id form; both threading modes and `:memory:`.
 */
import { describe, expect, it } from 'vitest';
import {
  type Key,
  key,
  Persistency,
  type PersistencyOptions,
  payload,
  rawKey,
} from '../src/index.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-getmany-');

describe.each<[string, () => string, PersistencyOptions]>([
  ['file, per-job', () => tempDir(), { workerThreads: 'per-job' }],
  ['file, 2 threads', () => tempDir(), { workerThreads: 2 }],
  [':memory:, 2 threads', () => ':memory:', { workerThreads: 2 }],
])('getMany (%s)', (_name, root, options) => {
  it('answers in the order of the keys, undefined for misses, duplicates and large payloads too', async () => {
    const p = unwrap(Persistency.instance(root(), options));
    const job = unwrap(await p.openJob('g'));
    for (let i = 0; i < 100; i += 2) job.persistPut('c', key(i), payload(i));
    const large = new Uint8Array(100_000).fill(7); // too long to gather in one statement
    job.persistPut('c', key(1), large);
    job.persistPut('other', key(3), payload('other category'));
    // Issued in the same turn as the writes: it sees them.
    const asked = [key(4), key(3), key(1), key(4), key(98), key(99), key(0), key(1)];
    const got = unwrap(await job.getMany('c', asked));
    expect(got).toEqual([
      payload(4),
      undefined,
      large,
      payload(4),
      payload(98),
      undefined,
      payload(0),
      large,
    ]);
    expect(unwrap(await job.getMany('c', []))).toEqual([]);
    expect(unwrap(await p.getMany('g', 'c', [key(2)]))).toEqual([payload(2)]);
    const notOpen = await p.getMany('nope', 'c', [key(2)]);
    expect(notOpen.isErr() && notOpen.error.kind).toBe('JobNotFound');
  });

  it('reads 100,000 keys in one call, each the same as its get', async () => {
    const p = unwrap(Persistency.instance(root(), options));
    const job = unwrap(await p.openJob('many'));
    for (let i = 0; i < 100_000; i += 3) job.persistPut('c', key(i), payload(i));
    const keys: Key[] = [];
    for (let i = 99_999; i >= 0; i--) keys.push(key(i)); // in reverse: order is the caller's
    const got = unwrap(await job.getMany('c', keys));
    expect(got).toHaveLength(100_000);
    for (let j = 0; j < keys.length; j++) {
      const i = 99_999 - j;
      if (i % 3 === 0) expect(got[j]).toEqual(payload(i));
      else expect(got[j]).toBeUndefined();
    }
  });

  it('refuses what is not a list of Keys, or a bad category, as InvalidArgument', async () => {
    const p = unwrap(Persistency.instance(root(), options));
    const job = unwrap(await p.openJob('bad'));
    const cases: unknown[] = [undefined, 'k', [key(1), 'k'], [new Uint8Array(1)], { length: 1 }];
    for (const keys of cases) {
      const r = await job.getMany('c', keys as Key[]);
      expect(r.isErr() && r.error.kind).toBe('InvalidArgument');
    }
    const r = await job.getMany('', [key(1)]);
    expect(r.isErr() && r.error.kind).toBe('InvalidArgument');
    // A raw empty key is a key like any other.
    job.persistPut('c', rawKey(new Uint8Array(0)), payload('empty key'));
    expect(unwrap(await job.getMany('c', [rawKey(new Uint8Array(0))]))).toEqual([
      payload('empty key'),
    ]);
  });
});
