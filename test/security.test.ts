/*
 * Security (issue "Reliability"): hostile job ids, and one owner per job file within a
 * process (CONTRACT §3: "Job ids are validated or mapped so that no id can name a file
 * outside rootDir ... an id that cannot be stored safely is InvalidArgument, never a
 * stray file"; "A job file that ... another Persistency in this process has open is
 * refused"; §6: "its committed data can be read by another process through a read-only
 * connection").
 *
 * For every hostile id, openJob either returns Err(InvalidArgument) or opens a job whose
 * file is a direct child of rootDir. Around the whole run, the directories an escaping id
 * could reach (the root's parent and grandparent, with decoy files where a naive mapping
 * would land, os.tmpdir(), process.cwd(), /) are compared before and after.
 * Cross-process and cross-thread ownership is covered by test/multiprocess.test.ts and
 * test/ownership.test.ts.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import Database from 'better-sqlite3';
import type { Result } from 'neverthrow';
import { describe, expect, it } from 'vitest';
import {
  decodePayload,
  key,
  Persistency,
  PersistencyError,
  type PersistencyErrorKind,
  payload,
} from '../src/index.js';
import { ROOT_LOCK_FILE } from '../src/root-lock.js';
import { unwrap, useTempDirs } from './support/env.js';

// ---------------------------------------------------------------------------------------
// Helpers

const tempDir = useTempDirs('persistency-security-');

function expectErr(r: Result<unknown, PersistencyError>, kind: PersistencyErrorKind): void {
  if (r.isOk()) throw new Error(`expected Err(${kind}), got Ok`);
  expect(r.error).toBeInstanceOf(PersistencyError);
  expect(r.error.kind).toBe(kind);
}

/** Every path under `dir` (files and directories, relative), with file contents. */
function snapshot(dir: string, skip: string | undefined = undefined): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const full = join(d, entry.name);
      if (full === skip) continue;
      const rel = relative(dir, full);
      if (entry.isDirectory()) {
        out.set(`${rel}/`, '');
        walk(full);
      } else {
        out.set(rel, readFileSync(full).toString('hex'));
      }
    }
  };
  walk(dir);
  return out;
}

/** Entries of `dir` (top level only). */
const listing = (dir: string): Set<string> => new Set(readdirSync(dir));

/**
 * A job's file name in our root: an encoded stem, `.db`, and at most a `-wal` or `-shm`
 * sidecar (both exist while the job is open). Besides job files the root holds only its
 * lock file, ROOT_LOCK_FILE.
 */
const JOB_FILE = /^(?:[A-Za-z0-9_-]|%[0-9A-F]{2})+\.db(?:-wal|-shm)?$/;

/** Names an escaping id could leave behind in a directory it reached. */
function suspicious(name: string, ids: readonly string[]): boolean {
  if (/\.db(?:-wal|-shm|-journal)?$/.test(name)) return true;
  return ids.some((id) => {
    if (id.length === 0) return false;
    const last = id.split(/[/\\]/).pop() ?? '';
    return name === id || (last.length > 0 && (name === last || name.startsWith(`${last}.db`)));
  });
}

// ---------------------------------------------------------------------------------------
// The hostile ids

const HOSTILE: readonly [label: string, id: string][] = [
  ['..', '..'],
  ['../x', '../x'],
  ['../../etc/passwd', '../../etc/passwd'],
  ['a/b', 'a/b'],
  ['a\\b', 'a\\b'],
  ['/abs', '/abs'],
  ['C:\\x', 'C:\\x'],
  ['NUL byte', '\0'],
  ['x NUL y', 'x\0y'],
  ['file: URI', 'file:x?mode=ro'],
  ['?mode=memory', '?mode=memory'],
  [':memory:', ':memory:'],
  ['CON', 'CON'],
  ['NUL', 'NUL'],
  ['aux.txt', 'aux.txt'],
  ['.', '.'],
  ['.hidden', '.hidden'],
  ['%2e%2e', '%2e%2e'],
  ['%2E%2E (the encoding of ..)', '%2E%2E'],
  ['10,000 bytes', 'x'.repeat(10_000)],
  ['240 bytes', 'y'.repeat(240)],
  ['241 bytes', 'y'.repeat(241)],
  ['80 three-byte characters (720 encoded bytes)', '日'.repeat(80)],
  ['empty', ''],
  ['space', ' '],
  ['whitespace', ' \t\r\n'],
  ['trailing dot and space', 'x. '],
  ['unicode', 'tenant-日本-😀'],
  ['é precomposed (NFC)', '\u00e9'],
  ['é decomposed (NFD)', 'e\u0301'],
  ['upper case', 'Tenant'],
  ['lower case', 'tenant'],
  ['lone high surrogate', '\uD800'],
  ['lone low surrogate', 'a\uDC00b'],
];

