/*
 * One system's run of the tenants benchmark (bench/tenants.ts), in a process of its own so
 * that the RSS, threads and file descriptors it reports are that system's alone:
 *
 *   node --expose-gc tenants-child.js <engine> <jobs> <active> <seconds> <idleCloseMs> <maxResidentJobs>
 *
 * Opens <jobs> stores (each: open, one put, a durable flush), keeps <active> of them busy
 * for <seconds>, closes everything, then reopens every store and counts its rows. Prints
 * one JSON line (TenantsReport).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { isEngineName, makeEngine, OursEngine, Rows, type Store } from './peers-engines.js';

/** Opens in flight during the open phase: one, so that a latency is one open's own. */
export const OPEN_CONCURRENCY = 1;
/** Async tasks during an active phase; each writes bursts of PUT_BURST rows to one store. */
export const TASKS = 64;
export const PUT_BURST = 16;
const GETS_PER_BURST = 4;
/** Row indices wrap below this, so the prepared keys stay few (later puts overwrite). */
const ROW_SPAN = 50_000;
/** How long one job's rate is measured, before the active phase. */
export const SINGLE_SECONDS = 5;
/**
 * Whether each burst awaits its store's flush (rows count once durable), or bursts are
 * fire-and-forget and the phase ends by flushing every store it wrote
 * (PERSISTENCY_TENANTS_FLUSH=end): the "random puts and gets" without a durable
 * point per burst.
 */
export const FLUSH_EACH_BURST = process.env.PERSISTENCY_TENANTS_FLUSH !== 'end';
/** Ours: the pool size (PERSISTENCY_TENANTS_THREADS to vary; the issue fixes 2). */
export const WORKER_THREADS = Number(process.env.PERSISTENCY_TENANTS_THREADS ?? 2);

export interface Usage {
  readonly rss: number;
  readonly threads: number;
  readonly fds: number;
}

export interface TenantsReport {
  readonly engine: string;
  readonly jobs: number;
  /** Stores opened before a failure (all of them when `failure` is undefined). */
  readonly opened: number;
  readonly failure: string | undefined;
  readonly baseline: Usage;
  /** After the open phase, once idle jobs are released (ours), after gc. */
  readonly atOpen: Usage;
  /** Highest seen during the open phase and during the active phase. */
  readonly peakOpen: Usage;
  readonly peakActive: Usage;
  readonly openP50Ms: number;
  readonly openP99Ms: number;
  readonly openSeconds: number;
  /** One job driven by all TASKS tasks (its group commits gather every task's rows). */
  readonly singleRowsPerSec: number;
  /** One job driven by one task: the load each active job sees. */
  readonly oneTaskRowsPerSec: number;
  readonly activeRowsPerSec: number;
  readonly closeSeconds: number;
  readonly verifiedRows: number;
  readonly missingRows: number;
}

const gc = (globalThis as { gc?: () => void }).gc;

function usage(): Usage {
  const status = readFileSync('/proc/self/status', 'utf8');
  const threads = Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? Number.NaN);
  return { rss: process.memoryUsage().rss, threads, fds: readdirSync('/proc/self/fd').length };
}

async function settled(): Promise<Usage> {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await sleep(100);
  }
  return usage();
}

/** The highest usage seen between `start` and `stop`, sampled every 100 ms. */
function peakTracker(): { stop(): Usage } {
  let peak = usage();
  const timer = setInterval(() => {
    const u = usage();
    peak = {
      rss: Math.max(peak.rss, u.rss),
      threads: Math.max(peak.threads, u.threads),
      fds: Math.max(peak.fds, u.fds),
    };
  }, 100);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

/**
 * TASKS tasks, each repeating until `seconds` pass: pick a store, put PUT_BURST rows,
 * flush it (unless FLUSH_EACH_BURST is off), read GETS_PER_BURST of its rows back. Returns
 * durable rows per second: rows count once their flush resolved (without flushes per
 * burst, once every store written is flushed at the end, which the time includes).
 */
async function activeLoop(
  tasks: number,
  stores: readonly Store[],
  written: number[],
  offset: number,
  rows: Rows,
  seconds: number,
): Promise<number> {
  const until = performance.now() + seconds * 1000;
  let durable = 0;
  const touched = new Set<Store>();
  let seed = 12345;
  const random = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const task = async () => {
    while (performance.now() < until) {
      const j = random(stores.length);
      const store = stores[j] as Store;
      for (let k = 0; k < PUT_BURST; k++) {
        const n = (written[offset + j] as number) + 1;
        written[offset + j] = n;
        const row = 1 + ((n - 1) % (ROW_SPAN - 1));
        rows.ensure(row + 1);
        store.put(row);
      }
      if (FLUSH_EACH_BURST) {
        await store.flush();
        durable += PUT_BURST;
      } else {
        touched.add(store);
        durable += PUT_BURST; // counted as durable by the flushes after the loop
      }
      const top = Math.min(written[offset + j] as number, ROW_SPAN - 1);
      await Promise.all(Array.from({ length: GETS_PER_BURST }, () => store.get(1 + random(top))));
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: tasks }, task));
  await Promise.all([...touched].map((s) => s.flush()));
  return durable / ((performance.now() - t0) / 1000);
}

