/*
 * CONTRACT.md section 9: expiry. A row written with `expireInMs` is invisible to every read
 * once expired and removed in the background; a rewrite without it keeps the row; a file
 * that never used expiry keeps schema version 1 and the first use migrates it (a crash in
 * the middle leaves version 1, intact). Time is injected (the `clock` option), never slept.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type Change,
  decodePayload,
  i64,
  type Job,
  key,
  Persistency,
  payload,
  prefixRange,
  toPayload,
} from '../src/index.js';
import { hex, testClock } from './support/changes.js';
import { Child, stopChildren } from './support/children.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES, ROOT_MODES } from './support/modes.js';
import { all } from './support/rows.js';

const tempDir = useTempDirs('persistency-expiry-');
afterEach(stopChildren);

/** What a file holds, read past the library (version, every row's key and expiry). */
function rawFile(file: string): {
  version: number;
  rows: { key: string; expires: number | null }[];
} {
  const db = new Database(file, { readonly: true });
  try {
    const version = db.pragma('user_version', { simple: true }) as number;
    const expires = version >= 2 ? 'expires_at' : 'NULL';
    const rows = db
      .prepare<[], { key: Buffer; expires: number | null }>(
        `SELECT key, ${expires} AS expires FROM kv ORDER BY category, key`,
      )
      .all()
      .map((r) => ({ key: r.key.toString('hex'), expires: r.expires }));
    return { version, rows };
  } finally {
    db.close();
  }
}