/** Ids the contract names as unstorable: they must be refused, not mapped. */
const MUST_REFUSE = new Set(['', 'x'.repeat(10_000), 'y'.repeat(241), '\uD800', 'a\uDC00b']);

// ---------------------------------------------------------------------------------------

describe('hostile job ids', () => {
  it('are refused with InvalidArgument or stored as a direct child of rootDir, one file per id, and dropJob removes only its own file', async () => {
    // base/etc and base/parent/x.db are where a naive `join(root, id + '.db')` of
    // '../../etc/passwd' and '../x' would land; base/parent/sentinel.txt must survive.
    const base = tempDir();
    const parent = join(base, 'parent');
    const root = join(parent, 'root');
    mkdirSync(join(base, 'etc'), { recursive: true });
    mkdirSync(parent);
    writeFileSync(join(base, 'etc', 'passwd.db'), 'decoy: ../../etc/passwd');
    writeFileSync(join(parent, 'x.db'), 'decoy: ../x');
    writeFileSync(join(parent, 'x.db-wal'), 'decoy: ../x wal');
    writeFileSync(join(parent, 'sentinel.txt'), 'sentinel');
    const ids = HOSTILE.map(([, id]) => id);
    const baseBefore = snapshot(base, root);
    const tmpBefore = listing(tmpdir());
    const cwdBefore = listing(process.cwd());
    const fsRootBefore = listing('/');

    const p = unwrap(Persistency.instance(root));
    const opened = new Map<string, string | undefined>();
    p.events.on('jobOpened', (e) => opened.set(e.jobId, e.file));

    // Open each id, one at a time, and write data that names it (its index).
    const accepted: { n: number; label: string; id: string; file: string }[] = [];
    for (const [n, [label, id]] of HOSTILE.entries()) {
      const r = await p.openJob(id);
      if (r.isErr()) {
        expect(r.error.kind, `${label}: ${r.error.message}`).toBe('InvalidArgument');
        continue;
      }
      expect(MUST_REFUSE.has(id), `${label} was accepted`).toBe(false);
      const file = opened.get(id);
      if (file === undefined) throw new Error(`${label}: no jobOpened event with a file`);
      expect(dirname(file), label).toBe(root);
      expect(basename(file), label).toMatch(JOB_FILE);
      r.value.persistPut('c', key('who'), payload(n, label));
      accepted.push({ n, label, id, file });
    }
    for (const id of MUST_REFUSE) expectErr(await p.openJob(id), 'InvalidArgument');
    const refused = HOSTILE.filter(([, id]) => !accepted.some((a) => a.id === id)).map(([l]) => l);
    console.log(
      `[security] ${accepted.length} hostile ids stored inside the root ` +
        `(${accepted.map((a) => `${JSON.stringify(a.label)} -> ${basename(a.file)}`).join(', ')}); ` +
        `${refused.length} refused with InvalidArgument (${refused.join(', ')})`,
    );

    // All open at once: each reads back its own data (two ids sharing a file could not
    // both be open: the second open would be Busy, or read the other's row).
    for (const { n, label, id } of accepted) {
      const job = unwrap(p.job(id));
      const got = unwrap(await job.get('c', key('who')));
      expect(got && decodePayload(got, ['number', 'string']), label).toEqual([n, label]);
    }
    const files = new Set(accepted.map((a) => a.file));
    expect(files.size).toBe(accepted.length);
    // The root holds exactly the accepted jobs' files (and their -wal and -shm while they
    // are open) and the root's lock file, nothing else.
    const rootEntries = readdirSync(root, { withFileTypes: true });
    expect(rootEntries.map((e) => e.name)).toContain(ROOT_LOCK_FILE);
    for (const e of rootEntries) {
      expect(e.isFile(), e.name).toBe(true);
      if (e.name === ROOT_LOCK_FILE) continue;
      expect(e.name).toMatch(JOB_FILE);
      expect(files.has(join(root, e.name.replace(/-(?:wal|shm)$/, ''))), e.name).toBe(true);
    }

    // The same id maps to the same file after a restart of the whole Persistency.
    await Persistency.reset();
    const p2 = unwrap(Persistency.instance(root));
    const reopened = new Map<string, string | undefined>();
    p2.events.on('jobOpened', (e) => reopened.set(e.jobId, e.file));
    for (const { n, label, id, file } of accepted) {
      const job = unwrap(await p2.openJob(id));
      expect(reopened.get(id), label).toBe(file);
      const got = unwrap(await job.get('c', key('who')));
      expect(got && decodePayload(got, ['number', 'string']), label).toEqual([n, label]);
    }
    const closed = await p2.close();
    unwrap(closed);
    expect(readdirSync(root).sort()).toEqual(
      [...[...files].map((f) => basename(f)), ROOT_LOCK_FILE].sort(),
    );

    // dropJob of each id deletes its own file and nothing else.
    await Persistency.reset();
    const p3 = unwrap(Persistency.instance(root));
    const remaining = new Set(readdirSync(root));
    for (const { label, id, file } of accepted) {
      unwrap(await p3.dropJob(id));
      remaining.delete(basename(file));
      expect(new Set(readdirSync(root)), `after dropJob(${label})`).toEqual(remaining);
    }
    for (const id of MUST_REFUSE) expectErr(await p3.dropJob(id), 'InvalidArgument');
    // The root's lock file belongs to no job: it stays.
    expect(readdirSync(root)).toEqual([ROOT_LOCK_FILE]);

    // Nothing was created, changed or removed anywhere an id could have escaped to.
    expect(snapshot(base, root)).toEqual(baseBefore);
    const fresh = (before: Set<string>, dir: string): string[] =>
      [...listing(dir)].filter((name) => !before.has(name) && suspicious(name, ids));
    expect(fresh(tmpBefore, tmpdir())).toEqual([]);
    expect(fresh(cwdBefore, process.cwd())).toEqual([]);
    expect(fresh(fsRootBefore, '/')).toEqual([]);
  }, 60_000);

  it('an id that encodes to one of the decoys never opens or drops the decoy', async () => {
    // 'x' maps to root/x.db; the decoys named like '../x' live one level up and survive.
    const base = tempDir();
    const root = join(base, 'root');
    writeFileSync(join(base, 'x.db'), 'decoy');
    const p = unwrap(Persistency.instance(root));
    for (const id of ['../x', 'x', '..%2Fx', '..\\x']) {
      const job = unwrap(await p.openJob(id));
      job.persistPut('c', key(1), payload(id));
      unwrap(await p.closeJob(id));
    }
    expect(readdirSync(root).filter((f) => f !== ROOT_LOCK_FILE).length).toBe(4);
    for (const id of ['../x', 'x', '..%2Fx', '..\\x']) unwrap(await p.dropJob(id));
    expect(readdirSync(root)).toEqual([ROOT_LOCK_FILE]);
    expect(readFileSync(join(base, 'x.db'), 'utf8')).toBe('decoy');
    expect(readdirSync(base).sort()).toEqual(['root', 'x.db']);
  });
});

