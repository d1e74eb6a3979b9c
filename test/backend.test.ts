// The SQL layer on its own: schema, pragmas, versioning, and files written by the Nim reference.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { decodeKey, decodePayload, key, Persistency, payload, prefixRange } from '../src/index.js';
import { ByteReader, ByteWriter } from '../src/protocol/bytes.js';
import { KvBackend, SCAN_PAGE_ROWS, SCHEMA_VERSION } from '../src/worker/backend.js';

const root = mkdtempSync(join(tmpdir(), 'persistency-backend-'));
let n = 0;
const fresh = (): string => join(root, `db-${n++}.db`);
const options = { busyTimeoutMs: 1234, journalSizeLimitBytes: 3 * 1024 * 1024 };
const u8 = (...b: number[]) => new Uint8Array(b);
const hex = (s: string) => new Uint8Array(Buffer.from(s.replace(/ /g, ''), 'hex'));
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
/** Every row a backend scan visits, page after page. */
const scanAll = (b: KvBackend, ...args: [Uint8Array, Uint8Array, Uint8Array, boolean, number]) => {
  const w = new ByteWriter(64);
  let n = 0;
  for (const page of b.scanPages(() => w, ...args)) n += page.rows;
  const r = new ByteReader(w.buf.subarray(0, w.pos));
  const rows: (readonly [Uint8Array, Uint8Array])[] = [];
  for (let i = 0; i < n; i++) rows.push([r.blob().slice(), r.blob().slice()]);
  expect(r.done).toBe(true);
  return rows;
};

afterAll(() => rmSync(root, { recursive: true, force: true }));
afterEach(() => Persistency.reset());

describe('KvBackend.open', () => {
  it('sets WAL, synchronous=FULL, limits, normal locking and schema version 1', () => {
    const b = KvBackend.open(fresh(), options);
    try {
      const pragma = (name: string) => b.db.pragma(name, { simple: true });
      expect(pragma('journal_mode')).toBe('wal');
      expect(pragma('synchronous')).toBe(2); // FULL
      // A new file has the reference's schema (1); 2, expiry, comes with its first use.
      expect(pragma('user_version')).toBe(1);
      expect(SCHEMA_VERSION).toBe(2);
      expect(pragma('journal_size_limit')).toBe(3 * 1024 * 1024);
      expect(pragma('busy_timeout')).toBe(1234);
      // Not exclusive: readers in other processes may read the file (src/root-lock.ts owns it).
      expect(pragma('locking_mode')).toBe('normal');
    } finally {
      b.close();
    }
  });

  it('creates the reference schema: kv(category, key, payload) WITHOUT ROWID', () => {
    const file = fresh();
    KvBackend.open(file, options).close();
    const db = new Database(file, { readonly: true });
    try {
      const cols = db.pragma('table_info(kv)') as {
        name: string;
        type: string;
        notnull: number;
        pk: number;
      }[];
      expect(cols.map((c) => [c.name, c.type, c.notnull, c.pk])).toEqual([
        ['category', 'BLOB', 1, 1],
        ['key', 'BLOB', 1, 2],
        ['payload', 'BLOB', 1, 0],
      ]);
      const sql = db
        .prepare("SELECT sql FROM sqlite_master WHERE name = 'kv'")
        .pluck()
        .get() as string;
      expect(sql).toMatch(/WITHOUT ROWID/);
    } finally {
      db.close();
    }
  });

  it('refuses a newer schema version, naming both versions, and leaves the file untouched', () => {
    const file = fresh();
    const raw = new Database(file);
    raw.exec(
      'CREATE TABLE kv (category BLOB NOT NULL, key BLOB NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (category, key)) WITHOUT ROWID',
    );
    raw.pragma('user_version = 7');
    raw.close();
    const before = sha(file);
    expect(() => KvBackend.open(file, options)).toThrow(/schema version 7.*version 2/);
    expect(sha(file)).toBe(before);
    expect(existsSync(`${file}-wal`)).toBe(false);
  });

  it('migrates an empty version-0 file to version 1', () => {
    const file = fresh();
    new Database(file).close();
    const b = KvBackend.open(file, options);
    expect(b.db.pragma('user_version', { simple: true })).toBe(1);
    b.close();
  });

  it('refuses a file that is not a SQLite database with SQLITE_NOTADB', () => {
    const file = fresh();
    writeFileSync(file, 'this is not a database, just text that is long enough '.repeat(100));
    expect(() => KvBackend.open(file, options)).toThrow(
      expect.objectContaining({ code: 'SQLITE_NOTADB' }),
    );
  });

  // Found by a review: a text expiry made the idle worker's expiry timer fire every ms.
  it('an expires_at another tool stored as text or a blob never expires: no next expiry', () => {
    const file = fresh();
    const raw = new Database(file);
    raw.exec(
      "CREATE TABLE kv (category BLOB NOT NULL, key BLOB NOT NULL, payload BLOB NOT NULL, expires_at INTEGER, PRIMARY KEY (category, key)) WITHOUT ROWID; CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL; INSERT INTO kv VALUES (x'63', x'01', x'01', 'soon'), (x'63', x'02', x'02', x'00'); PRAGMA user_version = 2",
    );
    raw.close();
    const b = KvBackend.open(file, options);
    try {
      expect(b.nextExpiry()).toBeUndefined();
      b.db.exec("INSERT INTO kv VALUES (x'63', x'03', x'03', 12345)");
      expect(b.nextExpiry()).toBe(12345); // numbers sort before text and blobs
    } finally {
      b.close();
    }
  });

  it('half-open ranges, open-ended stop and limits in both directions', () => {
    const b = KvBackend.open(fresh(), options);
    try {
      const cat = u8(0x61);
      for (let i = 0; i < 5; i++) b.put(cat, u8(i), u8(i * 10));
      const keys = (start: number, stop: number[] | undefined, reverse: boolean, limit: number) =>
        scanAll(b, cat, u8(start), stop === undefined ? u8() : u8(...stop), reverse, limit).map(
          (r) => r[0][0],
        );
      expect(keys(1, [3], false, -1)).toEqual([1, 2]);
      expect(keys(1, undefined, false, -1)).toEqual([1, 2, 3, 4]);
      expect(keys(0, undefined, true, 2)).toEqual([4, 3]);
      expect(b.count(cat, u8(1), u8(4))).toBe(3);
      expect(b.deleteRange(cat, u8(3), u8())).toBe(2);
      expect(b.count(cat, u8(0), u8())).toBe(3);
    } finally {
      b.close();
    }
  });
});

