/*
 * A write that failed in the worker is counted there until a flush reports it; when the job
 * is released (or closed) the count goes with it to the main thread, so the first flush
 * after the reattach is still Err (CONTRACT.md section 7), and a flush issued while the release
 * was under way is that flush.
 */
import { describe, expect, it } from 'vitest';
import {
  key,
  Persistency,
  type PersistencyEvents,
  type PersistencyOptions,
  payload,
} from '../src/index.js';
import { injectFault } from '../src/job.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { unwrap, useTempDirs } from './support/env.js';
import { ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-release-flush-');

describe.each<[string, string, PersistencyOptions]>([
  ['per-job', 'dir', { workerThreads: 'per-job' }],
  ['2 threads', 'dir', { workerThreads: 2 }],
  ['per-job :memory:', ':memory:', { workerThreads: 'per-job' }],
])('a worker-side write failure survives an idle release (%s)', (_n, root, options) => {
  it('the flush after the reattach is Err', async () => {
    const p = unwrap(Persistency.instance(root === ':memory:' ? ':memory:' : tempDir(), options));
    const failed: PersistencyEvents['writeFailed'][] = [];
    p.events.on('writeFailed', (e) => failed.push(e));
    const job = unwrap(await p.openJob('f'));
    job.persistPut('c', key(0), payload(0));
    unwrap(await job.flush());

    injectFault(job, 'commit');
    job.persistPut('c', key(1), payload(1)); // its group's commit fails
    // A read after it: its reply comes with the batch failure.
    await job.get('c', key(0));
    expect(failed.length).toBe(1);

    expect(await releaseIdleJobs(p)).toBe(1);
    const r = await job.flush(); // the first flush since the failed write
    expect(r.isErr() && [r.error.kind, r.error.count, r.error.code]).toEqual([
      'WriteFailed',
      1,
      'SQLITE_IOERR',
    ]);
    expect((await job.flush()).isOk()).toBe(true); // reported once
  });
});

describe.each<[string, PersistencyOptions]>([
  ['per-job', { workerThreads: 'per-job' }],
  ['2 threads', { workerThreads: 2 }],
])('no fault injection: a write over maxJobBytes, then an idle release (%s)', (_n, options) => {
  /** A root whose jobs hold 1 MiB at most, so a 2 MiB put fails with SQLITE_FULL. */
  const withQuota = () =>
    unwrap(
      Persistency.instance(tempDir(), {
        ...options,
        maxJobBytes: 1024 * 1024,
        maxPayloadBytes: 4 * 1024 * 1024,
      }),
    );
  it('the flush after the reattach is Err', async () => {
    const p = withQuota();
    const failed: PersistencyEvents['writeFailed'][] = [];
    p.events.on('writeFailed', (e) => failed.push(e));
    const job = unwrap(await p.openJob('full'));
    job.persistPut('c', key(0), payload(0));
    unwrap(await job.flush());
    job.persistPut('c', key(1), new Uint8Array(2 * 1024 * 1024)); // SQLITE_FULL
    await job.get('c', key(0));
    expect(failed.map((e) => e.reason)).toEqual(['backend']);
    expect(await releaseIdleJobs(p)).toBe(1);
    const r = await job.flush();
    expect(r.isErr() && [r.error.kind, r.error.code]).toEqual(['WriteFailed', 'SQLITE_FULL']);
  });

  it('control: without the release the flush is Err', async () => {
    const p = withQuota();
    const job = unwrap(await p.openJob('full2'));
    job.persistPut('c', key(1), new Uint8Array(2 * 1024 * 1024));
    await job.get('c', key(0));
    expect((await job.flush()).isErr()).toBe(true);
  });
});

it('a job closed with a failed write unreported: the flush of the job opened again reports it', async () => {
  const p = unwrap(Persistency.instance(tempDir()));
  const job = unwrap(await p.openJob('c'));
  injectFault(job, 'commit');
  job.persistPut('c', key(1), payload(1));
  await job.get('c', key(1));
  unwrap(await p.closeJob('c'));
  const again = unwrap(await p.openJob('c'));
  const r = await again.flush();
  expect(r.isErr() && r.error.kind).toBe('WriteFailed');
  expect((await again.flush()).isOk()).toBe(true);
});

// Found by a review: that flush took the failures known when it was issued, before the
// worker's count came back with 'released'; it said Ok and the next flush Err.
describe.each(ROOT_MODES)(
  'a flush issued while an idle release is in flight (%s)',
  (_n, memory, options) => {
    it('counts the write that failed in the worker before it', async () => {
      const p = unwrap(Persistency.instance(memory ? ':memory:' : tempDir(), options));
      const failed: PersistencyEvents['writeFailed'][] = [];
      p.events.on('writeFailed', (e) => failed.push(e));
      const job = unwrap(await p.openJob('j'));
      job.persistPut('c', key(1), payload('not a counter'));
      job.persistAdd('c', key(1), 1); // fails in the worker: NOT_A_COUNTER
      await job.get('c', key(1)); // its reply brings the failure
      expect(failed.map((e) => [e.reason, e.error.code])).toEqual([['backend', 'NOT_A_COUNTER']]);

      const released = releaseIdleJobs(p); // as the idle timer does: 'release' is posted now
      const first = await job.flush(); // issued in the same tick, before 'released' is back
      expect(await released).toBe(1);
      const second = await job.flush();

      const show = (r: typeof first) => (r.isOk() ? 'Ok' : `${r.error.kind} ${r.error.count}`);
      expect([show(first), show(second)]).toEqual(['WriteFailed 1', 'Ok']);
    });
  },
);
