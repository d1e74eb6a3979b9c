/*
 * A job's file is the one it opened, by device and inode: a file removed, replaced or
 * moved while the job is open or released must never be taken for it (CONTRACT.md
 * section 7). Checked at a reattach, at every flush and at close.
 */
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { type ErrorInfo, toErrorInfo } from './protocol/messages.js';

/**
 * Whether `stat` reports real birth times here. Where Node cannot use statx (an old kernel,
 * a sandbox that refuses it) it reports each file's change time instead, which every write
 * moves; then no birth time is equal to the change time of every path asked.
 */
export const BIRTH_TIME_KEPT = ['/', tmpdir(), process.cwd()].some((p) => {
  try {
    const st = statSync(p, { bigint: true });
    return st.birthtimeNs !== st.ctimeNs;
  } catch {
    return false;
  }
});

/**
 * The device, inode and birth time of the file at `path`, or undefined when there is none.
 * The birth time tells a file made in place of a removed one apart even when the file system
 * gives it the freed inode number (0 where the file system keeps none; left out where `stat`
 * cannot tell it, see BIRTH_TIME_KEPT).
 */
export function fileIdOf(path: string): string | undefined {
  const st = statSync(path, { bigint: true, throwIfNoEntry: false });
  if (st === undefined) return undefined;
  return BIRTH_TIME_KEPT ? `${st.dev}:${st.ino}:${st.birthtimeNs}` : `${st.dev}:${st.ino}`;
}

/**
 * Why `path` is no longer the file `fileId` names, or undefined when it still is; a path
 * that cannot be looked at (its folder replaced by a file, no permission) is not the file.
 */
export function fileMoved(path: string, fileId: string, when: string): ErrorInfo | undefined {
  let now: string | undefined;
  try {
    now = fileIdOf(path);
  } catch (e) {
    return toErrorInfo(e, `${path} cannot be looked at ${when}`);
  }
  return now === fileId ? undefined : movedInfo(path, now, when);
}

/**
 * A job's database file and its WAL as its connection opened them. SQLite goes on writing
 * to a WAL removed under it, and what it writes there is lost with the connection.
 */
export class OpenedFiles {
  readonly #path: string;
  readonly #fileId: string;
  readonly #walId: string | undefined;

  constructor(path: string, fileId: string) {
    this.#path = path;
    this.#fileId = fileId;
    try {
      this.#walId = fileIdOf(`${path}-wal`); // made by the connection's first read
    } catch {
      this.#walId = undefined;
    }
  }

  /** Why the job's path or its WAL no longer holds the file opened, or undefined. */
  moved(when: string): ErrorInfo | undefined {
    const wal = this.#walId;
    return (
      fileMoved(this.#path, this.#fileId, when) ??
      (wal === undefined ? undefined : fileMoved(`${this.#path}-wal`, wal, when))
    );
  }
}

/**
 * Why the file at `path`, `now` once a connection has opened it, is not the one it opened
 * (`before`, read just before) or, for a reattach, not the one the job `had`; undefined when
 * it is. Only device and inode must match `before`: opening a file of an overlay's lower
 * layer for writing copies it up, with a new birth time.
 */
export function openedElsewhere(
  path: string,
  now: string | undefined,
  before: string | undefined,
  had: string | undefined,
): Error | undefined {
  const inode = (id: string) => id.split(':', 2).join(':');
  const same = now !== undefined && before !== undefined && inode(now) === inode(before);
  if (same && (had === undefined || now === had)) return undefined;
  const info = movedInfo(path, now, 'while the job was being opened');
  return Object.assign(new Error(info.message), { code: info.code });
}

function movedInfo(path: string, now: string | undefined, when: string): ErrorInfo {
  const what = now === undefined ? 'was removed' : 'was replaced by another file';
  return {
    kind: 'Backend',
    message: `${path} ${what} ${when}: what was written to it is not in the file at that path`,
    code: now === undefined ? 'ENOENT' : 'ESTALE',
  };
}
