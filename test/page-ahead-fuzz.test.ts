/*
 * Pages read ahead (src/worker/page-ahead.ts) against a model: two pagers (each its own
 * range, direction, limit and starting cursor, maybe outside the range) interleaved on one
 * job, and between pages: puts (some past 64 KiB, some of the same bytes again), deletes,
 * counters, deletePrefix, atomic batches (applied or not), deleteAcked, faults (rollback,
 * rollback-twice, commit), eviction by maxResidentJobs, closeJob and reopen, an iterator
 * left open, a migration to expiry; six modes. Written by a review of 310acc7.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { counterBytes } from '../src/counter.js';
import {
  compareKeys,
  type Job,
  type Key,
  key,
  Persistency,
  type PersistencyOptions,
  payload,
} from '../src/index.js';
import { closeJobHandle, injectFault } from '../src/job.js';
import { unwrap, useTempDirs } from './support/env.js';
import { ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-page-ahead-fuzz-');
const RUNS = Number(process.env.FC_NUM_RUNS ?? 60);
const MODES: readonly [string, boolean, PersistencyOptions][] = [
  ...ROOT_MODES,
  ['file, 1 thread sliceMs 1', false, { workerThreads: 1, sliceMs: 1 }],
  [':memory:, 1 thread sliceMs 1', true, { workerThreads: 1, sliceMs: 1 }],
];
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

type Row = { key: Key; payload: Uint8Array };
type Model = Map<string, Row>;

interface Pager {
  start: number;
  stop: number | undefined;
  reverse: boolean;
  limit: number;
  cursor: Key | undefined;
  done: boolean;
}

const stepKinds = [
  'none',
  'none',
  'put',
  'put',
  'bigPut',
  'delete',
  'add',
  'deletePrefix',
  'atomic',
  'failedAtomic',
  'deleteAcked',
  'rollback',
  'rollback-twice',
  'commit',
  'evict',
  'reopen',
  'iterate',
  'get',
  'samePut',
] as const;
type StepKind = (typeof stepKinds)[number] | 'expiry';

const pagerArb = fc.record({
  start: fc.integer({ min: 0, max: 200 }),
  span: fc.option(fc.integer({ min: 1, max: 300 }), { nil: undefined }),
  reverse: fc.boolean(),
  limit: fc.integer({ min: 1, max: 9 }),
  after: fc.option(fc.integer({ min: -20, max: 520 }), { nil: undefined }),
});

function inRange(pg: Pager, k: Key): boolean {
  if (compareKeys(k, key(pg.start)) < 0) return false;
  if (pg.stop !== undefined && compareKeys(k, key(pg.stop)) >= 0) return false;
  if (pg.cursor === undefined) return true;
  const c = compareKeys(k, pg.cursor);
  return pg.reverse ? c < 0 : c > 0;
}

describe.each(MODES)('pages read ahead, two pagers (%s)', (_name, memory, options) => {
  it('every page equals the model', async () => {
    const root = memory ? ':memory:' : tempDir();
    const p = unwrap(Persistency.open(root, { ...options, maxResidentJobs: 1 }));
    p.events.on('writeFailed', () => {});
    const other = unwrap(await p.openJob('other'));
    other.persistPut('c', key(1), payload('other'));
    unwrap(await other.flush());
    let served = 0;
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.integer({ min: 0, max: 500 }), { minLength: 10, maxLength: 200 }),
        pagerArb,
        pagerArb,
        fc.array(
          fc.record({
            kind: fc.constantFrom<StepKind>(...stepKinds, 'expiry'),
            i: fc.integer({ min: 0, max: 500 }),
            ahead: fc.boolean(),
            which: fc.boolean(),
          }),
          { maxLength: 40 },
        ),
        fc.array(fc.boolean(), { minLength: 60, maxLength: 60 }),
        async (initial, a, b, steps, turns) => {
          const id = `j${run++}`;
          let job: Job = unwrap(await p.openJob(id));
          const model: Model = new Map();
          const put = (k: Key, v: Uint8Array) => model.set(hex(k.bytes), { key: k, payload: v });
          for (const i of initial) {
            job.persistPut('c', key(i), payload(i));
            put(key(i), payload(i));
          }
          const its: AsyncIterator<unknown>[] = [];
          const pagers: Pager[] = [a, b].map((x) => ({
            start: x.start,
            stop: x.span === undefined ? undefined : x.start + x.span,
            reverse: x.reverse,
            limit: x.limit,
            cursor: x.after === undefined ? undefined : key(x.after),
            done: false,
          }));
          let at = 0;
          let turn = 0;
          const want = (pg: Pager) => {
            const rows = [...model.values()]
              .filter((r) => inRange(pg, r.key))
              .sort((x, y) => compareKeys(x.key, y.key) * (pg.reverse ? -1 : 1));
            return rows.slice(0, pg.limit);
          };
          while (pagers.some((pg) => !pg.done)) {
            const pick = turns[turn++ % turns.length] ? 0 : 1;
            const pg = (pagers[pick]?.done ? pagers[1 - pick] : pagers[pick]) as Pager;
            const rows = unwrap(
              await job.scan(
                'c',
                { start: key(pg.start), ...(pg.stop !== undefined && { stop: key(pg.stop) }) },
                { reverse: pg.reverse, limit: pg.limit, ...(pg.cursor && { after: pg.cursor }) },
              ),
            );
            const w = want(pg);
            expect(rows.map((r) => hex(r.key.bytes))).toEqual(w.map((r) => hex(r.key.bytes)));
            expect(rows.map((r) => hex(r.payload))).toEqual(w.map((r) => hex(r.payload)));
            if (rows.length < pg.limit) {
              pg.done = true;
              continue;
            }
            pg.cursor = rows[rows.length - 1]?.key;
            const s = steps[at++];
            if (s === undefined) continue;
            const last = rows[rows.length - 1] as { key: Key };
            // A key just past the cursor (on the page read ahead), or anywhere.
            const target = (): Key => {
              if (!s.ahead) return key(s.i);
              const lastN = initial.find((n) => compareKeys(key(n), last.key) === 0);
              if (lastN === undefined) return key(s.i);
              return key(lastN + (pg.reverse ? -1 : 1) * (1 + (s.i % 5)));
            };
            switch (s.kind) {
              case 'none':
                break;
              case 'get': {
                const k = target();
                const got = unwrap(await job.get('c', k));
                expect(got === undefined ? undefined : hex(got)).toEqual(
                  (() => {
                    const m = model.get(hex(k.bytes));
                    return m === undefined ? undefined : hex(m.payload);
                  })(),
                );
                break;
              }
              case 'put': {
                const k = target();
                job.persistPut('c', k, payload(s.i, 'again'));
                put(k, payload(s.i, 'again'));
                break;
              }
              case 'samePut': {
                // The same bytes again: a change that changes nothing.
                const k = target();
                const m = model.get(hex(k.bytes));
                if (m !== undefined) job.persistPut('c', k, m.payload);
                break;
              }
              case 'bigPut': {
                const k = target();
                const v = new Uint8Array(70 * 1024).fill(s.i & 0xff);
                job.persistPut('c', k, v);
                put(k, v);
                break;
              }
              case 'delete': {
                const k = target();
                job.persistDelete('c', k);
                model.delete(hex(k.bytes));
                break;
              }
              case 'add': {
                const k = key('n', s.i % 4);
                job.persistAdd('c', k, 3);
                const m = model.get(hex(k.bytes));
                const was =
                  m === undefined
                    ? 0n
                    : Buffer.from(m.payload).readBigUInt64BE(0) ^ 0x8000000000000000n;
                put(k, counterBytes(BigInt.asIntN(64, was) + 3n));
                break;
              }
              case 'deletePrefix': {
                job.persistDeletePrefix('c', key('n'));
                for (const [h, r] of model)
                  if (
                    compareKeys(r.key, key('n')) >= 0 &&
                    hex(r.key.bytes).startsWith(hex(key('n').bytes))
                  )
                    model.delete(h);
                break;
              }
              case 'atomic': {
                const k = target();
                const r = unwrap(
                  await job
                    .atomic()
                    .put('c', k, payload('atomic', s.i))
                    .delete('c', key(s.i))
                    .commit(),
                );
                expect(r.ok).toBe(true);
                put(k, payload('atomic', s.i));
                model.delete(hex(key(s.i).bytes));
                if (hex(k.bytes) === hex(key(s.i).bytes)) model.delete(hex(k.bytes));
                break;
              }
              case 'failedAtomic': {
                const k = target();
                const r = await job
                  .atomic()
                  .check('c', k, payload('mismatch'))
                  .put('c', k, payload('never'))
                  .commit();
                expect(r.isOk() && r.value.ok).toBe(false);
                break;
              }
              case 'deleteAcked': {
                const k = target();
                expect(unwrap(await job.deleteAcked('c', k))).toBe(model.delete(hex(k.bytes)));
                break;
              }
              case 'rollback':
              case 'rollback-twice':
              case 'commit': {
                unwrap(await job.flush());
                injectFault(job, s.kind);
                job.persistPut('c', target(), payload('lost'));
                // rollback-twice fires again at the next write: let it be this one.
                if (s.kind === 'rollback-twice') job.persistPut('c', key(s.i), payload('lost too'));
                expect((await job.flush()).isErr()).toBe(true);
                break;
              }
              case 'evict':
                unwrap(await other.get('c', key(1)));
                break;
              case 'reopen': {
                unwrap(await p.closeJob(id));
                job = unwrap(await p.openJob(id));
                break;
              }
              case 'iterate': {
                const it = job.iterate('c', { start: key() })[Symbol.asyncIterator]();
                await it.next();
                its.push(it);
                break;
              }
              case 'expiry': {
                const k = target();
                job.persistPut('c', k, payload('exp'), { expireInMs: 3_600_000 });
                put(k, payload('exp'));
                break;
              }
            }
          }
          for (const it of its) await it.return?.();
          const outcome = await closeJobHandle(job);
          served += outcome.reads?.readAhead ?? 0;
        },
      ),
      { numRuns: RUNS },
    );
    expect(served).toBeGreaterThan(0);
    unwrap(await p.close());
  });
});
