/*
 * A job's file identity (device and inode) is read by path once SQLite has opened it: a file
 * removed or replaced in that moment must fail the open, or every later check (flush, close,
 * reattach) would watch a file the job does not have and report Ok for writes that are gone.
 * The moment cannot be hit from outside, so the identity read is made to see it.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

vi.mock('../src/file-identity.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/file-identity.js')>();
  return { ...real, fileIdOf: vi.fn(real.fileIdOf) };
});

const { fileIdOf } = await import('../src/file-identity.js');
const { openJobFile } = await import('../src/worker/main.js');
const { JobClock } = await import('../src/worker/expiry.js');
const { useTempDirs } = await import('./support/env.js');

const tempDir = useTempDirs('persistency-open-identity-');
const request = (dbPath: string, fileId?: string) => ({
  dbPath,
  fileId,
  busyTimeoutMs: 1000,
  journalSizeLimitBytes: 0,
  maxJobBytes: 0,
  verifyOnOpen: false,
});
/** Descriptors of this process open on `path`. */
const openOn = (path: string) =>
  readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(join('/proc/self/fd', fd)).startsWith(path);
    } catch {
      return false;
    }
  }).length;

afterEach(() => {
  vi.mocked(fileIdOf).mockClear();
});

describe('opening a job file', () => {
  it('reads the identity of the file it opened', () => {
    const db = join(tempDir(), 'j.db');
    const { backend, fileId } = openJobFile(request(db), new JobClock());
    expect(fileId).toBe(fileIdOf(db));
    expect(fileId).toMatch(/^\d+:\d+$/);
    backend.close();
  });

  it('fails (ENOENT) and lets go of the file when it is gone by the time its identity is read', () => {
    const db = join(tempDir(), 'j.db');
    vi.mocked(fileIdOf).mockReturnValueOnce(undefined);
    expect(() => openJobFile(request(db), new JobClock())).toThrow(
      expect.objectContaining({ code: 'ENOENT', message: expect.stringContaining('was removed') }),
    );
    expect(openOn(db)).toBe(0);
  });

  it('a reattach fails (ESTALE) when another file is there by the time its identity is read', () => {
    const db = join(tempDir(), 'j.db');
    const first = openJobFile(request(db), new JobClock());
    first.backend.close();
    vi.mocked(fileIdOf).mockReturnValueOnce('1:2');
    expect(() => openJobFile(request(db, first.fileId), new JobClock())).toThrow(
      expect.objectContaining({ code: 'ESTALE', message: expect.stringContaining('replaced') }),
    );
    expect(openOn(db)).toBe(0);
    const again = openJobFile(request(db, first.fileId), new JobClock());
    expect(again.fileId).toBe(first.fileId);
    again.backend.close();
  });
});
