// Fault injection: each fault gives a clear Err (or a writeFailed event for a write), never a
// hang, a crash of the process, or damage to another job; acknowledged data survives.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  decodePayload,
  type Job,
  key,
  Persistency,
  type PersistencyEvents,
  payload,
  rawKey,
} from '../src/index.js';
import { crashJobWorker } from '../src/job.js';
import { MAX_KEY_BYTES, ROW_OVERHEAD, SQLITE_MAX_LENGTH } from '../src/limits.js';
import { ROOT_LOCK_FILE } from '../src/root-lock.js';

const base = mkdtempSync(join(tmpdir(), 'persistency-faults-'));
chmodSync(base, 0o777);
let n = 0;
const freshRoot = (): string => {
  const root = join(base, `root-${n++}`);
  mkdirSync(root, { recursive: true, mode: 0o777 });
  chmodSync(root, 0o777);
  return root;
};
const all = { start: key() };

afterEach(() => Persistency.reset());
afterAll(() => rmSync(base, { recursive: true, force: true }));

function collect(p: Persistency): PersistencyEvents['writeFailed'][] {
  const seen: PersistencyEvents['writeFailed'][] = [];
  p.events.on('writeFailed', (e) => seen.push(e));
  return seen;
}

/** `p`, or 'timeout' if it has not settled within `ms` (a hang detector). */
function within<T>(p: PromiseLike<T>, ms: number): Promise<T | 'timeout'> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

async function fill(job: Job, from: number, count: number, size = 200): Promise<void> {
  for (let i = from; i < from + count; i++)
    job.persistPut('c', key(i), payload('x'.repeat(size), i));
  expect((await job.flush()).isOk()).toBe(true);
}

describe('disk full (maxJobBytes quota → SQLITE_FULL)', () => {
  it('reports each refused batch, keeps acknowledged data and other jobs, and recovers', async () => {
    const p = Persistency.instance(freshRoot(), { maxJobBytes: 256 * 1024 })._unsafeUnwrap();
    const failed = collect(p);
    const job = (await p.openJob('full'))._unsafeUnwrap();
    const other = (await p.openJob('other'))._unsafeUnwrap();
    await fill(job, 0, 50, 1000); // acknowledged
    await fill(other, 0, 10, 100);

    for (let i = 50; i < 1000; i++) job.persistPut('c', key(i), payload('x'.repeat(1000), i));
    const flushed = await job.flush();
    expect(flushed.isErr()).toBe(true);
    expect(flushed._unsafeUnwrapErr().code).toBe('SQLITE_FULL');
    expect(failed.length).toBeGreaterThan(0);
    expect(
      failed.every(
        (e) => e.jobId === 'full' && e.reason === 'backend' && e.error.code === 'SQLITE_FULL',
      ),
    ).toBe(true);

    const rows = (await job.scan('c', { start: key(0), stop: key(50) }))._unsafeUnwrap();
    expect(rows.map((r) => decodePayload(r.payload, ['string', 'number'])[1])).toEqual([
      ...Array(50).keys(),
    ]);
    const stored = (await job.count('c', all))._unsafeUnwrap();
    expect(stored + failed.length).toBe(1000); // every write is either stored or reported
    expect((await other.count('c', all))._unsafeUnwrap()).toBe(10);

    job.persistDeletePrefix('c', key());
    job.persistPut('c', key(1), payload('after'));
    expect((await job.flush()).isOk()).toBe(true);
    expect((await job.get('c', key(1)))._unsafeUnwrap()).toEqual(payload('after'));
    expect((await p.closeJob('full')).isOk()).toBe(true);
  });
});

