/*
 * What SQLite, as better-sqlite3 opens it, can store, and how many items one call may
 * carry: one home for the limits that the input checks enforce and the README states.
 */
import { constants } from 'node:buffer';
import { MAX_MESSAGE_BYTES } from './protocol/bytes.js';

/**
 * SQLite's length limit for a BLOB and for a whole row: better-sqlite3 lowers SQLite's
 * default (1e9) to the longest string or Buffer this Node can make.
 */
export const SQLITE_MAX_LENGTH = Math.min(constants.MAX_LENGTH, constants.MAX_STRING_LENGTH);
/** A row's bytes besides its category, key and payload: its record header, at most. */
export const ROW_OVERHEAD = 32;
/** The longest key: alone in a row with a one-byte category and an empty payload. */
export const MAX_KEY_BYTES = SQLITE_MAX_LENGTH - ROW_OVERHEAD - 1;

/** Whether a row of these parts fits SQLite's limit. */
export function rowFits(category: number, key: number, payload: number): boolean {
  return category + key + payload + ROW_OVERHEAD <= SQLITE_MAX_LENGTH;
}

/** Why a row of these parts cannot be stored (for `where`), or undefined when it fits. */
export function rowTooBig(
  where: string,
  category: number,
  key: number,
  payload: number,
): string | undefined {
  if (rowFits(category, key, payload)) return undefined;
  const row = category + key + payload + ROW_OVERHEAD;
  return `${where}: a row of ${row} bytes (category, key, payload and ${ROW_OVERHEAD} of header) exceeds SQLite's limit of ${SQLITE_MAX_LENGTH}`;
}
/** The most ops one atomic batch may hold. */
export const MAX_BATCH_OPS = 1 << 22;
/**
 * The most keys one getMany request can carry in one message (4 bytes a key at the least):
 * the contract sets no other limit than memory, and a list claiming more (a proxy, say) is
 * refused before any key is read.
 */
export const MAX_GET_MANY_KEYS = Math.floor(MAX_MESSAGE_BYTES / 4);
