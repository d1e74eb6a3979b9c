/*
 * Where the worker's code comes from. From the built package (`dist/`), the worker is
 * the compiled `main.js` beside this file. From the TypeScript sources (vitest, tsx), a
 * worker thread has no TypeScript loader, so `main.ts` is bundled once per process with
 * esbuild (a dev dependency) into `node_modules/.cache/persistency/`, named by a hash of
 * its content, and the worker runs that.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { PollSettings } from '../protocol/messages.js';

let compiledFromSource: string | undefined;

function workerFromSource(): string {
  if (compiledFromSource !== undefined) return compiledFromSource;
  const entry = fileURLToPath(new URL('./main.ts', import.meta.url));
  const packageRoot = fileURLToPath(new URL('../../', import.meta.url));
  const require = createRequire(import.meta.url);
  const esbuild = require('esbuild') as typeof import('esbuild');
  const out = esbuild.buildSync({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    write: false,
    sourcemap: 'inline',
    logLevel: 'silent',
    outfile: 'worker.mjs',
  });
  const code = out.outputFiles[0]?.contents;
  if (code === undefined) throw new Error('esbuild produced no worker bundle');
  const hash = createHash('sha256').update(code).digest('hex').slice(0, 16);
  const dir = `${packageRoot}node_modules/.cache/persistency`;
  const file = `${dir}/worker-${hash}.mjs`;
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    // Parallel test processes may build the same file: write aside, then rename atomically.
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    writeFileSync(tmp, code);
    renameSync(tmp, file);
  }
  compiledFromSource = file;
  return file;
}

/**
 * Start a worker thread. It loads its modules and then waits for an `open` message naming
 * its job, so a worker can be started before it is needed.
 */
export function spawnWorker(): Worker {
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = fromSource ? workerFromSource() : new URL('./main.js', import.meta.url);
  // execArgv: [] — the worker's code needs no loader; inheriting one (tsx passes
  // `--import tsx`) would make every worker start compile TypeScript again.
  return new Worker(entry, { execArgv: [], stdout: false, stderr: false });
}

/**
 * How many workers started by this copy of the module are polling now (see `PollSettings`).
 * Another thread that loads the library has its own count: isolates share no memory that
 * was not handed to them.
 */
let pollSlots: SharedArrayBuffer | undefined;

/**
 * Poll settings for a new worker: `micros` from the options, the count shared by every worker
 * this module starts. At most one fewer worker than there are cores polls at once, so a core
 * is left for the main thread; with one core, none does (undefined: polling off).
 */
export function pollSettings(micros: number): PollSettings | undefined {
  const max = availableParallelism() - 1;
  if (micros <= 0 || max <= 0) return undefined;
  pollSlots ??= new SharedArrayBuffer(4);
  return { micros, slots: pollSlots, max };
}
