/*
 * The injected clock reaches a worker from its open on, not only with the first frame: a
 * backup (a message without a NOW record) as a job's first call after an open or an idle
 * release used to run the expiry sweep by the system's time, deleting rows the injected
 * clock had not expired (found by a review). The clock is behind the system's, as a test's
 * or simulation's may be.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { key, Persistency, payload } from '../src/index.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { testClock } from './support/changes.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES, ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('expiry-clock-first-');
const HOUR = 60 * 60_000;

describe.each(ROOT_MODES)('an injected clock from the open on (%s)', (_name, memory, options) => {
  it('a backup as the first call after a release sweeps nothing early', async () => {
    const clock = testClock();
    const p = unwrap(
      Persistency.open(memory ? ':memory:' : tempDir(), { ...options, clock: clock.now }),
    );
    const job = unwrap(await p.openJob('e'));
    job.persistPut('s', key('a'), payload('A'), { expireInMs: HOUR });
    unwrap(await job.flush());
    expect(await releaseIdleJobs(p)).toBe(1);
    unwrap(await job.backup(join(tempDir(), 'copy.db')));
    expect(unwrap(await job.get('s', key('a')))).toEqual(payload('A'));
    clock.advance(HOUR);
    expect(unwrap(await job.get('s', key('a')))).toBeUndefined();
    await p.close();
  });
});

describe.each(FILE_MODES)('an injected clock from the open on (%s)', (_name, _memory, options) => {
  it('a backup as the first call after a reopen sweeps nothing early', async () => {
    const clock = testClock();
    const p = unwrap(Persistency.open(tempDir(), { ...options, clock: clock.now }));
    unwrap(await p.openJob('e')).persistPut('s', key('a'), payload('A'), { expireInMs: HOUR });
    unwrap(await p.closeJob('e'));
    const job = unwrap(await p.openJob('e'));
    const dest = join(tempDir(), 'copy.db');
    unwrap(await job.backup(dest));
    expect(unwrap(await job.get('s', key('a')))).toEqual(payload('A'));
    await p.close();
    // The copy was taken before any sweep: it holds the row too.
    const q = unwrap(Persistency.open(join(dest, '..'), { clock: clock.now }));
    expect(unwrap(await unwrap(await q.openJob('copy')).get('s', key('a')))).toEqual(payload('A'));
    await q.close();
  });
});

// Found by a review: reading the clock for an open made openJob reject when it threw, and
// a reattach hang. A clock that throws is the caller's bug; the open still settles.
describe.each(FILE_MODES)('a clock that throws at an open (%s)', (_name, _memory, options) => {
  it('openJob and a reattach settle, on the system time until a frame brings the clock', async () => {
    let broken = true;
    const clock = () => {
      if (broken) throw new Error('clock broken');
      return Date.UTC(2026, 0, 1);
    };
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    const p = unwrap(Persistency.open(tempDir(), { ...options, clock }));
    const job = unwrap(await p.openJob('e'));
    broken = false;
    job.persistPut('s', key('a'), payload('A'));
    unwrap(await job.flush());
    expect(await releaseIdleJobs(p)).toBe(1);
    const got = job.get('s', key('a')); // its frame reads the clock, then the reattach does
    broken = true;
    expect(unwrap(await got)).toEqual(payload('A'));
    broken = false;
    await p.close();
    process.off('unhandledRejection', onUnhandled);
    expect(unhandled).toEqual([]);
  });
});
