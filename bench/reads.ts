/*
 * The reads of issue 14 against their references, in one process run:
 *
 *   getMany      1,000 random keys per call, keys/s, against raw better-sqlite3 serial gets
 *                in the main thread (same table) and against this package's 256 gets in flight
 *   iterate      200,000 rows, rows/s, against raw better-sqlite3 `.iterate()` in the main thread
 *   scan paging  200,000 rows in pages of 1,000 with `after`, against one unbounded scan
 *   memory       peak RSS growth while iterating 1,000,000 rows (and, for contrast, while one
 *                scan reads them all)
 *
 *   npm run bench -- reads [--quick]
 *
 * Engines are interleaved within each repetition; figures are medians. Like the peers
 * benchmark, it runs as an esbuild bundle under plain node (bench/peers-node.ts says why).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { type Job, key, Persistency, prefixRange } from '../src/index.js';
import { randomOrder } from './peers-engines.js';
import { reexecUnderNode, shouldReexec } from './peers-node.js';

interface Scale {
  readonly rows: number;
  /** Keys per getMany call, and calls per sample. */
  readonly manyKeys: number;
  readonly manyCalls: number;
  /** Rows iterated while RSS is watched. */
  readonly bigRows: number;
  readonly reps: number;
}

const FULL: Scale = { rows: 200_000, manyKeys: 1000, manyCalls: 100, bigRows: 1_000_000, reps: 5 };
const QUICK: Scale = { rows: 20_000, manyKeys: 1000, manyCalls: 10, bigRows: 100_000, reps: 2 };
const PAYLOAD_BYTES = 100;
const CAT = 'kv';
const MiB = 1024 * 1024;

const payloadOf = (i: number): Uint8Array => new Uint8Array(PAYLOAD_BYTES).fill(i & 0xff);

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/**
 * Seconds taken by `run`. The GC runs first (as between the peers benchmark's engines), so
 * no workload pays for the garbage of the one before it.
 */
async function time(run: () => Promise<void> | void): Promise<number> {
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((resolve) => setImmediate(resolve));
  const t0 = performance.now();
  await run();
  return (performance.now() - t0) / 1000;
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`reads benchmark: ${what}`);
}

