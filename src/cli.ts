#!/usr/bin/env node
/*
 * The inspector: `persistency ls | scan | count | check | backup`, over the job files of a
 * root directory, from outside the process that owns them.
 *
 * Read-only by construction: every job file is opened with SQLite's read-only flag, so
 * the inspector cannot write a row, run a migration or checkpoint a WAL; it reads what
 * is committed in the file and in its WAL (a job whose owner was killed included).
 * SQLite may still create the `-shm` index (and an empty `-wal`) beside the file for the
 * read, as for any WAL reader; the library's next open uses them and its close removes them.
 *
 * No job of a root that a running process owns is read: the owner holds the root's lock
 * (src/root-lock.ts) while it has any job open, and which of its jobs are open cannot be
 * seen from outside; the inspector then says the job is in use (exit code 4). It looks
 * at that lock once per command, without waiting and without holding it: an owner that
 * starts meanwhile is not kept out, and each read is one SQLite snapshot all the same.
 * Reading live jobs, which their WAL mode allows, is left for later (issue 16).
 */
import {
  closeSync,
  existsSync,
  lstatSync,
  openSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
} from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PersistencyError } from './errors.js';
import {
  decodeKey,
  i8,
  i16,
  i32,
  i64,
  type Key,
  type KeyPart,
  key,
  PART_TYPE_NAMES,
  type PartType,
  prefixRange,
  rawKey,
  type SizedInt,
  u8,
  u16,
  u32,
  u64,
} from './keys.js';
import { DB_SUFFIX, jobDbPath, jobFileStem, jobIdFromStem, SIDECAR_SUFFIXES } from './paths.js';
import { decodePayload } from './payload.js';
import { ROOT_LOCK_FILE, RootLock } from './root-lock.js';
import { SCHEMA_VERSION } from './worker/backend.js';
import { JobFileReader } from './worker/job-file-reader.js';

/** The exit codes of the inspector; scripts may rely on them. */
export const EXIT = {
  /** Success. */
  ok: 0,
  /** `check` found damage (or a file that is not a persistency job). */
  damaged: 1,
  /** Unknown command or option, missing or malformed argument. */
  usage: 2,
  /** The root directory or the job does not exist. */
  notFound: 3,
  /** A running process owns the job's root (it has jobs of it open). */
  inUse: 4,
  /** Anything else: a newer schema, an unreadable file, an existing backup destination, I/O. */
  failed: 5,
} as const;

type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A failure with the exit code it ends the run with; its message is one line. */
class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
  ) {
    super(message);
  }
}

const usage = (message: string) => new CliError(EXIT.usage, message);

// ---------------------------------------------------------------------------------------
// Help

const EXIT_HELP = `Exit codes:
  0  success
  1  check found damage
  2  usage error (unknown command or option, missing or malformed argument)
  3  root or job not found
  4  job in use: a running process owns its root (has jobs of it open)
  5  any other failure (newer schema version, unreadable file, destination exists, I/O)`;

const PREFIX_HELP = `Prefix syntax: a JSON array of key parts, encoded like key(...parts):
  "text"                         a string part
  42, -7                         an integer part (a safe integer, encoded as i64)
  true, false                    a boolean part
  {"u64": "18446744073709551615"} a sized integer: i64 i32 i16 i8 u64 u32 u16 u8,
                                 given as a number or a decimal string
  {"bytes": "00ff"}              a byte-string part (length-prefixed, like Uint8Array)
  {"raw": "000a6368"}            bytes taken verbatim (e.g. a hex key printed by scan)
A single value that is not an array is one part.
Example: --prefix '["channel-1", 42]' is key('channel-1', 42).`;

const MAIN_HELP = `persistency: inspect the job files of a persistency root, read-only

Usage: persistency <command> [arguments] [options]

Commands:
  ls <root> [job]                 jobs with file sizes and row counts;
                                  with a job: its categories and row counts
  scan <root> <job> <category>    rows of a category in key order
  count <root> <job> <category>   number of rows of a category (or under a prefix)
  check <root> <job>              PRAGMA integrity_check and the schema version
  backup <root> <job> <dest>      consistent copy of a job that is not open, into a new file

Run 'persistency <command> --help' for a command's options.

<job> is the job id given to openJob, not its file name. Job files are opened
read-only. No job of a root that a running process owns is read: the owner holds an
exclusive lock on <root>/${ROOT_LOCK_FILE} until it closes its last job of that root.

${EXIT_HELP}
`;

