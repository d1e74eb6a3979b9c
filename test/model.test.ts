/*
 * Model-based test (issue "Reliability"): fast-check drives random sequences of job calls
 * against a real job and against a plain in-memory model (one Map per category from
 * hex(key) to payload, sorted with compareKeys for scans). Every read must match the
 * model exactly: key bytes, payload bytes and order.
 *
 * Writes are fire-and-forget and a read observes every earlier write, so the model is
 * updated when a write is issued and writes are never awaited.
 *
 * One job per root is reused across runs (workers take ~0.2 s to start); each run starts
 * by clearing every category. Replay a failure with FC_SEED (and FC_PATH) from the
 * report; FC_NUM_RUNS (per root) and FC_MAX_COMMANDS tune the amount of work.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import type { Result } from 'neverthrow';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  compareKeys,
  i64,
  type Job,
  Key,
  type KvRow,
  key,
  Persistency,
  PersistencyError,
  type PersistencyErrorKind,
  type PersistencyEvents,
  rawKey,
  type ScanOptions,
  type TxOp,
  toPayload,
  u8,
} from '../src/index.js';

// ---------------------------------------------------------------------------------------
// Settings

const envInt = (name: string): number | undefined => {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : Number(v);
};
const SEED = envInt('FC_SEED');
const PATH = process.env.FC_PATH || undefined;
const NUM_RUNS = envInt('FC_NUM_RUNS') ?? 150;
const MAX_COMMANDS = envInt('FC_MAX_COMMANDS') ?? 40;

const JOB_ID = 'model-job';
const CATS = ['alpha', 'beta', 'γ'] as const;

// ---------------------------------------------------------------------------------------
// Helpers

const tempDirs: string[] = [];

afterEach(async () => {
  await Persistency.reset();
});

afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function unwrap<T>(r: Result<T, PersistencyError>, what: string): T {
  if (r.isErr())
    throw new Error(`${what}: expected Ok, got Err(${r.error.kind}): ${r.error.message}`);
  return r.value;
}

function expectErr(r: Result<unknown, PersistencyError>, kind: PersistencyErrorKind, what: string) {
  if (r.isOk()) throw new Error(`${what}: expected Err(${kind}), got Ok`);
  expect(r.error, what).toBeInstanceOf(PersistencyError);
  expect(r.error.kind, what).toBe(kind);
}

const hex = (b: Uint8Array): string =>
  Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');
const rowsHex = (rows: readonly KvRow[]): string[][] =>
  rows.map((r) => {
    expect(r.key).toBeInstanceOf(Key);
    return [hex(r.key.bytes), hex(r.payload)];
  });

function startsWith(b: Uint8Array, prefix: Uint8Array): boolean {
  if (prefix.length > b.length) return false;
  for (let i = 0; i < prefix.length; i++) if (b[i] !== prefix[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------
// The key universe: small, mixing strings and ints, with shared prefixes, the empty key
// and keys starting with 0xFF (whose prefixes have no successor).

interface Labeled {
  readonly label: string;
  readonly key: Key;
}

const STRS = ['a', 'b', 'ab', 'é'];
const INTS = [-1, 0, 1, 2, 300];
const UNIVERSE: readonly Labeled[] = [
  { label: 'key()', key: key() },
  ...STRS.map((s) => ({ label: `key('${s}')`, key: key(s) })),
  ...STRS.flatMap((s) => INTS.map((n) => ({ label: `key('${s}', ${n})`, key: key(s, n) }))),
  ...STRS.flatMap((s) =>
    [0, 1].map((n) => ({ label: `key('${s}', ${n}, 'x')`, key: key(s, n, 'x') })),
  ),
  ...INTS.map((n) => ({ label: `key(${n})`, key: key(n) })),
  { label: 'key(u8(255))', key: key(u8(255)) },
  { label: "key(u8(255), 'a')", key: key(u8(255), 'a') },
  { label: 'rawKey(ffff)', key: rawKey(new Uint8Array([0xff, 0xff])) },
  { label: 'key(true)', key: key(true) },
];

const keyArb: fc.Arbitrary<Labeled> = fc
  .nat(UNIVERSE.length - 1)
  .map((i) => UNIVERSE[i] as Labeled);

/** A universe key cut to a random length: real prefixes and byte-level prefixes (also empty). */
const cutArb: fc.Arbitrary<Labeled> = fc.tuple(keyArb, fc.nat(24)).map(([{ label, key: k }, n]) => {
  const b = k.bytes;
  if (n >= b.length) return { label, key: k };
  const cut = b.slice(0, n);
  return { label: `rawKey(${hex(cut) || '∅'})`, key: rawKey(cut) };
});

