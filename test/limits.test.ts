/*
 * Running out of file descriptors (CONTRACT.md §7, issue 12): a child process under a low
 * `ulimit -n` opens jobs until one fails. The failure is Err(Backend) with code 'EMFILE',
 * at once (never a hang), in both threading modes; closing jobs frees descriptors again.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from './support/env.js';

const run = promisify(execFile);
const FIXTURE = fileURLToPath(new URL('./fixtures/fd-exhaust.ts', import.meta.url));
const tempDir = useTempDirs('persistency-limits-');

interface Outcome {
  opened: number;
  failure: { kind: string; code: string | undefined; message: string } | undefined;
  reopenOk: boolean;
}

describe.each(['per-job', '2'])('out of file descriptors (workerThreads %s)', (mode) => {
  it("an open that needs a descriptor is Err(Backend, 'EMFILE'), and closing jobs frees them", async () => {
    const { stdout } = await run(
      'bash',
      [
        '-c',
        `ulimit -n 120 && exec "${process.execPath}" --import tsx "${FIXTURE}" "$0" "$1"`,
        tempDir(),
        mode,
      ],
      { cwd: fileURLToPath(new URL('..', import.meta.url)), timeout: 60_000 },
    );
    const outcome = JSON.parse(stdout.trim().split('\n').at(-1) as string) as Outcome;
    expect(outcome.opened).toBeGreaterThan(0);
    expect(outcome.failure).toMatchObject({ kind: 'Backend', code: 'EMFILE' });
    expect(outcome.reopenOk).toBe(true);
  });
});
