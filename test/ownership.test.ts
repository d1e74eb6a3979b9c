/*
 * Ownership of a root (CONTRACT.md §3 and §6; src/root-lock.ts): one owner per root at a
 * time, whichever job it asks for, in another process or in a worker thread of this one;
 * a killed owner leaves no stale lock; while a job is open, another process reads its
 * committed rows through a plain read-only connection; the lock file is no job.
 *
 * Children and threads run the fixtures in test/fixtures (test/support/children.ts):
 * readiness and answers come over their stdout or messages, never from sleeps.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { Result } from 'neverthrow';
import { afterEach, describe, expect, it } from 'vitest';
import {
  decodeKey,
  decodePayload,
  key,
  Persistency,
  type PersistencyError,
  payload,
  type TxOp,
} from '../src/index.js';
import { ROOT_LOCK_FILE } from '../src/root-lock.js';
import { Child, startThreadOwner, stopChildren } from './support/children.js';
import { unwrap, useTempDirs } from './support/env.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const tempDir = useTempDirs('persistency-ownership-');
afterEach(() => stopChildren());

/** An Err(Busy) that names the job file asked for and says who holds the root. */
function expectBusy(r: Result<unknown, PersistencyError>, file: string): void {
  if (r.isOk()) throw new Error(`expected Err(Busy) for ${file}, got Ok`);
  expect(r.error.kind, r.error.message).toBe('Busy');
  expect(r.error.message).toContain(file);
  expect(r.error.message).toContain('owned by another process or Persistency instance');
}

/** Whether a connection of this process could take the root's lock now (given back at once). */
function rootIsFree(root: string): boolean {
  const db = new Database(join(root, ROOT_LOCK_FILE), { timeout: 0, fileMustExist: true });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = MEMORY');
    db.exec('BEGIN EXCLUSIVE; ROLLBACK');
    return true;
  } catch (e) {
    if ((e as { code?: unknown }).code === 'SQLITE_BUSY') return false;
    throw e;
  } finally {
    db.close();
  }
}

/** `owner.ts` on `ids`: resolves once it has them open, each with its flushed marker row. */
async function startOwner(root: string, ...ids: string[]): Promise<Child> {
  const owner = new Child('owner.ts', [root, ...ids]);
  const line = await owner.waitForLine((l) => l === 'ready' || l.startsWith('error'), 'ready');
  expect(line).toBe('ready');
  return owner;
}

/** The pid an owner.ts child wrote into the job. */
async function ownerMark(p: Persistency, id: string): Promise<number> {
  const got = unwrap(await p.get(id, 'owner', key('pid')));
  if (got === undefined) throw new Error(`no owner row in ${id}`);
  return decodePayload(got, 'number');
}

// -----------------------------------------------------------------------------------------

