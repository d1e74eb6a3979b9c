/*
 * Leaks and limits (issue "Reliability"): file descriptors, threads and memory after many
 * open/close cycles, and the WAL file's size under a steady writer beside long scans.
 *
 * Counts come from /proc/self/fd and /proc/self/task, so the suite runs on Linux only.
 * Vitest's default `forks` pool runs each test file in its own process, so other files'
 * jobs do not show up in these counts. No test sleeps: every figure is read after the
 * operation it measures has resolved (closeJob resolves after the worker has exited).
 *
 * PERSISTENCY_LEAK_CYCLES sets the open/write/close cycles of the first test (default
 * 2000). Each cycle starts a worker thread: ~60 ms from plain node, 87-177 ms under vitest
 * on the 2-core CI machine (mostly worker start-up), so 2,000 cycles take 3-6 minutes.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import {
  decodeKey,
  decodePayload,
  key,
  Persistency,
  type PersistencyEvents,
  payload,
  prefixRange,
  type TxOp,
} from '../src/index.js';
import { ROOT_LOCK_FILE } from '../src/root-lock.js';
import { unwrap, useTempDirs } from './support/env.js';

// ---------------------------------------------------------------------------------------
// Helpers

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number.parseInt(raw, 10);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer`);
  return n;
}

const CYCLES = intEnv('PERSISTENCY_LEAK_CYCLES', 2000);
const WARMUP_CYCLES = 100;
const MiB = 1024 * 1024;

const tempDir = useTempDirs('persistency-leaks-');

/** Open file descriptors of this process (the listing's own descriptor is counted every time). */
const fdCount = (): number => readdirSync('/proc/self/fd').length;
/** Threads of this process: main, libuv pool, V8 platform, and one per live job worker. */
const threadCount = (): number => readdirSync('/proc/self/task').length;
const rss = (): number => process.memoryUsage().rss;
const heap = (): number => process.memoryUsage().heapUsed;
const mib = (n: number): string => (n / MiB).toFixed(1);

/**
 * A full garbage collection, so RSS figures are not just garbage awaiting collection.
 * Without --expose-gc (vitest's config sets no per-file flags), V8 can still hand out
 * `gc` to a new context once the flag is set at run time.
 */
