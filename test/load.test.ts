/*
 * Load (issue "Reliability"): 8 file jobs written and read concurrently for a bounded
 * time, with a checker.
 *
 * Each job has a writer issuing puts, deletes, atomic batches, deletePrefix and
 * deleteAcked from a seeded random sequence, and a reader issuing gets, exists, scans
 * (ranges, prefixes, reverse, limits) and counts. A model of each job is updated the
 * moment a write is issued; every read's expected answer is computed from the model the
 * moment the read is issued (CONTRACT §4 "Read your writes": a read observes every write
 * issued before it on that job, and none issued after it). At the end every job is
 * flushed, closed and reopened, and its whole contents are compared with the model.
 *
 * PERSISTENCY_LOAD_MS sets how long the load runs (default 5000). The loop is bounded by
 * time; nothing waits on a timer.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Result } from 'neverthrow';
import { afterAll, afterEach, expect, it } from 'vitest';
import {
  decodeKey,
  type Job,
  type Key,
  type KvRow,
  key,
  Persistency,
  type PersistencyError,
  type PersistencyEvents,
  payload,
  type TxOp,
} from '../src/index.js';
import { unwrap } from './support/env.js';

const LOAD_MS = (() => {
  const raw = process.env.PERSISTENCY_LOAD_MS;
  const n = raw === undefined || raw === '' ? 5000 : Number.parseInt(raw, 10);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error('PERSISTENCY_LOAD_MS must be > 0');
  return n;
})();
const JOBS = 8;
/** Keys are key(group, slot): GROUPS × SLOTS of them per job, in index order. */
const GROUPS = 8;
const SLOTS = 32;
const KEYS = GROUPS * SLOTS;
const CATEGORY = 'load';
/** Writes the writer issues per turn before it awaits its own check read. */
const WRITES_PER_TURN = 24;
const SEED = 0x5eed;

const tempDirs: string[] = [];

afterEach(async () => {
  await Persistency.reset();
});

afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A small seeded generator (LCG), so a failing run can be replayed from its seed. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return Math.floor((s / 2 ** 32) * n);
  };
}

