/*
 * The kv table as this library makes it: its columns per schema version, and how a
 * payload is read. Shared by the job's connection and the inspector (src/cli).
 */
import { EXPIRY_VERSION } from './expiry.js';

/**
 * A row's payload as bytes. The library writes only blobs, but a file edited elsewhere may
 * hold text or a number, which better-sqlite3 would hand over as a string or a number, or
 * NULL (a kv table made elsewhere without NOT NULL): as a blob, NULL as an empty one, it
 * reads as the same bytes through every read, pages and getMany's records included.
 */
export const PAYLOAD = "coalesce(CAST(payload AS BLOB), x'')";

/**
 * The rows the library's reads can see, for counts that agree with them: those whose
 * category and key are blobs (a row edited elsewhere to hold text there is in no range of
 * bytes, so no read of the job finds it).
 */
export const READABLE_ROWS = "typeof(category) = 'blob' AND typeof(key) = 'blob'";

/** The kv table's columns in a file of schema `version` (1 or later). */
export function kvColumns(version: number): readonly string[] {
  const base = ['category', 'key', 'payload'];
  return version >= EXPIRY_VERSION ? [...base, 'expires_at'] : base;
}
