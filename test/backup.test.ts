/*
 * CONTRACT.md section 10: job.backup / p.backupJob — a consistent copy of the committed
 * state while writes go on, holding exactly the writes issued before the call; the folder
 * made; never replacing a file; the copy a valid job file in rollback-journal mode (no
 * -wal or -shm beside it when read). Both threading modes, file and `:memory:` roots, and
 * a released job.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { type Job, key, Persistency, payload, prefixRange } from '../src/index.js';
import { jobClient } from '../src/job.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { unwrap, useTempDirs } from './support/env.js';
import { ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-backup-');

/** The rows of a job file read with plain better-sqlite3, and its integrity and journal mode. */
function readCopy(file: string): { rows: number; intact: string; mode: string; version: number } {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return {
      rows: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM kv').get()?.n ?? -1,
      intact: db.pragma('integrity_check', { simple: true }) as string,
      mode: db.pragma('journal_mode', { simple: true }) as string,
      version: db.pragma('user_version', { simple: true }) as number,
    };
  } finally {
    db.close();
  }
}

function write(job: Job, from: number, to: number, size = 300): void {
  for (let i = from; i < to; i++)
    job.persistPut('log', key(i), new Uint8Array(size).fill(i & 0xff));
}

describe.each(ROOT_MODES)('backup (%s)', (_name, memory, options) => {
  function open(): Persistency {
    return unwrap(Persistency.open(memory ? ':memory:' : tempDir(), options));
  }

  it('copies exactly the writes issued before the call while writes go on; the copy opens as a job', async () => {
    const p = open();
    const job = unwrap(await p.openJob('j'));
    write(job, 0, 5_000);
    const dest = join(tempDir(), 'made', 'by', 'backup', 'j.db');
    const copied = job.backup(dest);
    write(job, 5_000, 8_000); // after the call: not in the copy
    const tx = job.atomic().put('log', key('during'), payload('x')).commit();
    unwrap(await copied);
    expect(unwrap(await tx).ok).toBe(true);
    unwrap(await job.flush());
    expect(unwrap(await job.count('log', prefixRange(key())))).toBe(8_001);

    const copy = readCopy(dest);
    expect(copy).toEqual({ rows: 5_000, intact: 'ok', mode: 'delete', version: 1 });
    expect(readdirSync(join(dest, '..'))).toEqual(['j.db']); // nothing beside it

    // The copy is a job file: a root holding it opens it with every row.
    const other = unwrap(Persistency.open(join(dest, '..'), options));
    const restored = unwrap(await other.openJob('j'));
    const rows = unwrap(await restored.scan('log', prefixRange(key())));
    expect(rows.length).toBe(5_000);
    expect(rows[4_999]?.payload).toEqual(new Uint8Array(300).fill(4_999 & 0xff));
    await other.close();
  });

  it('never replaces a file: the destination, or a journal beside it, already there is InvalidArgument', async () => {
    const p = open();
    const job = unwrap(await p.openJob('j'));
    write(job, 0, 10);
    const dir = tempDir();
    const dest = join(dir, 'j.db');
    unwrap(await job.backup(dest));
    const again = await job.backup(dest);
    expect(again.isErr() && again.error.kind).toBe('InvalidArgument');
    expect(readCopy(dest).rows).toBe(10); // the first copy is untouched

    const stale = join(dir, 'k.db');
    writeFileSync(`${stale}-wal`, 'left over');
    const refused = await job.backup(stale);
    expect(refused.isErr() && refused.error.kind).toBe('InvalidArgument');
    expect(readdirSync(dir).sort()).toEqual(['j.db', 'k.db-wal']);
  });

  it('refuses a destination that is not a path, a closed job, and a string id not open', async () => {
    const p = open();
    const job = unwrap(await p.openJob('j'));
    for (const bad of ['', 42, undefined, null, 'a\0b', {}]) {
      const r = await job.backup(bad as string);
      expect(r.isErr() && r.error.kind, String(bad)).toBe('InvalidArgument');
    }
    const missing = await p.backupJob('nobody', join(tempDir(), 'x.db'));
    expect(missing.isErr() && missing.error.kind).toBe('JobNotFound');
    unwrap(await p.backupJob('j', join(tempDir(), 'by-id.db')));
    unwrap(await p.closeJob('j'));
    const closed = await job.backup(join(tempDir(), 'y.db'));
    expect(closed.isErr() && closed.error.kind).toBe('Closed');
  });

  it('backs up a released job, taking it up again, and keeps it resident until the copy is made', async () => {
    const p = unwrap(
      Persistency.open(memory ? ':memory:' : tempDir(), { ...options, idleCloseMs: 0 }),
    );
    const job = unwrap(await p.openJob('j'));
    write(job, 0, 2_000);
    unwrap(await job.flush());
    expect(await releaseIdleJobs(p)).toBe(1);
    expect(p.stats().residentJobs).toBe(0);
    const dest = join(tempDir(), 'j.db');
    const copied = job.backup(dest);
    expect(jobClient(job).holds.count).toBe(1); // held: an idle release now would not take it
    unwrap(await copied);
    expect(jobClient(job).holds.count).toBe(0);
    expect(readCopy(dest)).toMatchObject({ rows: 2_000, intact: 'ok' });
  });

  it('runs several backups at once, of one job and of several, each its own snapshot', async () => {
    const p = open();
    const a = unwrap(await p.openJob('a'));
    const b = unwrap(await p.openJob('b'));
    write(a, 0, 1_000);
    write(b, 0, 3_000);
    const dir = tempDir();
    const first = a.backup(join(dir, 'a1.db'));
    write(a, 1_000, 2_000);
    const second = a.backup(join(dir, 'a2.db'));
    const third = b.backup(join(dir, 'b.db'));
    unwrap(await first);
    unwrap(await second);
    unwrap(await third);
    expect(readCopy(join(dir, 'a1.db')).rows).toBe(1_000);
    expect(readCopy(join(dir, 'a2.db')).rows).toBe(2_000);
    expect(readCopy(join(dir, 'b.db')).rows).toBe(3_000);
    expect(readdirSync(dir).sort()).toEqual(['a1.db', 'a2.db', 'b.db']);
  });

  it('ends a backup the job is closed under with Closed, or finishes it; no partial file is left', async () => {
    const p = open();
    const job = unwrap(await p.openJob('j'));
    write(job, 0, 20_000, 1_000); // ~20 MB: many steps of the copy
    const dir = tempDir();
    const dest = join(dir, 'j.db');
    const copied = job.backup(dest);
    const closed = p.closeJob('j');
    const r = await copied;
    unwrap(await closed);
    if (r.isErr()) {
      expect(r.error.kind).toBe('Closed');
      expect(readdirSync(dir)).toEqual([]);
    } else {
      expect(readCopy(dest)).toMatchObject({ rows: 20_000, intact: 'ok' });
      expect(readdirSync(dir)).toEqual(['j.db']);
    }
  });

  it('copies a file that has expiry (schema version 2) with its expiries', async () => {
    let now = 1_000_000;
    const p = unwrap(
      Persistency.open(memory ? ':memory:' : tempDir(), { ...options, clock: () => now }),
    );
    const job = unwrap(await p.openJob('j'));
    job.persistPut('s', key('a'), payload('lives'), { expireInMs: 60_000 });
    job.persistPut('s', key('b'), payload('forever'));
    const dest = join(tempDir(), 'j.db');
    unwrap(await job.backup(dest));
    expect(readCopy(dest)).toMatchObject({ rows: 2, intact: 'ok', version: 2 });
    const other = unwrap(Persistency.open(join(dest, '..'), { ...options, clock: () => now }));
    const restored = unwrap(await other.openJob('j'));
    expect(unwrap(await restored.count('s', prefixRange(key())))).toBe(2);
    now += 60_000;
    expect(unwrap(await restored.count('s', prefixRange(key())))).toBe(1);
    await other.close();
  });
});
