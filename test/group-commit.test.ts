// Batches that SQLite itself refuses inside a group commit: each rolls back alone.
// A trigger installed in the job file makes any insert into category 'bad' fail inside
// the worker's transaction, exactly like a real constraint or I/O failure of one batch.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeEach, expect, it } from 'vitest';
import {
  decodePayload,
  type Job,
  key,
  Persistency,
  type PersistencyEvents,
  payload,
} from '../src/index.js';

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
