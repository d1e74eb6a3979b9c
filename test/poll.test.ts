// The worker's polling after an answer (option pollMicros): it serves a caller awaiting one
// answer at a time without sleeping in between, it backs off when nobody comes, it stops
// (no CPU spent by an idle job), at most (cores - 1) workers poll at once, and 0 turns it off.
// The worker reports what its polling did when it closes (CloseOutcome.polls).
import { availableParallelism } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { type Job, key, Persistency, type PersistencyOptions } from '../src/index.js';
import { closeJobHandle } from '../src/job.js';
import type { PollSettings, PollStats } from '../src/protocol/messages.js';
import { pollSettings } from '../src/worker/spawn.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-poll-');
const PAYLOAD = new Uint8Array([1, 2, 3]);
/** Workers allowed to poll at once on this machine (see pollSettings). */
const MAX_POLLERS = Math.max(0, availableParallelism() - 1);

async function openWith(options: PersistencyOptions, ...ids: string[]): Promise<Job[]> {
  const p = unwrap(Persistency.instance(tempDir(), options));
  const jobs: Job[] = [];
  for (const id of ids) {
    const job = unwrap(await p.openJob(id));
    job.persistPut('c', key('k'), PAYLOAD);
    jobs.push(job);
  }
  return jobs;
}

async function pollsOnClose(job: Job): Promise<PollStats> {
  const outcome = await closeJobHandle(job);
  expect(outcome.error).toBeUndefined();
  if (outcome.polls === undefined) throw new Error('the worker reported no poll stats');
  return outcome.polls;
}

async function awaitedGets(job: Job, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    expect(unwrap(await job.get('c', key('k')))).toEqual(PAYLOAD);
  }
}

describe.skipIf(MAX_POLLERS === 0)('polling after an answer', () => {
  it('serves reads awaited one at a time from the poll, not from sleep', async () => {
    // A wide window, so that a busy machine cannot make the next request miss it.
    const [job] = await openWith({ pollMicros: 50_000 }, 'a');
    await awaitedGets(job as Job, 200);
    const polls = await pollsOnClose(job as Job);
    expect(polls.caught).toBeGreaterThanOrEqual(150);
    expect(polls.tried).toBeLessThanOrEqual(201);
    expect(polls.busy).toBe(0);
  });

  it('never polls after fire-and-forget writes alone; does after an awaited deleteAcked', async () => {
    const [writer, acker] = await openWith({ pollMicros: 50_000 }, 'w', 'd');
    for (let turn = 0; turn < 20; turn++) {
      for (let i = 0; i < 10; i++) (writer as Job).persistPut('c', key(turn, i), PAYLOAD);
      await new Promise((resolve) => setImmediate(resolve)); // a turn's writes go as one frame
    }
    for (let i = 0; i < 20; i++) {
      (acker as Job).persistPut('c', key(i), PAYLOAD);
      expect(unwrap(await (acker as Job).deleteAcked('c', key(i)))).toBe(true);
    }
    expect((await pollsOnClose(writer as Job)).tried).toBe(0);
    expect((await pollsOnClose(acker as Job)).caught).toBeGreaterThanOrEqual(15);
  });

  it('backs off when the next request does not come within the window', async () => {
    const [job] = await openWith({ pollMicros: 2_000 }, 'a');
    for (let i = 0; i < 20; i++) {
      expect(unwrap(await (job as Job).get('c', key('k')))).toEqual(PAYLOAD);
      await delay(10); // an idle gap five times the window: the poll finds nothing
    }
    const polls = await pollsOnClose(job as Job);
    // Polls after answers 1, 3, 6, 11 and 20 (skipping 1, 2, 4, 8 in between), not 20; a
    // stray catch on a stalled machine would restart the backoff, hence the margin.
    expect(polls.tried).toBeGreaterThanOrEqual(4);
    expect(polls.tried).toBeLessThanOrEqual(8);
  });

  it('stops: a job idle after reads spends no CPU', async () => {
    const [job] = await openWith({}, 'a');
    await awaitedGets(job as Job, 100);
    const before = process.cpuUsage();
    const t0 = performance.now();
    await delay(200);
    const used = process.cpuUsage(before);
    const wallMs = performance.now() - t0;
    const cpuMs = (used.user + used.system) / 1000;
    // A worker still polling would use about as much CPU as the wall time.
    expect(cpuMs).toBeLessThan(wallMs / 4);
  });

  it(`lets at most ${MAX_POLLERS} worker(s) poll at once`, async () => {
    const ids = Array.from({ length: MAX_POLLERS + 1 }, (_, i) => `j${i}`);
    // Polls of a second: every worker that got a slot keeps it until a message reaches it
    // (here, its close). Which workers get one depends on how their threads are scheduled
    // (a worker may reach its poll after the next job's worker has), not on the gets' order.
    const polling = new Int32Array((pollSettings(1) as PollSettings).slots, 0, 1);
    const t0 = performance.now();
    const jobs = await openWith({ pollMicros: 1_000_000 }, ...ids);
    const opened = performance.now();
    for (const job of jobs) await awaitedGets(job, 1);
    // Wait for the slots to fill before closing anything: a close ends its worker's poll and
    // frees a slot, which a worker that has answered but not yet reached its poll would take.
    while (Atomics.load(polling, 0) < MAX_POLLERS && performance.now() - opened < 1_000) {
      await new Promise(setImmediate);
    }
    // Closed last-first: the last job's worker, the one most likely still on its way to its
    // poll, decides before it reads its close, while the others still hold every slot.
    const stats: PollStats[] = [];
    for (const job of [...jobs].reverse()) stats.unshift(await pollsOnClose(job));
    const closed = performance.now();
    expect(
      closed - opened,
      `gets and closes took ${closed - opened} ms (opens ${opened - t0} ms)`,
    ).toBeLessThan(900);
    // Each worker answered once: MAX_POLLERS of them polled, the others found no slot.
    expect(stats.map((s) => s.tried + s.busy)).toEqual(jobs.map(() => 1));
    expect(stats.filter((s) => s.tried === 1)).toHaveLength(MAX_POLLERS);
    expect(stats.reduce((n, s) => n + s.busy, 0)).toBe(1);
  });
});

describe('pollMicros', () => {
  it('0 turns polling off', async () => {
    const [job] = await openWith({ pollMicros: 0 }, 'a');
    await awaitedGets(job as Job, 50);
    expect(await pollsOnClose(job as Job)).toEqual({ tried: 0, caught: 0, busy: 0 });
  });

  it('is checked: a non-negative integer of at most one second', () => {
    const root = tempDir();
    for (const bad of [-1, 1.5, 1_000_001, '100', Number.NaN]) {
      const r = Persistency.instance(root, { pollMicros: bad as number });
      expect(r.isErr() && r.error.kind).toBe('InvalidArgument');
    }
    expect(Persistency.instance(root, { pollMicros: 1_000_000 }).isOk()).toBe(true);
  });
});
