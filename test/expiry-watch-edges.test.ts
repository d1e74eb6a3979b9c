/*
 * Edges of issue 15 found by an adversarial review (each failed before its fix): a failed
 * migration's commit and its aftermath (reports, reads, flushes and atomic batches of the
 * rest of the group), deletePrefix and count over more than one chunk on a shared thread,
 * the watch of a deleteAcked of an expired row and of a deletePrefix beside its range, an
 * atomic batch's payload taken at the call, expiries a Date cannot hold; and what it found
 * correct: expiry across an idle release, an iterator open across the migration. Time is
 * injected (the `clock` option), never slept.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import {
  type Change,
  type Job,
  type Key,
  key,
  Persistency,
  type PersistencyEvents,
  type PersistencyOptions,
  payload,
  prefixRange,
  type TxOp,
} from '../src/index.js';
import { injectFault } from '../src/job.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { hex, plain, testClock } from './support/changes.js';
import { unwrap, useTempDirs } from './support/env.js';
import { ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-review15-');

const POOL: PersistencyOptions = { workerThreads: 2 };
const PER_JOB: PersistencyOptions = { workerThreads: 'per-job' };

function failures(p: Persistency): PersistencyEvents['writeFailed'][] {
  const out: PersistencyEvents['writeFailed'][] = [];
  p.events.on('writeFailed', (e) => out.push(e));
  return out;
}

/** Many rows of category `c` in batches (fast). */
function bulk(
  job: Job,
  category: string,
  from: number,
  n: number,
  options?: { expireInMs: number },
) {
  for (let i = from; i < from + n; i += 500) {
    const ops: TxOp[] = [];
    for (let j = i; j < Math.min(i + 500, from + n); j++)
      ops.push({ kind: 'put', category, key: key(j), payload: payload('v'), ...options });
    job.persist(ops);
  }
}

describe.each([
  ['per-job', PER_JOB],
  ['2 threads', POOL],
])('review 15 (%s)', (_name, options) => {
  it('a deletePrefix over more than RANGE_CHUNK rows is one { prefix } change, the prefix deleted', async () => {
    const p = unwrap(Persistency.open(tempDir(), options));
    const job = unwrap(await p.openJob('j'));
    bulk(job, 'c', 0, 5000);
    unwrap(await job.flush());
    const feed = job.watch('c', prefixRange(key()));
    job.persistDeletePrefix('c', key());
    job.persistPut('c', key('end'), payload('e'));
    unwrap(await job.flush());
    const seen: unknown[] = [];
    for await (const changes of feed) {
      seen.push(...changes.map(plain));
      if (seen.some((c) => (c as { key?: string }).key === hex(key('end')))) break;
    }
    expect(seen).toEqual([
      { prefix: hex(key()) },
      { key: hex(key('end')), payload: hex(payload('e')) },
    ]);
    await p.close();
  });

  it('count over more than RANGE_CHUNK rows leaves expired rows out', async () => {
    const clock = testClock();
    const p = unwrap(Persistency.open(tempDir(), { ...options, clock: clock.now }));
    const job = unwrap(await p.openJob('j'));
    bulk(job, 'c', 0, 5000, { expireInMs: 10 });
    bulk(job, 'c', 5000, 10);
    unwrap(await job.flush());
    expect(unwrap(await job.count('c', prefixRange(key())))).toBe(5010);
    clock.advance(10);
    // The count is in the same group as the clock's move: before the sweep.
    expect(unwrap(await job.count('c', prefixRange(key())))).toBe(10);
    await p.close();
  });
});

