/*
 * Writes a job's worker never confirmed committed when it died (found by a review: they
 * were lost with no `writeFailed` event, and the flush of the job opened again said Ok).
 * The worker confirms a group's frames after its commit; the frames it had not confirmed
 * when it died are reported: one `writeFailed` event with their ops' count, and the next
 * flush of the job counts each write. Writes it did confirm are never reported.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { key, Persistency, type PersistencyEvents, payload, prefixRange } from '../src/index.js';
import { crashJobWorker } from '../src/job.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES, ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-death-unconfirmed-');

describe.each(ROOT_MODES)(
  'writes a dying worker never confirmed (%s)',
  (_name, memory, options) => {
    it.each(['throw', 'exit'] as const)('are reported, and only they (%s)', async (how) => {
      const p = unwrap(Persistency.open(memory ? ':memory:' : tempDir(), options));
      const reported: PersistencyEvents['writeFailed'][] = [];
      p.events.on('writeFailed', (e) => reported.push(e));
      const died = new Promise<PersistencyEvents['jobFailed']>((resolve) =>
        p.events.on('jobFailed', resolve),
      );
      const job = unwrap(await p.openJob('j'));
      for (let i = 0; i < 5; i++) job.persistPut('c', key(i), payload('kept'));
      job.persist([
        { kind: 'put', category: 'c', key: key(5), payload: payload('kept') },
        { kind: 'put', category: 'c', key: key(6), payload: payload('kept') },
      ]);
      unwrap(await job.flush()); // confirmed: never reported
      crashJobWorker(job, how);
      // Issued before this thread hears of the death: their frame goes to the dying worker.
      for (let i = 100; i < 200; i++) job.persistPut('c', key(i), payload('lost'));
      job.persist([
        { kind: 'put', category: 'c', key: key(300), payload: payload('lost') },
        { kind: 'delete', category: 'c', key: key(0) },
      ]);
      expect((await died).error.code).toBe('WORKER_DIED');

      expect(reported.map((e) => [e.jobId, e.reason, e.ops, e.count, e.error.code])).toEqual([
        ['j', 'closed', [], 102, 'WORKER_DIED'],
      ]);
      const again = unwrap(await p.openJob('j'));
      const flushed = await again.flush();
      expect(flushed.isErr() && [flushed.error.kind, flushed.error.count]).toEqual([
        'WriteFailed',
        101, // writes (batches): 100 puts and one batch of 2
      ]);
      expect(flushed.isErr() && (flushed.error.cause as { code?: string }).code).toBe(
        'WORKER_DIED',
      );
      expect((await again.flush()).isOk()).toBe(true); // reported once
      // A file keeps what was confirmed; a `:memory:` job's database died with its worker.
      expect(unwrap(await again.count('c', prefixRange(key())))).toBe(memory ? 0 : 7);
      await p.close();
    });
  },
);

it('the unheard-failure warning counts those writes as the flush does', async () => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on('warning', onWarning);
  const p = unwrap(Persistency.open(tempDir()));
  const died = new Promise<unknown>((resolve) => p.events.on('jobFailed', resolve));
  const job = unwrap(await p.openJob('unheard-death'));
  unwrap(await job.flush());
  crashJobWorker(job, 'exit');
  for (let i = 0; i < 50; i++) job.persistPut('c', key(i), payload('lost'));
  job.persist([
    { kind: 'put', category: 'c', key: key(100), payload: payload('lost') },
    { kind: 'put', category: 'c', key: key(101), payload: payload('lost') },
  ]);
  await died;
  const again = unwrap(await p.openJob('unheard-death'));
  const flushed = await again.flush(); // after the warning: emitted on a tick of the death
  process.off('warning', onWarning);
  expect(flushed.isErr() && flushed.error.count).toBe(51);
  expect(
    warnings.filter((w) => w.includes('job unheard-death:')).map((w) => w.split(' failed')[0]),
  ).toEqual(['job unheard-death: 51 write(s) (52 ops)']);
  await p.close();
});

// Found by a review: writes a refused reattach had reported were reported again, and
// counted twice, when the worker of the next reattach died.
describe.each(FILE_MODES)('a refused reattach, then a death (%s)', (_name, _memory, options) => {
  it('reports each lost write once', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.open(root, options));
    const written: PersistencyEvents['writeFailed'][] = [];
    p.events.on('writeFailed', (e) => written.push(e));
    const died = new Promise<unknown>((resolve) => p.events.on('jobFailed', resolve));
    const job = unwrap(await p.openJob('r'));
    job.persistPut('c', key(1), payload('one'));
    unwrap(await job.flush());
    expect(await releaseIdleJobs(p)).toBe(1);
    const other = new Database(join(root, 'r.db'), { timeout: 0 });
    other.pragma('locking_mode = EXCLUSIVE');
    other.exec('BEGIN IMMEDIATE');
    for (let i = 0; i < 10; i++) job.persistPut('c', key(100 + i), payload('refused'));
    expect((await job.get('c', key(1))).isErr()).toBe(true); // the reattach is refused (Busy)
    other.close();
    expect(written.map((e) => e.reason)).toEqual(Array(10).fill('backend'));
    written.length = 0;
    crashJobWorker(job, 'exit'); // reattaches; the worker dies before the next frame
    for (let i = 0; i < 3; i++) job.persistPut('c', key(200 + i), payload('lost'));
    await died;
    expect(written.map((e) => [e.reason, e.count])).toEqual([['closed', 3]]);
    const again = unwrap(await p.openJob('r'));
    const flushed = await again.flush();
    expect(flushed.isErr() && flushed.error.count).toBe(13); // 10 refused, no flush since; 3 lost
    await p.close();
  });
});