describe('a job open in this process', () => {
  interface Answer {
    ok: boolean;
    rows?: [string, string, string][];
    code?: string;
    message?: string;
  }

  it('is read by another process through a plain read-only connection: committed rows in whole batches, later flushes after it reopens; the job keeps writing', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.instance(root));
    const job = unwrap(await p.openJob('live'));
    const file = join(root, 'live.db');
    const ROWS = 10;
    const BATCHES = 40;
    const batch = (n: number): TxOp[] =>
      Array.from({ length: ROWS }, (_, i) => ({
        kind: 'put',
        category: 'b',
        key: key(n, i),
        payload: payload(n),
      }));
    job.persist(batch(0));
    job.persist(batch(1));
    unwrap(await job.flush());
    // WAL in normal locking mode: its index is shared memory, which readers use too.
    expect(existsSync(`${file}-shm`)).toBe(true);

    const reader = new Child('reader.mjs', [file]);
    expect(await reader.ask<Answer>({ op: 'open' })).toEqual({ ok: true });
    /** The batches the reader sees in one statement; each must be whole. */
    const batchesSeen = async (): Promise<number[]> => {
      const r = await reader.ask<Answer>({ op: 'read' });
      expect(r.ok, r.message).toBe(true);
      const perBatch = new Map<number, number>();
      for (const [category, k, v] of r.rows ?? []) {
        if (category !== 'b') continue;
        const [n, i] = decodeKey(Buffer.from(k, 'hex'), ['number', 'number']);
        expect(decodePayload(Buffer.from(v, 'hex'), 'number')).toBe(n);
        expect(i).toBeLessThan(ROWS);
        perBatch.set(n, (perBatch.get(n) ?? 0) + 1);
      }
      for (const [n, count] of perBatch) expect(count, `rows of batch ${n}`).toBe(ROWS);
      return [...perBatch.keys()].sort((a, b) => a - b);
    };
    const upTo = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

    expect(await batchesSeen()).toEqual([0, 1]);
    // The job writes while the other process reads: whatever it sees is a prefix of the
    // batches, each whole, never less than what was flushed before it asked.
    for (let n = 2; n < BATCHES; n++) job.persist(batch(n));
    const during = await batchesSeen();
    expect(during).toEqual(upTo(during.length));
    expect(during.length).toBeGreaterThanOrEqual(2);
    unwrap(await job.flush());
    // The same connection sees later commits: each statement reads a new snapshot.
    expect(await batchesSeen()).toEqual(upTo(BATCHES));

    // A row flushed while the reader was closed is there once it opens again.
    expect(await reader.ask<Answer>({ op: 'close' })).toEqual({ ok: true });
    job.persistPut('late', key('row'), payload('flushed later'));
    unwrap(await job.flush());
    expect(await reader.ask<Answer>({ op: 'open' })).toEqual({ ok: true });
    const reopened = await reader.ask<Answer>({ op: 'read' });
    expect(reopened.rows).toContainEqual([
      'late',
      Buffer.from(key('row').bytes).toString('hex'),
      Buffer.from(payload('flushed later')).toString('hex'),
    ]);

    // The reader cannot write; the job is untouched by the attempt and goes on.
    expect(await reader.ask<Answer>({ op: 'write' })).toMatchObject({
      ok: false,
      code: 'SQLITE_READONLY',
    });
    expect(unwrap(await job.count('b', { start: key() }))).toBe(BATCHES * ROWS);
    job.persistPut('late', key('after'), payload('still writing'));
    expect(unwrap(await job.get('late', key('after')))).toEqual(payload('still writing'));

    // Closing the job with the reader attached checkpoints everything into the file; the
    // reader still reads it all. The last connection out was read-only, so the -shm (and an
    // empty -wal) stay until the job next opens and closes.
    unwrap(await p.closeJob('live'));
    expect(statSync(`${file}-wal`).size).toBe(0);
    expect(await batchesSeen()).toEqual(upTo(BATCHES));
    reader.proc.stdin?.end();
    expect((await reader.closed).code).toBe(0);
    const again = unwrap(await p.openJob('live'));
    expect(unwrap(await again.count('late', { start: key() }))).toBe(2);
    unwrap(await p.closeJob('live'));
    expect(existsSync(`${file}-wal`)).toBe(false);
    expect(existsSync(`${file}-shm`)).toBe(false);
  });
});

describe('a second owner of the root', () => {
  it('in another process is refused with Busy for any job of the root, and this process is refused in turn', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.instance(root));
    // 'other' has a file before the owner starts: a refused dropJob must leave it alone.
    unwrap(await p.openJob('other'));
    unwrap(await p.closeJob('other'));
    const owner = await startOwner(root, 'held');

    for (const id of ['held', 'other', 'never-made']) {
      expectBusy(await p.openJob(id), join(root, `${id}.db`));
      expect(p.hasJob(id)).toBe(false);
    }
    for (const id of ['held', 'other']) {
      expectBusy(await p.dropJob(id), join(root, `${id}.db`));
      expect(existsSync(join(root, `${id}.db`))).toBe(true);
    }
    expect(existsSync(join(root, 'never-made.db'))).toBe(false);

    // The owner closes its last job: the root is free at once.
    owner.proc.stdin?.end();
    expect((await owner.closed).code).toBe(0);
    unwrap(await p.openJob('held'));
    expect(await ownerMark(p, 'held')).toBe(owner.pid);

    // This process owns the root now: a new process is refused, for another job too.
    for (const id of ['held', 'other']) {
      const intruder = new Child('owner.ts', [root, id]);
      const line = await intruder.waitForLine(
        (l) => l === 'ready' || l.startsWith('error'),
        'ready or error',
      );
      expect(line).toMatch(/^error Busy /);
      expect(line).toContain(join(root, `${id}.db`));
      expect((await intruder.closed).code).toBe(2);
    }
  });

  it('in a worker thread of this process (its own Persistency) is refused with Busy for any job of the root, both ways', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.instance(root));
    const t1 = startThreadOwner(root, 'held');
    expect(await t1.next()).toEqual({ t: 'ready' });
    for (const id of ['held', 'other']) expectBusy(await p.openJob(id), join(root, `${id}.db`));
    t1.worker.postMessage({ t: 'close' });
    expect(await t1.next()).toEqual({ t: 'closed', ok: true });
    await t1.exited;

    const job = unwrap(await p.openJob('mine'));
    job.persistPut('c', key(1), payload('main thread'));
    for (const id of ['mine', 'other']) {
      const t = startThreadOwner(root, id);
      const refused = await t.next();
      expect(refused).toMatchObject({ t: 'error', kind: 'Busy' });
      if (refused.t === 'error') expect(refused.message).toContain(join(root, `${id}.db`));
      await t.exited;
    }
    // Still ours and intact after the refusals.
    expect(unwrap(await job.get('c', key(1)))).toEqual(payload('main thread'));
    unwrap(await p.closeJob('mine'));
    expect(rootIsFree(root)).toBe(true);
  });
});

