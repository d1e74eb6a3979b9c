/*
 * A job's file identity (device and inode) is read by path once SQLite has opened it: a file
 * removed or replaced in that moment must fail the open, or every later check (flush, close,
 * reattach) would watch a file the job does not have and report Ok for writes that are gone.
 * The identity read before SQLite opens the file is compared with the one after; the moment
 * cannot be hit from outside reliably, so the read after the open is made to see it.
 */
import {
  appendFileSync,
  chmodSync,
  readdirSync,
  readlinkSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

vi.mock('../src/file-identity.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/file-identity.js')>();
  return { ...real, fileIdOf: vi.fn(real.fileIdOf) };
});

const { BIRTH_TIME_KEPT, fileIdOf } = await import('../src/file-identity.js');
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
  const real = vi.mocked(fileIdOf).getMockImplementation() as typeof fileIdOf;
  /** The identity read before SQLite opens the file is the real one; the read after, `after`. */
  const afterOpen = (after: () => string | undefined) =>
    vi.mocked(fileIdOf).mockImplementationOnce(real).mockImplementationOnce(after);

  it('reads the identity of the file it opened', () => {
    const db = join(tempDir(), 'j.db');
    const { backend, fileId } = openJobFile(request(db), new JobClock());
    expect(fileId).toBe(real(db));
    expect(fileId).toMatch(BIRTH_TIME_KEPT ? /^\d+:\d+:\d+$/ : /^\d+:\d+$/);
    expect(backend.fileId).toBe(fileId);
    backend.close();
  });

  it("a file's identity stays the same through writes, mode changes and renames", () => {
    const root = tempDir();
    const path = join(root, 'f');
    writeFileSync(path, 'a');
    const first = real(path);
    for (let i = 0; i < 3; i++) {
      appendFileSync(path, 'more'); // moves the change time, which a fallback stat reports as birth
      chmodSync(path, i % 2 === 0 ? 0o600 : 0o644);
    }
    renameSync(path, `${path}2`);
    renameSync(`${path}2`, path);
    expect(real(path)).toBe(first);
  });

  it('fails (ENOENT) and lets go of the file when it is gone by the time the open is done', () => {
    const db = join(tempDir(), 'j.db');
    afterOpen(() => undefined);
    expect(() => openJobFile(request(db), new JobClock())).toThrow(
      expect.objectContaining({ code: 'ENOENT', message: expect.stringContaining('was removed') }),
    );
    expect(openOn(db)).toBe(0);
  });

  it('fails (ESTALE) when another file is at the path by the time a first open is done', () => {
    const db = join(tempDir(), 'j.db');
    afterOpen(() => '1:2');
    expect(() => openJobFile(request(db), new JobClock())).toThrow(
      expect.objectContaining({ code: 'ESTALE', message: expect.stringContaining('replaced') }),
    );
    expect(openOn(db)).toBe(0);
  });

  it("takes a file whose birth time changed as it was opened (an overlay's copy-up)", () => {
    const db = join(tempDir(), 'j.db');
    afterOpen(() => `${(real(db) as string).split(':', 2).join(':')}:42`);
    const { backend, fileId } = openJobFile(request(db), new JobClock());
    expect(fileId?.endsWith(':42')).toBe(true); // the identity after the open is the job's
    backend.close();
  });

  it('fails, letting go of the file, when the identity cannot be read after the open', () => {
    const db = join(tempDir(), 'j.db');
    afterOpen(() => {
      throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    });
    expect(() => openJobFile(request(db), new JobClock())).toThrow(
      expect.objectContaining({ code: 'ENOTDIR' }),
    );
    expect(openOn(db)).toBe(0);
  });

  it('takes the file SQLite made itself (a stale side file there), read right after it did', () => {
    const root = tempDir();
    const db = join(root, 'j.db');
    writeFileSync(`${db}-journal`, ''); // the job file is then made by SQLite, not from the image
    const { backend, fileId } = openJobFile(request(db), new JobClock());
    expect(fileId).toBe(real(db));
    backend.close();
  });

  it('a reattach fails (ESTALE) when another file is there by the time its open is done', () => {
    const db = join(tempDir(), 'j.db');
    const first = openJobFile(request(db), new JobClock());
    first.backend.close();
    afterOpen(() => '1:2');
    expect(() => openJobFile(request(db, first.fileId), new JobClock())).toThrow(
      expect.objectContaining({ code: 'ESTALE', message: expect.stringContaining('replaced') }),
    );
    expect(openOn(db)).toBe(0);
    const again = openJobFile(request(db, first.fileId), new JobClock());
    expect(again.fileId).toBe(first.fileId);
    again.backend.close();
  });
});
