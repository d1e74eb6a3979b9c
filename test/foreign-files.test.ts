/*
 * Files at a job's path that the library did not make as they are: edited by another tool,
 * another program's database, a directory or a pipe, a 0.1-named file it must refuse, a
 * released job's file emptied in place. Each is read right or refused with a clear Err,
 * and a refused file is left byte for byte and name for name as it was (found by review;
 * each case failed before its fix).
 */
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { jobFileName, key, Persistency, prefixRange } from '../src/index.js';
import { releaseIdleJobs } from '../src/persistency.js';
import { ROOT_LOCK_FILE } from '../src/root-lock.js';
import { underFdLimit } from './support/children.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-foreign-');
const KV =
  'CREATE TABLE kv (category BLOB NOT NULL, key BLOB NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (category, key)) WITHOUT ROWID';

/** Make job `id`'s file in `root` with `sql`; returns its path. */
function made(root: string, id: string, sql: string): string {
  const file = join(root, jobFileName(id));
  const db = new Database(file);
  db.unsafeMode(true); // lets a case write sqlite_master through writable_schema
  db.exec(sql);
  db.close();
  return file;
}

/** The open of `id` is refused with `code`, saying `why`, and its file is left as it was. */
async function refusedUntouched(root: string, id: string, code: string, why: RegExp) {
  const file = join(root, jobFileName(id));
  const before = readFileSync(file);
  const p = unwrap(Persistency.open(root));
  const r = await p.openJob(id);
  expect(r.isErr() && [r.error.kind, r.error.code], id).toEqual(['Backend', code]);
  expect(r.isErr() && r.error.message, id).toMatch(why);
  unwrap(await p.close());
  expect(readFileSync(file).equals(before), `${id}: file unchanged`).toBe(true);
  expect(existsSync(`${file}-wal`), `${id}: no WAL made`).toBe(false);
}

describe.each(FILE_MODES)(
  'a payload another tool stored as text or a number (%s)',
  (_n, _m, options) => {
    it('reads as the same bytes through get, getMany, scan and iterate; other jobs answer on', async () => {
      const root = tempDir();
      const stored: [string, string | number | bigint][] = [
        ['text', 'text-payload'],
        ['accented', 'héllo wörld'], // more bytes than characters
        ['number', 42n],
        ['real', 1.5],
      ];
      const db = new Database(join(root, jobFileName('edited')));
      db.exec(`${KV}; PRAGMA user_version = 1`);
      const insert = db.prepare('INSERT INTO kv VALUES (?, ?, ?)');
      for (const [k, v] of stored) insert.run(Buffer.from('c'), Buffer.from(key(k).bytes), v);
      insert.run(Buffer.from('c'), Buffer.from(key('blob').bytes), Buffer.from([1, 2]));
      db.close();
      // A kv table made elsewhere without NOT NULL (the shape check looks at names and keys).
      const loose = new Database(join(root, jobFileName('loose')));
      loose.exec(`${KV.replace('payload BLOB NOT NULL', 'payload BLOB')}; PRAGMA user_version = 1`);
      const put = loose.prepare('INSERT INTO kv VALUES (?, ?, ?)');
      for (const [k, v] of [
        ['a', Buffer.from('A')],
        ['null', null],
        ['z', Buffer.from('Z')],
      ] as const)
        put.run(Buffer.from('c'), Buffer.from(key(k).bytes), v);
      loose.close();
      const want = new Map<string, Uint8Array>([
        ['text', new TextEncoder().encode('text-payload')],
        ['accented', new TextEncoder().encode('héllo wörld')],
        ['number', new TextEncoder().encode('42')],
        ['real', new TextEncoder().encode('1.5')],
        ['blob', Uint8Array.from([1, 2])],
      ]);
      const p = unwrap(Persistency.open(root, options));
      const bystander = unwrap(await p.openJob('bystander'));
      const job = unwrap(await p.openJob('edited'));
      const names = [...want.keys()];
      for (const name of names)
        expect(unwrap(await job.get('c', key(name))), name).toEqual(want.get(name));
      const many = unwrap(
        await job.getMany(
          'c',
          names.map((n) => key(n)),
        ),
      );
      expect(many).toEqual(names.map((n) => want.get(n)));
      const sorted = [...names].sort((a, b) => Buffer.compare(key(a).bytes, key(b).bytes));
      const rows = unwrap(await job.scan('c', prefixRange(key())));
      expect(rows.map((r) => r.payload)).toEqual(sorted.map((n) => want.get(n)));
      const iterated: Uint8Array[] = [];
      for await (const row of job.iterate('c', prefixRange(key()), { pageSize: 2 }))
        iterated.push(row.payload);
      expect(iterated).toEqual(sorted.map((n) => want.get(n)));
      const check = unwrap(
        await job.atomic().check('c', key('number'), want.get('number')).commit(),
      );
      expect(check.ok).toBe(true);
      expect(unwrap(await bystander.get('c', key('x')))).toBeUndefined();
      // A NULL payload reads as empty bytes everywhere, and nothing crashes.
      const nulls = unwrap(await p.openJob('loose'));
      const a = Uint8Array.from(Buffer.from('A'));
      const z = Uint8Array.from(Buffer.from('Z'));
      const empty = new Uint8Array(0);
      expect(unwrap(await nulls.get('c', key('null')))).toEqual(empty);
      expect(unwrap(await nulls.getMany('c', [key('a'), key('null'), key('z')]))).toEqual([
        a,
        empty,
        z,
      ]);
      const scanned = unwrap(await nulls.scan('c', prefixRange(key())));
      // In key order: strings sort by length first.
      expect(scanned.map((r) => r.payload)).toEqual([a, z, empty]);
      const pages: Uint8Array[] = [];
      for await (const row of nulls.iterate('c', prefixRange(key()), { pageSize: 2 }))
        pages.push(row.payload);
      expect(pages).toEqual([a, z, empty]);
      expect(unwrap(await nulls.count('c', prefixRange(key())))).toBe(3);
      unwrap(await p.close());
    });
  },
);

