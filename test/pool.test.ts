/*
 * `workerThreads: N` (CONTRACT.md §6): jobs pinned to a pool of threads, served fairly, and
 * a thread that dies takes down only its own jobs. The shared suites (contract, model,
 * fuzz, faults, crash loop, ...) run against this mode too: the `pool` project of
 * vitest.config.ts.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import {
  decodePayload,
  type Job,
  type KvRow,
  key,
  Persistency,
  type PersistencyError,
  type PersistencyOptions,
  payload,
  type TxOp,
} from '../src/index.js';
import { closeJobHandle, crashJobWorker } from '../src/job.js';
import { unwrap, useTempDirs } from './support/env.js';
import { all, ids } from './support/rows.js';

const tempDir = useTempDirs('persistency-pool-');

async function openAll(options: PersistencyOptions, ...ids: string[]) {
  const p = unwrap(Persistency.instance(tempDir(), options));
  const jobs: Job[] = [];
  for (const id of ids) jobs.push(unwrap(await p.openJob(id)));
  return { p, jobs };
}

/**
 * Gets on `other` awaited one after another while `long` runs (the first in the same turn
 * as `long`'s request), then `other` closed: how many of its requests its worker took up
 * while `long`'s work was paused for the other jobs' turns. Counted in the worker, so the
 * order in which this thread happens to read the two jobs' replies does not matter.
 */
async function takenUpDuring(long: Promise<unknown>, other: Job): Promise<number> {
  let finished = false;
  void long.then(() => {
    finished = true;
  });
  do expect(unwrap(await other.get('c', key('k')))).toEqual(payload('other'));
  while (!finished);
  await long;
  const outcome = await closeJobHandle(other);
  return outcome.reads?.besidePaused ?? 0;
}

