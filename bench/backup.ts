/*
 * What `job.backup(dest)` costs the job's own writers, against the copies one can make from
 * outside the job, in one process run:
 *
 *   build        a job of 1 GiB (--quick: 64 MiB) in a fresh file root (workerThreads
 *                'per-job'): rows of 980-byte payloads (a 1,000-byte payload no longer fits
 *                in its b-tree page and takes an overflow page: 4.6 KiB a row), written with
 *                persistPut 5,000 per turn and one flush; the job is then closed (its WAL
 *                checkpointed) and opened again.
 *   probe        a writer doing one small persistPut + `await job.flush()` (one durable
 *                commit, synchronous=FULL) back to back, each round's latency recorded:
 *                  - for a few seconds with nothing else running (the baseline);
 *                  - from the `job.backup(dest)` call until it resolves;
 *                  - while a peer process copies the same file from its own better-sqlite3
 *                    connection: `VACUUM INTO`, and `db.backup()` (100 pages per step,
 *                    one read transaction across the steps, as the CLI's backup does); each
 *                    copy made durable and put in rollback-journal mode like ours;
 *                  - while a peer process writes and fsyncs a plain file of the job's size
 *                    (no SQLite: the disk's share of a stall, for reading the rows above).
 *                And `job.backup(dest)` once more with no writer, only a read probe (one
 *                get of a cached row every millisecond): its wait is the job's worker held
 *                by the backup (a step, or the copy's commit and fsync), with no disk of its
 *                own; beside it the same read probe with no copy.
 *   verify       every copy: `PRAGMA integrity_check` = ok, and its rows: ours exactly the
 *                bulk rows plus the probe writes issued before the call (none after), a
 *                peer's between those flushed before it began and those issued by then.
 *
 *   npm run bench -- backup [--quick]
 *
 * Each repetition (3; --quick: 2) runs the baselines, then the five copies in an order that
 * rotates from one repetition to the next, on the same job file. All runs are printed, with
 * a timeline of each copy (when the copy file reached its full size, when the page cache's
 * dirty data peaked and drained, the slowest probe rounds) so that a stall can be put down
 * to the copy's steps, its final fsync or the disk; the table gives medians, and a ratio is
 * the median of the per-repetition ratios. Like the reads benchmark it runs as an esbuild
 * bundle under plain node (bench/peers-node.ts says why); the peers are this file run again
 * with `--peer-child`.
 */
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { loadavg } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { type Job, key, Persistency, prefixRange } from '../src/index.js';
import { gitCommit, median, turn, unwrap } from './common.js';
import { reexecUnderNode, repoRoot, shouldReexec } from './peers-node.js';

interface Scale {
  readonly rows: number;
  /** How long the baseline probe runs, ms. */
  readonly baselineMs: number;
  readonly reps: number;
}

/** 980-byte payloads pack 4 rows to a 4 KiB page: 1,048,576 rows make a 1.0 GiB file. */
const FULL: Scale = { rows: 1_048_576, baselineMs: 5000, reps: 3 };
const QUICK: Scale = { rows: 65_536, baselineMs: 2000, reps: 2 };
const PAYLOAD_BYTES = 980;
/** persistPut calls per turn while building. */
const CHUNK = 5000;
const JOB = 'bench';
const CAT = 'bulk';
const PROBE_CAT = 'probe';
const PROBE_PAYLOAD = new Uint8Array(16).fill(0x5a);
/** The probe runs this long before a measured window opens (a released job is taken up again). */
const WARM_MS = 300;
/** The read probe's pause between gets, ms. */
const READ_EVERY_MS = 1;
/** Page-cache and copy-file sampling period during a copy, ms. */
const SAMPLE_MS = 20;
const MB = 1e6;
const MiB = 1024 * 1024;

/** Nearest-rank percentile of `sorted` (ascending), p in [0, 100]. */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number;
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`backup benchmark: ${what}`);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const ms = (x: number): string => (x >= 100 ? int(x) : x.toFixed(x >= 10 ? 1 : 2));
const secs = (x: number): string => (x / 1000).toFixed(2);

// ---------------------------------------------------------------------------------------
// The probe writer

