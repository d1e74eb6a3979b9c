/*
 * `maxResidentJobs` under random calls (written by a review): 6 jobs under a cap of 2, cap
 * releases racing puts, gets, scans, counts, flushes, deleteAcked, atomic commits, partial
 * iterations and closeJob (most calls are not awaited before the next), checked against a
 * model; then p.close() right after a take-up. Every promise settles (the test's timeout
 * says otherwise), and a file root holds the model's rows after reopening.
 */
import { describe, expect, it } from 'vitest';
import { decodePayload, type Job, key, Persistency, payload, prefixRange } from '../src/index.js';
import { unwrap, useTempDirs } from './support/env.js';
import { ROOT_MODES } from './support/modes.js';
import { mulberry32 } from './support/random.js';

const tempDir = useTempDirs('persistency-review-stress-');

describe.each(ROOT_MODES)('maxResidentJobs under random calls (%s)', (_name, memory, options) => {
  it.each([1, 2, 3])('seed %i', async (seed) => {
    const rand = mulberry32(seed);
    const root = memory ? ':memory:' : tempDir();
    const p = unwrap(
      Persistency.open(root, {
        ...options,
        maxResidentJobs: 2,
        idleCloseMs: 0,
      }),
    );
    const ids = ['j0', 'j1', 'j2', 'j3', 'j4', 'j5'];
    const model = new Map<string, Map<number, string>>(ids.map((id) => [id, new Map()]));
    const jobs = new Map<string, Job>();
    const pending: PromiseLike<unknown>[] = [];
    const failures: string[] = [];
    const check = (what: string, got: unknown, want: unknown) => {
      try {
        expect(got).toEqual(want);
      } catch {
        failures.push(`${what}: got ${JSON.stringify(got)} want ${JSON.stringify(want)}`);
      }
    };
    const jobOf = async (id: string): Promise<Job> => {
      const j = jobs.get(id);
      if (j?.running) return j;
      const opened = unwrap(await p.openJob(id));
      jobs.set(id, opened);
      return opened;
    };
    let counter = 0;
    for (let step = 0; step < 300; step++) {
      const id = ids[Math.floor(rand() * ids.length)] as string;
      const m = model.get(id) as Map<number, string>;
      const job = await jobOf(id);
      const op = Math.floor(rand() * 11);
      const k = Math.floor(rand() * 8);
      const tag = `${id}/${step}`;
      switch (op) {
        case 0:
        case 1: {
          const v = `v${counter++}`;
          job.persistPut('c', key(k), payload(v));
          m.set(k, v);
          break;
        }
        case 2: {
          const want = m.get(k);
          pending.push(
            job
              .get('c', key(k))
              .then((r) =>
                check(
                  `${tag} get`,
                  r.isOk() ? r.value && decodePayload(r.value, 'string') : r.error.message,
                  want,
                ),
              )
              .then(() => undefined),
          );
          break;
        }
        case 3: {
          const want = [...m.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
          pending.push(
            job
              .scan('c', prefixRange(key()))
              .then((r) =>
                check(
                  `${tag} scan`,
                  r.isOk()
                    ? r.value.map((x) => decodePayload(x.payload, 'string'))
                    : r.error.message,
                  want,
                ),
              ),
          );
          break;
        }
        case 4: {
          const want = m.size;
          pending.push(
            job
              .count('c', prefixRange(key()))
              .then((r) => check(`${tag} count`, r.isOk() ? r.value : r.error.message, want)),
          );
          break;
        }
        case 5:
          pending.push(job.flush().then((r) => check(`${tag} flush`, r.isOk(), true)));
          break;
        case 6: {
          const want = m.has(k);
          m.delete(k);
          pending.push(
            job
              .deleteAcked('c', key(k))
              .then((r) => check(`${tag} deleteAcked`, r.isOk() ? r.value : r.error.message, want)),
          );
          break;
        }
        case 7: {
          const v = `a${counter++}`;
          m.set(k, v);
          pending.push(
            job
              .atomic()
              .put('c', key(k), payload(v))
              .commit()
              .then((r) =>
                check(`${tag} atomic`, r.isOk() ? r.value : r.error.message, { ok: true }),
              ),
          );
          break;
        }
        case 8: {
          const want = [...m.entries()]
            .sort((a, b) => a[0] - b[0])
            .map(([, v]) => v)
            .slice(0, 1);
          pending.push(
            (async () => {
              const it = job.iterate('c', prefixRange(key()), { pageSize: 1 });
              const first = await it.next();
              await it.return?.(undefined);
              check(
                `${tag} iterate`,
                first.done ? [] : [decodePayload(first.value.payload, 'string')],
                want,
              );
            })().catch((e) => {
              failures.push(`${tag} iterate threw ${(e as Error).message}`);
            }),
          );
          break;
        }
        case 9:
          if (rand() < 0.3) {
            unwrap(await p.closeJob(id));
            jobs.delete(id);
          }
          break;
        default:
          // Let releases and take-ups interleave with the calls: a few turns of the loop.
          for (let turns = Math.floor(rand() * 4); turns > 0; turns--) {
            await new Promise(setImmediate);
          }
      }
      if (rand() < 0.3) await Promise.resolve();
    }
    await Promise.all(pending);
    expect(failures).toEqual([]);
    expect(p.stats().reopened, 'the cap released jobs that calls took up again').toBeGreaterThan(5);
    // A take-up (beyond the cap), then close at once, releases in flight.
    const last = await jobOf('j0');
    const lastGet = last.get('c', key(0));
    unwrap(await p.close());
    await lastGet;
    if (memory) return;
    const again = unwrap(Persistency.open(root, options));
    for (const id of ids) {
      const job = unwrap(await again.openJob(id));
      const rows = unwrap(await job.scan('c', prefixRange(key())));
      const m = model.get(id) as Map<number, string>;
      expect(
        rows.map((r) => decodePayload(r.payload, 'string')),
        id,
      ).toEqual([...m.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v));
    }
    unwrap(await again.close());
  });
});
