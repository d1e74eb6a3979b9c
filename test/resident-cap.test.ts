/*
 * `maxResidentJobs`: beyond the cap, taking a job up releases the jobs used least recently
 * that have no work in flight, as idle release would. Both threading modes, file and
 * ':memory:' roots. Releases are asynchronous: the tests wait for the counts, not for time.
 */
import { readdirSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { type Job, key, Persistency, payload, prefixRange } from '../src/index.js';
import { injectFault } from '../src/job.js';
import type { JobClient } from '../src/job-client.js';
import { Residency } from '../src/residency.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES, ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-resident-cap-');

/** Open file descriptors of this process (Linux). */
const fdCount = (): number => readdirSync('/proc/self/fd').length;

/** Open `id`, write rows 0..n-1 and flush them. */
async function written(p: Persistency, id: string, n = 3): Promise<Job> {
  const job = unwrap(await p.openJob(id));
  for (let i = 0; i < n; i++) job.persistPut('c', key(i), payload(id, i));
  unwrap(await job.flush());
  return job;
}

/** Once releases under way have happened, `resident` jobs hold a connection. */
const settled = (p: Persistency, resident: number) =>
  vi.waitFor(() => expect(p.stats().residentJobs).toBe(resident), { timeout: 10_000 });

describe.each(ROOT_MODES)('maxResidentJobs (%s)', (_name, memory, options) => {
  const instance = (maxResidentJobs: number): Persistency =>
    unwrap(
      Persistency.open(memory ? ':memory:' : tempDir(), {
        ...options,
        maxResidentJobs,
        idleCloseMs: 0, // only the cap releases
      }),
    );

  it('holds at most the cap resident; every job stays open and answers in order', async () => {
    const p = instance(2);
    const jobs: Job[] = [];
    for (let j = 0; j < 6; j++) {
      jobs.push(await written(p, `j${j}`));
      await settled(p, Math.min(j + 1, 2));
    }
    expect(p.stats()).toMatchObject({ openJobs: 6, residentJobs: 2, releasedJobs: 4 });
    for (const [j, job] of jobs.entries()) {
      expect(job.running).toBe(true);
      job.persistPut('c', key(9), payload('late', j)); // queued behind the take-up
      const rows = unwrap(await job.scan('c', prefixRange(key())));
      expect(rows.map((r) => r.payload)).toEqual(
        [0, 1, 2].map((i) => payload(`j${j}`, i)).concat([payload('late', j)]),
      );
      await settled(p, 2);
    }
    // Each take-up released the job used least recently, so all six were taken up again.
    expect(p.stats().reopened).toBe(6);
    unwrap(await p.close());
    if (memory) return;
    const again = unwrap(Persistency.open(p.rootDir, options));
    for (let j = 0; j < 6; j++) {
      const job = unwrap(await again.openJob(`j${j}`));
      expect(unwrap(await job.count('c', prefixRange(key())))).toBe(4);
    }
    unwrap(await again.close());
  });

  it('releases the job used least recently', async () => {
    const p = instance(2);
    const a = await written(p, 'a');
    const b = await written(p, 'b');
    expect(unwrap(await a.get('c', key(0)))).toEqual(payload('a', 0)); // a is now the newer
    await written(p, 'c');
    await settled(p, 2);
    const reopened = p.stats().reopened;
    expect(unwrap(await a.get('c', key(1)))).toEqual(payload('a', 1));
    expect(p.stats().reopened).toBe(reopened); // a stayed
    expect(unwrap(await b.get('c', key(1)))).toEqual(payload('b', 1));
    expect(p.stats().reopened).toBe(reopened + 1); // b had been released
    unwrap(await p.close());
  });

  it('never releases a job with work in flight: a held snapshot keeps it resident', async () => {
    const p = instance(1);
    const a = await written(p, 'a', 5);
    const rows = a.iterate('c', prefixRange(key()), { pageSize: 1 });
    expect((await rows.next()).value?.payload).toEqual(payload('a', 0)); // snapshot held
    await written(p, 'b');
    expect(p.stats().residentJobs).toBe(2); // over the cap by the busy job
    await rows.return?.(undefined); // lets the snapshot go
    unwrap(await a.flush()); // and the worker has done so: a has no work in flight
    await written(p, 'c'); // the next take-up releases both a and b
    await settled(p, 1);
    expect(unwrap(await a.count('c', prefixRange(key())))).toBe(5);
    unwrap(await p.close());
  });

  it('a watched job stays resident and its feed goes on across take-ups', async () => {
    const p = instance(1);
    const a = unwrap(await p.openJob('a'));
    const feed = a.watch('c', prefixRange(key()));
    unwrap(await a.flush());
    await written(p, 'b');
    expect(p.stats().residentJobs).toBe(2); // over the cap by the watched job
    const reopened = p.stats().reopened;
    a.persistPut('c', key(1), payload('x'));
    const first = await feed.next();
    expect(first.done === false && first.value.map((c) => ('key' in c ? c.key : c.prefix))).toEqual(
      [key(1)],
    );
    expect(p.stats().reopened).toBe(reopened);
    await feed.return?.(undefined);
    unwrap(await p.close());
  });

  it('ten concurrent opens settle at the cap', async () => {
    const p = instance(2);
    const jobs = await Promise.all(Array.from({ length: 10 }, (_, i) => p.openJob(`j${i}`)));
    for (const j of jobs) unwrap(j);
    await settled(p, 2);
    expect(p.stats()).toMatchObject({ openJobs: 10, residentJobs: 2, releasedJobs: 8 });
    unwrap(await p.close());
  });

  it('is checked: a non-negative integer', () => {
    for (const bad of [-1, 1.5, '2', Number.NaN]) {
      const r = Persistency.open(tempDir(), { ...options, maxResidentJobs: bad as number });
      expect(r.isErr() && r.error.kind).toBe('InvalidArgument');
    }
  });
});

