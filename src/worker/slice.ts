/*
 * Turns on a shared thread. Jobs that share a worker thread take turns: a job's work pauses
 * at the next point where it can stop (between records, scan pages, slices of a batch's
 * ops) once it has had the thread for `ms`, and goes on after the thread's other jobs have
 * had theirs. A job with a thread to itself never pauses.
 */

/**
 * Why a job's work paused: `slice` to let other jobs run (it goes on at the next turn of
 * the event loop), `wait` for a lock held elsewhere (it tries again a little later).
 */
export type Pause = 'slice' | 'wait';

/** Rows a range delete or a count on a shared thread takes between turn checks. */
export const RANGE_CHUNK = 4096;

export class SliceClock {
  readonly shared: boolean;
  readonly #ms: number;
  #until = 0;

  /** `ms`: the length of a turn; undefined when the job has its thread to itself. */
  constructor(ms: number | undefined) {
    this.shared = ms !== undefined;
    this.#ms = ms ?? 0;
  }

  /** A turn begins. */
  start(): void {
    if (this.shared) this.#until = performance.now() + this.#ms;
  }

  /** Whether the turn is used up (always false on a thread of one's own). */
  due(): boolean {
    return this.shared && performance.now() >= this.#until;
  }
}