interface Round {
  /** performance.now() at the round's put, and its latency to the flush resolved, ms. */
  readonly start: number;
  readonly ms: number;
}

interface ProbeStats {
  readonly rounds: number;
  readonly perSecond: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** One small put + a durable flush, back to back, until stopped. */
class Probe {
  /** Probe puts issued over the job's life (they are keys 0..issued-1 of PROBE_CAT). */
  issued = 0;
  /** Probe puts whose flush has resolved. */
  flushed = 0;
  readonly #job: Job;
  #rounds: Round[] = [];
  #stop = false;
  #loop: Promise<void> | undefined;

  constructor(job: Job, issued: number) {
    this.#job = job;
    this.issued = issued;
    this.flushed = issued;
  }

  /**
   * 'write': a put and a durable flush per round, back to back; 'read': one get of a bulk
   * row (from the page cache: its latency is the wait for the job's worker, not for the
   * disk) every READ_EVERY_MS, so that it samples the worker without keeping it busy.
   */
  start(mode: 'write' | 'read' = 'write'): void {
    this.#stop = false;
    this.#rounds = [];
    const readKey = key('b', 0);
    this.#loop = (async () => {
      while (!this.#stop) {
        const t0 = performance.now();
        if (mode === 'read') {
          const got = unwrap(await this.#job.get(CAT, readKey), 'probe get');
          check(got?.length === PAYLOAD_BYTES, 'the read probe missed');
          this.#rounds.push({ start: t0, ms: performance.now() - t0 });
          await sleep(READ_EVERY_MS);
          continue;
        } else {
          this.#job.persistPut(PROBE_CAT, key('p', this.issued), PROBE_PAYLOAD);
          this.issued++;
          unwrap(await this.#job.flush(), 'probe flush');
          this.flushed = this.issued;
        }
        this.#rounds.push({ start: t0, ms: performance.now() - t0 });
      }
    })();
  }

