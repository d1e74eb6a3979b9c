/*
 * Counters summed in the worker's JavaScript (src/worker/counters.ts) against everything
 * else that changes a row, and the encoding of a delta (from a second adversarial review:
 * a redone deleteAcked, a commit failing before a migration mid-frame, and the cache's
 * bound failed before their fixes; hash collisions, deltas, overflow in runs, watchers and
 * expiry were found correct). Time is injected (the `clock` option), never slept.
 */
import { describe, expect, it } from 'vitest';
import {
  type Change,
  i64,
  type Job,
  type Key,
  key,
  Persistency,
  type PersistencyEvents,
  payload,
  prefixRange,
  toPayload,
} from '../src/index.js';
import { injectFault } from '../src/job.js';
import { keyBytes } from '../src/keys.js';
import type { KvBackend } from '../src/worker/backend.js';
import { Counters, hashOf } from '../src/worker/counters.js';
import { counter, hex, INT64_MAX, INT64_MIN, testClock } from './support/changes.js';
import { unwrap, useTempDirs } from './support/env.js';
import { ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-review16-');

/** Two keys whose bytes have the same FNV-1a hash (found by a birthday search). */
const COLLIDING = [key('8e567f03ef85'), key('8611bb1e1980')] as const;

function failures(p: Persistency): PersistencyEvents['writeFailed'][] {
  const out: PersistencyEvents['writeFailed'][] = [];
  p.events.on('writeFailed', (e) => out.push(e));
  return out;
}

describe.each(ROOT_MODES)('review 16 (%s)', (_name, memory, options) => {
  async function open(extra: object = {}): Promise<{ p: Persistency; job: Job }> {
    const root = memory ? ':memory:' : tempDir();
    const p = unwrap(Persistency.open(root, { ...options, ...extra }));
    return { p, job: unwrap(await p.openJob('j')) };
  }

  it('a redone deleteAcked forgets the counters it deletes (a later redone add starts from 0)', async () => {
    const { p, job } = await open();
    p.events.on('writeFailed', () => {});
    const k = key('c');
    job.persistAdd('n', k, 1000);
    unwrap(await job.flush());
    // One group: an add, a deleteAcked of its row, an add, then a write that makes SQLite
    // drop the transaction: the three before it are redone.
    injectFault(job, 'rollback', 2);
    job.persistAdd('n', k, 5);
    const deleted = job.deleteAcked('n', k);
    job.persistAdd('n', k, 1);
    job.persistPut('n', key('x'), payload('x')); // fails
    const flushed = await job.flush();
    expect(flushed.isErr()).toBe(true);
    expect(unwrap(await deleted)).toBe(true);
    expect(unwrap(await job.exists('n', key('x')))).toBe(false);
    expect(counter(unwrap(await job.get('n', k)))).toBe(1n);
    await p.close();
  });

  it('a run of adds that cannot be made in one statement leaves the known counters as they were', async () => {
    const { p, job } = await open();
    const keys = Array.from({ length: 64 }, (_, i) => key('n', i));
    // An expiring row: an add to it needs SQL, so a run holding it goes one by one.
    job.persistPut('c', key('e'), toPayload(i64(0n)), { expireInMs: 1e9 });
    for (let round = 0; round < 2; round++) for (const k of keys) job.persistAdd('c', k, 1);
    unwrap(await job.flush()); // every counter 2, and known to the worker
    for (const k of keys.slice(0, 20)) job.persistAdd('c', k, 1);
    job.persistAdd('c', key('e'), 1);
    for (const k of keys.slice(20)) job.persistAdd('c', k, 1);
    for (const k of keys) job.persistAdd('c', k, 10); // runs again, from what was kept
    unwrap(await job.flush());
    const got = unwrap(await job.getMany('c', [...keys, key('e')])).map(counter);
    expect(got).toEqual([...keys.map(() => 13n), 1n]);
    await p.close();
  });

  it('keeps two counters apart whose keys have the same hash, in runs and alone', async () => {
    const [a, b] = COLLIDING;
    expect(hashOf(keyBytes(a))).toBe(hashOf(keyBytes(b)));
    expect(hex(a)).not.toBe(hex(b));
    const { p, job } = await open();
    // Runs of 32 single adds alternating between the two keys, then single adds.
    for (let i = 0; i < 64; i++) job.persistAdd('n', i % 2 === 0 ? a : b, i % 2 === 0 ? 1 : 100);
    unwrap(await job.flush());
    expect(counter(unwrap(await job.get('n', a)))).toBe(32n);
    expect(counter(unwrap(await job.get('n', b)))).toBe(3200n);
    job.persistAdd('n', b, 1);
    job.persistAdd('n', a, -1);
    expect(counter(unwrap(await job.get('n', a)))).toBe(31n);
    expect(counter(unwrap(await job.get('n', b)))).toBe(3201n);
    // A put of one does not leave the other's sum stale, nor its own.
    job.persistPut('n', a, toPayload(i64(7n)));
    for (let i = 0; i < 40; i++) job.persistAdd('n', i % 2 === 0 ? b : a, 1);
    expect(counter(unwrap(await job.get('n', a)))).toBe(27n);
    expect(counter(unwrap(await job.get('n', b)))).toBe(3221n);
    await p.close();
  });

  it('stores each delta as toPayload(i64(n)): negative and large safe integers, bigints, -0', async () => {
    const { p, job } = await open();
    const deltas: (number | bigint)[] = [
      -1,
      -0,
      1,
      2 ** 31,
      -(2 ** 31),
      2 ** 32 - 1,
      2 ** 32,
      -(2 ** 32),
      -(2 ** 32) - 1,
      Number.MAX_SAFE_INTEGER,
      Number.MIN_SAFE_INTEGER,
      -123456789012345,
      INT64_MAX,
      INT64_MIN,
      -(2n ** 53n),
    ];
    for (const [i, d] of deltas.entries()) job.persistAdd('n', key(i), d);
    unwrap(await job.flush());
    for (const [i, d] of deltas.entries())
      expect(hex(unwrap(await job.get('n', key(i))) as Uint8Array), `delta ${d}`).toBe(
        hex(toPayload(i64(BigInt(d)))),
      );
    await p.close();
  });

  it('fails the adds of a run that would pass ±2^63, alone, and applies the rest', async () => {
    const { p, job } = await open();
    const failed = failures(p);
    job.persistPut('n', key('max'), toPayload(i64(INT64_MAX - 10n)));
    job.persistPut('n', key('min'), toPayload(i64(INT64_MIN + 10n)));
    unwrap(await job.flush());
    for (let i = 0; i < 32; i++) job.persistAdd('n', key('max'), 1);
    for (let i = 0; i < 32; i++) job.persistAdd('n', key('min'), i % 2 === 0 ? -1 : -1n);
    const flushed = await job.flush();
    expect(flushed.isErr()).toBe(true);
    expect(counter(unwrap(await job.get('n', key('max'))))).toBe(INT64_MAX);
    expect(counter(unwrap(await job.get('n', key('min'))))).toBe(INT64_MIN);
    expect(failed.reduce((n, e) => n + e.count, 0)).toBe(44);
    expect(failed.every((e) => e.error.kind === 'Overflow')).toBe(true);
    // Back from the edge in both directions, in a run.
    for (let i = 0; i < 32; i++) job.persistAdd('n', key('max'), -1);
    for (let i = 0; i < 32; i++) job.persistAdd('n', key('min'), 1);
    unwrap(await job.flush());
    expect(counter(unwrap(await job.get('n', key('max'))))).toBe(INT64_MAX - 32n);
    expect(counter(unwrap(await job.get('n', key('min'))))).toBe(INT64_MIN + 32n);
    await p.close();
  });

  it("reports each add's new value to a watcher, in a run and alone, with reads between", async () => {
    const { p, job } = await open();
    const feed = job.watch('n', prefixRange(key()));
    const k = key('w');
    for (let i = 0; i < 40; i++) job.persistAdd('n', k, 1);
    const mid = job.get('n', k); // read-your-writes in the same turn
    job.persistAdd('n', k, 1);
    expect(counter(unwrap(await mid))).toBe(40n);
    unwrap(await job.flush());
    const seen: bigint[] = [];
    for await (const changes of feed) {
      for (const c of changes as Change[]) if ('payload' in c) seen.push(counter(c.payload) ?? -1n);
      if (seen.length >= 41) break;
    }
    expect(seen).toEqual(Array.from({ length: 41 }, (_, i) => BigInt(i + 1)));
    await p.close();
  });

  it('adds keep a live counter its expiry and count an expired one as 0', async () => {
    const clock = testClock();
    const { p, job } = await open({ clock: clock.now });
    const k = key('e');
    job.persistPut('n', k, toPayload(i64(100n)), { expireInMs: 1000 });
    for (let i = 0; i < 40; i++) job.persistAdd('n', k, 1); // runs fall back to SQL
    expect(counter(unwrap(await job.get('n', k)))).toBe(140n);
    clock.advance(1000);
    expect(unwrap(await job.get('n', k))).toBeUndefined(); // the expiry was kept
    for (let i = 0; i < 40; i++) job.persistAdd('n', k, 2); // from 0, without expiry
    expect(counter(unwrap(await job.get('n', k)))).toBe(80n);
    clock.advance(10_000_000);
    for (let i = 0; i < 40; i++) job.persistAdd('n', k, 1);
    expect(counter(unwrap(await job.get('n', k)))).toBe(120n);
    // A cached counter given an expiry by a put, then adds, then the expiry passes.
    job.persistPut('n', k, toPayload(i64(5n)), { expireInMs: 10 });
    for (let i = 0; i < 33; i++) job.persistAdd('n', k, 1);
    expect(counter(unwrap(await job.get('n', k)))).toBe(38n);
    clock.advance(10);
    job.persistAdd('n', k, 1);
    expect(counter(unwrap(await job.get('n', k)))).toBe(1n);
    await p.close();
  });
});

describe.each(ROOT_MODES)(
  'review 16: a commit failing before the migration (%s)',
  (_name, memory, options) => {
    it('reports only the writes before the migration, not those after it in the same frame', async () => {
      const clock = testClock();
      const p = unwrap(
        Persistency.open(memory ? ':memory:' : tempDir(), { ...options, clock: clock.now }),
      );
      const failed = failures(p);
      const job = unwrap(await p.openJob('j'));
      unwrap(await job.flush());
      injectFault(job, 'commit');
      job.persistPut('c', key('a'), payload('A')); // lost with the commit that fails
      job.persistPut('c', key('b'), payload('B'), { expireInMs: 60_000 }); // needs the migration
      job.persistPut('c', key('c'), payload('C')); // after the migration: stored
      job.persistAdd('c', key('n'), 5); // likewise
      const flushed = await job.flush();
      const stored = {
        a: unwrap(await job.exists('c', key('a'))),
        b: unwrap(await job.exists('c', key('b'))),
        c: unwrap(await job.exists('c', key('c'))),
        n: counter(unwrap(await job.get('c', key('n')))),
      };
      const reported = failed.flatMap((e) => e.ops.map((o) => hex((o as { key: Key }).key)));
      // Every write is either stored or reported, never both.
      expect({ stored, reported, count: flushed.isErr() ? flushed.error.count : 0 }).toEqual({
        stored: { a: false, b: true, c: true, n: 5n },
        reported: [hex(key('a'))],
        count: 1,
      });
      await p.close();
    });
  },
);

describe('review 16: the counter cache (unit)', () => {
  /** A backend with no rows that counts how often a counter's row is read. */
  function fakeBackend(): { backend: KvBackend; reads: () => number } {
    let reads = 0;
    const backend = {
      counterRow: () => {
        reads++;
        return undefined;
      },
    } as unknown as KvBackend;
    return { backend, reads: () => reads };
  }

  const ONE = toPayload(i64(1n));
  const cat = new TextEncoder().encode('n');

  it('stays bounded (4096 counters) when every add comes in a run', () => {
    const { backend, reads } = fakeBackend();
    const counters = new Counters(backend);
    const keys = Array.from({ length: 10_000 }, (_, i) => keyBytes(key(i)));
    for (let i = 0; i < keys.length; i += 32) {
      for (let j = i; j < i + 32 && j < keys.length; j++)
        counters.sum(cat, keys[j] as Uint8Array, ONE, true);
      counters.settle(true);
    }
    expect(reads()).toBe(10_000);
    // Had the cache kept its bound, the first counter would be read again.
    counters.sum(cat, keys[0] as Uint8Array, ONE, true);
    counters.settle(true);
    expect(reads()).toBe(10_001);
  });
});
