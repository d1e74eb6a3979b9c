/*
 * What a worker thread loads when it starts. Every module a worker imports is loaded again in
 * each worker's isolate, so per-job mode pays it once per open job: node:crypto and
 * neverthrow cost ~0.45 MiB per worker each, node:fs/promises ~0.17 (README, Performance,
 * workload 8). The worker's static imports are held to the modules it cannot do without.
 */
import { builtinModules, createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const ALLOWED = [
  'better-sqlite3',
  'node:buffer',
  'node:fs',
  'node:os',
  'node:path',
  'node:util',
  'node:worker_threads',
];

/**
 * The packages and built-in modules that the modules a worker loads import, each module read
 * whole (the built package loads every module in full: an import used only by a main-thread
 * function in a shared module is still loaded by each worker), dynamic imports left out.
 */
function workerImports(): string[] {
  const esbuild = createRequire(import.meta.url)('esbuild') as typeof import('esbuild');
  const { metafile } = esbuild.buildSync({
    entryPoints: [fileURLToPath(new URL('../src/worker/main.ts', import.meta.url))],
    metafile: true,
    write: false,
    bundle: true,
    platform: 'node',
    packages: 'external',
    logLevel: 'silent',
  });
  const external = Object.values(metafile.inputs).flatMap((input) =>
    input.imports.filter((i) => i.external && i.kind !== 'dynamic-import').map((i) => i.path),
  );
  const named = external.map((m) => (builtinModules.includes(m) ? `node:${m}` : m)); // 'fs' = 'node:fs'
  return [...new Set(named)].sort();
}

it('a worker imports only the modules it cannot start without', () => {
  const imports = workerImports();
  expect(imports).toContain('better-sqlite3'); // the graph was read, not an empty bundle
  expect(imports.filter((m) => !ALLOWED.includes(m))).toEqual([]);
});