/** Prefixes and range bounds: mostly whole universe keys, sometimes byte cuts of them. */
const boundArb: fc.Arbitrary<Labeled> = fc.oneof(
  { weight: 2, arbitrary: keyArb },
  { weight: 1, arbitrary: cutArb },
);

const catArb = fc.constantFrom(...CATS);
const payloadArb = fc.uint8Array({ maxLength: 10 });
const viaArb = fc.constantFrom('job' as const, 'job' as const, 'facade' as const);
const optionsArb: fc.Arbitrary<ScanOptions | undefined> = fc.option(
  fc.record(
    {
      reverse: fc.boolean(),
      limit: fc.nat(6),
    },
    { requiredKeys: [] },
  ),
  { nil: undefined },
);

const showOptions = (o: ScanOptions | undefined): string =>
  o === undefined ? '' : `, ${JSON.stringify(o)}`;

// ---------------------------------------------------------------------------------------
// Model and real system

interface Row {
  readonly key: Uint8Array;
  readonly payload: Uint8Array;
}

type WriteFailed = PersistencyEvents['writeFailed'];

class Model {
  readonly cats = new Map<string, Map<string, Row>>(CATS.map((c) => [c, new Map()]));
  /** writeFailed events the run has provoked so far. */
  expectedFailures = 0;
  /** Writes refused since the last flush: the next flush reports them (WriteFailed). */
  unflushed = 0;
  reopens = 0;

  table(cat: string): Map<string, Row> {
    const t = this.cats.get(cat);
    if (t === undefined) throw new Error(`unknown category ${cat}`);
    return t;
  }

  put(cat: string, k: Key, payload: Uint8Array): void {
    const b = k.bytes;
    this.table(cat).set(hex(b), { key: b, payload: payload.slice() });
  }

  delete(cat: string, k: Key): boolean {
    return this.table(cat).delete(hex(k.bytes));
  }

  deletePrefix(cat: string, prefix: Key): void {
    const p = prefix.bytes;
    const t = this.table(cat);
    for (const [h, row] of [...t]) if (startsWith(row.key, p)) t.delete(h);
  }

  apply(op: TxOp): void {
    if (op.kind === 'put') this.put(op.category, op.key, op.payload);
    else if (op.kind === 'delete') this.delete(op.category, op.key);
    else this.deletePrefix(op.category, op.prefix);
  }

  sorted(cat: string): Row[] {
    return [...this.table(cat).values()].sort((a, b) => compareKeys(a.key, b.key));
  }

  range(cat: string, start: Key, stop: Key | undefined): Row[] {
    const s = start.bytes;
    const e = stop?.bytes;
    return this.sorted(cat).filter(
      (r) =>
        compareKeys(r.key, s) >= 0 &&
        (e === undefined || e.length === 0 || compareKeys(r.key, e) < 0),
    );
  }

  scan(rows: Row[], options: ScanOptions | undefined): string[][] {
    const ordered = options?.reverse === true ? rows.reverse() : rows;
    const limited = options?.limit === undefined ? ordered : ordered.slice(0, options.limit);
    return limited.map((r) => [hex(r.key), hex(r.payload)]);
  }
}

/** The real system: one Persistency and one job per root, reused across runs. */
interface Real {
  readonly mode: string;
  readonly p: Persistency;
  job: Job;
  readonly failures: WriteFailed[];
  commands: number;
  reopens: number;
}

type Cmd = fc.AsyncCommand<Model, Real>;

