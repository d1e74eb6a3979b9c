import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

/** The suites every threading mode must pass (CONTRACT.md §6): run again on a thread pool. */
const SHARED_SUITES = [
  'test/contract.test.ts',
  'test/model.test.ts',
  'test/fuzz.test.ts',
  'test/faults.test.ts',
  'test/crash-loop.test.ts',
  'test/durability.test.ts',
  'test/group-commit.test.ts',
  'test/get-many.test.ts',
  'test/load.test.ts',
];

export default defineConfig({
  test: {
    // Two files at a time even on two cores (vitest's default there is one): the suites wait
    // on fsyncs, thread starts and child processes more than they compute.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The JSON report lets .ci/run print a plain "N passed, N failed" closing line.
    reporters: ['default', ['json', { outputFile: 'node_modules/.cache/vitest/results.json' }]],
    projects: [
      { extends: true, test: { name: 'per-job', include: ['test/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'pool',
          include: SHARED_SUITES,
          setupFiles: ['test/support/pool-mode.ts'],
        },
      },
    ],
  },
});
