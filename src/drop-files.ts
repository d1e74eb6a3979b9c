/*
 * Deleting a dropped job's files (`dropJob`): the database, every sidecar, a new file's side
 * file left by a crash and a 0.1-named file, only while this owner holds the root's lock,
 * so a job another process or instance uses is never deleted.
 */
import { lstatSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { err, ok, type Result } from 'neverthrow';
import { codeOf, PersistencyError } from './errors.js';
import {
  jobDbPath,
  legacyJobDbPath,
  NEW_FILE_SUFFIX,
  SIDECAR_SUFFIXES,
  unsafeJobFile,
} from './paths.js';
import { fromErrorInfo } from './protocol/messages.js';
import { RootLock } from './root-lock.js';

/**
 * Delete job `id`'s files (file name `stem`) in `rootDir` for `owner`. Every failure,
 * including a root that can no longer be looked at, is an `Err(Backend)`: never a throw.
 */
export async function deleteJobFiles(
  rootDir: string,
  id: string,
  stem: string,
  owner: object,
): Promise<Result<void, PersistencyError>> {
  try {
    return await deleteFiles(rootDir, id, stem, owner);
  } catch (e) {
    const message = `dropJob ${id}: ${(e as Error).message}`;
    return err(new PersistencyError('Backend', message, { cause: e, code: codeOf(e) }));
  }
}

async function deleteFiles(
  rootDir: string,
  id: string,
  stem: string,
  owner: object,
): Promise<Result<void, PersistencyError>> {
  const dbPath = jobDbPath(rootDir, stem);
  const legacy = legacyJobDbPath(rootDir, id, true);
  const unsafe =
    unsafeJobFile(dbPath) ?? (legacy === undefined ? undefined : unsafeJobFile(legacy));
  if (unsafe !== undefined) return err(fromErrorInfo(unsafe));
  const files = [dbPath, ...SIDECAR_SUFFIXES.map((s) => dbPath + s)];
  // A new file's side file, left by a crash while the job was made: a file, or nothing of ours.
  const side = dbPath + NEW_FILE_SUFFIX;
  if (lstatSync(side, { throwIfNoEntry: false })?.isFile() === true) files.push(side);
  if (legacy !== undefined) files.push(legacy, ...SIDECAR_SUFFIXES.map((s) => legacy + s));
  const lock = RootLock.of(rootDir);
  if (!files.some((f) => lstatSync(f, { throwIfNoEntry: false }) !== undefined)) {
    // Nothing to delete, so nothing is: a job another owner is making meanwhile keeps its
    // new file. Only an instance of this thread that holds the job can be told apart here.
    const held = lock.heldByAnother(dbPath, owner);
    return held === undefined ? ok(undefined) : err(held);
  }
  // Own the root first: never delete a job another process or instance may be using.
  const owned = lock.acquire(dbPath, owner);
  if (owned.isErr()) return err(owned.error);
  try {
    for (const f of files) await rm(f, { force: true });
  } finally {
    owned.value.release();
  }
  return ok(undefined);
}
