/*
 * A symbolic link at the root's lock file (found by a review: SQLite followed it, so the
 * first openJob switched the database it pointed at out of WAL and held it locked, and a
 * dangling link made a file outside the root). The open is refused (ELOOP), and what the
 * link points at is left as it was.
 */
import { readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { expect, it } from 'vitest';
import { Persistency } from '../src/index.js';
import { ROOT_LOCK_FILE } from '../src/root-lock.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-rev-lock-link-');

it('a symbolic link at the root lock file is refused, and what it points at is untouched', async () => {
  const root = tempDir();
  const outside = tempDir();
  const foreign = join(outside, 'app.db');
  const db = new Database(foreign);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t (a); INSERT INTO t VALUES (1)');
  db.close();
  const before = readFileSync(foreign);
  symlinkSync(foreign, join(root, ROOT_LOCK_FILE));

  const p = unwrap(Persistency.open(root));
  const opened = await p.openJob('a');
  expect(opened.isErr() && [opened.error.kind, opened.error.code]).toEqual(['Backend', 'ELOOP']);
  // While the root is owned: can the foreign database's own users still read it?
  const user = new Database(foreign, { timeout: 0 });
  let readWhileOwned: string;
  try {
    readWhileOwned = String(user.prepare('SELECT count(*) FROM t').pluck().get());
  } catch (e) {
    readWhileOwned = (e as { code: string }).code;
  } finally {
    user.close();
  }
  unwrap(await p.close());
  const after = readFileSync(foreign);
  expect({
    refused: opened.isErr(),
    readWhileOwned,
    walHeader: [after[18], after[19]],
    untouched: after.equals(before),
  }).toEqual({ refused: true, readWhileOwned: '1', walHeader: [2, 2], untouched: true });
  expect(readdirSync(outside)).toEqual(['app.db']);
});

it('a dangling symbolic link at the root lock file makes no file outside the root', async () => {
  const root = tempDir();
  const outside = tempDir();
  symlinkSync(join(outside, 'stray'), join(root, ROOT_LOCK_FILE));
  const p = unwrap(Persistency.open(root));
  await p.openJob('a');
  unwrap(await p.close());
  expect(readdirSync(outside)).toEqual([]);
});
