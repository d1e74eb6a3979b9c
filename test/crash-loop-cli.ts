/*
 * The crash loop outside vitest, for as many rounds as asked:
 *
 *   npm run test:crash -- --rounds 200 [--seed N] [--chain 5]
 *
 * Prints one line per round, then
 * `N rounds: N ok, 0 failed; acked batches checked: X; phases: writes=…, flush=…, close=…, open=…`
 * and exits 1 if any round failed. See test/support/crash-round.ts for what a round does.
 */
import { parseArgs } from 'node:util';
import {
  aimStats,
  CrashLoop,
  formatRound,
  type RoundResult,
  summarize,
} from './support/crash-round.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '200' },
    seed: { type: 'string' },
    chain: { type: 'string' },
  },
});
const rounds = Number.parseInt(values.rounds, 10);
if (!Number.isInteger(rounds) || rounds < 1) {
  console.error(`--rounds must be a positive integer, got ${values.rounds}`);
  process.exit(2);
}

const loop = await CrashLoop.create({
  ...(values.seed === undefined ? {} : { seed: Number.parseInt(values.seed, 10) }),
  ...(values.chain === undefined ? {} : { chainLength: Number.parseInt(values.chain, 10) }),
});
let stopping = false;
process.on('SIGINT', () => {
  stopping = true;
});

const started = performance.now();
console.log(`crash loop: ${rounds} rounds, seed ${loop.seed}, chain ${loop.chainLength}`);
const results: RoundResult[] = [];
try {
  for (let round = 1; round <= rounds && !stopping; round++) {
    const r = await loop.round(round);
    results.push(r);
    console.log(formatRound(r, rounds));
  }
} finally {
  await loop.dispose();
}
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(
  `kills inside the aimed operation: ${aimStats(results)}; seed ${loop.seed}; ${seconds} s`,
);
console.log(summarize(results));
const failed = results.some((r) => r.failures.length > 0) || results.length < rounds;
process.exit(failed ? 1 : 0);
