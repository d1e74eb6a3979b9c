/*
 * A release in flight keeps the event loop alive like any other work: a process whose last
 * work is `await p.close()` (or closeJob) while the idle timer releases a job settles it
 * (no exit code 13), and a fire-and-forget write issued meanwhile is committed before the
 * process ends, as on a resident job.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from './support/env.js';

const run = promisify(execFile);
const FIXTURE = fileURLToPath(new URL('./fixtures/release-exit.ts', import.meta.url));
const tempDir = useTempDirs('persistency-exit-');

async function child(
  root: string,
  mode: string,
  what: string,
): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', FIXTURE, root, mode, what], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      timeout: 60_000,
    });
    return { code: 0, stdout };
  } catch (e) {
    const x = e as { code?: number; stdout?: string };
    return { code: x.code ?? -1, stdout: x.stdout ?? '' };
  }
}

function rows(root: string): number {
  const db = new Database(`${root}/j.db`, { readonly: true });
  try {
    return db.prepare('SELECT COUNT(*) FROM kv').pluck().get() as number;
  } finally {
    db.close();
  }
}

describe.each(['per-job', '2'])('a release in flight (workerThreads %s)', (mode) => {
  it('await p.closeJob(id) settles: the process does not exit with code 13', async () => {
    const out = await child(tempDir(), mode, 'closeJob');
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('"settled":true');
  });

  it('await p.close() settles: the process does not exit with code 13', async () => {
    const out = await child(tempDir(), mode, 'close');
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('"settled":true');
  });

  it('a write issued during the release is committed before the process ends, as on a resident job', async () => {
    const resident = tempDir();
    expect((await child(resident, mode, 'write-resident')).code).toBe(0);
    expect(rows(resident)).toBe(2); // the control: a resident job keeps the process up
    const releasing = tempDir();
    expect((await child(releasing, mode, 'write')).code).toBe(0);
    expect(rows(releasing)).toBe(2);
  });
});
