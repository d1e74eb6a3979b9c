// Batches that SQLite itself refuses inside a group commit: each rolls back alone.
// A trigger installed in the job file makes any insert into category 'bad' fail inside
// the worker's transaction, exactly like a real constraint or I/O failure of one batch.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  decodeKey,
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
  expect(flushed._unsafeUnwrapErr()).toMatchObject({ kind: 'WriteFailed', count: 2 });
  expect(flushed._unsafeUnwrapErr().message).toMatch(/2 write\(s\) failed/);
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

  it('a failed commit: each lost write is counted by the first flush after it, once', async () => {
    injectFault(job, 'commit');
    // One turn, one group: two writes, a flush, one write, a flush, two writes.
    job.persistPut('good', key(1), payload('lost 1'));
    job.persist([put('good', 2, 'lost 2'), put('good', 3, 'lost 3')]);
    const first = job.flush();
    job.persistPut('good', key(4), payload('lost 4'));
    const second = job.flush();
    job.persistPut('good', key(5), payload('lost 5'));
    job.persistPut('good', key(6), payload('lost 6'));
    expect((await first)._unsafeUnwrapErr()).toMatchObject({
      kind: 'WriteFailed',
      count: 2,
      code: 'SQLITE_IOERR',
    });
    expect((await second)._unsafeUnwrapErr()).toMatchObject({ kind: 'WriteFailed', count: 1 });
    expect((await job.flush())._unsafeUnwrapErr()).toMatchObject({ kind: 'WriteFailed', count: 2 });
    expect((await job.flush()).isOk()).toBe(true);
    expect(failures.map((f) => f.count)).toEqual([1, 2, 1, 1, 1]);
    expect((await job.count('good', { start: key() }))._unsafeUnwrap()).toBe(0);
  });

  it('a failed commit with no flush in its group is reported by the next flush', async () => {
    injectFault(job, 'commit');
    job.persistPut('good', key(1), payload('lost'));
    await job.get('good', key(1)); // same group: Err, and the group is over
    expect((await job.flush())._unsafeUnwrapErr().code).toBe('SQLITE_IOERR');
    expect((await job.flush()).isOk()).toBe(true);
  });
});

describe('replies sent before their group ends (reads before any write of the group)', () => {
  const rowsOf = (n: number) =>
    Array.from({ length: n }, (_, i) => [key(i), payload(`row ${i} ${'x'.repeat(90)}`)] as const);

  it('a scan of 3 MB arrives whole and in order, both directions and with limits', async () => {
    const rows = rowsOf(25_000);
    for (const [k, v] of rows) job.persistPut('big', k, v);
    expect((await job.flush()).isOk()).toBe(true);
    const asc = (await job.scan('big', { start: key() }))._unsafeUnwrap();
    expect(asc.length).toBe(rows.length);
    expect(asc.every((r, i) => r.key.equals(rows[i]?.[0] as never))).toBe(true);
    expect(
      asc.every((r, i) => decodePayload(r.payload, 'string') === `row ${i} ${'x'.repeat(90)}`),
    ).toBe(true);
    const desc = (await job.scan('big', { start: key() }, { reverse: true }))._unsafeUnwrap();
    expect(desc.map((r) => r.key.toString())).toEqual(asc.map((r) => r.key.toString()).reverse());
    const limited = (await job.scan('big', { start: key(100) }, { limit: 10_000 }))._unsafeUnwrap();
    expect(limited.length).toBe(10_000);
    expect(limited[0]?.key.equals(key(100))).toBe(true);
    expect(limited[9_999]?.key.equals(key(10_099))).toBe(true);
  });

  it('many scans and gets in one turn resolve in issue order with the right values', async () => {
    const rows = rowsOf(5_000);
    for (const [k, v] of rows) job.persistPut('big', k, v);
    expect((await job.flush()).isOk()).toBe(true);
    const scans = Array.from({ length: 4 }, () => job.scan('big', { start: key() }));
    const gets = Array.from({ length: 300 }, (_, i) => job.get('big', key(i * 7)));
    const counts = Array.from({ length: 4 }, () => job.count('big', { start: key() }));
    for (const s of await Promise.all(scans)) expect(s._unsafeUnwrap().length).toBe(5_000);
    const got = await Promise.all(gets);
    got.forEach((g, i) => {
      expect(g._unsafeUnwrap()).toEqual(rows[i * 7]?.[1]);
    });
    for (const c of await Promise.all(counts)) expect(c._unsafeUnwrap()).toBe(5_000);
  });

  it('a failed commit: the early replies before the write stay Ok, the scan after it is Err', async () => {
    const rows = rowsOf(10_000);
    for (const [k, v] of rows) job.persistPut('big', k, v);
    expect((await job.flush()).isOk()).toBe(true);
    injectFault(job, 'commit');
    // One turn, one group: 64 gets and a multi-part scan, then a write, then a scan.
    const early = Array.from({ length: 64 }, (_, i) => job.get('big', key(i)));
    const cleanScan = job.scan('big', { start: key() });
    job.persistPut('big', key(99_999), payload('lost'));
    const dirtyScan = job.scan('big', { start: key() });
    const flushed = job.flush();
    for (const [i, g] of (await Promise.all(early)).entries()) {
      expect(g._unsafeUnwrap()).toEqual(rows[i]?.[1]);
    }
    expect((await cleanScan)._unsafeUnwrap().length).toBe(10_000);
    expect((await dirtyScan).isErr()).toBe(true);
    expect((await flushed)._unsafeUnwrapErr().code).toBe('SQLITE_IOERR');
    expect((await job.get('big', key(99_999)))._unsafeUnwrap()).toBeUndefined();
    expect((await job.count('big', { start: key() }))._unsafeUnwrap()).toBe(10_000);
  });

  it('a scan after a write in the same group sees that write', async () => {
    for (const [k, v] of rowsOf(5_000)) job.persistPut('big', k, v);
    expect((await job.flush()).isOk()).toBe(true);
    const before = job.scan('big', { start: key() });
    job.persistPut('big', key(5_000), payload('new'));
    const after = job.scan('big', { start: key() });
    expect((await before)._unsafeUnwrap().length).toBe(5_000);
    const rows = (await after)._unsafeUnwrap();
    expect(rows.length).toBe(5_001);
    expect(rows[5_000]?.payload).toEqual(payload('new'));
  });
});