describe('a killed owner', () => {
  it('leaves no stale lock: once the owning process is SIGKILLed, this one opens its jobs at once', async () => {
    const root = tempDir();
    const owner = await startOwner(root, 'a', 'b');
    const p = unwrap(Persistency.instance(root));
    expectBusy(await p.openJob('c'), join(root, 'c.db'));

    expect((await owner.kill()).signal).toBe('SIGKILL');
    for (const id of ['c', 'a', 'b']) unwrap(await p.openJob(id));
    expect(await ownerMark(p, 'a')).toBe(owner.pid);
    expect(await ownerMark(p, 'b')).toBe(owner.pid);
    expect(statSync(join(root, ROOT_LOCK_FILE)).size).toBe(0);
  });

  it('leaves no stale lock when it is a worker thread that is terminated', async () => {
    const root = tempDir();
    const t = startThreadOwner(root, 'held');
    expect(await t.next()).toEqual({ t: 'ready' });
    const p = unwrap(Persistency.instance(root));
    expectBusy(await p.openJob('held'), join(root, 'held.db'));
    await t.worker.terminate();
    unwrap(await p.openJob('held'));
    unwrap(await p.openJob('other'));
  });
});

describe('the lock file', () => {
  it('is an empty file beside the jobs, held while any job is open, never a job; dropJob leaves it', async () => {
    const root = tempDir();
    const lockFile = join(root, ROOT_LOCK_FILE);
    const p = unwrap(Persistency.instance(root));
    unwrap(await p.openJob('a'));
    expect(statSync(lockFile).size).toBe(0);
    expect(rootIsFree(root)).toBe(false);

    // An id spelled like the lock file is a job of its own, in a file of its own.
    const lookalike = unwrap(await p.openJob(ROOT_LOCK_FILE));
    lookalike.persistPut('c', key(1), payload('not the lock'));
    unwrap(await lookalike.flush());
    expect(existsSync(join(root, '%2Epersistency-owner.db'))).toBe(true);
    expect(statSync(lockFile).size).toBe(0);
    unwrap(await p.dropJob(ROOT_LOCK_FILE));
    expect(existsSync(join(root, '%2Epersistency-owner.db'))).toBe(false);
    expect(existsSync(lockFile)).toBe(true);

    // Held while any job is open; free once the last one is closed.
    expect(rootIsFree(root)).toBe(false);
    unwrap(await p.closeJob('a'));
    expect(rootIsFree(root)).toBe(true);

    // The inspector lists the job and nothing else.
    const ls = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'ls', root], {
      cwd: REPO,
      encoding: 'utf8',
    });
    expect(ls.status, ls.stderr).toBe(0);
    expect(ls.stdout).toMatch(/^a\t\d+\t0\n$/);

    // dropJob of a closed job takes the root for the drop and gives it back; the lock file,
    // the root's and no job's, stays.
    unwrap(await p.dropJob('a'));
    expect(readdirSync(root)).toEqual([ROOT_LOCK_FILE]);
    expect(rootIsFree(root)).toBe(true);
    expect(statSync(lockFile).size).toBe(0);
  });
});