describe.each([
  ['per-job', PER_JOB],
  ['2 threads', POOL],
])('review 15: migration inside a group (%s)', (_name, options) => {
  it('a commit failing at the migration commit reports only the writes it lost', async () => {
    const clock = testClock();
    const p = unwrap(Persistency.open(tempDir(), { ...options, clock: clock.now }));
    const failed = failures(p);
    const job = unwrap(await p.openJob('j'));
    unwrap(await job.flush());
    injectFault(job, 'commit');
    job.persistPut('c', key('a'), payload('A')); // in the group the failed commit loses
    job.persistPut('c', key('b'), payload('B'), { expireInMs: 60_000 }); // needs the migration
    const flushed = await job.flush();
    const stored = {
      a: unwrap(await job.get('c', key('a'))) !== undefined,
      b: unwrap(await job.get('c', key('b'))) !== undefined,
    };
    const reported = failed.map((e) =>
      (e.ops[0] as { key: Key }).key.equals(key('a')) ? 'a' : 'b',
    );
    // Every write is either stored or reported, never both.
    expect({ stored, reported, count: flushed.isErr() ? flushed.error.count : 0 }).toEqual({
      stored: { a: false, b: true },
      reported: ['a'],
      count: 1,
    });
    await p.close();
  });
});

describe.each([
  ['per-job', PER_JOB],
  ['2 threads', POOL],
])('review 15: a migration that fails (disk full) (%s)', (_name, options) => {
  /** A v1 job whose file has no page left (maxJobBytes), holding rows 0..n-1 of 'c'. */
  async function fullJob() {
    const clock = testClock();
    const p = unwrap(
      Persistency.open(tempDir(), { ...options, clock: clock.now, maxJobBytes: 64 * 1024 }),
    );
    const failed = failures(p);
    const job = unwrap(await p.openJob('j'));
    for (let i = 0; i < 400; i++) job.persistPut('c', key(i), payload('x'.repeat(200)));
    expect((await job.flush()).isErr()).toBe(true); // the file is full
    failed.length = 0;
    return { p, job, failed };
  }

  it('reports the expiring put whose migration failed once', async () => {
    const { p, job, failed } = await fullJob();
    job.persistPut('c', key('s'), payload('S'), { expireInMs: 60_000 });
    const flushed = await job.flush();
    expect(flushed.isErr()).toBe(true);
    expect({ events: failed.length, count: flushed.isErr() ? flushed.error.count : 0 }).toEqual({
      events: 1,
      count: 1,
    });
    await p.close();
  });

  it('after a failed migration, a read of a write that is then lost is not answered Ok', async () => {
    const { p, job, failed } = await fullJob();
    const before = unwrap(await job.get('c', key(0)));
    injectFault(job, 'commit', 1); // the group's last commit fails (the first: before migrating)
    job.persistPut('c', key('s'), payload('S'), { expireInMs: 60_000 }); // migration fails
    job.persistPut('c', key(0), payload('y'.repeat(200))); // same size: fits in place
    const read = await job.get('c', key(0));
    const flushed = await job.flush();
    const after = unwrap(await job.get('c', key(0)));
    const lostReported = failed.some((e) => e.ops.some((o) => 'key' in o && o.key.equals(key(0))));
    // The put of key 0 was lost with its group's commit: its read must not say Ok with it,
    // and the put must be reported.
    expect(Buffer.from(after ?? []).equals(Buffer.from(before ?? []))).toBe(true);
    expect(read.isErr() || Buffer.from(read.value ?? []).equals(Buffer.from(before ?? []))).toBe(
      true,
    );
    expect(lostReported).toBe(true);
    expect(flushed.isErr()).toBe(true);
    await p.close();
  });

  it('after a failed migration, a flush is not Ok for a write its group then loses', async () => {
    const { p, job } = await fullJob();
    const before = unwrap(await job.get('c', key(0)));
    injectFault(job, 'commit', 1); // the group's last commit fails (the first: before migrating)
    job.persistPut('c', key('s'), payload('S'), { expireInMs: 60_000 }); // migration fails
    const first = job.flush(); // Err: the expiring put
    job.persistPut('c', key(0), payload('y'.repeat(200))); // same size: fits in place
    const second = job.flush();
    expect((await first).isErr()).toBe(true);
    const flushed = await second;
    const after = unwrap(await job.get('c', key(0)));
    expect(Buffer.from(after ?? []).equals(Buffer.from(before ?? []))).toBe(true); // lost
    expect(flushed.isErr()).toBe(true); // ... so this flush must not be Ok
    await p.close();
  });

  it('after a failed migration, an atomic batch its group then loses does not resolve ok', async () => {
    const { p, job } = await fullJob();
    const before = unwrap(await job.get('c', key(1)));
    injectFault(job, 'commit', 1); // the group's last commit fails (the first: before migrating)
    job.persistPut('c', key('s'), payload('S'), { expireInMs: 60_000 }); // migration fails
    const committed = job
      .atomic()
      .put('c', key(1), payload('z'.repeat(200)))
      .commit();
    const r = await committed;
    const after = unwrap(await job.get('c', key(1)));
    expect(Buffer.from(after ?? []).equals(Buffer.from(before ?? []))).toBe(true); // lost
    expect(r.isErr()).toBe(true); // ... so commit() must not be Ok({ ok: true })
    await p.close();
  });
});

