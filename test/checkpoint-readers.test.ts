/*
 * Issue 16: the checkpoint a job makes when it is closed or released never waits for a
 * reader that holds the WAL (a CLI, a backup, Litestream's long-lived read transaction).
 * The reader here holds its read transaction across the close; with a busy timeout of ten
 * minutes, a close that waited for it would not finish within the test's time limit.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { key, Persistency, prefixRange } from '../src/index.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-checkpoint-');
const WAIT_FOREVER_MS = 600_000;

/** A reader holding the WAL: a read transaction begun and left open. */
function holdWal(file: string): Database.Database {
  const reader = new Database(file, { readonly: true, fileMustExist: true });
  reader.exec('BEGIN');
  reader.prepare('SELECT COUNT(*) FROM kv').get();
  return reader;
}

describe.each(FILE_MODES)(
  'close and release beside a reader of the WAL (%s)',
  (_name, _memory, options) => {
    it('closes the job without waiting for the reader; the WAL keeps what it holds', async () => {
      const root = tempDir();
      const p = unwrap(Persistency.open(root, { ...options, busyTimeoutMs: WAIT_FOREVER_MS }));
      const job = unwrap(await p.openJob('j'));
      for (let i = 0; i < 2_000; i++) job.persistPut('log', key(i), new Uint8Array(100));
      unwrap(await job.flush());
      const reader = holdWal(join(root, 'j.db'));
      unwrap(await p.closeJob('j'));
      expect(existsSync(join(root, 'j.db-wal'))).toBe(true); // not truncated under the reader
      reader.exec('COMMIT');
      reader.close();
      const again = unwrap(await p.openJob('j'));
      expect(unwrap(await again.count('log', prefixRange(key())))).toBe(2_000);
      await p.close();
    });

    it('releases an idle job without waiting for the reader, and takes it up again', async () => {
      const root = tempDir();
      const p = unwrap(
        Persistency.open(root, { ...options, busyTimeoutMs: WAIT_FOREVER_MS, idleCloseMs: 0 }),
      );
      const job = unwrap(await p.openJob('j'));
      const other = unwrap(await p.openJob('other'));
      for (let i = 0; i < 2_000; i++) job.persistPut('log', key(i), new Uint8Array(100));
      unwrap(await job.flush());
      const reader = holdWal(join(root, 'j.db'));
      expect(await releaseIdleJobs(p)).toBe(2);
      other.persistPut('log', key(1), new Uint8Array(1));
      unwrap(await other.flush()); // the thread the release ran on serves on
      job.persistPut('log', key(2_000), new Uint8Array(100));
      expect(unwrap(await job.count('log', prefixRange(key())))).toBe(2_001);
      reader.exec('COMMIT');
      reader.close();
      await p.close();
    });
  },
);
