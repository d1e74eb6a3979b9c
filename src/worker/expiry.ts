/*
 * Expiry in SQL: a job file that has used `expireInMs` (schema version 2) has a column
 * `expires_at` (ms since the epoch, NULL for none) with a partial index over the rows that
 * have one. Every read of such a file hides expired rows through `liveOnly`, which asks the
 * job's clock through the function `persistency_now()`; a file that never used expiry keeps
 * version 1, the reference's schema, and its statements carry no filter at all.
 */
import type Database from 'better-sqlite3';

/** The schema version that added expiry. */
export const EXPIRY_VERSION = 2;

/** Version 1 to 2, run in its own transaction by the first write that uses expiry. */
export const EXPIRY_MIGRATION = `ALTER TABLE kv ADD COLUMN expires_at INTEGER;
  CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL`;

/** Whether the file of `db` has the expiry column. */
export function hasExpiry(db: Database.Database): boolean {
  return (db.pragma('user_version', { simple: true }) as number) >= EXPIRY_VERSION;
}

/** The condition (after an AND) that keeps only rows not expired; '' on a file without expiry. */
export function liveOnly(expiry: boolean, table = 'kv'): string {
  return expiry
    ? ` AND (${table}.expires_at IS NULL OR ${table}.expires_at > persistency_now())`
    : '';
}

/** A job's time in the worker: the injected clock's last reading, else the system's. */
export class JobClock {
  /** Set from a frame's NOW record when the instance was given a clock. */
  injected: number | undefined;

  now(): number {
    return this.injected ?? Date.now();
  }

  /** Make `persistency_now()` read this clock on `db`. */
  install(db: Database.Database): void {
    db.function('persistency_now', { deterministic: false }, () => this.now());
  }
}