describe('corrupt files at open', () => {
  async function damaged(damage: (file: string) => void, options = {}) {
    const root = freshRoot();
    let p = Persistency.instance(root)._unsafeUnwrap();
    const job = (await p.openJob('victim'))._unsafeUnwrap();
    const bystander = (await p.openJob('bystander'))._unsafeUnwrap();
    await fill(job, 0, 3000);
    await fill(bystander, 0, 10);
    await Persistency.reset();
    damage(join(root, 'victim.db'));
    p = Persistency.instance(root, options)._unsafeUnwrap();
    const opened = await p.openJob('victim');
    const other = (await p.openJob('bystander'))._unsafeUnwrap();
    expect((await other.count('c', all))._unsafeUnwrap()).toBe(10);
    return { p, opened };
  }

  it('truncated: Err(Backend, SQLITE_CORRUPT) at open', async () => {
    const { opened } = await damaged((f) => truncateSync(f, Math.floor(statSync(f).size / 2)));
    expect(opened.isErr()).toBe(true);
    expect(opened._unsafeUnwrapErr()).toMatchObject({ kind: 'Backend', code: 'SQLITE_CORRUPT' });
  });

  // Overwrite the b-tree page header and cell pointers at the start of page 10 (pages are
  // 4 KiB), where SQLite's reads and quick_check are sure to look.
  const flip = (f: string) => {
    const fd = openSync(f, 'r+');
    writeSync(fd, Buffer.alloc(64, 0xa5), 0, 64, 4096 * 9);
    closeSync(fd);
  };

  it('bytes flipped in a page: reads that touch it give Err(SQLITE_CORRUPT), nothing throws', async () => {
    const { p, opened } = await damaged(flip);
    const job = opened._unsafeUnwrap();
    const counted = await job.count('c', all);
    expect(counted.isErr()).toBe(true);
    expect(counted._unsafeUnwrapErr()).toMatchObject({ kind: 'Backend', code: 'SQLITE_CORRUPT' });
    expect((await p.closeJob('victim')).isOk()).toBe(true);
  });

  it('bytes flipped in a page: refused at open with verifyOnOpen', async () => {
    const { opened } = await damaged(flip, { verifyOnOpen: true });
    expect(opened.isErr()).toBe(true);
    expect(opened._unsafeUnwrapErr()).toMatchObject({ kind: 'Backend', code: 'SQLITE_CORRUPT' });
    expect(opened._unsafeUnwrapErr().message).toMatch(/quick_check/);
  });

  // SQLite says NOTADB; the contract's code for a damaged file is SQLITE_CORRUPT (review).
  it('a non-SQLite file with the job name: Err(Backend, SQLITE_CORRUPT), file untouched', async () => {
    const text = 'not a database\n'.repeat(500);
    const { opened } = await damaged((f) => writeFileSync(f, text));
    expect(opened.isErr()).toBe(true);
    expect(opened._unsafeUnwrapErr()).toMatchObject({ kind: 'Backend', code: 'SQLITE_CORRUPT' });
    expect(opened._unsafeUnwrapErr().message).toMatch(/not a database/);
  });

  it('a damaged header: Err at open, never a hang', async () => {
    const { opened } = await damaged((f) => {
      const fd = openSync(f, 'r+');
      writeSync(fd, Buffer.from('garbage!!'), 0, 9, 0);
      closeSync(fd);
    });
    expect(opened.isErr()).toBe(true);
    expect(opened._unsafeUnwrapErr().kind).toBe('Backend');
  });

  it('a row out of key order (a key overwritten by a smaller one): scans and counts end, Err(SQLITE_CORRUPT) or rows', async () => {
    // Row 2047 ends the second scan page (pages of 1,024 rows); given row 1023's key, the
    // page after it would start after that key again, forever, without the order check.
    const { p, opened } = await damaged((f) => {
      const bytes = readFileSync(f);
      const from = Buffer.from(key(2047).bytes);
      const to = Buffer.from(key(1023).bytes);
      let replaced = 0;
      for (let at = bytes.indexOf(from); at >= 0; at = bytes.indexOf(from, at + 1)) {
        to.copy(bytes, at);
        replaced++;
      }
      expect(replaced).toBeGreaterThan(0);
      writeFileSync(f, bytes);
    });
    const job = opened._unsafeUnwrap();
    for (const options of [{}, { reverse: true }]) {
      const scanned = await within(job.scan('c', all, options), 20_000);
      expect(scanned, 'the scan ends').not.toBe('timeout');
      if (scanned !== 'timeout' && scanned.isErr())
        expect(scanned.error).toMatchObject({ kind: 'Backend', code: 'SQLITE_CORRUPT' });
    }
    const counted = await within(job.count('c', all), 20_000);
    expect(counted, 'the count ends').not.toBe('timeout');
    expect((await p.closeJob('victim')).isOk()).toBe(true);
  });

  it('a directory where the job file goes: Err(Backend) with a code, not called "not writable"', async () => {
    const root = freshRoot();
    mkdirSync(join(root, 'd.db'));
    const p = Persistency.instance(root)._unsafeUnwrap();
    const opened = await p.openJob('d');
    expect(opened.isErr()).toBe(true);
    const e = opened._unsafeUnwrapErr();
    expect(e.kind).toBe('Backend');
    expect(e.code).toMatch(/^SQLITE_CANTOPEN/);
    expect(e.message).not.toMatch(/not writable/);
  });

  it('a negative user_version (one flipped bit in the header): Err(Backend, SQLITE_CORRUPT), file untouched', async () => {
    let before: Buffer | undefined;
    let file = '';
    const { opened } = await damaged((f) => {
      const fd = openSync(f, 'r+');
      writeSync(fd, Buffer.from([0x80]), 0, 1, 60); // user_version: big-endian i32 at 60
      closeSync(fd);
      before = readFileSync(f);
      file = f;
    });
    expect(opened.isErr()).toBe(true);
    expect(opened._unsafeUnwrapErr()).toMatchObject({ kind: 'Backend', code: 'SQLITE_CORRUPT' });
    expect(opened._unsafeUnwrapErr().message).toMatch(/schema version -\d+/);
    expect(readFileSync(file).equals(before as Buffer)).toBe(true);
  });
});

