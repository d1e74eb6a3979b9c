/*
 * A write the worker confirmed is never reported failed at its death (found by a review of
 * the unconfirmed-writes report): a flush answered Ok while its group was still open (a
 * backup had committed the group midway, so the replies went out before the group ended)
 * left its frame counted as unconfirmed, and a death then reported its durable writes.
 * A reply to a request now confirms every write issued before it.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ClientPort } from '../src/client-port.js';
import { key, Persistency, type PersistencyEvents, payload, prefixRange } from '../src/index.js';
import { crashJobWorker } from '../src/job.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-death-confirmed-');

describe.each(FILE_MODES)('writes a flush confirmed, then a death (%s)', (_name, _m, options) => {
  it('are kept and never reported', async () => {
    const root = tempDir();
    const p = unwrap(Persistency.open(root, options));
    const reported: PersistencyEvents['writeFailed'][] = [];
    p.events.on('writeFailed', (e) => reported.push(e));
    const died = new Promise<unknown>((resolve) => p.events.on('jobFailed', resolve));
    const job = unwrap(await p.openJob('j'));
    const rows = 30_000;
    for (let i = 0; i < rows; i++) job.persistPut('c', key(i), payload('v'.repeat(20)));
    const flushed = job.flush();
    const backup = job.backup(join(root, 'copy.bak')); // commits the group midway
    const gets = Array.from({ length: 80 }, (_, i) => job.get('c', key(i)));
    unwrap(await flushed);
    crashJobWorker(job, 'exit');
    await died;
    await Promise.all([backup, ...gets]);
    expect(reported).toEqual([]);
    const again = unwrap(await p.openJob('j'));
    expect(unwrap(await again.count('c', prefixRange(key())))).toBe(rows);
    expect((await again.flush()).isOk()).toBe(true);
    await p.close();
  });
});

it('a reply confirms the writes issued before its request, whatever frames it finished', () => {
  const link = new ClientPort();
  const posted: unknown[] = [];
  link.connect(
    {
      port: { postMessage: (m: unknown) => posted.push(m) },
      listen: () => {},
      keepAlive: () => {},
    } as never,
    () => {},
  );
  link.wrote(1);
  link.wrote(3);
  const before = link.issued(); // a request issued after two writes (4 ops)
  link.post(new Uint8Array(1));
  link.wrote(2);
  link.post(new Uint8Array(1));
  expect(link.framesInFlight).toBe(2);
  link.settled(0, before); // its reply, sent before its group ended
  expect(link.takeUnconfirmed()).toEqual({ writes: 1, ops: 2 });
  expect(link.takeUnconfirmed()).toEqual({ writes: 0, ops: 0 }); // taken once
  expect(posted).toHaveLength(2);
});