describe("another program's database, or one no put could be made in", () => {
  const cases: [string, string, RegExp][] = [
    [
      'v1-foreign',
      'CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); PRAGMA user_version = 1',
      /schema version 1 without a kv table/,
    ],
    ['v1-empty', 'PRAGMA user_version = 1', /schema version 1 without a kv table/],
    [
      'v1-other-kv',
      'CREATE TABLE kv (a); PRAGMA user_version = 1',
      /\(no category, no key, no payload, a\)/,
    ],
    [
      'v2-no-expiry',
      `${KV}; PRAGMA user_version = 2`,
      /columns are not schema version 2's \(no expires_at\)/,
    ],
    [
      'trigger',
      `${KV}; CREATE TRIGGER t BEFORE INSERT ON kv BEGIN SELECT RAISE(ABORT, 'no'); END`,
      /objects of its own \(trigger t\)/,
    ],
    [
      'extra-column',
      KV.replace('payload BLOB NOT NULL,', 'payload BLOB NOT NULL, extra NOT NULL,'),
      /columns are not schema version 0's \(extra\)/,
    ],
    [
      'payload-index',
      `${KV}; CREATE UNIQUE INDEX p ON kv (payload)`,
      /objects of its own \(index p\)/,
    ],
    // A put is INSERT OR REPLACE: a clash on another unique index would delete that row.
    [
      'v0-unique-column',
      KV.replace('payload BLOB NOT NULL', 'payload BLOB NOT NULL UNIQUE'),
      /unique indexes besides its key \(sqlite_autoindex_kv_\d\)/,
    ],
    [
      'v1-unique-index',
      `${KV}; CREATE UNIQUE INDEX p ON kv (payload); PRAGMA user_version = 1`,
      /unique indexes besides its key \(p\)/,
    ],
    [
      'v0-generated-column',
      KV.replace(
        'payload BLOB NOT NULL,',
        'payload BLOB NOT NULL, extra AS (length(payload)) STORED,',
      ),
      /columns are not schema version 0's \(extra\)/,
    ],
    [
      'v0-sqlite-names', // names only SQLite may give, set through writable_schema
      `${KV}; CREATE TABLE users (id); PRAGMA writable_schema = ON; UPDATE sqlite_master SET name = 'sqlite_users', tbl_name = 'sqlite_users', sql = replace(sql, 'TABLE users', 'TABLE sqlite_users') WHERE name = 'users'; PRAGMA writable_schema = OFF`,
      /objects of its own \(table sqlite_users\)/,
    ],
    ['views-only', 'CREATE VIEW report AS SELECT 1 AS one', /objects of its own \(view report\)/],
    [
      'app-id',
      `${KV}; PRAGMA application_id = 1234`,
      /another application's id \(application_id 1234\)/,
    ],
  ];
  it.each(cases)(
    '%s: refused as not a job file (SQLITE_CORRUPT), and left untouched',
    async (id, sql, why) => {
      const root = tempDir();
      made(root, id, sql);
      await refusedUntouched(
        root,
        id,
        'SQLITE_CORRUPT',
        new RegExp(`not a job file: .*${why.source}`),
      );
    },
  );

  // A job file (version 1 on) may have gained tables (Litestream's) or a trigger: it is the
  // job's all the same, and its writes answer for what the trigger does.
  it('opens a job file that gained a table and a trigger; the trigger refuses its writes', async () => {
    const root = tempDir();
    made(
      root,
      'gained',
      `${KV}; CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER); CREATE TRIGGER t BEFORE INSERT ON kv WHEN NEW.category = CAST('no' AS BLOB) BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END; PRAGMA user_version = 1`,
    );
    const p = unwrap(Persistency.open(root));
    p.events.on('writeFailed', () => {});
    const job = unwrap(await p.openJob('gained'));
    job.persistPut('c', key(1), Uint8Array.of(1));
    unwrap(await job.flush());
    job.persistPut('no', key(1), Uint8Array.of(1));
    const refused = await job.flush();
    expect(refused.isErr() && refused.error.message).toMatch(/refused by trigger/);
    expect(unwrap(await job.get('c', key(1)))).toEqual(Uint8Array.of(1));
    unwrap(await p.close());
  });

  it("still opens the reference's file (version 0, its kv table alone, names in any case) and a version 2 job file", async () => {
    const root = tempDir();
    made(root, 'reference', KV.replace('category BLOB', 'Category BLOB'));
    const p = unwrap(Persistency.open(root));
    const job = unwrap(await p.openJob('reference'));
    job.persistPut('c', key(1), Uint8Array.of(1), { expireInMs: 60_000 }); // migrates to 2
    unwrap(await job.flush());
    unwrap(await p.closeJob('reference'));
    const again = unwrap(await p.openJob('reference'));
    expect(unwrap(await again.get('c', key(1)))).toEqual(Uint8Array.of(1));
    unwrap(await p.close());
  });
});

