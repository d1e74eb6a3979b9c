/*
 * CONTRACT.md section 7: a job whose file (or its -wal) is removed, replaced or moved while it is open
 * makes the next flush() and closeJob() resolve Err(Backend) naming the file (it never
 * reports durable what is no longer in its file, nor does an atomic commit or deleteAcked), and openJob recreates a missing root,
 * taking its ownership again.
 */
import { copyFileSync, existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { key, Persistency, type PersistencyOptions, payload } from '../src/index.js';
import { injectFault } from '../src/job.js';
import { ROOT_LOCK_FILE } from '../src/root-lock.js';
import { Child, stopChildren } from './support/children.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-removed-open-');
afterEach(stopChildren);

describe.each<[string, PersistencyOptions]>([
  ['per-job', { workerThreads: 'per-job' }],
  ['2 threads', { workerThreads: 2 }],
])('a job file removed or replaced while the job is open (%s)', (_name, options) => {
  it('the root removed: flush and closeJob are Err(Backend, ENOENT) naming the file; openJob makes the root again', async () => {
    const root = join(tempDir(), 'root');
    const p = unwrap(Persistency.instance(root, options));
    const job = unwrap(await p.openJob('a'));
    job.persistPut('c', key(1), payload('before'));
    unwrap(await job.flush());
    rmSync(root, { recursive: true, force: true });
    job.persistPut('c', key(2), payload('after'));
    const flushed = await job.flush();
    expect(flushed.isErr() && [flushed.error.kind, flushed.error.code]).toEqual([
      'Backend',
      'ENOENT',
    ]);
    expect(flushed.isErr() && flushed.error.message).toContain(join(root, 'a.db'));
    expect((await job.flush()).isErr()).toBe(true); // still not in a file: still Err
    const closed = await p.closeJob('a');
    expect(closed.isErr() && [closed.error.kind, closed.error.code]).toEqual(['Backend', 'ENOENT']);

    // openJob makes the root again and owns it again: a second owner is refused.
    const b = unwrap(await p.openJob('b'));
    expect(existsSync(join(root, ROOT_LOCK_FILE))).toBe(true);
    b.persistPut('c', key(1), payload('b'));
    unwrap(await b.flush());
    const again = unwrap(await p.openJob('a'));
    expect(unwrap(await again.get('c', key(1)))).toBeUndefined(); // its file went with the root
    unwrap(await p.close());
  });

  // Found by a review: SQLite goes on writing to a WAL removed under it, and a flush said Ok
  // for writes that were then in no file (and lost with the process).
  it.each([
    ['removed', 'ENOENT'],
    ['replaced', 'ESTALE'],
  ])('its -wal %s: flush and closeJob are Err(Backend, %s) naming the -wal', async (how, code) => {
    const root = tempDir();
    const p = unwrap(Persistency.instance(root, options));
    const job = unwrap(await p.openJob('w'));
    job.persistPut('c', key(1), payload('before'));
    unwrap(await job.flush());
    const wal = join(root, 'w.db-wal');
    if (how === 'removed') rmSync(wal);
    else {
      copyFileSync(wal, `${wal}.copy`);
      renameSync(`${wal}.copy`, wal);
    }
    job.persistPut('c', key(2), payload('after'));
    const flushed = await job.flush();
    expect(flushed.isErr() && [flushed.error.kind, flushed.error.code]).toEqual(['Backend', code]);
    expect(flushed.isErr() && flushed.error.message).toContain(wal);
    const closed = await p.closeJob('w');
    expect(closed.isErr() && closed.error.code).toBe(code);
    unwrap(await p.close());
  });

  it('the file replaced by a copy: flush is Err(Backend, ESTALE)', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.instance(root, options));
    const job = unwrap(await p.openJob('r'));
    job.persistPut('c', key(1), payload('before'));
    unwrap(await job.flush());
    const file = join(root, 'r.db');
    copyFileSync(file, `${file}.copy`);
    renameSync(`${file}.copy`, file);
    job.persistPut('c', key(2), payload('after'));
    const flushed = await job.flush();
    expect(flushed.isErr() && [flushed.error.kind, flushed.error.code]).toEqual([
      'Backend',
      'ESTALE',
    ]);
    const closed = await p.closeJob('r');
    expect(closed.isErr() && closed.error.code).toBe('ESTALE');
    unwrap(await p.close());
  });

  // Found by a review: both answered Ok, acknowledging what was in no file at the path.
  it('the file removed: an atomic commit and deleteAcked are Err(Backend, ENOENT), not acknowledged', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.instance(root, options));
    const job = unwrap(await p.openJob('g'));
    job.persistPut('c', key(1), payload('kept'));
    unwrap(await job.flush());
    for (const s of ['', '-wal', '-shm']) rmSync(join(root, `g.db${s}`), { force: true });
    const committed = await job.atomic().put('c', key(2), payload('new')).commit();
    expect(committed.isErr() && [committed.error.kind, committed.error.code]).toEqual([
      'Backend',
      'ENOENT',
    ]);
    expect(committed.isErr() && committed.error.message).toContain(join(root, 'g.db'));
    const deleted = await job.deleteAcked('c', key(1));
    expect(deleted.isErr() && [deleted.error.kind, deleted.error.code]).toEqual([
      'Backend',
      'ENOENT',
    ]);
    // The batch was not applied: reads still see the job as it was.
    expect(unwrap(await job.get('c', key(2)))).toBeUndefined();
    expect(unwrap(await job.get('c', key(1)))).toEqual(payload('kept'));
    const flushed = await job.flush();
    expect(flushed.isErr() && flushed.error.code).toBe('ENOENT');
    await p.close();
  });

  // Found by a review of the above: a later redo of the group's writes applied them anyway.
  it('the file removed: a refused atomic commit and deleteAcked are not redone with their group', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.instance(root, options));
    p.events.on('writeFailed', () => {});
    const job = unwrap(await p.openJob('h'));
    job.persistPut('c', key(1), payload('kept'));
    unwrap(await job.flush());
    for (const s of ['', '-wal', '-shm']) rmSync(join(root, `h.db${s}`), { force: true });
    injectFault(job, 'rollback', 1); // SQLite drops the group's transaction at the 2nd write
    job.persistPut('c', key(10), payload('A')); // begins the group's transaction
    const committed = job.atomic().put('c', key(2), payload('X')).commit();
    const deleted = job.deleteAcked('c', key(1));
    job.persistPut('c', key(11), payload('B')); // fails: the group's writes are redone
    const got = [job.get('c', key(2)), job.get('c', key(1)), job.get('c', key(10))] as const;
    expect((await committed).isErr() && (await deleted).isErr()).toBe(true);
    const [two, one, ten] = await Promise.all(got);
    expect(unwrap(two)).toBeUndefined();
    expect(unwrap(one)).toEqual(payload('kept'));
    expect(unwrap(ten)).toEqual(payload('A')); // the redo did run
    await p.close();
  });
});

it('the root removed and made again: another process cannot take it while this one owns it', async () => {
  const root = join(tempDir(), 'root');
  const p = unwrap(Persistency.instance(root));
  unwrap(await p.openJob('a'));
  rmSync(root, { recursive: true, force: true });
  unwrap(await p.openJob('b')); // makes the root and its lock file again, and locks it
  const intruder = new Child('owner.ts', [root, 'c']);
  const line = await intruder.waitForLine(
    (l) => l === 'ready' || l.startsWith('error'),
    'ready or error',
  );
  expect(line).toMatch(/^error Busy /);
  expect((await intruder.closed).code).toBe(2);
  await p.close();
});
