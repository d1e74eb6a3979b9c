/*
 * Resident memory per open, idle store of one engine, measured in a fresh process so no
 * other engine's heap or threads are counted. Spawned by bench/peers.ts:
 *
 *   node --expose-gc --import tsx bench/rss-child.ts <engine> <count>
 *
 * Opens <count> stores (jobs) in a temporary directory, writes one durable row to each,
 * waits until the process is idle, collects garbage, and prints one JSON line:
 * { engine, count, rssBefore, rssAfter, perStoreMiB }. Every store is then closed and the
 * directory removed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isEngineName, makeEngine, Rows, type Store } from './peers-engines.js';

export interface RssReport {
  readonly engine: string;
  readonly count: number;
  readonly rssBefore: number;
  readonly rssAfter: number;
  readonly perStoreMiB: number;
}

const gc = (globalThis as { gc?: () => void }).gc;

async function settle(ms: number): Promise<number> {
  await sleep(ms);
  for (let i = 0; i < 3; i++) {
    gc?.();
    await sleep(50);
  }
  return process.memoryUsage().rss;
}

async function main(): Promise<void> {
  const [name = '', countArg = ''] = process.argv.slice(2);
  const count = Number(countArg);
  if (!isEngineName(name) || !Number.isSafeInteger(count) || count < 1) {
    throw new Error('usage: rss-child.ts <engine> <count>');
  }
  const rows = new Rows(count);
  const engine = makeEngine(name, rows);
  const dir = mkdtempSync(join(tmpdir(), `persistency-rss-${name}-`));
  const stores: Store[] = [];
  try {
    const rssBefore = await settle(200);
    for (let i = 0; i < count; i++) {
      const store = await engine.open(dir, `job-${i}`);
      stores.push(store);
      store.put(i);
      await store.flush();
    }
    const rssAfter = await settle(1000);
    const report: RssReport = {
      engine: name,
      count,
      rssBefore,
      rssAfter,
      perStoreMiB: (rssAfter - rssBefore) / count / 2 ** 20,
    };
    console.log(JSON.stringify(report));
  } finally {
    for (const store of stores) await store.close();
    await engine.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