interface Command {
  readonly help: string;
  readonly options: NonNullable<Parameters<typeof parseArgs>[0]>['options'];
  /** Positional arguments: at least, at most. */
  readonly arity: readonly [number, number];
  readonly run: (args: string[], values: Values) => number | Promise<number>;
}

type Values = Record<string, string | boolean | undefined>;

const COMMANDS: Record<string, Command> = {
  ls: {
    help: `Usage: persistency ls <root> [job]

Without a job: one line per job file in <root>, sorted by job id:
  <job id> TAB <bytes of the file and its WAL> TAB <rows, or "in use", or "error">
"in use" marks every job of a root that a running process owns (no rows are read);
"error" marks a file that could not be read (the reason goes to stderr, and the exit
code is 5).

With a job: one line per category of that job, in byte order:
  <category> TAB <rows>

Job ids and categories print as they are, or as a JSON string when they hold anything
but visible characters and inner spaces.

Exit codes: 0 ok, 2 usage, 3 root or job not found, 4 job in use, 5 other failure.
`,
    options: {},
    arity: [1, 2],
    run: ([root, id]) =>
      id === undefined ? listJobs(root as string) : listCategories(root as string, id),
  },
  scan: {
    help: `Usage: persistency scan <root> <job> <category> [options]

Print the rows of <category> in key order, one per line:
  <key> TAB <payload>

Options:
  --prefix <json>   only keys that start with this prefix (syntax below)
  --reverse         descending key order
  --limit <n>       at most n rows
  --decode <types>  read each key as parts of these types, comma-separated:
                    ${PART_TYPE_NAMES.join(', ')}
                    e.g. --decode string,i64. Decoded keys print as a JSON array in the
                    prefix syntax, so a printed key can be passed back as --prefix.
                    A key that does not decode so prints in hex (with one warning on
                    stderr at the end; the exit code stays 0).
  --payload <how>   auto (default): a JSON string when the payload is valid UTF-8
                    without control characters other than tab, CR and LF, else hex;
                    utf8: always a JSON string (invalid bytes become U+FFFD);
                    hex: always hex;
                    part types, as for --decode (e.g. string,i64): the payload as
                    written by payload() or persistEncoded, printed as a JSON array
                    (a payload that does not decode so prints in hex, with a warning)
  -h, --help        this help

Without --decode, keys print as lower-case hex (their encoded bytes).

${PREFIX_HELP}

Exit codes: 0 ok, 2 usage, 3 root or job not found, 4 job in use, 5 other failure.
`,
    options: {
      prefix: { type: 'string' },
      reverse: { type: 'boolean' },
      limit: { type: 'string' },
      decode: { type: 'string' },
      payload: { type: 'string' },
    },
    arity: [3, 3],
    run: ([root, id, category], values) =>
      scan(root as string, id as string, category as string, values),
  },
  count: {
    help: `Usage: persistency count <root> <job> <category> [--prefix <json>]

Print the number of rows of <category> (only keys under the prefix, with --prefix).

${PREFIX_HELP}

Exit codes: 0 ok, 2 usage, 3 root or job not found, 4 job in use, 5 other failure.
`,
    options: { prefix: { type: 'string' } },
    arity: [3, 3],
    run: ([root, id, category], values) =>
      count(root as string, id as string, category as string, values),
  },
  check: {
    help: `Usage: persistency check <root> <job>

Run PRAGMA integrity_check on the job's file (with its WAL) and print
  integrity_check: <ok, or one line per problem>
  schema version: <PRAGMA user_version>
The check passes when integrity_check says ok and the schema version is one this
library writes (1..${SCHEMA_VERSION}). A newer schema version is refused (exit code 5).

Exit codes: 0 ok, 1 damaged (or not a persistency job file), 2 usage, 3 root or job not
found, 4 job in use, 5 other failure.
`,
    options: {},
    arity: [2, 2],
    run: ([root, id]) => check(root as string, id as string),
  },
  backup: {
    help: `Usage: persistency backup <root> <job> <dest>

Copy a consistent snapshot of the job (its file with every committed row of its WAL)
into the new file <dest>, with SQLite's online backup. To open the copy with the
library, name it after the job's file (e.g. <other root>/<job>.db).

<dest> must not exist (nor its -wal, -shm or -journal): the inspector never overwrites.
A job of a root that a running process owns is not backed up (exit code 4): close that
process's jobs of the root, or copy the job from the owning process.

Exit codes: 0 ok, 2 usage, 3 root or job not found, 4 job in use, 5 other failure
(including an existing <dest>).
`,
    options: {},
    arity: [3, 3],
    run: ([root, id, dest]) => backup(root as string, id as string, dest as string),
  },
};

