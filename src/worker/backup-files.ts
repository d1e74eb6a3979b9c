/*
 * The files of a backup, for `job.backup` (src/worker/backups.ts) and the CLI's `backup`
 * alike: the copy is written under a name of its own beside the destination and given the
 * destination's name only once it is whole and durable, never replacing a file there. A
 * process killed midway leaves that side file, never a partial copy at the destination
 * (which would open as a job missing rows).
 */
import {
  close,
  closeSync,
  fsync,
  fsyncSync,
  linkSync,
  mkdirSync,
  open,
  openSync,
  rmSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { backupSideOf, SIDECAR_SUFFIXES, takenBackupName } from '../paths.js';
import { type ErrorInfo, toErrorInfo } from '../protocol/messages.js';

/**
 * Where a backup to `dest` writes its copy: refused (why), or `partial`, a name of its own
 * beside dest, with dest's folder made. A folder made stays if the backup fails: another
 * backup may be about to write its copy there.
 */
export type CopyPlace =
  | { readonly refused: ErrorInfo }
  | { readonly refused?: undefined; readonly partial: string };

export function placeCopy(dest: string): CopyPlace {
  const sideOf = backupSideOf(dest);
  if (sideOf !== undefined) return { refused: sideFileName(dest, sideOf) };
  const taken = takenBackupName(dest);
  if (taken !== undefined) return { refused: destinationTaken(taken) };
  try {
    mkdirSync(dirname(dest), { recursive: true });
    return { partial: copyNameFor(dest) };
  } catch (e) {
    return { refused: toErrorInfo(e, `backup: cannot make the folder of ${dest}`) };
  }
}

function sideFileName(dest: string, database: string): ErrorInfo {
  return {
    kind: 'InvalidArgument',
    message: `backup: ${dest} is the name of a side file of ${database} (SQLite reads a database's -wal, -shm and -journal as part of it, and a job's .db-new is removed when it opens or is dropped), so the copy would not last there; choose another name`,
    code: 'EINVAL',
  };
}

function destinationTaken(file: string): ErrorInfo {
  return {
    kind: 'InvalidArgument',
    message: `backup: ${file} already exists; a backup never replaces a file`,
    code: 'EEXIST',
  };
}

/**
 * The name the copy for `dest` is written under: a short one of its own in the same folder
 * (a dot: never a job file), whatever the length of dest's; unique, not secret (node:crypto
 * would cost every worker, and the global `crypto` can be switched off).
 */
function copyNameFor(dest: string): string {
  const random = Math.random().toString(16).slice(2, 14).padEnd(12, '0');
  return join(dirname(dest), `.backup-${random}`);
}

/**
 * Give the finished, synced copy at `partial` the name `dest`; throws an ErrorInfo
 * (`EEXIST`) if a file appeared there meanwhile, which is never replaced.
 */
export function nameCopy(partial: string, dest: string): void {
  try {
    linkSync(partial, dest);
  } catch (e) {
    if ((e as { code?: unknown }).code !== 'EEXIST') throw e;
    throw destinationTaken(dest);
  }
  removeCopy(partial); // the copy stays, under dest's name
  syncFolder(dest);
}

/**
 * fsync `path` off the worker's thread. Callbacks rather than node:fs/promises, a module
 * of its own that every worker would load.
 */
export function syncPath(path: string, flags: string): Promise<void> {
  return new Promise((resolve, reject) => {
    open(path, flags, (openError, fd) => {
      if (openError !== null) return reject(openError);
      fsync(fd, (syncError) =>
        close(fd, (closeError) => {
          const error = syncError ?? closeError;
          if (error !== null) reject(error);
          else resolve();
        }),
      );
    });
  });
}

/** fsync `path`, opened with `flags` (`r+` for a file, `r` for a folder), on this thread. */
export function syncPathNow(path: string, flags: string): void {
  const fd = openSync(path, flags);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Make the new name in `file`'s folder durable. */
function syncFolder(file: string): void {
  try {
    syncPathNow(dirname(file), 'r');
  } catch {
    // A folder that cannot be synced (some file systems refuse) leaves the copy there all the same.
  }
}

/** Remove a copy that will not be finished, and what SQLite left beside it; never throws. */
export function removeCopy(partial: string): void {
  for (const file of [partial, ...SIDECAR_SUFFIXES.map((s) => partial + s)]) {
    try {
      rmSync(file, { force: true });
    } catch {
      // Nothing more can be done for it; the backup's outcome is reported all the same.
    }
  }
}