  /** Stop after the round under way; returns every round since `start`. */
  async stop(): Promise<Round[]> {
    this.#stop = true;
    await this.#loop;
    return this.#rounds;
  }
}

/** The rounds overlapping [from, to] (performance.now() times). */
function statsOf(rounds: readonly Round[], from: number, to: number): ProbeStats & { in: Round[] } {
  const within = rounds.filter((r) => r.start + r.ms > from && r.start < to);
  const sorted = within.map((r) => r.ms).sort((a, b) => a - b);
  return {
    in: within,
    rounds: within.length,
    perSecond: within.length / ((to - from) / 1000),
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.at(-1) ?? Number.NaN,
  };
}

const showProbe = (s: ProbeStats, what = 'probe', noun = 'rounds'): string =>
  `${what} ${int(s.rounds).padStart(5)} ${noun} (${int(s.perSecond)}/s), p50 ${ms(s.p50)} ms, p99 ${ms(s.p99)} ms, max ${ms(s.max)} ms`;

// ---------------------------------------------------------------------------------------
// Sampling the copy file and the page cache during a copy

interface Sample {
  readonly t: number;
  /** Size of the copy being written (ours: dest.partial-*, a peer's: dest). */
  readonly copyBytes: number;
  readonly destExists: boolean;
  readonly dirtyMB: number;
  readonly writebackMB: number;
}

function meminfo(): { dirtyMB: number; writebackMB: number } {
  try {
    const text = readFileSync('/proc/meminfo', 'utf8');
    const kb = (name: string): number =>
      Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
    return { dirtyMB: (kb('Dirty') * 1024) / MB, writebackMB: (kb('Writeback') * 1024) / MB };
  } catch {
    return { dirtyMB: Number.NaN, writebackMB: Number.NaN };
  }
}

function copyFileSize(dest: string): number {
  const dir = dirname(dest);
  const name = basename(dest);
  let size = 0;
  for (const f of readdirSync(dir)) {
    if (f !== name && !f.startsWith(`${name}.partial-`)) continue;
    if (f.endsWith('-wal') || f.endsWith('-shm') || f.endsWith('-journal')) continue;
    try {
      size = Math.max(size, statSync(join(dir, f)).size);
    } catch {
      // renamed or removed between the listing and the stat
    }
  }
  return size;
}

function sampler(dest: string): { samples: Sample[]; stop: () => void } {
  const samples: Sample[] = [];
  const take = (): void => {
    samples.push({
      t: performance.now(),
      copyBytes: copyFileSize(dest),
      destExists: existsSync(dest),
      ...meminfo(),
    });
  };
  take();
  const timer = setInterval(take, SAMPLE_MS);
  return {
    samples,
    stop: () => {
      clearInterval(timer);
      take();
    },
  };
}

/** A copy's timeline, times in seconds from its start. */
function timeline(
  samples: readonly Sample[],
  rounds: readonly Round[],
  from: number,
  finalBytes: number,
  ours: boolean,
  what = 'round',
): string {
  const at = (t: number): string => secs(t - from);
  const full = samples.find((s) => s.copyBytes >= finalBytes);
  const linked = ours ? samples.find((s) => s.destExists) : undefined;
  let peak = samples[0];
  for (const s of samples) if (peak === undefined || s.dirtyMB > peak.dirtyMB) peak = s;
  const drained =
    peak === undefined
      ? undefined
      : samples.find((s) => s.t > peak.t && s.dirtyMB + s.writebackMB < 0.1 * peak.dirtyMB);
  const sampleAt = (t: number): Sample | undefined => {
    let best: Sample | undefined;
    for (const s of samples) if (s.t <= t) best = s;
    return best;
  };
  const slowest = [...rounds]
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 3)
    .map((r) => {
      const s = sampleAt(r.start);
      const pct = s === undefined ? '?' : ((100 * s.copyBytes) / finalBytes).toFixed(0);
      const dirty = s === undefined ? '?' : int(s.dirtyMB);
      return `${at(r.start)}-${at(r.start + r.ms)} s (${ms(r.ms)} ms; copy file ${pct}%, dirty ${dirty} MB at its start)`;
    });
  const parts = [
    `copy file at full size ${full === undefined ? 'never seen' : `at ${at(full.t)} s`}`,
    ...(ours
      ? [`dest linked ${linked === undefined ? 'never seen' : `at ${at(linked.t)} s`}`]
      : []),
    `dirty page cache peaked at ${peak === undefined ? '?' : `${int(peak.dirtyMB)} MB at ${at(peak.t)} s`}`,
    `drained ${drained === undefined ? 'not seen' : `at ${at(drained.t)} s`}`,
  ];
  return `      timeline: ${parts.join(', ')}\n      slowest ${what}s: ${slowest.join('; ')}`;
}

// ---------------------------------------------------------------------------------------
// The copies

type CopyKind = 'ours' | 'ours-quiet' | 'vacuum' | 'peer-backup' | 'plain-write';

const COPY_LABEL: Record<CopyKind, string> = {
  ours: 'job.backup(dest)',
  'ours-quiet': 'job.backup, no writer',
  vacuum: 'peer VACUUM INTO',
  'peer-backup': 'peer db.backup()',
  'plain-write': 'peer plain write+fsync',
};

interface CopyRun {
  readonly kind: CopyKind;
  readonly durationMs: number;
  readonly bytes: number;
  readonly probe: ProbeStats;
}

interface Context {
  readonly job: Job;
  readonly jobFile: string;
  readonly dir: string;
  readonly probe: Probe;
  readonly bulkRows: number;
  readonly jobBytes: number;
}

/** Open a finished copy: integrity ok, and its rows in [min, max] (probe rows counted). */
function verifyCopy(file: string, min: number, max: number, what: string): void {
  const db = new Database(file, { fileMustExist: true });
  try {
    const ic = db.pragma('integrity_check') as { integrity_check: string }[];
    check(
      ic.length === 1 && ic[0]?.integrity_check === 'ok',
      `${what}: integrity_check says ${ic
        .slice(0, 5)
        .map((r) => r.integrity_check)
        .join('; ')}`,
    );
    const rows = db.prepare('SELECT count(*) FROM kv').pluck().get() as number;
    check(
      rows >= min && rows <= max,
      `${what}: ${int(rows)} rows, expected ${min === max ? int(min) : `${int(min)}..${int(max)}`}`,
    );
  } finally {
    db.close();
  }
}

