/*
 * CONTRACT.md section 7: a symbolic link at a job's file path (or a sidecar's) is refused
 * with Err(Backend), never followed: not out of the root, not into a foreign SQLite file,
 * and dropJob does not delete the link as if it were the job.
 */
import { existsSync, lstatSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { Persistency, type PersistencyOptions } from '../src/index.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-links-');

function expectLinkRefused(r: { isErr(): boolean; error?: unknown }, path: string): void {
  expect(r.isErr()).toBe(true);
  const e = r.error as { kind: string; code?: string; message: string };
  expect([e.kind, e.code]).toEqual(['Backend', 'ELOOP']);
  expect(e.message).toContain(path);
}

describe.each<[string, PersistencyOptions]>([
  ['per-job', { workerThreads: 'per-job' }],
  ['2 threads', { workerThreads: 2 }],
])('a symbolic link at a job file (%s)', (_name, options) => {
  it('dangling: openJob is Err(Backend, ELOOP) and nothing is made where it points', async () => {
    const root = tempDir();
    const outside = join(tempDir(), 'x.db');
    symlinkSync(outside, join(root, 'x.db'));
    const p = unwrap(Persistency.instance(root, options));
    expectLinkRefused(await p.openJob('x'), join(root, 'x.db'));
    expect(existsSync(outside)).toBe(false);
    expect(existsSync(`${outside}-wal`)).toBe(false);
  });

  it('to a foreign SQLite file: refused, the file untouched; dropJob refuses too and deletes nothing', async () => {
    const root = tempDir();
    const foreign = join(tempDir(), 'app.db');
    const db = new Database(foreign);
    db.exec('CREATE TABLE t (a); INSERT INTO t VALUES (1)');
    db.close();
    const before = readFileSync(foreign);
    symlinkSync(foreign, join(root, 'f.db'));
    const p = unwrap(Persistency.instance(root, options));
    expectLinkRefused(await p.openJob('f'), join(root, 'f.db'));
    expectLinkRefused(await p.dropJob('f'), join(root, 'f.db'));
    expect(lstatSync(join(root, 'f.db')).isSymbolicLink()).toBe(true);
    expect(readFileSync(foreign).equals(before)).toBe(true);
  });

  it('at a sidecar (-wal): openJob is refused', async () => {
    const root = tempDir();
    const outside = join(tempDir(), 'w');
    symlinkSync(outside, join(root, 'w.db-wal'));
    const p = unwrap(Persistency.instance(root, options));
    expectLinkRefused(await p.openJob('w'), join(root, 'w.db-wal'));
    expect(existsSync(outside)).toBe(false);
  });
});