describe('files written by the Nim reference', () => {
  it('open and read correctly: same schema, user_version 1, same key bytes', async () => {
    const dir = mkdtempSync(join(root, 'nim-'));
    // What waku/persistency writes: the reference schema, WAL, user_version 1, and keys
    // in its encoding (here key('c1', 5) and key('c1', -1) as raw bytes).
    const db = new Database(join(dir, 'nim-job.db'));
    db.pragma('journal_mode = WAL');
    db.exec(`CREATE TABLE IF NOT EXISTS kv (
      category BLOB NOT NULL, key BLOB NOT NULL, payload BLOB NOT NULL,
      PRIMARY KEY (category, key)) WITHOUT ROWID`);
    db.pragma('user_version = 1');
    const put = db.prepare('INSERT INTO kv VALUES (?, ?, ?)');
    const cat = Buffer.from('msgs', 'utf8');
    put.run(cat, hex('0002 6331 8000000000000005'), hex('0005 68656c6c6f')); // "hello"
    put.run(cat, hex('0002 6331 7fffffffffffffff'), hex('0003 627965')); // "bye"
    db.close();

    const p = Persistency.instance(dir)._unsafeUnwrap();
    const job = (await p.openJob('nim-job'))._unsafeUnwrap();
    const got = (await job.get('msgs', key('c1', 5)))._unsafeUnwrap();
    expect(got && decodePayload(got, 'string')).toBe('hello');
    const rows = (await job.scan('msgs', prefixRange(key('c1'))))._unsafeUnwrap();
    expect(rows.map((r) => decodePayload(r.payload, 'string'))).toEqual(['bye', 'hello']);
    job.persistPut('msgs', key('c1', 6), payload('again'));
    expect((await job.count('msgs', prefixRange(key('c1'))))._unsafeUnwrap()).toBe(3);
  });
});

