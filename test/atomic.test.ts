/*
 * CONTRACT.md section 9: job.atomic() (checks and ops applied all or none, in issue order
 * with the job's other writes, `{ ok: false }` when a check fails, resolved once durable)
 * and int64 counters (`add`, `persistAdd`), in both threading modes, on file and `:memory:`
 * roots.
 */
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import {
  i64,
  type Job,
  key,
  Persistency,
  type PersistencyEvents,
  payload,
  prefixRange,
  toPayload,
} from '../src/index.js';
import { injectFault } from '../src/job.js';
import { counter, INT64_MAX, INT64_MIN } from './support/changes.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES, ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-atomic-');

describe.each(ROOT_MODES)('atomic (%s)', (_name, memory, options) => {
  async function open(id = 'j'): Promise<{ p: Persistency; job: Job; root: string }> {
    const root = memory ? ':memory:' : tempDir();
    const p = unwrap(Persistency.open(root, options));
    return { p, job: unwrap(await p.openJob(id)), root };
  }

  it('applies checks and ops all or none, and says when a check does not hold', async () => {
    const { p, job } = await open();
    const k = key('ada');
    const first = await job
      .atomic()
      .check('u', k, undefined)
      .put('u', k, payload('A1'))
      .put('u', key('log', 1), payload('x'))
      .commit();
    expect(unwrap(first)).toEqual({ ok: true });
    // Absent no more: nothing of the second batch is applied.
    const second = await job
      .atomic()
      .check('u', k, undefined)
      .put('u', k, payload('A2'))
      .put('u', key('log', 2), payload('y'))
      .commit();
    expect(unwrap(second)).toEqual({ ok: false, reason: 'check' });
    expect(unwrap(await job.get('u', k))).toEqual(payload('A1'));
    expect(unwrap(await job.exists('u', key('log', 2)))).toBe(false);
    // An expected value that matches, then one that does not.
    const third = await job
      .atomic()
      .check('u', k, payload('A1'))
      .put('u', k, payload('A3'))
      .delete('u', key('log', 1))
      .commit();
    expect(unwrap(third)).toEqual({ ok: true });
    const stale = await job.atomic().check('u', k, payload('A1')).deletePrefix('u', key()).commit();
    expect(unwrap(stale)).toEqual({ ok: false, reason: 'check' });
    expect(unwrap(await job.scan('u', prefixRange(key()))).map((r) => r.payload)).toEqual([
      payload('A3'),
    ]);
    await p.close();
  });

  it('evaluates every check against the state before any op of its batch, in issue order with other writes', async () => {
    const { p, job } = await open();
    const k = key('k');
    // Issued after the put in the same turn: the check sees it (issue order).
    job.persistPut('c', k, payload('v1'));
    const seesPut = job.atomic().check('c', k, payload('v1')).put('c', k, payload('v2')).commit();
    // A check placed after a put of its own batch still sees the state before the batch.
    const own = job
      .atomic()
      .put('c', key('n'), payload('x'))
      .check('c', key('n'), payload('x'))
      .commit();
    job.persistDelete('c', k);
    const afterDelete = job
      .atomic()
      .check('c', k, undefined)
      .put('c', key('z'), payload('z'))
      .commit();
    expect(unwrap(await seesPut)).toEqual({ ok: true });
    expect(unwrap(await own)).toEqual({ ok: false, reason: 'check' });
    expect(unwrap(await afterDelete)).toEqual({ ok: true });
    expect(unwrap(await job.exists('c', key('n')))).toBe(false);
    expect(unwrap(await job.get('c', key('z')))).toEqual(payload('z'));
    await p.close();
  });

  // Found by review: a commit settled after the reads issued after it (a .map's ticks).
  it('settles a commit in issue order with the reads and flushes around it', async () => {
    const { p, job } = await open();
    const settled: string[] = [];
    const mark = <T>(name: string, r: PromiseLike<T>) => r.then(() => void settled.push(name));
    await Promise.all([
      mark('get before', job.get('c', key(1))),
      mark('commit', job.atomic().put('c', key(1), payload('x')).commit()),
      mark('get after', job.get('c', key(1))),
      mark('exists after', job.exists('c', key(1))),
      mark('commit 2', job.atomic().check('c', key(1), payload('x')).commit()),
      mark('flush after', job.flush()),
    ]);
    expect(settled).toEqual([
      'get before',
      'commit',
      'get after',
      'exists after',
      'commit 2',
      'flush after',
    ]);
    await p.close();
  });

  it('1,000 compare-and-set increments from 50 concurrent tasks end exactly at 1,000', async () => {
    const { p, job } = await open();
    const k = key('counter');
    let retries = 0;
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        for (let i = 0; i < 20; i++) {
          for (;;) {
            const seen = unwrap(await job.get('n', k));
            const next = toPayload(i64((counter(seen) ?? 0n) + 1n));
            const r = unwrap(await job.atomic().check('n', k, seen).put('n', k, next).commit());
            if (r.ok) break;
            expect(r.reason).toBe('check');
            retries++;
          }
        }
      }),
    );
    expect(counter(unwrap(await job.get('n', k)))).toBe(1000n);
    expect(retries).toBeGreaterThan(0); // they did race: the checks, not luck, kept the count
    await p.close();
  });

  it('10,000 adds from 100 concurrent tasks end exactly at 10,000 with no retry', async () => {
    const { p, job } = await open();
    const k = key('visits');
    const outcomes = await Promise.all(
      Array.from({ length: 100 }, async () => {
        const mine = [];
        for (let i = 0; i < 100; i++) mine.push(unwrap(await job.atomic().add('n', k, 1).commit()));
        return mine;
      }),
    );
    expect(outcomes.flat().every((r) => r.ok)).toBe(true);
    expect(counter(unwrap(await job.get('n', k)))).toBe(10_000n);
    // Fire-and-forget counters: 1,000 of them, 10 adds each.
    for (let round = 0; round < 10; round++)
      for (let c = 0; c < 1000; c++) job.persistAdd('many', key(c), round % 2 === 0 ? 3 : -1n);
    unwrap(await job.flush());
    const values = unwrap(await job.scan('many', prefixRange(key()))).map((r) =>
      counter(r.payload),
    );
    expect(values).toEqual(Array(1000).fill(10n));
    await p.close();
  });

  it('stores counters as toPayload(i64(n)) and fails an add that would leave int64, alone', async () => {
    const { p, job } = await open();
    const failures: PersistencyEvents['writeFailed'][] = [];
    p.events.on('writeFailed', (e) => failures.push(e));
    job.persistAdd('n', key('neg'), -5);
    job.persistAdd('n', key('neg'), INT64_MIN + 5n);
    job.persistPut('n', key('max'), toPayload(i64(INT64_MAX - 1n)));
    job.persistAdd('n', key('max'), 1);
    unwrap(await job.flush());
    expect(unwrap(await job.get('n', key('neg')))).toEqual(toPayload(i64(INT64_MIN)));
    expect(counter(unwrap(await job.get('n', key('max'))))).toBe(INT64_MAX);

    const over = await job
      .atomic()
      .add('n', key('max'), 1)
      .put('n', key('side'), payload('s'))
      .commit();
    expect(unwrap(over)).toEqual({ ok: false, reason: 'overflow' });
    const under = await job.atomic().add('n', key('neg'), -1).commit();
    expect(unwrap(under)).toEqual({ ok: false, reason: 'overflow' });
    expect(unwrap(await job.exists('n', key('side')))).toBe(false);

    // Fire-and-forget: the overflowing add fails alone, reported, and the next flush says so.
    job.persistPut('n', key('before'), payload('b'));
    job.persistAdd('n', key('max'), 2n);
    job.persistPut('n', key('after'), payload('a'));
    const flushed = await job.flush();
    expect(flushed.isErr() && flushed.error.kind).toBe('WriteFailed');
    expect(flushed.isErr() && (flushed.error.cause as { kind?: string }).kind).toBe('Overflow');
    expect(failures).toHaveLength(1);
    expect(failures[0]?.error.kind).toBe('Overflow');
    expect(failures[0]?.count).toBe(1);
    expect(unwrap(await job.exists('n', key('before')))).toBe(true);
    expect(unwrap(await job.exists('n', key('after')))).toBe(true);
    expect(counter(unwrap(await job.get('n', key('max'))))).toBe(INT64_MAX);

    // A payload that is not 8 bytes is not a counter.
    job.persistPut('n', key('text'), payload('hello'));
    const notCounter = await job.atomic().add('n', key('text'), 1).commit();
    expect(unwrap(notCounter)).toEqual({ ok: false, reason: 'notCounter' });
    expect(unwrap(await job.get('n', key('text')))).toEqual(payload('hello'));
    await p.close();
  });

  it('keeps counters exact across rollbacks: a failed write, a lost transaction, a batch not applied', async () => {
    const { p, job } = await open();
    p.events.on('writeFailed', () => {});
    const k = key('c');
    const value = async () => counter(unwrap(await job.get('n', k)));
    job.persistAdd('n', k, 1);
    job.persistAdd('n', k, 1);
    unwrap(await job.flush());
    // The next write fails and SQLite drops the transaction: the writes before it are redone.
    job.persistAdd('n', k, 10);
    injectFault(job, 'rollback', 1);
    job.persistAdd('n', k, 100); // passed over (skipWrites 1)
    job.persistAdd('n', k, 1000); // fails
    expect((await job.flush()).isErr()).toBe(true);
    expect(await value()).toBe(112n);
    // An atomic batch whose second add overflows applies nothing, its first add included.
    job.persistPut('n', key('max'), toPayload(i64(INT64_MAX)));
    const r = await job.atomic().add('n', k, 5).add('n', key('max'), 1).commit();
    expect(unwrap(r)).toEqual({ ok: false, reason: 'overflow' });
    job.persistAdd('n', k, 1);
    expect(await value()).toBe(113n);
    // A put, a delete and a prefix delete change counters under the adds.
    job.persistPut('n', k, toPayload(i64(-7)));
    job.persistAdd('n', k, 1);
    expect(await value()).toBe(-6n);
    job.persistDelete('n', k);
    job.persistAdd('n', k, 2);
    expect(await value()).toBe(2n);
    job.persistDeletePrefix('n', key());
    job.persistAdd('n', k, 3);
    expect(await value()).toBe(3n);
    expect(unwrap(await job.deleteAcked('n', k))).toBe(true);
    job.persistAdd('n', k, 4);
    expect(await value()).toBe(4n);
    // A commit that fails loses the adds of its group.
    injectFault(job, 'commit');
    job.persistAdd('n', k, 50);
    expect((await job.flush()).isErr()).toBe(true);
    job.persistAdd('n', k, 1);
    expect(await value()).toBe(5n);
    await p.close();
  });

  it('refuses bad arguments up front, commits once, and answers Closed and JobNotFound', async () => {
    const { p, job } = await open();
    const bad = [
      job.atomic().check('c', key(1), 'x' as unknown as Uint8Array),
      job.atomic().add('c', key(1), 1.5),
      job.atomic().add('c', key(1), 2n ** 63n),
      job.atomic().put('c', 'k' as unknown as ReturnType<typeof key>, payload('x')),
      job.atomic().put('c', key(1), payload('x'), { expireInMs: -1 }),
      job.atomic().put('', key(1), payload('x')),
    ];
    for (const batch of bad) {
      const r = await batch.commit();
      expect(r.isErr() && r.error.kind).toBe('InvalidArgument');
    }
    expect(unwrap(await job.count('c', prefixRange(key())))).toBe(0);
    const once = job.atomic().put('c', key(1), payload('x'));
    expect(unwrap(await once.commit())).toEqual({ ok: true });
    const again = await once.commit();
    expect(again.isErr() && again.error.kind).toBe('InvalidArgument');
    expect(unwrap(await job.atomic().commit())).toEqual({ ok: true }); // empty: a no-op

    expect(unwrap(await p.atomic('j').add('c', key('s'), 2).commit())).toEqual({ ok: true });
    const missing = await p.atomic('nope').add('c', key('s'), 2).commit();
    expect(missing.isErr() && missing.error.kind).toBe('JobNotFound');
    unwrap(await p.closeJob('j'));
    const closed = await job.atomic().put('c', key(2), payload('y')).commit();
    expect(closed.isErr() && closed.error.kind).toBe('Closed');
    await p.close();
  });

  it('resolves Err, never ok, when the commit holding the batch fails', async () => {
    const { p, job } = await open();
    job.persistPut('c', key('seed'), payload('s'));
    unwrap(await job.flush());
    injectFault(job, 'commit');
    const lost = job
      .atomic()
      .check('c', key('k'), undefined)
      .put('c', key('k'), payload('v'))
      .commit();
    const r = await lost;
    expect(r.isErr() && r.error.kind).toBe('Backend');
    expect(unwrap(await job.exists('c', key('k')))).toBe(false);
    // The job goes on.
    expect(unwrap(await job.atomic().put('c', key('k'), payload('v')).commit())).toEqual({
      ok: true,
    });
    expect(unwrap(await job.get('c', key('k')))).toEqual(payload('v'));
    await p.close();
  });
});

describe.each(FILE_MODES)('atomic on a file (%s)', (_name, _memory, options) => {
  it('is durable when commit() resolves: another connection reads it', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.open(root, options));
    const job = unwrap(await p.openJob('durable'));
    unwrap(await job.atomic().add('n', key('a'), 41).add('n', key('a'), 1).commit());
    const reader = new Database(`${root}/durable.db`, { readonly: true });
    const row = reader
      .prepare('SELECT payload FROM kv WHERE category = ?')
      .pluck()
      .get(Buffer.from('n')) as Buffer;
    reader.close();
    expect(counter(new Uint8Array(row))).toBe(42n);
    await p.close();
  });
});
