/** The exit codes of the inspector; scripts may rely on them. */
export const EXIT = {
  /** Success. */
  ok: 0,
  /** `check` found damage (or a file that is not a persistency job). */
  damaged: 1,
  /** Unknown command or option, missing, empty or malformed argument. */
  usage: 2,
  /** The root directory or the job does not exist. */
  notFound: 3,
  /** A running process owns the job's root (it has jobs of it open). */
  inUse: 4,
  /** Anything else: a newer schema, an unreadable file, an existing backup destination, I/O. */
  failed: 5,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A failure with the exit code it ends the run with; its message is one line. */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
  ) {
    super(message);
  }
}

export const usage = (message: string) => new CliError(EXIT.usage, message);

export const EXIT_HELP = `Exit codes:
  0  success
  1  check found damage
  2  usage error (unknown command or option, missing, empty or malformed argument)
  3  root or job not found (a link or a directory is not a job file)
  4  job in use: its file is locked against readers (a database being recovered)
  5  any other failure (newer schema version, unreadable file, destination exists, I/O)`;

export const PREFIX_HELP = `Prefix syntax: a JSON array of key parts, encoded like key(...parts):
  "text"                         a string part
  42, -7                         an integer part (a safe integer, encoded as i64)
  true, false                    a boolean part
  {"u64": "18446744073709551615"} a sized integer: i64 i32 i16 i8 u64 u32 u16 u8,
                                 given as a number or a decimal string
  {"text": "ada"}                a text() part (code-point order)
  {"f64": -1.5}                  an f64() part ("Infinity", "-Infinity", "-0" as strings)
  {"bytes": "00ff"}              a byte-string part (length-prefixed, like Uint8Array)
  {"raw": "000a6368"}            bytes taken verbatim (e.g. a hex key printed by scan)
A single value that is not an array is one part.
Example: --prefix '["channel-1", 42]' is key('channel-1', 42).`;

export const MAIN_HELP = `persistency: inspect the job files of a persistency root, read-only

Usage: persistency <command> [arguments] [options]

Commands:
  ls <root> [job]                 jobs with file sizes and row counts;
                                  with a job: its categories and row counts
  scan <root> <job> <category>    rows of a category in key order
  count <root> <job> <category>   number of rows of a category (or under a prefix)
  check <root> <job>              PRAGMA integrity_check and the schema version
  backup <root> <job> <dest>      consistent copy of a job, open or not, into a new file
  litestream-config <root> <replica>
                                  a Litestream configuration replicating every job file

Run 'persistency <command> --help' for a command's options.

<job> is the job id given to openJob, not its file name. Nothing is written to a job's
files: jobs a running process has open are read beside it (their committed rows), and
a job's files are left as they were found.

${EXIT_HELP}
`;
