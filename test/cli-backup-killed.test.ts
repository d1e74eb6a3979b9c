/*
 * The CLI's `backup` killed midway, and refused (found by reviews): it used to copy straight into
 * <dest>, so an interrupted restore left a file there that opened as the job with its rows
 * missing. It now writes the copy beside <dest> and names it only once whole and durable,
 * as job.backup does. The child is stopped when its copy appears (a watch, not a sleep),
 * so the kill lands mid-copy however fast the machine.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, watch } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { expect, it } from 'vitest';
import { key, Persistency, prefixRange } from '../src/index.js';
import { unwrap, useTempDirs } from './support/env.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const tempDir = useTempDirs('persistency-cli-backup-');

it('a backup killed mid-copy leaves nothing at its destination, and the next one is whole', async () => {
  expect(existsSync(CLI), 'run `npm run build` first (npm test does)').toBe(true);
  const root = tempDir();
  const p = unwrap(Persistency.open(root));
  const job = unwrap(await p.openJob('t'));
  const big = new Uint8Array(4000).fill(3);
  for (let i = 0; i < 8000; i++) job.persistPut('c', key(i), big); // ~32 MiB: many copy steps
  unwrap(await p.close());

  const other = tempDir();
  const dest = join(other, 't.db');
  const child = spawn(process.execPath, [CLI, 'backup', root, 't', dest], { stdio: 'ignore' });
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on('exit', (_code, signal) => resolve(signal)),
  );
  await new Promise<void>((resolve) => {
    const watcher = watch(other, () => {
      if (readdirSync(other).length === 0) return;
      child.kill('SIGSTOP'); // the copy has begun: hold it there, then kill it
      child.kill('SIGKILL');
      watcher.close();
      resolve();
    });
  });
  expect(await exited).toBe('SIGKILL');
  const left = readdirSync(other);
  expect(left.length).toBeGreaterThan(0);
  expect(
    left.every((f) => f.startsWith('.backup-')),
    left.join(),
  ).toBe(true);

  // Nothing at the destination: the next backup there is made, whole.
  const again = spawn(process.execPath, [CLI, 'backup', root, 't', dest], { stdio: 'ignore' });
  expect(await new Promise((resolve) => again.on('exit', resolve))).toBe(0);
  const q = unwrap(Persistency.open(other));
  const copy = unwrap(await q.openJob('t'));
  expect(unwrap(await copy.count('c', prefixRange(key())))).toBe(8000);
  await q.close();
});

// Found by a review: the destination's folder was made before the job was opened, and
// stayed behind when the job was refused.
it('a refused job leaves no folder made for its copy', async () => {
  const root = tempDir();
  const db = new Database(join(root, 'j.db'));
  db.exec(
    'CREATE TABLE kv (category BLOB NOT NULL, key BLOB NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (category, key)) WITHOUT ROWID; PRAGMA user_version = 99',
  );
  db.close();
  const other = tempDir();
  const run = spawn(
    process.execPath,
    [CLI, 'backup', root, 'j', join(other, 'new', 'deep', 'j.db')],
    {
      stdio: 'ignore',
    },
  );
  expect(await new Promise((resolve) => run.on('exit', resolve))).toBe(5);
  expect(readdirSync(other)).toEqual([]);
});
