/*
 * A pager's next page read ahead (src/worker/page-ahead.ts), case by case, in both
 * threading modes and on :memory: roots: a page read ahead before writes that a failed
 * commit lost is read again; expired rows never come back from one; no page of more than
 * 256 KiB is read ahead, however small the pages before it. Against a model:
 * page-ahead-fuzz.test.ts; the worker's memory: page-ahead-memory.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { type Key, key, Persistency, type PersistencyOptions, payload } from '../src/index.js';
import { closeJobHandle, injectFault } from '../src/job.js';
import { testClock } from './support/changes.js';
import { unwrap, useTempDirs } from './support/env.js';
import { ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-page-ahead-');

const MODES: readonly [string, boolean, PersistencyOptions][] = [
  ...ROOT_MODES,
  ['file, 1 thread sliceMs 1', false, { workerThreads: 1, sliceMs: 1 }],
];

const hex = (k: Key) => Buffer.from(k.bytes).toString('hex');

describe.each(MODES)('pages read ahead (%s)', (_name, memory, options) => {
  it('a write lost with its commit between pages leaves the next page as it was', async () => {
    const p = unwrap(Persistency.open(memory ? ':memory:' : tempDir(), options));
    const job = unwrap(await p.openJob('lost'));
    let lost = 0;
    p.events.on('writeFailed', (e) => {
      lost += e.count;
    });
    for (let i = 0; i < 100; i++) job.persistPut('c', key(i), payload(i));
    const page = async (after?: Key) =>
      unwrap(await job.scan('c', { start: key() }, { limit: 10, ...(after && { after }) }));
    const first = await page();
    const second = await page(first[9]?.key); // the third is read ahead
    injectFault(job, 'commit');
    job.persistPut('c', key(25), payload('lost'));
    job.persistDelete('c', key(26));
    expect((await job.flush()).isErr()).toBe(true); // the commit failed: both writes lost
    expect(lost).toBe(2);
    const third = await page(second[9]?.key);
    expect(third.map((r) => r.payload)).toEqual(
      Array.from({ length: 10 }, (_, n) => payload(20 + n)),
    );
    const fourth = await page(third[9]?.key);
    expect(fourth.map((r) => hex(r.key))).toEqual(
      Array.from({ length: 10 }, (_, n) => hex(key(30 + n))),
    );
    // The third page, read ahead before the lost writes, was read again; the fourth came from ahead.
    const { reads } = await closeJobHandle(job);
    expect(reads?.readAhead).toBe(1);
    unwrap(await p.close());
  });

  it('never answers with rows that expired between pages', async () => {
    const clock = testClock();
    const p = unwrap(
      Persistency.open(memory ? ':memory:' : tempDir(), { ...options, clock: clock.now }),
    );
    const job = unwrap(await p.openJob('expiring'));
    for (let i = 0; i < 60; i++)
      job.persistPut('c', key(i), payload(i), i % 2 === 0 ? { expireInMs: 1000 } : undefined);
    const page = async (after?: Key) =>
      unwrap(await job.scan('c', { start: key() }, { limit: 10, ...(after && { after }) }));
    const first = await page();
    expect(first).toHaveLength(10);
    const second = await page(first[9]?.key);
    clock.advance(1000); // the even rows are gone from here on
    const third = await page(second[9]?.key);
    expect(third.map((r) => hex(r.key))).toEqual(
      Array.from({ length: 10 }, (_, n) => hex(key(21 + 2 * n))),
    );
    unwrap(await p.close());
  });

  it('reads ahead no page longer than 256 KiB, however small the pages before it', async () => {
    const p = unwrap(Persistency.open(memory ? ':memory:' : tempDir(), options));
    const job = unwrap(await p.openJob('long'));
    // Two pages of small rows, then one of 4 x 100 KiB (the next page a pager asks for).
    for (let i = 0; i < 8; i++) job.persistPut('c', key(i), payload(i));
    for (let i = 8; i < 12; i++) job.persistPut('c', key(i), new Uint8Array(100 * 1024).fill(i));
    const pages: number[][] = [];
    let after: Key | undefined;
    for (;;) {
      const rows = unwrap(
        await job.scan('c', { start: key() }, { limit: 4, ...(after && { after }) }),
      );
      pages.push(rows.map((r) => r.payload.length));
      if (rows.length < 4) break;
      after = rows[3]?.key;
    }
    expect(pages.slice(2)).toEqual([[102_400, 102_400, 102_400, 102_400], []]);
    // The long page was read when asked for, and no page is read ahead after a long one.
    const { reads } = await closeJobHandle(job);
    expect(reads?.readAhead).toBe(0);
    unwrap(await p.close());
  });
});
