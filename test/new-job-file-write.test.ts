/*
 * createJobFile where a file system's write takes no bytes at all (some FUSE and network
 * file systems can): it must give up, leave nothing, and leave the file to SQLite, never
 * write round forever. `writeSync` is replaced for this file only.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { createJobFile, newJobFileImage } from '../src/worker/new-job-file.js';
import { useTempDirs } from './support/env.js';

const writes = vi.hoisted(() => ({ taken: 0 as number | undefined, calls: 0 }));

vi.mock('node:fs', async (original) => {
  const fs = await original<typeof import('node:fs')>();
  const writeSync = ((...args: Parameters<typeof fs.writeSync>) => {
    // A loop that never gives up is stopped here, and fails the call count below.
    if (++writes.calls > 1000) throw new Error('writeSync called 1,000 times');
    return writes.taken === undefined ? fs.writeSync(...args) : writes.taken;
  }) as typeof fs.writeSync;
  return { ...fs, default: { ...fs, writeSync }, writeSync };
});

const tempDir = useTempDirs('persistency-new-file-write-');

describe('createJobFile with a write that takes no bytes', () => {
  it('gives up after that write, leaves no file and no side file', () => {
    const dir = tempDir();
    writes.taken = 0;
    writes.calls = 0;
    const created = createJobFile(join(dir, 'a.db'), () =>
      newJobFileImage(['CREATE TABLE t (x)'], 1),
    );
    expect(created).toBe(false);
    expect(writes.calls).toBe(1);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('writes the file when writes take their bytes (the same mock, passing them through)', () => {
    const dir = tempDir();
    writes.taken = undefined;
    writes.calls = 0;
    expect(createJobFile(join(dir, 'a.db'), () => newJobFileImage(['CREATE TABLE t (x)'], 1))).toBe(
      true,
    );
    expect(writes.calls).toBe(1);
    expect(readdirSync(dir)).toEqual(['a.db']);
  });
});
