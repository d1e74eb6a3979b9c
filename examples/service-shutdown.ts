/*
 * A long-running service: a request naming a tenant opens that tenant's job on demand;
 * every open job has an idle timer that closes it after IDLE_MS without a request; and
 * SIGINT or SIGTERM closes everything without losing a write. The signal handler stops
 * taking requests, awaits p.close() (every queued write committed, every worker exited),
 * and exits.
 *
 * As a demo (the default) it simulates traffic (a hot tenant written all the time, two
 * cold ones that go idle and are closed, one of them reopened by a later request), then
 * sends itself SIGTERM while requests keep coming (no write was ever flushed); after the
 * close, the handler reopens every job and checks that each write issued is there.
 * With --serve it keeps serving until it gets SIGINT or SIGTERM (at most 60 s).
 *
 *   npm run example:service                      # root ./data/service
 *   npm run example:service -- /tmp/x            # another root
 *   npm run example:service -- --serve [root]    # serve until Ctrl-C
 */
import { err, ok, type Result } from 'neverthrow';
import { decodeKey, type Job, key, Persistency, PersistencyError, payload } from '../src/index.js';

const args = process.argv.slice(2);
const serve = args.includes('--serve');
const root = args.find((a) => !a.startsWith('--')) ?? './data/service';
/** A job with no request for this long is closed. */
const IDLE_MS = 150;
/** The traffic generator's tick, and how many requests the hot tenant gets per tick. */
const TICK_MS = 2;
const HOT_PER_TICK = 3;
/** --serve stops by itself after this long without a signal. */
const MAX_SERVE_MS = 60_000;

function step(title: string): void {
  console.log(`\n== ${title}`);
}

function unwrap<T>(r: Result<T, PersistencyError>): T {
  if (r.isErr()) throw r.error;
  return r.value;
}

const p = Persistency.instance(root)._unsafeUnwrap();
let writeFailures = 0;
p.events.on('writeFailed', (e) => {
  writeFailures += Math.max(e.count, 1);
  console.error(`  ! write failed on ${e.jobId} (${e.reason}): ${e.error.message}`);
});

/**
 * Opens jobs on demand and closes each one after `idleMs` without a request.
 */
class JobPool {
  readonly #p: Persistency;
  readonly #idleMs: number;
  /** One idle timer per open job. */
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #closedWhileIdle = new Set<string>();
  #stopping = false;
  onIdleClose: (id: string, closed: Result<void, PersistencyError>) => void = () => {};

  constructor(p: Persistency, idleMs: number) {
    this.#p = p;
    this.#idleMs = idleMs;
  }

  /** How many jobs are open (each has its idle timer running). */
  get openCount(): number {
    return this.#timers.size;
  }

