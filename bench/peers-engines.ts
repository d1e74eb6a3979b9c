/*
 * One small adapter per storage engine, all with the same interface, for bench/peers.ts and
 * bench/rss-child.ts. Every engine stores the same rows: row i has key key('bench', i) (its
 * bytes, as the engine's binary key type; Deno KV takes keys as arrays of parts, so there it
 * is ['bench', i]) and a 100-byte payload. Payloads are random bytes drawn from a pool of
 * 4,096 distinct values, so no engine gains from compressing them (LevelDB runs Snappy).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openKv } from '@deno/kv';
import Database from 'better-sqlite3';
import { ClassicLevel } from 'classic-level';
import { open as openLmdb } from 'lmdb';
import type { Result } from 'neverthrow';
import {
  type Job,
  type Key,
  key,
  Persistency,
  type PersistencyError,
  type PersistencyOptions,
} from '../src/index.js';
import { prefixRange } from '../src/keys.js';

const ALL_ENGINES = ['persistency', 'raw', 'deno-kv', 'lmdb', 'classic-level'] as const;
export type EngineName = (typeof ALL_ENGINES)[number];
/**
 * The engines of this run: all of them, or those named in PERSISTENCY_PEERS_ENGINES
 * (comma-separated; for development runs, e.g. `persistency,raw`: targets that name a
 * missing peer then print NaN).
 */
export const ENGINE_NAMES: readonly EngineName[] = (() => {
  const only = process.env.PERSISTENCY_PEERS_ENGINES?.split(',').map((s) => s.trim());
  return only === undefined ? ALL_ENGINES : ALL_ENGINES.filter((n) => only.includes(n));
})();

export const PAYLOAD_BYTES = 100;

/** `count` row numbers below `rows`, the same pseudo-random sequence in every run. */
export function randomOrder(count: number, rows: number): Uint32Array {
  const out = new Uint32Array(count);
  let s = 0x2545f491;
  for (let i = 0; i < count; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s >>> 0) % rows;
  }
  return out;
}

const POOL_SIZE = 4096;
/** The category of every row (ours and raw). */
export const CATEGORY = 'kv';
const CATEGORY_BYTES = Buffer.from(CATEGORY);

/** One open store (a job, a database file, an environment...). */
export interface Store {
  /** Put row i and return at once (fire-and-forget); `flush` makes it durable. */
  put(i: number): void;
  /** Put rows [from, to) as the engine does a bulk load best (raw: one transaction). */
  putRange(from: number, to: number): void;
  /** Resolve once every earlier put is durable on disk (as far as the engine allows). */
  flush(): Promise<void>;
  /** Untimed bulk load of rows [from, to), durable when it resolves (set-up of read workloads). */
  load(from: number, to: number): Promise<void>;
  /** The payload of row i. */
  get(i: number): Promise<Uint8Array | undefined>;
  /** Present when the engine reads synchronously in this thread (raw, lmdb). */
  getSync?(i: number): Uint8Array | undefined;
  /** Visit every row in key order (or reverse); returns the bytes touched (keys + values). */
  scan(reverse: boolean): Promise<number>;
  /** The number of rows. */
  count(): Promise<number>;
  close(): Promise<void>;
}

export interface Engine {
  readonly name: EngineName;
  /** Free-form caveats printed under the tables (durability, missing features, ...). */
  readonly notes: readonly string[];
  /** Open (creating) store `name` under directory `dir`, which already exists. */
  open(dir: string, name: string): Promise<Store>;
  /** Release process-wide resources (ours: the Persistency); call once its stores are closed. */
  shutdown(): Promise<void>;
}

// ---------------------------------------------------------------------------------------
// Shared rows

/** Keys and payloads of rows 0..n-1, built once and grown on demand. */
export class Rows {
  readonly keys: Key[] = [];
  /** The bytes of `keys[i]`, as a Buffer (raw, lmdb, classic-level). */
  readonly keyBuffers: Buffer[] = [];
  /** Deno KV's key for row i. */
  readonly denoKeys: [string, number][] = [];
  readonly payloads: Buffer[] = [];
  /** Keys of the scanned range: prefixRange(key('bench')). */
  readonly rangeStart: Buffer;
  readonly rangeStop: Buffer;
  readonly range: ReturnType<typeof prefixRange>;