const keyOf = (index: number): Key => key(Math.floor(index / SLOTS), index % SLOTS);
const same = (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean =>
  a === undefined || b === undefined ? a === b : Buffer.from(a).equals(b);
const show = (v: Uint8Array | undefined): string =>
  v === undefined ? 'undefined' : Buffer.from(v).toString('hex');

interface Stats {
  writes: number;
  reads: number;
  mismatches: string[];
}

/** The expected rows of index range [a, b) from a snapshot, as the job would return them. */
function expectedRows(
  model: readonly (Uint8Array | undefined)[],
  a: number,
  b: number,
  reverse: boolean,
  limit: number | undefined,
): [number, Uint8Array][] {
  const out: [number, Uint8Array][] = [];
  for (let i = a; i < b; i++) {
    const v = model[i];
    if (v !== undefined) out.push([i, v]);
  }
  if (reverse) out.reverse();
  return limit === undefined ? out : out.slice(0, limit);
}

function rowsMatch(rows: readonly KvRow[], expected: readonly [number, Uint8Array][]): boolean {
  if (rows.length !== expected.length) return false;
  return rows.every((row, n) => {
    const [i, v] = expected[n] as [number, Uint8Array];
    return row.key.equals(keyOf(i)) && same(row.payload, v);
  });
}

const describeRows = (rows: readonly KvRow[]): string =>
  rows.map((r) => decodeKey(r.key, ['i64', 'i64']).join('/')).join(',');

/** One job under load: a writer and a reader sharing `model`, until `deadline`. */
async function runJob(job: Job, jobIndex: number, deadline: number, stats: Stats): Promise<void> {
  const model: (Uint8Array | undefined)[] = new Array(KEYS).fill(undefined);
  const rand = rng(SEED + jobIndex);
  let seq = 0;

  const mismatch = (what: string): void => {
    stats.mismatches.push(`job ${job.id}: ${what}`);
  };
  /** Check a read against the answer the model gave when it was issued. */
  const check = async <T>(
    what: string,
    read: PromiseLike<Result<T, PersistencyError>>,
    ok: (v: T) => boolean,
    expected: () => string,
    got: (v: T) => string,
  ): Promise<void> => {
    const r = await read;
    stats.reads++;
    if (r.isErr()) mismatch(`${what}: Err(${r.error.kind}) ${r.error.message}`);
    else if (!ok(r.value)) mismatch(`${what}: expected ${expected()}, got ${got(r.value)}`);
  };

  const freshPayload = (index: number): Uint8Array => payload(jobIndex, seq++, index);

  const writer = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const acks: Promise<void>[] = [];
      for (let n = 0; n < WRITES_PER_TURN; n++) {
        const dice = rand(100);
        const i = rand(KEYS);
        if (dice < 55) {
          const v = freshPayload(i);
          job.persistPut(CATEGORY, keyOf(i), v);
          model[i] = v;
          stats.writes++;
        } else if (dice < 75) {
          job.persistDelete(CATEGORY, keyOf(i));
          model[i] = undefined;
          stats.writes++;
        } else if (dice < 87) {
          // An atomic batch of 2-4 ops on random keys (a key may repeat: order matters).
          const ops: TxOp[] = [];
          const size = 2 + rand(3);
          const updates: [number, Uint8Array | undefined][] = [];
          for (let m = 0; m < size; m++) {
            const j = rand(KEYS);
            if (rand(4) === 0) {
              ops.push({ kind: 'delete', category: CATEGORY, key: keyOf(j) });
              updates.push([j, undefined]);
            } else {
              const v = freshPayload(j);
              ops.push({ kind: 'put', category: CATEGORY, key: keyOf(j), payload: v });
              updates.push([j, v]);
            }
          }
          job.persist(ops);
          for (const [j, v] of updates) model[j] = v;
          stats.writes += ops.length;
        } else if (dice < 90) {
          const g = rand(GROUPS);
          job.persistDeletePrefix(CATEGORY, key(g));
          for (let s = 0; s < SLOTS; s++) model[g * SLOTS + s] = undefined;
          stats.writes++;
        } else {
          const existed = model[i] !== undefined;
          acks.push(
            check(
              `deleteAcked(${i})`,
              job.deleteAcked(CATEGORY, keyOf(i)),
              (v) => v === existed,
              () => String(existed),
              String,
            ),
          );
          model[i] = undefined;
          stats.writes++;
        }
      }
      // The writer's own check read doubles as back-pressure: one turn in flight at a time.
      const i = rand(KEYS);
      const want = model[i];
      acks.push(
        check(
          `writer get(${i})`,
          job.get(CATEGORY, keyOf(i)),
          (v) => same(v, want),
          () => show(want),
          show,
        ),
      );
      await Promise.all(acks);
    }
  };

  const reader = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const checks: Promise<void>[] = [];
      // get and exists
      {
        const i = rand(KEYS);
        const want = model[i];
        checks.push(
          check(
            `get(${i})`,
            job.get(CATEGORY, keyOf(i)),
            (v) => same(v, want),
            () => show(want),
            show,
          ),
        );
        const j = rand(KEYS);
        const has = model[j] !== undefined;
        checks.push(
          check(
            `exists(${j})`,
            job.exists(CATEGORY, keyOf(j)),
            (v) => v === has,
            () => String(has),
            String,
          ),
        );
      }
      // scan over a random index range, sometimes open-ended, reversed or limited
      {
        const a = rand(KEYS);
        const b = rand(4) === 0 ? KEYS : a + rand(KEYS - a + 1);
        const reverse = rand(2) === 0;
        const limit = rand(3) === 0 ? rand(20) : undefined;
        const want = expectedRows(model, a, b, reverse, limit);
        const range = b === KEYS ? { start: keyOf(a) } : { start: keyOf(a), stop: keyOf(b) };
        checks.push(
          check(
            `scan([${a}, ${b}), reverse ${reverse}, limit ${limit})`,
            job.scan(CATEGORY, range, limit === undefined ? { reverse } : { reverse, limit }),
            (rows) => rowsMatch(rows, want),
            () => want.map(([i]) => `${Math.floor(i / SLOTS)}/${i % SLOTS}`).join(','),
            describeRows,
          ),
        );
      }
      // scanPrefix of a group, and count over a random range
      {
        const g = rand(GROUPS);
        const reverse = rand(2) === 0;
        const want = expectedRows(model, g * SLOTS, (g + 1) * SLOTS, reverse, undefined);
        checks.push(
          check(
            `scanPrefix(${g}, reverse ${reverse})`,
            job.scanPrefix(CATEGORY, key(g), { reverse }),
            (rows) => rowsMatch(rows, want),
            () => String(want.length),
            (rows) => String(rows.length),
          ),
        );
        const a = rand(KEYS);
        const b = a + rand(KEYS - a + 1);
        const n = expectedRows(model, a, b, false, undefined).length;
        checks.push(
          check(
            `count([${a}, ${b}))`,
            job.count(CATEGORY, { start: keyOf(a), stop: keyOf(b) }),
            (v) => v === n,
            () => String(n),
            String,
          ),
        );
      }
      await Promise.all(checks);
    }
  };

  await Promise.all([writer(), reader()]);
  loadModels.set(job.id, model);
}

