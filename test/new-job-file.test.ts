/*
 * A new job's file is written whole from an image (src/worker/new-job-file.ts) rather than
 * built by SQLite: it must be the file SQLite would have made (the reference's schema,
 * version 1, WAL mode), appear at its name only whole, never replace a file, and leave
 * nothing beside it.
 */
import { existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { key, Persistency, payload } from '../src/index.js';
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

  it('a side file left by a crash is written over at open and removed by dropJob', async () => {
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