describe.each(ROOT_MODES)('expiry (%s)', (_name, memory, options) => {
  async function open(clock = testClock()) {
    const root = memory ? ':memory:' : tempDir();
    const p = unwrap(Persistency.open(root, { ...options, clock: clock.now }));
    const job = unwrap(await p.openJob('e'));
    return { p, job, clock, root };
  }

  async function visible(job: Job, k: ReturnType<typeof key>) {
    return {
      get: unwrap(await job.get('s', k)) !== undefined,
      exists: unwrap(await job.exists('s', k)),
      many: unwrap(await job.getMany('s', [k, k]))[1] !== undefined,
      scan: unwrap(await job.scan('s', prefixRange(key()))).some((r) => r.key.equals(k)),
      reverse: unwrap(await job.scanPrefix('s', key(), { reverse: true, limit: 10 })).some((r) =>
        r.key.equals(k),
      ),
      iterate: (await all(job.iterate('s', prefixRange(key()), { pageSize: 2 }))).some((r) =>
        r.key.equals(k),
      ),
      count: unwrap(await job.count('s', prefixRange(key()))),
    };
  }

  it('hides an expired row from every read at once', async () => {
    const { p, job, clock } = await open();
    job.persistPut('s', key('a'), payload('A'), { expireInMs: 1000 });
    job.persistPut('s', key('b'), payload('B'));
    unwrap(await job.atomic().put('s', key('c'), payload('C'), { expireInMs: 2000 }).commit());
    job.persist([
      { kind: 'put', category: 's', key: key('d'), payload: payload('D'), expireInMs: 1000 },
    ]);
    expect(await visible(job, key('a'))).toEqual({
      get: true,
      exists: true,
      many: true,
      scan: true,
      reverse: true,
      iterate: true,
      count: 4,
    });
    clock.advance(999);
    expect((await visible(job, key('a'))).get).toBe(true);
    clock.advance(1);
    expect(await visible(job, key('a'))).toEqual({
      get: false,
      exists: false,
      many: false,
      scan: false,
      reverse: false,
      iterate: false,
      count: 2,
    });
    expect((await visible(job, key('d'))).get).toBe(false);
    expect((await visible(job, key('c'))).get).toBe(true);
    clock.advance(1000);
    expect(unwrap(await job.count('s', prefixRange(key())))).toBe(1);
    expect(unwrap(await job.deleteAcked('s', key('c')))).toBe(false); // expired: nothing to delete
    expect(unwrap(await job.deleteAcked('s', key('b')))).toBe(true);
    await p.close();
  });

  it('keeps a row rewritten without expireInMs; add keeps a live expiry and restarts an expired counter', async () => {
    const { p, job, clock } = await open();
    job.persistPut('s', key('kept'), payload('1'), { expireInMs: 100 });
    job.persistPut('s', key('kept'), payload('2'));
    job.persistPut('s', key('moved'), payload('1'), { expireInMs: 100 });
    job.persistPut('s', key('moved'), payload('2'), { expireInMs: 500 });
    job.persistAdd('s', key('rate'), 5);
    job.persistPut('s', key('rate'), toPayload(i64(5)), { expireInMs: 100 });
    job.persistAdd('s', key('rate'), 1); // keeps the 100 ms window
    unwrap(await job.flush());
    clock.advance(100);
    expect(unwrap(await job.get('s', key('kept')))).toEqual(payload('2'));
    expect(unwrap(await job.get('s', key('moved')))).toEqual(payload('2'));
    expect(unwrap(await job.get('s', key('rate')))).toBeUndefined();
    job.persistAdd('s', key('rate'), 1); // an expired counter counts as absent, and lives on
    clock.advance(10_000);
    expect(decodePayload(unwrap(await job.get('s', key('rate'))) as Uint8Array, 'i64')).toBe(1n);
    expect(unwrap(await job.get('s', key('moved')))).toBeUndefined();
    // A check sees an expired row as absent.
    job.persistPut('s', key('lock'), payload('held'), { expireInMs: 50 });
    const taken = job
      .atomic()
      .check('s', key('lock'), undefined)
      .put('s', key('lock'), payload('mine'))
      .commit();
    expect(unwrap(await taken)).toEqual({ ok: false, reason: 'check' });
    clock.advance(50);
    const retaken = job
      .atomic()
      .check('s', key('lock'), undefined)
      .put('s', key('lock'), payload('mine'))
      .commit();
    expect(unwrap(await retaken)).toEqual({ ok: true });
    await p.close();
  });

  it('removes expired rows in the background and tells watchers', async () => {
    const { p, job, clock, root } = await open();
    const feed = job.watch('s', prefixRange(key()));
    for (let i = 0; i < 1200; i++)
      job.persistPut('s', key(i), payload('v'), { expireInMs: i < 1000 ? 10 : 1_000_000 });
    unwrap(await job.flush());
    clock.advance(10);
    unwrap(await job.flush()); // the clock moves with the job's requests; the sweep follows
    const removed: Change[] = [];
    for await (const changes of feed) {
      removed.push(...changes.filter((c) => 'key' in c && c.payload === undefined));
      if (removed.length >= 1000) break;
    }
    expect(removed).toHaveLength(1000);
    expect(unwrap(await job.count('s', prefixRange(key())))).toBe(200);
    if (!memory) {
      unwrap(await job.flush());
      expect(rawFile(join(root, 'e.db')).rows).toHaveLength(200);
    }
    await p.close();
  });

  it('refuses a bad expireInMs', async () => {
    const { p, job } = await open();
    const failures: string[] = [];
    p.events.on('writeFailed', (e) => failures.push(e.error.message));
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY, '10', null])
      job.persistPut('s', key(1), payload('x'), { expireInMs: bad as number });
    job.persistPut('s', key(1), payload('x'), 5 as unknown as { expireInMs: number });
    expect(failures).toHaveLength(6);
    expect(failures[0]).toMatch(/expireInMs/);
    const r = await job.atomic().put('s', key(1), payload('x'), { expireInMs: -5 }).commit();
    expect(r.isErr() && r.error.kind).toBe('InvalidArgument');
    expect((await job.flush()).isErr()).toBe(true);
    await p.close();
  });
});