// ---------------------------------------------------------------------------------------
// Entry

/**
 * Run the inspector with the given arguments (without `node` and the script), writing
 * results to stdout and one `persistency: …` line per error to stderr.
 * @returns the exit code, one of {@link EXIT}.
 * @example
 * ```ts
 * process.exitCode = await main(['count', '/var/lib/app', 'tenant-1', 'log']);
 * ```
 */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    const [name, ...rest] = argv;
    if (name === undefined) throw usage("no command (run 'persistency --help')");
    if (name === '--help' || name === '-h') return out.text(MAIN_HELP);
    if (name === 'help') {
      const topic = rest[0];
      if (topic === undefined) return out.text(MAIN_HELP);
      const command = commandNamed(topic);
      if (command === undefined)
        throw usage(`unknown command ${JSON.stringify(topic)} (run 'persistency --help')`);
      return out.text(command.help);
    }
    const command = commandNamed(name);
    if (command === undefined)
      throw usage(`unknown command ${JSON.stringify(name)} (run 'persistency --help')`);
    const { positionals, values } = parse(name, command, rest);
    if (values.help === true) return out.text(command.help);
    const [min, max] = command.arity;
    if (positionals.length < min || positionals.length > max) {
      const first = command.help.split('\n')[0]?.replace('Usage: ', '');
      throw usage(
        `${name} takes ${min === max ? min : `${min} to ${max}`} arguments, got ${positionals.length} (usage: ${first})`,
      );
    }
    return await command.run(positionals, values);
  } catch (e) {
    const failure =
      e instanceof CliError
        ? e
        : new CliError(EXIT.failed, `unexpected failure: ${describeError(e)}`);
    out.flush(); // what was found before the failure
    warn(failure.message);
    return failure.exitCode;
  } finally {
    out.flush();
  }
}

function commandNamed(name: string): Command | undefined {
  return Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
}