/** Checks that the run has seen exactly the writeFailed events it provoked. */
function checkFailures(m: Model, r: Real, what: string): void {
  const extra = r.failures.slice(m.expectedFailures);
  expect(
    extra.map((f) => `${f.reason}: ${f.error.message}`),
    `${what}: unexpected writeFailed events`,
  ).toEqual([]);
  expect(r.failures.length, `${what}: writeFailed events`).toBe(m.expectedFailures);
}

abstract class Base implements Cmd {
  check(_m: Readonly<Model>): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    r.commands++;
    await this.apply(m, r);
    checkFailures(m, r, this.toString());
  }
  abstract apply(m: Model, r: Real): Promise<void> | void;
  abstract toString(): string;
}

// ---------------------------------------------------------------------------------------
// Write commands: issued, never awaited; the model follows at once.

class PutCmd extends Base {
  constructor(
    readonly cat: string,
    readonly k: Labeled,
    readonly payload: Uint8Array,
    readonly via: 'job' | 'facade',
  ) {
    super();
  }
  apply(m: Model, r: Real): void {
    if (this.via === 'job') r.job.persistPut(this.cat, this.k.key, this.payload);
    else r.p.persistPut(JOB_ID, this.cat, this.k.key, this.payload);
    m.put(this.cat, this.k.key, this.payload);
  }
  toString(): string {
    return `${this.via}.persistPut('${this.cat}', ${this.k.label}, ${hex(this.payload) || '∅'})`;
  }
}

class EncodedCmd extends Base {
  constructor(
    readonly cat: string,
    readonly k: Labeled,
    readonly value: [string, number],
  ) {
    super();
  }
  apply(m: Model, r: Real): void {
    r.job.persistEncoded(this.cat, this.k.key, this.value);
    m.put(this.cat, this.k.key, toPayload(this.value));
  }
  toString(): string {
    return `job.persistEncoded('${this.cat}', ${this.k.label}, ${JSON.stringify(this.value)})`;
  }
}

class DeleteCmd extends Base {
  constructor(
    readonly cat: string,
    readonly k: Labeled,
    readonly via: 'job' | 'facade',
  ) {
    super();
  }
  apply(m: Model, r: Real): void {
    if (this.via === 'job') r.job.persistDelete(this.cat, this.k.key);
    else r.p.persistDelete(JOB_ID, this.cat, this.k.key);
    m.delete(this.cat, this.k.key);
  }
  toString(): string {
    return `${this.via}.persistDelete('${this.cat}', ${this.k.label})`;
  }
}

class DeletePrefixCmd extends Base {
  constructor(
    readonly cat: string,
    readonly prefix: Labeled,
    readonly via: 'job' | 'facade',
  ) {
    super();
  }
  apply(m: Model, r: Real): void {
    if (this.via === 'job') r.job.persistDeletePrefix(this.cat, this.prefix.key);
    else r.p.persistDeletePrefix(JOB_ID, this.cat, this.prefix.key);
    m.deletePrefix(this.cat, this.prefix.key);
  }
  toString(): string {
    return `${this.via}.persistDeletePrefix('${this.cat}', ${this.prefix.label})`;
  }
}

interface LabeledOp {
  readonly label: string;
  readonly op: TxOp;
}

const opArb: fc.Arbitrary<LabeledOp> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.tuple(catArb, keyArb, payloadArb).map(([category, k, payload]) => ({
      label: `put('${category}', ${k.label}, ${hex(payload) || '∅'})`,
      op: { kind: 'put' as const, category, key: k.key, payload },
    })),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(catArb, keyArb).map(([category, k]) => ({
      label: `delete('${category}', ${k.label})`,
      op: { kind: 'delete' as const, category, key: k.key },
    })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(catArb, boundArb).map(([category, k]) => ({
      label: `deletePrefix('${category}', ${k.label})`,
      op: { kind: 'deletePrefix' as const, category, prefix: k.key },
    })),
  },
);

