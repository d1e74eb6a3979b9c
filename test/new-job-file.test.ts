/*
 * A new job's file is written whole from an image (src/worker/new-job-file.ts) rather than
 * built by SQLite: it must be the file SQLite would have made (the reference's schema,
 * version 1, WAL mode), appear at its name only whole (also when a write comes up short),
 * never replace a file, and leave nothing beside it, whatever a crash left there.
 */
import { execFile } from 'node:child_process';
import {
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { key, Persistency, type PersistencyOptions, payload } from '../src/index.js';
import { BASE_VERSION } from '../src/worker/job-database.js';
import { createJobFile, newJobFileImage } from '../src/worker/new-job-file.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-new-file-');

/** The reference's schema, as src/worker/job-database.ts runs it. */
const KV_TABLE = `CREATE TABLE IF NOT EXISTS kv (
     category BLOB NOT NULL,
     key BLOB NOT NULL,
     payload BLOB NOT NULL,
     PRIMARY KEY (category, key)
   ) WITHOUT ROWID`;

/** A file made the way SQLite makes one (and the Nim reference does): WAL, then the schema. */
function sqliteMadeFile(path: string): Buffer {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.transaction(() => {
    db.exec(KV_TABLE);
    db.pragma('user_version = 1');
  }).immediate();
  db.close(); // checkpoints: the file holds everything
  return readFileSync(path);
}

describe('the image of a new job file', () => {
  it('is byte for byte the file SQLite makes, but for the two counters of its writes', () => {
    const made = sqliteMadeFile(join(tempDir(), 'made.db'));
    const image = Buffer.from(newJobFileImage([KV_TABLE], 1));
    expect(image.length).toBe(made.length);
    const differ: number[] = [];
    for (let i = 0; i < image.length; i++) if (image[i] !== made[i]) differ.push(i);
    // Offsets 24..27 (change counter) and 92..95 (version-valid-for) count writes: SQLite's
    // file took two transactions, the image none. Equal to each other in both.
    expect(differ.every((i) => (i >= 24 && i < 28) || (i >= 92 && i < 96))).toBe(true);
    expect(image.readUInt32BE(24)).toBe(image.readUInt32BE(92));
    expect(made.readUInt32BE(24)).toBe(made.readUInt32BE(92));
  });

  it('opens as a WAL database at the base version with the kv table, intact', () => {
    const path = join(tempDir(), 'image.db');
    writeFileSync(path, newJobFileImage([KV_TABLE], BASE_VERSION));
    const db = new Database(path);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(BASE_VERSION);
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(db.prepare("SELECT sql FROM sqlite_master WHERE name = 'kv'").pluck().get()).toBe(
      KV_TABLE.replace('IF NOT EXISTS ', ''),
    );
    db.close();
  });
});

describe('createJobFile', () => {
  const image = () => newJobFileImage([KV_TABLE], 1);

  it('writes the file when nothing of the job is there, and leaves no side file', () => {
    const path = join(tempDir(), 'a.db');
    expect(createJobFile(path, image)).toBe(true);
    expect(readFileSync(path)).toEqual(Buffer.from(image()));
    expect(readdirSync(join(path, '..'))).toEqual(['a.db']);
  });

  it('leaves an existing file, and a path with a WAL or journal beside it, to SQLite', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'a.db'), 'not touched');
    expect(createJobFile(join(dir, 'a.db'), image)).toBe(false);
    expect(readFileSync(join(dir, 'a.db'), 'utf8')).toBe('not touched');
    for (const [name, side] of [
      ['b', '-wal'],
      ['c', '-journal'],
    ]) {
      writeFileSync(join(dir, `${name}.db${side}`), '');
      expect(createJobFile(join(dir, `${name}.db`), image)).toBe(false);
      expect(existsSync(join(dir, `${name}.db`))).toBe(false);
    }
    expect(readdirSync(dir).sort()).toEqual(['a.db', 'b.db-wal', 'c.db-journal']);
  });

  it('writes over a side file left by a crash before the link', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'a.db-new'), 'half a file');
    expect(createJobFile(join(dir, 'a.db'), image)).toBe(true);
    expect(readFileSync(join(dir, 'a.db'))).toEqual(Buffer.from(image()));
    expect(readdirSync(dir)).toEqual(['a.db']);
  });
  it('removes a second link left by a crash between link and unlink, the job file kept', () => {
    const dir = tempDir();
    const path = join(dir, 'a.db');
    expect(createJobFile(path, image)).toBe(true);
    linkSync(path, `${path}-new`);
    expect(statSync(path).nlink).toBe(2);
    expect(createJobFile(path, image)).toBe(false);
    expect(readdirSync(dir)).toEqual(['a.db']);
    expect(statSync(path).nlink).toBe(1);
    expect(readFileSync(path)).toEqual(Buffer.from(image()));
  });

  it('leaves a directory at the side name alone, and the file to SQLite', () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'a.db-new'));
    expect(createJobFile(join(dir, 'a.db'), image)).toBe(false);
    expect(readdirSync(dir)).toEqual(['a.db-new']);
  });
});

const run = promisify(execFile);
const SHORT_WRITE = fileURLToPath(new URL('./fixtures/short-write.ts', import.meta.url));

