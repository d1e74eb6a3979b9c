/*
 * Reading the injected `clock` option, in one place: a clock is the caller's code, so
 * what it throws must not escape from the call that read it.
 */
import { warnClockThrew } from './warnings.js';

/**
 * An injected clock's time for a job's open (undefined for the system clock), a number as
 * a frame's NOW record takes it. A clock that throws leaves the job on the system's time
 * until its first frame: an open never rejects.
 */
export function clockAtOpen(clock: () => number): number | undefined {
  return clock === Date.now ? undefined : clockTime(clock);
}

/**
 * An injected clock's time, or undefined when it throws: a frame then carries no time and
 * the worker goes on by the last it had, so no call fails or throws for the clock (a
 * warning says so, once per process).
 */
export function clockTime(clock: () => number): number | undefined {
  try {
    return Number(clock());
  } catch (e) {
    warnClockThrew(e);
    return undefined;
  }
}