describe('another connection holding the lock', () => {
  it('a write transaction elsewhere: openJob is Err(Busy) after busyTimeoutMs, then succeeds once it ends', async () => {
    const root = freshRoot();
    // The open waits out a lock for busyTimeoutMs (Litestream's are brief), then is Busy.
    const p = Persistency.instance(root, { busyTimeoutMs: 300 })._unsafeUnwrap();
    await fill((await p.openJob('locked'))._unsafeUnwrap(), 0, 5);
    (await p.closeJob('locked'))._unsafeUnwrap();

    const other = new Database(join(root, 'locked.db'));
    other.exec('BEGIN IMMEDIATE');
    other.prepare('DELETE FROM kv WHERE key = ?').run(Buffer.from(key(0).bytes));
    const started = Date.now();
    const refused = await p.openJob('locked');
    expect(refused.isErr()).toBe(true);
    expect(refused._unsafeUnwrapErr().kind).toBe('Busy');
    expect(refused._unsafeUnwrapErr().message).toContain(join(root, 'locked.db'));
    expect(Date.now() - started).toBeLessThan(3000);
    other.exec('COMMIT');
    other.close();

    const job = (await p.openJob('locked'))._unsafeUnwrap();
    expect((await job.count('c', all))._unsafeUnwrap()).toBe(4);
  });
});

describe('the worker dying mid-request', () => {
  it('fails the requests of the group it died in; acknowledged data survives; batches stay whole', async () => {
    const root = freshRoot();
    const p = Persistency.instance(root)._unsafeUnwrap();
    const died: PersistencyEvents['jobFailed'][] = [];
    p.events.on('jobFailed', (e) => died.push(e));
    const job = (await p.openJob('dies'))._unsafeUnwrap();
    const other = (await p.openJob('lives'))._unsafeUnwrap();
    await fill(job, 0, 100);

    // One turn: writes, reads, then the crash; the worker takes them as one group and
    // dies before its commit.
    job.persist([
      { kind: 'put', category: 'c', key: key(1000), payload: payload('a') },
      { kind: 'put', category: 'c', key: key(1001), payload: payload('b') },
    ]);
    const pending = [job.get('c', key(1000)), job.count('c', all), job.flush()];
    crashJobWorker(job, 'throw');
    for (const r of await Promise.all(pending)) expect(r.isErr()).toBe(true);
    expect(died).toHaveLength(1);
    expect(died[0]?.error.message).toMatch(/crash requested by a test/);
    expect((await other.count('c', all)).isOk()).toBe(true);

    const again = (await p.openJob('dies'))._unsafeUnwrap();
    const rows = (await again.scan('c', all))._unsafeUnwrap();
    const keys = rows.map((r) => decodePayload(r.payload, ['string', 'number'])[1]);
    expect(keys.slice(0, 100)).toEqual([...Array(100).keys()]);
    const extra = (await again.count('c', { start: key(1000) }))._unsafeUnwrap();
    expect([0, 2]).toContain(extra); // the unacknowledged batch is whole or absent
  });
});