  constructor(n: number) {
    const pool = Buffer.alloc(POOL_SIZE * PAYLOAD_BYTES);
    let seed = 0x9e3779b9;
    for (let i = 0; i < pool.length; i++) {
      seed = (seed ^ (seed << 13)) >>> 0;
      seed = (seed ^ (seed >>> 17)) >>> 0;
      seed = (seed ^ (seed << 5)) >>> 0;
      pool[i] = seed & 0xff;
    }
    for (let i = 0; i < POOL_SIZE; i++) {
      this.payloads.push(pool.subarray(i * PAYLOAD_BYTES, (i + 1) * PAYLOAD_BYTES));
    }
    this.range = prefixRange(key('bench'));
    this.rangeStart = Buffer.from(this.range.start.bytes);
    const stop = this.range.stop;
    if (stop === undefined) throw new Error("prefixRange(key('bench')) has no stop");
    this.rangeStop = Buffer.from(stop.bytes);
    this.ensure(n);
  }

  ensure(n: number): void {
    for (let i = this.keys.length; i < n; i++) {
      const k = key('bench', i);
      this.keys.push(k);
      this.keyBuffers.push(Buffer.from(k.bytes));
      this.denoKeys.push(['bench', i]);
    }
  }

  payload(i: number): Buffer {
    return this.payloads[i & (POOL_SIZE - 1)] as Buffer;
  }
}

function at<T>(xs: readonly T[], i: number): T {
  const x = xs[i];
  if (x === undefined) throw new Error(`row ${i} was not prepared`);
  return x;
}

function unwrap<T>(r: Result<T, PersistencyError>, what: string): T {
  if (r.isOk()) return r.value;
  throw new Error(`${what}: ${r.error.kind}: ${r.error.message}`);
}

// ---------------------------------------------------------------------------------------
// persistency (ours)

class OursStore implements Store {
  constructor(
    private readonly job: Job,
    private readonly rows: Rows,
    private readonly onClose: (id: string) => Promise<void>,
  ) {}

  put(i: number): void {
    this.job.persistPut(CATEGORY, at(this.rows.keys, i), this.rows.payload(i));
  }

  putRange(from: number, to: number): void {
    const { job, rows } = this;
    const keys = rows.keys;
    for (let i = from; i < to; i++) job.persistPut(CATEGORY, at(keys, i), rows.payload(i));
  }

  async flush(): Promise<void> {
    unwrap(await this.job.flush(), 'flush');
  }

  async load(from: number, to: number): Promise<void> {
    this.putRange(from, to);
    await this.flush();
  }

  async get(i: number): Promise<Uint8Array | undefined> {
    return unwrap(await this.job.get(CATEGORY, at(this.rows.keys, i)), 'get');
  }

  async scan(reverse: boolean): Promise<number> {
    const rows = unwrap(await this.job.scan(CATEGORY, this.rows.range, { reverse }), 'scan');
    let bytes = 0;
    for (const row of rows) bytes += row.key.byteLength + row.payload.length;
    return bytes;
  }

  async count(): Promise<number> {
    return unwrap(await this.job.count(CATEGORY, this.rows.range), 'count');
  }

  close(): Promise<void> {
    return this.onClose(this.job.id);
  }
}

/**
 * Ours. `Persistency` is a process-wide singleton on one root: a store opened under another
 * directory closes the current instance first (only allowed once all its stores are closed);
 * `shutdown` closes it.
 */
export class OursEngine implements Engine {
  readonly name = 'persistency' as const;
  readonly notes = [
    'persistency: WAL + synchronous=FULL; flush() resolves after the fsync of the commit.',
  ];
  #p: Persistency | undefined;
  #open = 0;
  #writeFailures = 0;

  constructor(
    private readonly rows: Rows,
    private readonly options: PersistencyOptions = {},
  ) {}

