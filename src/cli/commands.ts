/*
 * The inspector's commands (ls, scan, count, check, backup) over job files read through the
 * SQL layer's reader, whether a running process owns their root or not.
 */
import { existsSync, lstatSync, readdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { decodeKey } from '../keys.js';
import {
  DB_SUFFIX,
  jobDbPath,
  jobFilesIn,
  jobStemIn,
  legacyJobDbPath,
  unsafeJobFile,
} from '../paths.js';
import { SCHEMA_VERSION } from '../worker/backend.js';
import { nameCopy, placeCopy, removeCopy, syncPathNow } from '../worker/backup-files.js';
import { JobFileReader } from '../worker/job-file-reader.js';
import { CliError, EXIT, type ExitCode, usage } from './help.js';
import {
  describeError,
  label,
  lenientUtf8,
  out,
  PartsView,
  payloadFormat,
  showText,
  warn,
} from './output.js';
import { parseLimit, parsePrefix, partsView, rangeOf, type Values } from './prefix-syntax.js';

export function listJobs(root: string): number {
  const dir = requireRoot(root);
  // The same listing as p.listJobs().
  const jobs = jobFilesIn(readdirSync(dir, { withFileTypes: true })).map(({ id, name }) => ({
    id,
    path: resolve(dir, name),
  }));
  let failures = 0;
  for (const { id, path } of jobs) {
    let rows: string;
    try {
      rows = String(withJobFile(path, label(id), {}, (job) => job.rowCount()));
    } catch (e) {
      if (!(e instanceof CliError)) throw e;
      if (e.exitCode === EXIT.inUse) rows = 'in use';
      else {
        rows = 'error';
        failures++;
        warn(e.message);
      }
    }
    out.line(`${showText(id)}\t${fileBytes(path)}\t${rows}`);
  }
  return failures === 0 ? EXIT.ok : EXIT.failed;
}

export function listCategories(root: string, id: string): number {
  const path = requireJob(root, id);
  withJobFile(path, label(id), {}, (job) => {
    for (const [category, n] of job.categories())
      out.line(`${showText(lenientUtf8.decode(category))}\t${n}`);
  });
  return EXIT.ok;
}

export function scan(root: string, id: string, category: string, values: Values): number {
  const prefix = parsePrefix(values.prefix);
  const limit = parseLimit(values.limit);
  const keyParts = partsView(values.decode, '--decode', decodeKey);
  const showPayload = payloadFormat(values.payload);
  const reverse = values.reverse === true;
  const path = requireJob(root, id);
  withJobFile(path, label(id), {}, (job) => {
    const { start, stop } = rangeOf(prefix);
    const cat = Buffer.from(category, 'utf8');
    for (const [k, payload, expiresAt] of job.scan(cat, start, stop, reverse, limit)) {
      const shownKey = keyParts === undefined ? k.toString('hex') : keyParts.show(k);
      // A third column for a row that expires: when, in UTC.
      const expiry = expiresAt === null ? '' : `\texpires ${showTime(expiresAt)}`;
      out.line(`${shownKey}\t${showPayload.show(payload)}${expiry}`);
    }
  });
  for (const [view, what] of [
    [keyParts, 'key'],
    [showPayload, 'payload'],
  ] as const) {
    if (view instanceof PartsView && view.misses > 0) {
      out.flush();
      warn(
        `warning: ${view.misses} ${what}${view.misses === 1 ? '' : 's'} did not decode as ${view.types.join(',')}; shown in hex`,
      );
    }
  }
  return EXIT.ok;
}

/** A time in ms since the epoch, as ISO 8601 UTC, or as a number past what a Date holds. */
function showTime(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? `${ms} ms after 1970` : date.toISOString();
}

export function count(root: string, id: string, category: string, values: Values): number {
  const prefix = parsePrefix(values.prefix);
  const path = requireJob(root, id);
  const n = withJobFile(path, label(id), {}, (job) => {
    const { start, stop } = rangeOf(prefix);
    return job.count(Buffer.from(category, 'utf8'), start, stop);
  });
  out.line(String(n));
  return EXIT.ok;
}

export function check(root: string, id: string): number {
  const path = requireJob(root, id);
  const name = label(id);
  // Damage may show at open (a mangled header) as well as in the check itself.
  const problems = withJobFile(
    path,
    name,
    { anyVersion: true, damageCode: EXIT.damaged },
    (job) => {
      let found: string[];
      try {
        found = job.integrityCheck();
      } catch (e) {
        if (!JobFileReader.isDamage(e)) throw e;
        found = [describeError(e)];
      }
      const intact = found.length === 1 && found[0] === 'ok';
      for (const line of found) out.line(`integrity_check: ${line}`);
      const notAJob = job.version < 1 ? 'not a persistency job file' : job.notAJob();
      out.line(`schema version: ${job.version}${notAJob === undefined ? '' : ` (${notAJob})`}`);
      return (intact ? 0 : found.length) + (notAJob === undefined ? 0 : 1);
    },
  );
  if (problems === 0) return EXIT.ok;
  throw new CliError(EXIT.damaged, `${name} failed the check (${path})`);
}

export async function backup(root: string, id: string, destArg: string): Promise<number> {
  const path = requireJob(root, id);
  const name = label(id);
  const dest = resolve(destArg);
  const job = openJobFile(path, name, {});
  const place = placeCopy(dest); // makes dest's folder: only for a job that opened
  if (place.refused !== undefined) {
    job.close();
    throw new CliError(EXIT.failed, place.refused.message);
  }
  // As job.backup: the copy is written beside dest and named when whole and durable, so a
  // backup killed midway leaves a `.backup-*` file, never a job missing rows at dest.
  let rows: number;
  try {
    rows = await job.backup(place.partial); // one snapshot: no owner changes the job midway
    syncPathNow(place.partial, 'r+');
    nameCopy(place.partial, dest);
  } catch (e) {
    removeCopy(place.partial);
    throw new CliError(EXIT.failed, `backup of ${name} to ${dest} failed: ${describeError(e)}`);
  } finally {
    job.close();
  }
  out.line(`backed up ${name} (${rows} rows) to ${dest}`);
  return EXIT.ok;
}

export interface OpenOptions {
  /** Accept a file of schema version 0 (not a job), for `check` to report. */
  readonly anyVersion?: boolean;
  /** Exit code for a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB); default 5. */
  readonly damageCode?: ExitCode;
}

export function requireRoot(root: string): string {
  // resolve('') is the working directory: an unset variable must not inspect it.
  if (root === '') throw usage('<root> is empty');
  const dir = resolve(root);
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new CliError(EXIT.notFound, `root ${dir} does not exist`);
    throw new CliError(EXIT.failed, `cannot read root ${dir}: ${describeError(e)}`);
  }
  if (!isDir) throw new CliError(EXIT.notFound, `root ${dir} is not a directory`);
  return dir;
}