describe('review 15: CLI', () => {
  it('an expiry past what a Date can hold is refused; the CLI still prints one found in a file', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.open(root, { clock: () => Date.UTC(2026, 0, 1) }));
    const refused = failures(p);
    const job = unwrap(await p.openJob('j'));
    job.persistPut('s', key('far'), payload('F'), { expireInMs: 1e20 });
    expect(refused.map((f) => f.error.kind)).toEqual(['InvalidArgument']);
    job.persistPut('s', key('near'), payload('N'), { expireInMs: 1000 }); // gives the file expiry
    expect((await job.flush()).isErr()).toBe(true); // it reports the refused write
    unwrap(await p.close());
    // Another writer (the reference, a tool) may still store one: the CLI shows it in ms.
    const db = new Database(join(root, 'j.db'));
    db.prepare('INSERT INTO kv VALUES (?, ?, ?, ?)').run(
      Buffer.from('s'),
      Buffer.from(key('far').bytes),
      Buffer.from(payload('F')),
      1e20,
    );
    db.close();
    const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
    const r = spawnSync(process.execPath, ['--import', 'tsx', main, 'scan', root, 'j', 's'], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    expect(r.stdout).toContain('\texpires 100000000000000000000 ms after 1970');
  });
});

/** Take changes until one for `last` arrives (a put of it). */
async function until(feed: AsyncIterator<Change[]>, last: Key): Promise<unknown[]> {
  const seen: unknown[] = [];
  for (;;) {
    const r = await feed.next();
    if (r.done === true) throw new Error('the watch ended');
    seen.push(...r.value.map(plain));
    if (r.value.some((c) => 'key' in c && c.key.equals(last))) return seen;
  }
}

