/*
 * Setup of the `pool` test project: the shared suites (contract, model, fuzz, faults, crash
 * loop, ...) run again with every Persistency serving its jobs from a pool of 2 worker
 * threads. `Persistency.instance` gets `workerThreads: 2` whenever the test gives no
 * threading mode of its own; child processes (the crash writer) are told through the
 * environment.
 */
import { Persistency, type PersistencyOptions } from '../../src/index.js';

export const POOL_THREADS = 2;
process.env.PERSISTENCY_TEST_WORKER_THREADS = String(POOL_THREADS);

const instance = Persistency.instance.bind(Persistency);

/** A plain data object (no getters, no proxy tricks) that can be copied without side effects. */
function plainData(o: unknown): o is Record<string, unknown> {
  try {
    if (o === null || typeof o !== 'object' || Object.getPrototypeOf(o) !== Object.prototype)
      return false;
    return Object.values(Object.getOwnPropertyDescriptors(o)).every((d) => 'value' in d);
  } catch {
    return false; // a revoked proxy: the library itself must refuse it
  }
}

Object.defineProperty(Persistency, 'instance', {
  configurable: true,
  writable: true,
  value: (rootDir?: string, options?: PersistencyOptions) => {
    if (rootDir === undefined && options === undefined) return instance();
    if (options === undefined) return instance(rootDir, { workerThreads: POOL_THREADS });
    if (plainData(options) && !('workerThreads' in options))
      return instance(rootDir, { workerThreads: POOL_THREADS, ...options });
    return instance(rootDir, options);
  },
});
