/*
 * What a pager's next page keeps alive in the worker (src/worker/page-ahead.ts): the
 * request it expects next is kept as copies, not as views of the frame the scan came in,
 * which may hold a large write. Counted in a heap snapshot of the worker (which runs a full
 * GC first). Written by a review of 310acc7, whose first version kept a 64 MiB frame.
 */
import type { Worker } from 'node:worker_threads';
import { expect, it, vi } from 'vitest';
import { key, Persistency, payload } from '../src/index.js';
import { unwrap, useTempDirs } from './support/env.js';

const workers = vi.hoisted(() => [] as Worker[]);
vi.mock('../src/worker/spawn.js', async (importOriginal) => {
  const mod = await importOriginal<typeof import('../src/worker/spawn.js')>();
  return {
    ...mod,
    spawnWorker: () => {
      const w = mod.spawnWorker();
      workers.push(w);
      return w;
    },
  };
});

const tempDir = useTempDirs('persistency-page-ahead-memory-');

/** The largest self_size of any object in the worker's heap, after a full GC. */
async function largestObject(w: Worker): Promise<number> {
  let text = '';
  for await (const chunk of await w.getHeapSnapshot()) text += chunk;
  const snap = JSON.parse(text) as {
    snapshot: { meta: { node_fields: string[] } };
    nodes: number[];
  };
  const fields = snap.snapshot.meta.node_fields;
  const size = fields.indexOf('self_size');
  let max = 0;
  for (let i = 0; i < snap.nodes.length; i += fields.length)
    max = Math.max(max, snap.nodes[i + size] as number);
  return max;
}

it.each([false, true])(
  'a scan (reverse: %s) in a frame with a 64 MiB write does not keep the frame',
  async (reverse) => {
    const p = unwrap(Persistency.open(tempDir(), { workerThreads: 1 }));
    const job = unwrap(await p.openJob('j'));
    for (let i = 0; i < 20; i++) job.persistPut('c', key(i), payload(i));
    unwrap(await job.flush());
    const worker = workers[workers.length - 1] as Worker;
    // One turn: a limited scan that fills its limit (its next page is expected), then a large
    // put of another category, in the same frame.
    const page = job.scan('c', { start: key() }, { limit: 5, reverse });
    job.persistPut('d', key('big'), new Uint8Array(64 * 1024 * 1024));
    expect(unwrap(await page)).toHaveLength(5);
    unwrap(await job.flush());
    // Later requests of the job, none a scan, each in a frame of its own.
    for (let i = 0; i < 5; i++) expect(unwrap(await job.get('c', key(i)))).toEqual(payload(i));
    job.persistPut('c', key(100), payload(100));
    unwrap(await job.flush());
    expect(await largestObject(worker)).toBeLessThan(4 * 1024 * 1024);
    unwrap(await p.close());
  },
);