/** Ops that refuse the whole batch they are in. */
const BAD_OPS: readonly [string, () => unknown][] = [
  ["put with payload 'x'", () => ({ kind: 'put', category: 'alpha', key: key('a'), payload: 'x' })],
  [
    'put with a Uint16Array payload',
    () => ({ kind: 'put', category: 'alpha', key: key('a'), payload: new Uint16Array(2) }),
  ],
  [
    "put with category ''",
    () => ({ kind: 'put', category: '', key: key('a'), payload: new Uint8Array(1) }),
  ],
  [
    'put with a lone-surrogate category',
    () => ({ kind: 'put', category: '\uD800', key: key('a'), payload: new Uint8Array(1) }),
  ],
  ["delete with key 'a'", () => ({ kind: 'delete', category: 'beta', key: 'a' })],
  [
    'deletePrefix with a Uint8Array prefix',
    () => ({ kind: 'deletePrefix', category: 'beta', prefix: key('a').bytes }),
  ],
  [
    "kind 'upsert'",
    () => ({ kind: 'upsert', category: 'alpha', key: key('a'), payload: new Uint8Array(1) }),
  ],
  ['null', () => null],
];

class BatchCmd extends Base {
  constructor(
    readonly ops: readonly LabeledOp[],
    readonly bad: { at: number; which: number } | undefined,
    readonly via: 'job' | 'facade',
  ) {
    super();
  }
  apply(m: Model, r: Real): void {
    const ops: unknown[] = this.ops.map((o) => o.op);
    if (this.bad !== undefined) {
      const [, make] = BAD_OPS[this.bad.which] as [string, () => unknown];
      ops.splice(this.bad.at % (ops.length + 1), 0, make());
    }
    const before = r.failures.length;
    if (this.via === 'job') r.job.persist(ops as TxOp[]);
    else r.p.persist(JOB_ID, ops as TxOp[]);
    if (this.bad === undefined) {
      for (const o of this.ops) m.apply(o.op);
      return;
    }
    // The whole batch is refused at once; the model stays as it was.
    m.expectedFailures++;
    m.unflushed++;
    expect(r.failures.length - before, `${this} emits one writeFailed event`).toBe(1);
    const f = r.failures[before] as WriteFailed;
    expect(f.reason).toBe('invalid');
    expect(f.jobId).toBe(JOB_ID);
    expect(f.count).toBe(ops.length);
    expect(f.error).toBeInstanceOf(PersistencyError);
    expect(f.error.kind).toBe('InvalidArgument');
  }
  toString(): string {
    const labels = this.ops.map((o) => o.label);
    if (this.bad !== undefined) {
      labels.splice(this.bad.at % (labels.length + 1), 0, `BAD(${BAD_OPS[this.bad.which]?.[0]})`);
    }
    return `${this.via}.persist([${labels.join(', ')}])`;
  }
}

// ---------------------------------------------------------------------------------------
// Read commands: awaited and compared with the model.

class GetCmd extends Base {
  constructor(
    readonly cat: string,
    readonly k: Labeled,
    readonly via: 'job' | 'facade',
  ) {
    super();
  }
  async apply(m: Model, r: Real): Promise<void> {
    const got = unwrap(
      await (this.via === 'job'
        ? r.job.get(this.cat, this.k.key)
        : r.p.get(JOB_ID, this.cat, this.k.key)),
      this.toString(),
    );
    const want = m.table(this.cat).get(hex(this.k.key.bytes));
    expect(got === undefined ? undefined : hex(got), this.toString()).toBe(
      want === undefined ? undefined : hex(want.payload),
    );
  }
  toString(): string {
    return `${this.via}.get('${this.cat}', ${this.k.label})`;
  }
}

class ExistsCmd extends Base {
  constructor(
    readonly cat: string,
    readonly k: Labeled,
  ) {
    super();
  }
  async apply(m: Model, r: Real): Promise<void> {
    const got = unwrap(await r.job.exists(this.cat, this.k.key), this.toString());
    expect(got, this.toString()).toBe(m.table(this.cat).has(hex(this.k.key.bytes)));
  }
  toString(): string {
    return `job.exists('${this.cat}', ${this.k.label})`;
  }
}