  async open(dir: string, name: string): Promise<Store> {
    if (this.#p !== undefined && this.#p.rootDir !== dir) {
      if (this.#open > 0) throw new Error(`persistency: ${this.#open} stores still open`);
      await this.shutdown();
    }
    if (this.#p === undefined) {
      const p = unwrap(Persistency.instance(dir, this.options), 'Persistency.instance');
      p.events.on('writeFailed', (e) => {
        if (this.#writeFailures++ === 0) console.error(`writeFailed: ${e.error.message}`);
      });
      this.#p = p;
    }
    const p = this.#p;
    const job = unwrap(await p.openJob(name), 'openJob');
    this.#open++;
    return new OursStore(job, this.rows, async (id) => {
      this.#open--;
      unwrap(await p.closeJob(id), 'closeJob');
    });
  }

  /** The instance in use (for its stats). */
  get instance(): Persistency | undefined {
    return this.#p;
  }

  async shutdown(): Promise<void> {
    const p = this.#p;
    this.#p = undefined;
    if (p !== undefined) unwrap(await p.close(), 'Persistency.close');
    if (this.#writeFailures > 0) throw new Error(`${this.#writeFailures} writes failed`);
  }
}

// ---------------------------------------------------------------------------------------
// raw better-sqlite3 in the main thread: the schema and pragmas of src/worker/backend.ts

type Bytes = Uint8Array;

class RawStore implements Store {
  readonly #db: Database.Database;
  readonly #insert: Database.Statement<[Bytes, Bytes, Bytes]>;
  readonly #get: Database.Statement<[Bytes, Bytes], Buffer>;
  readonly #scan: Record<'asc' | 'desc', Database.Statement<[Bytes, Bytes, Bytes], Buffer[]>>;
  readonly #count: Database.Statement<[Bytes, Bytes, Bytes], number>;
  readonly #begin: Database.Statement;
  readonly #commit: Database.Statement;
  readonly #bulk: (from: number, to: number) => void;

  constructor(
    path: string,
    private readonly rows: Rows,
  ) {
    const db = new Database(path, { timeout: 0 });
    this.#db = db;
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec(`CREATE TABLE IF NOT EXISTS kv (
       category BLOB NOT NULL,
       key BLOB NOT NULL,
       payload BLOB NOT NULL,
       PRIMARY KEY (category, key)
     ) WITHOUT ROWID`);
    this.#insert = db.prepare(
      'INSERT OR REPLACE INTO kv (category, key, payload) VALUES (?, ?, ?)',
    );
    this.#get = db
      .prepare<[Bytes, Bytes], Buffer>('SELECT payload FROM kv WHERE category = ? AND key = ?')
      .pluck();
    const scan = (dir: 'ASC' | 'DESC') =>
      db
        .prepare<[Bytes, Bytes, Bytes], Buffer[]>(
          `SELECT key, payload FROM kv WHERE category = ? AND key >= ? AND key < ? ORDER BY key ${dir}`,
        )
        .raw();
    this.#scan = { asc: scan('ASC'), desc: scan('DESC') };
    this.#count = db
      .prepare<[Bytes, Bytes, Bytes], number>(
        'SELECT COUNT(*) FROM kv WHERE category = ? AND key >= ? AND key < ?',
      )
      .pluck();
    this.#begin = db.prepare('BEGIN IMMEDIATE');
    this.#commit = db.prepare('COMMIT');
    const insert = this.#insert;
    this.#bulk = db.transaction((from: number, to: number) => {
      const keys = rows.keyBuffers;
      for (let i = from; i < to; i++) insert.run(CATEGORY_BYTES, at(keys, i), rows.payload(i));
    });
  }

