/*
 * The CLI leaves a job's files as it found them even when an owner comes and goes while it
 * reads (from a review, whose reproduction failed every time). Started on a job with no WAL
 * (released or closed), the CLI reads through a connection that could write, kept from it
 * with query_only; SQLite still checkpoints the WAL into the file and deletes it when such a
 * connection closes last. An owner that took the job up, wrote and let go (or died) while
 * the CLI read left its frames in the WAL, and the CLI's close moved them into the .db.
 * The CLI is frozen mid-scan (SIGSTOP, then its open .db checked in /proc) so that the
 * owner's steps happen inside its read, whatever the timing.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, expect, it } from 'vitest';
import { key, Persistency } from '../src/index.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { Child, stopChildren } from './support/children.js';
import { unwrap, useTempDirs } from './support/env.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const tempDir = useTempDirs('persistency-cli-reader-close-');
afterEach(() => stopChildren());

const hash = (file: string): string =>
  createHash('sha256').update(readFileSync(file)).digest('hex');
const walSize = (db: string): number | 'none' =>
  existsSync(`${db}-wal`) ? statSync(`${db}-wal`).size : 'none';

/** Rows in the .db file alone (a copy of it elsewhere, so nothing of the job is touched). */
function rowsInFileAlone(db: string): number {
  const alone = join(tempDir(), 'alone.db');
  copyFileSync(db, alone);
  const copy = new Database(alone);
  try {
    return (copy.prepare('SELECT COUNT(*) AS n FROM kv').get() as { n: number }).n;
  } finally {
    copy.close();
  }
}

/** A job of 20,000 rows of 200 bytes (a scan the CLI is still writing out when frozen). */
async function bigJob(p: Persistency): Promise<void> {
  const job = unwrap(await p.openJob('j'));
  for (let i = 0; i < 20_000; i++) job.persistPut('c', key(i), new Uint8Array(200).fill(7));
  unwrap(await job.flush());
}

/** `persistency scan` of the job, frozen once its first rows are out, with the .db open. */
async function frozenScan(
  root: string,
  db: string,
): Promise<{ cli: ChildProcess; done: Promise<number | null> }> {
  expect(existsSync(CLI), 'run `npm run build` first (npm test does)').toBe(true);
  const cli = spawn(process.execPath, [CLI, 'scan', root, 'j', 'c', '--payload', 'hex'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const done = new Promise<number | null>((resolve) => cli.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve) => cli.stdout?.once('readable', () => resolve()));
  cli.kill('SIGSTOP');
  const open = readdirSync(`/proc/${cli.pid}/fd`).map((fd) => {
    try {
      return readlinkSync(`/proc/${cli.pid}/fd/${fd}`);
    } catch {
      return '';
    }
  });
  expect(open, 'the CLI is frozen inside its read').toContain(db);
  return { cli, done };
}

/**
 * With an owner's frames in the WAL, let the frozen CLI finish: it must read everything,
 * exit 0, and leave the .db and the WAL as they were (the .db alone still 20,000 rows).
 */
async function thawLeavesFiles(
  scan: { cli: ChildProcess; done: Promise<number | null> },
  db: string,
): Promise<void> {
  const wal = walSize(db);
  const file = hash(db);
  expect(wal).toBeGreaterThan(0);
  await thaw(scan);
  expect({ file: hash(db), wal: walSize(db), rows: rowsInFileAlone(db) }).toEqual({
    file,
    wal,
    rows: 20_000,
  });
}

/** Let the frozen CLI finish; it must read everything and exit 0. */
async function thaw({
  cli,
  done,
}: {
  cli: ChildProcess;
  done: Promise<number | null>;
}): Promise<void> {
  let out = 0;
  cli.stdout?.on('data', (d: Buffer) => {
    out += d.length;
  });
  cli.kill('SIGCONT');
  expect(await done).toBe(0);
  expect(out).toBeGreaterThan(20_000 * 400); // every row, its payload in hex
}

it('started on a released job: an owner that takes it up, writes and is released keeps its WAL', async () => {
  const root = tempDir();
  const db = join(root, 'j.db');
  const p = unwrap(Persistency.open(root));
  try {
    await bigJob(p);
    expect(await releaseIdleJobs(p)).toBe(1);
    expect(walSize(db)).toBe('none');
    const scan = await frozenScan(root, db);
    const job = unwrap(p.job('j'));
    job.persistPut('c', key(1_000_000), new Uint8Array([1, 2, 3]));
    unwrap(await job.flush());
    expect(await releaseIdleJobs(p)).toBe(1);
    // The reader held the owner's checkpoint back: its frame is in the WAL.
    await thawLeavesFiles(scan, db);
    // The owner's row is there for the owner.
    expect(unwrap(await job.get('c', key(1_000_000)))).toEqual(new Uint8Array([1, 2, 3]));
  } finally {
    unwrap(await p.close());
  }
});

it('started on a closed job: an owner process that opens it, writes and is killed keeps its WAL', async () => {
  const root = tempDir();
  const db = join(root, 'j.db');
  const p = unwrap(Persistency.open(root));
  await bigJob(p);
  unwrap(await p.close());
  expect(walSize(db)).toBe('none');
  const scan = await frozenScan(root, db);
  // Another process owns the root, writes its marker row and flushes ("ready"), then dies.
  const owner = new Child('owner.ts', [root, 'j']);
  await owner.waitForLine((line) => line === 'ready', 'ready');
  await owner.kill();
  await thawLeavesFiles(scan, db);
  // The next owner finds the dead one's row.
  const q = unwrap(Persistency.open(root));
  try {
    const job = unwrap(await q.openJob('j'));
    expect(unwrap(await job.exists('owner', key('pid')))).toBe(true);
  } finally {
    unwrap(await q.close());
  }
});
