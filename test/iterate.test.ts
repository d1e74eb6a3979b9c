/*
 * CONTRACT.md section 8: job.iterate / iteratePrefix — lazy pages, a snapshot as of the
 * first next() (later writes unseen across many pages), `break` lets go of it at once, a
 * failure rejects next(), closing the job ends it with Err(Closed), many at once on one job
 * and on several; in both threading modes, on file and `:memory:` roots.
 */
import { readdirSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import {
  decodeKey,
  decodePayload,
  type Job,
  type KvRow,
  key,
  Persistency,
  type PersistencyOptions,
  payload,
  prefixRange,
} from '../src/index.js';
import { crashJobWorker, injectFault, jobClient } from '../src/job.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES, ROOT_MODES, rejection } from './support/modes.js';
import { all, ids } from './support/rows.js';

const tempDir = useTempDirs('persistency-iterate-');

describe.each(ROOT_MODES)('iterate (%s)', (_name, memory, options) => {
  const open = async (extra: PersistencyOptions = {}) => {
    const p = unwrap(Persistency.open(memory ? ':memory:' : tempDir(), { ...options, ...extra }));
    return { p, job: unwrap(await p.openJob('it')) };
  };

  it('reads what scan reads: ranges, prefixes, reverse, limit, after, any page size', async () => {
    const { p, job } = await open();
    for (let i = 0; i < 300; i++) job.persistPut('c', key(i), payload(i));
    job.persistPut('d', key(5), payload('other category'));
    await fc.assert(
      fc.asyncProperty(
        fc.nat(310),
        fc.option(fc.nat(310), { nil: undefined }),
        fc.boolean(),
        fc.option(fc.nat(320), { nil: undefined }),
        fc.option(fc.nat(310), { nil: undefined }),
        fc.integer({ min: 1, max: 70 }),
        async (from, to, reverse, limit, after, pageSize) => {
          const range = { start: key(from), stop: to === undefined ? undefined : key(to) };
          const scanOptions = {
            reverse,
            ...(limit !== undefined && { limit }),
            ...(after !== undefined && { after: key(after) }),
          };
          const want = unwrap(await job.scan('c', range, scanOptions));
          const got = await all(job.iterate('c', range, { ...scanOptions, pageSize }));
          expect(ids(got)).toEqual(ids(want));
          expect(got.map((r) => r.payload)).toEqual(want.map((r) => r.payload));
        },
      ),
      { numRuns: 40 },
    );
    expect(ids(await all(job.iteratePrefix('c', key(), { reverse: true, limit: 3 })))).toEqual([
      299, 298, 297,
    ]);
    expect(await all(job.iteratePrefix('none', key()))).toEqual([]);
    unwrap(await p.close());
  });

  it('sees every write issued before its first next(), none issued after, across many pages', async () => {
    const { p, job } = await open();
    for (let i = 0; i < 3000; i += 2) job.persistPut('c', key(i), payload(i));
    const it = job.iteratePrefix('c', key(), { pageSize: 16 });
    job.persistPut('c', key(1), payload('issued before the first next()'));
    const asked = it.next();
    job.persistPut('c', key(5), payload('issued right after it, in the same turn'));
    expect(ids([(await asked).value as KvRow])).toEqual([0]);
    // Writes issued while it runs, all over its range, committed and flushed.
    job.persistPut('c', key(3), payload('new'));
    job.persist([{ kind: 'delete', category: 'c', key: key(2998) }]);
    let seen = [0];
    for await (const row of it) {
      seen.push(ids([row])[0] as number);
      if (seen.length % 100 === 0) {
        job.persistPut('c', key(seen.length * 2 + 1), payload('new'));
        job.persist([{ kind: 'deletePrefix', category: 'c', prefix: key(seen.length * 2 + 2) }]);
        unwrap(await job.flush());
      }
    }
    const want = [0, 1, ...Array.from({ length: 1499 }, (_, i) => 2 * (i + 1))];
    expect(seen).toEqual(want);
    // The writes are there for the next snapshot.
    seen = ids(await all(job.iteratePrefix('c', key())));
    expect(seen).toContain(3);
    expect(seen).toContain(5);
    expect(seen).not.toContain(2998);
    unwrap(await p.close());
  });

  it('break lets go of the snapshot at once; an ended iterator stays done', async () => {
    const { p, job } = await open();
    for (let i = 0; i < 100; i++) job.persistPut('c', key(i), payload(i));
    const client = jobClient(job);
    const it = job.iteratePrefix('c', key(), { pageSize: 10 });
    let n = 0;
    for await (const _ of it) {
      expect(client.holds.count).toBe(1);
      if (++n === 15) break;
    }
    expect(client.holds.count).toBe(0);
    expect(await it.next()).toEqual({ done: true, value: undefined });
    // Run to the end, the worker ends it by itself with its last page.
    const whole = job.iteratePrefix('c', key(), { pageSize: 10 });
    expect(await all(whole)).toHaveLength(100);
    expect(client.holds.count).toBe(0);
    unwrap(await p.close());
  });

  it('closing the job ends an open iterator with Err(Closed); one not begun as well', async () => {
    const { p, job } = await open();
    for (let i = 0; i < 100; i++) job.persistPut('c', key(i), payload(i));
    const it = job.iteratePrefix('c', key(), { pageSize: 5 });
    expect((await it.next()).done).toBe(false);
    const later = job.iteratePrefix('c', key());
    unwrap(await p.closeJob('it'));
    expect((await rejection(it)).kind).toBe('Closed');
    expect((await rejection(later)).kind).toBe('Closed');
    expect(await it.next()).toEqual({ done: true, value: undefined });
    unwrap(await p.close());
  });

  it('a failure rejects next(): bad arguments, and the job worker dying', async () => {
    const { p, job } = await open();
    for (let i = 0; i < 100; i++) job.persistPut('c', key(i), payload(i));
    for (const bad of [
      job.iterate('c', key(1) as never),
      job.iterate('', prefixRange(key())),
      job.iteratePrefix('c', key(), { pageSize: 0 }),
      job.iteratePrefix('c', key(), { pageSize: 65_537 }),
      job.iteratePrefix('c', key(), { limit: -1 }),
    ]) {
      const e = await rejection(bad);
      expect(e.kind).toBe('InvalidArgument');
      expect(await bad.next()).toEqual({ done: true, value: undefined });
    }
    const it = job.iteratePrefix('c', key(), { pageSize: 5 });
    expect((await it.next()).done).toBe(false);
    crashJobWorker(job);
    const e = await rejection(it);
    expect(['Backend', 'Closed']).toContain(e.kind);
    expect(await it.next()).toEqual({ done: true, value: undefined });
    unwrap(await p.close());
  });

  it('many iterators at once on one job and on several, each its own snapshot', async () => {
    const p = unwrap(Persistency.open(memory ? ':memory:' : tempDir(), options));
    const jobs: Job[] = [];
    for (const id of ['a', 'b', 'c']) jobs.push(unwrap(await p.openJob(id)));
    const its: { it: AsyncIterator<KvRow>; job: number; rows: number; got: number[] }[] = [];
    // Iterator i of a job begins after the job's i-th write: it sees exactly i + 1 rows.
    for (let i = 0; i < 20; i++) {
      for (const [j, job] of jobs.entries()) {
        job.persistPut('c', key(i), payload(j));
        const it = job.iteratePrefix('c', key(), { pageSize: 3 });
        const first = await it.next();
        its.push({ it, job: j, rows: i + 1, got: ids([first.value as KvRow]) });
      }
    }
    for (const job of jobs) for (let i = 20; i < 40; i++) job.persistPut('c', key(i), payload(9));
    // Read them all, a row at a time each in turn.
    let open = its.length;
    while (open > 0) {
      open = 0;
      for (const x of its) {
        const r = await x.it.next();
        if (r.done === true) continue;
        open++;
        x.got.push(ids([r.value])[0] as number);
        expect(Array.from(r.value.payload)).toEqual(Array.from(payload(x.job)));
      }
    }
    for (const x of its) expect(x.got).toEqual(Array.from({ length: x.rows }, (_, i) => i));
    for (const job of jobs) expect(jobClient(job).holds.count).toBe(0);
    unwrap(await p.close());
  });

  it('a job holding a snapshot is not released when idle; once it ends, the job is', async () => {
    const { p, job } = await open();
    for (let i = 0; i < 50; i++) job.persistPut('c', key(i), payload(i));
    const it = job.iteratePrefix('c', key(), { pageSize: 10 });
    await it.next();
    expect(await releaseIdleJobs(p)).toBe(0);
    await it.return?.();
    unwrap(await job.flush()); // the snapshot's end reached the worker
    expect(await releaseIdleJobs(p)).toBe(1);
    expect(ids(await all(job.iteratePrefix('c', key(), { limit: 2 })))).toEqual([0, 1]);
    unwrap(await p.close());
  });

  it('an iterator not advanced for iteratorIdleMs lets go of its snapshot and rejects with Timeout (fake time)', async () => {
    const { p, job } = await open({ iteratorIdleMs: 1000 });
    for (let i = 0; i < 50; i++) job.persistPut('c', key(i), payload(i));
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    try {
      const it = job.iteratePrefix('c', key(), { pageSize: 10 });
      await it.next();
      vi.advanceTimersByTime(900);
      await it.next(); // advanced: the clock starts again
      vi.advanceTimersByTime(900);
      expect(jobClient(job).holds.count).toBe(1);
      vi.advanceTimersByTime(200);
      expect(jobClient(job).holds.count).toBe(0);
      const e = await rejection(it);
      expect([e.kind, e.code]).toEqual(['Timeout', 'SNAPSHOT_EXPIRED']);
      expect(await it.next()).toEqual({ done: true, value: undefined });
    } finally {
      vi.useRealTimers();
    }
    unwrap(await p.close());
  });
});

describe.each(FILE_MODES)('a snapshot and the WAL (%s)', (_n, _m, options) => {
  it('holds back checkpoints while it is open, not the writer; after it ends the WAL is reset', async () => {
    const limit = 256 * 1024;
    const p = unwrap(Persistency.open(tempDir(), { ...options, journalSizeLimitBytes: limit }));
    const job = unwrap(await p.openJob('wal'));
    const file = `${p.rootDir}/${unwrap(await p.listJobs())[0]}.db`;
    for (let i = 0; i < 100; i++) job.persistPut('c', key(i), payload(i));
    unwrap(await job.flush());
    const it = job.iteratePrefix('c', key(), { pageSize: 10 });
    await it.next();
    // 4 MiB written while the snapshot is held: every write is durable, none waits for it.
    const big = new Uint8Array(4096);
    for (let i = 0; i < 1024; i++) job.persistPut('w', key(i), big);
    unwrap(await job.flush());
    const other = new Database(file, { timeout: 0 }); // a checkpoint needs a writable connection
    try {
      // The checkpoint cannot get past the frames the snapshot reads from.
      const [held] = other.pragma('wal_checkpoint(PASSIVE)') as {
        busy: number;
        log: number;
        checkpointed: number;
      }[];
      expect(held?.checkpointed).toBeLessThan(held?.log as number);
      expect(statSync(`${file}-wal`).size).toBeGreaterThan(4 * 1024 * 1024);
      expect(ids(await all(it))).toHaveLength(99);
      // Ended, the next writes reset the WAL and journal_size_limit trims it.
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 10; i++) job.persistPut('w', key(i), big);
        unwrap(await job.flush());
      }
      const [free] = other.pragma('wal_checkpoint(PASSIVE)') as {
        log: number;
        checkpointed: number;
      }[];
      expect(free?.checkpointed).toBe(free?.log);
    } finally {
      other.close();
    }
    unwrap(await p.close());
  });
});