const fmt = (x: number): string =>
  x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)} k` : x.toFixed(1);

class Raw {
  readonly db: Database.Database;
  readonly get: Database.Statement<[Uint8Array, Uint8Array], Buffer>;
  readonly iterate: Database.Statement<[Uint8Array, Uint8Array, Uint8Array], Buffer[]>;

  constructor(path: string, keys: readonly Uint8Array[]) {
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec(
      'CREATE TABLE kv (category BLOB NOT NULL, key BLOB NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (category, key)) WITHOUT ROWID',
    );
    const cat = Buffer.from(CAT);
    const insert = db.prepare('INSERT INTO kv VALUES (?, ?, ?)');
    db.transaction(() => {
      keys.forEach((k, i) => {
        insert.run(cat, k, payloadOf(i));
      });
    })();
    this.db = db;
    this.get = db
      .prepare<[Uint8Array, Uint8Array], Buffer>(
        'SELECT payload FROM kv WHERE category = ? AND key = ?',
      )
      .pluck();
    this.iterate = db
      .prepare<[Uint8Array, Uint8Array, Uint8Array], Buffer[]>(
        'SELECT key, payload FROM kv WHERE category = ? AND key >= ? AND key < ? ORDER BY key',
      )
      .raw();
  }
}

async function load(job: Job, prefix: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) job.persistPut(CAT, key(prefix, i), payloadOf(i));
  (await job.flush())._unsafeUnwrap();
}

/**
 * In a child process (this file with `--rss-child`): open `root`'s job 'big', then read its
 * `rows` rows by `iterate` or by one `scan`; returns the peak RSS growth in bytes over the
 * RSS before the read (after a GC), sampled every 5 ms and every 4,096 rows.
 */
function rssChild(root: string, how: 'iterate' | 'scan', rows: number): number {
  const args = [...process.execArgv, fileURLToPath(import.meta.url), '--rss-child', root, how];
  const out = execFileSync(process.execPath, [...args, String(rows)], { encoding: 'utf8' });
  const growth = Number(out.trim().split('\n').at(-1));
  check(Number.isFinite(growth), `rss child printed ${out}`);
  return growth;
}

async function rssChildMain(root: string, how: string, rows: number): Promise<void> {
  const p = Persistency.open(root)._unsafeUnwrap();
  const big = (await p.openJob('big'))._unsafeUnwrap();
  (await big.get(CAT, key('big', 0)))._unsafeUnwrap(); // the worker is up
  (globalThis as { gc?: () => void }).gc?.();
  const base = process.memoryUsage.rss();
  let peak = base;
  const sample = (): void => {
    peak = Math.max(peak, process.memoryUsage.rss());
  };
  const timer = setInterval(sample, 5);
  let n = 0;
  if (how === 'iterate') {
    for await (const row of big.iteratePrefix(CAT, key('big'))) {
      if (row.payload.length === PAYLOAD_BYTES) n++;
      if ((n & 4095) === 0) sample();
    }
  } else n = (await big.scanPrefix(CAT, key('big')))._unsafeUnwrap().length;
  sample();
  clearInterval(timer);
  check(n === rows, `${how} saw ${n} rows`);
  (await p.close())._unsafeUnwrap();
  console.log(peak - base);
}

export async function runReadsBench(options: { quick: boolean }): Promise<void> {
  if (shouldReexec()) {
    await reexecUnderNode(options.quick, 'reads');
    return;
  }
  const scale = options.quick ? QUICK : FULL;
  const dir = mkdtempSync(join(tmpdir(), 'persistency-reads-'));
  console.log(
    `\n# reads benchmark (issue 14)${options.quick ? ' [--quick: small sizes, not a measurement]' : ''}`,
  );
  console.log(
    `${scale.rows.toLocaleString('en-US')} rows of ${PAYLOAD_BYTES}-byte payloads; median of ${scale.reps} reps, engines interleaved; Node ${process.version}, ${process.execArgv.join(' ') || 'no flags'}`,
  );
  const p = Persistency.open(join(dir, 'root'))._unsafeUnwrap();
  try {
    const job = (await p.openJob('reads'))._unsafeUnwrap();
    await load(job, 'bench', scale.rows);
    const keys = Array.from({ length: scale.rows }, (_, i) => key('bench', i));
    const raw = new Raw(
      join(dir, 'raw.db'),
      keys.map((k) => k.bytes),
    );
    const cat = Buffer.from(CAT);
    const range = prefixRange(key('bench'));
    const start = range.start.bytes;
    const stop = (range.stop as { bytes: Uint8Array }).bytes;
    const order = randomOrder(scale.manyKeys * scale.manyCalls, scale.rows);
    const picked = Array.from(order, (i) => keys[i] as (typeof keys)[number]);
    const samples: Record<string, number[]> = {};
    const add = (name: string, perSecond: number): void => {
      const list = samples[name] ?? [];
      list.push(perSecond);
      samples[name] = list;
    };

    for (let rep = 0; rep < scale.reps; rep++) {
      // getMany, raw serial gets, our gets 256 in flight: the same keys.
      const total = order.length;
      add(
        'getMany',
        total /
          (await time(async () => {
            for (let c = 0; c < scale.manyCalls; c++) {
              const part = picked.slice(c * scale.manyKeys, (c + 1) * scale.manyKeys);
              const got = (await job.getMany(CAT, part))._unsafeUnwrap();
              check(
                got.length === part.length && got.every((v) => v?.length === PAYLOAD_BYTES),
                'getMany missed',
              );
            }
          })),
      );
      add(
        'raw serial gets',
        total /
          (await time(() => {
            for (const k of picked)
              check(raw.get.get(cat, k.bytes)?.length === PAYLOAD_BYTES, 'raw get missed');
          })),
      );
      add(
        'gets 256 in flight',
        total /
          (await time(async () => {
            for (let b = 0; b < total; b += 256) {
              const got = await Promise.all(picked.slice(b, b + 256).map((k) => job.get(CAT, k)));
              check(
                got.every((r) => r.isOk() && r.value?.length === PAYLOAD_BYTES),
                'get missed',
              );
            }
          })),
      );
      // iterate against raw iterate().
      add(
        'iterate',
        scale.rows /
          (await time(async () => {
            let n = 0;
            for await (const row of job.iterate(CAT, range)) n += row.payload.length > 0 ? 1 : 0;
            check(n === scale.rows, `iterate saw ${n} rows`);
          })),
      );
      add(
        'raw iterate()',
        scale.rows /
          (await time(() => {
            let n = 0;
            for (const row of raw.iterate.iterate(cat, start, stop))
              n += (row[1] as Buffer).length > 0 ? 1 : 0;
            check(n === scale.rows, `raw iterate saw ${n} rows`);
          })),
      );
      // scan paging with `after` against one unbounded scan.
      add(
        'scan pages of 1,000 (after)',
        scale.rows /
          (await time(async () => {
            let n = 0;
            let after: (typeof keys)[number] | undefined;
            for (;;) {
              const page = (
                await job.scan(CAT, range, { limit: 1000, ...(after && { after }) })
              )._unsafeUnwrap();
              n += page.length;
              if (page.length < 1000) break;
              after = page[page.length - 1]?.key;
            }
            check(n === scale.rows, `paging saw ${n} rows`);
          })),
      );
      add(
        'one unbounded scan',
        scale.rows /
          (await time(async () => {
            const rows = (await job.scan(CAT, range))._unsafeUnwrap();
            check(rows.length === scale.rows, `scan saw ${rows.length} rows`);
          })),
      );
    }
    raw.db.close();

    const med = (name: string): number => median(samples[name] ?? [0]);
    const spread = (name: string): string => {
      const xs = samples[name] ?? [0];
      return `${((100 * (Math.max(...xs) - Math.min(...xs))) / median(xs)).toFixed(0)}%`;
    };
    console.log('\n| workload | per second (median) | range | ');
    console.log('|---|---|---|');
    for (const name of Object.keys(samples))
      console.log(`| ${name} | ${fmt(med(name))} | ${spread(name)} |`);

    // Memory: iterate 1M rows of another job, then scan them for contrast, each in a fresh
    // process (this one's heap has grown with the loads above).
    const big = (await p.openJob('big'))._unsafeUnwrap();
    await load(big, 'big', scale.bigRows);
    (await p.close())._unsafeUnwrap();
    const iterGrowth = rssChild(p.rootDir, 'iterate', scale.bigRows);
    const scanGrowth = rssChild(p.rootDir, 'scan', scale.bigRows);

    const targets: [string, number, number][] = [
      ['getMany keys/s vs raw serial gets', med('getMany') / med('raw serial gets'), 1.0],
      ['getMany keys/s vs our gets 256 in flight', med('getMany') / med('gets 256 in flight'), 3.0],
      ['iterate rows/s vs raw iterate()', med('iterate') / med('raw iterate()'), 0.85],
      [
        'scan paging vs one unbounded scan',
        med('scan pages of 1,000 (after)') / med('one unbounded scan'),
        0.8,
      ],
    ];
    console.log('\n| target | ratio | wanted | |');
    console.log('|---|---|---|---|');
    for (const [what, ratio, wanted] of targets) {
      console.log(
        `| ${what} | ${ratio.toFixed(2)}x | >= ${wanted}x | ${ratio >= wanted ? 'pass' : 'MISS'} |`,
      );
    }
    const limit = 64;
    console.log(
      `| peak RSS growth iterating ${scale.bigRows.toLocaleString('en-US')} rows | ${(iterGrowth / MiB).toFixed(1)} MiB | <= ${limit} MiB | ${iterGrowth / MiB <= limit ? 'pass' : 'MISS'} |`,
    );
    console.log(
      `(for contrast, one scan of the same ${scale.bigRows.toLocaleString('en-US')} rows: +${(scanGrowth / MiB).toFixed(1)} MiB)`,
    );
  } finally {
    await p.close(); // Ok again when the memory part closed it
    rmSync(dir, { recursive: true, force: true });
  }
}

const invokedDirectly =
  process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
const child = process.argv.indexOf('--rss-child');
if (invokedDirectly && child >= 0) {
  const [root, how, rows] = process.argv.slice(child + 1);
  await rssChildMain(root as string, how as string, Number(rows));
} else if (invokedDirectly) await runReadsBench({ quick: process.argv.includes('--quick') });