describe.each(['per-job', '2'])('a write that comes up short (workerThreads %s)', (mode) => {
  it('never puts part of a file at the name; once there is room the job opens and writes', async () => {
    const dir = tempDir();
    // 4 KiB: half the image, and less than SQLite needs to make the job's file either.
    const { stdout } = await run(
      'bash',
      [
        '-c',
        `ulimit -f 4 && exec "${process.execPath}" --import tsx "${SHORT_WRITE}" "$0" "$1"`,
        dir,
        mode,
      ],
      { cwd: fileURLToPath(new URL('..', import.meta.url)), timeout: 60_000 },
    );
    const out = JSON.parse(stdout.trim().split('\n').at(-1) as string);
    expect(out.imageBytes).toBe(8192);
    expect(out).toMatchObject({ created: false, direct: [] });
    expect(out.open === 'ok' && out.flushed === 'ok').toBe(false);

    const p = unwrap(
      Persistency.open(join(dir, 'root'), { workerThreads: mode === 'per-job' ? 'per-job' : 2 }),
    );
    const job = unwrap(await p.openJob('j'));
    job.persistPut('c', key(1), payload('after'));
    unwrap(await job.flush());
    expect(unwrap(await job.get('c', key(1)))).toEqual(payload('after'));
    unwrap(await p.close());
    const db = new Database(join(dir, 'root', 'j.db'), { readonly: true });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    db.close();
  });
});

describe.each(FILE_MODES)('a new job (%s)', (_name, _memory, options) => {
  it('is a WAL file at version 1 that a plain SQLite reads; its writes land', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.open(root, options));
    const job = unwrap(await p.openJob('fresh'));
    job.persistPut('c', key(1), payload('one'));
    unwrap(await job.flush());
    const db = new Database(join(root, 'fresh.db'), { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(1);
    expect(db.prepare('SELECT count(*) FROM kv').pluck().get()).toBe(1);
    db.close();
    unwrap(await p.close());
    expect(readdirSync(root).filter((f) => f.startsWith('fresh'))).toEqual(['fresh.db']);
  });

  it('a side file left by a crash is removed by the next open, or by dropJob', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.open(root, options));
    writeFileSync(join(root, 'a.db-new'), 'half a file');
    const a = unwrap(await p.openJob('a'));
    a.persistPut('c', key(1), payload('a'));
    unwrap(await a.flush());
    expect(existsSync(join(root, 'a.db-new'))).toBe(false);
    unwrap(await p.closeJob('a'));
    writeFileSync(join(root, 'a.db-new'), 'another');
    unwrap(await p.dropJob('a'));
    expect(readdirSync(root).filter((f) => f.startsWith('a.'))).toEqual([]);
    unwrap(await p.close());
  });

  it('a directory at the side name: the job is made by SQLite, and dropJob leaves the directory', async () => {
    const root = tempDir();
    mkdirSync(join(root, 'a.db-new'));
    const p = unwrap(Persistency.open(root, options));
    const a = unwrap(await p.openJob('a'));
    a.persistPut('c', key(1), payload('a'));
    unwrap(await a.flush());
    unwrap(await p.closeJob('a'));
    unwrap(await p.dropJob('a'));
    expect(readdirSync(root).filter((f) => f.startsWith('a.'))).toEqual(['a.db-new']);
    unwrap(await p.close());
  });

  /**
   * Job 'a' holding one row, closed, with a second link to its file at the side name (a
   * crash between link and unlink), then opened by an instance with `reopen`: the link is
   * gone and the row kept.
   */
  async function secondLinkRemovedAtOpen(reopen: PersistencyOptions): Promise<void> {
    const root = tempDir();
    const p = unwrap(Persistency.open(root, options));
    unwrap(await p.openJob('a')).persistPut('c', key(1), payload('kept'));
    unwrap(await p.close());
    linkSync(join(root, 'a.db'), join(root, 'a.db-new'));
    const again = unwrap(Persistency.open(root, reopen));
    const a = unwrap(await again.openJob('a'));
    expect(existsSync(join(root, 'a.db-new'))).toBe(false);
    expect(statSync(join(root, 'a.db')).nlink).toBe(1);
    expect(unwrap(await a.get('c', key(1)))).toEqual(payload('kept'));
    unwrap(await again.close());
  }

  it('a second link to the job file, left by a crash before the side name went, is removed at open', () =>
    secondLinkRemovedAtOpen(options));

  it('a second link left by a crash is removed at open also where maxJobBytes skips the image', () =>
    secondLinkRemovedAtOpen({ ...options, maxJobBytes: 4096 }));

  it('maxJobBytes below the size of a new file refuses the job at open, as SQLite did', async () => {
    const p = unwrap(Persistency.open(tempDir(), { ...options, maxJobBytes: 4096 }));
    const opened = await p.openJob('small');
    expect(opened.isErr() && [opened.error.kind, opened.error.code]).toEqual([
      'Backend',
      'SQLITE_FULL',
    ]);
    unwrap(await p.close());
  });

  it('a symbolic link in the side file’s place is refused, its target untouched', async () => {
    const root = tempDir();
    const target = join(tempDir(), 'target');
    writeFileSync(target, 'outside');
    symlinkSync(target, join(root, 'a.db-new'));
    const p = unwrap(Persistency.open(root, options));
    const opened = await p.openJob('a');
    expect(opened.isErr() && [opened.error.kind, opened.error.code]).toEqual(['Backend', 'ELOOP']);
    expect(readFileSync(target, 'utf8')).toBe('outside');
    expect(existsSync(join(root, 'a.db'))).toBe(false);
    unwrap(await p.close());
  });
});
