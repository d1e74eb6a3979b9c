// What close, drop and a dying worker leave behind, on disk and in the caller's hands.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  type Job,
  key,
  Persistency,
  type PersistencyEvents,
  payload,
  prefixRange,
} from '../src/index.js';
import { crashJobWorker } from '../src/job.js';
import { jobDbPath, jobFileStem } from '../src/paths.js';
import { ROOT_LOCK_FILE } from '../src/root-lock.js';

const base = mkdtempSync(join(tmpdir(), 'persistency-durability-'));
let n = 0;
const freshRoot = () => join(base, `root-${n++}`, 'nested');

afterEach(() => Persistency.reset());
afterAll(() => rmSync(base, { recursive: true, force: true }));

async function openIn(root: string, id: string): Promise<{ p: Persistency; job: Job }> {
  const p = Persistency.instance(root)._unsafeUnwrap();
  const job = (await p.openJob(id))._unsafeUnwrap();
  return { p, job };
}

const all = { start: key() };

describe('close', () => {
  it('commits every earlier write and checkpoints: no WAL content is left', async () => {
    const root = freshRoot();
    const { p, job } = await openIn(root, 'wal');
    for (let i = 0; i < 5000; i++) job.persistPut('rows', key(i), payload('x'.repeat(100)));
    const db = join(root, 'wal.db');
    expect((await p.closeJob('wal')).isOk()).toBe(true);
    const wal = `${db}-wal`;
    expect(!existsSync(wal) || statSync(wal).size === 0).toBe(true);
    expect(existsSync(`${db}-shm`)).toBe(false);
    const again = (await p.openJob('wal'))._unsafeUnwrap();
    expect((await again.count('rows', all))._unsafeUnwrap()).toBe(5000);
  });

  it('resolves only after the worker has exited, and reads made before it still answer', async () => {
    const { p, job } = await openIn(freshRoot(), 'drain');
    job.persistPut('c', key(1), payload('one'));
    const pending = job.get('c', key(1));
    const closed = p.closeJob('drain');
    expect(job.running).toBe(false);
    expect((await pending)._unsafeUnwrap()).toEqual(payload('one'));
    expect((await closed).isOk()).toBe(true);
    expect(p.hasJob('drain')).toBe(false);
  });
});

describe('dropJob', () => {
  it('removes the database and every sidecar file', async () => {
    const root = freshRoot();
    const { p, job } = await openIn(root, 'gone');
    job.persistPut('c', key(1), payload('x'));
    expect((await job.flush()).isOk()).toBe(true);
    expect(readdirSync(root)).toEqual(expect.arrayContaining(['gone.db']));
    expect((await p.dropJob('gone')).isOk()).toBe(true);
    expect(readdirSync(root).filter((f) => f.startsWith('gone'))).toEqual([]);
    const again = (await p.openJob('gone'))._unsafeUnwrap();
    expect((await again.count('c', all))._unsafeUnwrap()).toBe(0);
  });
});