describe.each(FILE_MODES)('expiry on disk (%s)', (_name, _memory, options) => {
  it('keeps schema version 1 until first used, then migrates once, keeping every row', async () => {
    const root = tempDir();
    const file = join(root, 'v.db');
    let p = unwrap(Persistency.open(root, options));
    let job = unwrap(await p.openJob('v'));
    for (let i = 0; i < 50; i++) job.persistPut('r', key(i), payload(`row ${i}`));
    job.persistAdd('r', key('n'), 3);
    unwrap(await p.close());
    expect(rawFile(file).version).toBe(1);

    p = unwrap(Persistency.open(root, options));
    job = unwrap(await p.openJob('v'));
    job.persistPut('r', key(1000), payload('before'));
    job.persistPut('r', key('session'), payload('s'), { expireInMs: 60_000 });
    job.persistPut('r', key(1001), payload('after'));
    unwrap(await job.flush());
    unwrap(await p.close());
    const after = rawFile(file);
    expect(after.version).toBe(2);
    expect(after.rows).toHaveLength(54);
    expect(after.rows.filter((r) => r.expires !== null).map((r) => r.key)).toEqual([
      hex(key('session')),
    ]);
  });

  it('a process killed inside the migration leaves version 1, intact, and the next use migrates', async () => {
    const root = tempDir();
    const threads = options.workerThreads === 'per-job' ? 'per-job' : String(options.workerThreads);
    const child = new Child('migration-crash.ts', [root, threads]);
    await child.waitForLine((l) => l === 'flushed', 'the first rows flushed');
    const exit = await child.closed;
    expect(exit.signal).toBe('SIGKILL');
    expect(child.lines).not.toContain('survived');
    const file = join(root, 'm.db');
    const db = new Database(file, { readonly: true });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    db.close();
    const before = rawFile(file);
    expect(before.version).toBe(1);
    expect(before.rows).toHaveLength(100);

    const p = unwrap(Persistency.open(root, options));
    const job = unwrap(await p.openJob('m'));
    job.persistPut('rows', key('session'), payload('expiring'), { expireInMs: 60_000 });
    unwrap(await job.flush());
    expect(unwrap(await job.count('rows', prefixRange(key())))).toBe(101);
    unwrap(await p.close());
    expect(rawFile(file).version).toBe(2);
  });

  it('gives way to the job between chunks of a long sweep', async () => {
    const root = tempDir();
    const clock = testClock();
    const p = unwrap(Persistency.open(root, { ...options, clock: clock.now }));
    const job = unwrap(await p.openJob('big'));
    const rows = 50_000;
    for (let i = 0; i < rows; i++) job.persistPut('s', key(i), payload('v'), { expireInMs: 10 });
    job.persistPut('s', key('kept'), payload('k'));
    unwrap(await job.flush());
    clock.advance(10);
    unwrap(await job.flush()); // the sweep starts after this flush's group
    // A read issued now is answered between two chunks, long before the last one.
    expect(unwrap(await job.get('s', key('kept')))).toEqual(payload('k'));
    const left = rawFile(join(root, 'big.db')).rows.length;
    expect(left).toBeGreaterThan(1);
    expect(left).toBeLessThan(rows + 1);
    // It goes on with the next request and when the job is idle (an injected clock: the next).
    for (let i = 0; i < 1000 && rawFile(join(root, 'big.db')).rows.length > 1; i++)
      unwrap(await job.flush());
    expect(rawFile(join(root, 'big.db')).rows.map((r) => r.key)).toEqual([hex(key('kept'))]);
    await p.close();
  });

  it('sweeps by the system clock too (expireInMs 0 expires at once)', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.open(root, options));
    const job = unwrap(await p.openJob('z'));
    job.persistPut('s', key('gone'), payload('x'), { expireInMs: 0 });
    job.persistPut('s', key('stays'), payload('y'));
    expect(unwrap(await job.get('s', key('gone')))).toBeUndefined();
    unwrap(await job.flush());
    unwrap(await job.flush()); // answered after the sweep that followed the first
    expect(rawFile(join(root, 'z.db')).rows.map((r) => r.key)).toEqual([hex(key('stays'))]);
    await p.close();
  });
});
