// Runs of gets read with one statement (KvBackend.getMany): the same answers as one get per
// key, for any bytes, absent keys, duplicates, payloads too long to inline and categories
// that are byte-prefixes of each other; through a job, the worker batches runs of a turn's
// gets, sees the writes issued before them, backs off after large payloads and falls back to
// single gets when the statement fails. CloseOutcome.reads says how many were batched.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { type Job, key, Persistency } from '../src/index.js';
import { closeJobHandle, injectFault } from '../src/job.js';
import { Status } from '../src/protocol/replies.js';
import { GET_MANY_INLINE_BYTES, GET_RUN_MAX, KvBackend } from '../src/worker/backend.js';
import { GET_MANY_MARKERS } from '../src/worker/reads.js';
import { unwrap, useTempDirs } from './support/env.js';
import { mulberry32 } from './support/random.js';

function randomBytes(next: () => number, length: number): Uint8Array {
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i++) b[i] = Math.floor(next() * 256);
  return b;
}

/** What `getMany` must give for one key. */
function expectedRecord(payload: Uint8Array | undefined): number[] {
  if (payload === undefined) return [Status.None];
  if (payload.length > GET_MANY_INLINE_BYTES) return [GET_MANY_MARKERS.large];
  const n = payload.length;
  return [Status.Bytes, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff, ...payload];
}

