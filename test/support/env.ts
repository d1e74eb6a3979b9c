// Shared test plumbing: temporary roots that are cleaned up, the singleton reset between
// tests, and Result helpers with readable failures.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Result } from 'neverthrow';
import { afterAll, afterEach } from 'vitest';
import { Persistency, type PersistencyError } from '../../src/index.js';

/**
 * Register the hooks a file of job tests needs — `Persistency.reset()` after each test, the
 * temporary directories removed after the file — and return a maker of fresh directories.
 */
export function useTempDirs(prefix: string): () => string {
  const dirs: string[] = [];
  afterEach(async () => {
    await Persistency.reset();
  });
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };
}

/** The Ok value, or a thrown Error naming the Err's kind and message. */
export function unwrap<T>(r: Result<T, PersistencyError>): T {
  if (r.isErr()) throw new Error(`expected Ok, got Err(${r.error.kind}): ${r.error.message}`);
  return r.value;
}

/** Resolves 'hung' if `promise` has not settled within `ms` (a hang detector, not a sync). */
export function orHang<T>(promise: PromiseLike<T>, ms: number): Promise<T | 'hung'> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<'hung'>((resolve) => {
    timer = setTimeout(() => resolve('hung'), ms);
  });
  return Promise.race([promise, hung]).finally(() => clearTimeout(timer));
}