function removeCopy(dest: string): void {
  for (const f of readdirSync(dirname(dest)))
    if (f.startsWith(basename(dest))) rmSync(join(dirname(dest), f), { force: true });
}

/**
 * `job.backup(dest)` with the write probe running, or (quiet) with only the read probe: then
 * nothing else touches the disk, and a get's wait is the worker held by the backup.
 */
async function ourBackup(
  ctx: Context,
  dest: string,
  quiet: boolean,
): Promise<CopyRun & { detail: string }> {
  const { job, probe } = ctx;
  probe.start(quiet ? 'read' : 'write');
  await sleep(WARM_MS);
  const sampling = sampler(dest);
  const issuedAtCall = probe.issued;
  const t0 = performance.now();
  unwrap(await job.backup(dest), 'backup');
  const t1 = performance.now();
  sampling.stop();
  const rounds = await probe.stop();
  const bytes = statSync(dest).size;
  const stats = statsOf(rounds, t0, t1);
  // Exactly the writes issued before the call: the bulk rows and that many probe rows.
  verifyCopy(dest, ctx.bulkRows + issuedAtCall, ctx.bulkRows + issuedAtCall, 'job.backup copy');
  const db = new Database(dest, { readonly: true, fileMustExist: true });
  try {
    const probeRows = db
      .prepare('SELECT count(*) FROM kv WHERE category = ?')
      .pluck()
      .get(Buffer.from(PROBE_CAT)) as number;
    check(
      probeRows === issuedAtCall,
      `job.backup copy holds ${probeRows} probe rows, ${issuedAtCall} were issued before the call`,
    );
  } finally {
    db.close();
  }
  removeCopy(dest);
  return {
    kind: quiet ? 'ours-quiet' : 'ours',
    durationMs: t1 - t0,
    bytes,
    probe: stats,
    detail: timeline(sampling.samples, stats.in, t0, bytes, true, quiet ? 'get' : 'round'),
  };
}

/** Run this file as a peer process copying `ctx.jobFile` to `dest` the `kind` way. */
async function peerCopy(
  ctx: Context,
  kind: Exclude<CopyKind, 'ours' | 'ours-quiet'>,
  dest: string,
): Promise<CopyRun & { detail: string }> {
  const { probe } = ctx;
  probe.start();
  await sleep(WARM_MS);
  const flushedBefore = probe.flushed;
  const args = [
    ...process.execArgv,
    fileURLToPath(import.meta.url),
    '--peer-child',
    kind,
    ctx.jobFile,
    dest,
    String(ctx.jobBytes),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let started: number | undefined;
  let issuedAtStart = 0;
  let done: number | undefined;
  let issuedAtDone = 0;
  let sampling: ReturnType<typeof sampler> | undefined;
  const exited = new Promise<number | string>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c, signal) => resolve(c ?? signal ?? 'unknown'));
  });
  for await (const line of createInterface({ input: child.stdout })) {
    if (line === 'started') {
      started = performance.now();
      issuedAtStart = probe.issued;
      sampling = sampler(dest);
    } else if (line === 'done') {
      done = performance.now();
      issuedAtDone = probe.issued;
    }
  }
  sampling?.stop();
  const code = await exited;
  const rounds = await probe.stop();
  check(code === 0 && started !== undefined && done !== undefined, `${kind} peer: exit ${code}`);
  const t0 = started as number;
  const t1 = done as number;
  const bytes = statSync(dest).size;
  const stats = statsOf(rounds, t0, t1);
  // db.backup()'s read transaction is open before `started`; VACUUM INTO opens its own
  // once the statement runs, some time before `done`.
  if (kind !== 'plain-write')
    verifyCopy(
      dest,
      ctx.bulkRows + flushedBefore,
      ctx.bulkRows + (kind === 'vacuum' ? issuedAtDone : issuedAtStart),
      `${COPY_LABEL[kind]} copy`,
    );
  removeCopy(dest);
  return {
    kind,
    durationMs: t1 - t0,
    bytes,
    probe: stats,
    detail: timeline(sampling?.samples ?? [], stats.in, t0, bytes, false),
  };
}

