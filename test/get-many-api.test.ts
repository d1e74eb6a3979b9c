/*
 * CONTRACT.md section 8: job.getMany(category, keys) — one call, one request record and one
 * result, answers in the order of the keys, undefined for a miss; duplicates, an empty list
 * and 100,000 keys; the string-id form; both threading modes and `:memory:`. A long list's
 * answer leaves the worker in parts while it reads (CloseOutcome.reads counts them), so the
 * main thread takes it in pieces; a failure after some parts still settles one Err.
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
import { closeJobHandle, injectFault } from '../src/job.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-getmany-');

/** A 100-byte payload that tells `i` apart. */
function hundred(i: number): Uint8Array {
  const b = new Uint8Array(100).fill(i & 0xff);
  b[0] = i >> 8;
  return b;
}

/** 20,000 keys over rows 0..9,999 (present when even): descending, with each 7th repeated. */
function longList(): { keys: Key[]; want: (Uint8Array | undefined)[] } {
  const keys: Key[] = [];
  const want: (Uint8Array | undefined)[] = [];
  for (let j = 0; j < 20_000; j++) {
    const i = j % 7 === 0 ? 42 : 19_999 - j;
    keys.push(key(i));
    want.push(i < 10_000 && i % 2 === 0 ? hundred(i) : undefined);
  }
  return { keys, want };
}

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

  /** Job `id` holding the even rows of 0..9,999 (committed), and longList(). */
  async function filled(id: string) {
    const p = unwrap(Persistency.instance(root(), options));
    const job = unwrap(await p.openJob(id));
    for (let i = 0; i < 10_000; i += 2) job.persistPut('c', key(i), hundred(i));
    unwrap(await job.flush());
    return { job, ...longList() };
  }

  it('sends a long answer in parts while it reads, and settles one result in key order', async () => {
    const { job, keys, want } = await filled('parts');
    const [got, again] = await Promise.all([job.getMany('c', keys), job.getMany('c', keys)]);
    expect(unwrap(got)).toEqual(want);
    expect(unwrap(again)).toEqual(want);
    expect(unwrap(await job.get('c', key(42)))).toEqual(hundred(42));
    const outcome = await closeJobHandle(job);
    // About 1.1 MiB of values each: parts of 64 KiB.
    expect(outcome.reads?.parts).toBeGreaterThanOrEqual(2 * 10);
  });

  it('answers whole, with the write, a getMany after a write of its turn', async () => {
    const { job, keys, want } = await filled('dirty');
    job.persistPut('c', key(19_998), hundred(7)); // the list's second key, not yet committed
    const got = unwrap(await job.getMany('c', keys));
    expect(got).toEqual([want[0], hundred(7), ...want.slice(2)]);
    // Parts leave before the group commits: not while the group holds a write.
    expect((await closeJobHandle(job)).reads?.parts).toBe(0);
  });

  it('answers Err when reading fails after some parts were sent, and answers on', async () => {
    const { job, keys, want } = await filled('fails');
    injectFault(job, 'getMany', 300); // after 300 statements: 9,600 keys, several parts
    const [failed, scan, after] = await Promise.all([
      job.getMany('c', keys),
      job.scan('c', { start: key(0), stop: key(10) }),
      job.getMany('c', keys),
    ]);
    expect(failed.isErr() && failed.error.message).toMatch(/injected fault: getMany/);
    expect(unwrap(scan).map((r) => r.payload)).toEqual([0, 2, 4, 6, 8].map(hundred));
    expect(unwrap(after)).toEqual(want);
    expect((await closeJobHandle(job)).reads?.parts).toBeGreaterThanOrEqual(2);
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
