/*
 * job.watch: next() calls settle in the order they were made, also when one message brings
 * two commits and the first is handed to a waiting next() in a task of its own (an
 * adversarial review's reproduction; it failed before the fix).
 */
import { describe, expect, it } from 'vitest';
import { type Change, key, Persistency, payload, prefixRange } from '../src/index.js';
import { hex } from './support/changes.js';
import { unwrap, useTempDirs } from './support/env.js';
import { ROOT_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-watch-order-');
const keysOf = (changes: Change[]) =>
  changes.map((c) => ('key' in c ? hex(c.key) : 'prefix')).join(',');

describe.each(ROOT_MODES)('watch next() settling order (%s)', (_name, memory, options) => {
  it('a later next() never settles before an earlier one', async () => {
    const p = unwrap(Persistency.open(memory ? ':memory:' : tempDir(), options));
    const job = unwrap(await p.openJob('j'));
    const feed = job.watch('c', prefixRange(key()));
    unwrap(await job.flush()); // the watch is open in the worker
    const settled: string[] = [];
    const first = feed.next().then((r) => settled.push(`1st: ${keysOf(r.value)}`));
    // One frame, two commits: the iterator's open commits the put before it.
    job.persistPut('c', key('a'), payload('a'));
    const snapshot = job.iterate('other', prefixRange(key()));
    const page = snapshot.next();
    job.persistPut('c', key('b'), payload('b'));
    unwrap(await job.flush());
    const second = feed.next().then((r) => settled.push(`2nd: ${keysOf(r.value)}`));
    await Promise.all([first, second, page]);
    expect(settled).toEqual([`1st: ${hex(key('a'))}`, `2nd: ${hex(key('b'))}`]);
    await p.close();
  });
});
