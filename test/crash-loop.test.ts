/*
 * The crash loop (CONTRACT.md §4 "Durability"; the round logic and what it checks are
 * described in test/support/crash-round.ts): a child process writes two jobs at once and
 * acknowledges flushes and closes over IPC; it is SIGKILLed during writes, a flush,
 * closeJob or openJob, round-robin; every acknowledged batch must survive, whole, as part
 * of a gap-free prefix, in a file that passes integrity_check and opens and writes again.
 *
 * PERSISTENCY_CRASH_ROUNDS sets the rounds (default 20), PERSISTENCY_CRASH_SEED the seed of
 * the random kill delays (default: random, printed). `npm run test:crash -- --rounds N`
 * runs the same rounds outside vitest.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  aimStats,
  CrashLoop,
  formatRound,
  PHASES,
  type RoundResult,
  summarize,
} from './support/crash-round.js';

const ROUNDS = Number.parseInt(process.env.PERSISTENCY_CRASH_ROUNDS ?? '20', 10);
const SEED =
  process.env.PERSISTENCY_CRASH_SEED === undefined
    ? undefined
    : Number.parseInt(process.env.PERSISTENCY_CRASH_SEED, 10);

let loop: CrashLoop | undefined;

afterEach(async () => {
  await loop?.dispose();
  loop = undefined;
});

describe('crash loop (SIGKILL of a process writing two jobs)', () => {
  it(`keeps every acked batch, whole, in a gap-free prefix, across ${ROUNDS} rounds`, {
    timeout: Math.max(60_000, ROUNDS * 10_000),
  }, async () => {
    expect(Number.isInteger(ROUNDS) && ROUNDS > 0).toBe(true);
    loop = await CrashLoop.create(SEED === undefined ? {} : { seed: SEED });
    console.log(`crash loop: ${ROUNDS} rounds, seed ${loop.seed}`);
    const results: RoundResult[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const r = await loop.round(round);
      results.push(r);
      const line = formatRound(r, ROUNDS);
      console.log(line);
      expect(r.failures, `${line} (seed ${loop.seed})`).toEqual([]);
    }
    console.log(`${summarize(results)}; kills inside the aimed operation: ${aimStats(results)}`);
    // Every phase ran (given enough rounds), and each round checked acknowledged batches.
    for (const phase of PHASES.slice(0, ROUNDS))
      expect(results.some((r) => r.phase === phase)).toBe(true);
    for (const r of results.filter((r) => r.phase === 'writes' || r.phase === 'flush'))
      expect(r.ackedChecked).toBeGreaterThan(0);
  });
});
