/*
 * Small helpers the benchmarks share: medians, Result unwrapping, a turn of the event
 * loop, and the commit a run measured.
 */
import { execFileSync } from 'node:child_process';
import type { Result } from 'neverthrow';
import type { PersistencyError } from '../src/index.js';
import { repoRoot } from './peers-node.js';

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** The Ok value, or a thrown Error naming `what`. */
export function unwrap<T>(r: Result<T, PersistencyError>, what: string): T {
  if (r.isOk()) return r.value;
  throw new Error(`${what}: ${r.error.kind}: ${r.error.message}`);
}

export const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** HEAD's short id, marked when src/ has uncommitted changes. */
export function gitCommit(): string {
  try {
    const opts = { cwd: repoRoot(), encoding: 'utf8' as const };
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], opts).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], opts).trim();
    return dirty === '' ? head : `${head} + uncommitted changes in src/`;
  } catch {
    return 'unknown';
  }
}
