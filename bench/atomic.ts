import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { KvU64, openKv } from '@deno/kv';
import {
  decodePayload,
  i64,
  type Job,
  type Key,
  key,
  Persistency,
  prefixRange,
  toPayload,
} from '../src/index.js';
import { gitCommit, median, turn, unwrap } from './common.js';
import { reexecUnderNode, shouldReexec } from './peers-node.js';

interface Scale {
  /** CAS and add: concurrent tasks, increments per task. */
  readonly tasks: number;
  readonly perTask: number;
  /** add vs put: counters, and writes in all. */
  readonly counters: number;
  readonly counterOps: number;
  /** watch: distinct keys written. */
  readonly watchRows: number;
}

const FULL: Scale = {
  tasks: 100,
  perTask: 100,
  counters: 1000,
  counterOps: 200_000,
  watchRows: 200_000,
};
const QUICK: Scale = {
  tasks: 20,
  perTask: 20,
  counters: 1000,
  counterOps: 20_000,
  watchRows: 20_000,
};
/** Pairs of runs per comparison: the CAS and add pairs take seconds each (deno-kv retries). */
const REPS = 3;
/**
 * Pairs for the write-rate ratios (persistAdd/persistPut, watcher/none): their runs take
 * half a second each and single pairs on this shared machine spread widely (README), so
 * the median of many pairs makes the ratio a measurement rather than a draw.
 */
const RATE_REPS = 11;
const gc = (globalThis as { gc?: () => void }).gc;
/** Writes issued per turn of a writer loop. */
const CHUNK = 1000;
const CAT = 'bench';
const ADD_TARGET = 0.8;
const WATCH_TARGET = 0.9;

type DenoKv = Awaited<ReturnType<typeof openKv>>;

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`atomic benchmark: ${what}`);
}

