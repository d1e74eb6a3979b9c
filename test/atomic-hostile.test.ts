/*
 * Hostile input to the calls of issue 15 (persistAdd, persistPut's options, atomic batches,
 * watch): whatever they are given, nothing is thrown, every refusal is InvalidArgument
 * (an Err, a rejected next(), or a writeFailed event), nothing hangs, and valid writes
 * issued around the refused ones all land.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  key,
  Persistency,
  PersistencyError,
  type PersistencyOptions,
  payload,
  prefixRange,
} from '../src/index.js';
import { unwrap, useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-atomic-hostile-');

const thrower = (): never => {
  throw new Error('hostile getter');
};
function detached(): Uint8Array {
  const b = new Uint8Array(4);
  structuredClone(b.buffer, { transfer: [b.buffer] });
  return b;
}
const HOSTILE: readonly (() => unknown)[] = [
  () => undefined,
  () => null,
  () => 0,
  () => -1,
  () => 1.5,
  () => Number.NaN,
  () => Number.POSITIVE_INFINITY,
  () => 2n ** 63n,
  () => -(2n ** 63n) - 1n,
  () => 2n ** 63n - 1n,
  () => 'c',
  () => '',
  () => Symbol('s'),
  () => ({}),
  () => [],
  () => new Proxy({}, { get: thrower, has: thrower, ownKeys: thrower, getPrototypeOf: thrower }),
  () => Object.defineProperty({}, 'expireInMs', { get: thrower, enumerable: true }),
  () => Object.defineProperty({}, 'maxQueued', { get: thrower, enumerable: true }),
  () => Object.defineProperty({}, 'start', { get: thrower, enumerable: true }),
  () => key(1),
  () => key(),
  () => prefixRange(key('a')),
  () => ({ start: 'x' }),
  () => detached(),
  () => new Uint8Array(8),
  () => payload('p'),
  () => ({ expireInMs: -1 }),
  () => ({ expireInMs: Number.NaN }),
  () => ({ expireInMs: 5 }),
  () => ({ maxQueued: 0 }),
  () => ({ maxQueued: 3 }),
];
// Indices, made into values inside the property: fast-check itself would trip on the proxies.
const args = fc.array(fc.nat(HOSTILE.length - 1), { minLength: 0, maxLength: 4 });
const made = (list: readonly number[]): unknown[] =>
  list.map((i) => (HOSTILE[i] as () => unknown)());

const MODES: [string, PersistencyOptions][] = [
  ['per-job', { workerThreads: 'per-job' }],
  ['2 threads', { workerThreads: 2 }],
];

function expectRefusal(e: unknown, what: string): void {
  expect(e instanceof PersistencyError && e.kind, `${what}: ${String(e)}`).toBe('InvalidArgument');
}

describe.each(MODES)('hostile input to atomic, add, expiry and watch (%s)', (_name, options) => {
  it('never throws, refuses with InvalidArgument only, never hangs, loses no valid write', async () => {
    const p = unwrap(Persistency.open(tempDir(), options));
    const job = unwrap(await p.openJob('h'));
    const events: PersistencyError[] = [];
    p.events.on('writeFailed', (e) => events.push(e.error));
    type Loose = Record<string, (...a: unknown[]) => unknown>;
    const loose = job as unknown as Loose;
    let valid = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('persistAdd', 'persistPut', 'atomic', 'watch', 'p.persistAdd', 'p.atomic'),
        args,
        args,
        async (method, ai, bi) => {
          const a = made(ai);
          const b = made(bi);
          const call = `${method}(${a.length} args)`;
          if (method === 'persistAdd' || method === 'persistPut') {
            expect(() => loose[method]?.(...a), call).not.toThrow();
          } else if (method === 'p.persistAdd') {
            expect(() => (p as unknown as Loose).persistAdd?.('h', ...a), call).not.toThrow();
          } else if (method === 'atomic' || method === 'p.atomic') {
            let batch: Loose = (method === 'atomic'
              ? job.atomic()
              : p.atomic('h')) as unknown as Loose;
            for (const [m, list] of [
              ['check', a],
              ['put', b],
              ['add', a],
              ['delete', b],
            ] as const) {
              expect(() => {
                batch = batch[m]?.(...list) as Loose;
              }, `${call}.${m}`).not.toThrow();
            }
            const r = (await (batch.commit?.() as Promise<unknown>)) as {
              isErr(): boolean;
              error?: unknown;
            };
            if (r.isErr()) expectRefusal(r.error, `${call}.commit()`);
          } else {
            let feed: AsyncIterator<unknown> | undefined;
            expect(() => {
              feed = job.watch(...(a as Parameters<typeof job.watch>));
            }, call).not.toThrow();
            const next = (feed as AsyncIterator<unknown>).next().then(
              () => 'value',
              (e: unknown) => e,
            );
            // A watch that was refused rejects at once; a valid one waits for changes.
            const first = await Promise.race([next, job.flush().then(() => 'pending')]);
            if (first !== 'pending' && first !== 'value') expectRefusal(first, `${call}.next()`);
            await feed?.return?.();
          }
          job.persistPut('valid', key(valid++), payload('v'));
        },
      ),
      { numRuns: 300, seed: 15 },
    );
    await job.flush(); // refused writes make it Err: that is part of the contract
    for (const e of events) expect(['InvalidArgument', 'Overflow'], e.message).toContain(e.kind);
    expect(unwrap(await job.count('valid', prefixRange(key())))).toBe(valid);
    await p.close();
  });
});