describe('workerThreads: N', () => {
  it('serves many jobs from N threads, each pinned while open, and counts them', async () => {
    const { p, jobs } = await openAll({ workerThreads: 2 }, ...'abcdef');
    expect(p.stats()).toMatchObject({ openJobs: 6, residentJobs: 6, workerThreads: 2, mode: 2 });
    for (const [i, job] of jobs.entries()) job.persistPut('c', key(i), payload(job.id));
    for (const [i, job] of jobs.entries())
      expect(unwrap(await job.get('c', key(i)))).toEqual(payload(job.id));
    unwrap(await p.closeJob('a'));
    expect(p.stats()).toMatchObject({ openJobs: 5, residentJobs: 5, workerThreads: 2 });
    unwrap(await p.close());
    expect(p.stats()).toMatchObject({ openJobs: 0, residentJobs: 0, workerThreads: 0 });
  });

  it('refuses a workerThreads that is not per-job or 1..256', () => {
    for (const bad of [0, -1, 1.5, 257, 'all', null]) {
      const r = Persistency.instance(tempDir(), { workerThreads: bad as number });
      expect(r.isErr() && r.error.kind).toBe('InvalidArgument');
    }
  });

  describe('fairness: jobs sharing one thread take turns', () => {
    const options: PersistencyOptions = { workerThreads: 1, sliceMs: 1 };

    /** Jobs `big` (`rows` rows in category 's', key i → payload i) and `small` on one thread. */
    async function bigAndSmall(rows: number): Promise<[Job, Job]> {
      const { jobs } = await openAll(options, 'big', 'small');
      const [big, small] = jobs as [Job, Job];
      const ops: TxOp[] = [];
      for (let i = 0; i < rows; i++)
        ops.push({ kind: 'put', category: 's', key: key(i), payload: payload(i) });
      big.persist(ops);
      small.persistPut('c', key('k'), payload('other'));
      unwrap(await big.flush());
      unwrap(await small.flush());
      return [big, small];
    }

    it('a 200,000-row scan on one job does not hold up gets on another', async () => {
      const [big, small] = await bigAndSmall(200_000);
      const scan = big.scan('s', { start: key(0) }).map((rows) => rows.length);
      expect(await takenUpDuring(Promise.resolve(scan), small)).toBeGreaterThan(0);
      expect(unwrap(await scan)).toBe(200_000);
      const outcome = await closeJobHandle(big);
      expect(outcome.reads?.slices).toBeGreaterThan(1);
    });

    it('an iterator page of 65,536 rows on one job does not hold up gets on another', async () => {
      const [big, small] = await bigAndSmall(100_000);
      const it = big.iteratePrefix('s', key(), { pageSize: 65_536 });
      const first = it.next(); // takes the snapshot and reads the first page
      expect(await takenUpDuring(first, small)).toBeGreaterThan(0);
      // The page came in parts: every row, whole and in order.
      const rows = [(await first).value as KvRow, ...(await all(it))];
      expect(ids(rows)).toEqual(Array.from({ length: 100_000 }, (_, i) => i));
      expect(rows.every((row, i) => Number(decodePayload(row.payload, 'i64')) === i)).toBe(true);
      const outcome = await closeJobHandle(big);
      expect(outcome.reads?.slices).toBeGreaterThan(1);
    });

    it('a 100,000-op batch on one job does not hold up gets on another', async () => {
      const { jobs } = await openAll(options, 'big', 'small');
      const [big, small] = jobs as [Job, Job];
      small.persistPut('c', key('k'), payload('other'));
      unwrap(await small.flush());
      const ops: TxOp[] = [];
      for (let i = 0; i < 100_000; i++)
        ops.push({ kind: 'put', category: 's', key: key(i), payload: payload('x'.repeat(50)) });
      big.persist(ops);
      const flushed = big.flush();
      expect(await takenUpDuring(Promise.resolve(flushed), small)).toBeGreaterThan(0);
      unwrap(await flushed);
      expect(unwrap(await big.count('s', { start: key(0) }))).toBe(100_000);
      const outcome = await closeJobHandle(big);
      expect(outcome.reads?.slices).toBeGreaterThan(1);
    });
  });

  it('a write waiting for a lock held elsewhere does not hold up the other jobs of its thread', async () => {
    const { p, jobs } = await openAll({ workerThreads: 1, busyTimeoutMs: 60_000 }, 'held', 'free');
    const [held, free] = jobs as [Job, Job];
    free.persistPut('c', key('k'), payload('other'));
    held.persistPut('c', key(0), payload(0));
    unwrap(await free.flush());
    unwrap(await held.flush());
    // Another connection (a tool writing the file, say) takes the job file's write lock.
    const other = new Database(join(p.rootDir, 'held.db'));
    try {
      other.exec('BEGIN IMMEDIATE');
      held.persistPut('c', key(1), payload(1));
      let settled = false;
      const flushed = Promise.resolve(held.flush()).then((r) => {
        settled = true;
        return r;
      });
      // The held job's commit cannot happen; the free job on the same thread is served.
      for (let i = 0; i < 20; i++)
        expect(unwrap(await free.get('c', key('k')))).toEqual(payload('other'));
      expect(settled).toBe(false);
      other.exec('COMMIT');
      unwrap(await flushed);
    } finally {
      other.close();
    }
    expect(unwrap(await held.get('c', key(1)))).toEqual(payload(1));
  });

  it('a thread that dies takes down its own jobs only', async () => {
    const failed: string[] = [];
    // Pinned to the least loaded thread in turn: a and c share thread 0, b is on thread 1.
    const { p, jobs } = await openAll({ workerThreads: 2 }, 'a', 'b', 'c');
    const bothFailed = new Promise<void>((resolve) =>
      p.events.on('jobFailed', (e) => {
        if (failed.push(e.jobId) === 2) resolve();
      }),
    );
    const [a, b, c] = jobs as [Job, Job, Job];
    for (const job of jobs) job.persistPut('c', key('k'), payload(job.id));
    for (const job of jobs) unwrap(await job.flush());
    const pendingOnC = c.get('c', key('k'));
    crashJobWorker(a, 'exit');
    const r = await pendingOnC;
    // c's get was either answered before the thread died, or fails: it never hangs.
    if (r.isErr()) expect((r.error as PersistencyError).kind).toBe('Backend');
    await bothFailed;
    const read = await a.get('c', key('k'));
    expect(read.isErr() && read.error.kind).toBe('Closed');
    expect(failed.sort()).toEqual(['a', 'c']);
    expect(a.running || c.running).toBe(false);
    expect(p.hasJob('a') || p.hasJob('c')).toBe(false);
    // b, on the other thread, goes on.
    expect(b.running).toBe(true);
    b.persistPut('c', key('k2'), payload('after'));
    expect(unwrap(await b.get('c', key('k2')))).toEqual(payload('after'));
    // The dead jobs open again, on a new thread, with their data.
    const a2 = unwrap(await p.openJob('a'));
    expect(unwrap(await a2.get('c', key('k')))).toEqual(payload('a'));
    expect(p.stats().workerThreads).toBe(2);
  });
});