function parse(
  name: string,
  command: Command,
  args: string[],
): { positionals: string[]; values: Values } {
  try {
    const { positionals, values } = parseArgs({
      args,
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    return { positionals, values: values as Values };
  } catch (e) {
    // `--help` wins over a mistake elsewhere on the line.
    if (args.includes('--help') || args.includes('-h'))
      return { positionals: [], values: { help: true } };
    const code = (e as { code?: unknown }).code;
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const option = /'([^']*)'/.exec((e as Error).message)?.[1] ?? '?';
      throw usage(`unknown option ${option} for ${name} (run 'persistency ${name} --help')`);
    }
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_'))
      throw usage(`${name}: ${(e as Error).message}`);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------
// Commands

function listJobs(root: string): number {
  const dir = requireRoot(root);
  const owned = rootOwned(dir, `root ${dir}`);
  const jobs: { id: string; path: string }[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith(DB_SUFFIX)) continue;
    const id = jobIdFromStem(entry.name.slice(0, -DB_SUFFIX.length));
    if (id !== undefined) jobs.push({ id, path: resolve(dir, entry.name) });
  }
  jobs.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  let failures = 0;
  for (const { id, path } of jobs) {
    let rows: string;
    try {
      if (owned) throw inUse(label(id), dir);
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

function listCategories(root: string, id: string): number {
  const path = requireJob(root, id);
  withJobFile(path, label(id), {}, (job) => {
    for (const [category, n] of job.categories())
      out.line(`${showText(lenientUtf8.decode(category))}\t${n}`);
  });
  return EXIT.ok;
}

function scan(root: string, id: string, category: string, values: Values): number {
  const prefix = parsePrefix(values.prefix);
  const limit = parseLimit(values.limit);
  const keyParts = partsView(values.decode, '--decode', decodeKey);
  const showPayload = payloadFormat(values.payload);
  const reverse = values.reverse === true;
  const path = requireJob(root, id);
  withJobFile(path, label(id), {}, (job) => {
    const { start, stop } = rangeOf(prefix);
    const cat = Buffer.from(category, 'utf8');
    for (const [k, payload] of job.scan(cat, start, stop, reverse, limit)) {
      const shownKey = keyParts === undefined ? k.toString('hex') : keyParts.show(k);
      out.line(`${shownKey}\t${showPayload.show(payload)}`);
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

function count(root: string, id: string, category: string, values: Values): number {
  const prefix = parsePrefix(values.prefix);
  const path = requireJob(root, id);
  const n = withJobFile(path, label(id), {}, (job) => {
    const { start, stop } = rangeOf(prefix);
    return job.count(Buffer.from(category, 'utf8'), start, stop);
  });
  out.line(String(n));
  return EXIT.ok;
}

function check(root: string, id: string): number {
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
      const known = job.version >= 1;
      out.line(`schema version: ${job.version}${known ? '' : ' (not a persistency job file)'}`);
      return (intact ? 0 : found.length) + (known ? 0 : 1);
    },
  );
  if (problems === 0) return EXIT.ok;
  throw new CliError(EXIT.damaged, `${name} failed the check (${path})`);
}

async function backup(root: string, id: string, destArg: string): Promise<number> {
  const path = requireJob(root, id);
  const name = label(id);
  const dest = resolve(destArg);
  for (const file of [dest, ...SIDECAR_SUFFIXES.map((s) => dest + s)]) {
    // A stale -wal or -journal beside a new copy would be read as part of it.
    if (exists(file))
      throw new CliError(EXIT.failed, `${file} already exists; backup never overwrites`);
  }
  const job = openJobFile(path, name, {});
  try {
    const rows = mapSqliteErrors(name, EXIT.failed, () => job.rowCount());
    let fd: number;
    try {
      fd = openSync(dest, 'wx'); // claims the name: a racing writer of dest fails here, not later
    } catch (e) {
      throw new CliError(EXIT.failed, `cannot create ${dest}: ${describeError(e)}`);
    }
    closeSync(fd);
    try {
      // The source connection keeps its shared lock for the whole copy, so no owner can
      // open the job and change it midway: the copy is one consistent snapshot.
      await job.backup(dest);
    } catch (e) {
      for (const file of [dest, ...SIDECAR_SUFFIXES.map((s) => dest + s)])
        rmSync(file, { force: true });
      throw new CliError(EXIT.failed, `backup of ${name} to ${dest} failed: ${describeError(e)}`);
    }
    out.line(`backed up ${name} (${rows} rows) to ${dest}`);
    return EXIT.ok;
  } finally {
    job.close();
  }
}

// ---------------------------------------------------------------------------------------
// Job files

interface OpenOptions {
  /** Accept a file of schema version 0 (not a job), for `check` to report. */
  readonly anyVersion?: boolean;
  /** Exit code for a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB); default 5. */
  readonly damageCode?: ExitCode;
}

function requireRoot(root: string): string {
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

/** The job's database path; the job must exist, and no running process own its root. */
function requireJob(root: string, id: string): string {
  const stem = jobFileStem(id);
  if (!stem.ok) throw usage(`job id ${JSON.stringify(id)}: ${stem.error.message}`);
  const dir = requireRoot(root);
  const path = jobDbPath(dir, stem.stem);
  if (!existsSync(path))
    throw new CliError(
      EXIT.notFound,
      `${label(id)} not found in ${dir} (no file ${stem.stem}${DB_SUFFIX})`,
    );
  if (rootOwned(dir, label(id))) throw inUse(label(id), dir);
  return path;
}

/** Whether a running process owns the root `dir`; exit 5 if its lock cannot be read. */
function rootOwned(dir: string, name: string): boolean {
  const owned = RootLock.isOwned(dir);
  if (owned.isErr()) throw new CliError(EXIT.failed, `${name}: ${owned.error.message}`);
  return owned.value;
}

function inUse(name: string, dir: string): CliError {
  return new CliError(
    EXIT.inUse,
    `${name} is in use by another process, which holds an exclusive lock on its root (${resolve(dir, ROOT_LOCK_FILE)}) while it has jobs of it open`,
  );
}

/** Open read-only, run `use`, close; SQLite errors become CliErrors naming the job. */
function withJobFile<T>(
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

function openJobFile(path: string, name: string, options: OpenOptions): JobFileReader {
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
  if (version < 1 && options.anyVersion !== true) {
    job.close();
    throw new CliError(
      EXIT.failed,
      `${name} is not a persistency job file (schema version ${version}): ${path}`,
    );
  }
  return job;
}

function mapSqliteErrors<T>(name: string, damageCode: ExitCode, run: () => T): T {
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
function fileBytes(path: string): number {
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

function exists(file: string): boolean {
  try {
    lstatSync(file); // a dangling symlink counts: writing through it would create its target
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------
// Arguments

const SIZED: Record<string, (x: number | bigint) => SizedInt> = {
  i64,
  i32,
  i16,
  i8,
  u64,
  u32,
  u16,
  u8,
};

/** A view of bytes as the parts `spec` names (comma-separated), or undefined without one. */
function partsView(
  spec: string | boolean | undefined,
  option: string,
  decode: (bytes: Uint8Array, types: PartType[]) => unknown,
): PartsView | undefined {
  if (typeof spec !== 'string') return undefined;
  const types = spec.split(',').map((t) => t.trim());
  for (const t of types) {
    if (!(PART_TYPE_NAMES as readonly string[]).includes(t))
      throw usage(
        `${option}: ${JSON.stringify(t)} is not ${option === '--payload' ? 'auto, utf8, hex or a part type' : 'a part type'} (part types: ${PART_TYPE_NAMES.join(', ')})`,
      );
  }
  return new PartsView(types as PartType[], decode);
}

function parseLimit(value: string | boolean | undefined): number {
  if (typeof value !== 'string') return -1; // SQLite: a negative LIMIT means none
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)))
    throw usage(`--limit: ${JSON.stringify(value)} is not a non-negative integer`);
  return Number(value);
}

function parsePrefix(value: string | boolean | undefined): Key | undefined {
  if (typeof value !== 'string') return undefined;
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch {
    throw usage(
      `--prefix: ${JSON.stringify(value)} is not JSON (e.g. '["channel-1", 42]'; see --help)`,
    );
  }
  const parts = Array.isArray(json) ? json : [json];
  try {
    return key(...parts.map((p, i) => toPart(p, `part ${i}`)));
  } catch (e) {
    if (e instanceof CliError) throw e;
    if (e instanceof PersistencyError) throw usage(`--prefix: ${e.message}`);
    throw e;
  }
}

/** One JSON value of the prefix syntax as a key part. */
function toPart(v: unknown, where: string): KeyPart {
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw usage(`--prefix: ${where}: ${v} is not an integer`);
    if (!Number.isSafeInteger(v))
      throw usage(`--prefix: ${where}: ${v} is beyond 2^53; write it as {"i64": "<digits>"}`);
    return v;
  }
  if (Array.isArray(v)) return v.map((p, i) => toPart(p, `${where}.${i}`));
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v);
    const [tag, arg] = entries[0] ?? [];
    if (entries.length === 1 && tag !== undefined) {
      const sized = Object.hasOwn(SIZED, tag) ? SIZED[tag] : undefined;
      if (sized !== undefined) {
        if (typeof arg === 'number' && Number.isSafeInteger(arg)) return sized(arg);
        if (typeof arg === 'string' && /^-?\d+$/.test(arg)) return sized(BigInt(arg));
        throw usage(`--prefix: ${where}: {"${tag}": …} takes an integer or a decimal string`);
      }
      if (tag === 'bytes' || tag === 'raw') {
        if (typeof arg !== 'string' || !/^(?:[0-9a-fA-F]{2})*$/.test(arg))
          throw usage(`--prefix: ${where}: {"${tag}": …} takes an even-length hex string`);
        const bytes = new Uint8Array(Buffer.from(arg, 'hex'));
        return tag === 'raw' ? rawKey(bytes) : bytes;
      }
    }
  }
  throw usage(
    `--prefix: ${where}: ${JSON.stringify(v)} is not a key part (a string, integer, boolean, or {"<i64|…|u8|bytes|raw>": …})`,
  );
}

function rangeOf(prefix: Key | undefined): { start: Buffer; stop: Buffer | undefined } {
  if (prefix === undefined) return { start: Buffer.alloc(0), stop: undefined };
  const range = prefixRange(prefix);
  const stop = range.stop?.bytes;
  return {
    start: Buffer.from(range.start.bytes),
    stop: stop === undefined || stop.length === 0 ? undefined : Buffer.from(stop),
  };
}

// ---------------------------------------------------------------------------------------
// Output

/**
 * Bytes read as codec parts and printed as a JSON array in the prefix syntax; bytes that
 * do not fit the types print in hex and are counted.
 */
class PartsView {
  misses = 0;

  constructor(
    readonly types: readonly PartType[],
    readonly decode: (bytes: Uint8Array, types: PartType[]) => unknown,
  ) {}

  show(bytes: Buffer): string {
    let parts: unknown[];
    try {
      parts = this.decode(bytes, [...this.types]) as unknown[];
    } catch (e) {
      if (!(e instanceof PersistencyError)) throw e;
      this.misses++;
      return bytes.toString('hex');
    }
    return `[${parts.map((p, i) => showPart(p, this.types[i] as PartType)).join(',')}]`;
  }
}

function showPart(v: unknown, type: PartType): string {
  switch (type) {
    case 'string':
      return JSON.stringify(v);
    case 'bool':
    case 'number':
    case 'i32':
    case 'i16':
    case 'i8':
      return String(v); // every signed width encodes like a plain integer
    case 'bytes':
      return `{"bytes":"${Buffer.from(v as Uint8Array).toString('hex')}"}`;
    case 'i64':
      return Number.isSafeInteger(Number(v)) ? String(v) : `{"i64":"${String(v)}"}`;
    default: {
      const n = v as number | bigint;
      return `{"${type}":${Number.isSafeInteger(Number(n)) ? String(n) : `"${String(n)}"`}}`;
    }
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lenientUtf8 = new TextDecoder('utf-8', { ignoreBOM: true });
// Control characters other than tab, LF and CR mark binary data.
const BINARY = /(?![\t\n\r])\p{Cc}/u;

function payloadFormat(value: string | boolean | undefined): { show(b: Buffer): string } {
  switch (value) {
    case undefined:
    case 'auto':
      return {
        show(b) {
          let text: string;
          try {
            text = strictUtf8.decode(b);
          } catch {
            return b.toString('hex');
          }
          return BINARY.test(text) ? b.toString('hex') : JSON.stringify(text);
        },
      };
    case 'utf8':
      return { show: (b) => JSON.stringify(lenientUtf8.decode(b)) };
    case 'hex':
      return { show: (b) => b.toString('hex') };
    default:
      // Anything else names part types: a payload written with payload() or persistEncoded.
      return partsView(value, '--payload', decodePayload) as PartsView;
  }
}

const PLAIN =
  /^(?!")[\p{L}\p{M}\p{N}\p{P}\p{S}](?:[\p{L}\p{M}\p{N}\p{P}\p{S} ]*[\p{L}\p{M}\p{N}\p{P}\p{S}])?$/u;

/** A name as it is when it is plainly printable, else as a JSON string. */
function showText(s: string): string {
  return PLAIN.test(s) ? s : JSON.stringify(s);
}

function label(id: string): string {
  return `job ${JSON.stringify(id)}`;
}

function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ');
}

/** One line to stderr, as every message of the inspector: `persistency: …`. */
function warn(message: string): void {
  process.stderr.write(`persistency: ${oneLine(message)}\n`);
}

/** Buffered stdout: rows go out in large writes. */
class Output {
  #chunk = '';

  line(s: string): void {
    this.#chunk += `${s}\n`;
    if (this.#chunk.length >= 65536) this.flush();
  }

  /** Write `s` (and anything buffered) and return exit code 0. */
  text(s: string): 0 {
    this.#chunk += s;
    this.flush();
    return EXIT.ok;
  }

  flush(): void {
    if (this.#chunk === '') return;
    process.stdout.write(this.#chunk);
    this.#chunk = '';
  }
}

const out = new Output();

/** Whether this module is the script node was started with (directly or via a bin link). */
function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  // A closed pipe (e.g. `persistency scan … | head`) ends the run quietly.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.ok);
    throw e;
  });
  process.exitCode = await main(process.argv.slice(2));
}