describe('schema versions', () => {
  it('openJob refuses a file of a newer version, naming both versions, and leaves it untouched', async () => {
    const root = freshRoot();
    mkdirSync(root, { recursive: true });
    const file = join(root, 'future.db');
    const raw = new Database(file);
    raw.pragma('user_version = 3');
    raw.close();
    const before = readFileSync(file);
    const p = Persistency.instance(root)._unsafeUnwrap();
    const r = await p.openJob('future');
    expect(r.isErr()).toBe(true);
    expect(r._unsafeUnwrapErr().message).toMatch(/schema version 3.*version 2/);
    expect(readFileSync(file).equals(before)).toBe(true);
    // No -wal or -shm: only the root's lock file beside it.
    expect(readdirSync(root).sort()).toEqual([ROOT_LOCK_FILE, 'future.db']);
    expect(p.hasJob('future')).toBe(false);
  });

  // Found by review: such a file opened once statements were prepared at first use, and a
  // put then added a second row for its key instead of replacing the first.
  it('openJob refuses a kv table that is not keyed by (category, key), and leaves it untouched', async () => {
    const root = freshRoot();
    mkdirSync(root, { recursive: true });
    const shapes = {
      unkeyed: 'CREATE TABLE kv (category BLOB NOT NULL, key BLOB NOT NULL, payload BLOB NOT NULL)',
      keyedByKey: 'CREATE TABLE kv (category BLOB, key BLOB PRIMARY KEY, payload BLOB)',
      noPayload: 'CREATE TABLE kv (category BLOB, key BLOB, PRIMARY KEY (category, key))',
    };
    const p = Persistency.instance(root)._unsafeUnwrap();
    for (const [id, sql] of Object.entries(shapes)) {
      const stem = jobFileStem(id);
      if (!stem.ok) throw stem.error;
      const file = jobDbPath(root, stem.stem);
      const raw = new Database(file);
      raw.exec(sql);
      raw.close();
      const before = readFileSync(file);
      const r = await p.openJob(id);
      expect(r.isErr() && [r.error.kind, r.error.code], id).toEqual(['Backend', 'SQLITE_CORRUPT']);
      expect(r._unsafeUnwrapErr().message).toMatch(/not a job file/);
      expect(readFileSync(file).equals(before), id).toBe(true);
    }
    // A reference file (version 0, its own kv table) still opens.
    const reference = new Database(join(root, 'ref.db'));
    reference.exec(
      'CREATE TABLE kv (category BLOB NOT NULL, key BLOB NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (category, key)) WITHOUT ROWID',
    );
    reference.close();
    const job = (await p.openJob('ref'))._unsafeUnwrap();
    job.persistPut('c', key(1), payload('old'));
    job.persistPut('c', key(1), payload('new'));
    expect((await job.count('c', prefixRange(key())))._unsafeUnwrap()).toBe(1);
  });

  // A review's trial: such a file was taken over (a kv table added, WAL turned on).
  it("openJob refuses another program's database (version 0, objects of its own) and leaves it untouched", async () => {
    const root = freshRoot();
    mkdirSync(root, { recursive: true });
    const file = join(root, 'notes.db');
    const raw = new Database(file);
    raw.exec("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine')");
    raw.close();
    const before = readFileSync(file);
    const p = Persistency.instance(root)._unsafeUnwrap();
    const r = await p.openJob('notes');
    expect(r.isErr() && [r.error.kind, r.error.code]).toEqual(['Backend', 'SQLITE_CORRUPT']);
    expect(r._unsafeUnwrapErr().message).toMatch(
      /not a job file: .*objects of its own \(table notes\)/,
    );
    expect(readFileSync(file).equals(before)).toBe(true);
    expect(readdirSync(root).sort()).toEqual([ROOT_LOCK_FILE, 'notes.db']);
  });
});

describe(':memory:', () => {
  it('touches no file, and keeps data across close and reopen until dropped', async () => {
    const cwdBefore = readdirSync(process.cwd()).sort();
    const { p, job } = await openIn(':memory:', 'mem');
    job.persistPut('c', key(1), payload('kept'));
    expect((await p.closeJob('mem')).isOk()).toBe(true);
    const again = (await p.openJob('mem'))._unsafeUnwrap();
    expect((await again.get('c', key(1)))._unsafeUnwrap()).toEqual(payload('kept'));
    expect((await p.dropJob('mem')).isOk()).toBe(true);
    const third = (await p.openJob('mem'))._unsafeUnwrap();
    expect((await third.get('c', key(1)))._unsafeUnwrap()).toBeUndefined();
    expect(readdirSync(process.cwd()).sort()).toEqual(cwdBefore);
  });
});

describe('a dying worker', () => {
  for (const how of ['throw', 'exit'] as const) {
    it(`(${how}) fails every pending read at once, leaves other jobs alone, and can be reopened`, async () => {
      const root = freshRoot();
      const { p, job } = await openIn(root, 'victim');
      const other = (await p.openJob('bystander'))._unsafeUnwrap();
      const failed: PersistencyEvents['jobFailed'][] = [];
      p.events.on('jobFailed', (e) => failed.push(e));

      job.persistPut('c', key(1), payload('durable'));
      expect((await job.flush()).isOk()).toBe(true);
      other.persistPut('c', key(1), payload('other'));

      crashJobWorker(job, how);
      const reads = [job.get('c', key(1)), job.count('c', all), job.flush()];
      const results = await Promise.all(reads);
      for (const r of results) expect(r.isErr()).toBe(true);
      // Every Backend error has a code: the thread's death is WORKER_DIED.
      for (const r of results)
        expect(r.isErr() && [r.error.kind, r.error.code]).toEqual(['Backend', 'WORKER_DIED']);
      expect(failed[0]?.error.code).toBe('WORKER_DIED');
      expect(job.running).toBe(false);
      expect(p.hasJob('victim')).toBe(false);
      expect(failed.map((e) => e.jobId)).toEqual(['victim']);
      const later = await job.get('c', key(1));
      expect(later.isErr()).toBe(true);

      expect((await other.get('c', key(1)))._unsafeUnwrap()).toEqual(payload('other'));
      const reopened = (await p.openJob('victim'))._unsafeUnwrap();
      expect(reopened).not.toBe(job);
      expect((await reopened.get('c', key(1)))._unsafeUnwrap()).toEqual(payload('durable'));
      expect((await reopened.count('c', prefixRange(key(1))))._unsafeUnwrap()).toBe(1);
    });
  }
});
