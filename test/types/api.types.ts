/*
 * Compile-only checks of the public API's types (CONTRACT.md §3, §4): checked by
 * `tsc -p tsconfig.json`, never run. Every read is a ResultAsync, every write is void.
 */
import type { Result, ResultAsync } from 'neverthrow';
import { expectTypeOf } from 'vitest';
import {
  type Job,
  type Key,
  type KeyRange,
  type KvRow,
  Persistency,
  type PersistencyError,
  type PersistencyEvents,
  type TxOp,
} from '../../src/index.js';

declare const job: Job;
declare const p: Persistency;
declare const k: Key;
declare const range: KeyRange;

// Job reads
expectTypeOf(job.get('c', k)).toEqualTypeOf<
  ResultAsync<Uint8Array | undefined, PersistencyError>
>();
expectTypeOf(job.exists('c', k)).toEqualTypeOf<ResultAsync<boolean, PersistencyError>>();
expectTypeOf(job.scan('c', range)).toEqualTypeOf<ResultAsync<KvRow[], PersistencyError>>();
expectTypeOf(job.scan('c', range, { reverse: true, limit: 3 })).toEqualTypeOf<
  ResultAsync<KvRow[], PersistencyError>
>();
expectTypeOf(job.scanPrefix('c', k)).toEqualTypeOf<ResultAsync<KvRow[], PersistencyError>>();
expectTypeOf(job.count('c', range)).toEqualTypeOf<ResultAsync<number, PersistencyError>>();
expectTypeOf(job.deleteAcked('c', k)).toEqualTypeOf<ResultAsync<boolean, PersistencyError>>();
expectTypeOf(job.flush()).toEqualTypeOf<ResultAsync<void, PersistencyError>>();

// Job writes: fire-and-forget
expectTypeOf(job.persist).returns.toEqualTypeOf<void>();
expectTypeOf(job.persistPut).returns.toEqualTypeOf<void>();
expectTypeOf(job.persistDelete).returns.toEqualTypeOf<void>();
expectTypeOf(job.persistDeletePrefix).returns.toEqualTypeOf<void>();
expectTypeOf(job.persistEncoded).returns.toEqualTypeOf<void>();
expectTypeOf(job.persist).parameter(0).toEqualTypeOf<readonly TxOp[]>();
expectTypeOf(job.persistPut).parameter(2).toEqualTypeOf<Uint8Array>();
expectTypeOf(job.id).toEqualTypeOf<string>();
expectTypeOf(job.running).toEqualTypeOf<boolean>();

// Persistency
expectTypeOf(Persistency.instance('root')).toEqualTypeOf<Result<Persistency, PersistencyError>>();
expectTypeOf(Persistency.instance()).toEqualTypeOf<Result<Persistency, PersistencyError>>();
expectTypeOf(Persistency.reset()).toEqualTypeOf<Promise<void>>();
expectTypeOf(p.openJob('j')).toEqualTypeOf<ResultAsync<Job, PersistencyError>>();
expectTypeOf(p.closeJob('j')).toEqualTypeOf<ResultAsync<void, PersistencyError>>();
expectTypeOf(p.dropJob('j')).toEqualTypeOf<ResultAsync<void, PersistencyError>>();
expectTypeOf(p.close()).toEqualTypeOf<ResultAsync<void, PersistencyError>>();
expectTypeOf(p.job('j')).toEqualTypeOf<Result<Job, PersistencyError>>();
expectTypeOf(p.hasJob('j')).toEqualTypeOf<boolean>();
expectTypeOf(p.rootDir).toEqualTypeOf<string>();

// String-id forms mirror the Job's
expectTypeOf(p.get('j', 'c', k)).toEqualTypeOf<
  ResultAsync<Uint8Array | undefined, PersistencyError>
>();
expectTypeOf(p.exists('j', 'c', k)).toEqualTypeOf<ResultAsync<boolean, PersistencyError>>();
expectTypeOf(p.scan('j', 'c', range)).toEqualTypeOf<ResultAsync<KvRow[], PersistencyError>>();
expectTypeOf(p.scanPrefix('j', 'c', k)).toEqualTypeOf<ResultAsync<KvRow[], PersistencyError>>();
expectTypeOf(p.count('j', 'c', range)).toEqualTypeOf<ResultAsync<number, PersistencyError>>();
expectTypeOf(p.deleteAcked('j', 'c', k)).toEqualTypeOf<ResultAsync<boolean, PersistencyError>>();
expectTypeOf(p.flush('j')).toEqualTypeOf<ResultAsync<void, PersistencyError>>();
expectTypeOf(p.persist).returns.toEqualTypeOf<void>();
expectTypeOf(p.persistPut).returns.toEqualTypeOf<void>();
expectTypeOf(p.persistDelete).returns.toEqualTypeOf<void>();
expectTypeOf(p.persistDeletePrefix).returns.toEqualTypeOf<void>();
expectTypeOf(p.persistEncoded).returns.toEqualTypeOf<void>();

// Events
expectTypeOf<PersistencyEvents['writeFailed']['reason']>().toEqualTypeOf<
  'invalid' | 'closed' | 'notFound' | 'backend'
>();
expectTypeOf<PersistencyEvents['writeFailed']['error']>().toEqualTypeOf<PersistencyError>();
expectTypeOf<PersistencyEvents['jobClosed']>().toEqualTypeOf<{
  readonly jobId: string;
  readonly dropped: boolean;
}>();

// Wrong argument types are compile errors.
// @ts-expect-error a string is not a Key
job.get('c', 'k');
// @ts-expect-error a payload must be a Uint8Array
job.persistPut('c', k, 'payload');
// @ts-expect-error a KeyRange needs a start
job.scan('c', {});
