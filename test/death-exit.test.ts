/*
 * A worker that dies while a read waits on it is heard even when nothing else keeps the
 * event loop alive (CONTRACT §4: every pending read returns Err, none hangs): the read
 * settles with Err(Backend, WORKER_DIED) and jobFailed is emitted, instead of the process
 * exiting with code 13 and the read never settling.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from './support/env.js';

const run = promisify(execFile);
const FIXTURE = fileURLToPath(new URL('./fixtures/death-exit.ts', import.meta.url));
const tempDir = useTempDirs('persistency-death-exit-');

async function child(mode: string, how: string): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', FIXTURE, tempDir(), mode, how],
      { cwd: fileURLToPath(new URL('..', import.meta.url)), timeout: 60_000 },
    );
    return { code: 0, stdout };
  } catch (e) {
    const x = e as { code?: number; stdout?: string };
    return { code: x.code ?? -1, stdout: x.stdout ?? '' };
  }
}

describe.each(['per-job', '2'])(
  'a worker dying under a pending read (workerThreads %s)',
  (mode) => {
    it.each(['throw', 'exit'])(
      '(%s) settles the read with Err and emits jobFailed',
      async (how) => {
        const out = await child(mode, how);
        expect(out.code, out.stdout).toBe(0);
        const line = JSON.parse(out.stdout.trim().split('\n').at(-1) ?? '{}');
        expect(line).toEqual({
          settled: true,
          kind: 'Backend',
          code: 'WORKER_DIED',
          failed: ['j WORKER_DIED'],
        });
      },
    );
  },
);
