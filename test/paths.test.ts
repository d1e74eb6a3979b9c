// Job id → file name: the mapping is safe, injective and reversible.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { key, Persistency, payload } from '../src/index.js';
import { jobFileStem, jobIdFromStem, MAX_STEM_BYTES } from '../src/paths.js';
import { unwrap, useTempDirs } from './support/env.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url)); // built by npm test

const stem = (id: string) => {
  const r = jobFileStem(id);
  if (!r.ok) throw r.error;
  return r.stem;
};

describe('jobFileStem', () => {
  it.each([
    ['tenant-42', 'tenant-42'],
    ['a_b', 'a_b'],
    ['..', '%2E%2E'],
    ['../etc/passwd', '%2E%2E%2Fetc%2Fpasswd'],
    ['a\\b', 'a%5Cb'],
    ['x\0y', 'x%00y'],
    ['file:x?mode=ro', 'file%3Ax%3Fmode%3Dro'],
    ['100%', '100%25'],
    ['é', '%C3%A9'],
    ['CON', '%43%4F%4E'],
    ['nul', '%6Eul'],
    ['com1', '%63om1'],
    ['CONSOLE', '%43%4F%4E%53%4F%4C%45'],
    ['A', '%41'],
    ['a', 'a'],
    ['Tenant-42', '%54enant-42'],
  ])('%j → %s', (id, expected) => {
    expect(stem(id)).toBe(expected);
    expect(jobIdFromStem(expected)).toBe(id);
  });

  it('refuses what cannot be stored safely', () => {
    for (const bad of ['', 'x'.repeat(MAX_STEM_BYTES + 1), '\ud800', 'é'.repeat(50), 7, null]) {
      const r = jobFileStem(bad);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.kind).toBe('InvalidArgument');
    }
  });

  it('gives ids that differ only in case names that differ also when case is ignored', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }), (a) => {
        for (const b of [a.toUpperCase(), a.toLowerCase()]) {
          const ra = jobFileStem(a);
          const rb = jobFileStem(b);
          if (ra.ok && rb.ok && a !== b)
            expect(ra.stem.toLowerCase()).not.toBe(rb.stem.toLowerCase());
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('reads the names version 0.1 gave (upper-case letters kept) back to their ids', () => {
    expect(jobIdFromStem('CONSOLE')).toBe('CONSOLE');
    expect(jobIdFromStem('%43ON')).toBe('CON');
    expect(jobIdFromStem('Tenant-42')).toBe('Tenant-42');
  });

  it('is reversible and injective for any well-formed id, and never names a path', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 30 }),
        fc.oneof(
          fc.string({ maxLength: 30 }),
          fc.string({ unit: 'grapheme', maxLength: 30 }).map((x) => x.toUpperCase()),
        ),
        (a, b) => {
          const ra = jobFileStem(a);
          const rb = jobFileStem(b);
          if (ra.ok) {
            expect(ra.stem).toMatch(/^[A-Za-z0-9_%-]+$/);
            expect(jobIdFromStem(ra.stem)).toBe(a);
          }
          // Distinct also where file names ignore case (macOS, Windows).
          if (ra.ok && rb.ok && a !== b)
            expect(ra.stem.toLowerCase()).not.toBe(rb.stem.toLowerCase());
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('does not claim files it did not name', () => {
    for (const name of ['CON', 'a.b', '%zz', '%2e', 'x y', ''])
      expect(jobIdFromStem(name)).toBeUndefined();
  });
});

