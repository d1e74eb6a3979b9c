/*
 * A pager's next page read ahead (src/worker/page-ahead.ts): pages read that way are what a
 * fresh read gives, whatever happens to the job between pages (writes inside and outside
 * the range, writes that change nothing, failed atomic batches, reads, a lost commit), in
 * both threading modes and on :memory: roots; expired rows never come back from one; and
 * the path is taken (the worker's count of pages answered from it).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Job,
  type Key,
  key,
  Persistency,
  type PersistencyOptions,
  payload,
} from '../src/index.js';
import { closeJobHandle, injectFault } from '../src/job.js';
import { testClock } from './support/changes.js';
import { unwrap, useTempDirs } from './support/env.js';
import { ROOT_MODES } from './support/modes.js';
import { modelPage } from './support/rows.js';

const tempDir = useTempDirs('persistency-page-ahead-');
const RUNS = Number(process.env.FC_NUM_RUNS ?? 40);

const MODES: readonly [string, boolean, PersistencyOptions][] = [
  ...ROOT_MODES,
  ['file, 1 thread sliceMs 1', false, { workerThreads: 1, sliceMs: 1 }],
];

const hex = (k: Key) => Buffer.from(k.bytes).toString('hex');

/** What happens to the job between two pages: `i` is a key, or `ahead` of the cursor. */
type Step =
  | { kind: 'none' }
  | {
      kind: 'get' | 'put' | 'delete' | 'other' | 'deleteAcked' | 'failedAtomic';
      i: number;
      ahead: boolean;
    };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.constant({ kind: 'none' as const }),
  fc.record({
    kind: fc.constantFrom(
      'get' as const,
      'put' as const,
      'delete' as const,
      'other' as const,
      'deleteAcked' as const,
      'failedAtomic' as const,
    ),
    i: fc.integer({ min: 0, max: 400 }),
    // Most land just past the cursor: on the page read ahead.
    ahead: fc.boolean(),
  }),
);

/** Apply `s` to the job and to the model of its category 'c' (`next`: the key `ahead` counts from). */
async function apply(
  job: Job,
  model: Set<number>,
  s: Step,
  next: (ahead: number) => number,
): Promise<void> {
  if (s.kind === 'none') return;
  const i = s.ahead ? next(s.i % 12) : s.i;
  switch (s.kind) {
    case 'get':
      expect(unwrap(await job.get('c', key(i))) !== undefined).toBe(model.has(i));
      return;
    case 'put':
      job.persistPut('c', key(i), payload(i, 'again'));
      model.add(i);
      return;
    case 'delete': // may delete nothing: no row changes
      job.persistDelete('c', key(i));
      model.delete(i);
      return;
    case 'other':
      job.persistPut('d', key(i), payload(i));
      return;
    case 'deleteAcked':
      expect(unwrap(await job.deleteAcked('c', key(i)))).toBe(model.delete(i));
      return;
    case 'failedAtomic': {
      // A put whose check fails (no row holds that payload): the batch changes nothing.
      const r = await job
        .atomic()
        .check('c', key(i), payload('mismatch'))
        .put('c', key(i), payload('never'))
        .commit();
      expect(r.isOk() && r.value.ok).toBe(false);
      return;
    }
  }
}

describe.each(MODES)('pages read ahead (%s)', (_name, memory, options) => {
  it('every page is what a read at its request gives, while the job changes or not between pages', async () => {
    const p = unwrap(Persistency.open(memory ? ':memory:' : tempDir(), options));
    const job = unwrap(await p.openJob('pager'));
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.integer({ min: 0, max: 400 }), { minLength: 20, maxLength: 200 }),
        fc.boolean(),
        fc.integer({ min: 1, max: 9 }),
        fc.array(step, { maxLength: 30 }),
        async (initial, reverse, limit, steps) => {
          job.persistDeletePrefix('c', key());
          const model = new Set<number>(initial);
          for (const i of initial) job.persistPut('c', key(i), payload(i));
          let cursor: Key | undefined;
          let at = 0;
          for (;;) {
            const rows = unwrap(
              await job.scan(
                'c',
                { start: key() },
                {
                  reverse,
                  limit,
                  ...(cursor !== undefined && { after: cursor }),
                },
              ),
            );
            const want = modelPage(model, cursor, reverse, limit);
            expect(rows.map((r) => hex(r.key))).toEqual(want.map((i) => hex(key(i))));
            for (const r of rows) {
              const i = want[rows.indexOf(r)] as number;
              expect([payload(i), payload(i, 'again')]).toContainEqual(r.payload);
            }
            if (rows.length < limit) break;
            cursor = rows[rows.length - 1]?.key;
            // Steps run out halfway through most runs: later pages come from the read-ahead.
            const s = steps[at++];
            const last = want[want.length - 1] as number;
            if (s !== undefined)
              await apply(job, model, s, (n) => last + (reverse ? -1 - n : 1 + n));
          }
        },
      ),
      { numRuns: RUNS },
    );
    const { reads } = await closeJobHandle(job);
    expect(reads?.readAhead).toBeGreaterThan(0);
    unwrap(await p.close());
  });

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
    const { reads } = await closeJobHandle(job);
    expect(reads?.readAhead).toBeGreaterThan(0);
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

  it('does not read ahead after pages longer than it holds', async () => {
    const p = unwrap(Persistency.open(memory ? ':memory:' : tempDir(), options));
    const job = unwrap(await p.openJob('long'));
    const big = new Uint8Array(100 * 1024);
    for (let i = 0; i < 12; i++) job.persistPut('c', key(i), big);
    let after: Key | undefined;
    let n = 0;
    for (;;) {
      const rows = unwrap(
        await job.scan('c', { start: key() }, { limit: 3, ...(after && { after }) }),
      );
      n += rows.length;
      if (rows.length < 3) break;
      after = rows[2]?.key;
    }
    expect(n).toBe(12);
    const { reads } = await closeJobHandle(job);
    expect(reads?.readAhead).toBe(0);
    unwrap(await p.close());
  });
});