describe('the real row limit (better-sqlite3: the longest string V8 can make)', () => {
  it('a row one byte over it is refused up front; a row at it is stored and read back', async () => {
    const p = Persistency.instance(freshRoot(), {
      maxPayloadBytes: SQLITE_MAX_LENGTH,
    })._unsafeUnwrap();
    const failed = collect(p);
    const job = (await p.openJob('row'))._unsafeUnwrap();
    const k = key(1);
    const most = SQLITE_MAX_LENGTH - ROW_OVERHEAD - 1 - k.bytes.length; // category 'c'
    let big: Uint8Array | undefined = new Uint8Array(most + 1);
    job.persistPut('c', k, big);
    expect(failed).toHaveLength(1);
    expect(failed[0]?.error.kind).toBe('InvalidArgument');
    expect(failed[0]?.error.message).toContain(`limit of ${SQLITE_MAX_LENGTH}`);
    big = new Uint8Array(most);
    big[most - 1] = 7;
    job.persistPut('c', k, big);
    big = undefined;
    const flushed = await job.flush();
    expect(flushed.isErr() && flushed.error.count).toBe(1); // the refused one only
    const back = (await job.get('c', k))._unsafeUnwrap();
    expect([back?.length, back?.[most - 1]]).toEqual([most, 7]);
    expect(failed).toHaveLength(1);
  });

  // Found by a review: an add's row was checked by its key alone, and failed in the worker.
  it('a counter add whose row is over it is refused up front, as the same put is', async () => {
    const p = Persistency.instance(freshRoot())._unsafeUnwrap();
    const failed = collect(p);
    const job = (await p.openJob('add'))._unsafeUnwrap();
    const category = 'c'.repeat(300);
    const k = rawKey(new Uint8Array(MAX_KEY_BYTES - 200)); // a valid key; the row is not
    job.persistPut(category, k, new Uint8Array(8));
    job.persistAdd(category, k, 1);
    expect(failed.map((e) => [e.reason, e.error.kind])).toEqual([
      ['invalid', 'InvalidArgument'],
      ['invalid', 'InvalidArgument'],
    ]);
    expect(failed[1]?.error.message).toContain(`limit of ${SQLITE_MAX_LENGTH}`);
    const atomic = await job.atomic().add(category, k, 1).commit();
    expect(atomic.isErr() && atomic.error.kind).toBe('InvalidArgument');
    const flushed = await job.flush();
    expect(flushed.isErr() && flushed.error.count).toBe(2);
  });

  it('a key over it is refused by rawKey, and maxPayloadBytes above it by instance()', () => {
    expect(() => rawKey(new Uint8Array(MAX_KEY_BYTES + 1))).toThrow(/exceed the limit/);
    const r = Persistency.instance(freshRoot(), { maxPayloadBytes: SQLITE_MAX_LENGTH + 1 });
    expect(r.isErr() && r.error.kind).toBe('InvalidArgument');
  });
});

describe('a payload larger than SQLite allows', () => {
  it('is refused before it is queued, with an InvalidArgument event', async () => {
    const p = Persistency.instance(freshRoot())._unsafeUnwrap();
    const failed = collect(p);
    const job = (await p.openJob('big'))._unsafeUnwrap();
    const huge = new Uint8Array(1_000_000_001);
    job.persistPut('c', key(1), huge);
    job.persistPut('c', key(2), payload('small'));
    const flushed = await job.flush();
    expect(flushed.isErr() && [flushed.error.kind, flushed.error.count]).toEqual([
      'WriteFailed',
      1,
    ]);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ reason: 'invalid', count: 1 });
    expect(failed[0]?.error.kind).toBe('InvalidArgument');
    expect((await job.count('c', all))._unsafeUnwrap()).toBe(1);
  });

  it('options cannot raise the limit past SQLite’s', () => {
    const r = Persistency.instance(freshRoot(), { maxPayloadBytes: 2_000_000_000 });
    expect(r.isErr()).toBe(true);
    expect(r._unsafeUnwrapErr().kind).toBe('InvalidArgument');
  });
});

// ---------------------------------------------------------------------------------------
// Read-only files. Root ignores file modes (CAP_DAC_OVERRIDE), so when the tests run as root
// the owner runs as root without that capability (util-linux `setpriv`): file modes then
// hold for it, and it can still read a repository in a private folder, as another user
// could not.

const owner = fileURLToPath(new URL('./fixtures/readonly-owner.ts', import.meta.url));
const asRoot = process.getuid?.() === 0;

class OwnerProcess {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #lines: AsyncIterator<string>;

  constructor(root: string) {
    const args = ['--import', 'tsx', owner, root, 'ro'];
    const withoutOverride = ['--inh-caps=-dac_override,-dac_read_search'];
    withoutOverride.push('--bounding-set=-dac_override,-dac_read_search', process.execPath);
    this.#child = asRoot
      ? spawn('setpriv', [...withoutOverride, ...args], { env: { ...process.env, HOME: tmpdir() } })
      : spawn(process.execPath, args, { env: { ...process.env, HOME: tmpdir() } });
    this.#lines = createInterface({ input: this.#child.stdout })[Symbol.asyncIterator]();
  }

