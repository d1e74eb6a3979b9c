/*
 * closeJob on a job between states ('releasing', or 'attaching' again after a release)
 * stops the handle at once, as on a resident job: `running` is false, reads are
 * Err(Closed), writes are dropped with an event (CONTRACT.md section 4). Under 'per-job'
 * closeJob resolves after the job's thread has exited.
 */
import { describe, expect, it } from 'vitest';
import {
  type Job,
  key,
  Persistency,
  type PersistencyEvents,
  type PersistencyOptions,
  payload,
} from '../src/index.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-transit-');

describe.each<[string, PersistencyOptions]>([
  ['per-job', { workerThreads: 'per-job' }],
  ['2 threads', { workerThreads: 2 }],
])('closeJob while a release or reattach is in flight (%s)', (_name, options) => {
  const opened = async (): Promise<[Persistency, Job, PersistencyEvents['writeFailed'][]]> => {
    const p = unwrap(Persistency.instance(tempDir(), options));
    const dropped: PersistencyEvents['writeFailed'][] = [];
    p.events.on('writeFailed', (e) => dropped.push(e));
    const job = unwrap(await p.openJob('t'));
    job.persistPut('c', key(1), payload(1));
    unwrap(await job.flush());
    return [p, job, dropped];
  };

  it('control: on a resident job the handle stops at once', async () => {
    const [p, job, dropped] = await opened();
    const closing = p.closeJob('t');
    expect(job.running).toBe(false);
    job.persistPut('c', key(2), payload(2));
    expect(dropped.map((e) => e.reason)).toEqual(['closed']);
    expect((await job.get('c', key(1))).isErr()).toBe(true);
    unwrap(await closing);
  });

  it('releasing: the handle stops at once', async () => {
    const [p, job, dropped] = await opened();
    const released = releaseIdleJobs(p); // 'releasing' until the worker answers
    const closing = p.closeJob('t');
    expect(p.hasJob('t')).toBe(false);
    expect(job.running).toBe(false);
    job.persistPut('c', key(2), payload(2)); // issued after closeJob: dropped with an event
    expect(dropped.map((e) => e.reason)).toEqual(['closed']);
    const read = await job.get('c', key(1));
    expect(read.isErr() && read.error.kind).toBe('Closed');
    unwrap(await closing);
    await released;
  });

  it('attaching again: the handle stops at once', async () => {
    const [p, job, dropped] = await opened();
    await releaseIdleJobs(p);
    const first = job.get('c', key(1)); // takes the job up again: 'attaching'
    const closing = p.closeJob('t');
    expect(job.running).toBe(false);
    job.persistPut('c', key(2), payload(2));
    expect(dropped.map((e) => e.reason)).toEqual(['closed']);
    unwrap(await first); // issued before closeJob: answered
    unwrap(await closing);
  });
});

describe("closeJob of a releasing job, 'per-job'", () => {
  it('resolves after the job thread has exited, as it does for a resident job', async () => {
    const p = unwrap(Persistency.instance(tempDir(), { workerThreads: 'per-job' }));
    const a = unwrap(await p.openJob('a'));
    unwrap(await p.openJob('b'));
    a.persistPut('c', key(1), payload(1));
    unwrap(await a.flush());
    // Control: closing resident 'b' leaves 'a' and the spare.
    unwrap(await p.closeJob('b'));
    expect(p.stats().workerThreads).toBe(2);
    const released = releaseIdleJobs(p);
    unwrap(await p.closeJob('a'));
    // Only the prestarted spare is left once closeJob has resolved.
    expect(p.stats().workerThreads).toBe(1);
    await released;
  });
});
