/*
 * CONTRACT.md section 9: job.watch — the committed changes of a range, after each commit, in
 * commit order; several watchers; nothing of another job or range; a slow watcher ends with
 * Overflow, never losing a change silently; `break` unsubscribes at once; failed writes are
 * never seen. A model test replays the changes over the first scan. Both threading modes,
 * file and `:memory:` roots.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Change,
  decodePayload,
  type Job,
  key,
  Persistency,
  payload,
  prefixRange,
  type TxOp,
} from '../src/index.js';
import { injectFault, jobClient } from '../src/job.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { hex, plain } from './support/changes.js';
import { unwrap, useTempDirs } from './support/env.js';
import { ROOT_MODES, rejection } from './support/modes.js';

const tempDir = useTempDirs('persistency-watch-');

/** Take `n` changes (whatever the commits) from a watch, as arrays per commit. */
async function take(feed: AsyncIterator<Change[]>, n: number): Promise<Change[][]> {
  const commits: Change[][] = [];
  let got = 0;
  while (got < n) {
    const r = await feed.next();
    if (r.done === true) throw new Error(`the watch ended after ${got} of ${n} changes`);
    commits.push(r.value);
    got += r.value.length;
  }
  return commits;
}

describe.each(ROOT_MODES)('watch (%s)', (_name, memory, options) => {
  async function open(ids = ['j']): Promise<{ p: Persistency; jobs: Job[] }> {
    const p = unwrap(Persistency.open(memory ? ':memory:' : tempDir(), options));
    const jobs: Job[] = [];
    for (const id of ids) jobs.push(unwrap(await p.openJob(id)));
    return { p, jobs };
  }

  it('yields the changes of its range after each commit, in order, and nothing else', async () => {
    const { p, jobs } = await open(['a', 'b']);
    const [a, b] = jobs as [Job, Job];
    a.persistPut('m', key('room', 0), payload('before the watch'));
    const feed = a.watch('m', prefixRange(key('room')));
    a.persistPut('m', key('room', 1), payload('one'));
    a.persistPut('m', key('other', 1), payload('out of range'));
    a.persistPut('x', key('room', 1), payload('other category'));
    b.persistPut('m', key('room', 1), payload('other job'));
    unwrap(await a.flush());
    a.persist([
      { kind: 'put', category: 'm', key: key('room', 2), payload: payload('two') },
      { kind: 'delete', category: 'm', key: key('room', 1) },
      { kind: 'delete', category: 'm', key: key('room', 99) }, // nothing there: no change
      { kind: 'deletePrefix', category: 'm', prefix: key('room') },
    ]);
    unwrap(await a.flush());
    unwrap(await b.flush());
    const commits = await take(feed, 4);
    expect(commits.map((c) => c.map(plain))).toEqual([
      [{ key: hex(key('room', 1)), payload: hex(payload('one')) }],
      [
        { key: hex(key('room', 2)), payload: hex(payload('two')) },
        { key: hex(key('room', 1)), payload: null },
        { prefix: hex(key('room')) },
      ],
    ]);
    await feed.return?.();
    await p.close();
  });

  it('serves several watchers, each its own range, and tells them counter values and sweeps nothing else', async () => {
    const { p, jobs } = await open();
    const job = jobs[0] as Job;
    const all = job.watch('n', { start: key() });
    const low = job.watch('n', { start: key(0), stop: key(10) });
    for (let i = 0; i < 20; i++) job.persistAdd('n', key(i), i);
    job.persistAdd('n', key(5), 100);
    unwrap(await job.flush());
    const seenAll = (await take(all, 21)).flat();
    const seenLow = (await take(low, 11)).flat();
    expect(seenAll).toHaveLength(21);
    expect(
      seenLow.map((c) => ('key' in c ? decodePayload(c.payload as Uint8Array, 'i64') : null)),
    ).toEqual([0n, 1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n, 9n, 105n]);
    await all.return?.();
    await low.return?.();
    await p.close();
  });

  it('never shows a write that failed or was rolled back', async () => {
    const { p, jobs } = await open();
    const job = jobs[0] as Job;
    p.events.on('writeFailed', () => {});
    const feed = job.watch('c', { start: key() });
    job.persistPut('c', key('m'), new Uint8Array(8).fill(0xff)); // int64 max as a counter
    job.persist([{ kind: 'put', category: 'c', key: key('lost', 1), payload: payload('x') }]);
    job.persistAdd('c', key('m'), 1); // overflows: fails alone
    unwrap(
      await job
        .atomic()
        .check('c', key('m'), undefined)
        .put('c', key('lost', 2), payload('y'))
        .commit(),
    ).ok;
    expect((await job.flush()).isErr()).toBe(true);
    injectFault(job, 'commit');
    job.persistPut('c', key('lost', 3), payload('z'));
    expect((await job.flush()).isErr()).toBe(true);
    job.persistPut('c', key('last'), payload('last'));
    unwrap(await job.flush());
    const seen = (await take(feed, 3)).flat().map(plain);
    expect(seen).toEqual([
      { key: hex(key('m')), payload: 'ff'.repeat(8) },
      { key: hex(key('lost', 1)), payload: hex(payload('x')) },
      { key: hex(key('last')), payload: hex(payload('last')) },
    ]);
    await feed.return?.();
    await p.close();
  });

  it('ends a watcher that falls behind with Overflow, after the changes it holds', async () => {
    const { p, jobs } = await open();
    const job = jobs[0] as Job;
    const slow = job.watch('c', { start: key() }, { maxQueued: 10 });
    for (let i = 0; i < 8; i++) {
      job.persistPut('c', key(i), payload('v'));
      unwrap(await job.flush()); // one commit each
    }
    for (let i = 8; i < 40; i++) job.persistPut('c', key(i), payload('v'));
    unwrap(await job.flush());
    const queued = await take(slow, 8);
    expect(queued.flat()).toHaveLength(8);
    const e = await rejection(slow);
    expect(e.kind).toBe('Overflow');
    expect((await slow.next()).done).toBe(true);
    // One commit larger than maxQueued is taken whole when nothing waits, whether or not a
    // next() is pending when it comes.
    for (const pending of [true, false]) {
      const w = job.watch('big', { start: key() }, { maxQueued: 10 });
      const parked = pending ? w.next() : undefined;
      for (let i = 0; i < 50; i++) job.persistPut('big', key(pending ? i : 100 + i), payload('x'));
      unwrap(await job.flush());
      const first = await (parked ?? w.next());
      expect(first.done === false && first.value.length).toBe(50);
      await w.return?.();
    }
    await p.close();
  });

  it('stops at once on break, lets the job be released again, and ends with Closed at closeJob', async () => {
    const { p, jobs } = await open();
    const job = jobs[0] as Job;
    const feed = job.watch('c', { start: key() });
    job.persistPut('c', key(1), payload('v'));
    unwrap(await job.flush());
    for await (const changes of feed) {
      expect(changes).toHaveLength(1);
      break;
    }
    expect((await feed.next()).done).toBe(true);
    expect(jobClient(job).holds.count).toBe(0);
    unwrap(await job.flush()); // the watch's end has reached the worker
    expect(await releaseIdleJobs(p)).toBe(1);
    expect(job.running).toBe(true);

    const open2 = job.watch('c', { start: key() });
    job.persistPut('c', key(2), payload('w'));
    await p.closeJob('j');
    expect((await take(open2, 1)).flat().map(plain)).toEqual([
      { key: hex(key(2)), payload: hex(payload('w')) },
    ]);
    expect((await rejection(open2)).kind).toBe('Closed');
    const late = await rejection(job.watch('c', { start: key() }));
    expect(late.kind).toBe('Closed');
    const bad = await rejection(jobs[0]?.watch('', { start: key() }) as AsyncIterator<Change[]>);
    expect(bad.kind).toBe('InvalidArgument');
    await p.close();
  });

  it('model: the changes replayed over the first scan give the last scan', async () => {
    const { p, jobs } = await open();
    const job = jobs[0] as Job;
    const range = { start: key(10), stop: key(50) };
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('put' as const),
        k: fc.integer({ min: 0, max: 60 }),
        v: fc.string({ maxLength: 4 }),
      }),
      fc.record({ kind: fc.constant('delete' as const), k: fc.integer({ min: 0, max: 60 }) }),
      fc.record({ kind: fc.constant('deletePrefix' as const), k: fc.integer({ min: 0, max: 60 }) }),
      fc.record({ kind: fc.constant('add' as const), k: fc.integer({ min: 0, max: 60 }) }),
    );
    const batches = fc.sample(
      fc.array(fc.array(op, { minLength: 1, maxLength: 6 }), { minLength: 20, maxLength: 40 }),
      { numRuns: 1, seed: 7 },
    )[0] as { kind: string; k: number; v?: string }[][];
    for (let i = 0; i < 60; i += 3) job.persistPut('c', key(i), payload('seed'));
    unwrap(await job.flush());
    const model = new Map<string, string>();
    for (const row of unwrap(await job.scan('c', range)))
      model.set(hex(row.key), Buffer.from(row.payload).toString('hex'));
    const feed = job.watch('c', range);
    p.events.on('writeFailed', () => {}); // adds on payloads that are not counters fail
    for (const batch of batches) {
      const adds = batch.filter((o) => o.kind === 'add');
      const ops: TxOp[] = batch
        .filter((o) => o.kind !== 'add')
        .map((o) =>
          o.kind === 'put'
            ? { kind: 'put', category: 'c', key: key(o.k), payload: payload(o.v ?? '') }
            : o.kind === 'delete'
              ? { kind: 'delete', category: 'c', key: key(o.k) }
              : { kind: 'deletePrefix', category: 'c', prefix: key(o.k) },
        );
      job.persist(ops);
      for (const a of adds) job.persistAdd('c', key(a.k), 1);
      if (Math.random() < 0.3) await job.flush(); // vary how many batches share a commit
    }
    await job.flush(); // adds on payloads that are not counters fail: that is part of the model
    const last = unwrap(await job.scan('c', range));
    const expected = new Map(last.map((r) => [hex(r.key), Buffer.from(r.payload).toString('hex')]));
    // Replay until the model matches, or fail on a change that cannot be right.
    for await (const changes of feed) {
      for (const c of changes) {
        if ('prefix' in c) {
          for (const k of [...model.keys()]) if (k.startsWith(hex(c.prefix))) model.delete(k);
        } else if (c.payload === undefined) model.delete(hex(c.key));
        else model.set(hex(c.key), Buffer.from(c.payload).toString('hex'));
      }
      if (JSON.stringify([...model].sort()) === JSON.stringify([...expected].sort())) break;
    }
    expect([...model].sort()).toEqual([...expected].sort());
    await p.close();
  });
});