describe.each(FILE_MODES)('a 1,000,000-row snapshot (%s)', (_n, _m, options) => {
  it('pages through every row as of its first next() while writes land all over the range', async () => {
    const rows = 1_000_000;
    const p = unwrap(Persistency.open(tempDir(), options));
    const job = unwrap(await p.openJob('big'));
    for (let i = 0; i < rows; i++) job.persistPut('c', key(2 * i), payload(i));
    unwrap(await job.flush());
    let n = 0;
    let inOrder = true;
    let last = -2;
    for await (const row of job.iteratePrefix('c', key())) {
      const id = Number(decodeKey(row.key, ['i64'])[0]);
      inOrder &&= id === last + 2 && Number(decodePayload(row.payload, 'i64')) === id / 2;
      last = id;
      if (++n % 50_000 === 0) {
        // Rows inserted ahead of it and behind it, and a stretch ahead deleted.
        for (let i = 0; i < 100; i++) job.persistPut('c', key(2 * n + 2 * i + 1), payload(-1));
        job.persistPut('c', key(2 * (n - 10) + 1), payload(-1));
        job.persist([
          { kind: 'deletePrefix', category: 'c', prefix: key(2 * n + 1000) },
          { kind: 'delete', category: 'c', key: key(2 * n + 2000) },
        ]);
        unwrap(await job.flush());
      }
    }
    expect([n, inOrder, last]).toEqual([rows, true, 2 * (rows - 1)]);
    // 20 rounds of 101 new rows; the 19 rounds before the last deleted two original rows each.
    expect(unwrap(await job.count('c', prefixRange(key())))).toBe(rows + 20 * 101 - 19 * 2);
    unwrap(await p.close());
  });
});