describe('runs of single puts (inserted many rows per statement)', () => {
  it('a refused put inside a run of 100 fails alone; the other 99 are stored', async () => {
    for (let i = 0; i < 100; i++) {
      if (i === 50) job.persistPut('bad', key(i), payload('refused'));
      else job.persistPut('good', key(i), payload(`v${i}`));
    }
    const flushed = await job.flush();
    expect(flushed.isErr()).toBe(true);
    expect(failures.map((f) => [f.reason, f.count, f.ops[0]?.category])).toEqual([
      ['backend', 1, 'bad'],
    ]);
    const rows = (await job.scan('good', { start: key() }))._unsafeUnwrap();
    expect(rows.map((r) => decodePayload(r.payload, 'string'))).toEqual(
      Array.from({ length: 100 }, (_, i) => `v${i}`).filter((_, i) => i !== 50),
    );
    expect((await job.count('bad', { start: key() }))._unsafeUnwrap()).toBe(0);
  });

  it('the same key twice in a run: the later put wins, as with one statement per row', async () => {
    for (let i = 0; i < 64; i++) job.persistPut('good', key(i % 5), payload(`v${i}`));
    expect((await job.flush()).isOk()).toBe(true);
    const rows = (await job.scan('good', { start: key() }))._unsafeUnwrap();
    expect(rows.map((r) => decodePayload(r.payload, 'string'))).toEqual([
      'v60',
      'v61',
      'v62',
      'v63',
      'v59',
    ]);
  });

  it('runs mixed with deletes, multi-op batches and reads keep issue order', async () => {
    const model = new Map<number, string>();
    const reads: [number, ReturnType<Job['get']>, string | undefined][] = [];
    for (let i = 0; i < 2_000; i++) {
      const k = (i * 7919) % 300;
      if (i % 97 === 0) {
        job.persistDelete('good', key(k));
        model.delete(k);
      } else if (i % 101 === 0) {
        job.persist([put('good', k, `b${i}`), put('good', k + 1, `c${i}`)]);
        model.set(k, `b${i}`);
        model.set(k + 1, `c${i}`);
      } else {
        job.persistPut('good', key(k), payload(`v${i}`));
        model.set(k, `v${i}`);
      }
      if (i % 150 === 0) reads.push([k, job.get('good', key(k)), model.get(k)]);
    }
    for (const [, got, want] of reads) {
      const v = (await got)._unsafeUnwrap();
      expect(v === undefined ? undefined : decodePayload(v, 'string')).toBe(want);
    }
    expect((await job.flush()).isOk()).toBe(true);
    const rows = (await job.scan('good', { start: key() }))._unsafeUnwrap();
    expect(rows.length).toBe(model.size);
    for (const r of rows) {
      const [k] = decodeKey(r.key, ['number']);
      expect(decodePayload(r.payload, 'string')).toBe(model.get(k));
    }
  });
});

describe('writeFailed events arrive before the replies that count them', () => {
  it('a flush answered early (a large clean reply in its group) with Err: its events are already out', async () => {
    job.persistPut('good', key(0), new Uint8Array(70_000));
    expect((await job.flush()).isOk()).toBe(true);
    injectFault(job, 'rollback-twice', 1); // SQLite drops the transaction; the redo fails too
    job.persistPut('good', key(1), payload('one'));
    job.persist([put('good', 2, 'two')]);
    const flushed = job.flush();
    const big = job.get('good', key(0)); // 70 KB after a lost group: sent before the group ends
    const result = await flushed;
    const seen = failures.map((f) => [f.reason, f.count, f.error.code]);
    expect(result.isErr()).toBe(true);
    expect(seen).toEqual([
      ['backend', 1, 'SQLITE_FULL'],
      ['backend', 1, 'SQLITE_FULL'],
    ]);
    expect((await big)._unsafeUnwrap()?.length).toBe(70_000);
  });
});
