/*
 * Two processes opening one job at the same moment (found by a review: each could take the
 * shared lock SQLite takes first on the root's lock file, keep the other from the exclusive
 * one, and both were refused with Busy while nobody owned the root). In every round exactly
 * one owns the job and the other gets Busy. Both threading modes.
 */
import { describe, expect, it } from 'vitest';
import { Child } from './support/children.js';
import { useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-lock-race-');
const ROUNDS = 60;

describe.each(['per-job', 'pool'])('two processes opening one job at once (%s)', (mode) => {
  it('one owns it and the other gets Busy, in every round', async () => {
    const root = tempDir();
    const children = [0, 1].map(() => new Child('lock-contender.ts', [root, mode]));
    await Promise.all(children.map((c) => c.waitForLine((l) => l === 'ready', 'ready')));
    const rounds: string[] = [];
    for (let k = 0; k < ROUNDS; k++) {
      for (const c of children) c.proc.stdin?.write(`go ${k}\n`);
      const said = await Promise.all(
        children.map((c) => c.waitForLine((l) => l.startsWith(`${k} `), `round ${k}`)),
      );
      const results = said.map((l) => l.split(' ')[1]).sort();
      rounds.push(results.join('/'));
      const index = said.indexOf(`${k} ok`);
      if (index >= 0) {
        children[index]?.proc.stdin?.write(`close ${k}\n`);
        await children[index]?.waitForLine((l) => l === `${k} closed`, `close ${k}`);
      }
    }
    for (const c of children) c.proc.stdin?.write('end\n');
    await Promise.all(children.map((c) => c.closed));
    const wrong = rounds.map((r, k) => [k, r]).filter(([, r]) => r !== 'Busy/ok');
    expect(wrong).toEqual([]);
  }, 60_000);
});
