// Batches that SQLite itself refuses inside a group commit: each rolls back alone.
// A trigger installed in the job file makes any insert into category 'bad' fail inside
// the worker's transaction, exactly like a real constraint or I/O failure of one batch.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  decodePayload,
  type Job,
  key,
  Persistency,
  type PersistencyEvents,
  payload,
} from '../src/index.js';
import { injectFault } from '../src/job.js';

const base = mkdtempSync(join(tmpdir(), 'persistency-group-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));
afterEach(() => Persistency.reset());

let p: Persistency;
let job: Job;
let failures: PersistencyEvents['writeFailed'][];

beforeEach(async () => {
  const root = mkdtempSync(join(base, 'root-'));
  p = Persistency.instance(root)._unsafeUnwrap();
  (await p.openJob('g'))._unsafeUnwrap();
  (await p.closeJob('g'))._unsafeUnwrap();
  const db = new Database(join(root, 'g.db'));
  db.exec(`CREATE TRIGGER refuse_bad BEFORE INSERT ON kv WHEN NEW.category = CAST('bad' AS BLOB)
           BEGIN SELECT RAISE(ABORT, 'bad category refused by trigger'); END`);
  db.close();
  job = (await p.openJob('g'))._unsafeUnwrap();
  failures = [];
  p.events.on('writeFailed', (e) => failures.push(e));
});

const put = (category: string, k: number, v: string) =>
  ({ kind: 'put', category, key: key(k), payload: payload(v) }) as const;

it('a failing batch amid good ones in one group rolls back alone, and is reported', async () => {
  // All of these are issued in one turn, so they travel and commit as one group.
  job.persist([put('good', 1, 'one')]);
  job.persist([put('good', 2, 'two'), put('bad', 3, 'x'), put('good', 4, 'four')]);
  job.persistPut('good', key(5), payload('five'));
  job.persistPut('bad', key(6), payload('single'));
  job.persist([put('good', 7, 'seven'), { kind: 'delete', category: 'good', key: key(1) }]);
  const flushed = await job.flush();

  expect(flushed.isErr()).toBe(true);
  expect(flushed._unsafeUnwrapErr().message).toMatch(/2 write batch\(es\) failed/);
  const rows = (await job.scan('good', { start: key() }))._unsafeUnwrap();
  expect(rows.map((r) => decodePayload(r.payload, 'string'))).toEqual(['five', 'seven']);
  expect((await job.count('bad', { start: key() }))._unsafeUnwrap()).toBe(0);

  expect(failures.map((f) => [f.reason, f.count, f.error.kind, f.error.code])).toEqual([
    ['backend', 3, 'Backend', 'SQLITE_CONSTRAINT_TRIGGER'],
    ['backend', 1, 'Backend', 'SQLITE_CONSTRAINT_TRIGGER'],
  ]);
  const [multi] = failures;
  expect(multi?.ops.map((o) => [o.kind, o.category])).toEqual([
    ['put', 'good'],
    ['put', 'bad'],
    ['put', 'good'],
  ]);
  expect(multi?.ops[1]?.kind === 'put' && multi.ops[1].key.equals(key(3))).toBe(true);

  // The failure was reported once; the next flush is clean.
  expect((await job.flush()).isOk()).toBe(true);
});

it('a failing batch does not hide reads: a read after it sees the good writes only', async () => {
  job.persistPut('good', key(1), payload('a'));
  job.persist([put('good', 2, 'b'), put('bad', 3, 'c')]);
  const seen = await job.count('good', { start: key() });
  expect(seen._unsafeUnwrap()).toBe(1);
  expect(failures).toHaveLength(1);
});

it('a single op batch that fails leaves the transaction usable for later batches', async () => {
  for (let i = 0; i < 100; i++) {
    job.persistPut(i % 10 === 0 ? 'bad' : 'good', key(i), payload(`v${i}`));
  }
  expect((await job.count('good', { start: key() }))._unsafeUnwrap()).toBe(90);
  expect(failures).toHaveLength(10);
  expect((await job.flush()).isErr()).toBe(true);
  expect((await job.flush()).isOk()).toBe(true);
});

describe('injected faults (as from a full or failing disk)', () => {
  it('SQLite dropping the whole transaction: earlier writes of the group are redone', async () => {
    injectFault(job, 'rollback', 1); // the second write record below triggers it
    job.persistPut('good', key(1), payload('one'));
    job.persist([put('good', 2, 'two'), put('good', 3, 'three')]);
    job.persistPut('good', key(4), payload('four'));
    const counted = job.count('good', { start: key() });
    const flushed = job.flush();
    expect((await counted)._unsafeUnwrap()).toBe(2);
    expect((await flushed).isErr()).toBe(true);
    expect(failures.map((f) => [f.count, f.error.code])).toEqual([[2, 'SQLITE_FULL']]);
    (await p.closeJob('g'))._unsafeUnwrap();
    const again = (await p.openJob('g'))._unsafeUnwrap();
    const rows = (await again.scan('good', { start: key() }))._unsafeUnwrap();
    expect(rows.map((r) => decodePayload(r.payload, 'string'))).toEqual(['one', 'four']);
  });

  it('a failed redo loses the group: every write in it is reported, later ones still apply', async () => {
    injectFault(job, 'rollback-twice', 1);
    job.persistPut('good', key(1), payload('one'));
    job.persist([put('good', 2, 'two'), put('good', 3, 'three')]);
    job.persistPut('good', key(4), payload('four'));
    const counted = job.count('good', { start: key() });
    const flushed = job.flush();
    expect((await counted)._unsafeUnwrap()).toBe(1);
    expect((await flushed).isErr()).toBe(true);
    expect(failures.map((f) => f.count)).toEqual([1, 2]);
    const lost = failures[0]?.ops[0];
    expect(lost?.kind === 'put' && lost.key.equals(key(1))).toBe(true);
    expect((await job.get('good', key(4)))._unsafeUnwrap()).toEqual(payload('four'));
    expect((await job.flush()).isOk()).toBe(true);
  });

  it('a failed commit: replies that saw its writes are Err, earlier reads are not', async () => {
    job.persistPut('good', key(9), payload('committed'));
    expect((await job.flush()).isOk()).toBe(true);
    injectFault(job, 'commit');
    const before = job.get('good', key(9));
    job.persistPut('good', key(1), payload('lost'));
    const after = job.get('good', key(1));
    const flushed = job.flush();
    expect((await before)._unsafeUnwrap()).toEqual(payload('committed'));
    expect((await after).isErr()).toBe(true);
    expect((await flushed)._unsafeUnwrapErr().code).toBe('SQLITE_IOERR');
    expect(failures.map((f) => [f.count, f.error.code])).toEqual([[1, 'SQLITE_IOERR']]);
    expect((await job.get('good', key(1)))._unsafeUnwrap()).toBeUndefined();
    // The failure was reported by the flush above; the next one is clean.
    expect((await job.flush()).isOk()).toBe(true);
  });

  it('a failed commit with no flush in its group is reported by the next flush', async () => {
    injectFault(job, 'commit');
    job.persistPut('good', key(1), payload('lost'));
    await job.get('good', key(1)); // same group: Err, and the group is over
    expect((await job.flush())._unsafeUnwrapErr().code).toBe('SQLITE_IOERR');
    expect((await job.flush()).isOk()).toBe(true);
  });
});
