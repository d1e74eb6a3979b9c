/*
 * CONTRACT.md section 8: `after`, a cursor for scan and scanPrefix. Paging forward and
 * backward gives every row once, without gaps or repeats, also while rows are inserted and
 * deleted between pages (a property test against a sorted model); `after` outside the
 * range only narrows it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Key, key, Persistency, payload } from '../src/index.js';
import { unwrap, useTempDirs } from './support/env.js';
import { modelPage } from './support/rows.js';

useTempDirs('persistency-cursor-');
const RUNS = Number(process.env.FC_NUM_RUNS ?? 60);

const hex = (k: Uint8Array | Key) => Buffer.from('bytes' in k ? k.bytes : k).toString('hex');

describe('scan after', () => {
  it('pages match the model while rows come and go between pages (forward and reverse)', async () => {
    const p = unwrap(Persistency.instance(':memory:'));
    const job = unwrap(await p.openJob('cursor'));
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.integer({ min: 0, max: 300 }), { maxLength: 120 }),
        fc.boolean(),
        fc.integer({ min: 1, max: 17 }),
        fc.array(
          fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 300 })), // put or delete, between pages
          { maxLength: 40 },
        ),
        fc.tuple(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 300 })),
        async (initial, reverse, limit, changes, [lo, hi]) => {
          job.persistDeletePrefix('c', key());
          const model = new Set<number>(initial);
          for (const i of initial) job.persistPut('c', key(i), payload(i));
          const range = { start: key(Math.min(lo, hi)), stop: key(Math.max(lo, hi) + 1) };
          const inRange = (i: number) => i >= Math.min(lo, hi) && i <= Math.max(lo, hi);
          const stable = new Set(initial.filter(inRange)); // present throughout, unless deleted
          const seen: number[] = [];
          let cursor: Key | undefined;
          let change = 0;
          for (;;) {
            const rows = unwrap(
              await job.scan('c', range, { reverse, limit, ...(cursor ? { after: cursor } : {}) }),
            );
            const expected = modelPage([...model].filter(inRange), cursor, reverse, limit);
            expect(rows.map((r) => hex(r.key))).toEqual(expected.map((i) => hex(key(i))));
            for (const i of expected) seen.push(i);
            if (rows.length < limit) break;
            cursor = key(expected[expected.length - 1] as number);
            // Rows come and go between pages.
            const step = changes[change++];
            if (step !== undefined) {
              const [put, i] = step;
              if (put) {
                job.persistPut('c', key(i), payload(i));
                model.add(i);
              } else {
                job.persistDelete('c', key(i));
                model.delete(i);
                stable.delete(i);
              }
            }
          }
          // No repeats, in scan order, and nothing present throughout was skipped.
          expect(new Set(seen).size).toBe(seen.length);
          const sorted = [...seen].sort((a, b) => (reverse ? b - a : a - b));
          expect(seen).toEqual(sorted);
          for (const i of stable) expect(seen).toContain(i);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('narrows the range when outside it; pages a prefix; an empty key has nothing below it', async () => {
    const p = unwrap(Persistency.instance(':memory:'));
    const job = unwrap(await p.openJob('edges'));
    for (let i = 0; i < 10; i++) job.persistPut('c', key('p', i), payload(i));
    job.persistPut('c', key('q'), payload('q'));
    const ids = (rows: { key: Key }[]) => rows.map((r) => hex(r.key));
    const all = { start: key() };
    // After a key before the range: the whole range; after one past it: nothing.
    expect(ids(unwrap(await job.scan('c', { start: key('p', 5) }, { after: key('a') })))).toEqual(
      ids(unwrap(await job.scan('c', { start: key('p', 5) }))),
    );
    expect(
      unwrap(await job.scan('c', { start: key('p'), stop: key('q') }, { after: key('z') })),
    ).toEqual([]);
    // A prefix, paged by three.
    const pages: string[][] = [];
    let after: Key | undefined;
    for (;;) {
      const rows = unwrap(
        await job.scanPrefix('c', key('p'), { limit: 3, ...(after ? { after } : {}) }),
      );
      pages.push(ids(rows));
      if (rows.length < 3) break;
      after = rows[2]?.key as Key;
    }
    expect(pages.flat()).toEqual(ids(unwrap(await job.scanPrefix('c', key('p')))));
    expect(unwrap(await job.scan('c', all, { reverse: true, after: key() }))).toEqual([]);
    expect(ids(unwrap(await job.scan('c', all, { after: key() })))).toHaveLength(11);
    // A cursor that is not a Key is refused like any bad argument.
    const bad = await job.scan('c', all, { after: 'p' as unknown as Key });
    expect(bad.isErr() && bad.error.kind).toBe('InvalidArgument');
  });
});