/** Scans go through the job, the facade (string id), or an iterator of small pages. */
type ScanVia = 'job' | 'facade' | 'iterate';
const scanViaArb = fc.constantFrom<ScanVia>('job', 'facade', 'iterate');
/** Iterator pages of 3 rows: most iterations here cross pages. */
const PAGE = 3;

async function collect(it: AsyncIterable<KvRow>): Promise<KvRow[]> {
  const rows: KvRow[] = [];
  for await (const row of it) rows.push(row);
  return rows;
}

class ScanCmd extends Base {
  constructor(
    readonly cat: string,
    readonly start: Labeled,
    readonly stop: Labeled | undefined,
    readonly options: ScanOptions | undefined,
    readonly via: ScanVia,
  ) {
    super();
  }
  async apply(m: Model, r: Real): Promise<void> {
    const range =
      this.stop === undefined
        ? { start: this.start.key }
        : { start: this.start.key, stop: this.stop.key };
    const got =
      this.via === 'iterate'
        ? await collect(r.job.iterate(this.cat, range, { ...this.options, pageSize: PAGE }))
        : unwrap(
            await (this.via === 'job'
              ? r.job.scan(this.cat, range, this.options)
              : r.p.scan(JOB_ID, this.cat, range, this.options)),
            this.toString(),
          );
    const want = m.scan(m.range(this.cat, this.start.key, this.stop?.key), this.options);
    expect(rowsHex(got), this.toString()).toEqual(want);
  }
  toString(): string {
    const stop = this.stop === undefined ? '' : `, stop: ${this.stop.label}`;
    const call = this.via === 'iterate' ? 'job.iterate' : `${this.via}.scan`;
    return `${call}('${this.cat}', { start: ${this.start.label}${stop} }${showOptions(this.options)})`;
  }
}

class ScanPrefixCmd extends Base {
  constructor(
    readonly cat: string,
    readonly prefix: Labeled,
    readonly options: ScanOptions | undefined,
    readonly via: ScanVia,
  ) {
    super();
  }
  async apply(m: Model, r: Real): Promise<void> {
    const got =
      this.via === 'iterate'
        ? await collect(
            r.job.iteratePrefix(this.cat, this.prefix.key, { ...this.options, pageSize: PAGE }),
          )
        : unwrap(
            await (this.via === 'job'
              ? r.job.scanPrefix(this.cat, this.prefix.key, this.options)
              : r.p.scanPrefix(JOB_ID, this.cat, this.prefix.key, this.options)),
            this.toString(),
          );
    const p = this.prefix.key.bytes;
    const want = m.scan(
      m.sorted(this.cat).filter((row) => startsWith(row.key, p)),
      this.options,
    );
    expect(rowsHex(got), this.toString()).toEqual(want);
  }
  toString(): string {
    const call = this.via === 'iterate' ? 'job.iteratePrefix' : `${this.via}.scanPrefix`;
    return `${call}('${this.cat}', ${this.prefix.label}${showOptions(this.options)})`;
  }
}

class CountCmd extends Base {
  constructor(
    readonly cat: string,
    readonly start: Labeled,
    readonly stop: Labeled | undefined,
  ) {
    super();
  }
  async apply(m: Model, r: Real): Promise<void> {
    const range =
      this.stop === undefined
        ? { start: this.start.key }
        : { start: this.start.key, stop: this.stop.key };
    const got = unwrap(await r.job.count(this.cat, range), this.toString());
    expect(got, this.toString()).toBe(m.range(this.cat, this.start.key, this.stop?.key).length);
  }
  toString(): string {
    const stop = this.stop === undefined ? '' : `, stop: ${this.stop.label}`;
    return `job.count('${this.cat}', { start: ${this.start.label}${stop} })`;
  }
}