  /** A put opens a transaction if none is open; `flush` commits it. */
  put(i: number): void {
    if (!this.#db.inTransaction) this.#begin.run();
    this.#insert.run(CATEGORY_BYTES, at(this.rows.keyBuffers, i), this.rows.payload(i));
  }

  putRange(from: number, to: number): void {
    if (this.#db.inTransaction) this.#commit.run();
    this.#bulk(from, to);
  }

  async flush(): Promise<void> {
    if (this.#db.inTransaction) this.#commit.run();
  }

  async load(from: number, to: number): Promise<void> {
    this.putRange(from, to);
    await this.flush();
  }

  getSync(i: number): Uint8Array | undefined {
    return this.#get.get(CATEGORY_BYTES, at(this.rows.keyBuffers, i));
  }

  async get(i: number): Promise<Uint8Array | undefined> {
    return this.getSync(i);
  }

  async scan(reverse: boolean): Promise<number> {
    const { rangeStart, rangeStop } = this.rows;
    const all = this.#scan[reverse ? 'desc' : 'asc'].all(CATEGORY_BYTES, rangeStart, rangeStop);
    let bytes = 0;
    for (const row of all) bytes += (row[0] as Buffer).length + (row[1] as Buffer).length;
    return bytes;
  }

  async count(): Promise<number> {
    const { rangeStart, rangeStop } = this.rows;
    return this.#count.get(CATEGORY_BYTES, rangeStart, rangeStop) ?? 0;
  }

  async close(): Promise<void> {
    if (this.#db.inTransaction) this.#commit.run();
    this.#db.close();
  }
}

class RawEngine implements Engine {
  readonly name = 'raw' as const;
  readonly notes = [
    'raw: better-sqlite3 in the main thread, same schema and pragmas (WAL, synchronous=FULL, EXCLUSIVE), prepared statements; it blocks the event loop.',
  ];
  constructor(private readonly rows: Rows) {}

  async open(dir: string, name: string): Promise<Store> {
    return new RawStore(join(dir, `${name}.db`), this.rows);
  }

  async shutdown(): Promise<void> {}
}

// ---------------------------------------------------------------------------------------
// Deno KV (@deno/kv: denokv's SQLite backend through N-API)

type DenoKv = Awaited<ReturnType<typeof openKv>>;

class DenoStore implements Store {
  #pending: Promise<unknown>[] = [];
  constructor(
    private readonly kv: DenoKv,
    private readonly rows: Rows,
  ) {}

  put(i: number): void {
    this.#pending.push(this.kv.set(at(this.rows.denoKeys, i), this.rows.payload(i)));
  }

  putRange(from: number, to: number): void {
    for (let i = from; i < to; i++) this.put(i);
  }

  async flush(): Promise<void> {
    const pending = this.#pending;
    this.#pending = [];
    await Promise.all(pending);
  }

  /** Atomic batches of 500 sets: one commit each rather than one per row. */
  async load(from: number, to: number): Promise<void> {
    await this.flush();
    for (let b = from; b < to; b += 500) {
      const op = this.kv.atomic();
      for (let i = b; i < Math.min(b + 500, to); i++) {
        op.set(at(this.rows.denoKeys, i), this.rows.payload(i));
      }
      const r = await op.commit();
      if (!r.ok) throw new Error('deno-kv: atomic load failed');
    }
  }

  async get(i: number): Promise<Uint8Array | undefined> {
    const entry = await this.kv.get<Uint8Array>(at(this.rows.denoKeys, i));
    return entry.value ?? undefined;
  }

  async scan(reverse: boolean): Promise<number> {
    let bytes = 0;
    for await (const entry of this.kv.list<Uint8Array>({ prefix: ['bench'] }, { reverse })) {
      bytes += entry.key.length + entry.value.length;
    }
    return bytes;
  }

  async count(): Promise<number> {
    let n = 0;
    for await (const _ of this.kv.list({ prefix: ['bench'] })) n++;
    return n;
  }

  async close(): Promise<void> {
    await this.flush();
    this.kv.close();
  }
}

class DenoEngine implements Engine {
  readonly name = 'deno-kv' as const;
  readonly notes = [
    "deno-kv: durability is not configurable from Node (no sync option in @deno/kv's API); a set resolves when denokv's SQLite commit returns.",
    "deno-kv: keys are ['bench', i] (Deno KV keys are arrays of parts); no count API: count = iterate kv.list (values come along, no keys-only listing).",
  ];
  constructor(private readonly rows: Rows) {}

  async open(dir: string, name: string): Promise<Store> {
    return new DenoStore(await openKv(join(dir, `${name}.kv`)), this.rows);
  }

  async shutdown(): Promise<void> {}
}

// ---------------------------------------------------------------------------------------
// LMDB (lmdb-js): memory-mapped B+tree, synchronous in-process reads

type Lmdb = ReturnType<typeof openLmdb<Buffer, Buffer>>;

class LmdbStore implements Store {
  #last: Promise<unknown> | undefined;
  constructor(
    private readonly db: Lmdb,
    private readonly rows: Rows,
  ) {}

  put(i: number): void {
    this.#last = this.db.put(at(this.rows.keyBuffers, i), this.rows.payload(i));
  }

  putRange(from: number, to: number): void {
    for (let i = from; i < to; i++) this.put(i);
  }

  async flush(): Promise<void> {
    const last = this.#last;
    this.#last = undefined;
    if (last !== undefined) await last;
    await this.db.flushed;
  }

  async load(from: number, to: number): Promise<void> {
    this.putRange(from, to);
    await this.flush();
  }

  getSync(i: number): Uint8Array | undefined {
    return this.db.get(at(this.rows.keyBuffers, i));
  }

  async get(i: number): Promise<Uint8Array | undefined> {
    return this.getSync(i);
  }

  async scan(reverse: boolean): Promise<number> {
    let bytes = 0;
    for (const { key: k, value } of this.db.getRange({ reverse })) bytes += k.length + value.length;
    return bytes;
  }

  async count(): Promise<number> {
    return this.db.getCount();
  }

  async close(): Promise<void> {
    await this.flush();
    await this.db.close();
  }
}

class LmdbEngine implements Engine {
  readonly name = 'lmdb' as const;
  readonly notes = [
    'lmdb: default durable commits (overlapping sync); flush = await the last put, then db.flushed. Gets are synchronous reads of the memory map in this thread.',
  ];
  constructor(private readonly rows: Rows) {}

  async open(dir: string, name: string): Promise<Store> {
    const db = openLmdb<Buffer, Buffer>({
      path: join(dir, `${name}.mdb`),
      keyEncoding: 'binary',
      encoding: 'binary',
    });
    return new LmdbStore(db, this.rows);
  }

  async shutdown(): Promise<void> {}
}

// ---------------------------------------------------------------------------------------
// classic-level (LevelDB)

type Level = ClassicLevel<Buffer, Buffer>;

class LevelStore implements Store {
  #pending: Promise<void>[] = [];
  constructor(
    private readonly db: Level,
    private readonly rows: Rows,
  ) {}

  put(i: number): void {
    this.#pending.push(this.db.put(at(this.rows.keyBuffers, i), this.rows.payload(i)));
  }

  putRange(from: number, to: number): void {
    for (let i = from; i < to; i++) this.put(i);
  }

  /** Await every put, then one synced put: syncing the log syncs everything before it. */
  async flush(): Promise<void> {
    const pending = this.#pending;
    this.#pending = [];
    await Promise.all(pending);
    await this.db.put(SYNC_KEY, SYNC_VALUE, { sync: true });
  }

  async load(from: number, to: number): Promise<void> {
    this.putRange(from, to);
    await this.flush();
  }

  async get(i: number): Promise<Uint8Array | undefined> {
    return this.db.get(at(this.rows.keyBuffers, i));
  }

  async scan(reverse: boolean): Promise<number> {
    const { rangeStart, rangeStop } = this.rows;
    const all = await this.db.iterator({ gte: rangeStart, lt: rangeStop, reverse }).all();
    let bytes = 0;
    for (const [k, v] of all) bytes += k.length + v.length;
    return bytes;
  }

  async count(): Promise<number> {
    const { rangeStart, rangeStop } = this.rows;
    const it = this.db.keys({ gte: rangeStart, lt: rangeStop });
    let n = 0;
    try {
      for (;;) {
        const batch = await it.nextv(1000);
        if (batch.length === 0) return n;
        n += batch.length;
      }
    } finally {
      await it.close();
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.#pending);
    await this.db.close();
  }
}

/** Outside the scanned range (a lone 0xff byte sorts after every key('bench', i)). */
const SYNC_KEY = Buffer.from([0xff]);
const SYNC_VALUE = Buffer.alloc(1);

class LevelEngine implements Engine {
  readonly name = 'classic-level' as const;
  readonly notes = [
    'classic-level: durability = a final put with { sync: true } (it syncs the log, so every write before it); default options (Snappy on: payloads are random bytes).',
    'classic-level: no count API: count = iterate keys only (keys({ gte, lt }).nextv(1000)). Scans use iterator({ gte, lt, reverse }).all().',
  ];
  constructor(private readonly rows: Rows) {}

  async open(dir: string, name: string): Promise<Store> {
    const db: Level = new ClassicLevel<Buffer, Buffer>(join(dir, name), {
      keyEncoding: 'buffer',
      valueEncoding: 'buffer',
    });
    await db.open();
    return new LevelStore(db, this.rows);
  }

  async shutdown(): Promise<void> {}
}

// ---------------------------------------------------------------------------------------

/** An engine; `options` are ours (`Persistency.instance`'s), ignored by the peers. */
export function makeEngine(name: EngineName, rows: Rows, options?: PersistencyOptions): Engine {
  switch (name) {
    case 'persistency':
      return new OursEngine(rows, options);
    case 'raw':
      return new RawEngine(rows);
    case 'deno-kv':
      return new DenoEngine(rows);
    case 'lmdb':
      return new LmdbEngine(rows);
    case 'classic-level':
      return new LevelEngine(rows);
  }
}

export function isEngineName(s: string): s is EngineName {
  return (ALL_ENGINES as readonly string[]).includes(s);
}

/** `name@version` of each package under test, read from its package.json under `repoRoot`. */
export function packageVersions(repoRoot: string): string {
  const version = (dir: string): string => {
    try {
      const path = join(repoRoot, dir, 'package.json');
      return (JSON.parse(readFileSync(path, 'utf8')) as { version?: string }).version ?? '?';
    } catch {
      return '?';
    }
  };
  const db = new Database(':memory:');
  const sqlite = db.prepare('SELECT sqlite_version()').pluck().get() as string;
  db.close();
  return [
    `persistency@${version('.')}`,
    `better-sqlite3@${version('node_modules/better-sqlite3')} (SQLite ${sqlite})`,
    `@deno/kv@${version('node_modules/@deno/kv')}`,
    `lmdb@${version('node_modules/lmdb')}`,
    `classic-level@${version('node_modules/classic-level')}`,
  ].join(', ');
}
