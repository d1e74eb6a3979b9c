/*
 * dropJob of an open job forgets everything it kept of the job (found by a review: the
 * file name an open job keeps stayed in the registry for good, one entry per id dropped
 * while open). Counted in a heap snapshot: no file name of a dropped job is left.
 */
import { getHeapSnapshot } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { key, Persistency, payload } from '../src/index.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-drop-open-');

async function stemsRetained(pattern: RegExp): Promise<number> {
  const chunks: Buffer[] = [];
  for await (const c of getHeapSnapshot()) chunks.push(c as Buffer);
  const strings = JSON.parse(Buffer.concat(chunks).toString()).strings as string[];
  return strings.filter((s) => pattern.test(s)).length;
}

describe.each<[string, { workerThreads: 'per-job' | number }]>([
  ['per-job', { workerThreads: 'per-job' }],
  ['2 threads', { workerThreads: 2 }],
])('dropJob of open jobs (%s)', (name, options) => {
  it('keeps nothing of the dropped jobs', async () => {
    const tag = name === 'per-job' ? 'pj' : 'pool';
    const p = unwrap(Persistency.open(tempDir(), options));
    for (let i = 0; i < 20; i++) {
      const id = `leak/${tag}/${i}`;
      const job = unwrap(await p.openJob(id));
      job.persistPut('c', key(1), payload('x'));
      unwrap(await p.dropJob(id)); // open: dropped without a closeJob first
    }
    expect(p.stats().openJobs).toBe(0);
    const retained = await stemsRetained(new RegExp(`^leak%2F${tag}%2F\\d+$`));
    await p.close();
    expect({ retainedStems: retained }).toEqual({ retainedStems: 0 });
  });
});
