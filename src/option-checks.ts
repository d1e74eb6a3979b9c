/*
 * The checks of a Persistency's options and root: each returns the normalised value or an
 * InvalidArgument `Err` with the user-facing message (job call arguments: src/checks.ts).
 */
import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { err, ok, type Result } from 'neverthrow';
import { MEMORY_ROOT } from './checks.js';
import { invalidArgument, type PersistencyError } from './errors.js';
import { describe } from './keys.js';
import { SQLITE_MAX_LENGTH } from './limits.js';
import type { PersistencyOptions } from './types.js';

/** The largest `pollMicros` accepted (one second). */
const MAX_POLL_MICROS = 1_000_000;
/** The most worker threads `workerThreads: N` may ask for. */
const MAX_WORKER_THREADS = 256;
/** Every option with its default (README, API). */
export const DEFAULTS: Required<PersistencyOptions> = {
  busyTimeoutMs: 5000,
  journalSizeLimitBytes: 64 * 1024 * 1024,
  openTimeoutMs: 30_000,
  maxPayloadBytes: SQLITE_MAX_LENGTH - 1024,
  maxJobBytes: 0,
  verifyOnOpen: false,
  prestartWorker: true,
  pollMicros: 100,
  workerThreads: 'per-job',
  idleCloseMs: 60_000,
  maxResidentJobs: 0,
  sliceMs: 2,
  iteratorIdleMs: 60_000,
  clock: Date.now,
};

/** Check a Persistency's options and fill in the defaults. */
export function checkOptions(
  options: unknown,
): Result<Required<PersistencyOptions>, PersistencyError> {
  if (options === undefined) return ok(DEFAULTS);
  if (options === null || typeof options !== 'object') {
    return err(invalidArgument(`Persistency options must be an object, got ${describe(options)}`));
  }
  const out: Record<string, unknown> = { ...DEFAULTS };
  for (const [name, value] of Object.entries(options)) {
    if (!(name in DEFAULTS)) {
      return err(invalidArgument(`unknown Persistency option ${JSON.stringify(name)}`));
    }
    if (value === undefined) continue;
    const problem = optionProblem(name as keyof PersistencyOptions, value);
    if (problem !== undefined) {
      return err(invalidArgument(`Persistency option ${name} ${problem}, got ${describe(value)}`));
    }
    out[name] = value;
  }
  return ok(out as unknown as Required<PersistencyOptions>);
}

/** What is wrong with one option's value, or undefined. */
function optionProblem(name: keyof PersistencyOptions, value: unknown): string | undefined {
  const natural = typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
  switch (name) {
    case 'clock':
      return typeof value === 'function'
        ? undefined
        : 'must be a function returning ms since the epoch';
    case 'verifyOnOpen':
    case 'prestartWorker':
      return typeof value === 'boolean' ? undefined : 'must be a boolean';
    case 'workerThreads':
      if (value === 'per-job') return undefined;
      return natural && value >= 1 && value <= MAX_WORKER_THREADS
        ? undefined
        : `must be 'per-job' or an integer from 1 to ${MAX_WORKER_THREADS}`;
    case 'pollMicros':
      return natural && value <= MAX_POLL_MICROS
        ? undefined
        : `must be a non-negative integer of at most ${MAX_POLL_MICROS} (one second)`;
    case 'maxPayloadBytes':
      return natural && value <= SQLITE_MAX_LENGTH
        ? undefined
        : `must be a non-negative integer within SQLite's limit of ${SQLITE_MAX_LENGTH} bytes`;
    case 'sliceMs':
      return natural && value >= 1 ? undefined : 'must be a positive integer';
    default:
      return natural ? undefined : 'must be a non-negative integer';
  }
}

/** Validate a root without touching the disk beyond `stat`. */
export function checkRoot(rootDir: unknown): Result<string, PersistencyError> {
  if (typeof rootDir !== 'string')
    return err(invalidArgument(`rootDir must be a string, got ${describe(rootDir)}`));
  if (rootDir.length === 0) return err(invalidArgument('rootDir is empty'));
  if (rootDir === MEMORY_ROOT) return ok(MEMORY_ROOT);
  if (rootDir.includes('\0')) return err(invalidArgument('rootDir contains a NUL byte'));
  const abs = resolve(rootDir);
  let probe = abs;
  for (;;) {
    let isDir: boolean | undefined;
    try {
      isDir = statSync(probe).isDirectory();
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== 'ENOENT') {
        if (code === 'ENOTDIR')
          return err(invalidArgument(`rootDir ${abs}: a parent of it is not a directory`));
        return err(
          invalidArgument(`rootDir ${abs}: cannot inspect ${probe} (${code ?? String(e)})`, e),
        );
      }
    }
    if (isDir === true) return ok(abs);
    if (isDir === false) {
      return err(
        invalidArgument(
          probe === abs
            ? `rootDir ${abs} exists and is not a directory`
            : `rootDir ${abs}: ${probe} is not a directory`,
        ),
      );
    }
    const parent = dirname(probe);
    if (parent === probe) return ok(abs);
    probe = parent;
  }
}
