/*
 * Idle release racing the rest of a job's life: a close, a drop, a thread's death, the
 * instance's close, arriving while a job releases or is being taken up again. Nothing may
 * hang, lose an acknowledged write or leave a counter wrong.
 */
import { describe, expect, it } from 'vitest';
import { type Job, key, Persistency, type PersistencyOptions, payload } from '../src/index.js';
import { crashJobWorker } from '../src/job.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-idle-races-');
const MODES: [string, PersistencyOptions][] = [
  ['per-job', { workerThreads: 'per-job' }],
  ['2 threads', { workerThreads: 2 }],
];

describe.each(MODES)('idle release races (%s)', (_name, options) => {
  const openOne = async (): Promise<[Persistency, Job]> => {
    const p = unwrap(Persistency.instance(tempDir(), options));
    const job = unwrap(await p.openJob('j'));
    job.persistPut('c', key(0), payload(0));
    unwrap(await job.flush());
    return [p, job];
  };

  it('a close issued while the job releases waits for the release and commits later writes', async () => {
    const [p, job] = await openOne();
    const released = releaseIdleJobs(p);
    job.persistPut('c', key(1), payload(1)); // after the release was asked for
    const closed = p.closeJob('j');
    await released;
    unwrap(await closed);
    expect(p.stats()).toMatchObject({ openJobs: 0, residentJobs: 0 });
    const again = unwrap(await p.openJob('j'));
    expect(unwrap(await again.get('c', key(1)))).toEqual(payload(1));
  });

  it('dropJob of a released job deletes it; opening it again finds it empty', async () => {
    const [p] = await openOne();
    await releaseIdleJobs(p);
    unwrap(await p.dropJob('j'));
    expect(p.stats()).toMatchObject({ openJobs: 0, residentJobs: 0, releasedJobs: 0 });
    const fresh = unwrap(await p.openJob('j'));
    expect(unwrap(await fresh.count('c', { start: key(0) }))).toBe(0);
  });

  it('p.close() while a released job is being taken up again commits its writes', async () => {
    const [p, job] = await openOne();
    await releaseIdleJobs(p);
    job.persistPut('c', key(2), payload(2)); // starts the reattach
    const read = job.get('c', key(2));
    unwrap(await p.close());
    const r = await read;
    // Answered before the close, or refused as closed: never lost silently, never hung.
    if (r.isOk()) expect(r.value).toEqual(payload(2));
    else expect(r.error.kind).toBe('Closed');
    const p2 = unwrap(Persistency.instance(p.rootDir, options));
    const j2 = unwrap(await p2.openJob('j'));
    expect(unwrap(await j2.get('c', key(2)))).toEqual(payload(2));
  });

  it('a thread dying under a reattached job fails its reads; the job opens again', async () => {
    const [p, job] = await openOne();
    await releaseIdleJobs(p);
    unwrap(await job.flush()); // taken up again
    const failed = new Promise<string>((resolve) =>
      p.events.on('jobFailed', (e) => resolve(e.jobId)),
    );
    crashJobWorker(job, 'exit');
    expect(await failed).toBe('j');
    const read = await job.get('c', key(0));
    expect(read.isErr() && read.error.kind).toBe('Closed');
    expect(p.stats()).toMatchObject({ openJobs: 0, residentJobs: 0 });
    const again = unwrap(await p.openJob('j'));
    expect(unwrap(await again.get('c', key(0)))).toEqual(payload(0));
  });

  it('a crash asked of a released job takes it up first, then fails it', async () => {
    const [p, job] = await openOne();
    await releaseIdleJobs(p);
    const failed = new Promise<string>((resolve) =>
      p.events.on('jobFailed', (e) => resolve(e.jobId)),
    );
    const read = job.get('c', key(0)); // queued before the crash: answered or failed, not hung
    crashJobWorker(job, 'throw');
    expect(await failed).toBe('j');
    const r = await read;
    if (r.isErr()) expect(r.error.kind).toBe('Backend');
    else expect(r.value).toEqual(payload(0));
    expect(p.hasJob('j')).toBe(false);
  });
});
