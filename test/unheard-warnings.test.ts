/*
 * The warning for write failures nobody heard remembers when it last warned each job, to
 * warn at most once a second per job; those memories are pruned once past that second
 * (found by a review: string-id writes to 500,000 ids not open grew the heap by 43 MiB,
 * a memory per id kept for ever). Time is injected.
 */
import { afterEach, expect, it, vi } from 'vitest';
import { UNHEARD_WARNING_MS, UnheardFailures } from '../src/warnings.js';

afterEach(() => {
  vi.restoreAllMocks();
});

it('forgets the jobs it warned of more than the interval ago, and still waits for the rest', () => {
  const warned = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
  let now = 0;
  const unheard = new UnheardFailures(() => now);
  const error = new Error('job x is not open');
  for (let i = 0; i < 5_000; i++) unheard.add(`a${i}`, 1, error);
  expect(warned).toHaveBeenCalledTimes(5_000);
  expect(unheard.remembered).toBe(5_000); // all within the interval: each would wait

  now = UNHEARD_WARNING_MS + 1;
  for (let i = 0; i < 5_000; i++) unheard.add(`b${i}`, 1, error);
  expect(warned).toHaveBeenCalledTimes(10_000);
  expect(unheard.remembered).toBeLessThanOrEqual(5_000 + 1); // the a's are forgotten

  // A job warned of just now waits out its interval: a timer, no warning yet.
  vi.useFakeTimers();
  try {
    unheard.add('b0', 1, error);
    expect(warned).toHaveBeenCalledTimes(10_000);
    now += UNHEARD_WARNING_MS;
    vi.advanceTimersByTime(UNHEARD_WARNING_MS);
    expect(warned).toHaveBeenCalledTimes(10_001);
  } finally {
    vi.useRealTimers();
  }
});
