/*
 * Statements prepared at their first use: a job taken up again for a few puts and gets
 * prepares only theirs, which is most of what a reopen costs beyond SQLite's own open.
 */
import type Database from 'better-sqlite3';

/** A statement `lazy` prepares. */
export type Lazy<P extends unknown[], R = unknown> = () => Database.Statement<P, R>;

/** `prepare`, called once, at the first call of what it returns. */
export function lazy<T>(prepare: () => T): () => T {
  let statement: T | undefined;
  return () => {
    statement ??= prepare();
    return statement;
  };
}
