/*
 * Running out of threads (CONTRACT.md §7, issue 12). When Node cannot start a thread,
 * `new Worker` throws at once: Error('EAGAIN') with code 'ERR_WORKER_INIT_FAILED' (seen
 * here as an unprivileged user under `ulimit -u`, which does not bind root, so these tests
 * make spawnWorker throw that same error on demand). An open, or a released job's next
 * call, that needs a thread it cannot have is Err(Backend, 'ERR_WORKER_INIT_FAILED') at
 * once, never a hang nor a throw; other jobs go on, nothing is left half open, and once
 * threads start again so do opens. Both threading modes, file and ':memory:' roots.
 */
import { describe, expect, it, vi } from 'vitest';
import { type Job, key, Persistency, type PersistencyEvents, payload } from '../src/index.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { orHang, unwrap, useTempDirs } from './support/env.js';
import { ROOT_MODES } from './support/modes.js';

const threads = vi.hoisted(() => ({ refuse: false, refused: 0 }));
vi.mock('../src/worker/spawn.js', async (importOriginal) => {
  const mod = await importOriginal<typeof import('../src/worker/spawn.js')>();
  return {
    ...mod,
    spawnWorker: () => {
      if (threads.refuse) {
        threads.refused++;
        throw Object.assign(new Error('EAGAIN'), { code: 'ERR_WORKER_INIT_FAILED' });
      }
      return mod.spawnWorker();
    },
  };
});

const tempDir = useTempDirs('persistency-thread-limit-');

async function roundTrip(job: Job, n: number): Promise<void> {
  job.persistPut('c', key(n), payload(n));
  unwrap(await job.flush());
  expect(unwrap(await job.get('c', key(n)))).toEqual(payload(n));
}

describe.each(ROOT_MODES)('out of threads (%s)', (_name, memory, options) => {
  it("an open that needs a thread is Err(Backend, 'ERR_WORKER_INIT_FAILED'); the others go on", async () => {
    threads.refuse = false;
    const p = unwrap(Persistency.open(memory ? ':memory:' : tempDir(), options));
    try {
      const first = unwrap(await p.openJob('first'));
      await roundTrip(first, 1);
      threads.refuse = true;
      threads.refused = 0;
      // Per-job, a booted spare serves one more open; the one after it needs a new thread.
      // A pool of 2 has started one thread: the next job is pinned to the second.
      const opened: Job[] = [];
      let failure: Awaited<ReturnType<Persistency['openJob']>> | 'hung' | undefined;
      let failedId = '';
      for (let i = 0; i < 3 && failure === undefined; i++) {
        const r = await orHang(p.openJob(`more-${i}`), 20_000);
        if (r !== 'hung' && r.isOk()) opened.push(r.value);
        else [failure, failedId] = [r, `more-${i}`];
      }
      expect(threads.refused).toBeGreaterThan(0);
      expect(failure).not.toBe('hung');
      const error =
        failure !== undefined && failure !== 'hung' && failure.isErr() ? failure.error : undefined;
      expect(error).toMatchObject({ kind: 'Backend', code: 'ERR_WORKER_INIT_FAILED' });
      expect(error?.message).toMatch(/cannot start a worker thread: EAGAIN/);
      // Nothing half open: the failed job is not registered, the others work.
      expect(p.hasJob(failedId)).toBe(false);
      expect(p.stats().openJobs).toBe(1 + opened.length);
      await roundTrip(first, 2);
      for (const job of opened) await roundTrip(job, 3);
      // Threads can start again: so can the job that could not open.
      threads.refuse = false;
      const again = unwrap(await p.openJob(failedId));
      await roundTrip(again, 4);
      expect(p.stats().openJobs).toBe(2 + opened.length);
    } finally {
      threads.refuse = false;
      expect((await p.close()).isOk()).toBe(true);
    }
  });
});

describe.each([false, true])(
  'per-job: a released job whose thread cannot start (memory: %s)',
  (memory) => {
    it('fails its waiting calls, reports its write, stays open, and works once threads start', async () => {
      threads.refuse = false;
      // No spare thread: the reattach must start one.
      const p = unwrap(
        Persistency.open(memory ? ':memory:' : tempDir(), {
          workerThreads: 'per-job',
          prestartWorker: false,
        }),
      );
      const written: PersistencyEvents['writeFailed'][] = [];
      const failed: PersistencyEvents['jobFailed'][] = [];
      p.events.on('writeFailed', (e) => written.push(e));
      p.events.on('jobFailed', (e) => failed.push(e));
      try {
        const job = unwrap(await p.openJob('r'));
        await roundTrip(job, 1);
        expect(await releaseIdleJobs(p)).toBe(1);
        threads.refuse = true;
        job.persistPut('c', key(2), payload(2));
        const read = await orHang(job.get('c', key(1)), 20_000);
        expect(read).not.toBe('hung');
        expect(read !== 'hung' && read.isErr() && read.error).toMatchObject({
          kind: 'Backend',
          code: 'ERR_WORKER_INIT_FAILED',
        });
        expect(written).toMatchObject([{ count: 1, error: { code: 'ERR_WORKER_INIT_FAILED' } }]);
        expect(failed).toEqual([]);
        expect(p.hasJob('r')).toBe(true);
        expect(job.running).toBe(true);
        expect(p.stats()).toMatchObject({ openJobs: 1, residentJobs: 0 });
        // The write that failed is counted by the next flush, which takes the job up again
        // once a thread can start.
        threads.refuse = false;
        const flushed = await job.flush();
        expect(flushed.isErr() && flushed.error.kind).toBe('WriteFailed');
        expect(unwrap(await job.get('c', key(1)))).toEqual(payload(1));
        expect(unwrap(await job.get('c', key(2)))).toBeUndefined();
        await roundTrip(job, 3);
      } finally {
        threads.refuse = false;
        expect((await p.close()).isOk()).toBe(true);
      }
    });
  },
);
