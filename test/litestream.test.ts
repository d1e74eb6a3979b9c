/*
 * Issue 16, CONTRACT.md section 10: a root replicated by the real Litestream (0.3.13, the
 * binary from the @flydotio/litestream-linux-x64 devDependency: Linux x64) while a child writes batches
 * to several jobs through the library, then SIGKILLs it at a random moment; each job
 * restored from the replica into a fresh root ("the other machine") opens with the library
 * and holds every batch flushed before the replica's last sync, whole and in order.
 *
 * Litestream runs as `litestream replicate -config <file>` with the configuration the CLI's
 * `litestream-config` makes; its log goes to a file (a pipe nobody reads could stall it).
 * The replica has caught up when a restore holds every batch the source file holds; then
 * Litestream is stopped with SIGTERM, which makes a last sync, and each job restored.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeKey, key, Persistency, payload, prefixRange } from '../src/index.js';
import { Child, stopChildren } from './support/children.js';
import { unwrap, useTempDirs } from './support/env.js';

const require = createRequire(import.meta.url);
// The binary ships in the platform package; only Linux x64's is a devDependency (the
// registry this project builds from carries no other), so elsewhere this fails here.
const LITESTREAM = require.resolve(
  `@flydotio/litestream-${process.platform}-${process.arch}/litestream`,
);
const REPO = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(REPO, 'dist', 'cli', 'main.js');
const JOBS = ['alpha', 'beta', 'gamma'];
const ROWS_PER_BATCH = 4;
/** A guard against a replica that never catches up, not a synchronisation device. */
const CATCH_UP_LIMIT_MS = 30_000;

const tempDir = useTempDirs('persistency-litestream-');
const litestreams = new Set<ChildProcess>();
afterEach(async () => {
  await stopChildren();
  for (const ls of litestreams) ls.kill('SIGKILL');
  litestreams.clear();
});

/** The batches a job file holds: how many from 0 are whole, and whether that is all of them. */
function batchesIn(file: string): { whole: number; rows: number; integrity: string } {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const integrity = db.pragma('integrity_check', { simple: true }) as string;
    const perBatch = new Map<bigint, number>();
    const rows = db
      .prepare<[Buffer], { key: Buffer }>('SELECT key FROM kv WHERE category = ?')
      .all(Buffer.from('b'));
    for (const { key: k } of rows) {
      const [i] = decodeKey(k, ['i64', 'i64']);
      perBatch.set(i, (perBatch.get(i) ?? 0) + 1);
    }
    let whole = 0;
    while (perBatch.get(BigInt(whole)) === ROWS_PER_BATCH) whole++;
    return { whole, rows: rows.length, integrity };
  } finally {
    db.close();
  }
}

/** `litestream restore` of `source` into `out`; false if the replica has nothing yet. */
function restore(config: string, source: string, out: string): boolean {
  rmSync(out, { force: true });
  const r = spawnSync(LITESTREAM, ['restore', '-config', config, '-o', out, source], {
    encoding: 'utf8',
  });
  if (r.status === 0) return true;
  if (/no matching backups|no snapshots|no generation/i.test(r.stderr + r.stdout)) return false;
  throw new Error(`litestream restore ${source} (exit ${r.status}): ${r.stderr}${r.stdout}`);
}

async function caughtUp(config: string, source: string, want: number, scratch: string) {
  const giveUp = performance.now() + CATCH_UP_LIMIT_MS;
  for (;;) {
    const got = restore(config, source, scratch) ? batchesIn(scratch).whole : -1;
    if (got >= want) return;
    if (performance.now() > giveUp)
      throw new Error(`the replica of ${source} holds ${got} of ${want} batches`);
    await new Promise((r) => setTimeout(r, 100)); // polling Litestream, an outside process
  }
}