  async send(
    cmd: object,
  ): Promise<{ ok: boolean; code?: string; message?: string; failures?: string[] }> {
    this.#child.stdin.write(`${JSON.stringify(cmd)}\n`);
    const next = await this.#lines.next();
    if (next.done === true) throw new Error('owner exited');
    return JSON.parse(next.value);
  }

  async stop(): Promise<number | null> {
    this.#child.stdin.end();
    if (this.#child.exitCode !== null) return this.#child.exitCode;
    return new Promise((resolve) => this.#child.once('exit', (code) => resolve(code)));
  }

  kill(): void {
    this.#child.kill('SIGKILL');
  }
}

describe('a read-only file', () => {
  beforeAll(async () => {
    // Build the worker bundle as the test user, so the unprivileged owner only reads it.
    const p = Persistency.instance(':memory:')._unsafeUnwrap();
    (await p.openJob('warm'))._unsafeUnwrap();
    await Persistency.reset();
  });

  it('at open: Err saying the file is not writable', async () => {
    const root = freshRoot();
    const p = Persistency.instance(root)._unsafeUnwrap();
    await fill((await p.openJob('ro'))._unsafeUnwrap(), 0, 20);
    await Persistency.reset();
    // The root's lock file, made by this process, is the child's to take (like the root).
    chmodSync(join(root, ROOT_LOCK_FILE), 0o666);
    const file = join(root, 'ro.db');
    chmodSync(file, 0o444);
    const child = new OwnerProcess(root);
    try {
      const opened = await child.send({ op: 'open' });
      expect(opened.ok).toBe(false);
      expect(opened.message).toMatch(/ro\.db is not writable/);
      expect(await child.stop()).toBe(0);
    } finally {
      child.kill();
    }
    chmodSync(file, 0o644);
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT COUNT(*) FROM kv').pluck().get()).toBe(20);
    db.close();
  });

  it('under a running job: acknowledged data survives, and reopening is a clear Err', async () => {
    const root = freshRoot();
    const file = join(root, 'ro.db');
    const child = new OwnerProcess(root);
    try {
      expect((await child.send({ op: 'open' })).ok).toBe(true);
      await child.send({ op: 'write', from: 0, count: 100 });
      expect((await child.send({ op: 'flush' })).ok).toBe(true); // 0..99 acknowledged

      chmodSync(file, 0o444);
      chmodSync(root, 0o555);
      // The open file descriptor still writes; what matters is that nothing hangs or is lost.
      await child.send({ op: 'write', from: 100, count: 100 });
      const flushed = await child.send({ op: 'flush' });
      const closed = await child.send({ op: 'close' });
      expect(typeof flushed.ok).toBe('boolean');
      expect(typeof closed.ok).toBe('boolean');
      const reopened = await child.send({ op: 'open' });
      expect(reopened.ok).toBe(false);
      expect(reopened.message).toMatch(/not writable|readonly|read-only/i);
      expect(await child.stop()).toBe(0);
    } finally {
      child.kill();
      chmodSync(root, 0o777);
    }
    chmodSync(file, 0o644);
    const db = new Database(file);
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    const stored = db
      .prepare('SELECT COUNT(*) FROM kv WHERE key < ?')
      .pluck()
      .get(Buffer.from(key(100).bytes));
    expect(stored).toBe(100);
    db.close();
    expect(readFileSync(file).length).toBeGreaterThan(0);
  });

  it("a root lock file it cannot write: openJob is Err(Backend) saying so, and the job's file is left alone", async () => {
    const root = freshRoot();
    const p = Persistency.instance(root)._unsafeUnwrap();
    await fill((await p.openJob('ro'))._unsafeUnwrap(), 0, 20);
    await Persistency.reset();
    const lockFile = join(root, ROOT_LOCK_FILE);
    // Opened read-only, the lock file could give only a shared lock, which a second owner
    // would share: refused rather than taken.
    chmodSync(lockFile, 0o444);
    const before = readFileSync(join(root, 'ro.db'));
    const child = new OwnerProcess(root);
    try {
      const opened = await child.send({ op: 'open' });
      expect(opened.ok).toBe(false);
      expect(opened).toMatchObject({ kind: 'Backend', code: 'SQLITE_READONLY' });
      expect(opened.message).toContain(join(root, 'ro.db'));
      expect(opened.message).toContain(`${lockFile} is not writable`);
      expect(await child.stop()).toBe(0);
    } finally {
      child.kill();
    }
    expect(readFileSync(join(root, 'ro.db')).equals(before)).toBe(true);
    expect(statSync(lockFile).size).toBe(0);
  });
});