describe('what is not a regular file at a job path', () => {
  it('a directory or a named pipe: refused at open and at drop, and left as it is', async () => {
    const root = tempDir();
    mkdirSync(join(root, jobFileName('dir')));
    execFileSync('mkfifo', [join(root, jobFileName('pipe'))]);
    const p = unwrap(Persistency.open(root));
    const cases: [string, string][] = [
      ['dir', 'a directory'],
      ['pipe', 'not a regular file'],
    ];
    for (const [id, what] of cases) {
      for (const r of [await p.openJob(id), await p.dropJob(id)]) {
        expect(r.isErr() && [r.error.kind, r.error.code], id).toEqual([
          'Backend',
          'SQLITE_CANTOPEN',
        ]);
        expect(r.isErr() && r.error.message, id).toContain(`is ${what}`);
      }
    }
    unwrap(await p.close());
    expect(readdirSync(root).sort()).toEqual([ROOT_LOCK_FILE, 'dir.db', 'pipe.db'].sort());
  });

  it('a pipe at a -journal or a directory at a -wal: refused at once, never opened (a pipe would wait forever)', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.open(root));
    for (const id of ['pipe', 'dir']) {
      unwrap(await p.openJob(id));
      unwrap(await p.closeJob(id));
    }
    execFileSync('mkfifo', [join(root, `${jobFileName('pipe')}-journal`)]);
    mkdirSync(join(root, `${jobFileName('dir')}-wal`));
    const cases: [string, string][] = [
      ['pipe', 'not a regular file'],
      ['dir', 'a directory'],
    ];
    for (const [id, what] of cases) {
      for (const r of [await p.openJob(id), await p.dropJob(id)]) {
        expect(r.isErr() && r.error.code, id).toBe('SQLITE_CANTOPEN');
        expect(r.isErr() && r.error.message, id).toContain(`is ${what}`);
      }
    }
    unwrap(await p.close());
    const left = [ROOT_LOCK_FILE, 'dir.db', 'dir.db-wal', 'pipe.db', 'pipe.db-journal'];
    expect(readdirSync(root).sort()).toEqual(left.sort());
  });

  it('dropJob leaves a link, directory or pipe at a 0.1 name as it is, as openJob does', async () => {
    const root = tempDir();
    const target = join(tempDir(), 'precious.db');
    writeFileSync(target, 'precious');
    const kinds: [string, () => void, string][] = [
      ['Alice', () => symlinkSync(target, join(root, 'Alice.db')), 'ELOOP'],
      ['Bob', () => mkdirSync(join(root, 'Bob.db')), 'SQLITE_CANTOPEN'],
      ['Carol', () => execFileSync('mkfifo', [join(root, 'Carol.db')]), 'SQLITE_CANTOPEN'],
    ];
    for (const [, make] of kinds) make();
    const p = unwrap(Persistency.open(root));
    for (const [id, , code] of kinds) {
      for (const r of [await p.openJob(id), await p.dropJob(id)])
        expect(r.isErr() && r.error.code, id).toBe(code);
    }
    unwrap(await p.close());
    const left = [ROOT_LOCK_FILE, 'Alice.db', 'Bob.db', 'Carol.db'];
    expect(readdirSync(root).sort()).toEqual(left.sort());
    expect(readFileSync(target, 'utf8')).toBe('precious');
  });

  it("a 0.1-named file the open refuses keeps its 0.1 name: a link, another program's database", async () => {
    const root = tempDir();
    symlinkSync(join(tempDir(), 'outside.db'), join(root, 'Alice.db'));
    const legacy = new Database(join(root, 'Bob.db'));
    legacy.exec('CREATE TABLE users (a)');
    legacy.close();
    const p = unwrap(Persistency.open(root));
    const link = await p.openJob('Alice');
    expect(link.isErr() && link.error.code).toBe('ELOOP');
    const foreign = await p.openJob('Bob');
    expect(foreign.isErr() && foreign.error.code).toBe('SQLITE_CORRUPT');
    unwrap(await p.close());
    expect(readdirSync(root).sort()).toEqual([ROOT_LOCK_FILE, 'Alice.db', 'Bob.db'].sort());
  });
});

