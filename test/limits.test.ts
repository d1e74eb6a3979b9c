/*
 * Running out of file descriptors (CONTRACT.md §7, issue 12): a child process under a low
 * `ulimit -n` opens jobs until one fails. The failure is Err(Backend) with code 'EMFILE',
 * at once (never a hang), in both threading modes; closing jobs frees descriptors again.
 * A released job taken up again then fails its calls the same way and stays open.
 */
import { describe, expect, it } from 'vitest';
import { underFdLimit } from './support/children.js';
import { useTempDirs } from './support/env.js';

const tempDir = useTempDirs('persistency-limits-');
const underLimit = (limit: number, fixture: string, mode: string) =>
  underFdLimit(limit, fixture, tempDir(), mode);

interface Outcome {
  opened: number;
  failure: { kind: string; code: string | undefined; message: string } | undefined;
  reopenOk: boolean;
}

describe.each(['per-job', '2'])('out of file descriptors (workerThreads %s)', (mode) => {
  it("an open that needs a descriptor is Err(Backend, 'EMFILE'), and closing jobs frees them", async () => {
    const outcome = (await underLimit(120, 'fd-exhaust.ts', mode)) as Outcome;
    expect(outcome.opened).toBeGreaterThan(0);
    expect(outcome.failure).toMatchObject({ kind: 'Backend', code: 'EMFILE' });
    expect(outcome.reopenOk).toBe(true);
  });
});

describe.each(['2', 'per-job'])('reattach out of descriptors (workerThreads %s)', (mode) => {
  it("a released job's next call is Err(Backend, 'EMFILE'), its write reported, the job kept open", async () => {
    // The fixture takes every descriptor left, then calls a released job.
    expect(await underLimit(200, 'reattach-emfile.ts', mode)).toEqual({
      read: { kind: 'Backend', code: 'EMFILE' },
      writeFailed: [{ reason: 'backend', count: 1, code: 'EMFILE' }],
      jobFailed: [],
      hasJob: true,
      running: true,
      stats: { openJobs: 1, residentJobs: 0 },
      closed: 'Ok',
    });
  });
});
