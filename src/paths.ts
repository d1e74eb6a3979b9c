/*
 * Job id → file name. Any well-formed string id maps to exactly one file name and back:
 * bytes outside [a-z0-9_-] are written as %XX (UTF-8, upper-case hex), so a name never
 * holds a path separator, a dot, NUL, ':' or '?', and can never be '.', '..', absolute, or
 * read by SQLite as a URI. Ids are case-sensitive and names stay distinct where file names
 * are not (macOS, Windows): upper-case letters are escaped too, so 'A' is `%41.db` and 'a'
 * is `a.db`. Windows device names (CON, NUL, COM1, …) get their first letter escaped.
 *
 * Version 0.1 kept upper-case letters as they were; such a file (`Alice.db`) is still
 * found, and renamed to its new name when its job is opened. And a job's files are the
 * root's own regular files: a link, directory, device or pipe in their place is refused.
 */
import { lstatSync, readdirSync, realpathSync, renameSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { invalidArgument, type PersistencyError } from './errors.js';
import { describe } from './keys.js';

/** Longest encoded stem: leaves room for `.db-wal` within the usual 255-byte name limit. */
export const MAX_STEM_BYTES = 240;
export const DB_SUFFIX = '.db';
/** Files SQLite may keep beside the database. */
export const SIDECAR_SUFFIXES = ['-wal', '-shm', '-journal'] as const;
/** A new job file on its way into place (src/worker/new-job-file.ts). */
export const NEW_FILE_SUFFIX = '-new';
/** Every file kept beside a job's database: none is ever reached through a link. */
export const JOB_SIDE_SUFFIXES = [...SIDECAR_SUFFIXES, NEW_FILE_SUFFIX] as const;

const SAFE = /^[a-z0-9_-]$/;
const SAFE_BEFORE_0_2 = /^[A-Za-z0-9_-]$/;
const WINDOWS_DEVICE = /^(?:CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])$/i;
const utf8 = new TextEncoder();

/**
 * The name of job `jobId`'s file in its root (`tenant%2F1.db` for `tenant/1`): what to call
 * a backup that is to open as the job in another root. Throws `InvalidArgument` for an id
 * no job can have, as the key codec does for a bad part.
 * @example await job.backup(join('/restore', jobFileName(job.id)))
 */
export function jobFileName(jobId: string): string {
  const file = jobFileStem(jobId);
  if (!file.ok) throw file.error;
  return `${file.stem}${DB_SUFFIX}`;
}

