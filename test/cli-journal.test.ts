/*
 * The inspector and a rollback journal beside a job file (found by a review: a closed job is
 * read through a connection kept from writing by query_only, and SQLite still played a
 * crafted -journal back into the file, took it out of WAL mode and deleted the journal).
 * A job file, in WAL mode, never has a journal of its own: the inspector refuses to read,
 * and every file stays as it was. Runs the built CLI (`npm test` builds it first).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { expect, it } from 'vitest';
import { key, Persistency } from '../src/index.js';
import { unwrap, useTempDirs } from './support/env.js';

const CLI = join(fileURLToPath(new URL('..', import.meta.url)), 'dist', 'cli', 'main.js');
const tempDir = useTempDirs('persistency-rev-cli-journal-');

/** A closed job `j` in `root` with 50 rows of 'original', and a hot journal beside it. */
async function jobWithForeignJournal(root: string): Promise<string> {
  const p = unwrap(Persistency.open(root));
  const job = unwrap(await p.openJob('j'));
  for (let i = 0; i < 50; i++) job.persistPut('c', key(i), Buffer.from('original'.repeat(20)));
  unwrap(await p.close());
  const file = join(root, 'j.db');
  // The journal: taken mid-transaction from a copy whose row 0 says 'injected'.
  const copy = join(tempDir(), 'copy.db');
  copyFileSync(file, copy);
  const db = new Database(copy);
  db.pragma('journal_mode = DELETE');
  db.exec("UPDATE kv SET payload = CAST('injected' AS BLOB) WHERE key = x'8000000000000000'");
  db.pragma('cache_size = 1');
  db.exec("BEGIN; DELETE FROM kv; INSERT INTO kv VALUES (x'63', x'00', zeroblob(100000))");
  copyFileSync(`${copy}-journal`, `${file}-journal`);
  db.exec('ROLLBACK');
  db.close();
  return file;
}

it.each([
  ['scan', 'j', 'c', '--limit', '1', '--payload', 'utf8'],
  ['count', 'j', 'c'],
  ['check', 'j'],
])('`%s` leaves a job file with a -journal beside it as it found it', async (command, ...rest) => {
  const root = tempDir();
  const file = await jobWithForeignJournal(root);
  const before = readFileSync(file);
  expect([before[18], before[19]]).toEqual([2, 2]); // a WAL-mode job file
  const r = spawnSync(process.execPath, [CLI, command, root, ...rest], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  const after = readFileSync(file);
  expect(r.status).toBe(5); // EXIT.failed
  expect(r.stderr).toMatch(/has a rollback journal beside it/);
  expect(
    {
      stdout: r.stdout.includes('injected'),
      walHeader: [after[18], after[19]],
      same: after.equals(before),
      journal: existsSync(`${file}-journal`),
    },
    `${command}: status ${r.status}, stdout ${JSON.stringify(r.stdout)}, stderr ${JSON.stringify(r.stderr)}`,
  ).toEqual({ stdout: false, walHeader: [2, 2], same: true, journal: true });
});
