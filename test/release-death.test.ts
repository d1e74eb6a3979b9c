/*
 * A pool thread dies while one of its jobs is 'releasing' with work in its backlog
 * (issued after the release was asked for): that work is reported in a writeFailed event
 * (CONTRACT.md section 5), never dropped silently.
 *
 * Each test orders the death by queueing the crash on a's own port, which delivers in
 * order. (An earlier version queued it on job b's port behind a long count of b: ports are
 * not ordered with each other, and a loaded thread could take a's release first, so the
 * test sometimes ran the second case below while asserting the first.)
 */
import { expect, it } from 'vitest';
import { key, Persistency, type PersistencyEvents, payload } from '../src/index.js';
import { crashJobWorker } from '../src/job.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-death-');

async function twoJobs() {
  const p = unwrap(Persistency.instance(tempDir(), { workerThreads: 1 }));
  const written: PersistencyEvents['writeFailed'][] = [];
  const failed: string[] = [];
  p.events.on('writeFailed', (e) => written.push(e));
  p.events.on('jobFailed', (e) => failed.push(e.jobId));
  const a = unwrap(await p.openJob('a'));
  const b = unwrap(await p.openJob('b'));
  a.persistPut('c', key(1), payload('a1'));
  b.persistPut('c', key(1), payload('b1'));
  unwrap(await a.flush());
  unwrap(await b.flush());
  return { p, a, b, written, failed };
}

/** Still pending after the current turn's microtasks. */
async function pending(p: Promise<unknown>): Promise<boolean> {
  return (await Promise.race([p.then(() => false), Promise.resolve(true)])) === true;
}

it('a write queued behind a release is reported when the thread dies before the release', async () => {
  const { p, a, b, written, failed } = await twoJobs();
  const counted = b.count('c', { start: key(0) }); // a read pending: b is not released
  await Promise.resolve(); // the count's frame goes out at the end of this turn
  crashJobWorker(a, 'throw'); // ahead of a's release on a's port: the thread dies first
  const released = releaseIdleJobs(p);
  expect(await pending(released)).toBe(true); // a is 'releasing'
  a.persistPut('c', key(2), payload('queued')); // into a's backlog
  const flushed = a.flush();
  await counted; // answered or failed: b's port is not ordered with a's
  await released;
  const flush = await flushed;

  const reported = written.filter((e) => e.jobId === 'a');
  expect(reported.map((e) => [e.count, e.ops])).toEqual([
    [1, [{ kind: 'put', category: 'c', key: key(2), payload: payload('queued') }]],
  ]);
  expect(flush.isErr() && flush.error.kind).toBe('WriteFailed');
  expect(failed.sort()).toEqual(['a', 'b']); // both jobs of the thread
  const again = unwrap(await p.openJob('a'));
  expect(unwrap(await again.get('c', key(2)))).toBeUndefined();
  expect(unwrap(await again.get('c', key(1)))).toBeDefined();
});

it('a write sent by the reattach to a thread that then dies fails its flush (whole or absent)', async () => {
  // The release happens; the reattach lands on the same pool thread and sends the backlog;
  // the thread dies before reading it. The crash goes into the backlog ahead of the write's
  // frame (posted at the end of the turn), so the reattach sends it first.
  const { p, a, written, failed } = await twoJobs();
  const released = releaseIdleJobs(p);
  expect(await pending(released)).toBe(true); // a and b are 'releasing'
  a.persistPut('c', key(2), payload('sent'));
  const flushed = a.flush();
  crashJobWorker(a, 'throw'); // backlog: crash, then the turn's frame
  await released;
  const flush = await flushed;

  // Sent to a thread that died: unacknowledged, so never reported as not applied; its
  // flush and a jobFailed event tell the caller, and it is whole or absent.
  expect(flush.isErr() && flush.error.kind).toBe('Backend');
  expect(failed).toContain('a');
  const reported = written.filter((e) => e.jobId === 'a').length;
  const again = unwrap(await p.openJob('a'));
  const applied = unwrap(await again.get('c', key(2))) !== undefined;
  expect(reported > 0 && applied).toBe(false);
  expect(unwrap(await again.get('c', key(1)))).toBeDefined();
});
