/*
 * A new job's file, written whole: an empty database at the base schema, already in WAL
 * mode. Left to SQLite, a new file is switched to WAL in a rollback-journal transaction and
 * given its schema in a WAL transaction, each paying its own fsyncs before the job's first
 * commit can; written from an image it costs one fsync of its own.
 */
import {
  closeSync,
  constants,
  fsyncSync,
  linkSync,
  lstatSync,
  openSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import Database from 'better-sqlite3';
import { NEW_FILE_SUFFIX, SIDECAR_SUFFIXES } from '../paths.js';

/** Offsets in a database file's 100-byte header (https://sqlite.org/fileformat.html). */
const WRITE_VERSION = 18;
const READ_VERSION = 19;
const CHANGE_COUNTER = 24;
const VERSION_VALID_FOR = 92;
const SQLITE_VERSION_NUMBER = 96;
/** Read and write versions 2: the file is in WAL mode from its first open on. */
const WAL_FORMAT = 2;

/**
 * The bytes of an empty job file: `schema` run on an in-memory database, its version set,
 * and its header made what SQLite itself writes for a WAL file it created and committed to.
 */
export function newJobFileImage(schema: readonly string[], version: number): Uint8Array {
  const db = new Database(':memory:');
  try {
    db.transaction(() => {
      for (const sql of schema) db.exec(sql);
      db.pragma(`user_version = ${version}`);
    })();
    const [major = 0, minor = 0, patch = 0] = String(
      db.prepare('SELECT sqlite_version()').pluck().get(),
    )
      .split('.')
      .map(Number);
    const bytes = new Uint8Array(db.serialize());
    const header = new DataView(bytes.buffer, bytes.byteOffset, 100);
    header.setUint8(WRITE_VERSION, WAL_FORMAT);
    header.setUint8(READ_VERSION, WAL_FORMAT);
    // A change counter equal to version-valid-for tells readers the header's page count holds.
    header.setUint32(CHANGE_COUNTER, 1);
    header.setUint32(VERSION_VALID_FOR, 1);
    header.setUint32(SQLITE_VERSION_NUMBER, major * 1_000_000 + minor * 1_000 + patch);
    return bytes;
  } finally {
    db.close();
  }
}

/**
 * Put `image()` at `path` if neither it nor any file SQLite keeps beside it exists (a
 * leftover WAL or journal is SQLite's to read, so such a path is left to SQLite). The bytes
 * go to a side name first, all of them, are synced, and are then linked into place, so
 * `path` never shows part of a file, and an existing file is never replaced. Its directory
 * entry becomes durable with the job's first commit: SQLite syncs the directory when it
 * first syncs the WAL it creates there. Returns whether it wrote the file; false also when
 * the file system refused a step (no space, no permission, no hard links), leaving the
 * file to SQLite, whose errors say what is wrong.
 */
export function createJobFile(path: string, image: () => Uint8Array): boolean {
  const side = removeSideFile(path);
  for (const f of [path, ...SIDECAR_SUFFIXES.map((s) => path + s)]) {
    if (lstatSync(f, { throwIfNoEntry: false }) !== undefined) return false;
  }
  let fd: number;
  try {
    fd = openSync(
      side,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o644,
    );
  } catch {
    return false;
  }
  let linked = false;
  try {
    const bytes = image();
    // A write may take fewer bytes than asked (a disk nearly full): go on until all are in,
    // but not round forever where a file system takes none.
    for (let at = 0; at < bytes.length; ) {
      const n = writeSync(fd, bytes, at, bytes.length - at);
      if (n <= 0) throw new Error(`${side}: a write took no bytes`);
      at += n;
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    linkSync(side, path);
    linked = true;
  } catch {
    // as the doc says: SQLite makes the file instead, or says why it cannot
  } finally {
    if (fd >= 0) ignoreFailure(() => closeSync(fd));
    ignoreFailure(() => unlinkSync(side));
  }
  return linked;
}

/**
 * Remove the side file of the job file at `path`, if there is one: left only by a crash, it
 * is part of an image or a second link to the job's file. The caller owns the root, so no
 * one else is writing it. Returns its name.
 */
export function removeSideFile(path: string): string {
  const side = path + NEW_FILE_SUFFIX;
  ignoreFailure(() => unlinkSync(side));
  return side;
}

function ignoreFailure(step: () => void): void {
  try {
    step();
  } catch {
    // nothing to do: the step was a clean-up
  }
}