class DeleteAckedCmd extends Base {
  constructor(
    readonly cat: string,
    readonly k: Labeled,
    readonly via: 'job' | 'facade',
  ) {
    super();
  }
  async apply(m: Model, r: Real): Promise<void> {
    const pending =
      this.via === 'job'
        ? r.job.deleteAcked(this.cat, this.k.key)
        : r.p.deleteAcked(JOB_ID, this.cat, this.k.key);
    const had = m.delete(this.cat, this.k.key);
    expect(unwrap(await pending, this.toString()), this.toString()).toBe(had);
  }
  toString(): string {
    return `${this.via}.deleteAcked('${this.cat}', ${this.k.label})`;
  }
}

/** An int64 counter's value, or undefined when the payload is not 8 bytes. */
function counterOf(payload: Uint8Array): bigint | undefined {
  if (payload.length !== 8) return undefined;
  const view = new DataView(payload.buffer, payload.byteOffset, 8);
  return BigInt.asIntN(64, view.getBigUint64(0) ^ (1n << 63n));
}

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

/**
 * Add to a counter. Fire-and-forget (`persistAdd`) where the model says it applies; an
 * awaited atomic add where it must fail (not a counter, or out of int64), whose outcome is
 * checked (a fire-and-forget failure would be reported later, not at this command).
 */
class AddCmd extends Base {
  constructor(
    readonly cat: string,
    readonly k: Labeled,
    readonly delta: number,
    readonly via: 'job' | 'facade' | 'atomic',
  ) {
    super();
  }
  async apply(m: Model, r: Real): Promise<void> {
    const row = m.table(this.cat).get(hex(this.k.key.bytes));
    const old = row === undefined ? 0n : counterOf(row.payload);
    const sum = old === undefined ? undefined : old + BigInt(this.delta);
    const fails =
      sum === undefined
        ? 'notCounter'
        : sum < INT64_MIN || sum > INT64_MAX
          ? 'overflow'
          : undefined;
    if (fails === undefined && this.via !== 'atomic') {
      if (this.via === 'job') r.job.persistAdd(this.cat, this.k.key, this.delta);
      else r.p.persistAdd(JOB_ID, this.cat, this.k.key, this.delta);
    } else {
      const done = await r.job.atomic().add(this.cat, this.k.key, this.delta).commit();
      expect(unwrap(done, this.toString()), this.toString()).toEqual(
        fails === undefined ? { ok: true } : { ok: false, reason: fails },
      );
    }
    if (fails === undefined) m.put(this.cat, this.k.key, toPayload(i64(sum as bigint)));
  }
  toString(): string {
    return `${this.via}.add('${this.cat}', ${this.k.label}, ${this.delta})`;
  }
}

/** An atomic batch: checks that hold or not (as the model says), then ops, all or none. */
class AtomicCmd extends Base {
  constructor(
    readonly checks: readonly {
      cat: string;
      k: Labeled;
      expect: 'current' | 'absent' | Uint8Array;
    }[],
    readonly ops: readonly LabeledOp[],
  ) {
    super();
  }
  async apply(m: Model, r: Real): Promise<void> {
    let batch = r.job.atomic();
    let holds = true;
    for (const c of this.checks) {
      const row = m.table(c.cat).get(hex(c.k.key.bytes));
      const expected =
        c.expect === 'current' ? row?.payload : c.expect === 'absent' ? undefined : c.expect;
      holds &&=
        expected === undefined
          ? row === undefined
          : row !== undefined && hex(row.payload) === hex(expected);
      batch = batch.check(c.cat, c.k.key, expected);
    }
    for (const { op } of this.ops) {
      if (op.kind === 'put') batch = batch.put(op.category, op.key, op.payload);
      else if (op.kind === 'delete') batch = batch.delete(op.category, op.key);
      else batch = batch.deletePrefix(op.category, op.prefix);
    }
    const done = unwrap(await batch.commit(), this.toString());
    expect(done, this.toString()).toEqual(holds ? { ok: true } : { ok: false, reason: 'check' });
    if (holds) for (const { op } of this.ops) m.apply(op);
  }
  toString(): string {
    const checks = this.checks.map(
      (c) =>
        `check('${c.cat}', ${c.k.label}, ${typeof c.expect === 'string' ? c.expect : hex(c.expect) || '∅'})`,
    );
    return `job.atomic().${[...checks, ...this.ops.map((o) => o.label)].join('.')}.commit()`;
  }
}

