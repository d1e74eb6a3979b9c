/*
 * The crash loop (CONTRACT.md §4 "Durability": after a crash the file holds a prefix of the
 * batches in issue order, each whole or absent, and passes integrity_check; a write is
 * durable once a later flush() resolves Ok or once closeJob resolves).
 *
 * One round: start test/fixtures/crash-writer.ts in a child process writing two jobs, 'a'
 * and 'b' (each closed and reopened every CYCLE_EVERY batches), let it acknowledge
 * batches over IPC, SIGKILL it in the round's phase, then check both jobs.
 *
 * Phases, round-robin by round number:
 *  - writes: a random 50–400 ms after both jobs have an ack in this round.
 *  - flush:  the same delay, then the moment the child announces its next flush.
 *  - close:  the same delay, then the child's next `closing` announcement plus a random
 *            0..(last close's duration) ms, so the kill lands inside closeJob.
 *  - open:   the same, aimed at the next `opening` (a reopen after a close) plus a random
 *            0..(1.2 × last open's duration) ms; or, half the time, aimed that way at the
 *            process's first `opening` of a job: on a fresh root the open that creates the
 *            file and runs the migration, on a root left by a killed writer the open that
 *            recovers its WAL.
 * The random delays are the only timers that decide anything; every wait is on a message.
 *
 * Rounds come in chains of `chainLength` on one root: each round's writer continues the
 * batch sequences the previous (killed) writer left. The checks run on a byte copy of the
 * killed writer's files, so the next writer meets the crashed files as they are. Per job:
 * the copy's raw crash image opens through `Persistency.instance(copy).openJob`; every
 * acknowledged batch, and every batch verified in an earlier round of the chain, is
 * present; every present batch has all its rows and payloads; the batches are 0..m with no
 * gap; `('meta', LAST_KEY)` is m; the job accepts a write + flush and reads it back; after
 * `closeJob`, better-sqlite3 opened directly on the file says `integrity_check` = ok and
 * `user_version` = 1.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { decodeKey, decodePayload, type Key, key, Persistency, payload } from '../../src/index.js';
import {
  batchSize,
  DATA,
  fillerLength,
  LAST_KEY,
  META,
  SINGLE,
  SINGLES,
  singlePayload,
  type WriterMessage,
} from '../fixtures/batch-shape.js';
import { mulberry32 } from './random.js';

export const PHASES = ['writes', 'flush', 'close', 'open'] as const;
export type Phase = (typeof PHASES)[number];

/** The two jobs and how many batches each writes between a close and a reopen. */
export const JOBS = ['a', 'b'] as const;
const CYCLE_EVERY: Record<(typeof JOBS)[number], number> = { a: 50, b: 200 };

const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WRITER = fileURLToPath(new URL('../fixtures/crash-writer.ts', import.meta.url));
/** A guard against a hung child or check, not a synchronisation device. */
const HANG_MS = 20_000;

export interface JobReport {
  readonly id: string;
  /** Last batch verified (and so durable) in an earlier round of the chain; -1: none. */
  readonly floor: number;
  /** Highest batch acknowledged to the parent in this round; -1: none. */
  readonly acked: number;
  /** Batches present after the crash are 0..last; -1: none. */
  readonly last: number;
  readonly rows: number;
}

export interface RoundResult {
  readonly round: number;
  readonly phase: Phase;
  /** What the kill was aimed at, e.g. `close a`, `flush b ..123`, `initial open b`. */
  readonly aim: string;
  /** The aimed operation had not reported completion when the child died. */
  readonly inside: boolean | undefined;
  readonly delayMs: number;
  readonly chainPos: number;
  readonly jobs: JobReport[];
  /** Batches this round asserted present because they were acknowledged or verified. */
  readonly ackedChecked: number;
  readonly failures: string[];
  readonly ms: number;
}