const fmt = (x: number): string =>
  x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)} k` : x.toFixed(1);
const int = (n: number): string => n.toLocaleString('en-US');
const counterOf = (bytes: Uint8Array | undefined): bigint =>
  bytes === undefined ? 0n : decodePayload(bytes, 'i64');

/** A fresh directory for one run; removed by `run`'s caller through `inTemp`. */
async function inTemp<T>(name: string, run: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), `persistency-atomic-${name}-`));
  try {
    return await run(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Open a fresh root's job 'bench', run `body` on it, close the root. */
function withJob<T>(name: string, body: (job: Job) => Promise<T>): Promise<T> {
  return inTemp(name, async (dir) => {
    const p = unwrap(Persistency.open(join(dir, 'root'), { workerThreads: 'per-job' }), 'open');
    let failures = 0;
    p.events.on('writeFailed', (e) => {
      if (failures++ === 0) console.error(`writeFailed: ${e.error.message}`);
    });
    try {
      const job = unwrap(await p.openJob('bench'), 'openJob');
      // The worker is up and the file created before anything is timed.
      unwrap(await job.get(CAT, key('warm-up')), 'get');
      const out = await body(job);
      check(failures === 0, `${failures} writes failed`);
      return out;
    } finally {
      await p.close();
    }
  });
}

/** Open a fresh Deno KV file, run `body` on it, close it. */
function withDeno<T>(name: string, body: (kv: DenoKv) => Promise<T>): Promise<T> {
  return inTemp(name, async (dir) => {
    const kv = await openKv(join(dir, 'bench.kv'));
    try {
      await kv.get(['warm-up']);
      return await body(kv);
    } finally {
      kv.close();
    }
  });
}

// ---------------------------------------------------------------------------------------
// 1. Compare-and-set and add from concurrent tasks

interface Increments {
  /** Successful increments per second. */
  readonly perSecond: number;
  readonly retries: number;
}

/** `tasks` tasks each run `one` `perTask` times; `one` returns how many retries it took. */
async function increments(
  scale: Scale,
  one: () => Promise<number>,
  final: () => Promise<bigint>,
): Promise<Increments> {
  let retries = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: scale.tasks }, async () => {
      for (let i = 0; i < scale.perTask; i++) retries += await one();
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const total = scale.tasks * scale.perTask;
  const end = await final();
  check(end === BigInt(total), `the counter ended at ${end}, not ${total}`);
  return { perSecond: total / seconds, retries };
}

function oursCas(scale: Scale): Promise<Increments> {
  return withJob('cas', (job) => {
    const k = key('counter');
    return increments(
      scale,
      async () => {
        for (let retries = 0; ; retries++) {
          const seen = unwrap(await job.get(CAT, k), 'get');
          const next = toPayload(i64(counterOf(seen) + 1n));
          const r = unwrap(
            await job.atomic().check(CAT, k, seen).put(CAT, k, next).commit(),
            'commit',
          );
          if (r.ok) return retries;
          check(r.reason === 'check', `CAS not applied: ${r.reason}`);
        }
      },
      async () => counterOf(unwrap(await job.get(CAT, k), 'get')),
    );
  });
}

function oursAdd(scale: Scale): Promise<Increments> {
  return withJob('add', (job) => {
    const k = key('counter');
    return increments(
      scale,
      async () => {
        const r = unwrap(await job.atomic().add(CAT, k, 1).commit(), 'commit');
        check(r.ok, `add not applied: ${r.ok ? '' : r.reason}`);
        return 0;
      },
      async () => counterOf(unwrap(await job.get(CAT, k), 'get')),
    );
  });
}

function denoCas(scale: Scale): Promise<Increments> {
  return withDeno('deno-cas', (kv) => {
    const k = ['counter'];
    return increments(
      scale,
      async () => {
        for (let retries = 0; ; retries++) {
          const entry = await kv.get<number>(k);
          const res = await kv
            .atomic()
            .check(entry)
            .set(k, (entry.value ?? 0) + 1)
            .commit();
          if (res.ok) return retries;
        }
      },
      async () => BigInt((await kv.get<number>(k)).value ?? 0),
    );
  });
}

function denoSum(scale: Scale): Promise<Increments> {
  return withDeno('deno-sum', (kv) => {
    const k = ['counter'];
    return increments(
      scale,
      async () => {
        const res = await kv.atomic().sum(k, 1n).commit();
        check(res.ok, 'deno-kv sum not applied');
        return 0;
      },
      async () => {
        const v = (await kv.get<KvU64>(k)).value;
        check(v instanceof KvU64, `deno-kv sum left ${String(v)}`);
        return (v as KvU64).value;
      },
    );
  });
}

// ---------------------------------------------------------------------------------------
// 2. persistAdd against persistPut; 3. a writer with and without a watcher

/**
 * `ops` writes, CHUNK per turn, then a flush; returns rows/s from the first write to the
 * flush resolved. `write(i)` issues write i.
 */
async function writer(job: Job, ops: number, write: (i: number) => void): Promise<number> {
  const t0 = performance.now();
  for (let from = 0; from < ops; from += CHUNK) {
    const to = Math.min(from + CHUNK, ops);
    for (let i = from; i < to; i++) write(i);
    await turn();
  }
  unwrap(await job.flush(), 'flush');
  return ops / ((performance.now() - t0) / 1000);
}

function counterKeys(scale: Scale): Key[] {
  return Array.from({ length: scale.counters }, (_, c) => key('counter', c));
}

function persistAdds(scale: Scale): Promise<number> {
  const keys = counterKeys(scale);
  return withJob('persist-add', async (job) => {
    const rate = await writer(job, scale.counterOps, (i) => {
      job.persistAdd(CAT, keys[i % keys.length] as Key, 1);
    });
    const got = unwrap(await job.getMany(CAT, keys), 'getMany');
    const rounds = BigInt(scale.counterOps / scale.counters);
    check(
      got.every((v) => counterOf(v) === rounds),
      'a counter did not end at the number of rounds',
    );
    return rate;
  });
}

function persistPuts(scale: Scale): Promise<number> {
  const keys = counterKeys(scale);
  const rounds = Math.ceil(scale.counterOps / scale.counters);
  // 8-byte payloads, as a counter's: the round number.
  const payloads = Array.from({ length: rounds }, (_, r) => toPayload(i64(BigInt(r + 1))));
  return withJob('persist-put', async (job) => {
    const rate = await writer(job, scale.counterOps, (i) => {
      job.persistPut(
        CAT,
        keys[i % keys.length] as Key,
        payloads[Math.floor(i / keys.length)] as Uint8Array,
      );
    });
    const got = unwrap(await job.getMany(CAT, keys), 'getMany');
    check(
      got.every((v) => v?.length === 8 && counterOf(v) === BigInt(rounds)),
      'a key did not hold the last round',
    );
    return rate;
  });
}

interface Watched {
  /** Writer rows/s. */
  readonly perSecond: number;
  /** From the flush resolved to the watcher having seen every row, ms (0: no watcher). */
  readonly lagMs: number;
  readonly commits: number;
}

const WATCH_PAYLOAD = new Uint8Array(100).fill(7);

function watchWrites(scale: Scale, watched: boolean): Promise<Watched> {
  const keys = Array.from({ length: scale.watchRows }, (_, i) => key('w', i));
  return withJob(watched ? 'watched' : 'unwatched', async (job) => {
    let seen = 0;
    let commits = 0;
    let consumer: Promise<void> | undefined;
    if (watched) {
      const feed = job.watch(CAT, prefixRange(key('w')));
      consumer = (async () => {
        for await (const changes of feed) {
          commits++;
          for (const c of changes) if ('key' in c && c.payload !== undefined) seen++;
          if (seen >= scale.watchRows) return; // ends the watch
        }
      })();
    }
    const rate = await writer(job, scale.watchRows, (i) => {
      job.persistPut(CAT, keys[i] as Key, WATCH_PAYLOAD);
    });
    const t0 = performance.now();
    await consumer;
    const lagMs = watched ? performance.now() - t0 : 0;
    if (watched) check(seen === scale.watchRows, `the watcher saw ${seen} of ${scale.watchRows}`);
    const count = unwrap(await job.count(CAT, prefixRange(key('w'))), 'count');
    check(count === scale.watchRows, `${count} rows stored`);
    return { perSecond: rate, lagMs, commits };
  });
}

// ---------------------------------------------------------------------------------------

/**
 * Runs `a` and `b` `reps` times side by side (order alternating); prints each run. Each run
 * starts after a full gc (under --expose-gc), so none pays for the garbage of the one before.
 */
async function paired<T>(
  label: string,
  a: [string, () => Promise<T>],
  b: [string, () => Promise<T>],
  show: (x: T) => string,
  reps = REPS,
): Promise<[T[], T[]]> {
  const as: T[] = [];
  const bs: T[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 === 0 ? [a, b] : [b, a];
    for (const [name, run] of order) {
      gc?.();
      const x = await run();
      (name === a[0] ? as : bs).push(x);
      console.log(`  ${label} run ${rep + 1}: ${name.padEnd(22)} ${show(x)}`);
    }
  }
  return [as, bs];
}

export async function runAtomicBench(options: { quick: boolean }): Promise<void> {
  if (shouldReexec()) {
    await reexecUnderNode(options.quick, 'atomic');
    return;
  }
  const scale = options.quick ? QUICK : FULL;
  console.log(
    `\n# atomic benchmark (issue 15)${options.quick ? ' [--quick: small sizes, not a measurement]' : ''}`,
  );
  const load = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  console.log(
    `${new Date().toISOString()}, Node ${process.version} (${process.execArgv.join(' ') || 'no flags'}), commit ${gitCommit()}, load average ${load}`,
  );
  console.log(
    `medians of ${REPS} runs (CAS, add) and ${RATE_REPS} (counters, watch), each in a fresh root after a gc; writers issue ${int(CHUNK)} writes per turn\n`,
  );

  const total = scale.tasks * scale.perTask;
  const incr = (x: Increments): string =>
    `${fmt(x.perSecond).padStart(9)} increments/s, ${int(x.retries).padStart(9)} retries`;
  const [cas, denoCasRuns] = await paired(
    `CAS ${scale.tasks}x${scale.perTask}`,
    ['persistency check+put', () => oursCas(scale)],
    ['deno-kv check+set', () => denoCas(scale)],
    incr,
  );
  const [add, sum] = await paired(
    `add ${scale.tasks}x${scale.perTask}`,
    ['persistency atomic add', () => oursAdd(scale)],
    ['deno-kv atomic sum', () => denoSum(scale)],
    incr,
  );
  const rows = (x: number): string => `${fmt(x).padStart(9)} rows/s`;
  const [adds, puts] = await paired(
    `counters ${int(scale.counterOps)}`,
    ['persistAdd', () => persistAdds(scale)],
    ['persistPut', () => persistPuts(scale)],
    rows,
    RATE_REPS,
  );
  const [unwatched, watched] = await paired(
    `watch ${int(scale.watchRows)}`,
    ['no watcher', () => watchWrites(scale, false)],
    ['watcher', () => watchWrites(scale, true)],
    (x) =>
      `${rows(x.perSecond)}${x.commits > 0 ? `, watcher done ${x.lagMs.toFixed(0)} ms after the flush, ${int(x.commits)} deliveries to the watcher` : ''}`,
    RATE_REPS,
  );

  const medOf = <T>(xs: readonly T[], f: (x: T) => number): number => median(xs.map(f));
  const ratio = <T>(as: readonly T[], bs: readonly T[], f: (x: T) => number): number[] =>
    as.map((a, i) => f(a) / f(bs[i] as T));
  const rate = (x: Increments): number => x.perSecond;
  const show = (rs: readonly number[]): string =>
    `${median(rs).toFixed(2)}x (${rs.map((r) => r.toFixed(2)).join(', ')})`;

  console.log(`\n| workload | per second (median) | runs | retries (median) |`);
  console.log('|---|---|---|---|');
  const line = (what: string, xs: readonly number[], retries = ''): void => {
    console.log(`| ${what} | ${fmt(median(xs))} | ${xs.map(fmt).join(', ')} | ${retries} |`);
  };
  const incrLine = (what: string, xs: readonly Increments[]): void =>
    line(what, xs.map(rate), int(medOf(xs, (x) => x.retries)));
  incrLine(`CAS ${scale.tasks}x${scale.perTask}, persistency get + check/put, increments`, cas);
  incrLine(`CAS ${scale.tasks}x${scale.perTask}, deno-kv get + check/set, increments`, denoCasRuns);
  incrLine(`add ${scale.tasks}x${scale.perTask}, persistency atomic().add, awaited`, add);
  incrLine(`add ${scale.tasks}x${scale.perTask}, deno-kv atomic().sum, awaited`, sum);
  line(
    `${int(scale.counterOps)} persistAdd over ${int(scale.counters)} counters + flush, rows`,
    adds,
  );
  line(`${int(scale.counterOps)} persistPut (8 bytes) over the same keys + flush, rows`, puts);
  line(
    `${int(scale.watchRows)} persistPut of distinct keys + flush, no watcher, rows`,
    unwatched.map((x) => x.perSecond),
  );
  line(
    `${int(scale.watchRows)} persistPut of distinct keys + flush, watched, rows`,
    watched.map((x) => x.perSecond),
  );

  const addRatio = ratio(adds, puts, (x) => x);
  const watchRatio = ratio(watched, unwatched, (x) => x.perSecond);
  console.log('\n| comparison | ratio: median (runs) | target | |');
  console.log('|---|---|---|---|');
  console.log(`| CAS: persistency vs deno-kv | ${show(ratio(cas, denoCasRuns, rate))} | – | |`);
  console.log(`| add: persistency vs deno-kv sum | ${show(ratio(add, sum, rate))} | – | |`);
  console.log(`| persistency: awaited add vs CAS | ${show(ratio(add, cas, rate))} | – | |`);
  const verdict = (rs: readonly number[], wanted: number): string =>
    median(rs) >= wanted ? 'PASS' : 'MISS';
  console.log(
    `| persistAdd vs persistPut, rows/s | ${show(addRatio)} | >= ${ADD_TARGET}x | ${verdict(addRatio, ADD_TARGET)} |`,
  );
  console.log(
    `| writer with a watcher vs without, rows/s | ${show(watchRatio)} | >= ${WATCH_TARGET}x | ${verdict(watchRatio, WATCH_TARGET)} |`,
  );
  console.log(
    `(every CAS and add run ended at exactly ${int(total)}; every watcher saw all ${int(scale.watchRows)} rows)`,
  );
}

const invokedDirectly =
  process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (invokedDirectly) await runAtomicBench({ quick: process.argv.includes('--quick') });
