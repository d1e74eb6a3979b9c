/*
 * Job id → file name. Any well-formed string id maps to exactly one file name and back:
 * bytes outside [A-Za-z0-9_-] are written as %XX (UTF-8), so a name never holds a path
 * separator, a dot, NUL, ':' or '?', and can never be '.', '..', absolute, or read by
 * SQLite as a URI. Windows device names (CON, NUL, COM1, …) get their first letter escaped
 * too. Ids are case-sensitive.
 */
import { join } from 'node:path';
import { invalidArgument, type PersistencyError } from './errors.js';
import { describe } from './keys.js';

/** Longest encoded stem: leaves room for `.db-wal` within the usual 255-byte name limit. */
export const MAX_STEM_BYTES = 240;
export const DB_SUFFIX = '.db';
/** Files SQLite may keep beside the database. */
export const SIDECAR_SUFFIXES = ['-wal', '-shm', '-journal'] as const;

const SAFE = /^[A-Za-z0-9_-]$/;
const WINDOWS_DEVICE = /^(?:CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])$/i;
const utf8 = new TextEncoder();

/** Validate a job id and return its file stem, or the reason it cannot be stored. */
export function jobFileStem(
  id: unknown,
): { ok: true; stem: string } | { ok: false; error: PersistencyError } {
  if (typeof id !== 'string') {
    return { ok: false, error: invalidArgument(`job id must be a string, got ${describe(id)}`) };
  }
  if (id.length === 0) return { ok: false, error: invalidArgument('job id is empty') };
  if (id.length > MAX_STEM_BYTES) {
    return {
      ok: false,
      error: invalidArgument(
        `job id of ${id.length} characters is too long (its file name may hold ${MAX_STEM_BYTES} bytes)`,
      ),
    };
  }
  if (!id.isWellFormed()) {
    return { ok: false, error: invalidArgument('job id has a lone surrogate') };
  }
  let stem = '';
  for (const ch of id) {
    if (SAFE.test(ch)) {
      stem += ch;
    } else {
      for (const b of utf8.encode(ch)) stem += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
    }
  }
  // Windows reads these names (with any extension) as devices: escape their first letter.
  if (WINDOWS_DEVICE.test(stem))
    stem = `%${stem.charCodeAt(0).toString(16).toUpperCase()}${stem.slice(1)}`;
  if (stem.length > MAX_STEM_BYTES) {
    return {
      ok: false,
      error: invalidArgument(
        `job id encodes to a ${stem.length}-byte file name; at most ${MAX_STEM_BYTES} bytes fit`,
      ),
    };
  }
  return { ok: true, stem };
}

/** The job id a file stem was made from, or undefined if it is not one of ours. */
export function jobIdFromStem(stem: string): string | undefined {
  if (!/^(?:[A-Za-z0-9_-]|%[0-9A-F]{2})+$/.test(stem)) return undefined;
  try {
    const id = decodeURIComponent(stem);
    const back = jobFileStem(id);
    return back.ok && back.stem === stem ? id : undefined;
  } catch {
    return undefined;
  }
}

/** Absolute path of a job's database file. */
export function jobDbPath(rootDir: string, stem: string): string {
  return join(rootDir, stem + DB_SUFFIX);
}
