/*
 * What a durable commit costs when commits go to many files instead of one: plain
 * better-sqlite3 in the main thread, none of this package's code. Each commit is one
 * transaction of 16 rows (the tenants benchmark's burst) in a WAL file with
 * synchronous=FULL; the commits go to one file, or round-robin over 200 and 500 files.
 * The tenants benchmark's active phase spreads its bursts over 500 jobs, whose rows
 * cannot share a commit, while one job's group commit gathers ~1,000 rows into one: this
 * shows what the disk alone allows either way (README, Many tenants in one process).
 *
 *   npm run bench -- commits [--quick]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { gitCommit, median } from './common.js';
import type { BenchOptions } from './index.js';

const ROWS_PER_COMMIT = 16;
const FILE_COUNTS = [1, 200, 500] as const;

interface Files {
  readonly dir: string;
  readonly dbs: Database.Database[];
  readonly commit: (() => void)[];
}

function openFiles(n: number): Files {
  const dir = mkdtempSync(join(tmpdir(), `persistency-commits-${n}-`));
  const dbs: Database.Database[] = [];
  const commit: (() => void)[] = [];
  const payload = new Uint8Array(100).fill(1);
  const category = Buffer.from('kv');
  for (let i = 0; i < n; i++) {
    const db = new Database(join(dir, `${i}.db`));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec(
      'CREATE TABLE kv (category BLOB NOT NULL, key BLOB NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (category, key)) WITHOUT ROWID',
    );
    const put = db.prepare('INSERT OR REPLACE INTO kv VALUES (?, ?, ?)');
    let next = 0;
    const burst = db.transaction(() => {
      for (let k = 0; k < ROWS_PER_COMMIT; k++) {
        const key = Buffer.alloc(4);
        key.writeUInt32BE(next++ % 50_000);
        put.run(category, key, payload);
      }
    });
    dbs.push(db);
    commit.push(() => burst());
  }
  return { dir, dbs, commit };
}

/** Commits per second over `files`, round-robin (a stride that visits every file). */
function commitsPerSecond(files: Files, seconds: number): number {
  const n = files.commit.length;
  const stride = n === 1 ? 1 : 7919 % n === 0 ? 1 : 7919;
  const until = performance.now() + seconds * 1000;
  const t0 = performance.now();
  let commits = 0;
  while (performance.now() < until) {
    (files.commit[(commits * stride) % n] as () => void)();
    commits++;
  }
  return commits / ((performance.now() - t0) / 1000);
}

export async function runCommitsBench(options: BenchOptions): Promise<void> {
  const seconds = options.quick ? 0.5 : 3;
  const reps = options.quick ? 1 : 3;
  console.log(
    `\n# durable commits over many files (plain better-sqlite3, WAL, synchronous=FULL, ${ROWS_PER_COMMIT} rows each), ${new Date().toISOString()}, commit ${gitCommit()}${options.quick ? ' [--quick: not a measurement]' : ''}`,
  );
  console.log(`${seconds} s per sample, files interleaved, median of ${reps}`);
  const sets = FILE_COUNTS.map((n) => ({ n, files: openFiles(n), samples: [] as number[] }));
  try {
    for (let rep = 0; rep < reps; rep++)
      for (const set of sets) set.samples.push(commitsPerSecond(set.files, seconds));
  } finally {
    for (const { files } of sets) {
      for (const db of files.dbs) db.close();
      rmSync(files.dir, { recursive: true, force: true });
    }
  }
  const one = median((sets[0] as (typeof sets)[number]).samples);
  console.log('| files | commits/s | rows/s | against one file | samples |');
  console.log('|---|---|---|---|---|');
  for (const { n, samples } of sets) {
    const m = median(samples);
    console.log(
      `| ${n} | ${m.toFixed(0)} | ${((m * ROWS_PER_COMMIT) / 1000).toFixed(1)} k | ${(m / one).toFixed(2)}x | ${samples.map((s) => s.toFixed(0)).join(', ')} |`,
    );
  }
}
