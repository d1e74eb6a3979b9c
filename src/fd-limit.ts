/*
 * Telling "out of file descriptors" apart. SQLite reports only "unable to open", and a
 * thread that cannot start fails to load its modules; the cause is asked of the OS instead.
 */
import { closeSync, openSync } from 'node:fs';
import { PersistencyError } from './errors.js';

/**
 * Whether the process is (nearly) out of descriptors. A failed open has closed what it had
 * opened before failing (a job takes up to 3), so a few are tried, then given back.
 */
export function outOfFileDescriptors(): boolean {
  const fds: number[] = [];
  try {
    for (let i = 0; i < 8; i++) fds.push(openSync('/dev/null', 'r'));
    return false;
  } catch (e) {
    const code = (e as { code?: string }).code;
    return code === 'EMFILE' || code === 'ENFILE';
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

/** Codes that say what went wrong themselves: never relabelled EMFILE, however short of descriptors. */
const DEFINITE = new Set([
  'ENOENT',
  'ESTALE',
  'ELOOP',
  'EMLINK',
  'SQLITE_CORRUPT',
  'SQLITE_NOTADB',
  'SQLITE_FULL',
  'SQLITE_READONLY',
  'SCHEMA_TOO_NEW',
]);

/** `error` as the EMFILE it stands for when the process is out of descriptors. */
export function explainFdExhaustion(error: PersistencyError): PersistencyError {
  if (error.code === 'EMFILE' || error.kind !== 'Backend') return error;
  if (error.code !== undefined && DEFINITE.has(error.code)) return error;
  // The OS said so in the message (a thread that could not load its code), or says so now.
  if (!/\bE[MN]FILE\b/.test(error.message) && !outOfFileDescriptors()) return error;
  return new PersistencyError(
    'Backend',
    `${error.message} (the process has no file descriptor left: close jobs, lower idleCloseMs or maxResidentJobs, or raise ulimit -n)`,
    { code: 'EMFILE', cause: error },
  );
}
