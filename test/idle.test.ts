/*
 * Idle release (CONTRACT.md §6, `idleCloseMs`): an idle job lets go of its connection (and,
 * per-job, of its thread) and stays open; its next call takes it up again, in order. Run in
 * both threading modes, on file and ':memory:' roots. Time is not waited for: the tests
 * release idle jobs through the same routine the idle timer calls, except one that drives
 * the timer itself with fake time.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type Job, key, Persistency, type PersistencyOptions, payload } from '../src/index.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { startThreadOwner, stopChildren } from './support/children.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-idle-');
afterEach(() => stopChildren());

const MODES: [string, PersistencyOptions, boolean][] = [
  ['per-job, file root', { workerThreads: 'per-job' }, false],
  ['2 threads, file root', { workerThreads: 2 }, false],
  ['per-job, :memory: root', { workerThreads: 'per-job' }, true],
  ['2 threads, :memory: root', { workerThreads: 2 }, true],
];

describe.each(MODES)('idle release (%s)', (_name, options, memory) => {
  const open = async (...ids: string[]): Promise<[Persistency, Job[]]> => {
    const p = unwrap(Persistency.instance(memory ? ':memory:' : tempDir(), options));
    const jobs: Job[] = [];
    for (const id of ids) jobs.push(unwrap(await p.openJob(id)));
    return [p, jobs];
  };

  /** A job with rows 0..n-1 in category 'c', flushed, then released. */
  const released = async (n = 3): Promise<[Persistency, Job]> => {
    const [p, [job]] = await open('idle');
    for (let i = 0; i < n; i++) (job as Job).persistPut('c', key(i), payload(i));
    unwrap(await (job as Job).flush());
    expect(await releaseIdleJobs(p)).toBe(1);
    expect(p.stats()).toMatchObject({ openJobs: 1, residentJobs: 0, releasedJobs: 1 });
    expect(p.hasJob('idle')).toBe(true);
    expect((job as Job).running).toBe(true);
    return [p, job as Job];
  };

  it('releases the connection (and a per-job thread) and keeps the job open', async () => {
    const [p, job] = await released();
    if (options.workerThreads === 'per-job') {
      // Only the spare thread is left.
      expect(p.stats().workerThreads).toBe(1);
    }
    expect(p.job('idle').isOk()).toBe(true);
    expect(unwrap(await job.get('c', key(1)))).toEqual(payload(1));
    expect(p.stats()).toMatchObject({ residentJobs: 1, reopened: 1 });
  });

  it('a read, a write, a flush, a scan and a close each take a released job up again', async () => {
    const [p, job] = await released(3);
    expect(unwrap(await job.exists('c', key(2)))).toBe(true);
    await releaseIdleJobs(p);
    job.persistPut('c', key(3), payload(3));
    expect(await releaseIdleJobs(p)).toBe(0); // the write is work: not idle
    unwrap(await job.flush());
    await releaseIdleJobs(p);
    unwrap(await job.flush());
    await releaseIdleJobs(p);
    const rows = unwrap(await job.scan('c', { start: key(0) }));
    expect(rows.map((r) => r.payload)).toEqual([0, 1, 2, 3].map((i) => payload(i)));
    await releaseIdleJobs(p);
    expect(p.stats().reopened).toBe(4);
    unwrap(await p.closeJob('idle'));
    expect(p.stats()).toMatchObject({ openJobs: 0, residentJobs: 0 });
    const again = unwrap(await p.openJob('idle'));
    expect(unwrap(await again.count('c', { start: key(0) }))).toBe(4);
  });

  it('a burst of calls to a released job reopens it once, answered in order', async () => {
    const [p, job] = await released(0);
    const gets: ReturnType<Job['get']>[] = [];
    for (let i = 0; i < 200; i++) {
      job.persistPut('c', key(i), payload(i));
      gets.push(job.get('c', key(i)));
      if (i % 50 === 49) job.persistDelete('c', key(i - 1));
    }
    const got = await Promise.all(gets);
    expect(got.map((r) => unwrap(r))).toEqual(got.map((_, i) => payload(i)));
    expect(p.stats().reopened).toBe(1);
    expect(unwrap(await job.count('c', { start: key(0) }))).toBe(196);
  });

  it('closing a released job is at once Ok and its data stays', async () => {
    const [p] = await released(5);
    unwrap(await p.closeJob('idle'));
    expect(p.stats().reopened).toBe(0);
    const job = unwrap(await p.openJob('idle'));
    expect(unwrap(await job.count('c', { start: key(0) }))).toBe(5);
    unwrap(await p.close());
  });

  it('p.close() closes released and resident jobs alike', async () => {
    const [p, [a, b]] = await open('a', 'b');
    (a as Job).persistPut('c', key(1), payload('a'));
    (b as Job).persistPut('c', key(1), payload('b'));
    unwrap(await (a as Job).flush());
    await releaseIdleJobs(p);
    (b as Job).persistPut('c', key(2), payload('b2')); // b has work: closing must commit it
    unwrap(await p.close());
    if (memory) return;
    const p2 = unwrap(Persistency.instance(p.rootDir, options));
    const b2 = unwrap(await p2.openJob('b'));
    expect(unwrap(await b2.get('c', key(2)))).toEqual(payload('b2'));
  });

  it('the idle timer releases a job after idleCloseMs of no work (fake time)', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'performance'] });
    try {
      const p = unwrap(
        Persistency.instance(memory ? ':memory:' : tempDir(), { ...options, idleCloseMs: 1000 }),
      );
      const job = unwrap(await p.openJob('t'));
      job.persistPut('c', key(1), payload(1));
      unwrap(await job.flush());
      vi.advanceTimersByTime(500);
      expect(p.stats().residentJobs).toBe(1);
      vi.advanceTimersByTime(1000);
      await vi.waitFor(() => expect(p.stats().residentJobs).toBe(0), { timeout: 10_000 });
      expect(unwrap(await job.get('c', key(1)))).toEqual(payload(1));
    } finally {
      vi.useRealTimers();
    }
  });
});

describe.each(MODES.filter(([, , memory]) => !memory))(
  'ownership while released (%s)',
  (_name, options) => {
    it('a released job keeps its ownership: another owner is Busy until it is closed', async () => {
      const p = unwrap(Persistency.instance(tempDir(), options));
      const job = unwrap(await p.openJob('idle'));
      job.persistPut('c', key(1), payload(1));
      unwrap(await job.flush());
      expect(await releaseIdleJobs(p)).toBe(1);
      const other = startThreadOwner(p.rootDir, 'idle');
      expect(await other.next()).toMatchObject({ t: 'error', kind: 'Busy' });
      await other.exited;
      unwrap(await p.closeJob('idle'));
      // Closed, the job and the root are free for the next owner.
      const next = startThreadOwner(p.rootDir, 'idle');
      expect(await next.next()).toEqual({ t: 'ready' });
    });
  },
);
