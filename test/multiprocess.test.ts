/*
 * Multi-process and multi-thread behaviour of file jobs (CONTRACT.md §3 "A job file that
 * another process (or another Persistency in this process) has open is refused at openJob
 * with a clear error; a crashed owner leaves no stale lock").
 *
 * Children run the fixtures in test/fixtures with `node --import tsx` (test/support/children.ts);
 * readiness and errors come over their stdout, never from sleeps. Crashes (SIGKILL of a
 * writing process) are the crash loop's: test/crash-loop.test.ts; the root lock's own
 * cases (other job ids of an owned root, readers of a live job) are test/ownership.test.ts.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  decodePayload,
  type Job,
  key,
  Persistency,
  type PersistencyError,
  payload,
} from '../src/index.js';
import { Child, startThreadOwner, stopChildren } from './support/children.js';

const roots: string[] = [];

async function freshRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'persistency-mp-'));
  roots.push(root);
  return root;
}

afterEach(async () => {
  await stopChildren();
  await Persistency.reset();
  for (const r of roots.splice(0)) await rm(r, { recursive: true, force: true });
});

function instance(root: string): Persistency {
  const p = Persistency.instance(root);
  if (p.isErr()) throw p.error;
  return p.value;
}

function expectBusy(r: { isErr(): boolean; error?: PersistencyError }, dbPath: string): void {
  expect(r.isErr()).toBe(true);
  const e = r.error as PersistencyError;
  expect(e.kind).toBe('Busy');
  expect(e.message).toContain(dbPath);
}

async function openOk(p: Persistency, id: string): Promise<Job> {
  const r = await p.openJob(id);
  if (r.isErr()) throw new Error(`openJob(${id}) failed: ${r.error.kind}: ${r.error.message}`);
  return r.value;
}

// -----------------------------------------------------------------------------------------

describe('a job owned by another process', () => {
  it('is refused with Busy naming the file, and is free again once the owner is SIGKILLed', async () => {
    const root = await freshRoot();
    const dbPath = join(root, 'shared.db');
    const owner = new Child('owner.ts', [root, 'shared']);
    await owner.waitForLine((l) => l === 'ready' || l.startsWith('error'), 'ready');
    expect(owner.lines).toContain('ready');

    const p = instance(root);
    expectBusy(await p.openJob('shared'), dbPath);
    // Refusal is stable, leaves nothing registered, and no read on the missing job hangs.
    expectBusy(await p.openJob('shared'), dbPath);
    expect(p.hasJob('shared')).toBe(false);
    const read = await p.get('shared', 'owner', key('pid'));
    expect(read.isErr() && read.error.kind).toBe('JobNotFound');
    const scanned = await p.scanPrefix('shared', 'owner', key());
    expect(scanned.isErr() && scanned.error.kind).toBe('JobNotFound');
    // dropJob must not delete a file another process owns.
    expectBusy(await p.dropJob('shared'), dbPath);
    expect(existsSync(dbPath)).toBe(true);

    const exit = await owner.kill();
    expect(exit.signal).toBe('SIGKILL');

    // No stale lock: the parent opens it at once and finds the owner's flushed row.
    const job = await openOk(p, 'shared');
    const marker = await job.get('owner', key('pid'));
    expect(marker.isOk()).toBe(true);
    expect(decodePayload(marker._unsafeUnwrap() as Uint8Array, ['i64'])).toEqual([
      BigInt(owner.pid),
    ]);
    job.persistPut('parent', key('n'), payload(7));
    expect((await job.get('parent', key('n')))._unsafeUnwrap()).toEqual(payload(7));
    expect((await job.flush()).isOk()).toBe(true);

    // And vice versa: while the parent owns it, a new child is refused with Busy.
    const intruder = new Child('owner.ts', [root, 'shared']);
    const line = await intruder.waitForLine(
      (l) => l === 'ready' || l.startsWith('error'),
      'ready or error',
    );
    expect(line).toMatch(/^error Busy /);
    expect(line).toContain(dbPath);
    expect((await intruder.closed).code).toBe(2);

    expect((await p.closeJob('shared')).isOk()).toBe(true);
  });
});

describe('a job owned by another Persistency in this process (worker thread)', () => {
  it('is refused with Busy while the thread holds it, and opens once the thread closes it', async () => {
    const root = await freshRoot();
    const dbPath = join(root, 'shared.db');
    const p = instance(root);

    const t1 = startThreadOwner(root, 'shared');
    expect(await t1.next()).toEqual({ t: 'ready' });
    expectBusy(await p.openJob('shared'), dbPath);
    expect(p.hasJob('shared')).toBe(false);

    t1.worker.postMessage({ t: 'close' });
    expect(await t1.next()).toEqual({ t: 'closed', ok: true });
    await t1.exited;

    const job = await openOk(p, 'shared');
    job.persistPut('main', key(1), payload('main thread'));
    expect((await job.flush()).isOk()).toBe(true);

    // Vice versa: the main thread owns it, a new thread's Persistency is refused.
    const t2 = startThreadOwner(root, 'shared');
    const refused = await t2.next();
    expect(refused.t).toBe('error');
    if (refused.t === 'error') {
      expect(refused.kind).toBe('Busy');
      expect(refused.message).toContain(dbPath);
    }
    await t2.exited;

    // Still ours and intact after the refusal.
    expect((await job.get('main', key(1)))._unsafeUnwrap()).toEqual(payload('main thread'));
    expect((await p.closeJob('shared')).isOk()).toBe(true);
  });
});