describe('KvBackend.getMany', () => {
  const root = mkdtempSync(join(tmpdir(), 'persistency-getmany-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const options = { busyTimeoutMs: 0, journalSizeLimitBytes: 1 << 20 };

  it('gives the records of one get per key, in order, for random runs of 2 to 64 keys', () => {
    const seed = 20261121;
    const next = mulberry32(seed);
    const b = KvBackend.open(join(root, 'random.db'), options);
    try {
      // Two categories, one a byte-prefix of the other, holding the same keys.
      const cats = [new Uint8Array([0x61]), new Uint8Array([0x61, 0x62])];
      const stored = cats.map(() => new Map<string, Uint8Array>());
      const keys: Uint8Array[] = [];
      for (let i = 0; i < 300; i++) {
        // Keys of 0 to 12 random bytes (the empty key included), payloads of 0 to 1,100
        // random bytes: NULs, bytes that are not UTF-8, and some over the inline bound.
        const k = randomBytes(next, Math.floor(next() * 13));
        keys.push(k);
        cats.forEach((cat, c) => {
          // The first keys hold payloads at the inline bound exactly: one byte under, at, over.
          if (i >= 3 && next() < 0.25) return; // absent from this category
          const length =
            i < 3
              ? GET_MANY_INLINE_BYTES - 1 + i
              : next() < 0.1
                ? GET_MANY_INLINE_BYTES + Math.floor(next() * 80) - 40
                : Math.floor(next() * 200);
          const p = randomBytes(next, length);
          b.put(cat, k, p);
          (stored[c] as Map<string, Uint8Array>).set(Buffer.from(k).toString('hex'), p);
        });
      }
      const lookup = (c: number, k: Uint8Array) => stored[c]?.get(Buffer.from(k).toString('hex'));
      // The stored rows are what a single get reads.
      for (const [c, cat] of cats.entries()) {
        const mismatches = keys.filter((k) => {
          const want = lookup(c, k);
          const got = b.get(cat, k);
          return want === undefined
            ? got !== undefined
            : got === undefined || Buffer.compare(got, want) !== 0;
        });
        expect(mismatches).toEqual([]);
      }
      for (let run = 0; run < 400; run++) {
        const c = Math.floor(next() * cats.length);
        const n = 2 + Math.floor(next() * (GET_RUN_MAX - 1));
        const args: Uint8Array[] = [];
        const want: number[] = [];
        for (let i = 0; i < n; i++) {
          // Present keys (the first three often), duplicates, and keys no row has.
          const pick = next();
          const k =
            pick < 0.15
              ? randomBytes(next, 14)
              : pick < 0.25
                ? (keys[Math.floor(next() * 3)] as Uint8Array)
                : (keys[Math.floor(next() * keys.length)] as Uint8Array);
          args.push(k);
          want.push(...expectedRecord(lookup(c, k)));
        }
        args.push(cats[c] as Uint8Array);
        const got = b.getMany(args, GET_MANY_MARKERS);
        const what = `seed ${seed} run ${run} (${n} keys)`;
        expect(Buffer.compare(got, Buffer.from(want)), what).toBe(0);
      }
    } finally {
      b.close();
    }
  });

  it('works only where text keeps bytes as they are: not in a UTF-16 file', () => {
    const file = join(root, 'utf16.db');
    const db = new Database(file);
    db.pragma("encoding = 'UTF-16be'");
    db.exec(
      'CREATE TABLE kv (category BLOB NOT NULL, key BLOB NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (category, key)) WITHOUT ROWID',
    ); // the encoding is set once the file has content
    db.close();
    const utf16 = KvBackend.open(file, options);
    const utf8 = KvBackend.open(join(root, 'utf8.db'), options);
    try {
      expect(utf16.canGetMany).toBe(false);
      const args = [new Uint8Array([1]), new Uint8Array([2]), new Uint8Array([9])];
      expect(() => utf16.getMany(args, GET_MANY_MARKERS)).toThrow(/does not work/);
      expect(utf8.canGetMany).toBe(true);
      expect([...utf8.getMany(args, GET_MANY_MARKERS)]).toEqual([Status.None, Status.None]);
    } finally {
      utf16.close();
      utf8.close();
    }
  });

  it('refuses fewer than 2 or more than GET_RUN_MAX keys', () => {
    const b = KvBackend.open(join(root, 'bounds.db'), options);
    try {
      const cat = new Uint8Array([1]);
      const keys = (n: number) => Array.from({ length: n }, (_, i) => new Uint8Array([i]));
      expect(() => b.getMany([...keys(1), cat], GET_MANY_MARKERS)).toThrow(RangeError);
      expect(() => b.getMany([...keys(GET_RUN_MAX + 1), cat], GET_MANY_MARKERS)).toThrow(
        RangeError,
      );
      expect(b.getMany([...keys(GET_RUN_MAX), cat], GET_MANY_MARKERS).length).toBe(GET_RUN_MAX);
    } finally {
      b.close();
    }
  });
});

describe('gets through a job', () => {
  const tempDir = useTempDirs('persistency-getmany-job-');
  const small = (i: number) => new Uint8Array([i & 0xff, (i >> 8) & 0xff, 7]);
  const large = (i: number) => new Uint8Array(GET_MANY_INLINE_BYTES + 1 + (i % 5)).fill(i & 0xff);

  async function open(): Promise<Job> {
    const p = unwrap(Persistency.instance(tempDir()));
    return unwrap(await p.openJob('g'));
  }

  async function batchedOnClose(job: Job): Promise<number> {
    const outcome = await closeJobHandle(job);
    expect(outcome.error).toBeUndefined();
    if (outcome.reads === undefined) throw new Error('the worker reported no read stats');
    return outcome.reads.batched;
  }

  /** Issue the gets of `ids` in one turn; their payloads, in order. */
  async function getAll(job: Job, category: string, ids: number[]) {
    const results = await Promise.all(ids.map((i) => job.get(category, key(i))));
    return results.map((r) => unwrap(r));
  }

  it('answers 256 gets in flight, present, absent and large, mixed with another category', async () => {
    const job = await open();
    for (let i = 0; i < 300; i++) {
      if (i % 7 === 3) continue; // absent
      job.persistPut('c', key(i), i % 11 === 5 ? large(i) : small(i));
      job.persistPut('d', key(i), small(i + 1));
    }
    unwrap(await job.flush());
    const next = mulberry32(7);
    for (let round = 0; round < 8; round++) {
      const ids = Array.from({ length: 256 }, () => Math.floor(next() * 320));
      // Every 10th get goes to the other category: runs break there and start again.
      const results = await Promise.all(
        ids.map((i, j) => (j % 10 === 9 ? job.get('d', key(i)) : job.get('c', key(i)))),
      );
      results.forEach((r, j) => {
        const i = ids[j] as number;
        const want =
          i >= 300 || i % 7 === 3
            ? undefined
            : j % 10 === 9
              ? small(i + 1)
              : i % 11 === 5
                ? large(i)
                : small(i);
        expect(unwrap(r), `round ${round} get ${j} of key ${i}`).toEqual(want);
      });
    }
    // Runs of 9 gets of one category (between the other category's) are long enough; a
    // large payload (1 key in 11) stops its run and makes the next 64 or more gets go alone.
    expect(await batchedOnClose(job)).toBeGreaterThan(100);
  });

  it('sees the writes issued before it in the same turn, and not those after', async () => {
    const job = await open();
    for (let i = 0; i < 20; i++) job.persistPut('c', key(i), small(i));
    unwrap(await job.flush());
    const ids = Array.from({ length: 20 }, (_, i) => i);
    const before = ids.map((i) => job.get('c', key(i)));
    for (const i of ids) job.persistPut('c', key(i), small(i + 1000));
    job.persistDelete('c', key(4));
    const after = ids.map((i) => job.get('c', key(i)));
    for (const i of ids) job.persistPut('c', key(i), small(i + 2000));
    const [b, a] = await Promise.all([Promise.all(before), Promise.all(after)]);
    expect(b.map((r) => unwrap(r))).toEqual(ids.map((i) => small(i)));
    expect(a.map((r) => unwrap(r))).toEqual(
      ids.map((i) => (i === 4 ? undefined : small(i + 1000))),
    );
    expect(await batchedOnClose(job)).toBe(40);
  });

  it('stops a run at a large payload, then reads one by one for a while', async () => {
    const job = await open();
    for (let i = 0; i < 64; i++) job.persistPut('big', key(i), large(i));
    for (let i = 0; i < 128; i++) job.persistPut('c', key(i), small(i));
    unwrap(await job.flush());
    const range = (n: number) => Array.from({ length: n }, (_, i) => i);
    // One frame of 32 large gets: the run stops at the first, which is read alone, and so
    // are the 31 after it and the next 33 (64 in all after the run stopped).
    expect(await getAll(job, 'big', range(32))).toEqual(range(32).map(large));
    expect(await getAll(job, 'c', range(33))).toEqual(range(33).map(small));
    // Then one run again.
    expect(await getAll(job, 'c', range(32))).toEqual(range(32).map(small));
    expect(await batchedOnClose(job)).toBe(32);
  });

  it('answers the gets before a large payload from the run and the rest one by one', async () => {
    const job = await open();
    for (let i = 0; i < 32; i++) job.persistPut('c', key(i), i === 10 ? large(i) : small(i));
    unwrap(await job.flush());
    const range = (n: number) => Array.from({ length: n }, (_, i) => i);
    expect(await getAll(job, 'c', range(32))).toEqual(
      range(32).map((i) => (i === 10 ? large(i) : small(i))),
    );
    expect(await batchedOnClose(job)).toBe(10);
  });

  it('reads one by one when the statement fails, with the same answers', async () => {
    const job = await open();
    for (let i = 0; i < 40; i++) if (i % 3 !== 0) job.persistPut('c', key(i), small(i));
    unwrap(await job.flush());
    const ids = Array.from({ length: 32 }, (_, i) => i + 4);
    const want = ids.map((i) => (i % 3 === 0 ? undefined : small(i)));
    injectFault(job, 'getMany');
    // The failed run's first get is read alone, then the next 64 gets (31 + 33).
    expect(await getAll(job, 'c', ids)).toEqual(want);
    expect(await getAll(job, 'c', [...ids, 3])).toEqual([...want, undefined]);
    expect(await getAll(job, 'c', ids)).toEqual(want);
    // Only the last turn was batched.
    expect(await batchedOnClose(job)).toBe(32);
  });

  it('reads one by one, with exact bytes, in a job file whose text is UTF-16', async () => {
    // A file made by another tool: the statement's text would change the bytes there.
    const root = tempDir();
    const db = new Database(join(root, 'g.db'));
    db.pragma("encoding = 'UTF-16le'");
    db.exec(
      'CREATE TABLE kv (category BLOB NOT NULL, key BLOB NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (category, key)) WITHOUT ROWID',
    );
    db.pragma('user_version = 1');
    db.close();
    const job = unwrap(await unwrap(Persistency.instance(root)).openJob('g'));
    const stored = (i: number) => new Uint8Array([3, 0x41, 0x42, 0x43, 0, 0xff, i]);
    for (let i = 0; i < 40; i++) job.persistPut('c', key(i), stored(i));
    unwrap(await job.flush());
    const ids = Array.from({ length: 32 }, (_, i) => i);
    expect(await getAll(job, 'c', ids)).toEqual(ids.map(stored));
    expect(await batchedOnClose(job)).toBe(0);
  });

  it('leaves runs shorter than the minimum to single gets', async () => {
    const job = await open();
    for (let i = 0; i < 10; i++) job.persistPut('c', key(i), small(i));
    unwrap(await job.flush());
    // Runs of 5, broken by another category's get, then a run of 6.
    const gets = [
      ...[0, 1, 2, 3, 4].map((i) => job.get('c', key(i))),
      job.get('d', key(0)),
      ...[5, 6, 7, 8, 9, 0].map((i) => job.get('c', key(i))),
    ];
    const results = (await Promise.all(gets)).map((r) => unwrap(r));
    expect(results).toEqual([
      ...[0, 1, 2, 3, 4].map(small),
      undefined,
      ...[5, 6, 7, 8, 9, 0].map(small),
    ]);
    expect(await batchedOnClose(job)).toBe(6);
  });
});