describe('a failed commit group with an iterator page in it (review)', () => {
  it('the page, read from the snapshot, still arrives; the worker lets go of the snapshot at its end', async () => {
    const p = unwrap(Persistency.open(tempDir(), { workerThreads: 'per-job' }));
    const job = unwrap(await p.openJob('j'));
    const file = `${p.rootDir}/${unwrap(await p.listJobs())[0]}.db`;
    for (let i = 0; i < 100; i++) job.persistPut('c', key(i), payload(i));
    unwrap(await job.flush());
    const it = job.iteratePrefix('c', key(), { pageSize: 10 });
    for (let i = 0; i < 10; i++) expect((await it.next()).done).toBe(false);
    unwrap(await job.flush()); // page 2 has arrived (asked for ahead)
    injectFault(job, 'commit');
    // The worker is busy with these when the next IterNext comes: it joins their group.
    for (let i = 0; i < 100_000; i++) job.persistPut('w', key(i), payload(i));
    let rows = 10;
    let failed = false;
    try {
      for (;;) {
        const r = await it.next();
        if (r.done === true) break;
        rows++;
      }
    } catch {
      failed = true;
    }
    expect((await job.flush()).isErr()).toBe(true); // the group's writes were lost
    expect({ rows, failed }).toEqual({ rows: 100, failed: false });
    expect(jobClient(job).holds.count).toBe(0);
    // The worker holds no snapshot either: a checkpoint from another connection completes.
    const big = new Uint8Array(4096);
    for (let i = 0; i < 256; i++) job.persistPut('x', key(i), big);
    unwrap(await job.flush());
    const other = new Database(file, { timeout: 0 });
    const [cp] = other.pragma('wal_checkpoint(PASSIVE)') as { log: number; checkpointed: number }[];
    other.close();
    expect(cp?.checkpointed).toBe(cp?.log);
    unwrap(await p.close());
  });
});

