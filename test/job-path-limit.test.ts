/*
 * The whole path of a job's file against what SQLite opens (found by a review: a 240-byte
 * id under a 270-character root was Err(Backend, SQLITE_CANTOPEN) after the job's file
 * had been made, which then stayed in the root). A path SQLite cannot open is
 * InvalidArgument before anything is made (the root's lock file too, and a root reached
 * through a link measured at its target); one at the limit opens and keeps its rows.
 * Both threading modes.
 */
import { mkdirSync, readdirSync, realpathSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { key, Persistency, payload } from '../src/index.js';
import { MAX_DB_PATH_BYTES } from '../src/paths.js';
import { ROOT_LOCK_FILE } from '../src/root-lock.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-path-limit-');

/** A root whose real path is `length` bytes long. */
function rootOf(length: number): string {
  let root = realpathSync(tempDir());
  while (root.length < length) {
    root = join(root, 'd'.repeat(Math.min(100, length - root.length - 1)));
  }
  mkdirSync(root, { recursive: true });
  expect(root.length).toBe(length);
  return root;
}

describe.each(FILE_MODES)('a job file path at SQLite’s limit (%s)', (_name, _memory, options) => {
  it('one byte over it is InvalidArgument, and nothing is made', async () => {
    const id = 'x'.repeat(200);
    const root = rootOf(MAX_DB_PATH_BYTES + 1 - (1 + id.length + 3)); // root/<id>.db
    const p = unwrap(Persistency.open(root, options));
    const r = await p.openJob(id);
    expect(r.isErr() && r.error.kind).toBe('InvalidArgument');
    expect(r.isErr() && r.error.message).toMatch(/SQLite opens at most 504/);
    expect(readdirSync(root)).toEqual([]);
    expect(unwrap(await p.listJobs())).toEqual([]);
    await p.close();
  });

  // Both found by a review of the check.
  it("a root not made yet under a linked folder is measured by the link's target", async () => {
    const id = 'x'.repeat(200);
    const deep = rootOf(MAX_DB_PATH_BYTES + 1 - (1 + id.length + 3) - '/root'.length);
    const link = join(realpathSync(tempDir()), 'link');
    symlinkSync(deep, link);
    const p = unwrap(Persistency.open(join(link, 'root'), options)); // <deep>/root, one over
    const r = await p.openJob(id);
    expect(r.isErr() && r.error.kind).toBe('InvalidArgument');
    expect(readdirSync(deep)).toEqual([]);
    await p.close();
  });

  it("a short id under a root whose lock file's path is too long: InvalidArgument", async () => {
    const root = rootOf(MAX_DB_PATH_BYTES - ROOT_LOCK_FILE.length); // the lock file one over
    const p = unwrap(Persistency.open(root, options));
    const r = await p.openJob('a');
    expect(r.isErr() && r.error.kind).toBe('InvalidArgument');
    expect(r.isErr() && r.error.message).toContain(ROOT_LOCK_FILE);
    expect(readdirSync(root)).toEqual([]);
    await p.close();
  });

  it('at it, the job opens and keeps its rows', async () => {
    const id = 'x'.repeat(200);
    const root = rootOf(MAX_DB_PATH_BYTES - (1 + id.length + 3));
    const p = unwrap(Persistency.open(root, options));
    const job = unwrap(await p.openJob(id));
    job.persistPut('c', key(1), payload('kept'));
    unwrap(await job.flush());
    await p.close();
    const q = unwrap(Persistency.open(root, options));
    const again = unwrap(await q.openJob(id));
    expect(unwrap(await again.get('c', key(1)))).toEqual(payload('kept'));
    await q.close();
    expect(readdirSync(root).sort()).toEqual([ROOT_LOCK_FILE, `${id}.db`].sort());
  });
});
