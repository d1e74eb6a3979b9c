/*
 * Watched bulk writes: while a job is watched, its large frames travel in shared memory and
 * the worker's change records point into them for a put's key and payload (PUT_REF,
 * src/protocol/changes.ts) instead of copying them. The changes must be exactly those of a
 * copy: every put, delete, add and atomic batch in order, nothing of a failed, redone or
 * lost write, and payloads that stay as they were while later writes go on. Both threading
 * modes, file and `:memory:` roots.
 */
import { describe, expect, it } from 'vitest';
import {
  type Change,
  i64,
  type Job,
  key,
  Persistency,
  prefixRange,
  toPayload,
} from '../src/index.js';
import { injectFault } from '../src/job.js';
import { ByteWriter } from '../src/protocol/bytes.js';
import { RequestReader } from '../src/protocol/request-reader.js';
import { writePut } from '../src/protocol/requests.js';
import { Watches } from '../src/worker/watches.js';
import { hex, plain } from './support/changes.js';
import { unwrap, useTempDirs } from './support/env.js';
import { ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-watch-shared-');

/** Enough puts of PAYLOAD bytes in one turn for several frames over the copy limit. */
const ROWS = 6000;
const PAYLOAD = 200;

const bytesOf = (i: number, salt = 0): Uint8Array =>
  new Uint8Array(PAYLOAD).map((_, j) => (i * 31 + j + salt) & 0xff);

/** Take changes until `n` are read, flattened. */
async function take(feed: AsyncIterator<Change[]>, n: number): Promise<Change[]> {
  const out: Change[] = [];
  while (out.length < n) {
    const r = await feed.next();
    if (r.done === true) throw new Error(`the watch ended after ${out.length} of ${n} changes`);
    out.push(...r.value);
  }
  return out;
}

const put = (k: unknown[], p: Uint8Array) => ({ key: hex(key(...(k as []))), payload: hex(p) });

/** How many of `changes` have a payload read where a shared frame carried it. */
const inSharedFrames = (changes: readonly Change[]): number =>
  changes.filter((c) => 'key' in c && c.payload?.buffer instanceof SharedArrayBuffer).length;

const endOfTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('runs of puts in the worker (Watches.putRun)', () => {
  const enc = new TextEncoder();
  /** A shared frame of 32 single-put batches in `cat`, recorded as a run and committed. */
  function run(watches: Watches, cat: string) {
    const w = new ByteWriter(64);
    for (let i = 0; i < 32; i++) writePut(w, enc.encode(cat), new Uint8Array([i]), bytesOf(i));
    const frame = new Uint8Array(new SharedArrayBuffer(w.pos));
    frame.set(w.buf.subarray(0, w.pos));
    const r = new RequestReader(frame);
    const args: Uint8Array[] = [];
    const keyAts: number[] = [];
    for (let i = 0; i < 32; i++) {
      r.reopen(r.pos);
      r.op();
      args.push(r.cat, r.key, r.stop);
      keyAts.push(r.keyAt);
    }
    watches.putRun(args, keyAts, 32, frame, 0);
    watches.commit();
    return watches.take();
  }

  it('keeps no frame of a run that no watch covers', () => {
    const watches = new Watches();
    watches.open(1, enc.encode('a'), new Uint8Array(0), new Uint8Array(0));
    for (let n = 0; n < 100; n++) expect(run(watches, 'b')).toBeUndefined();
    // The first change told hands over the one frame it points into, not the 100 before.
    expect(run(watches, 'a')?.frames).toHaveLength(1);
  });
});

describe.each(ROOT_MODES)('watched bulk writes in shared frames (%s)', (_name, memory, options) => {
  async function open(): Promise<{ p: Persistency; job: Job }> {
    const p = unwrap(Persistency.open(memory ? ':memory:' : tempDir(), options));
    return { p, job: unwrap(await p.openJob('j')) };
  }

  it('tells every change of a large turn, in order, with its exact bytes', async () => {
    const { p, job } = await open();
    p.events.on('writeFailed', () => {});
    const feed = job.watch('c', prefixRange(key('r')));
    const expected: unknown[] = [];
    for (let i = 0; i < ROWS; i++) {
      job.persistPut('c', key('r', i), bytesOf(i));
      expected.push(put(['r', i], bytesOf(i)));
      if (i % 1000 === 500) {
        // Between the puts: what a copy records (deletes, sums, expiring puts, batches),
        // writes out of the range, and a batch that fails.
        job.persistDelete('c', key('r', i - 1));
        expected.push({ key: hex(key('r', i - 1)), payload: null });
        job.persistAdd('c', key('r', 'n'), 2);
        expected.push(put(['r', 'n'], toPayload(i64(BigInt(2 * (1 + Math.floor(i / 1000)))))));
        job.persistPut('c', key('r', 'e', i), bytesOf(i, 1), { expireInMs: 3_600_000 });
        expected.push(put(['r', 'e', i], bytesOf(i, 1)));
        job.persist([
          { kind: 'put', category: 'c', key: key('r', 'b', i), payload: bytesOf(i, 2) },
          { kind: 'put', category: 'c', key: key('r', 'b', i + 1), payload: bytesOf(i, 3) },
        ]);
        expected.push(put(['r', 'b', i], bytesOf(i, 2)), put(['r', 'b', i + 1], bytesOf(i, 3)));
        job.persistPut('c', key('s', i), bytesOf(i)); // out of the range
        job.persistPut('d', key('r', i), bytesOf(i)); // another category
        job.persistAdd('c', key('r', i), 1); // not a counter: fails alone, never told
      }
    }
    expect((await job.flush()).isErr()).toBe(true); // the adds to rows that are not counters
    const seen = await take(feed, expected.length);
    expect(seen.map(plain)).toEqual(expected);
    // The plain puts' bytes were read where the frame carried them (the path under test).
    expect(inSharedFrames(seen)).toBeGreaterThan(ROWS / 2);
    // And SQLite stored what the frames carried: the changes replayed give the last scan.
    const model = new Map<string, string>();
    for (const c of seen.map(plain) as { key: string; payload: string | null }[])
      if (c.payload === null) model.delete(c.key);
      else model.set(c.key, c.payload);
    const rows = unwrap(await job.scan('c', prefixRange(key('r'))));
    expect(rows.map((r) => [hex(r.key), hex(r.payload)])).toEqual(
      [...model].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    );
    await feed.return?.();
    await p.close();
  });

  it('keeps the payloads it handed out as they were while later writes go on', async () => {
    const { p, job } = await open();
    const feed = job.watch('c', prefixRange(key('r')));
    for (let i = 0; i < ROWS; i++) job.persistPut('c', key('r', i), bytesOf(i));
    unwrap(await job.flush());
    const first = await take(feed, ROWS);
    const before = first.map(plain);
    for (let round = 1; round <= 3; round++) {
      for (let i = 0; i < ROWS; i++) job.persistPut('c', key('r', i), bytesOf(i, round));
      unwrap(await job.flush());
      const next = await take(feed, ROWS);
      expect(next.map(plain)).toEqual(
        Array.from({ length: ROWS }, (_, i) => put(['r', i], bytesOf(i, round))),
      );
    }
    expect(first.map(plain)).toEqual(before);
    await feed.return?.();
    await p.close();
  });

  // Each turn: many small puts out of the watched range, then some in it (a run the worker
  // writes with one statement among them, whatever the alignment).
  it.each([
    ['among writes out of its range', 'c', 3, 20_000, 70],
    ['of runs in a long category (most of each batch)', 'L'.repeat(4000), 2, 10_000, 100],
  ])(
    'copies out the changes %s that point to little of their frame, so a waiting change does not hold it',
    async (_what, cat, turns, others, IN) => {
      const { p, job } = await open();
      const feed = job.watch(cat, prefixRange(key('r')));
      const small = new Uint8Array(8);
      for (let turn = 0; turn < turns; turn++) {
        for (let i = 0; i < others; i++) job.persistPut('c', key('s', turn, i), small);
        for (let i = 0; i < IN; i++) job.persistPut(cat, key('r', turn, i), bytesOf(i, turn));
        await endOfTurn();
      }
      unwrap(await job.flush());
      const seen = await take(feed, turns * IN);
      expect(seen.map(plain)).toEqual(
        Array.from({ length: turns * IN }, (_, n) =>
          put(['r', Math.floor(n / IN), n % IN], bytesOf(n % IN, Math.floor(n / IN))),
        ),
      );
      expect(inSharedFrames(seen)).toBe(0);
      await feed.return?.();
      await p.close();
    },
  );

  it('sends frames of large payloads as ordinary transferred buffers, even while watched', async () => {
    const { p, job } = await open();
    const feed = job.watch('c', prefixRange(key('r')));
    const big = (i: number) => new Uint8Array(256 * 1024).fill(i);
    for (let turn = 0; turn < 4; turn++) {
      job.persistPut('c', key('r', turn), big(turn));
      await endOfTurn();
    }
    unwrap(await job.flush());
    const seen = await take(feed, 4);
    expect(seen.map(plain)).toEqual(Array.from({ length: 4 }, (_, i) => put(['r', i], big(i))));
    // After a frame of large writes, the next frames are not shared.
    expect(inSharedFrames(seen.slice(1))).toBe(0);
    await feed.return?.();
    await p.close();
  });

  it('reads runs of puts in categories of every length, empty payloads among them', async () => {
    const { p, job } = await open();
    // Category lengths around the u16 length's low byte and past it (multibyte text too).
    const categories = ['x', 'y'.repeat(255), 'z'.repeat(256), 'é'.repeat(300)];
    const feeds = categories.map((c) => job.watch(c, prefixRange(key('r'))));
    const rows = 400; // runs of 32 in each turn's frame, over the copy limit: shared
    for (const [n, c] of categories.entries()) {
      for (let i = 0; i < rows; i++)
        job.persistPut(c, key('r', i), i % 7 === 0 ? new Uint8Array(0) : bytesOf(i, n));
      await endOfTurn();
    }
    unwrap(await job.flush());
    for (const [n, feed] of feeds.entries()) {
      const seen = await take(feed, rows);
      expect(seen.map(plain)).toEqual(
        Array.from({ length: rows }, (_, i) =>
          put(['r', i], i % 7 === 0 ? new Uint8Array(0) : bytesOf(i, n)),
        ),
      );
      // Read where the frame carried them; with the long categories, whose bytes are most of
      // each batch, the frame may be pointed to too little and its changes copied out.
      if (n === 0) expect(inSharedFrames(seen)).toBe(rows);
      await feed.return?.();
    }
    await p.close();
  });

  it('tells two watches of one frame each its own range', async () => {
    const { p, job } = await open();
    const all = job.watch('c', prefixRange(key('r')));
    const low = job.watch('c', { start: key('r', 0), stop: key('r', 100) });
    for (let i = 0; i < ROWS; i++) job.persistPut('c', key('r', i), bytesOf(i));
    unwrap(await job.flush());
    expect((await take(all, ROWS)).map(plain)).toEqual(
      Array.from({ length: ROWS }, (_, i) => put(['r', i], bytesOf(i))),
    );
    expect((await take(low, 100)).map(plain)).toEqual(
      Array.from({ length: 100 }, (_, i) => put(['r', i], bytesOf(i))),
    );
    await all.return?.();
    await low.return?.();
    await p.close();
  });

  it('tells a redone group once, and nothing of a lost transaction', async () => {
    const { p, job } = await open();
    p.events.on('writeFailed', () => {});
    const feed = job.watch('c', prefixRange(key('r')));
    const rows = async (prefix: unknown[]) =>
      unwrap(await job.scan('c', prefixRange(key(...(prefix as [])))));
    // The write after 1,500 fails and SQLite drops the transaction: the group's earlier
    // writes are redone, that one batch fails alone.
    injectFault(job, 'rollback', 1500);
    for (let i = 0; i < 3000; i++) job.persistPut('c', key('r', 'a', i), bytesOf(i));
    expect((await job.flush()).isErr()).toBe(true);
    const redone = await rows(['r', 'a']);
    expect(redone).toHaveLength(2999);
    // The redo fails too: the transaction so far is lost; the frame's later writes go on.
    injectFault(job, 'rollback-twice', 10);
    for (let i = 0; i < 3000; i++) job.persistPut('c', key('r', 'b', i), bytesOf(i));
    expect((await job.flush()).isErr()).toBe(true);
    const after = await rows(['r', 'b']);
    expect(after.length).toBeLessThan(3000);
    expect(after.length).toBeGreaterThan(0);
    job.persistPut('c', key('r', 'c'), bytesOf(7));
    unwrap(await job.flush());
    const told = [...redone, ...after].map((r) => ({ key: hex(r.key), payload: hex(r.payload) }));
    const seen = await take(feed, told.length + 1);
    expect(seen.map(plain)).toEqual([...told, put(['r', 'c'], bytesOf(7))]);
    await feed.return?.();
    await p.close();
  });
});