const collectGarbage: () => void = (() => {
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === 'function') return g;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

function watchWriteFailures(p: Persistency): PersistencyEvents['writeFailed'][] {
  const seen: PersistencyEvents['writeFailed'][] = [];
  p.events.on('writeFailed', (e) => seen.push(e));
  return seen;
}

const walSize = (dbPath: string): number =>
  statSync(`${dbPath}-wal`, { throwIfNoEntry: false })?.size ?? 0;

// ---------------------------------------------------------------------------------------

describe.runIf(process.platform === 'linux')('leaks and limits', () => {
  /**
   * fd slack: the counts must come back exactly, but up to 2 descriptors are tolerated for
   * Node internals that open lazily and stay open (e.g. a libuv pool thread's first fs
   * call, a lazily opened /dev/urandom). A real leak of one descriptor per cycle would show
   * as thousands.
   */
  const FD_SLACK = 2;
  /**
   * RSS bound: measured growth over 2,000 cycles is ~12 MiB (allocator high-water noise
   * from 2,000 worker isolates coming and going; the JS heap stays flat). 64 MiB is ~5×
   * that; a leaked worker isolate (~10 MiB) per cycle would be gigabytes, and a leak of
   * 32 KiB per cycle would reach it.
   */
  const RSS_BOUND = 64 * MiB;
  /**
   * JS heap bound (after a full GC): measured growth is well under 1 MiB. A Job, its
   * Worker object and their listeners retained per cycle or per job would be several KiB
   * each, so thousands of them would cross 8 MiB.
   */
  const HEAP_BOUND = 8 * MiB;

  it(
    `${CYCLES} open/write/close cycles of one job return fds to the baseline and keep RSS bounded`,
    async () => {
      const root = tempDir();
      const p = unwrap(Persistency.instance(root));
      const failures = watchWriteFailures(p);
      const id = 'cycled';
      const PUTS = 4;

      const cycle = async (i: number): Promise<void> => {
        const job = unwrap(await p.openJob(id));
        for (let k = 0; k < PUTS; k++) job.persistPut('c', key(i, k), payload('cycle', i, k));
        if (i % 2 === 0) {
          unwrap(await job.flush());
        } else {
          const got = unwrap(await job.get('c', key(i, PUTS - 1)));
          expect(got).toEqual(payload('cycle', i, PUTS - 1));
        }
        unwrap(await p.closeJob(id));
        expect(job.running).toBe(false);
      };

      let i = 0;
      for (; i < WARMUP_CYCLES; i++) await cycle(i);
      collectGarbage();
      const fdBefore = fdCount();
      const threadsBefore = threadCount();
      const rssBefore = rss();
      const heapBefore = heap();
      const started = performance.now();
      for (; i < WARMUP_CYCLES + CYCLES; i++) await cycle(i);
      const seconds = (performance.now() - started) / 1000;
      collectGarbage();
      const fdAfter = fdCount();
      const threadsAfter = threadCount();
      const rssAfter = rss();
      const heapAfter = heap();

      console.log(
        `[leaks] ${CYCLES} open/write/close cycles (after ${WARMUP_CYCLES} warm-up): ` +
          `fd ${fdBefore} -> ${fdAfter}, threads ${threadsBefore} -> ${threadsAfter}, ` +
          `rss ${mib(rssBefore)} -> ${mib(rssAfter)} MiB (+${mib(rssAfter - rssBefore)}), ` +
          `heap ${mib(heapBefore)} -> ${mib(heapAfter)} MiB, ` +
          `${seconds.toFixed(1)} s (${((seconds * 1000) / CYCLES).toFixed(1)} ms/cycle)`,
      );

      expect(fdAfter).toBeLessThanOrEqual(fdBefore + FD_SLACK);
      expect(threadsAfter).toBe(threadsBefore);
      expect(rssAfter - rssBefore).toBeLessThan(RSS_BOUND);
      expect(heapAfter - heapBefore).toBeLessThan(HEAP_BOUND);
      expect(failures).toEqual([]);

      // Nothing was lost along the way: every cycle's rows are in the file.
      const job = unwrap(await p.openJob(id));
      expect(unwrap(await job.count('c', prefixRange(key())))).toBe(i * PUTS);
      unwrap(await p.closeJob(id));
      expect(readdirSync(root).sort()).toEqual([ROOT_LOCK_FILE, `${id}.db`]);
    },
    // A guard against a hang, not a pace: ~80 ms per cycle is typical here.
    60_000 + (CYCLES + WARMUP_CYCLES) * 250,
  );

  for (const prestartWorker of [false, true]) {
    it(`close() leaves no thread behind (prestartWorker: ${prestartWorker})`, async () => {
      const root = tempDir();
      // Warm up: the first open starts threads the process keeps (libuv's pool and the like).
      const warm = unwrap(Persistency.instance(root, { prestartWorker }));
      unwrap(await warm.openJob('warm'));
      await Persistency.reset();
      const threadsBefore = threadCount();
      const p = unwrap(Persistency.instance(root, { prestartWorker }));
      const jobs = await Promise.all(['a', 'b', 'c'].map((id) => p.openJob(id)));
      for (const job of jobs.map(unwrap)) job.persistPut('c', key(1), payload('x'));
      // Opened jobs, plus the spare started ahead of the next open when asked for.
      expect(threadCount()).toBeGreaterThanOrEqual(threadsBefore + 3 + (prestartWorker ? 1 : 0));
      unwrap(await p.close());
      expect(threadCount()).toBe(threadsBefore);
    });
  }

  it('1,000 jobs opened 50 at a time and closed leave no fd and no thread behind', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.instance(root));
    const failures = watchWriteFailures(p);
    const JOBS = 1000;
    const BATCH = 50;
    const ids = Array.from({ length: JOBS }, (_, n) => `job-${n}`);

    /** Open a batch concurrently, write and read each, close them all concurrently. */
    let peakThreads = 0;
    let peakFds = 0;
    const runBatch = async (batch: readonly string[]): Promise<void> => {
      const jobs = (await Promise.all(batch.map((id) => p.openJob(id)))).map(unwrap);
      for (const job of jobs) job.persistPut('c', key(job.id), payload(job.id));
      const got = await Promise.all(jobs.map((job) => job.get('c', key(job.id))));
      got.forEach((r, n) => {
        expect(unwrap(r)).toEqual(payload(jobs[n]?.id ?? ''));
      });
      peakThreads = Math.max(peakThreads, threadCount());
      peakFds = Math.max(peakFds, fdCount());
      const closed = await Promise.all(batch.map((id) => p.closeJob(id)));
      closed.forEach(unwrap);
      for (const job of jobs) expect(job.running).toBe(false);
    };

    // Warm-up: one batch of other ids, so lazily started pool threads exist before the baseline.
    await runBatch(Array.from({ length: BATCH }, (_, n) => `warm-${n}`));
    collectGarbage();
    const fdBefore = fdCount();
    const threadsBefore = threadCount();
    const rssBefore = rss();
    const heapBefore = heap();
    const started = performance.now();
    for (let n = 0; n < JOBS; n += BATCH) await runBatch(ids.slice(n, n + BATCH));
    const seconds = (performance.now() - started) / 1000;
    collectGarbage();
    const fdAfter = fdCount();
    const threadsAfter = threadCount();
    const rssAfter = rss();
    const heapAfter = heap();

    console.log(
      `[leaks] ${JOBS} jobs in batches of ${BATCH}: fd ${fdBefore} -> ${fdAfter} (peak ${peakFds}), ` +
        `threads ${threadsBefore} -> ${threadsAfter} (peak ${peakThreads}), ` +
        `rss ${mib(rssBefore)} -> ${mib(rssAfter)} MiB, heap ${mib(heapBefore)} -> ${mib(heapAfter)} MiB, ` +
        `${seconds.toFixed(1)} s`,
    );

    expect(peakThreads).toBeGreaterThanOrEqual(threadsBefore + BATCH); // the workers were real
    expect(fdAfter).toBeLessThanOrEqual(fdBefore + FD_SLACK);
    expect(threadsAfter).toBe(threadsBefore);
    expect(heapAfter - heapBefore).toBeLessThan(HEAP_BOUND);
    // RSS is not asserted here: 50 live worker isolates at a time raise the allocator's
    // high-water mark once (~30 MiB), and it stays; repeated rounds do not add to it.
    expect(p.hasJob('job-0')).toBe(false);
    expect(failures).toEqual([]);
    // One file per job, no sidecar left: each close checkpointed and removed its WAL and
    // index. Beside them, the root's lock file.
    expect(readdirSync(root)).toContain(ROOT_LOCK_FILE);
    const files = readdirSync(root).filter((f) => f !== ROOT_LOCK_FILE);
    expect(files.length).toBe(JOBS + BATCH);
    expect(files.every((f) => f.endsWith('.db'))).toBe(true);
  }, 600_000);

  it('openJob and dropJob refused with Busy leave no fd and no thread behind', async () => {
    // Two owners: another connection in this process holding the root's lock (as another
    // Persistency would, its job file open beside it), refusing both calls at the lock; then
    // a connection holding the job file itself exclusively, refusing openJob in the worker
    // after the root lock was taken, which must be given back.
    const root = tempDir();
    // A job file locked by another connection is waited for up to busyTimeoutMs before Busy.
    const p = unwrap(Persistency.instance(root, { busyTimeoutMs: 20 }));
    unwrap(await p.openJob('warm'));
    unwrap(await p.closeJob('warm'));
    const takeExclusively = (path: string): Database.Database => {
      const db = new Database(path, { timeout: 0 });
      db.pragma('locking_mode = EXCLUSIVE');
      db.exec('BEGIN EXCLUSIVE; ROLLBACK');
      return db;
    };
    const owner = new Database(join(root, 'owned.db'));
    try {
      owner.pragma('journal_mode = WAL');
      owner.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
      const rootLock = takeExclusively(join(root, ROOT_LOCK_FILE));
      const refuse = async (): Promise<void> => {
        const opened = await p.openJob('owned');
        expect(opened.isErr() && opened.error.kind).toBe('Busy');
        const dropped = await p.dropJob('owned');
        expect(dropped.isErr() && dropped.error.kind).toBe('Busy');
      };
      const counts = (): [number, number] => {
        collectGarbage();
        return [fdCount(), threadCount()];
      };
      const ROUNDS = 100;
      const measure = async (refuseOnce: () => Promise<void>): Promise<string> => {
        for (let n = 0; n < 10; n++) await refuseOnce();
        const [fdBefore, threadsBefore] = counts();
        for (let n = 0; n < ROUNDS; n++) await refuseOnce();
        const [fdAfter, threadsAfter] = counts();
        expect(fdAfter).toBeLessThanOrEqual(fdBefore + FD_SLACK);
        expect(threadsAfter).toBe(threadsBefore);
        return `fd ${fdBefore} -> ${fdAfter}, threads ${threadsBefore} -> ${threadsAfter}`;
      };
      const atTheLock = await measure(refuse);
      rootLock.close();

      owner.close();
      const fileOwner = takeExclusively(join(root, 'owned.db'));
      let inTheWorker: string;
      try {
        inTheWorker = await measure(async () => {
          const opened = await p.openJob('owned');
          expect(opened.isErr() && opened.error.kind).toBe('Busy');
        });
        // Every refused open gave its share of the root lock back.
        takeExclusively(join(root, ROOT_LOCK_FILE)).close();
        expect(p.hasJob('owned')).toBe(false);
        // The owner's file is untouched by the refused calls.
        expect(fileOwner.prepare('SELECT x FROM t').pluck().get()).toBe(1);
      } finally {
        fileOwner.close();
      }
      console.log(
        `[leaks] ${ROUNDS} Busy openJob + dropJob refusals at the root lock: ${atTheLock}; ` +
          `${ROUNDS} Busy openJob refusals in the worker: ${inTheWorker}`,
      );
    } finally {
      owner.close();
    }
  }, 120_000);

  it('keeps the WAL bounded by journal_size_limit while a writer runs beside long scans', async () => {
    /*
     * The bound, and why it is exact enough to assert:
     *
     * - A WAL file is a 32-byte header plus frames of F = page_size + 24 bytes.
     * - The job's connection auto-checkpoints when a commit leaves A = wal_autocheckpoint
     *   (1000) frames or more in the WAL. The scans run on the same connection, in the
     *   worker, between commits, so no reader ever pins the WAL: each such checkpoint
     *   copies every frame back. Before the commit that crosses A the WAL held at most
     *   A - 1 frames, so the file never exceeds 32 + (A - 1 + T) × F bytes, T being the
     *   most frames one commit writes.
     * - T: the writer awaits a flush after each batch, so one commit holds at most one
     *   writer batch (scans write nothing). A batch is K puts of 16 KiB rows to a small
     *   rotating key set. One such put dirties at most: its leaf (1), the row's new
     *   overflow chain (⌈row / (page_size − 4)⌉), two freelist trunk pages (the old chain
     *   is freed, the new one may come from the freelist), two pages from a split, and
     *   the interior pages above the leaf (a tree of ~51k small rows and 64 big ones in
     *   4 KiB pages is at most 3 interior levels deep); page 1 once per commit:
     *   T <= K × (1 + overflow + 2 + 2 + 3) + 1.
     * - After a checkpoint, the next write restarts the WAL from its start, and that
     *   commit truncates the file to journal_size_limit (or to its own frames, if more).
     *   So every time the file shrinks, it shrinks to at most max(limit, 32 + T × F),
     *   which is the limit itself here.
     *
     * Without journal_size_limit the file would stay at its high-water mark (~4 MiB)
     * instead of shrinking; without checkpoints it would grow by every byte written
     * (asserted below to be several times the bound).
     */
    const LIMIT = 1 << 20;
    const BIG_ROWS = 50_000;
    const K = 16;
    const W_KEYS = 64;
    const W_PAYLOAD = 16 * 1024;
    const MIN_SCANS = 5;
    const MIN_SHRINKS = 3;
    /** Enough payload through the WAL to be several times its bound (checked below). */
    const MIN_WRITTEN = 16 * MiB;
    /** A guard against a hang or a WAL that never cycles; the loop ends on counts. */
    const GUARD_MS = 60_000;

    const root = tempDir();
    const p = unwrap(Persistency.instance(root, { journalSizeLimitBytes: LIMIT }));
    const failures = watchWriteFailures(p);
    const id = 'wal';
    const dbPath = join(root, `${id}.db`);

    // The large category: 50k rows of ~70 bytes. Then close (checkpoint, WAL removed) and
    // reopen, so the measurement starts from an empty WAL and only the writer's commits
    // (not this one big load) feed it.
    let job = unwrap(await p.openJob(id));
    for (let start = 0; start < BIG_ROWS; start += 5000) {
      const ops: TxOp[] = [];
      for (let n = start; n < start + 5000; n++) {
        ops.push({
          kind: 'put',
          category: 'big',
          key: key(n),
          payload: payload('row', n, 'x'.repeat(48)),
        });
      }
      job.persist(ops);
    }
    unwrap(await p.closeJob(id));
    job = unwrap(await p.openJob(id));

    const samples: number[] = [];
    const sample = (): void => {
      samples.push(walSize(dbPath));
    };
    sample();

    // The writer: K puts, then a flush, over and over; `model` is what it issued.
    const model = new Map<number, number>();
    let seq = 0;
    let stop = false;
    let writerBytes = 0;
    let commits = 0;
    const writer = (async () => {
      while (!stop) {
        for (let k = 0; k < K; k++) {
          const n = seq % W_KEYS;
          job.persistPut('w', key(n), payload(seq, new Uint8Array(W_PAYLOAD).fill(seq & 0xff)));
          model.set(n, seq);
          writerBytes += W_PAYLOAD;
          seq++;
        }
        unwrap(await job.flush());
        commits++;
        sample();
      }
    })();

    // The scanner: full scans of the large category until the WAL has cycled a few times.
    const shrinks = (): number[] => samples.filter((s, n) => n > 0 && s < (samples[n - 1] ?? 0));
    let scans = 0;
    let scanMs = 0;
    const started = performance.now();
    try {
      while (scans < MIN_SCANS || shrinks().length < MIN_SHRINKS || writerBytes < MIN_WRITTEN) {
        if (performance.now() - started > GUARD_MS) break;
        const t = performance.now();
        const rows = unwrap(await job.scan('big', prefixRange(key())));
        scanMs += performance.now() - t;
        expect(rows.length).toBe(BIG_ROWS);
        const last = rows[BIG_ROWS - 1];
        expect(last && decodeKey(last.key, 'number')).toBe(BIG_ROWS - 1);
        scans++;
        sample();
      }
    } finally {
      stop = true;
      await writer;
    }
    const seconds = (performance.now() - started) / 1000;
    unwrap(await job.flush());
    sample();

    // The writer's rows are all there, each with its last payload.
    const wRows = unwrap(await job.scan('w', prefixRange(key())));
    expect(wRows.length).toBe(model.size);
    for (const row of wRows) {
      const [s, body] = decodePayload(row.payload, ['number', 'bytes']);
      expect(s).toBe(model.get(decodeKey(row.key, 'number')));
      expect(body.length).toBe(W_PAYLOAD);
    }
    unwrap(await p.closeJob(id));

    // The file's page size and the library's auto-checkpoint threshold, for the bound.
    const db = new Database(dbPath, { readonly: true });
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    db.close();
    const mem = new Database(':memory:');
    const autoCheckpoint = mem.pragma('wal_autocheckpoint', { simple: true }) as number;
    mem.close();
    const frame = pageSize + 24;
    const overflow = Math.ceil((W_PAYLOAD + 64) / (pageSize - 4));
    const T = K * (1 + overflow + 2 + 2 + 3) + 1;
    const bound = 32 + (autoCheckpoint - 1 + T) * frame;
    const maxWal = Math.max(...samples);
    const shrunkTo = shrinks();

    console.log(
      `[leaks] WAL with journal_size_limit ${LIMIT} bytes: max ${maxWal} bytes (${mib(maxWal)} MiB), ` +
        `bound ${bound} bytes (page ${pageSize}, autocheckpoint ${autoCheckpoint}, T ${T}); ` +
        `${samples.length} samples, ${shrunkTo.length} shrinks (to ${Math.min(...shrunkTo)}..${Math.max(...shrunkTo)} bytes); ` +
        `${scans} scans of ${BIG_ROWS} rows (${(scanMs / Math.max(1, scans)).toFixed(0)} ms each), ` +
        `${commits} writer commits, ${mib(writerBytes)} MiB of payload written, ${seconds.toFixed(1)} s`,
    );

    expect(scans).toBeGreaterThanOrEqual(MIN_SCANS);
    expect(shrunkTo.length).toBeGreaterThanOrEqual(MIN_SHRINKS);
    expect(maxWal).toBeLessThanOrEqual(bound);
    for (const s of shrunkTo) expect(s).toBeLessThanOrEqual(Math.max(LIMIT, 32 + T * frame));
    // The bound is meaningful: far more went through the WAL than it ever held.
    expect(writerBytes).toBeGreaterThan(3 * bound);
    // closeJob checkpointed with TRUNCATE and SQLite removed the WAL on close.
    expect(walSize(dbPath)).toBe(0);
    expect(existsSync(`${dbPath}-shm`)).toBe(false);
    expect(failures).toEqual([]);
  }, 120_000);
});