/** Validate a job id and return its file stem, or the reason it cannot be stored. */
export function jobFileStem(
  id: unknown,
  safe: RegExp = SAFE,
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
    if (safe.test(ch)) {
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

/** The job id a file stem (of this version, or of 0.1) was made from, or undefined. */
export function jobIdFromStem(stem: string): string | undefined {
  if (!/^(?:[A-Za-z0-9_-]|%[0-9A-F]{2})+$/.test(stem)) return undefined;
  try {
    const id = decodeURIComponent(stem);
    const back = jobFileStem(id);
    if (back.ok && back.stem === stem) return id;
    const old = jobFileStem(id, SAFE_BEFORE_0_2);
    return old.ok && old.stem === stem ? id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Job `id`'s file stem in `rootDir`: this version's, or, when that name would be too long
 * and a 0.1 file of the job is there, its 0.1 name, which the job then keeps (0.1 did not
 * escape upper-case letters, so its names can be shorter).
 */
export function jobStemIn(rootDir: string, id: unknown): ReturnType<typeof jobFileStem> {
  const now = jobFileStem(id);
  if (now.ok) return now;
  const old = jobFileStem(id, SAFE_BEFORE_0_2);
  if (!old.ok) return now;
  try {
    return anyExactlyIn(rootDir, [old.stem + DB_SUFFIX]) ? old : now;
  } catch {
    return now; // no root yet
  }
}

/**
 * Whether one of `names` is in `rootDir` under exactly that name: where names ignore case,
 * a lookup may find another job's file, so a name found is checked in the listing (read
 * only then).
 */
function anyExactlyIn(rootDir: string, names: readonly string[]): boolean {
  const there = (n: string) => lstatSync(join(rootDir, n), { throwIfNoEntry: false }) !== undefined;
  if (!names.some(there)) return false;
  const entries = new Set(readdirSync(rootDir));
  return names.some((n) => entries.has(n));
}

/**
 * The 0.1 name of job `id`'s file, if it differs from this version's and the file is there
 * (`orSidecar`: or one of its sidecars, left by a drop cut short, which a drop removes too).
 */
export function legacyJobDbPath(
  rootDir: string,
  id: string,
  orSidecar = false,
): string | undefined {
  const now = jobFileStem(id);
  const old = jobFileStem(id, SAFE_BEFORE_0_2);
  if (!now.ok || !old.ok || old.stem === now.stem) return undefined;
  const name = old.stem + DB_SUFFIX;
  const names = orSidecar ? [name, ...SIDECAR_SUFFIXES.map((s) => name + s)] : [name];
  return anyExactlyIn(rootDir, names) ? join(rootDir, name) : undefined;
}

/**
 * Give a 0.1 file of job `id` its name of this version (sidecars first, so that a crash
 * in between leaves the database where the next attempt finds it), unless no job may be
 * opened from it (unsafeJobFile: thrown, the file left at its name). Returns how to
 * give it its 0.1 name back, for an open that then refuses the file. The caller owns the
 * root and the job is not open.
 */
export function adoptLegacyJobFile(rootDir: string, id: string): (() => void) | undefined {
  const stem = jobFileStem(id);
  if (!stem.ok) return undefined;
  const to = jobDbPath(rootDir, stem.stem);
  if (lstatSync(to, { throwIfNoEntry: false }) !== undefined) return undefined;
  const from = legacyJobDbPath(rootDir, id);
  if (from === undefined) return undefined;
  const refused = unsafeJobFile(from);
  if (refused !== undefined) throw Object.assign(new Error(refused.message), refused);
  const there = (p: string) => lstatSync(p, { throwIfNoEntry: false }) !== undefined;
  for (const suffix of SIDECAR_SUFFIXES)
    if (there(from + suffix)) renameSync(from + suffix, to + suffix);
  renameSync(from, to);
  return () => {
    try {
      renameSync(to, from);
      for (const s of SIDECAR_SUFFIXES) if (there(to + s)) renameSync(to + s, from + s);
    } catch {
      // Left at this version's name, where the next open finds it all the same.
    }
  };
}

/** Why a job's files cannot be used, as an ErrorInfo (not named here: paths.ts is public). */
export interface UnsafeJobFile {
  readonly kind: 'Backend';
  readonly message: string;
  readonly code: 'ELOOP' | 'SQLITE_CANTOPEN' | 'EMLINK';
}

/**
 * Why a job's files cannot be opened or deleted: one of them (the database or a sidecar)
 * is a symbolic link, which SQLite would follow out of the root or into a foreign file, or
 * one SQLite opens is not a regular file (a directory; a device SQLite would write pages
 * into; a pipe, whose open would wait for a writer forever).
 */
export function unsafeJobFile(dbPath: string): UnsafeJobFile | undefined {
  for (const f of [dbPath, ...JOB_SIDE_SUFFIXES.map((s) => dbPath + s)]) {
    const stat = lstatSync(f, { throwIfNoEntry: false });
    if (stat === undefined) continue;
    // SQLite opens these; the side file of a new job's making is only ever replaced.
    const side = f.endsWith(NEW_FILE_SUFFIX);
    const odd = irregularFile(stat);
    if (odd !== undefined && (odd.code === 'ELOOP' || !side)) {
      const rule = odd.code === 'ELOOP' ? 'never reached through links' : 'regular files';
      const message = `${f} is ${odd.what}; a job's files are ${rule} (left as it is)`;
      return { kind: 'Backend', message, code: odd.code };
    }
    if (side) continue;
    // A second name shares the file with another job or program, whose writes (to an -shm
    // above all) would land in this job's. A crash while a new job was made leaves one.
    if (stat.nlink > 1 && !(f === dbPath && sameFile(stat, dbPath + NEW_FILE_SUFFIX))) {
      return {
        kind: 'Backend',
        message: `${f} has ${stat.nlink} names (hard links); a job's files are its own (left as it is)`,
        code: 'EMLINK',
      };
    }
  }
  return undefined;
}

/** What `lstat` tells of a file's kind (node:fs's Stats, not named: this module is public). */
interface FileKind {
  isFile(): boolean;
  isSymbolicLink(): boolean;
  isDirectory(): boolean;
}

/**
 * What a path whose `lstat` is `stat` holds when SQLite must not open it: a link (SQLite
 * would follow it) or not a regular file (a device it would write pages into, a pipe whose
 * open waits forever). Undefined for a regular file or nothing.
 */
export function irregularFile(
  stat: FileKind | undefined,
): { what: string; code: 'ELOOP' | 'SQLITE_CANTOPEN' } | undefined {
  if (stat === undefined || stat.isFile()) return undefined;
  if (stat.isSymbolicLink()) return { what: 'a symbolic link', code: 'ELOOP' };
  return {
    what: stat.isDirectory() ? 'a directory' : 'not a regular file',
    code: 'SQLITE_CANTOPEN',
  };
}

function sameFile(stat: Stats, other: string): boolean {
  const o = lstatSync(other, { throwIfNoEntry: false });
  return o !== undefined && o.ino === stat.ino && o.dev === stat.dev && stat.nlink === 2;
}

/** The name of a root's lock file (src/root-lock.ts): a dot, which no job file's name has. */
export const ROOT_LOCK_FILE = '.persistency-owner';

/** The longest database path SQLite's unix file system layer opens, measured. */
export const MAX_DB_PATH_BYTES = 504;

/**
 * Why job file `stem` cannot be opened in `rootDir`: its whole path (through any link in
 * the root's, as SQLite resolves it) is longer than SQLite opens. Checked before any file
 * is made, so such an id is refused, never half made.
 */
export function jobPathTooLong(rootDir: string, stem: string): PersistencyError | undefined {
  const root = realPathOf(rootDir);
  // The root's lock file has a longer name than a short id's file.
  for (const path of [jobDbPath(root, stem), join(root, ROOT_LOCK_FILE)]) {
    const bytes = Buffer.byteLength(path);
    if (bytes <= MAX_DB_PATH_BYTES) continue;
    return invalidArgument(
      `${path} would be a path of ${bytes} bytes; SQLite opens at most ${MAX_DB_PATH_BYTES}: use a shorter root or job id`,
    );
  }
  return undefined;
}

/** `path` with every link resolved, as far as it exists (the rest is appended as it is). */
export function realPathOf(path: string): string {
  const rest: string[] = [];
  for (let at = resolve(path); ; at = dirname(at)) {
    try {
      return join(realpathSync(at), ...rest.reverse());
    } catch {
      if (dirname(at) === at) return resolve(path);
      rest.push(basename(at));
    }
  }
}

/** Absolute path of a job's database file. */
export function jobDbPath(rootDir: string, stem: string): string {
  return join(rootDir, stem + DB_SUFFIX);
}

/**
 * The job files among a root's directory entries, with their ids, sorted by id (files that
 * are not job files are left out; a job named both ways by 0.1 and now, once).
 */
export function jobFilesIn(
  entries: readonly { name: string; isFile(): boolean }[],
): { id: string; name: string }[] {
  const byId = new Map<string, string>();
  for (const entry of entries) {
    if (!entry.isFile() || !entry.name.endsWith(DB_SUFFIX)) continue;
    const id = jobIdFromStem(entry.name.slice(0, -DB_SUFFIX.length));
    if (id === undefined) continue;
    // This version's name wins over a 0.1 name of the same job.
    const current = jobFileStem(id);
    if (!byId.has(id) || (current.ok && current.stem + DB_SUFFIX === entry.name))
      byId.set(id, entry.name);
  }
  // The default sort compares UTF-16 code units, as listJobs promises.
  return [...byId.keys()].sort().map((id) => ({ id, name: byId.get(id) as string }));
}

/**
 * The database a backup named `dest` would be a side file of, if any: SQLite reads a
 * database's `-wal`, `-shm` and `-journal` as part of it (a copy there would be taken for
 * that database's journal, then replaced or deleted), and opening or dropping a job removes
 * its `.db-new`. Such names are refused whether or not that database exists yet.
 */
export function backupSideOf(dest: string): string | undefined {
  const suffix =
    SIDECAR_SUFFIXES.find((s) => dest.endsWith(s)) ??
    (dest.endsWith(DB_SUFFIX + NEW_FILE_SUFFIX) ? NEW_FILE_SUFFIX : undefined);
  return suffix === undefined ? undefined : dest.slice(0, -suffix.length);
}

/**
 * The file that keeps `dest` from being a new copy of a job (a backup): `dest` itself, or a
 * journal of that name, which would be read as part of the copy. A dangling symlink counts
 * (writing through it would create its target). Undefined when `dest` is free.
 */
export function takenBackupName(dest: string): string | undefined {
  for (const file of [dest, ...SIDECAR_SUFFIXES.map((s) => dest + s)]) {
    try {
      lstatSync(file);
      return file;
    } catch {
      // nothing there (or no folder to hold it: making the copy says why)
    }
  }
  return undefined;
}
