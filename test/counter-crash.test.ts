/*
 * Counters and atomic batches across kill -9: a child writes atomic batches that each add 1
 * to a counter and put a row, and a fire-and-forget add beside each, and is SIGKILLed while
 * it writes. After each kill the counter equals the rows present (each batch whole or
 * absent), the rows are a gap-free prefix in issue order holding every acknowledged batch,
 * the other counter is that prefix's or one less (issue order), and the file is intact.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeKey, decodePayload, key, Persistency, prefixRange } from '../src/index.js';
import { Child, stopChildren } from './support/children.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-counter-crash-');
afterEach(stopChildren);

const ROUNDS = 5;

describe.each(['per-job', '2'])('counters across kill -9 (workerThreads %s)', (threads) => {
  it(`keeps each atomic batch whole and counters exact, ${ROUNDS} kills`, async () => {
    const root = tempDir();
    for (let round = 0; round < ROUNDS; round++) {
      const child = new Child('counter-crash.ts', [root, threads]);
      const wanted = 2 + Math.floor(Math.random() * 4); // acks to wait for: 2..5
      let acked = -1;
      await child.waitForLine((line, i) => {
        if (line.startsWith('acked ')) acked = Number(line.slice(6));
        return i + 1 >= wanted;
      }, `${wanted} acknowledged flushes`);
      const exit = await child.kill(); // while it goes on writing
      expect(exit.signal).toBe('SIGKILL');

      const db = new Database(join(root, 'c.db'), { readonly: true });
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      db.close();
      const p = unwrap(
        Persistency.open(root, { workerThreads: threads === 'per-job' ? 'per-job' : 2 }),
      );
      const job = unwrap(await p.openJob('c'));
      const rows = unwrap(await job.scan('log', prefixRange(key())));
      const indices = rows.map((r) => decodeKey(r.key, 'i64'));
      const n = rows.length;
      expect(indices).toEqual(Array.from({ length: n }, (_, i) => BigInt(i)));
      const counter = async (name: string) => {
        const v = unwrap(await job.get('n', key(name)));
        return v === undefined ? 0n : decodePayload(v, 'i64');
      };
      expect(await counter('count')).toBe(BigInt(n)); // each batch whole or absent
      expect([BigInt(n), BigInt(n - 1)]).toContain(await counter('adds'));
      expect(n - 1).toBeGreaterThanOrEqual(acked); // every acknowledged batch is there
      // The next child numbers its batches from 0 again: it starts from a fresh job.
      unwrap(await p.dropJob('c'));
      unwrap(await p.close());
    }
  });
});
