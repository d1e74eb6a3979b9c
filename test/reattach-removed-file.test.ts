/*
 * A released job whose file was removed meanwhile: its reattach opens the file it had or
 * fails (README, "Idle release"; CONTRACT.md section 7), never a new empty file in its
 * place, and a flush after writes made since is Err.
 */

import {
  copyFileSync,
  existsSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { describe, expect, it } from 'vitest';
import { key, Persistency, type PersistencyOptions, payload } from '../src/index.js';
import { injectFault } from '../src/job.js';
import { jobDbPath, jobFileStem, SIDECAR_SUFFIXES } from '../src/paths.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { underFdLimit } from './support/children.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-removed-');

/** A job `id` with one flushed row, released; its file's path. */
async function releasedWithOneRow(options: PersistencyOptions, id: string) {
  const root = tempDir();
  const p = unwrap(Persistency.instance(root, options));
  const job = unwrap(await p.openJob(id));
  job.persistPut('c', key(1), payload('flushed'));
  unwrap(await job.flush());
  expect(await releaseIdleJobs(p)).toBe(1);
  return { p, job, dbPath: jobDbPath(root, (jobFileStem(id) as { stem: string }).stem) };
}

describe.each<[string, PersistencyOptions]>([
  ['per-job', { workerThreads: 'per-job' }],
  ['2 threads', { workerThreads: 2 }],
])('a released job whose file was removed (%s)', (_name, options) => {
  it('its next call fails (Err), it does not answer from a new empty file', async () => {
    const { p, job, dbPath } = await releasedWithOneRow(options, 'gone');
    for (const f of [dbPath, ...SIDECAR_SUFFIXES.map((s) => dbPath + s)])
      rmSync(f, { force: true });
    const read = await job.get('c', key(1));
    // Ok(undefined) here means the flushed row silently vanished.
    expect(read.isErr() && [read.error.kind, read.error.code]).toEqual(['Backend', 'ENOENT']);
    expect(read.isErr() && read.error.message).toContain(dbPath);
    expect(existsSync(dbPath)).toBe(false); // no new empty file in its place
    expect(p.hasJob('gone')).toBe(true); // still open, released: closeJob ends it
    const closed = await p.closeJob('gone'); // Err too: the job's data is not in a file
    expect(closed.isErr() && [closed.error.kind, closed.error.code]).toEqual(['Backend', 'ENOENT']);
    expect(p.hasJob('gone')).toBe(false);
    await p.close();
  });

  it('closeJob as the first call after the file was removed or replaced: Err naming it', async () => {
    const gone = await releasedWithOneRow(options, 'gone-close');
    for (const f of [gone.dbPath, ...SIDECAR_SUFFIXES.map((s) => gone.dbPath + s)])
      rmSync(f, { force: true });
    const closed = await gone.p.closeJob('gone-close');
    expect(gone.job.running).toBe(false);
    expect(
      closed.isErr() && [closed.error.code, closed.error.message.includes(gone.dbPath)],
    ).toEqual(['ENOENT', true]);
    await gone.p.close();
    const swapped = await releasedWithOneRow(options, 'swapped-close');
    copyFileSync(swapped.dbPath, `${swapped.dbPath}.copy`);
    renameSync(`${swapped.dbPath}.copy`, swapped.dbPath);
    const closed2 = await swapped.p.closeJob('swapped-close');
    expect(closed2.isErr() && closed2.error.code).toBe('ESTALE');
    await swapped.p.close();
  });

  it('a file put in its place is not taken for it (ESTALE)', async () => {
    const { p, job, dbPath } = await releasedWithOneRow(options, 'swapped');
    copyFileSync(dbPath, `${dbPath}.copy`);
    rmSync(dbPath);
    renameSync(`${dbPath}.copy`, dbPath);
    const read = await job.get('c', key(1));
    expect(read.isErr() && [read.error.kind, read.error.code]).toEqual(['Backend', 'ESTALE']);
    await p.close();
  });

  it('a file made after the removal is not taken for it, even where it gets the freed inode', async () => {
    const { p, job, dbPath } = await releasedWithOneRow(options, 'reborn');
    const image = readFileSync(dbPath);
    const { ino } = statSync(dbPath);
    for (const f of [dbPath, ...SIDECAR_SUFFIXES.map((s) => dbPath + s)])
      rmSync(f, { force: true });
    writeFileSync(dbPath, image); // ext4 hands out the inode just freed: the same number
    const reused = statSync(dbPath).ino === ino;
    const read = await job.get('c', key(1));
    expect(read.isErr() && [read.error.kind, read.error.code, reused]).toEqual([
      'Backend',
      'ESTALE',
      reused,
    ]);
    const closed = await p.closeJob('reborn');
    expect(closed.isErr() && closed.error.code).toBe('ESTALE');
    await p.close();
  });

  it.each([
    ['removed', 'ENOENT'],
    ['replaced', 'ESTALE'],
  ])(
    'a flush after writes made once the file was %s is Err(Backend) naming it, as on an open job',
    async (how, code) => {
      const { p, job, dbPath } = await releasedWithOneRow(options, `gone-${how}`);
      const failed: string[] = [];
      p.events.on('writeFailed', (e) => failed.push(`${e.reason}/${e.error.code}`));
      if (how === 'removed') {
        for (const f of [dbPath, ...SIDECAR_SUFFIXES.map((s) => dbPath + s)])
          rmSync(f, { force: true });
      } else {
        copyFileSync(dbPath, `${dbPath}.copy`);
        renameSync(`${dbPath}.copy`, dbPath);
      }
      job.persistPut('c', key(2), payload('after'));
      const flushed = await job.flush();
      // CONTRACT.md section 7: the file is gone, and the flush says so (a released job's as an
      // open job's; it was WriteFailed here, with this error as its cause).
      expect(flushed.isErr() && [flushed.error.kind, flushed.error.code]).toEqual([
        'Backend',
        code,
      ]);
      expect(flushed.isErr() && flushed.error.message).toContain(dbPath);
      expect(failed).toEqual([`backend/${code}`]); // the write itself is reported
      const closed = await p.closeJob(`gone-${how}`);
      expect(closed.isErr() && closed.error.code).toBe(code);
      await p.close();
    },
  );
});

describe.each<[string, PersistencyOptions]>([
  ['per-job', { workerThreads: 'per-job' }],
  ['2 threads', { workerThreads: 2 }],
])('a :memory: job whose image cannot be taken (%s)', (_name, options) => {
  it('is not released (its data is nowhere else) and is released by a later try', async () => {
    const p = unwrap(Persistency.instance(':memory:', options));
    const job = unwrap(await p.openJob('m'));
    job.persistPut('c', key(1), payload('kept'));
    unwrap(await job.flush());
    injectFault(job, 'serialize');
    unwrap(await job.flush()); // the fault is in place before the release
    await releaseIdleJobs(p);
    expect(p.stats()).toMatchObject({ openJobs: 1, residentJobs: 1 });
    expect(unwrap(await job.get('c', key(1)))).toEqual(payload('kept'));
    await releaseIdleJobs(p);
    expect(p.stats()).toMatchObject({ openJobs: 1, residentJobs: 0 });
    expect(unwrap(await job.get('c', key(1)))).toEqual(payload('kept'));
    await p.close();
  });
});

// explainFdExhaustion relabelled any Backend error EMFILE when descriptors were short at that
// moment, as in a busy process near its limit: a removed file then read as WriteFailed/EMFILE,
// its message blaming descriptors (a review's reproduction).
describe.each(['per-job', '1'])('near the descriptor limit (workerThreads %s)', (mode) => {
  it('a released job whose file was removed: the flush still says ENOENT', async () => {
    const flushed = (await underFdLimit(200, 'removed-near-fd-limit.ts', tempDir(), mode)) as {
      kind: string;
      code: string;
      message: string;
    };
    expect([flushed.kind, flushed.code]).toEqual(['Backend', 'ENOENT']);
    expect(flushed.message).not.toContain('no file descriptor left');
  });
});