  /**
   * Run `use` with job `id`, opened first if it is not open, and restart its idle timer.
   * `use` runs in the same turn in which the job is seen open, so no idle timer can close
   * it in between, and a write made in `use` is never issued to a closed job.
   */
  async withJob<T>(id: string, use: (job: Job) => T): Promise<Result<T, PersistencyError>> {
    for (;;) {
      if (this.#stopping) return err(new PersistencyError('Closed', 'the service is stopping'));
      const open = this.#p.job(id);
      if (open.isOk()) {
        this.#arm(id);
        return ok(use(open.value));
      }
      // Not open, or being closed because it was idle: openJob waits for that close.
      const opened = await this.#p.openJob(id);
      if (opened.isErr()) return err(opened.error);
      if (!this.#timers.has(id) && !this.#stopping) {
        const again = this.#closedWhileIdle.delete(id);
        console.log(
          `  ${again ? 'reopened' : 'opened'} job ${id} on demand${again ? ' (it had been closed while idle)' : ''}`,
        );
      }
    }
  }

  #arm(id: string): void {
    clearTimeout(this.#timers.get(id));
    const timer = setTimeout(() => this.#closeIdle(id), this.#idleMs);
    timer.unref(); // housekeeping: an idle timer alone never keeps the service running
    this.#timers.set(id, timer);
  }

  #closeIdle(id: string): void {
    this.#timers.delete(id);
    this.#closedWhileIdle.add(id);
    // From this call on, p.job(id) is Err: the next request reopens the job.
    void this.#p.closeJob(id).then((closed) => this.onIdleClose(id, closed));
  }

  /** Stop taking requests, stop every idle timer, and close every job. */
  close(): Promise<Result<void, PersistencyError>> {
    this.#stopping = true;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    // p.close() also waits for jobs still opening and for idle closes under way.
    return Promise.resolve(this.#p.close());
  }
}

/** A tenant's writes in this run: rows key(first) … key(next - 1) of category `events`. */
interface Tenant {
  readonly id: string;
  readonly first: number;
  next: number;
}

const pool = new JobPool(p, IDLE_MS);
const tenants = new Map<string, Promise<Tenant | undefined>>();
const inFlight = new Set<Promise<void>>();
let refused = 0;

/** The first request of a tenant in this process reads where earlier runs stopped. */
async function loadTenant(id: string): Promise<Tenant | undefined> {
  const read = await pool.withJob(id, (job) =>
    job.scan('events', { start: key() }, { reverse: true, limit: 1 }),
  );
  if (read.isErr()) return undefined; // stopping
  const rows = await read.value;
  if (rows.isErr()) return undefined; // closed under it: stopping
  const last = rows.value[0];
  const first = last === undefined ? 0 : decodeKey(last.key, 'number') + 1;
  return { id, first, next: first };
}

/** One request: one event row, fire-and-forget. */
async function request(id: string): Promise<void> {
  let loading = tenants.get(id);
  if (loading === undefined) {
    loading = loadTenant(id);
    tenants.set(id, loading);
  }
  const tenant = await loading;
  const written =
    tenant === undefined
      ? undefined
      : await pool.withJob(id, (job) => {
          const seq = tenant.next++;
          job.persistPut('events', key(seq), payload(id, `event ${seq}`, Date.now()));
        });
  if (written === undefined || written.isErr()) refused++;
}

function send(id: string): Promise<void> {
  const done = request(id).finally(() => inFlight.delete(done));
  inFlight.add(done);
  return done;
}

/** The simulated clients: the hot tenant on every tick, and bursts for the others. */
class Traffic {
  #timer: NodeJS.Timeout | undefined;
  readonly #bursts = new Map<string, { left: number; sent: Promise<void>[]; done: () => void }>();

  start(): void {
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
  }

  /** One request for `id` on each of the next `n` ticks; resolves once all are answered. */
  burst(id: string, n: number): Promise<void> {
    return new Promise((done) => this.#bursts.set(id, { left: n, sent: [], done }));
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #tick(): void {
    for (let i = 0; i < HOT_PER_TICK; i++) void send('hot');
    for (const [id, burst] of this.#bursts) {
      burst.sent.push(send(id));
      if (--burst.left === 0) {
        this.#bursts.delete(id);
        void Promise.all(burst.sent).then(burst.done);
      }
    }
  }
}

const traffic = new Traffic();

// ---------------------------------------------------------------------------------------
// Shutdown: the signal handler does the work.

let stopping: Promise<void> | undefined;

function onSignal(signal: NodeJS.Signals): void {
  if (stopping !== undefined) {
    console.log(`  ${signal} again: still closing; exiting now could lose writes`);
    return;
  }
  stopping = shutDown(signal).catch((e: unknown) => {
    console.error('shutdown failed:', e);
    process.exit(1);
  });
}
process.on('SIGTERM', onSignal);
process.on('SIGINT', onSignal);

async function shutDown(signal: NodeJS.Signals): Promise<void> {
  traffic.stop();
  step(`${signal}: stop taking requests, close the ${pool.openCount} open jobs`);
  const started = performance.now();
  const closed = await pool.close();
  console.log(
    `  p.close() -> ${closed.isOk() ? 'Ok' : `Err ${closed.error.message}`} in ${Math.round(performance.now() - started)} ms: every write issued is committed, every worker has exited`,
  );
  await Promise.all(inFlight); // requests caught waiting for an open: refused, not written
  const issued: Tenant[] = [];
  for (const loading of tenants.values()) {
    const tenant = await loading;
    if (tenant !== undefined) issued.push(tenant);
  }
  for (const t of issued) {
    console.log(
      `  issued to ${t.id}: ${t.next - t.first} writes (#${t.first}..#${t.next - 1}), none flushed`,
    );
  }
  console.log(`  refused while stopping: ${refused}; write failures reported: ${writeFailures}`);
  const verified = await verify(issued);
  process.exit(closed.isOk() && verified && writeFailures === 0 ? 0 : 1);
}

/** The demo's own check: a new Persistency on the same root finds every write issued. */
async function verify(issued: readonly Tenant[]): Promise<boolean> {
  step('check: reopen every job and look for each write issued');
  const again = Persistency.instance(root)._unsafeUnwrap(); // the old one is closed
  let total = 0;
  let missing = 0;
  for (const t of issued) {
    const job = unwrap(await again.openJob(t.id));
    const rows = unwrap(await job.scan('events', { start: key(t.first), stop: key(t.next) }));
    const present = rows.filter((row, i) => decodeKey(row.key, 'number') === t.first + i).length;
    total += present;
    missing += t.next - t.first - present;
    console.log(`  ${t.id}: ${present} of ${t.next - t.first} present`);
  }
  unwrap(await again.close());
  console.log(
    missing === 0 ? `  all ${total} writes issued are present` : `  ${missing} writes MISSING`,
  );
  return missing === 0;
}

// ---------------------------------------------------------------------------------------
// The run.

step(
  `serving tenants hot, cold-a and cold-b from ${p.rootDir} (idle jobs close after ${IDLE_MS} ms)`,
);
const closedIdle = new Set<string>();
let bothIdle: () => void = () => {};
const bothColdClosed = new Promise<void>((resolve) => {
  bothIdle = resolve;
});
pool.onIdleClose = (id, closed) => {
  console.log(
    `  closed idle job ${id} after ${IDLE_MS} ms without a request -> ${closed.isOk() ? 'Ok' : `Err ${closed.error.message}`}`,
  );
  closedIdle.add(id);
  if (closedIdle.has('cold-a') && closedIdle.has('cold-b')) bothIdle();
};
traffic.start();
void traffic.burst('cold-a', 20);
void traffic.burst('cold-b', 10);
await bothColdClosed;
await traffic.burst('cold-a', 15);

if (serve) {
  console.log(
    `\nserving (pid ${process.pid}): requests keep coming for hot; stop with SIGTERM or SIGINT`,
  );
  setTimeout(() => {
    console.log(`no signal within ${MAX_SERVE_MS / 1000} s: stopping myself`);
    process.kill(process.pid, 'SIGTERM');
  }, MAX_SERVE_MS).unref();
} else {
  step(`demo: sending SIGTERM to myself (pid ${process.pid}) while requests keep coming`);
  process.kill(process.pid, 'SIGTERM');
}