describe('one owner per root within a process', () => {
  it('after Persistency.reset, a second Persistency in the same thread opens the job the first closed', async () => {
    const root = tempDir();
    const p1 = unwrap(Persistency.instance(root));
    const job1 = unwrap(await p1.openJob('owned'));
    job1.persistPut('c', key(1), payload('first'));
    unwrap(await p1.closeJob('owned'));
    await Persistency.reset();

    const p2 = unwrap(Persistency.instance(root));
    expect(p2).not.toBe(p1);
    const job2 = unwrap(await p2.openJob('owned'));
    expect(unwrap(await job2.get('c', key(1)))).toEqual(payload('first'));
    // The first instance is closed for good: it cannot take the job back.
    expectErr(await p1.openJob('owned'), 'Closed');
    job2.persistPut('c', key(2), payload('second'));
    unwrap(await job2.flush());

    // Reset while the job is still open closes it, and a third instance opens it again.
    await Persistency.reset();
    expect(job2.running).toBe(false);
    const p3 = unwrap(Persistency.instance(root));
    const job3 = unwrap(await p3.openJob('owned'));
    expect(unwrap(await job3.get('c', key(2)))).toEqual(payload('second'));
  });

  it('dropJob racing openJob of the same id never deletes the file under the job openJob returns', async () => {
    // openJob is issued right after dropJob, in the same turn. Either order of the two is
    // a fair outcome, but whatever job openJob returns owns its file: a write it flushed
    // Ok must be there after close and reopen (CONTRACT §4 "Durability"), and its file
    // must exist while it is open. The race is timing-dependent, so it is run for
    // IDS ids in parallel, ROUNDS times.
    const root = tempDir();
    const p = unwrap(Persistency.instance(root));
    const ROUNDS = 10;
    const IDS = 8;
    const outcomes = new Map<string, number>();
    const lost: string[] = [];
    const race = async (id: string, round: number): Promise<void> => {
      const file = join(root, `${id}.db`);
      const first = unwrap(await p.openJob(id));
      first.persistPut('c', key('old'), payload(round));
      const [dropped, opened] = await Promise.all([p.dropJob(id), p.openJob(id)]);
      const drop = dropped.isOk() ? 'Ok' : `Err(${dropped.error.kind})`;
      const note = (outcome: string): void => {
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      };
      if (opened.isErr()) {
        note(`dropJob ${drop}, openJob Err(${opened.error.kind})`);
        lost.push(
          `${id} round ${round}: openJob Err(${opened.error.kind}): ${opened.error.message}`,
        );
        await p.dropJob(id);
        return;
      }
      const job = opened.value;
      job.persistPut('c', key('new'), payload(round));
      const flushed = await job.flush();
      const onDisk = existsSync(file);
      const outcome = `dropJob ${drop}, flush ${flushed.isOk() ? 'Ok' : 'Err'}, file ${onDisk ? 'present' : 'MISSING'} while open`;
      note(outcome);
      unwrap(await p.closeJob(id));
      const again = await p.openJob(id);
      const kept = again.isOk() ? unwrap(await again.value.get('c', key('new'))) : undefined;
      if (flushed.isErr() || !onDisk || kept === undefined) {
        lost.push(
          `${id} round ${round}: ${outcome}, flushed row ${kept === undefined ? 'lost' : 'kept'}`,
        );
      }
      unwrap(await p.dropJob(id));
    };
    for (let round = 0; round < ROUNDS; round++) {
      await Promise.all(Array.from({ length: IDS }, (_, n) => race(`raced-${n}`, round)));
    }
    console.log(
      `[security] dropJob + openJob race, ${ROUNDS * IDS} trials: ` +
        `${[...outcomes].map(([o, n]) => `${n}× ${o}`).join('; ')}`,
    );
    expect(lost).toEqual([]);
  }, 120_000);

  it('while a job is open, a read-only connection in this process reads its committed rows, and no connection takes the root or the file (SQLITE_BUSY)', async () => {
    const root = tempDir();
    const file = join(root, 'locked.db');
    const p = unwrap(Persistency.instance(root));
    const job = unwrap(await p.openJob('locked'));
    job.persistPut('c', key(1), payload('mine'));
    unwrap(await job.flush());
    // WAL in normal locking mode: the index is shared memory, which readers use too.
    expect(existsSync(`${file}-shm`)).toBe(true);

    const reader = new Database(file, { timeout: 0, readonly: true, fileMustExist: true });
    try {
      expect(reader.prepare('SELECT payload FROM kv').pluck().all()).toEqual([
        Buffer.from(payload('mine')),
      ]);
      expect(() => reader.exec('DELETE FROM kv')).toThrow(/readonly/);
    } finally {
      reader.close();
    }

    // timeout 0: report the lock at once instead of waiting out a busy timeout.
    const takeExclusively = (path: string) => () => {
      const db = new Database(path, { timeout: 0 });
      try {
        db.pragma('locking_mode = EXCLUSIVE');
        db.exec('BEGIN EXCLUSIVE; ROLLBACK');
      } finally {
        db.close();
      }
    };
    const attempts: [string, () => unknown][] = [
      ["the root's lock file", takeExclusively(join(root, ROOT_LOCK_FILE))],
      ['the job file', takeExclusively(file)],
    ];
    for (const [what, attempt] of attempts) {
      let code: unknown;
      try {
        attempt();
        throw new Error(`a connection took ${what} exclusively while the job is open`);
      } catch (e) {
        code = (e as { code?: unknown }).code;
      }
      expect(code, what).toBe('SQLITE_BUSY');
    }

    // The job is undisturbed by the attempts, and once closed the file is free.
    job.persistPut('c', key(2), payload('still mine'));
    expect(unwrap(await job.get('c', key(1)))).toEqual(payload('mine'));
    unwrap(await p.closeJob('locked'));
    takeExclusively(join(root, ROOT_LOCK_FILE))(); // its last job closed, the root is free
    const db = new Database(file, { timeout: 0, fileMustExist: true });
    try {
      expect(db.prepare('SELECT count(*) FROM kv').pluck().get()).toBe(2);
    } finally {
      db.close();
    }
    // And the job reopens after the foreign connection has gone.
    const again = unwrap(await p.openJob('locked'));
    expect(unwrap(await again.get('c', key(2)))).toEqual(payload('still mine'));
  });
});
