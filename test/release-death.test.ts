/*
 * A pool thread dies while one of its jobs is 'releasing' with work in its backlog
 * (issued after the release was asked for): that work is reported in a writeFailed event
 * (CONTRACT.md section 5), never dropped silently.
 *
 * To have the thread die before it handles a's `release`, the crash is queued on job b's
 * port right behind a long count of b (with turns too long to pause it): the worker takes the crash from b's port in the
 * same group, before it returns to the event loop where a's release waits.
 */
import { expect, it } from 'vitest';
import { key, Persistency, type PersistencyEvents, payload, type TxOp } from '../src/index.js';
import { crashJobWorker } from '../src/job.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-death-');

it('a write queued behind a release is reported (or applied) when the thread dies', async () => {
  const root = tempDir();
  // Turns long enough that b's count holds the thread until the crash behind it.
  const p = unwrap(Persistency.instance(root, { workerThreads: 1, sliceMs: 100_000 }));
  const written: PersistencyEvents['writeFailed'][] = [];
  p.events.on('writeFailed', (e) => written.push(e));
  const a = unwrap(await p.openJob('a'));
  const b = unwrap(await p.openJob('b'));
  const ops: TxOp[] = [];
  for (let i = 0; i < 300_000; i++)
    ops.push({ kind: 'put', category: 'c', key: key(i), payload: payload(i) });
  b.persist(ops);
  a.persistPut('c', key(1), payload('a1'));
  unwrap(await b.flush());
  unwrap(await a.flush());

  const counted = b.count('c', { start: key(0) }); // holds the thread
  await Promise.resolve(); // the count's frame goes out at the end of this turn
  crashJobWorker(b, 'throw'); // queued behind the count, taken in the same group
  const released = releaseIdleJobs(p); // a (idle) is now 'releasing'; b has a read pending
  a.persistPut('c', key(2), payload('queued')); // into a's backlog
  const flushed = a.flush();
  await counted;
  await released;
  await flushed;

  const reported = written.filter((e) => e.jobId === 'a').reduce((n, e) => n + e.count, 0);
  let applied = false;
  if (reported === 0) {
    const again = unwrap(await p.openJob('a'));
    applied = unwrap(await again.get('c', key(2))) !== undefined;
  }
  expect({ reported, applied }).not.toEqual({ reported: 0, applied: false });
});
