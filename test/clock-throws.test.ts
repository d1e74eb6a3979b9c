/*
 * An injected `clock` that throws (from a review, whose reproduction failed every time):
 * each turn's frame reads the clock for the worker's time, and a throw there escaped from
 * fire-and-forget puts and adds and from a watch's return(), which also left a waiting
 * next() unsettled. Now a frame goes without the time and the worker keeps the last it had:
 * no call throws or fails for the clock, nothing hangs, and a warning says so once.
 * Both threading modes, file and ':memory:' roots.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { i64, key, Persistency, payload, prefixRange, toPayload } from '../src/index.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { unwrap, useTempDirs } from './support/env.js';
import { ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-clock-throws-');

const clockWarnings: string[] = [];
const onWarning = (w: Error & { code?: string }): void => {
  if (w.code === 'PERSISTENCY_CLOCK_THREW') clockWarnings.push(w.message);
};
process.on('warning', onWarning);
afterAll(() => {
  process.off('warning', onWarning);
});

/** A clock tests move and break: `time` ms, or a throw while `broken`. */
function brokenClock() {
  const c = { time: 1_000_000, broken: false, read: () => 0 };
  c.read = () => {
    if (c.broken) throw new Error('clock unavailable');
    return c.time;
  };
  return c;
}

describe.each(ROOT_MODES)('a clock that throws (%s)', (_name, memory, options) => {
  it('no call throws or hangs, every write lands, and expiry goes by the last time', async () => {
    const clock = brokenClock();
    const p = unwrap(
      Persistency.open(memory ? ':memory:' : tempDir(), { ...options, clock: clock.read }),
    );
    try {
      const job = unwrap(await p.openJob('j'));
      job.persistPut('c', key(1), payload(1)); // the category is known from here: the fast path
      job.persistAdd('n', key(1), 1);
      job.persistPut('c', key(3), payload(3), { expireInMs: 100 });
      unwrap(await job.flush());
      const watch = job.watch('c', prefixRange(key()));
      const waiting = watch.next();
      const rows = job.iterate('c', prefixRange(key()), { pageSize: 1 });
      expect((await rows.next()).value).toMatchObject({ payload: payload(1) });

      clock.broken = true;
      clock.time += 500; // past key 3's expiry, by a clock that cannot be read
      // Stopped by another task: the next() that waited settles, done.
      await watch.return?.();
      expect(await waiting).toMatchObject({ done: true });
      job.persistPut('c', key(2), payload(2));
      job.persistAdd('n', key(1), 1);
      job.persistDelete('c', key(1));
      expect(unwrap(await job.get('c', key(2)))).toEqual(payload(2));
      // The worker still goes by the last time it was given: key 3 has not expired.
      expect(unwrap(await job.get('c', key(3)))).toEqual(payload(3));
      await rows.return?.();
      unwrap(await job.flush());
      // A put that needs the clock for its expiry is the one write that fails, reported.
      const failed: string[] = [];
      p.events.on('writeFailed', (e) => failed.push(`${e.reason} ${e.error.message}`));
      expect(() => job.persistPut('c', key(4), payload(4), { expireInMs: 10 })).not.toThrow();
      const flushed = await job.flush();
      expect(flushed.isErr() && flushed.error).toMatchObject({ kind: 'WriteFailed', count: 1 });
      expect(failed).toEqual([expect.stringContaining('clock unavailable')]);

      clock.broken = false;
      expect(unwrap(await job.get('c', key(3)))).toBeUndefined(); // the clock's time again
      expect(unwrap(await job.get('c', key(1)))).toBeUndefined();
      expect(unwrap(await job.get('c', key(4)))).toBeUndefined();
      expect(unwrap(await job.get('n', key(1)))).toEqual(toPayload(i64(2)));
      // The iterator and the watch let go of the job: it can be released.
      expect(await releaseIdleJobs(p)).toBe(1);
    } finally {
      clock.broken = false;
      expect((await p.close()).isOk()).toBe(true);
    }
  });
});

it('said the clock threw once, as a PersistencyWarning', async () => {
  await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on a later tick
  expect(clockWarnings).toHaveLength(1);
  expect(clockWarnings[0]).toMatch(/clock option threw \(Error: clock unavailable\)/);
});