describe.each(['per-job', '2'])('Litestream replication (workerThreads %s)', (threads) => {
  it('restores every job on another machine with every batch flushed before the last sync', async () => {
    const dir = tempDir();
    const root = join(dir, 'host-a');
    // The job files exist before Litestream starts: its configuration names each one.
    const seed = unwrap(Persistency.open(root));
    for (const id of JOBS) unwrap(await seed.openJob(id));
    unwrap(await seed.close());
    const made = spawnSync(
      process.execPath,
      [CLI, 'litestream-config', root, join(dir, 'replica'), '--sync-interval', '100ms'],
      { encoding: 'utf8' },
    );
    expect(made.status, made.stderr).toBe(0);
    const config = join(dir, 'litestream.yml');
    writeFileSync(config, made.stdout);
    const log = openSync(join(dir, 'litestream.log'), 'w');
    const ls = spawn(LITESTREAM, ['replicate', '-config', config], {
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    litestreams.add(ls);
    const lsExit = new Promise<number | null>((r) => ls.on('exit', (code) => r(code)));

    // Two writers one after the other, each SIGKILLed while it writes: the second goes on
    // from what the files hold, as a service restarted after a crash does.
    const scratch = join(dir, 'scratch.db');
    const held = new Map<string, number>(JOBS.map((id) => [id, 0]));
    for (let life = 0; life < 2; life++) {
      const specs = JOBS.map((id) => `${id}=${held.get(id)}`);
      const writer = new Child('litestream-writer.ts', [root, threads, ...specs]);
      const wanted = 3 + Math.floor(Math.random() * 6); // acknowledged flushes per job, 3..8
      const last = `acked ${JOBS[0]} ${(held.get(JOBS[0] as string) as number) + wanted * 25 - 1}`;
      await writer.waitForLine((line) => line === last, `${wanted} flushes of each job`);
      expect((await writer.kill()).signal).toBe('SIGKILL');
      const acked = new Map<string, number>();
      for (const line of writer.lines) {
        const [, id, i] = line.split(' ');
        acked.set(id as string, Number(i));
      }
      // What each file holds after the kill; the replica catches up with it.
      for (const id of JOBS) {
        const source = batchesIn(join(root, `${id}.db`));
        expect(source.integrity).toBe('ok');
        expect(source.rows).toBe(source.whole * ROWS_PER_BATCH); // each batch whole or absent
        expect(source.whole - 1).toBeGreaterThanOrEqual(acked.get(id) ?? -1);
        held.set(id, source.whole);
        await caughtUp(config, join(root, `${id}.db`), source.whole, scratch);
      }
    }
    // The service restarts cleanly: each job opened, one more batch, closed, all under the
    // running Litestream (whose read transaction the close's checkpoint must not wait for).
    const service = unwrap(
      Persistency.open(root, { workerThreads: threads === 'per-job' ? 'per-job' : 2 }),
    );
    for (const id of JOBS) {
      const job = unwrap(await service.openJob(id));
      const i = held.get(id) as number;
      job.persist(
        [0, 1, 2, 3].map((r) => ({
          kind: 'put',
          category: 'b',
          key: key(i, r),
          payload: payload(i),
        })),
      );
      unwrap(await service.closeJob(id));
      held.set(id, i + 1);
      await caughtUp(config, join(root, `${id}.db`), i + 1, scratch);
    }
    await service.close();
    ls.kill('SIGTERM'); // its last sync, then it exits
    expect(await lsExit).toBe(0);
    litestreams.delete(ls);
    expect(readFileSync(join(dir, 'litestream.log'), 'utf8')).not.toMatch(/level=ERROR/);

    // The other machine: a fresh root of restored files, opened by the library.
    const restored = new Map<string, number>();
    const other = join(dir, 'host-b');
    mkdirSync(other);
    for (const id of JOBS) {
      const file = join(other, `${id}.db`);
      expect(restore(config, join(root, `${id}.db`), file)).toBe(true);
      const copy = batchesIn(file);
      expect(copy.integrity).toBe('ok');
      expect(copy.rows).toBe(copy.whole * ROWS_PER_BATCH); // whole batches, from 0, no gap
      // Every batch the file holds, so every acknowledged one. It may hold one more commit
      // group: the writer was killed inside that group's commit, after its frames were in
      // the WAL and before SQLite's index of the WAL (kept by Litestream's open connection)
      // counted them, so the file does not show it but Litestream copied it (README,
      // Scaling out). It was never acknowledged.
      expect(copy.whole).toBeGreaterThanOrEqual(held.get(id) as number);
      restored.set(id, copy.whole);
    }
    const p = unwrap(
      Persistency.open(other, { workerThreads: threads === 'per-job' ? 'per-job' : 2 }),
    );
    for (const id of JOBS) {
      const job = unwrap(await p.openJob(id));
      const n = restored.get(id) as number;
      const rows = unwrap(await job.scan('b', prefixRange(key())));
      expect(rows.map((r) => decodeKey(r.key, ['i64', 'i64']))).toEqual(
        Array.from({ length: n * ROWS_PER_BATCH }, (_, k) => [
          BigInt(Math.floor(k / ROWS_PER_BATCH)),
          BigInt(k % ROWS_PER_BATCH),
        ]),
      );
      job.persistPut('b', key(n, 0), new Uint8Array(1)); // and it takes writes there
      unwrap(await job.flush());
    }
    // The first job also used expiry (schema version 2): its sessions, one put after each
    // batch, came through as far as the batches did.
    const sessions = unwrap(
      await unwrap(p.job(JOBS[0] as string)).count('session', prefixRange(key())),
    );
    const batches = restored.get(JOBS[0] as string) as number;
    expect([batches - 1, batches]).toContain(sessions);
    await p.close();
  });
});
