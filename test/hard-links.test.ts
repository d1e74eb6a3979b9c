/*
 * A second name (a hard link) for a job's file or sidecar (found by a review: a job whose
 * file was a hard link to another job's read and wrote that job's rows; a new job whose
 * -shm was a hard link to a live job's -shm made the live job lose rows it had flushed).
 * Both names are refused with EMLINK and left as they are, whichever was first; the one
 * second name the library makes itself, a new job's side file left by a crash, is not.
 * Both threading modes.
 */
import { existsSync, linkSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { key, Persistency, payload } from '../src/index.js';
import { NEW_FILE_SUFFIX } from '../src/paths.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-hard-links-');

describe.each(FILE_MODES)('hard links in a root (%s)', (_name, _memory, options) => {
  async function rootWithJobA(): Promise<string> {
    const root = tempDir();
    const p = unwrap(Persistency.open(root, options));
    const a = unwrap(await p.openJob('a'));
    a.persistPut('secret', key(1), payload('a-only'));
    unwrap(await p.close());
    return root;
  }

  it("a job file that is a second name of another job's file: both refused, nothing changed", async () => {
    const root = await rootWithJobA();
    linkSync(join(root, 'a.db'), join(root, 'b.db'));
    const before = readFileSync(join(root, 'a.db'));
    const p = unwrap(Persistency.open(root, options));
    for (const id of ['b', 'a']) {
      const r = await p.openJob(id);
      expect(r.isErr() && [r.error.kind, r.error.code]).toEqual(['Backend', 'EMLINK']);
    }
    const dropped = await p.dropJob('b');
    expect(dropped.isErr() && dropped.error.code).toBe('EMLINK');
    expect(readFileSync(join(root, 'a.db'))).toEqual(before);
    rmSync(join(root, 'b.db')); // the second name gone, the job is its own again
    const a = unwrap(await p.openJob('a'));
    expect(unwrap(await a.get('secret', key(1)))).toEqual(payload('a-only'));
    await p.close();
  });

  it("a new job whose -shm is a second name of a live job's: refused; the live job keeps its rows", async () => {
    const root = tempDir();
    const p = unwrap(Persistency.open(root, options));
    const a = unwrap(await p.openJob('a'));
    for (let i = 0; i < 100; i++) a.persistPut('a', key(i), new Uint8Array(300).fill(1));
    unwrap(await a.flush());
    linkSync(join(root, 'a.db-shm'), join(root, 'b.db-shm'));
    const b = await p.openJob('b');
    expect(b.isErr() && b.error.code).toBe('EMLINK');
    for (let i = 100; i < 200; i++) a.persistPut('a', key(i), new Uint8Array(300).fill(2));
    unwrap(await a.flush());
    await p.close();
    rmSync(join(root, 'b.db-shm'));
    const q = unwrap(Persistency.open(root, options));
    const again = unwrap(await q.openJob('a'));
    expect(unwrap(await again.count('a', { start: key() }))).toBe(200);
    await q.close();
  });

  it('a new job file left linked to its side file by a crash opens, and the side file goes', async () => {
    const root = await rootWithJobA();
    linkSync(join(root, 'a.db'), join(root, `a.db${NEW_FILE_SUFFIX}`));
    const p = unwrap(Persistency.open(root, options));
    const a = unwrap(await p.openJob('a'));
    expect(unwrap(await a.get('secret', key(1)))).toEqual(payload('a-only'));
    expect(existsSync(join(root, `a.db${NEW_FILE_SUFFIX}`))).toBe(false);
    await p.close();
  });
});