describe.each(FILE_MODES)('descriptors of ended iterators (%s)', (_name, _memory, options) => {
  it('are reused by later iterators: a job holds about as many as it had iterators open at once', async () => {
    // The root's own descriptors: counting the whole process's came out one short now and
    // then under load (3 of 12 runs beside three busy processes; 0 of 15 counting these).
    const root = realpathSync(tempDir());
    const fds = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith(`${root}/`);
        } catch {
          return false; // closed meanwhile, or the listing's own descriptor
        }
      }).length;
    const p = unwrap(Persistency.open(root, options));
    const job = unwrap(await p.openJob('j'));
    for (let i = 0; i < 30; i++) job.persistPut('c', key(i), payload(i));
    unwrap(await job.flush());
    expect((await all(job.iteratePrefix('c', key()))).length).toBe(30);
    unwrap(await job.flush()); // counted once every earlier request of the job is done
    const before = fds();
    for (let n = 0; n < 40; n++) {
      job.persistPut('c', key(100 + n), payload(n)); // each snapshot sees the writes before it
      expect(ids(await all(job.iteratePrefix('c', key(), { pageSize: 7 })))).toEqual([
        ...Array.from({ length: 30 }, (_, i) => i),
        ...Array.from({ length: n + 1 }, (_, i) => 100 + i),
      ]);
    }
    unwrap(await job.flush());
    const sequential = fds() - before;
    const open = Array.from({ length: 6 }, () => job.iteratePrefix('c', key(), { pageSize: 5 }));
    for (const it of open) expect((await it.next()).done).toBe(false);
    const whileOpen = fds() - before;
    for (const it of open) await it.return?.();
    unwrap(await job.flush()); // the worker has ended the six snapshots
    const ended = fds() - before;
    unwrap(await p.closeJob('j'));
    const closed = fds() - before;
    unwrap(await p.close());
    // 40 one after another: SQLite hands the `.db` descriptor an ended connection left
    // to the next one. Six at once: a `.db` and a `-wal` each; after they end SQLite keeps
    // their `.db` descriptors (the job's connection holds locks on the file) until closeJob.
    expect({ sequential, whileOpen, ended: ended <= 6, closed: closed <= 0 }).toEqual({
      sequential: 0,
      whileOpen: ended + 6,
      ended: true,
      closed: true,
    });
  });
});
