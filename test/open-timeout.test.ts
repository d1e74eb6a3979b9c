/*
 * openJob's `openTimeoutMs`: the call ends with `Err(Timeout)`, but the thread it asked may
 * still open the job's file afterwards. Until that thread has let go of the file, the root
 * stays owned (another owner gets `Busy`, not a file in use) and a drop waits; then the
 * job opens elsewhere with its data. The open is held up by a connection of this process
 * that keeps the job's file locked (a rollback-journal EXCLUSIVE transaction). A process
 * stays up for what waits on such a thread and then exits cleanly (child processes).
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { key, Persistency } from '../src/index.js';
import { Child, stopChildren } from './support/children.js';
import { unwrap, useTempDirs } from './support/env.js';
import { FILE_MODES } from './support/modes.js';

const tempDir = useTempDirs('persistency-open-timeout-');
const u8 = (...b: number[]) => new Uint8Array(b);

describe.each(FILE_MODES)('an open that timed out (%s)', (_name, _memory, options) => {
  /** A root holding job 'j' with one row; returns the root and the job's file. */
  async function rootWithJob(): Promise<{ dir: string; file: string }> {
    const dir = tempDir();
    const p = unwrap(Persistency.open(dir, options));
    const job = unwrap(await p.openJob('j'));
    job.persistPut('c', key(1), u8(7));
    unwrap(await job.flush());
    await p.close();
    const name = readdirSync(dir).find((f) => f.endsWith('.db'));
    if (name === undefined) throw new Error('no job file');
    return { dir, file: join(dir, name) };
  }

  /** Lock the job's file against every other connection until `lift()`. */
  function lock(file: string): { lift(): void } {
    const db = new Database(file);
    db.pragma('journal_mode = DELETE');
    db.exec('BEGIN EXCLUSIVE');
    return {
      lift() {
        db.exec('ROLLBACK');
        db.close();
      },
    };
  }

  /**
   * Job 'j' locked, and an instance whose openJob of it timed out: its thread waits for the
   * lock (for up to busyTimeoutMs) and may still open the file.
   */
  async function timedOutOpen() {
    const { dir, file } = await rootWithJob();
    const held = lock(file);
    const p = unwrap(
      Persistency.open(dir, { ...options, openTimeoutMs: 50, busyTimeoutMs: 60_000 }),
    );
    const timedOut = await p.openJob('j');
    expect(timedOut.isErr() && timedOut.error.kind).toBe('Timeout');
    return { dir, file, held, p };
  }

  it('keeps the root owned until the thread has let go of the file', async () => {
    const { dir, held, p } = await timedOutOpen();
    expect(p.stats().openJobs).toBe(0);

    // The thread waits for the lock and may open the file yet: no other owner meanwhile.
    const other = unwrap(Persistency.open(dir, options));
    const refused = await other.openJob('j');
    expect(refused.isErr() && refused.error.kind).toBe('Busy');
    const drop = await other.dropJob('j');
    expect(drop.isErr() && drop.error.kind).toBe('Busy');

    // Lifted: the thread opens the file, is told to close it, and lets go; then the root
    // is free for the other owner, and the job has its data.
    held.lift();
    await p.close();

    const job = unwrap(await other.openJob('j'));
    expect(unwrap(await job.get('c', key(1)))).toEqual(u8(7));
    await other.close();
  });

  it('has a drop of the job wait for the thread before it deletes the files', async () => {
    const { dir, file, held, p } = await timedOutOpen();
    let settled = false;
    const dropped = (async () => {
      const r = await p.dropJob('j');
      settled = true;
      return r;
    })();
    // The drop waits for the thread that may still open the file: after many round trips
    // to the file system (a drop that did not wait is done by then), it is still there.
    for (let i = 0; i < 20; i++) unwrap(await p.listJobs());
    expect(settled).toBe(false);
    expect(existsSync(file)).toBe(true);
    held.lift();
    expect((await dropped).isOk()).toBe(true);
    expect(unwrap(await p.listJobs())).toEqual([]);
    expect(readdirSync(dir).filter((f) => !f.startsWith('.'))).toEqual([]);
    await p.close();
  });
});

afterAll(stopChildren); // not afterEach: the tests below run side by side

/** Run the fixture: its exit code (or signal) and the JSON lines it printed. */
async function child(mode: string, what: string): Promise<{ code: unknown; lines: unknown[] }> {
  const c = new Child('open-timeout-exit.ts', [tempDir(), mode, what]);
  const exit = await c.closed;
  return { code: exit.signal ?? exit.code, lines: c.lines.map((l) => JSON.parse(l)) };
}

// The thread that timed out gives up after busyTimeoutMs (the lock is never lifted): until
// then the process must not end, and then it must end without an abort.
describe.each(['per-job', '2'])(
  'a process with an open that timed out (workerThreads %s)',
  (mode) => {
    it.concurrent('waits for an awaited dropJob, which deletes the files', async () => {
      expect(await child(mode, 'drop')).toEqual({
        code: 0,
        lines: [{ open: 'Timeout' }, { drop: 'ok', files: [] }],
      });
    });

    it.concurrent('waits for close() while a drop is pending', async () => {
      expect(await child(mode, 'drop-close')).toEqual({
        code: 0,
        lines: [{ open: 'Timeout' }, { closed: true }],
      });
    });

    it.concurrent('exits cleanly after a reattach that timed out', async () => {
      expect(await child(mode, 'reattach')).toEqual({ code: 0, lines: [{ get: 'Timeout' }] });
    });
  },
);