describe('a refused file that came with a -wal', () => {
  /** Another program's WAL-mode database at `file`, its last write still in its -wal. */
  function walDatabase(file: string): Database.Database {
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('wal_autocheckpoint = 0');
    db.exec("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ada')");
    return db;
  }

  it('keeps its -wal: the file and the -wal are byte for byte as they were', async () => {
    const root = tempDir();
    const file = join(root, jobFileName('x'));
    const other = walDatabase(file);
    // Held open by a reader while the writer closes, so nothing checkpoints the -wal.
    const reader = new Database(file, { readonly: true });
    reader.prepare('SELECT count(*) FROM users').get();
    other.close();
    reader.close();
    const before = [readFileSync(file), readFileSync(`${file}-wal`)];
    const p = unwrap(Persistency.open(root));
    const r = await p.openJob('x');
    expect(r.isErr() && r.error.message).toMatch(/not a job file: .*objects of its own/);
    unwrap(await p.close());
    expect([readFileSync(file), readFileSync(`${file}-wal`)]).toEqual(before);
  });

  it('a WAL-mode file closed cleanly (no -wal) gains no -wal or -shm from its refusal', async () => {
    const root = tempDir();
    for (const file of [join(root, jobFileName('x')), join(root, 'Bob.db')])
      walDatabase(file).close();
    const before = readdirSync(root).sort();
    const p = unwrap(Persistency.open(root));
    for (const id of ['x', 'Bob']) expect((await p.openJob(id)).isErr(), id).toBe(true);
    unwrap(await p.close());
    expect(
      readdirSync(root)
        .filter((f) => f !== ROOT_LOCK_FILE)
        .sort(),
    ).toEqual(before);
  });

  it('a 0.1-named file another connection holds (Busy) keeps its 0.1 name', async () => {
    const root = tempDir();
    const other = new Database(join(root, 'Bob.db'));
    other.exec(`${KV}; PRAGMA user_version = 1`);
    other.pragma('journal_mode = WAL');
    other.pragma('locking_mode = EXCLUSIVE');
    other.exec('BEGIN IMMEDIATE');
    const p = unwrap(Persistency.open(root, { busyTimeoutMs: 100 }));
    const r = await p.openJob('Bob');
    expect(r.isErr() && r.error.kind).toBe('Busy');
    unwrap(await p.close());
    other.exec('COMMIT');
    other.close();
    expect(readdirSync(root).filter((f) => f.startsWith('Bob.db'))).toContain('Bob.db');
    expect(existsSync(join(root, jobFileName('Bob')))).toBe(false);
  });
});