async function main(): Promise<void> {
  const [name = '', jobsArg = '', activeArg = '', secondsArg = '', idleArg = '', capArg = '0'] =
    process.argv.slice(2);
  const jobs = Number(jobsArg);
  const active = Number(activeArg);
  const seconds = Number(secondsArg);
  const idleCloseMs = Number(idleArg);
  if (!isEngineName(name)) throw new Error(`unknown engine ${name}`);
  const rows = new Rows(ROW_SPAN);
  const options = { workerThreads: WORKER_THREADS, idleCloseMs, maxResidentJobs: Number(capArg) };
  const engine = makeEngine(name, rows, options);
  const dir = mkdtempSync(join(tmpdir(), `persistency-tenants-${name}-`));
  const stores: Store[] = [];
  /** Rows written to store i beyond its first (row 0), from which its count is known. */
  const written: number[] = new Array(jobs).fill(0);
  try {
    const baseline = await settled();
    let tracker = peakTracker();
    const latencies: number[] = [];
    let failure: string | undefined;
    let next = 0;
    const t0 = performance.now();
    const opener = async () => {
      while (next < jobs && failure === undefined) {
        const i = next++;
        const start = performance.now();
        try {
          const store = await engine.open(dir, `t${i}`);
          store.put(0);
          await store.flush();
          latencies.push(performance.now() - start);
          stores[i] = store;
          // Progress, for a system that dies (a crash reports nothing else).
          if ((i + 1) % 500 === 0) process.stderr.write(`opened ${i + 1}\n`);
        } catch (e) {
          failure = `store ${i}: ${e instanceof Error ? e.message : String(e)}`;
        }
      }
    };
    await Promise.all(Array.from({ length: OPEN_CONCURRENCY }, opener));
    const openSeconds = (performance.now() - t0) / 1000;
    const peakOpen = tracker.stop();
    const opened = stores.filter((s) => s !== undefined).length;
    // Ours: measure once the jobs idle since their write have released their connections.
    if (engine instanceof OursEngine) {
      const giveUp = performance.now() + idleCloseMs * 2 + 10_000;
      while ((engine.instance?.stats().residentJobs ?? 0) > 0 && performance.now() < giveUp)
        await sleep(100);
    }
    const atOpen = await settled();
    latencies.sort((a, b) => a - b);
    let single = Number.NaN;
    let oneTask = Number.NaN;
    let activeRate = Number.NaN;
    tracker = peakTracker();
    if (failure === undefined && opened > 0) {
      const first = [stores[0] as Store];
      single = await activeLoop(TASKS, first, written, 0, rows, SINGLE_SECONDS);
      oneTask = await activeLoop(1, first, written, 0, rows, SINGLE_SECONDS);
      const busy = stores.slice(0, Math.min(active, opened));
      activeRate = await activeLoop(TASKS, busy, written, 0, rows, seconds);
    }
    const peakActive = tracker.stop();
    const tc = performance.now();
    await Promise.all(stores.filter((s) => s !== undefined).map((s) => s.close()));
    await engine.shutdown();
    const closeSeconds = (performance.now() - tc) / 1000;

    // Every row written is there after close: reopen each store and count its rows.
    let verifiedRows = 0;
    let missingRows = 0;
    const check = makeEngine(name, rows, options);
    let k = 0;
    const checker = async () => {
      while (k < opened) {
        const i = k++;
        const store = await check.open(dir, `t${i}`);
        const expected = 1 + Math.min(written[i] as number, ROW_SPAN - 1);
        const got = await store.count();
        verifiedRows += Math.min(got, expected);
        missingRows += Math.max(0, expected - got);
        await store.close();
      }
    };
    await Promise.all(Array.from({ length: 16 }, checker));
    await check.shutdown();

    const report: TenantsReport = {
      engine: name,
      jobs,
      opened,
      failure,
      baseline,
      atOpen,
      peakOpen,
      peakActive,
      openP50Ms: percentile(latencies, 0.5),
      openP99Ms: percentile(latencies, 0.99),
      openSeconds,
      singleRowsPerSec: single,
      oneTaskRowsPerSec: oneTask,
      activeRowsPerSec: activeRate,
      closeSeconds,
      verifiedRows,
      missingRows,
    };
    console.log(JSON.stringify(report));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Run when started as a script, not when bench/tenants.ts imports the constants above.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
