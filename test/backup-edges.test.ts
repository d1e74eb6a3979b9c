/*
 * job.backup at its edges, from adversarial reviews (each failed before its fix): a long
 * destination name, a job whose file was replaced, a released job whose file is gone, two
 * backups racing for one destination, a close racing a backup, a process without the global
 * `crypto`, destinations named as side files of a database. Both threading modes, file and
 * `:memory:` roots where they apply.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { type Job, jobFileName, key, Persistency, payload, prefixRange } from '../src/index.js';
import { jobClient } from '../src/job.js';
import {
  DB_SUFFIX,
  jobDbPath,
  jobFileStem,
  MAX_STEM_BYTES,
  SIDECAR_SUFFIXES,
} from '../src/paths.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES, ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-backup-edges-');
const stemOf = (id: string): string => (jobFileStem(id) as { stem: string }).stem;

function rowsIn(file: string): number {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT COUNT(*) AS n FROM kv').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

describe.each(ROOT_MODES)('backup edges (%s)', (_name, memory, options) => {
  const open = () => unwrap(Persistency.open(memory ? ':memory:' : tempDir(), options));

  it('copies a job of the longest id into <other root>/<its file name>, which opens there', async () => {
    const id = 'a'.repeat(MAX_STEM_BYTES);
    const p = open();
    const died: string[] = [];
    p.events.on('jobFailed', (e) => died.push(e.jobId));
    const job = unwrap(await p.openJob(id));
    const neighbour = unwrap(await p.openJob('neighbour'));
    job.persistPut('c', key(1), payload('x'));
    neighbour.persistPut('c', key(1), payload('y'));
    const otherRoot = tempDir();
    unwrap(await job.backup(join(otherRoot, stemOf(id) + DB_SUFFIX)));
    expect(unwrap(await neighbour.get('c', key(1)))).toEqual(payload('y'));
    expect(died).toEqual([]);
    await p.close();
    const other = unwrap(Persistency.open(otherRoot, options));
    expect(unwrap(await unwrap(await other.openJob(id)).count('c', prefixRange(key())))).toBe(1);
    await other.close();
  });

  it('copies a job into <other root>/jobFileName(id), which opens there and lists as the id', async () => {
    const ids = ['Dev Ops/1', 'é', '../up', 'con'];
    const p = open();
    const otherRoot = tempDir();
    for (const id of ids) {
      const job = unwrap(await p.openJob(id));
      job.persistPut('c', key(1), payload(id));
      unwrap(await job.backup(join(otherRoot, jobFileName(id))));
    }
    await p.close();
    const other = unwrap(Persistency.open(otherRoot, options));
    expect(unwrap(await other.listJobs())).toEqual([...ids].sort());
    for (const id of ids)
      expect(unwrap(await unwrap(await other.openJob(id)).get('c', key(1)))).toEqual(payload(id));
    await other.close();
    for (const bad of ['', 'x'.repeat(MAX_STEM_BYTES + 1), '\ud800', 42]) {
      expect(() => jobFileName(bad as string)).toThrow(
        expect.objectContaining({ kind: 'InvalidArgument' }),
      );
    }
  });

  it('of three backups racing for one destination, one is made and the others are InvalidArgument', async () => {
    const p = open();
    const a = unwrap(await p.openJob('a'));
    const b = unwrap(await p.openJob('b'));
    for (let i = 0; i < 2_000; i++) a.persistPut('c', key(i), new Uint8Array(500));
    for (let i = 0; i < 3_000; i++) b.persistPut('c', key(i), new Uint8Array(500));
    const dir = tempDir();
    const dest = join(dir, 'x.db');
    const results = await Promise.all([a.backup(dest), b.backup(dest), a.backup(dest)]);
    expect(results.map((r) => (r.isOk() ? 'Ok' : r.error.kind)).sort()).toEqual([
      'InvalidArgument',
      'InvalidArgument',
      'Ok',
    ]);
    expect(readdirSync(dir)).toEqual(['x.db']);
    expect([2_000, 3_000]).toContain(rowsIn(dest));
  });

  it('a close racing a backup: Ok with the copy at its destination, or Closed with nothing there', async () => {
    for (let round = 0; round < 30; round++) {
      const p = open();
      const job = unwrap(await p.openJob('j'));
      for (let i = 0; i < 300; i++) job.persistPut('c', key(i), new Uint8Array(1000).fill(i));
      unwrap(await job.flush());
      const dir = tempDir();
      const copied = job.backup(join(dir, 'j.db'));
      // The close lands at a different point of the copy each round.
      for (let t = 0; t < round; t++) await new Promise((r) => setImmediate(r));
      const closed = p.closeJob('j');
      const r = await copied;
      unwrap(await closed);
      const files = readdirSync(dir);
      if (r.isOk()) expect(files, `round ${round}`).toEqual(['j.db']);
      else {
        expect(r.error.kind).toBe('Closed');
        expect(files, `round ${round}`).toEqual([]);
      }
      await p.close();
    }
  });
});

describe.each(FILE_MODES)(
  'backup of a job whose file is not its own (%s)',
  (_name, _memory, options) => {
    it('is Err(ESTALE) once the job file was replaced, as iterate and flush are', async () => {
      const root = tempDir();
      const p = unwrap(Persistency.open(root, options));
      const other = unwrap(await p.openJob('other'));
      for (let i = 0; i < 3_000; i++) other.persistPut('d', key(i), new Uint8Array(500).fill(7));
      unwrap(await p.closeJob('other'));
      const job = unwrap(await p.openJob('j'));
      for (let i = 0; i < 100; i++) job.persistPut('c', key(i), payload('mine'));
      unwrap(await job.flush());
      const dbPath = jobDbPath(root, stemOf('j'));
      copyFileSync(jobDbPath(root, stemOf('other')), `${dbPath}.new`);
      renameSync(`${dbPath}.new`, dbPath); // j's path now holds another tenant's file
      const base = tempDir();
      const r = await job.backup(join(base, 'made', 'for', 'it', 'j.db'));
      expect(r.isErr() && r.error.code).toBe('ESTALE');
      // No file; the folders made stay (another backup may be about to write there).
      expect(readdirSync(join(base, 'made', 'for', 'it'))).toEqual([]);
    });

    it('is Err, not a hang, for a released job whose file is gone', async () => {
      const root = tempDir();
      const p = unwrap(Persistency.open(root, { ...options, idleCloseMs: 0 }));
      const job = unwrap(await p.openJob('gone'));
      job.persistPut('c', key(1), payload('x'));
      unwrap(await job.flush());
      expect(await releaseIdleJobs(p)).toBe(1);
      const dbPath = jobDbPath(root, stemOf('gone'));
      for (const f of [dbPath, ...SIDECAR_SUFFIXES.map((s) => dbPath + s)])
        rmSync(f, { force: true });
      const r = await job.backup(join(tempDir(), 'copy.db'));
      expect(r.isErr()).toBe(true);
      expect(jobClient(job).holds.count).toBe(0); // the job can be released again
    });
  },
);

it('makes a backup in a process whose global crypto is switched off, its worker alive', async () => {
  const root = tempDir();
  const fixture = fileURLToPath(new URL('./fixtures/backup-no-webcrypto.ts', import.meta.url));
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', fixture, root, join(root, 'copy.db')],
    {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      env: { ...process.env, NODE_OPTIONS: '--no-experimental-global-webcrypto' },
      timeout: 60_000,
    },
  );
  expect(JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}')).toEqual({
    globalCrypto: 'undefined',
    backup: 'ok',
    jobStillServes: true,
    rows: 1,
  });
});

describe.each(FILE_MODES)('backup to a side file name (%s)', (_name, _memory, options) => {
  // Before the fix each was Ok, and then: the copy at a live job's -journal made the job's
  // iterators, backups and the CLI fail (SQLITE_READONLY_ROLLBACK) until its next open
  // deleted the copy; at a -wal, -new or the lock's -journal, an open or a new owner
  // replaced or deleted it.
  it('is InvalidArgument, writes nothing, and leaves the jobs whole', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.open(root, options));
    try {
      const live = unwrap(await p.openJob('live'));
      const closed = unwrap(await p.openJob('closed'));
      const source = unwrap(await p.openJob('source'));
      for (const job of [live, closed, source]) {
        for (let i = 0; i < 10; i++) job.persistPut('c', key(i), payload(job.id, i));
        unwrap(await job.flush());
      }
      unwrap(await p.closeJob('closed'));
      const names = [
        `${jobFileName('live')}-journal`,
        `${jobFileName('live')}-wal`,
        `${jobFileName('live')}-shm`,
        `${jobFileName('live')}-new`,
        `${jobFileName('closed')}-wal`,
        `${jobFileName('never-opened')}-new`,
        `${jobFileName('never-opened')}-journal`,
        '.persistency-owner-journal',
      ];
      const elsewhere = tempDir();
      const dests = [
        ...names.map((n) => join(root, n)),
        join(elsewhere, 'copy.db-wal'),
        join(elsewhere, 'copy-journal'),
      ];
      for (const dest of dests) {
        // The live job's own -wal and -shm are there: left as they are.
        const there = existsSync(dest);
        const r = await source.backup(dest);
        expect(r.isErr() && r.error, dest).toMatchObject({
          kind: 'InvalidArgument',
          code: 'EINVAL',
          message: expect.stringContaining(`${dest} is the name of a side file of`),
        });
        expect(existsSync(dest), dest).toBe(there);
      }
      // Names that only look alike are copies like any other.
      for (const ok of [join(elsewhere, 'copy-new'), join(elsewhere, 'wal'), join(root, 'x.dbnew')])
        unwrap(await source.backup(ok));
      expect(rowsIn(join(elsewhere, 'copy-new'))).toBe(10);
      const readAll = async (job: Job): Promise<number> => {
        let n = 0;
        for await (const _row of job.iterate('c', prefixRange(key()))) n++;
        return n;
      };
      expect(await readAll(live)).toBe(10);
      unwrap(await live.backup(join(elsewhere, 'live.db')));
      expect(rowsIn(join(elsewhere, 'live.db'))).toBe(10);
      expect(await readAll(unwrap(await p.openJob('closed')))).toBe(10);
    } finally {
      expect((await p.close()).isOk()).toBe(true);
    }
  });
});