describe.each(FILE_MODES)('maxResidentJobs, descriptors (%s)', (_name, _memory, options) => {
  const instance = (maxResidentJobs: number): Persistency =>
    unwrap(Persistency.open(tempDir(), { ...options, maxResidentJobs, idleCloseMs: 0 }));

  it('a released job holds no descriptor: 30 jobs under a cap of 4', async () => {
    const p = instance(4);
    const fdsBefore = fdCount();
    for (let j = 0; j < 30; j++) await written(p, `f${j}`);
    await settled(p, 4);
    // Per-job: the resident jobs' threads and the spare (released jobs' threads have exited);
    // otherwise the pool's two, started by the first open.
    const threads = options.workerThreads === 'per-job' ? 4 + 1 : 2;
    await vi.waitFor(() => expect(p.stats().workerThreads).toBeLessThanOrEqual(threads), {
      timeout: 10_000,
    });
    const grown = fdCount() - fdsBefore;
    // 3 per resident job (file, WAL, shared-memory index), and a per-job thread's own (its
    // ports' pipes, its event loop's epoll and eventfd: about 4). Uncapped, 30 jobs hold
    // 90 descriptors in their files alone.
    expect(grown).toBeLessThanOrEqual(4 * 3 + threads * 6);
    unwrap(await p.close());
  });
});

// Found by review: a declined release was counted as done, leaving 3 idle jobs under a cap
// of 2; and a job taken up again before its release had settled was left out of the count.
describe.each(ROOT_MODES.filter(([, memory]) => memory))(
  'maxResidentJobs, a release declined (%s)',
  (_name, _memory, options) => {
    it('a :memory: job whose image cannot be taken stays, and the next idle job goes', async () => {
      const p = unwrap(
        Persistency.open(':memory:', { ...options, maxResidentJobs: 2, idleCloseMs: 0 }),
      );
      const a = await written(p, 'a');
      injectFault(a, 'serialize');
      unwrap(await a.flush()); // a, used least recently, will decline its release
      const b = await written(p, 'b');
      await written(p, 'c'); // beyond the cap: a is asked and declines, so b is asked
      await settled(p, 2);
      const reopened = p.stats().reopened;
      expect(unwrap(await a.get('c', key(0)))).toEqual(payload('a', 0));
      expect(p.stats().reopened).toBe(reopened); // a stayed
      expect(unwrap(await b.get('c', key(0)))).toEqual(payload('b', 0));
      expect(p.stats().reopened).toBe(reopened + 1); // b went
      unwrap(await p.close());
    });
  },
);

describe('Residency', () => {
  /** A client that does what JobClient does: its release settles when told (a thread's exit). */
  const fake = (name: string, asked: string[], settle: ((released: boolean) => void)[]) =>
    ({
      lastActive: performance.now(),
      releaseIfIdle: () => {
        asked.push(name);
        return new Promise<boolean>((resolve) => settle.push(resolve));
      },
    }) as unknown as JobClient & { lastActive: number };

  it('counts a job taken up again before its release settled (its old thread still exiting)', () => {
    const asked: string[] = [];
    const settle: ((released: boolean) => void)[] = [];
    const r = new Residency(0, 1);
    const a = fake('a', asked, settle);
    const b = fake('b', asked, settle);
    r.set(a, true);
    r.set(b, true); // beyond the cap: a is asked to release
    expect(asked).toEqual(['a']);
    r.set(a, false); // released; its promise waits for the thread's exit
    a.lastActive = performance.now();
    r.set(a, true); // a call in its backlog took it up again
    expect(r.size).toBe(2);
    expect(asked).toEqual(['a', 'b']); // b, idle, is asked now
  });
});