describe.each(ROOT_MODES)('review 15: watch and expiry (%s)', (_name, memory, options) => {
  async function open() {
    const clock = testClock();
    const p = unwrap(
      Persistency.open(memory ? ':memory:' : tempDir(), { ...options, clock: clock.now }),
    );
    const job = unwrap(await p.openJob('j'));
    return { p, job, clock };
  }

  it('expiry survives an idle release and reattach (migrated schema, injected clock)', async () => {
    const { p, job, clock } = await open();
    job.persistPut('s', key('a'), payload('A'), { expireInMs: 10 });
    job.persistPut('s', key('b'), payload('B'));
    job.persistAdd('s', key('n'), 5);
    unwrap(await job.flush());
    expect(await releaseIdleJobs(p)).toBe(1);
    expect(unwrap(await job.get('s', key('a')))).toEqual(payload('A')); // reattached
    expect(await releaseIdleJobs(p)).toBe(1);
    clock.advance(10);
    expect(unwrap(await job.get('s', key('a')))).toBeUndefined();
    expect(unwrap(await job.count('s', prefixRange(key())))).toBe(2);
    job.persistPut('s', key('a'), payload('A2'), { expireInMs: 10 });
    expect(unwrap(await job.get('s', key('a')))).toEqual(payload('A2'));
    await p.close();
  });

  it('a watcher hears of an expired row removed by deleteAcked (else its mirror keeps it)', async () => {
    const { p, job, clock } = await open();
    const feed = job.watch('s', prefixRange(key()));
    job.persistPut('s', key('k'), payload('K'), { expireInMs: 10 });
    unwrap(await job.flush());
    clock.advance(10);
    // Expired, not swept yet (the sweep follows this group): deleteAcked removes the row.
    expect(unwrap(await job.deleteAcked('s', key('k')))).toBe(false);
    job.persistPut('s', key('end'), payload('E'));
    unwrap(await job.flush());
    unwrap(await job.flush()); // past any sweep
    job.persistPut('s', key('end2'), payload('E'));
    const seen = await until(feed, key('end2'));
    // Replaying the changes: k was put, so it must be deleted again (by the sweep or deleteAcked).
    expect(seen).toContainEqual({ key: hex(key('k')), payload: null });
    await p.close();
  });

  it('a deletePrefix that removed no row of a watched range tells that watcher nothing', async () => {
    const { p, job } = await open();
    job.persistPut('s', key('b', 1), payload('B'));
    unwrap(await job.flush());
    const feed = job.watch('s', prefixRange(key('a'))); // an empty part of 's'
    job.persistDeletePrefix('s', key()); // removes b/1, nothing of the watched range
    job.persistPut('s', key('a', 'end'), payload('E'));
    expect(await until(feed, key('a', 'end'))).toEqual([
      { key: hex(key('a', 'end')), payload: hex(payload('E')) },
    ]);
    await p.close();
  });

  it('an iterator open across the migration reads its snapshot; later reads hide expired rows', async () => {
    const { p, job, clock } = await open();
    for (let i = 0; i < 10; i++) job.persistPut('s', key(i), payload(`v${i}`));
    unwrap(await job.flush());
    const it = job.iterate('s', prefixRange(key()), { pageSize: 2 });
    const rows: string[] = [];
    const first = await it.next();
    rows.push(hex((first.value as { key: Key }).key));
    job.persistPut('s', key(100), payload('x'), { expireInMs: 10 }); // migrates
    job.persistPut('s', key(3), payload('rewritten'), { expireInMs: 10 });
    unwrap(await job.flush());
    for (let r = await it.next(); r.done !== true; r = await it.next()) rows.push(hex(r.value.key));
    expect(rows).toEqual([...Array(10).keys()].map((i) => hex(key(i))));
    clock.advance(10);
    expect(unwrap(await job.count('s', prefixRange(key())))).toBe(9);
    const after = unwrap(await job.scan('s', prefixRange(key()))).map((r) => hex(r.key));
    expect(after).toEqual([0, 1, 2, 4, 5, 6, 7, 8, 9].map((i) => hex(key(i))));
    await p.close();
  });
});

describe('review 15: atomic batch arguments', () => {
  it('an atomic put stores the payload as it was when put() was called (as persistPut does)', async () => {
    const p = unwrap(Persistency.open(':memory:', PER_JOB));
    const job = unwrap(await p.openJob('j'));
    const buf = new Uint8Array([1, 2, 3]);
    job.persistPut('c', key('plain'), buf);
    const batch = job.atomic().put('c', key('atomic'), buf);
    buf[0] = 9; // the caller reuses its buffer after the call
    unwrap(await batch.commit());
    expect([...(unwrap(await job.get('c', key('plain'))) ?? [])]).toEqual([1, 2, 3]);
    expect([...(unwrap(await job.get('c', key('atomic'))) ?? [])]).toEqual([1, 2, 3]);
    await p.close();
  });
});
