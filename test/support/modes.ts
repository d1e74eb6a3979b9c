/*
 * The four ways a capability must work (CONTRACT.md section 6): a file root or `:memory:`,
 * each with a thread per job and with a pool of 2 threads; and what an async iterator
 * (an iterator, a watch) rejects with.
 */
import type { PersistencyError, PersistencyOptions } from '../../src/index.js';

/** [name, a `:memory:` root, options]: for `describe.each`. */
export const ROOT_MODES: readonly [string, boolean, PersistencyOptions][] = [
  ['file, per-job', false, { workerThreads: 'per-job' }],
  ['file, 2 threads', false, { workerThreads: 2 }],
  [':memory:, per-job', true, { workerThreads: 'per-job' }],
  [':memory:, 2 threads', true, { workerThreads: 2 }],
];

/** The file-root modes of ROOT_MODES. */
export const FILE_MODES = ROOT_MODES.filter(([, memory]) => !memory);

/** What next() rejects with, once the values before it are read; fails if it never rejects. */
export async function rejection<T>(it: AsyncIterator<T>): Promise<PersistencyError> {
  for (;;) {
    let r: IteratorResult<T>;
    try {
      r = await it.next();
    } catch (e) {
      return e as PersistencyError;
    }
    if (r.done === true) throw new Error('the iterator ended without rejecting');
  }
}