function fsyncPath(path: string, flags: string): void {
  const fd = openSync(path, flags);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The peer process: copy `src` to `dest`; prints `started` when the copy begins, `done` when durable. */
async function peerChildMain(
  kind: string,
  src: string,
  dest: string,
  bytes: number,
): Promise<void> {
  if (kind === 'plain-write') {
    const block = Buffer.alloc(MiB);
    for (let i = 0; i < MiB; i += 8) block.writeDoubleLE(Math.random(), i);
    console.log('started');
    const fd = openSync(dest, 'wx');
    try {
      for (let left = bytes; left > 0; left -= MiB) writeSync(fd, block, 0, Math.min(MiB, left));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } else {
    const db = new Database(src, { readonly: true, fileMustExist: true });
    if (kind === 'vacuum') {
      console.log('started');
      db.prepare('VACUUM INTO ?').run(dest);
      db.close();
    } else if (kind === 'peer-backup') {
      // One read transaction across the steps: the job's writes meanwhile neither restart
      // the copy nor show in it (as the CLI's backup, src/worker/job-file-reader.ts).
      db.exec('BEGIN');
      db.prepare('SELECT 1 FROM sqlite_schema LIMIT 1').get();
      console.log('started');
      await db.backup(dest);
      db.exec('COMMIT');
      db.close();
    } else throw new Error(`unknown peer copy ${kind}`);
    // As ours: rollback-journal mode, durable.
    const copy = new Database(dest, { fileMustExist: true });
    copy.pragma('journal_mode = DELETE');
    copy.close();
    fsyncPath(dest, 'r+');
  }
  fsyncPath(dirname(dest), 'r');
  console.log('done');
}

// ---------------------------------------------------------------------------------------

async function build(job: Job, rows: number): Promise<number> {
  const payloads = Array.from({ length: 256 }, (_, b) =>
    new Uint8Array(PAYLOAD_BYTES).map((_, i) => (i * 31 + b) & 0xff),
  );
  const t0 = performance.now();
  for (let from = 0; from < rows; from += CHUNK) {
    const to = Math.min(from + CHUNK, rows);
    for (let i = from; i < to; i++)
      job.persistPut(CAT, key('b', i), payloads[i & 0xff] as Uint8Array);
    await turn();
  }
  unwrap(await job.flush(), 'flush');
  return performance.now() - t0;
}

export async function runBackupBench(options: { quick: boolean }): Promise<void> {
  if (shouldReexec()) {
    await reexecUnderNode(options.quick, 'backup');
    return;
  }
  const scale = options.quick ? QUICK : FULL;
  const tmpRoot = join(repoRoot(), '.bench-tmp');
  mkdirSync(tmpRoot, { recursive: true });
  const dir = mkdtempSync(join(tmpRoot, 'backup-'));
  console.log(
    `\n# backup benchmark${options.quick ? ' [--quick: small sizes, not a measurement]' : ''}`,
  );
  const load = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  console.log(
    `${new Date().toISOString()}, Node ${process.version} (${process.execArgv.join(' ') || 'no flags'}), commit ${gitCommit()}, load average ${load}`,
  );
  const p = unwrap(Persistency.open(join(dir, 'root'), { workerThreads: 'per-job' }), 'open');
  let failures = 0;
  p.events.on('writeFailed', (e) => {
    if (failures++ === 0) console.error(`writeFailed: ${e.error.message}`);
  });
  try {
    let job = unwrap(await p.openJob(JOB), 'openJob');
    const buildMs = await build(job, scale.rows);
    // Closed and opened again: the WAL checkpointed into the file, which is then measured.
    unwrap(await p.closeJob(JOB), 'closeJob');
    job = unwrap(await p.openJob(JOB), 'openJob');
    const jobFile = join(p.rootDir, `${JOB}.db`);
    check(existsSync(jobFile), `no job file at ${jobFile}`);
    const jobBytes = statSync(jobFile).size;
    console.log(
      `built ${int(scale.rows)} rows of ${PAYLOAD_BYTES}-byte payloads in ${secs(buildMs)} s (persistPut ${int(CHUNK)} per turn, one flush): job file ${int(jobBytes / MB)} MB (${(jobBytes / MiB / 1024).toFixed(2)} GiB, ${int(jobBytes / scale.rows)} bytes a row)`,
    );
    console.log(
      `${scale.reps} repetitions on this file, each: the probe alone ${secs(scale.baselineMs)} s, and the read probe alone ${secs(scale.baselineMs / 2)} s, then the five copies in a rotating order; a copy's probe window is from its start to its end (the probe runs ${WARM_MS} ms before it)\n`,
    );
    const ctx: Context = {
      job,
      jobFile,
      dir,
      probe: new Probe(job, 0),
      bulkRows: scale.rows,
      jobBytes,
    };

    const baselines: ProbeStats[] = [];
    const runs: Record<CopyKind, CopyRun[]> = {
      ours: [],
      'ours-quiet': [],
      vacuum: [],
      'peer-backup': [],
      'plain-write': [],
    };
    const kinds: CopyKind[] = ['ours', 'vacuum', 'peer-backup', 'plain-write', 'ours-quiet'];
    const readBaselines: ProbeStats[] = [];
    for (let rep = 0; rep < scale.reps; rep++) {
      ctx.probe.start();
      await sleep(WARM_MS);
      const b0 = performance.now();
      await sleep(scale.baselineMs);
      const b1 = performance.now();
      const base = statsOf(await ctx.probe.stop(), b0, b1);
      baselines.push(base);
      console.log(
        `  run ${rep + 1}: ${'no copy (baseline)'.padEnd(24)} ${secs(b1 - b0)} s; ${showProbe(base)}`,
      );
      ctx.probe.start('read');
      await sleep(WARM_MS);
      const r0 = performance.now();
      await sleep(scale.baselineMs / 2);
      const r1 = performance.now();
      const readBase = statsOf(await ctx.probe.stop(), r0, r1);
      readBaselines.push(readBase);
      console.log(
        `  run ${rep + 1}: ${'no copy (baseline)'.padEnd(24)} ${secs(r1 - r0)} s; ${showProbe(readBase, 'read probe', 'gets')}`,
      );
      const order = kinds.map((_, i) => kinds[(i + rep) % kinds.length] as CopyKind);
      for (const kind of order) {
        await sleep(500); // the previous copy's removal settles
        const dest = join(dir, 'copies', `${kind}-${rep + 1}.db`);
        mkdirSync(dirname(dest), { recursive: true });
        const run =
          kind === 'ours' || kind === 'ours-quiet'
            ? await ourBackup(ctx, dest, kind === 'ours-quiet')
            : await peerCopy(ctx, kind, dest);
        runs[kind].push(run);
        console.log(
          `  run ${rep + 1}: ${COPY_LABEL[kind].padEnd(24)} ${secs(run.durationMs)} s (${int(run.bytes / MB / (run.durationMs / 1000))} MB/s); ${kind === 'ours-quiet' ? showProbe(run.probe, 'read probe', 'gets') : showProbe(run.probe)}`,
        );
        console.log(run.detail);
      }
    }
    check(failures === 0, `${failures} writes failed`);
    const issued = ctx.probe.issued;
    const total = unwrap(await job.count(PROBE_CAT, prefixRange(key('p'))), 'count');
    check(total === issued, `the job holds ${total} probe rows of ${issued} issued`);

    // The table: medians over the repetitions; a ratio is the median of per-repetition ratios.
    const med = (xs: readonly number[]): number => median(xs);
    const ratio = (as: readonly number[], bs: readonly number[]): string => {
      const rs = as.map((a, i) => a / (bs[i] as number));
      return `${med(rs).toFixed(2)}x${rs.length > 1 ? ` (${rs.map((r) => r.toFixed(2)).join(', ')})` : ''}`;
    };
    const pick = (kind: CopyKind, f: (r: CopyRun) => number): number[] => runs[kind].map(f);
    const size = `${(jobBytes / MiB / 1024).toFixed(2)} GiB`;
    console.log(
      `\n${size} job (${int(jobBytes / MB)} MB, ${int(scale.rows)} rows); median of ${scale.reps} repetitions; probe: one 16-byte persistPut + await flush() per round\n`,
    );
    console.log('| workload | value | reference | ratio |');
    console.log('|---|---|---|---|');
    const row = (what: string, value: string, reference: string, r: string): void => {
      console.log(`| ${what} | ${value} | ${reference} | ${r} |`);
    };
    const dur = (k: CopyKind): number[] => pick(k, (r) => r.durationMs);
    const rate = (k: CopyKind): string =>
      `${secs(med(dur(k)))} s (${int(med(pick(k, (r) => r.bytes / MB / (r.durationMs / 1000))))} MB/s)`;
    const probeRows = (
      kind: CopyKind,
      bases: readonly ProbeStats[],
      what: string,
      noun: string,
      stats: readonly (readonly [string, (s: ProbeStats) => number])[],
    ): void => {
      const during = `during ${COPY_LABEL[kind]}`;
      const baseOf = (f: (s: ProbeStats) => number): number[] => bases.map(f);
      row(
        `${what} ${noun}/s ${during}`,
        `${int(med(pick(kind, (r) => r.probe.perSecond)))}/s (${int(med(pick(kind, (r) => r.probe.rounds)))} ${noun})`,
        `${int(med(baseOf((s) => s.perSecond)))}/s without`,
        ratio(
          pick(kind, (r) => r.probe.perSecond),
          baseOf((s) => s.perSecond),
        ),
      );
      for (const [name, f] of stats)
        row(
          `${what} ${name} ${during}`,
          `${ms(med(pick(kind, (r) => f(r.probe))))} ms`,
          `${ms(med(baseOf(f)))} ms without`,
          ratio(
            pick(kind, (r) => f(r.probe)),
            baseOf(f),
          ),
        );
    };
    const P50_P99_MAX = [
      ['p50', (s: ProbeStats) => s.p50],
      ['p99', (s: ProbeStats) => s.p99],
      ['max', (s: ProbeStats) => s.max],
    ] as const;
    const summary = (bases: readonly ProbeStats[], noun: string): string => {
      const m = (f: (s: ProbeStats) => number): number => med(bases.map(f));
      return `${int(m((s) => s.perSecond))} ${noun}/s, ${ms(m((s) => s.p50))} / ${ms(m((s) => s.p99))} / ${ms(m((s) => s.max))} ms`;
    };
    row('probe without a copy: rounds/s, p50 / p99 / max', summary(baselines, 'rounds'), '–', '–');
    row(
      'read probe without a copy: gets/s, p50 / p99 / max',
      summary(readBaselines, 'gets'),
      '–',
      '–',
    );
    row(`job.backup of the ${size} job, probe writing: duration`, rate('ours'), '–', '–');
    row(
      'job.backup, no writer (read probe only): duration',
      rate('ours-quiet'),
      `${secs(med(dur('ours')))} s with the probe writing`,
      ratio(dur('ours-quiet'), dur('ours')),
    );
    for (const peer of ['vacuum', 'peer-backup'] as const)
      row(
        `job.backup duration (probe writing) vs ${COPY_LABEL[peer]} (probe writing)`,
        `${secs(med(dur('ours')))} s`,
        `${rate(peer)}`,
        ratio(dur('ours'), dur(peer)),
      );
    row(
      `${COPY_LABEL['plain-write']} of ${int(jobBytes / MB)} MB (the disk alone)`,
      rate('plain-write'),
      '–',
      '–',
    );
    for (const kind of ['ours', 'vacuum', 'peer-backup', 'plain-write'] as const)
      probeRows(kind, baselines, 'probe', 'rounds', P50_P99_MAX);
    probeRows('ours-quiet', readBaselines, 'read probe', 'gets', P50_P99_MAX);
    console.log(
      `(every copy passed integrity_check; every job.backup copy held exactly the ${int(scale.rows)} bulk rows and the probe rows issued before its call, none after; ${int(issued)} probe rounds in all)`,
    );
  } finally {
    await p.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const invokedDirectly =
  process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
const peerChild = process.argv.indexOf('--peer-child');
if (invokedDirectly && peerChild >= 0) {
  const [kind, src, dest, bytes] = process.argv.slice(peerChild + 1);
  await peerChildMain(kind as string, src as string, dest as string, Number(bytes));
} else if (invokedDirectly) await runBackupBench({ quick: process.argv.includes('--quick') });
