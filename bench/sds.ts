/*
 * What a durable SDS history (persistency/sds) costs against SDS's own in-memory one, in
 * one process run, on one channel of 10,000 messages (--quick: 1,000):
 *
 *   send     a MessageChannel sends every message (callback: success with a 32-byte
 *            retrieval hint), processTasks() after each 100; with SDS's default in-memory
 *            history (the peer), then with an SdsLocalHistory in a fresh file root
 *            (workerThreads 'per-job') and one history.flush() at the end.
 *   size     the job file after close, per message.
 *   load     the peer reading the rows with better-sqlite3 in the main thread and
 *            Message.decode on each, then openSdsHistory on a new instance (the heap its
 *            history holds measured); each load's messages are dropped before the next;
 *            three of each, alternating which goes first, medians in the table.
 *            SDS's in-memory history sorts itself again on every push, hence its send rate.
 *
 *   npm run bench -- sds [--quick]
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { type ContentMessage, Message, MessageChannel } from '@waku/sds';
import Database from 'better-sqlite3';
import { Persistency } from '../src/index.js';
import { HINTS_CATEGORY, HISTORY_CATEGORY, openSdsHistory } from '../src/sds/index.js';
import { gitCommit, median, unwrap } from './common.js';
import type { BenchOptions } from './index.js';

const utf8 = new TextEncoder();

/** Seconds to send `n` messages through `channel`. */
async function send(channel: MessageChannel, n: number, tag: string): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    channel.pushOutgoingMessage(utf8.encode(`${tag} message ${i}`.padEnd(100, '.')), async () => ({
      success: true,
      retrievalHint: new Uint8Array(32).fill(i & 0xff),
    }));
    if (i % 100 === 99) await channel.processTasks();
  }
  await channel.processTasks();
  return (performance.now() - started) / 1000;
}

// A full collection before each heap reading, so that it counts what is held, not garbage.
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;
const heapMiB = (): number => {
  collect();
  return process.memoryUsage().heapUsed / 1048576;
};

/** Seconds openSdsHistory takes on a new instance, and the heap its history holds. */
async function oursLoadSeconds(
  root: string,
  n: number,
): Promise<{ seconds: number; heldMiB: number }> {
  const q = unwrap(Persistency.open(root), 'open again');
  const again = unwrap(await q.openJob('node'), 'openJob again');
  const heapBefore = heapMiB();
  const started = performance.now();
  const loaded = unwrap(await openSdsHistory(again, 'room'), 'load');
  const seconds = (performance.now() - started) / 1000;
  const heldMiB = heapMiB() - heapBefore;
  if (loaded.length !== n) throw new Error(`loaded ${loaded.length} of ${n} messages`);
  unwrap(await q.close(), 'close again');
  return { seconds, heldMiB };
}

/** Seconds the peer takes: the same rows read in the main thread, each decoded. */
function peerLoadSeconds(file: string, n: number): number {
  const started = performance.now();
  const db = new Database(file, { readonly: true });
  type Row = { key: Buffer; payload: Buffer };
  const select = db.prepare('SELECT key, payload FROM kv WHERE category = ? ORDER BY key');
  const hints = new Map<string, Uint8Array>();
  for (const row of select.iterate(Buffer.from(HINTS_CATEGORY)) as Iterable<Row>)
    hints.set(row.key.toString('hex'), row.payload);
  const loaded: ContentMessage[] = [];
  for (const row of select.iterate(Buffer.from(HISTORY_CATEGORY)) as Iterable<Row>) {
    const m = Message.decode(row.payload) as ContentMessage;
    m.retrievalHint = hints.get(row.key.toString('hex'));
    loaded.push(m);
  }
  db.close();
  if (loaded.length !== n) throw new Error(`the peer read ${loaded.length} of ${n}`);
  return (performance.now() - started) / 1000;
}

export async function runSdsBench(options: BenchOptions): Promise<void> {
  const n = options.quick ? 1_000 : 10_000;
  const root = mkdtempSync(join(tmpdir(), 'persistency-bench-sds-'));
  try {
    console.log(`\n## sds: one channel of ${n} messages (commit ${gitCommit()})\n`);
    const peerSend = await send(new MessageChannel('room', 'ada'), n, 'peer');

    const p = unwrap(Persistency.open(root), 'open');
    const job = unwrap(await p.openJob('node'), 'openJob');
    const history = unwrap(await openSdsHistory(job, 'room'), 'openSdsHistory');
    const oursSend = await send(new MessageChannel('room', 'ada', {}, history), n, 'ours');
    const flushStarted = performance.now();
    unwrap(await history.flush(), 'flush');
    const oursSendAll = oursSend + (performance.now() - flushStarted) / 1000;
    unwrap(await p.close(), 'close');
    const bytes = statSync(join(root, 'node.db')).size;

    // Each load in a function of its own, so that its messages are garbage before the next;
    // three of each, which goes first alternating.
    const peerLoads: number[] = [];
    const oursLoads: number[] = [];
    let oursHeap = 0;
    for (let rep = 0; rep < 3; rep++) {
      if (rep % 2 === 0) peerLoads.push(peerLoadSeconds(join(root, 'node.db'), n));
      const ours = await oursLoadSeconds(root, n);
      oursLoads.push(ours.seconds);
      oursHeap = Math.max(oursHeap, ours.heldMiB);
      if (rep % 2 === 1) peerLoads.push(peerLoadSeconds(join(root, 'node.db'), n));
    }
    const peerLoad = median(peerLoads);
    const oursLoad = median(oursLoads);
    console.log(
      `loads (s): ours ${oursLoads.map((x) => x.toFixed(2)).join(', ')}; peer ${peerLoads.map((x) => x.toFixed(2)).join(', ')}\n`,
    );

    const rate = (s: number): string => `${Math.round(n / s).toLocaleString('en-US')} msg/s`;
    console.log('| measure | persistency/sds | peer | ratio |');
    console.log('|---|---|---|---|');
    console.log(
      `| send ${n} (+ flush) | ${rate(oursSendAll)} | ${rate(peerSend)} (SDS in-memory history) | ${(peerSend / oursSendAll).toFixed(2)}x |`,
    );
    console.log(
      `| load ${n} (median of 3) | ${oursLoad.toFixed(2)} s | ${peerLoad.toFixed(2)} s (better-sqlite3 + Message.decode, main thread) | ${(peerLoad / oursLoad).toFixed(2)}x |`,
    );
    console.log(
      `| file | ${(bytes / 1e6).toFixed(1)} MB, ${(bytes / n / 1024).toFixed(1)} KiB a message | | |`,
    );
    console.log(`| heap held after load | ${Math.round(oursHeap)} MiB | | |`);
    console.log('\nratio: the rate of persistency/sds over the peer’s (above 1x: faster)');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