// Found by review: with 3 or 4 descriptors free the open got far enough to refuse the file,
// and the refusing connection, closed last, checkpointed the -wal into it.
describe.each(['per-job', '1'])(
  'a refused file with a -wal, near the descriptor limit (workerThreads %s)',
  (mode) => {
    it('keeps the file and its -wal as they were however few descriptors are free', async () => {
      const results = (await underFdLimit(200, 'refused-near-fd-limit.ts', tempDir(), mode)) as {
        free: number;
        code: string;
        same: boolean;
      }[];
      expect(results).toHaveLength(25);
      for (const r of results) {
        expect(r.same, `${r.free} free`).toBe(true);
        expect(['EMFILE', 'SCHEMA_TOO_NEW'], `${r.free} free: ${r.code}`).toContain(r.code);
      }
      expect(results.at(-1)?.code).toBe('SCHEMA_TOO_NEW');
    });
  },
);

describe('counters on a payload another tool stored (a version-2 file, rows that expire)', () => {
  it('add sees what reads see: text as its bytes, NULL as no counter, as on rows that do not expire', async () => {
    const root = tempDir();
    const far = Date.now() + 3_600_000;
    const db = new Database(join(root, jobFileName('v2')));
    db.exec(
      `${KV.replace('payload BLOB NOT NULL,', 'payload BLOB, expires_at INTEGER,')}; PRAGMA user_version = 2`,
    );
    const insert = db.prepare('INSERT INTO kv VALUES (?, ?, ?, ?)');
    for (const [k, v, at] of [
      ['text', '12345678', far],
      ['null', null, far],
      ['plain', '12345678', null],
    ] as const)
      insert.run(Buffer.from('c'), Buffer.from(key(k).bytes), v, at);
    db.close();
    const p = unwrap(Persistency.open(root));
    p.events.on('writeFailed', () => {});
    const job = unwrap(await p.openJob('v2'));
    for (const k of ['text', 'plain']) {
      expect(unwrap(await job.atomic().add('c', key(k), 2).commit()), k).toEqual({ ok: true });
      // '12345678' as bytes, 0x31..0x38, read as a counter and 2 added: the last byte 0x3a.
      expect(Buffer.from(unwrap(await job.get('c', key(k))) as Uint8Array).toString('hex'), k).toBe(
        '313233343536373a',
      );
    }
    expect(unwrap(await job.atomic().add('c', key('null'), 1).commit())).toEqual({
      ok: false,
      reason: 'notCounter',
    });
    expect(unwrap(await job.get('c', key('null')))).toEqual(new Uint8Array(0));
    unwrap(await p.close());
  });
});

describe.each(FILE_MODES)("a released job's file emptied in place (%s)", (_n, _m, options) => {
  it('fails its next calls as damaged instead of starting over empty', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.open(root, options));
    p.events.on('writeFailed', () => {});
    const job = unwrap(await p.openJob('j'));
    for (let i = 0; i < 20; i++) job.persistPut('c', key(i), Uint8Array.of(i));
    unwrap(await job.flush());
    expect(await releaseIdleJobs(p)).toBe(1);
    truncateSync(join(root, jobFileName('j')), 0);
    const count = await job.count('c', prefixRange(key()));
    expect(count.isErr() && [count.error.kind, count.error.code]).toEqual([
      'Backend',
      'SQLITE_CORRUPT',
    ]);
    expect(count.isErr() && count.error.message).toMatch(/emptied while the job was released/);
    job.persistPut('c', key(100), Uint8Array.of(1));
    expect((await job.flush()).isErr()).toBe(true);
    unwrap(await p.close());
    expect(readFileSync(join(root, jobFileName('j'))).length).toBe(0);
  });
});
