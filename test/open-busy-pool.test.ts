/*
 * On a shared thread, a job's open that meets a lock held by another connection (a tool,
 * a checkpointing Litestream) waits in pauses, not in SQLite's busy handler: the thread's
 * other jobs are served meanwhile, and the open succeeds once the lock is let go (an
 * adversarial review's reproduction; the thread was held for the lock's whole length).
 */
import Database from 'better-sqlite3';
import { expect, it } from 'vitest';
import { key, Persistency, payload } from '../src/index.js';
import { jobDbPath, jobFileStem } from '../src/paths.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-open-busy-');

it('a job opening beside a held write lock does not hold up the other jobs of its thread', async () => {
  const root = tempDir();
  // A lock waited out inside SQLite would hold the thread for up to ten minutes.
  const p = unwrap(Persistency.open(root, { workerThreads: 1, busyTimeoutMs: 600_000 }));
  const b = unwrap(await p.openJob('b'));
  b.persistPut('c', key(1), payload('b'));
  unwrap(await p.closeJob('b'));
  const a = unwrap(await p.openJob('a'));
  a.persistPut('c', key(1), payload('a'));
  unwrap(await a.flush());

  const holder = new Database(jobDbPath(root, (jobFileStem('b') as { stem: string }).stem));
  holder.exec('BEGIN IMMEDIATE');
  let held = true;
  const opening = p.openJob('b');
  // Answered while the lock is still held: the thread was not stuck in b's open.
  unwrap(await a.get('c', key(1)));
  unwrap(await a.get('c', key(1)));
  expect(held).toBe(true);
  holder.exec('ROLLBACK');
  held = false;
  holder.close();
  const reopened = unwrap(await opening); // the open went on trying and got the file
  expect(unwrap(await reopened.get('c', key(1)))).toEqual(payload('b'));
  await p.close();
});