describe('scans read page by page', () => {
  // Rows 0..ROWS-1 under key('s', i); the expected rows of every case are computed here.
  const ROWS = 2 * SCAN_PAGE_ROWS + 300;
  const limits = [
    -1,
    0,
    1,
    SCAN_PAGE_ROWS - 1,
    SCAN_PAGE_ROWS,
    SCAN_PAGE_ROWS + 1,
    2 * SCAN_PAGE_ROWS,
    2 * SCAN_PAGE_ROWS + 1,
    ROWS,
    ROWS + 1,
  ];
  // [from, to): an open end (to undefined), a closed one, a range ending on a page edge.
  const ranges: [number, number | undefined][] = [
    [0, undefined],
    [5, ROWS - 7],
    [0, SCAN_PAGE_ROWS],
    [SCAN_PAGE_ROWS - 1, 2 * SCAN_PAGE_ROWS + 1],
  ];
  const expected = (from: number, to: number | undefined, reverse: boolean, limit: number) => {
    const all = Array.from({ length: (to ?? ROWS) - from }, (_, i) => from + i);
    if (reverse) all.reverse();
    return limit < 0 ? all : all.slice(0, limit);
  };

  // A UTF-8 file's pages are built by SQLite as records; a UTF-16 file's row by row.
  it.each([
    ['UTF-8', true],
    ['UTF-16le', false],
  ])(
    'in the backend (%s): every limit around the page size, both directions, open and closed',
    (encoding, records) => {
      const file = fresh();
      const db = new Database(file);
      db.pragma(`encoding = '${encoding}'`);
      db.exec(
        'CREATE TABLE kv (category BLOB NOT NULL, key BLOB NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (category, key)) WITHOUT ROWID',
      ); // the encoding is set once the file has content
      db.close();
      const b = KvBackend.open(file, options);
      expect(b.canGetMany).toBe(records);
      try {
        const cat = u8(0x73);
        const k = (i: number) => u8(i >> 8, i & 0xff);
        for (let i = 0; i < ROWS; i++) b.put(cat, k(i), u8(i & 0xff));
        for (const [from, to] of ranges) {
          for (const reverse of [false, true]) {
            for (const limit of limits) {
              const stop = to === undefined ? u8() : k(to);
              const got = scanAll(b, cat, k(from), stop, reverse, limit).map(
                ([key]) => ((key[0] as number) << 8) | (key[1] as number),
              );
              expect(got, `[${from}, ${to}) reverse ${reverse} limit ${limit}`).toEqual(
                expected(from, to, reverse, limit),
              );
            }
          }
        }
      } finally {
        b.close();
      }
    },
  );

  it('a page too long for one SQLite value is read row by row', () => {
    const b = KvBackend.open(':memory:', options);
    try {
      // Two rows whose records together pass SQLite's length limit (536,870,888 bytes).
      const big = 300 * 1024 * 1024;
      for (const i of [1, 2]) b.put(u8(1), u8(i), new Uint8Array(big).fill(i));
      b.put(u8(1), u8(3), u8(3));
      const rows = scanAll(b, u8(1), u8(), u8(), false, -1);
      expect(rows.map(([k, p]) => [k[0], p.length, p[p.length - 1]])).toEqual([
        [1, big, 1],
        [2, big, 2],
        [3, 1, 3],
      ]);
    } finally {
      b.close();
    }
  });

  it('through a job: the same cases, rows whole and in order, across streamed parts', async () => {
    const p = Persistency.instance(mkdtempSync(join(root, 'pages-')))._unsafeUnwrap();
    const job = (await p.openJob('pages'))._unsafeUnwrap();
    // ~170 bytes a row: a whole-range scan (~400 KB) leaves the worker in several 256 KiB
    // parts while it is still reading pages.
    const pad = 'x'.repeat(150);
    for (let i = 0; i < ROWS; i++) job.persistPut('s', key(i), payload(i, pad));
    for (const [from, to] of ranges) {
      for (const reverse of [false, true]) {
        for (const limit of limits) {
          const range = { start: key(from), stop: to === undefined ? undefined : key(to) };
          const options = limit < 0 ? { reverse } : { reverse, limit };
          const rows = (await job.scan('s', range, options))._unsafeUnwrap();
          const want = expected(from, to, reverse, limit);
          const what = `[${from}, ${to}) reverse ${reverse} limit ${limit}`;
          expect(
            rows.map((r) => decodeKey(r.key, ['i64'])[0]),
            what,
          ).toEqual(want.map((i) => BigInt(i)));
          expect(
            rows.every((r, j) => {
              const [i, rest] = decodePayload(r.payload, ['i64', 'string']);
              return i === BigInt(want[j] as number) && rest === pad;
            }),
            what,
          ).toBe(true);
        }
      }
    }
  });
});