/** Each job's model at the end of the load, for the final comparison. */
const loadModels = new Map<string, (Uint8Array | undefined)[]>();

it(
  `${JOBS} jobs under concurrent writes and reads for ${LOAD_MS} ms: no mismatch, no lost write`,
  async () => {
    const root = mkdtempSync(join(tmpdir(), 'persistency-load-'));
    tempDirs.push(root);
    const p = unwrap(Persistency.instance(root));
    const failures: PersistencyEvents['writeFailed'][] = [];
    p.events.on('writeFailed', (e) => failures.push(e));
    const ids = Array.from({ length: JOBS }, (_, n) => `load-${n}`);
    const jobs = (await Promise.all(ids.map((id) => p.openJob(id)))).map(unwrap);
    const stats: Stats[] = jobs.map(() => ({ writes: 0, reads: 0, mismatches: [] }));

    const started = performance.now();
    const deadline = started + LOAD_MS;
    await Promise.all(jobs.map((job, n) => runJob(job, n, deadline, stats[n] as Stats)));
    const seconds = (performance.now() - started) / 1000;

    // Everything issued is durable once flush resolves Ok.
    for (const r of await Promise.all(jobs.map((job) => job.flush()))) unwrap(r);
    for (const r of await Promise.all(ids.map((id) => p.closeJob(id)))) unwrap(r);

    // Reopen and compare every job's whole contents with its model.
    let lost = 0;
    let extra = 0;
    let wrong = 0;
    const reopened = (await Promise.all(ids.map((id) => p.openJob(id)))).map(unwrap);
    for (const job of reopened) {
      const model = loadModels.get(job.id);
      if (model === undefined) throw new Error(`no model for ${job.id}`);
      const rows = unwrap(await job.scan(CATEGORY, { start: key() }));
      const found = new Map<number, Uint8Array>();
      for (const row of rows) {
        const [g, s] = decodeKey(row.key, ['i64', 'i64']);
        found.set(Number(g) * SLOTS + Number(s), row.payload);
      }
      for (let i = 0; i < KEYS; i++) {
        const want = model[i];
        const got = found.get(i);
        if (want !== undefined && got === undefined) lost++;
        else if (want === undefined && got !== undefined) extra++;
        else if (!same(want, got)) wrong++;
      }
    }

    const lines = stats.map(
      (s, n) =>
        `  ${ids[n]}: ${s.writes} writes (${(s.writes / seconds).toFixed(0)}/s), ` +
        `${s.reads} reads (${(s.reads / seconds).toFixed(0)}/s), ${s.mismatches.length} mismatches`,
    );
    const writes = stats.reduce((t, s) => t + s.writes, 0);
    const reads = stats.reduce((t, s) => t + s.reads, 0);
    const mismatches = stats.flatMap((s) => s.mismatches);
    console.log(
      `[load] ${JOBS} jobs, ${seconds.toFixed(1)} s (seed ${SEED}):\n${lines.join('\n')}\n` +
        `  total: ${writes} writes (${(writes / seconds).toFixed(0)}/s), ${reads} reads ` +
        `(${(reads / seconds).toFixed(0)}/s), ${mismatches.length} mismatches; after reopen: ` +
        `${lost} lost, ${extra} extra, ${wrong} wrong`,
    );

    expect(mismatches.slice(0, 10)).toEqual([]);
    expect(lost).toBe(0);
    expect(extra).toBe(0);
    expect(wrong).toBe(0);
    expect(failures).toEqual([]);
    // The load was real: every job did work in both directions.
    for (const s of stats) {
      expect(s.writes).toBeGreaterThan(0);
      expect(s.reads).toBeGreaterThan(0);
    }
  },
  60_000 + LOAD_MS * 2,
);