export interface CrashLoopOptions {
  /** Seed of the round's random delays (default: random). */
  readonly seed?: number;
  /** Rounds per root (default 5). */
  readonly chainLength?: number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Reject with `hang: what` if `p` takes longer than HANG_MS. */
function guard<T>(p: PromiseLike<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    Promise.resolve(p).finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`hang: ${what} took over ${HANG_MS} ms`)), HANG_MS);
    }),
  ]);
}

// -----------------------------------------------------------------------------------------
// The writer process

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** crash-writer.ts in its own `node --import tsx` process, talking over IPC. */
class Writer {
  readonly proc: ChildProcess;
  /** Every message received, in order. */
  readonly messages: WriterMessage[] = [];
  stderr = '';
  readonly exited: Promise<Exit>;
  #exit: Exit | undefined;
  #watchers = new Set<() => void>();

  constructor(root: string) {
    const specs = JOBS.map((id) => `${id}:${CYCLE_EVERY[id]}`);
    this.proc = spawn(process.execPath, ['--import', 'tsx', WRITER, root, ...specs], {
      cwd: PACKAGE_ROOT,
      stdio: ['pipe', 'pipe', 'pipe', 'ipc'],
    });
    this.proc.stdout?.resume();
    this.proc.stderr?.setEncoding('utf8');
    this.proc.stderr?.on('data', (s: string) => {
      if (this.stderr.length < 20_000) this.stderr += s;
    });
    this.proc.on('message', (m: WriterMessage) => {
      this.messages.push(m);
      for (const w of [...this.#watchers]) w();
    });
    // 'close': exited, stdio and the IPC channel drained (every message sent is delivered).
    this.exited = new Promise((resolve) => {
      this.proc.on('close', (code, signal) => {
        this.#exit = { code, signal };
        for (const w of [...this.#watchers]) w();
        resolve({ code, signal });
      });
    });
  }

  get exit(): Exit | undefined {
    return this.#exit;
  }

  /**
   * Wait for the first message from index `from` on that matches (running `onMatch`
   * synchronously in the message event, so a kill there loses no time). Rejects if the
   * child exits first or after HANG_MS.
   */
  waitFor(
    from: number,
    match: (m: WriterMessage, index: number) => boolean,
    what: string,
    onMatch?: (m: WriterMessage) => void,
  ): Promise<{ m: WriterMessage; index: number }> {
    return new Promise((resolve, reject) => {
      let next = from;
      const check = () => {
        for (; next < this.messages.length; next++) {
          const m = this.messages[next] as WriterMessage;
          if (match(m, next)) {
            onMatch?.(m);
            done();
            resolve({ m, index: next });
            return;
          }
        }
        if (this.#exit !== undefined) {
          done();
          reject(new Error(`writer exited (${JSON.stringify(this.#exit)}) before ${what}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`hang: no ${what} from the writer in ${HANG_MS} ms`));
      }, HANG_MS);
      const done = () => {
        clearTimeout(timer);
        this.#watchers.delete(check);
      };
      this.#watchers.add(check);
      check();
    });
  }

  kill(): void {
    if (this.#exit === undefined) this.proc.kill('SIGKILL');
  }

  /** SIGKILL (if still running) and wait until it is gone. */
  async stop(): Promise<Exit> {
    this.kill();
    return this.exited;
  }
}

// -----------------------------------------------------------------------------------------
// Checks

interface Checked {
  last: number;
  rows: number;
}

/** Check job `id` under `root` (a copy of the crashed files); push what is wrong. */
async function checkJob(
  root: string,
  id: string,
  required: number,
  round: number,
  failures: string[],
): Promise<Checked> {
  const fail = (what: string) => failures.push(`job ${id}: ${what}`);
  const p = Persistency.instance(root)._unsafeUnwrap();
  const opened = await guard(p.openJob(id), `openJob(${id}) after the crash`);
  if (opened.isErr()) {
    fail(`openJob after the crash: ${opened.error.kind}: ${opened.error.message}`);
    return { last: -1, rows: 0 };
  }
  const job = opened.value;
  const scanned = await guard(job.scanPrefix(DATA, key('b')), `scan of ${id}`);
  const lastRow = await guard(job.get(META, LAST_KEY), `get last of ${id}`);
  if (scanned.isErr() || lastRow.isErr()) {
    fail(
      `read after the crash: ${scanned.isErr() ? scanned.error.message : ''} ${lastRow.isErr() ? lastRow.error.message : ''}`,
    );
    await p.closeJob(id);
    return { last: -1, rows: 0 };
  }
  const rows = scanned.value;

  // Group rows by batch; every row's payload must match its key.
  const byBatch = new Map<number, Set<number>>();
  let badRows = 0;
  for (const row of rows) {
    try {
      const [tag, nb, ib] = decodeKey(row.key, ['string', 'i64', 'i64']);
      const [pn, pi, filler] = decodePayload(row.payload, ['i64', 'i64', 'string']);
      const n = Number(nb);
      const i = Number(ib);
      if (tag !== 'b' || pn !== nb || pi !== ib || filler.length !== fillerLength(n, i)) {
        if (badRows++ < 3) fail(`row ${row.key.toString()} does not match its key`);
        continue;
      }
      let set = byBatch.get(n);
      if (set === undefined) {
        set = new Set();
        byBatch.set(n, set);
      }
      set.add(i);
    } catch (e) {
      if (badRows++ < 3) fail(`row ${row.key.toString()} does not decode: ${String(e)}`);
    }
  }
  const present = [...byBatch.keys()].sort((x, y) => x - y);
  const last = present.length - 1;
  const gaps = present.filter((n, index) => n !== index);
  if (gaps.length > 0)
    fail(`batches are not a prefix 0..m: ${present.length} present, first out of place ${gaps[0]}`);
  const torn = present.filter((n) => byBatch.get(n)?.size !== batchSize(n));
  if (torn.length > 0)
    fail(
      `torn batches ${torn.slice(0, 5).join(', ')}: ${torn
        .slice(0, 5)
        .map((n) => `${byBatch.get(n)?.size}/${batchSize(n)} rows`)
        .join(', ')}`,
    );
  if (last < required)
    fail(`acknowledged or verified up to batch ${required}, but only 0..${last} survived`);
  const meta = lastRow.value === undefined ? -1 : Number(decodePayload(lastRow.value, ['i64'])[0]);
  if (meta !== last) fail(`('meta', last) says ${meta}, the data says ${last}`);
  const singles = await guard(job.scanPrefix(SINGLE, key()), `scan of ${id}'s single puts`);
  if (singles.isErr()) fail(`read of the single puts: ${singles.error.message}`);
  else checkSingles(singles.value, last, required, fail);

  // It accepts a write + flush and reads it back.
  job.persistPut('probe', key(round), payload(round));
  const flushed = await guard(job.flush(), `flush of ${id} after the crash`);
  if (flushed.isErr())
    fail(`flush after the crash: ${flushed.error.kind}: ${flushed.error.message}`);
  const probe = await guard(job.get('probe', key(round)), `probe read of ${id}`);
  if (
    probe.isErr() ||
    probe.value === undefined ||
    !Buffer.from(probe.value).equals(payload(round))
  )
    fail('the probe write did not read back');
  const closed = await guard(p.closeJob(id), `closeJob(${id}) after the crash`);
  if (closed.isErr())
    fail(`closeJob after the crash: ${closed.error.kind}: ${closed.error.message}`);
  return { last, rows: rows.length };
}

/**
 * The single puts issued after each batch: with the batches, a prefix of the issue order.
 * Every batch before the last present one has all of its singles, the last one a prefix
 * of them (all of them if it was acknowledged), none after it; each payload matches.
 */
function checkSingles(
  rows: readonly { key: Key; payload: Uint8Array }[],
  last: number,
  required: number,
  fail: (what: string) => void,
): void {
  const count = new Map<number, number>();
  let bad = 0;
  for (const row of rows) {
    const [n, j] = decodeKey(row.key, ['number', 'number']);
    if (!Buffer.from(row.payload).equals(singlePayload(n, j)) || j >= SINGLES) {
      if (bad++ < 3) fail(`single put ${row.key.toString()} does not match its key`);
      continue;
    }
    count.set(n, (count.get(n) ?? 0) + 1);
  }
  let reported = 0;
  for (const [n, c] of count) {
    if (reported >= 3) break;
    if (n > last) {
      fail(`single puts of batch ${n} present, but batches end at ${last}`);
      reported++;
    } else if (n < last && c !== SINGLES) {
      fail(`batch ${n}: ${c}/${SINGLES} single puts, though batch ${last} survived`);
      reported++;
    }
  }
  for (let n = 0; n < last; n++) {
    if (!count.has(n)) {
      fail(`batch ${n}: no single puts, though batch ${last} survived`);
      break;
    }
  }
  if (last >= 0 && last <= required && (count.get(last) ?? 0) !== SINGLES)
    fail(`batch ${last} acknowledged with ${count.get(last) ?? 0}/${SINGLES} single puts`);
  // Within one batch the singles are a prefix: rows come in key order (n, j).
  let expectedJ = 0;
  let prevN = -1;
  for (const row of rows) {
    const [n, j] = decodeKey(row.key, ['number', 'number']);
    if (n !== prevN) {
      prevN = n;
      expectedJ = 0;
    }
    if (j !== expectedJ++) {
      fail(`batch ${n}: single puts not a prefix (found ${j}, expected ${expectedJ - 1})`);
      return;
    }
  }
}

/** `integrity_check` and `user_version` of a closed job file, opened directly. */
function checkFile(dbPath: string, id: string, failures: string[]): void {
  let db: Database.Database | undefined;
  try {
    db = new Database(dbPath, { readonly: true, fileMustExist: true });
    const integrity = db.pragma('integrity_check', { simple: true });
    if (integrity !== 'ok') failures.push(`job ${id}: integrity_check: ${String(integrity)}`);
    const version = db.pragma('user_version', { simple: true });
    if (version !== 1) failures.push(`job ${id}: user_version ${String(version)}`);
  } catch (e) {
    failures.push(`job ${id}: cannot open the file directly: ${(e as Error).message}`);
  } finally {
    db?.close();
  }
}

// -----------------------------------------------------------------------------------------
// The loop

export class CrashLoop {
  readonly seed: number;
  readonly chainLength: number;
  readonly #scratch: string;
  #root: string | undefined;
  #chainPos = 0;
  /** Per job: last batch verified in the chain so far. */
  #floor = new Map<string, number>();
  #lastOpenMs = 300;
  #lastCloseMs = 50;
  #writer: Writer | undefined;

  private constructor(scratch: string, options: CrashLoopOptions) {
    this.#scratch = scratch;
    this.seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
    this.chainLength = Math.max(1, options.chainLength ?? 5);
  }

  static async create(options: CrashLoopOptions = {}): Promise<CrashLoop> {
    return new CrashLoop(await mkdtemp(join(tmpdir(), 'persistency-crash-loop-')), options);
  }

  /** Kill any writer, forget the singleton, remove every file. Safe to call twice. */
  async dispose(): Promise<void> {
    await this.#writer?.stop();
    this.#writer = undefined;
    await Persistency.reset();
    await rm(this.#scratch, { recursive: true, force: true });
  }

  /** Run round `round` (1-based); never throws for a failed check, only reports it. */
  async round(round: number): Promise<RoundResult> {
    const started = performance.now();
    const phase = PHASES[(round - 1) % PHASES.length] as Phase;
    const random = mulberry32(this.seed ^ Math.imul(round, 0x9e3779b9));
    if (this.#root === undefined || this.#chainPos >= this.chainLength) {
      if (this.#root !== undefined) await rm(this.#root, { recursive: true, force: true });
      this.#root = await mkdtemp(join(this.#scratch, 'root-'));
      this.#chainPos = 0;
      this.#floor = new Map(JOBS.map((id) => [id, -1]));
    }
    const root = this.#root;
    const chainPos = this.#chainPos++;
    const failures: string[] = [];
    const delayMs = 50 + Math.floor(random() * 351);
    const initialOpen = phase === 'open' && random() < 0.5;
    const jitter = (typicalMs: number) => Math.floor(random() * typicalMs);
    let aim: string = phase;
    let target: { index: number; m: WriterMessage } | undefined;

    const writer = new Writer(root);
    this.#writer = writer;
    const acked = new Map<string, number>(JOBS.map((id) => [id, -1]));
    const kill = (afterMs: number) => {
      if (afterMs <= 0) writer.kill();
      else setTimeout(() => writer.kill(), afterMs);
    };
    try {
      if (initialOpen) {
        const job = JOBS[Math.floor(random() * JOBS.length)] as string;
        const afterMs = jitter(this.#lastOpenMs * 1.2);
        aim = `initial open ${job} +${afterMs}ms`;
        target = await writer.waitFor(
          0,
          (m) => m.t === 'opening' && m.job === job,
          `opening of ${job}`,
          () => kill(afterMs),
        );
      } else {
        // Armed once each job has an ack in this round.
        for (const id of JOBS)
          await writer.waitFor(0, (m) => m.t === 'ack' && m.job === id, `first ack of ${id}`);
        await sleep(delayMs); // the deliberate random delay
        const from = writer.messages.length;
        if (phase === 'writes') {
          aim = `writes +${delayMs}ms`;
          writer.kill();
        } else if (phase === 'flush') {
          target = await writer.waitFor(
            from,
            (m) => m.t === 'flushing',
            'flush',
            () => writer.kill(),
          );
          aim = `flush ${target.m.t === 'flushing' ? `${target.m.job} ..${target.m.upTo}` : ''} +${delayMs}ms`;
        } else {
          const t = phase === 'close' ? 'closing' : 'opening';
          const afterMs = jitter(phase === 'close' ? this.#lastCloseMs : this.#lastOpenMs * 1.2);
          target = await writer.waitFor(
            from,
            (m) => m.t === t,
            t,
            () => kill(afterMs),
          );
          aim = `${phase} ${'job' in target.m ? target.m.job : ''} +${delayMs}+${afterMs}ms`;
        }
      }
      // The kill is sent or scheduled (after its random delay): wait for it to land.
      await guard(writer.exited, 'exit of the killed writer');
    } catch (e) {
      failures.push(`before the kill: ${(e as Error).message}`);
    }
    const exit = await writer.stop();
    this.#writer = undefined;

    // What the child said, now that every message it got out has arrived.
    for (const m of writer.messages) {
      if (m.t === 'ack') acked.set(m.job, Math.max(acked.get(m.job) ?? -1, m.upTo));
      if (m.t === 'ack' && m.via === 'close' && m.ms !== undefined) this.#lastCloseMs = m.ms;
      if (m.t === 'opened') this.#lastOpenMs = m.ms;
      if (m.t === 'error') failures.push(`writer error: ${m.what}: ${m.message}`);
    }
    if (exit.signal !== 'SIGKILL')
      failures.push(
        `writer ended by itself (${JSON.stringify(exit)}): ${writer.stderr.slice(-2000)}`,
      );
    const inside = target === undefined ? undefined : !completed(writer.messages, target);
    if (phase === 'writes' || phase === 'flush') {
      for (const id of JOBS) {
        if ((acked.get(id) ?? -1) <= (this.#floor.get(id) ?? -1))
          failures.push(`job ${id}: nothing acknowledged before the kill`);
      }
    }

    // Check a byte copy of the crashed files; the next writer gets the originals.
    const check = join(this.#scratch, `check-${round}`);
    const jobs: JobReport[] = [];
    let ackedChecked = 0;
    try {
      await mkdir(check);
      for (const f of await readdir(root)) await copyFile(join(root, f), join(check, f));
      const required = new Map(
        JOBS.map((id) => [id, Math.max(this.#floor.get(id) ?? -1, acked.get(id) ?? -1)]),
      );
      const checked = await Promise.all(
        JOBS.map((id) => checkJob(check, id, required.get(id) ?? -1, round, failures)),
      );
      await Persistency.reset();
      for (const [index, id] of JOBS.entries()) {
        checkFile(join(check, `${id}.db`), id, failures);
        const c = checked[index] as Checked;
        const need = required.get(id) ?? -1;
        jobs.push({
          id,
          floor: this.#floor.get(id) ?? -1,
          acked: acked.get(id) ?? -1,
          last: c.last,
          rows: c.rows,
        });
        ackedChecked += need + 1;
        this.#floor.set(id, Math.max(need, c.last));
      }
    } catch (e) {
      failures.push(`check: ${(e as Error).stack ?? String(e)}`);
    } finally {
      await Persistency.reset();
      await rm(check, { recursive: true, force: true });
    }
    // A broken chain starts over on a fresh root.
    if (failures.length > 0) this.#chainPos = this.chainLength;
    return {
      round,
      phase,
      aim,
      inside,
      delayMs,
      chainPos,
      jobs,
      ackedChecked,
      failures,
      ms: Math.round(performance.now() - started),
    };
  }
}

/** Did the writer report that the aimed operation finished? */
function completed(
  messages: readonly WriterMessage[],
  target: { index: number; m: WriterMessage },
): boolean {
  const t = target.m;
  return messages.slice(target.index + 1).some((m) => {
    if (t.t === 'flushing')
      return m.t === 'ack' && m.via === 'flush' && m.job === t.job && m.upTo === t.upTo;
    if (t.t === 'closing') return m.t === 'ack' && m.via === 'close' && m.job === t.job;
    if (t.t === 'opening') return m.t === 'opened' && m.job === t.job;
    return false;
  });
}

/** One line for a round. */
export function formatRound(r: RoundResult, of?: number): string {
  const jobs = r.jobs
    .map(
      (j) =>
        `${j.id}: acked ..${j.acked} (floor ${j.floor}) present 0..${j.last} (${j.last + 1} batches, ${j.rows} rows)`,
    )
    .join('; ');
  const where = r.inside === undefined ? '' : r.inside ? ', inside' : ', just after';
  const status = r.failures.length === 0 ? 'ok' : `FAILED: ${r.failures.join(' | ')}`;
  return `round ${r.round}${of === undefined ? '' : `/${of}`} [${r.phase}: ${r.aim}${where}; chain ${r.chainPos}] ${jobs}; ${r.ms} ms ${status}`;
}

/** Totals over rounds, and the closing summary line. */
export function summarize(results: readonly RoundResult[]): string {
  const ok = results.filter((r) => r.failures.length === 0).length;
  const checked = results.reduce((n, r) => n + r.ackedChecked, 0);
  const phases = PHASES.map((p) => `${p}=${results.filter((r) => r.phase === p).length}`).join(
    ', ',
  );
  return `${results.length} rounds: ${ok} ok, ${results.length - ok} failed; acked batches checked: ${checked}; phases: ${phases}`;
}

/** How many aimed kills landed inside the aimed operation, per phase. */
export function aimStats(results: readonly RoundResult[]): string {
  return PHASES.filter((p) => p !== 'writes')
    .map((p) => {
      const aimed = results.filter((r) => r.phase === p && r.inside !== undefined);
      return `${p} ${aimed.filter((r) => r.inside).length}/${aimed.length}`;
    })
    .join(', ');
}