/** A flush: Ok, or Err(WriteFailed) counting the writes refused since the last flush. */
async function expectFlush(m: Model, r: Real, what: string): Promise<void> {
  const flushed = await r.job.flush();
  if (m.unflushed === 0) unwrap(flushed, what);
  else {
    expectErr(flushed, 'WriteFailed', what);
    expect(flushed.isErr() && flushed.error.count, `${what}: writes counted`).toBe(m.unflushed);
  }
  m.unflushed = 0;
}

class FlushCmd extends Base {
  async apply(m: Model, r: Real): Promise<void> {
    await expectFlush(m, r, 'flush');
  }
  toString(): string {
    return 'job.flush()';
  }
}

class ReopenCmd extends Base {
  override check(m: Readonly<Model>): boolean {
    return m.reopens === 0; // a worker takes ~0.2 s to start: at most one reopen per run
  }
  async apply(m: Model, r: Real): Promise<void> {
    m.reopens++;
    r.reopens++;
    const old = r.job;
    unwrap(await r.p.closeJob(JOB_ID), 'closeJob');
    expect(old.running).toBe(false);
    expect(r.p.hasJob(JOB_ID)).toBe(false);
    expectErr(await old.get('alpha', key('a')), 'Closed', 'get on a closed handle');
    expectErr(await r.p.get(JOB_ID, 'alpha', key('a')), 'JobNotFound', 'p.get on a closed job');
    // A write on the closed handle is dropped and reported; the model does not change.
    const before = r.failures.length;
    old.persistPut('alpha', key('a'), new Uint8Array([0xde, 0xad]));
    m.expectedFailures++;
    m.unflushed++;
    expect(r.failures.slice(before).map((f) => f.reason)).toEqual(['closed']);
    r.job = unwrap(await r.p.openJob(JOB_ID), 'openJob');
    expect(r.job.running).toBe(true);
  }
  toString(): string {
    return 'closeJob + openJob';
  }
}

// ---------------------------------------------------------------------------------------
// Command arbitraries

const stopArb = fc.option(boundArb, { nil: undefined });

const commandArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(catArb, keyArb, payloadArb, viaArb)
      .map(([c, k, v, via]) => new PutCmd(c, k, v, via)),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(catArb, keyArb, fc.tuple(fc.constantFrom('s', 'tt'), fc.integer({ min: -3, max: 3 })))
      .map(([c, k, v]) => new EncodedCmd(c, k, v)),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(catArb, keyArb, viaArb).map(([c, k, via]) => new DeleteCmd(c, k, via)),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(catArb, boundArb, viaArb)
      .map(([c, k, via]) => new DeletePrefixCmd(c, k, via)),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.array(opArb, { minLength: 1, maxLength: 6 }),
        fc.oneof(
          { weight: 2, arbitrary: fc.constant(undefined) },
          {
            weight: 1,
            arbitrary: fc.record({ at: fc.nat(6), which: fc.nat(BAD_OPS.length - 1) }),
          },
        ),
        viaArb,
      )
      .map(([ops, bad, via]) => new BatchCmd(ops, bad, via)),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(catArb, keyArb, viaArb).map(([c, k, via]) => new GetCmd(c, k, via)),
  },
  { weight: 2, arbitrary: fc.tuple(catArb, keyArb).map(([c, k]) => new ExistsCmd(c, k)) },
  {
    weight: 4,
    arbitrary: fc
      .tuple(catArb, boundArb, stopArb, optionsArb, scanViaArb)
      .map(([c, s, e, o, via]) => new ScanCmd(c, s, e, o, via)),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(catArb, boundArb, optionsArb, scanViaArb)
      .map(([c, k, o, via]) => new ScanPrefixCmd(c, k, o, via)),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(catArb, boundArb, stopArb).map(([c, s, e]) => new CountCmd(c, s, e)),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(catArb, keyArb, viaArb).map(([c, k, via]) => new DeleteAckedCmd(c, k, via)),
  },
  { weight: 1, arbitrary: fc.constant(new FlushCmd()) },
  { weight: 1, arbitrary: fc.constant(new ReopenCmd()) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        catArb,
        keyArb,
        fc.integer({ min: -3, max: 3 }),
        fc.constantFrom('job' as const, 'facade' as const, 'atomic' as const),
      )
      .map(([c, k, d, via]) => new AddCmd(c, k, d, via)),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.array(
          fc.record({
            cat: catArb,
            k: keyArb,
            expect: fc.oneof(
              { weight: 3, arbitrary: fc.constant('current' as const) },
              { weight: 1, arbitrary: fc.constant('absent' as const) },
              { weight: 1, arbitrary: payloadArb },
            ),
          }),
          { maxLength: 2 },
        ),
        fc.array(opArb, { minLength: 1, maxLength: 4 }),
      )
      .map(([checks, ops]) => new AtomicCmd(checks, ops)),
  },
);

