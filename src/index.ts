// Public surface: re-exports only.

export { AtomicBatch } from './atomic-batch.js';
export {
  PersistencyError,
  type PersistencyErrorKind,
  type PersistencyErrorOptions,
} from './errors.js';
export { Job } from './job.js';
export {
  compareKeys,
  type DecodedParts,
  decodeKey,
  f64,
  type IntWidth,
  i8,
  i16,
  i32,
  i64,
  Key,
  type KeyPart,
  type KeyRange,
  key,
  type PartType,
  type PartTypeMap,
  prefixRange,
  rawKey,
  SizedInt,
  text,
  toKey,
  u8,
  u16,
  u32,
  u64,
} from './keys.js';
export { jobFileName } from './paths.js';
export { decodePayload, payload, toPayload } from './payload.js';
export { Persistency } from './persistency.js';
export type { Change } from './protocol/changes.js';
export type {
  AtomicResult,
  IterateOptions,
  KvRow,
  PersistencyEvents,
  PersistencyOptions,
  PersistencyStats,
  PutOptions,
  ScanOptions,
  TxOp,
  WatchOptions,
  WriteFailureReason,
} from './types.js';
