/*
 * What a worker thread loads when it starts. Every module a worker imports is loaded again in
 * each worker's isolate, so per-job mode pays it once per open job: node:crypto and
 * neverthrow cost ~0.45 MiB per worker each, node:fs/promises ~0.17 (README, Performance,
 * workload 8). The worker's static imports are held to the modules it cannot do without;
 * anything else it needs now and then is reached at first use (the global `crypto`).
 */
import { createRequire } from 'node:module';
import { expect, it } from 'vitest';
import { workerFromSource } from '../src/worker/spawn.js';

const ALLOWED = [
  'better-sqlite3',
  'node:buffer',
  'node:fs',
  'node:os',
  'node:path',
  'node:util',
  'node:worker_threads',
];

/** The packages and built-in modules the worker's bundle (as the tests run it) imports. */
function workerImports(): string[] {
  const esbuild = createRequire(import.meta.url)('esbuild') as typeof import('esbuild');
  const { metafile } = esbuild.buildSync({
    entryPoints: [workerFromSource()],
    bundle: true,
    platform: 'node',
    format: 'esm',
    packages: 'external',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const external = Object.values(metafile.outputs).flatMap((o) =>
    o.imports.filter((i) => i.external && i.kind === 'import-statement').map((i) => i.path),
  );
  return [...new Set(external)].sort();
}

it('a worker imports only the modules it cannot start without', () => {
  const imports = workerImports();
  expect(imports).toContain('better-sqlite3'); // the graph was read, not an empty bundle
  expect(imports.filter((m) => !ALLOWED.includes(m))).toEqual([]);
});