/** The job's database path; the job must exist (its owner may be running). */
export function requireJob(root: string, id: string): string {
  const dir = requireRoot(root);
  const stem = jobStemIn(dir, id);
  if (!stem.ok) throw usage(`job id ${JSON.stringify(id)}: ${stem.error.message}`);
  const current = jobDbPath(dir, stem.stem);
  const entry = (path: string) => lstatSync(path, { throwIfNoEntry: false });
  const path = entry(current) !== undefined ? current : (legacyJobDbPath(dir, id) ?? current);
  if (entry(path) === undefined)
    throw new CliError(
      EXIT.notFound,
      `${label(id)} not found in ${dir} (no file ${stem.stem}${DB_SUFFIX})`,
    );
  return path;
}

/** Open for reading, run `use`, close; SQLite errors become CliErrors naming the job. */
export function withJobFile<T>(
  path: string,
  name: string,
  options: OpenOptions,
  use: (job: JobFileReader) => T,
): T {
  const job = openJobFile(path, name, options);
  try {
    return mapSqliteErrors(name, options.damageCode ?? EXIT.failed, () => use(job));
  } finally {
    job.close();
  }
}

export function openJobFile(path: string, name: string, options: OpenOptions): JobFileReader {
  // As for the library: a job's files are regular files, never read through a link (a pipe
  // at a sidecar would hold SQLite's open forever).
  const unsafe = unsafeJobFile(path);
  if (unsafe !== undefined)
    throw new CliError(EXIT.notFound, `${name} is not a job: ${unsafe.message}`);
  // SQLite would play a journal back into the file at the first read (a job file, in WAL
  // mode, never has one of its own).
  if (existsSync(`${path}-journal`)) {
    throw new CliError(
      EXIT.failed,
      `${name} has a rollback journal beside it (${path}-journal): reading would play it back into the file, which the inspector never changes; open the job with the library, or move the journal away`,
    );
  }
  const job = mapSqliteErrors(name, options.damageCode ?? EXIT.failed, () =>
    JobFileReader.open(path),
  );
  const version = job.version;
  if (version > SCHEMA_VERSION) {
    job.close();
    throw new CliError(
      EXIT.failed,
      `${name} has schema version ${version}, newer than version ${SCHEMA_VERSION} this inspector knows; use a newer persistency`,
    );
  }
  const short = job.cutShort();
  if (short !== undefined) {
    job.close();
    throw new CliError(options.damageCode ?? EXIT.failed, `${name} is damaged: ${short} (${path})`);
  }
  if (options.anyVersion === true) return job;
  // What the library would refuse to open is not read as a job here either.
  const why =
    version < 1
      ? `schema version ${version}`
      : mapSqliteErrors(name, options.damageCode ?? EXIT.failed, () => job.notAJob());
  if (why !== undefined) {
    job.close();
    throw new CliError(EXIT.failed, `${name} is not a persistency job file (${why}): ${path}`);
  }
  return job;
}

export function mapSqliteErrors<T>(name: string, damageCode: ExitCode, run: () => T): T {
  try {
    return run();
  } catch (e) {
    const code = JobFileReader.sqliteCode(e);
    if (e instanceof CliError || code === undefined) throw e;
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
      throw new CliError(
        EXIT.inUse,
        `${name} is in use by another process, which holds an exclusive lock on it until it closes the job`,
      );
    }
    const message = (e as Error).message;
    if (JobFileReader.isDamage(e))
      throw new CliError(damageCode, `${name} is damaged: ${message} (${code})`);
    throw new CliError(EXIT.failed, `${name}: ${message} (${code})`);
  }
}

/** Bytes of the database file and its WAL. */
export function fileBytes(path: string): number {
  let n = 0;
  for (const file of [path, `${path}-wal`]) {
    try {
      n += statSync(file).size;
    } catch {
      // no WAL: the file holds everything
    }
  }
  return n;
}