describe('job files named by version 0.1 (upper-case letters kept)', () => {
  const tempDir = useTempDirs('persistency-legacy-names-');

  /** A root holding a 0.1 file of an id whose new name would be 300 bytes, and a Persistency. */
  async function rootWithLongLegacyJob() {
    const root = tempDir();
    const id = 'A'.repeat(100);
    const maker = unwrap(Persistency.open(root));
    unwrap(await maker.openJob('tmp'));
    unwrap(await maker.close());
    renameSync(join(root, 'tmp.db'), join(root, `${id}.db`));
    return { root, id, p: unwrap(Persistency.open(root)) };
  }

  it('are found, renamed to their new names on open with their data, listed by the CLI, and dropped', async () => {
    const root = tempDir();
    let p = unwrap(Persistency.instance(root));
    const job = unwrap(await p.openJob('Alice'));
    job.persistPut('c', key(1), payload('kept'));
    unwrap(await job.flush());
    unwrap(await p.close());
    await Persistency.reset();
    renameSync(join(root, '%41lice.db'), join(root, 'Alice.db')); // as 0.1 named it
    expect(jobIdFromStem('Alice')).toBe('Alice'); // what the CLI's ls reads back

    p = unwrap(Persistency.instance(root));
    const again = unwrap(await p.openJob('Alice'));
    expect(unwrap(await again.get('c', key(1)))).toEqual(payload('kept'));
    expect(readdirSync(root).filter((f) => f.endsWith('.db'))).toEqual(['%41lice.db']);
    const lower = unwrap(await p.openJob('alice')); // its own file, not Alice's
    expect(unwrap(await lower.get('c', key(1)))).toBeUndefined();
    unwrap(await p.closeJob('Alice'));
    renameSync(join(root, '%41lice.db'), join(root, 'Alice.db'));
    unwrap(await p.dropJob('Alice'));
    expect(existsSync(join(root, 'Alice.db'))).toBe(false);
    unwrap(await p.close());
  });

  // Found by a review: listed, but refused by openJob and dropJob (InvalidArgument).
  it('whose new name would be too long keep their 0.1 name: listed, opened with their rows, read by the CLI, dropped', async () => {
    const root = tempDir();
    const id = 'A'.repeat(100); // 0.1: a 100-byte name; now each letter would be %41
    const maker = unwrap(Persistency.open(root));
    const tmp = unwrap(await maker.openJob('tmp'));
    tmp.persistPut('c', key(1), payload('precious'));
    unwrap(await maker.close());
    renameSync(join(root, 'tmp.db'), join(root, `${id}.db`));

    const p = unwrap(Persistency.open(root));
    expect(unwrap(await p.listJobs())).toEqual([id]);
    const job = unwrap(await p.openJob(id));
    expect(unwrap(await job.get('c', key(1)))).toEqual(payload('precious'));
    job.persistPut('c', key(2), payload('more'));
    unwrap(await p.closeJob(id));
    expect(readdirSync(root).filter((f) => f.endsWith('.db'))).toEqual([`${id}.db`]);
    const scanned = execFileSync(process.execPath, [CLI, 'count', root, id, 'c'], {
      encoding: 'utf8',
    });
    expect(scanned.trim()).toBe('2');
    unwrap(await p.dropJob(id));
    expect(readdirSync(root).filter((f) => f.startsWith('A'))).toEqual([]);
    // An id whose new name is too long and that has no 0.1 file is refused as before.
    const other = await p.openJob('B'.repeat(100));
    expect(other.isErr() && other.error.kind).toBe('InvalidArgument');
    unwrap(await p.close());
  });

  // Found by a review: the open looked the file up again after the drop and opened <root>/undefined.db.
  it('such a job dropped and opened in one go: the open is refused, and no file is made', async () => {
    const { root, id, p } = await rootWithLongLegacyJob();
    const dropped = p.dropJob(id);
    const opened = p.openJob(id); // looked up while the 0.1 file is still there
    unwrap(await dropped);
    const r = await opened;
    expect(r.isErr() && r.error.kind).toBe('InvalidArgument'); // no 0.1 file now: no name
    expect(readdirSync(root).filter((f) => f.endsWith('.db'))).toEqual([]);
    expect(unwrap(await p.listJobs())).toEqual([]);
    await p.close();
  });

  // Found by a review: both looked the file up again, found none, and refused the id.
  it('such an open job whose file was removed: openJob gives the open job, dropJob closes it', async () => {
    const { root, id, p } = await rootWithLongLegacyJob();
    const job = unwrap(await p.openJob(id));
    rmSync(join(root, `${id}.db`));
    expect(unwrap(await p.openJob(id))).toBe(job);
    const dropped = await p.dropJob(id); // the close says the file went, as for any job
    expect(dropped.isErr() && [dropped.error.kind, dropped.error.code]).toEqual([
      'Backend',
      'ENOENT',
    ]);
    expect(p.hasJob(id)).toBe(false);
    await p.close();
  });

  it('a drop removes the side files of a 0.1 name even when its database is gone', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.open(root));
    unwrap(await p.openJob('Keep')); // the root exists and is owned
    // What a drop cut short between the database and its side files leaves.
    writeFileSync(join(root, 'Alice.db-wal'), 'stale');
    writeFileSync(join(root, 'Alice.db-shm'), 'stale');
    unwrap(await p.dropJob('Alice'));
    expect(readdirSync(root).filter((f) => f.startsWith('Alice'))).toEqual([]);
    unwrap(await p.close());
  });
});