const ROWS = 1_000_000;

describe('a count or a deletePrefix over a huge range on a shared thread (workerThreads: 1, sliceMs: 1)', () => {
  const options: PersistencyOptions = { workerThreads: 1, sliceMs: 1 };

  const setup = async (): Promise<[Job, Job]> => {
    const p = unwrap(Persistency.instance(tempDir(), options));
    const big = unwrap(await p.openJob('big'));
    const small = unwrap(await p.openJob('small'));
    for (let at = 0; at < ROWS; at += 100_000) {
      const ops: TxOp[] = [];
      for (let i = at; i < at + 100_000; i++)
        ops.push({ kind: 'put', category: 's', key: key(i), payload: payload(i) });
      big.persist(ops);
    }
    small.persistPut('c', key('k'), payload('other'));
    unwrap(await big.flush());
    unwrap(await small.flush());
    return [big, small];
  };

  it('a count over 1,000,000 rows does not hold up gets on another job', async () => {
    const [big, small] = await setup();
    const count = big.count('s', { start: key(0) });
    expect(await takenUpDuring(Promise.resolve(count), small)).toBeGreaterThan(0);
    expect(unwrap(await count)).toBe(ROWS);
  });

  it('a deletePrefix of 1,000,000 rows (one op) does not hold up gets on another job', async () => {
    const [big, small] = await setup();
    big.persistDeletePrefix('s', key());
    const flushed = big.flush();
    expect(await takenUpDuring(Promise.resolve(flushed), small)).toBeGreaterThan(0);
    unwrap(await flushed);
    expect(unwrap(await big.count('s', { start: key(0) }))).toBe(0);
  });

  it('counts and deletes exactly across chunks, leaving the rows around the range', async () => {
    const { jobs } = await openAll({ workerThreads: 1, sliceMs: 1 }, 'exact');
    const job = jobs[0] as Job;
    const ops: TxOp[] = [];
    for (const part of ['a', 'b', 'c'])
      for (let i = 0; i < 10_001; i++)
        ops.push({ kind: 'put', category: 's', key: key(part, i), payload: payload(i) });
    job.persist(ops);
    expect(unwrap(await job.count('s', { start: key('b'), stop: key('c') }))).toBe(10_001);
    expect(unwrap(await job.count('s', { start: key('a', 5) }))).toBe(30_003 - 5);
    // One batch: rows put before the range delete in it are deleted, after it are kept.
    job.persist([
      { kind: 'put', category: 's', key: key('b', -1), payload: payload('before') },
      { kind: 'deletePrefix', category: 's', prefix: key('b') },
      { kind: 'put', category: 's', key: key('b', 7), payload: payload('after') },
    ]);
    expect(unwrap(await job.count('s', { start: key('a') }))).toBe(2 * 10_001 + 1);
    expect(unwrap(await job.get('s', key('b', 7)))).toEqual(payload('after'));
    expect(unwrap(await job.get('s', key('b', -1)))).toBeUndefined();
    expect(unwrap(await job.get('s', key('a', 10_000)))).toEqual(payload(10_000));
    expect(unwrap(await job.get('s', key('c', 0)))).toEqual(payload(0));
  });
});
