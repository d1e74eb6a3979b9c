#!/usr/bin/env node
/*
 * The inspector: `persistency ls | scan | count | check | backup`, over the job files of a
 * root directory, from outside the process that owns them.
 *
 * Nothing is written: the inspector cannot write a row, run a migration or checkpoint a
 * job's WAL; it reads what is committed in the file and in its WAL, while the job's owner
 * runs (WAL readers never block its writer, nor it them) or after it died, and leaves the
 * job's files as it found them (src/worker/job-file-reader.ts).
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PART_TYPE_NAMES } from '../keys.js';
import { SCHEMA_VERSION } from '../worker/backend.js';
import { backup, check, count, listCategories, listJobs, scan } from './commands.js';
import { CliError, EXIT, MAIN_HELP, PREFIX_HELP, usage } from './help.js';
import { litestreamConfig } from './litestream-config.js';
import { describeError, out, warn } from './output.js';
import type { Values } from './prefix-syntax.js';

interface Command {
  readonly help: string;
  readonly options: NonNullable<Parameters<typeof parseArgs>[0]>['options'];
  /** Positional arguments: at least, at most. */
  readonly arity: readonly [number, number];
  readonly run: (args: string[], values: Values) => number | Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  ls: {
    help: `Usage: persistency ls <root> [job]

Without a job: one line per job file in <root>, sorted by job id:
  <job id> TAB <bytes of the file and its WAL> TAB <rows, or "in use", or "error">
"in use" marks a job whose file is locked against readers at that moment (rare: a
database being recovered); "error" marks a file that could not be read (the reason goes to stderr, and the exit
code is 5).

With a job: one line per category of that job, in byte order:
  <category> TAB <rows>

Job ids and categories print as they are, or as a JSON string when they hold anything
but visible characters and inner spaces, or start with a double quote.

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
and, for a row written with expireInMs, a third column:
  <key> TAB <payload> TAB expires <UTC time, ISO 8601>
Rows already expired are not printed (as the library does not return them).

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

Print the number of rows of <category> (only keys under the prefix, with --prefix); rows
already expired are not counted.

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
The check passes when integrity_check says ok, the schema version is one this
library writes (1..${SCHEMA_VERSION}) and the kv table is a job's (keyed by category and
key, with a payload). A newer schema version is refused (exit code 5).

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
Nor may it be named as a side file of a database (ending in -wal, -shm, -journal or
.db-new), where the copy would not last. Its folder is made if missing. The copy is in
rollback-journal mode, so reading it leaves no -wal or -shm beside it; the library turns
WAL back on when it opens it as a job.
A job its owner has open is backed up all the same: the copy is the committed state as
of the moment the copy began, and the owner's writes go on meanwhile.

Exit codes: 0 ok, 2 usage, 3 root or job not found, 4 job in use, 5 other failure
(including an existing <dest>).
`,
    options: {},
    arity: [3, 3],
    run: ([root, id, dest]) => backup(root as string, id as string, dest as string),
  },
  'litestream-config': {
    help: `Usage: persistency litestream-config <root> <replica> [--sync-interval <duration>]

Print a Litestream 0.3 configuration (YAML) that replicates every job file of <root>,
each to its own replica named after the file under <replica>: a URL base (s3://bucket/dir,
or any replica URL Litestream takes) or a folder (a file replica). Litestream 0.3 lists
databases one by one: make the configuration again, and restart litestream, when jobs are
added. --sync-interval sets each replica's sync interval (Litestream's default: 1s).

  persistency litestream-config /var/lib/app s3://backups/app > /etc/litestream.yml

Exit codes: 0 ok, 2 usage, 3 root not found, 5 other failure.
`,
    options: { 'sync-interval': { type: 'string' } },
    arity: [2, 2],
    run: ([root, replica], values) => litestreamConfig(root as string, replica as string, values),
  },
};

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
    // An empty argument is a mistake (an unset variable), never a name: '' as a path is
    // the working directory, and no job has an empty category.
    const empty = positionals.indexOf('');
    if (empty >= 0) throw usage(`${argumentNames(command.help)[empty] ?? 'an argument'} is empty`);
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

/** A command's argument names, from its usage line: `<root>`, `<job>`... (`[job]` as `<job>`). */
function argumentNames(help: string): string[] {
  const names: string[] = [];
  // "Usage: persistency <command> <root> ... [options]"
  for (const token of (help.split('\n')[0] ?? '').split(' ').slice(3)) {
    if (token.startsWith('[-') || token === '[options]') break;
    if (/^<[^>]+>$/.test(token)) names.push(token);
    else if (/^\[[^\]]+\]$/.test(token)) names.push(`<${token.slice(1, -1)}>`);
  }
  return names;
}