// ---------------------------------------------------------------------------------------
// Runs

/** Empty every category and start a fresh model; reopens the job if a failed run left it closed. */
async function freshRun(r: Real): Promise<{ model: Model; real: Real }> {
  if (!r.job.running || !r.p.hasJob(JOB_ID)) r.job = unwrap(await r.p.openJob(JOB_ID), 'openJob');
  await r.job.flush(); // reports what a failed run left unreported, if anything
  for (const c of CATS) r.job.persistDeletePrefix(c, key());
  const [flushed, ...counts] = await Promise.all([
    r.job.flush(),
    ...CATS.map((c) => r.job.count(c, { start: key() })),
  ]);
  unwrap(flushed as Result<unknown, PersistencyError>, 'flush after clearing');
  for (const n of counts) expect(unwrap(n as Result<number, PersistencyError>, 'count')).toBe(0);
  r.failures.length = 0;
  return { model: new Model(), real: r };
}

/** After each run: every category, scanned whole, equals the model. */
async function finalCheck(m: Model, r: Real): Promise<void> {
  const all = await Promise.all(CATS.map((c) => r.job.scan(c, { start: key() })));
  CATS.forEach((c, i) => {
    const got = unwrap(all[i] as Result<KvRow[], PersistencyError>, `final scan of ${c}`);
    expect(rowsHex(got), `final contents of '${c}'`).toEqual(m.scan(m.sorted(c), undefined));
  });
  await expectFlush(m, r, 'final flush');
  checkFailures(m, r, 'end of run');
}

type Mode = 'file' | 'memory';
const roots: [Mode, () => string][] = [
  [
    'file',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'persistency-model-'));
      tempDirs.push(dir);
      return dir;
    },
  ],
  ['memory', () => ':memory:'],
];

describe.each(roots)('model-based with a %s root', (mode, makeRoot) => {
  it(`random command sequences match the model (${NUM_RUNS} runs, up to ${MAX_COMMANDS} commands)`, async () => {
    const p = unwrap(Persistency.instance(makeRoot()), 'instance');
    const failures: WriteFailed[] = [];
    p.events.on('writeFailed', (e) => failures.push(e));
    const real: Real = {
      mode,
      p,
      job: unwrap(await p.openJob(JOB_ID), 'openJob'),
      failures,
      commands: 0,
      reopens: 0,
    };
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.commands([commandArb], { maxCommands: MAX_COMMANDS, size: 'max' }),
        async (cmds) => {
          runs++;
          let model: Model | undefined;
          await fc.asyncModelRun(async () => {
            const fresh = await freshRun(real);
            model = fresh.model;
            return fresh;
          }, cmds);
          await finalCheck(model as Model, real);
        },
      ),
      { numRuns: NUM_RUNS, seed: SEED, path: PATH },
    );
    console.log(
      `model (${mode}): ${runs} runs, ${real.commands} commands (${real.reopens} close+reopen)`,
    );
    expect(runs).toBeGreaterThanOrEqual(NUM_RUNS);
  });
});
