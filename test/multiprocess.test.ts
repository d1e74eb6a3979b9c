/*
 * Multi-process and multi-thread behaviour of file jobs (CONTRACT.md §3 "A job file that
 * another process (or another Persistency in this process) has open is refused at openJob
 * with a clear error; a crashed owner leaves no stale lock").
 *
 * Children run the fixtures in test/fixtures with `node --import tsx`; readiness and errors
 * come over their stdout, never from sleeps. Crashes (SIGKILL of a writing process) are
 * the crash loop's: test/crash-loop.test.ts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import {
  decodePayload,
  type Job,
  key,
  Persistency,
  type PersistencyError,
  payload,
} from '../src/index.js';
import type { ThreadOwnerMessage } from './fixtures/thread-owner.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const TSX_ESM_API = new URL('../node_modules/tsx/dist/esm/api/index.mjs', import.meta.url);
const THREAD_OWNER = new URL('./fixtures/thread-owner.ts', import.meta.url);
/** A guard against a hung child, not a synchronisation device. */
const CHILD_TIMEOUT_MS = 20_000;

// -----------------------------------------------------------------------------------------
// Child processes

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A fixture running in its own `node --import tsx` process, with its stdout as lines. */
class Child {
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  /** Resolves once the process has exited and its stdio is drained. */
  readonly closed: Promise<Exit>;
  #exit: Exit | undefined;
  #watchers: Array<() => void> = [];

  constructor(fixture: string, args: string[]) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', join(FIXTURES, fixture), ...args], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out = this.proc.stdout;
    const err = this.proc.stderr;
    if (out === null || err === null) throw new Error('child stdio missing');
    err.setEncoding('utf8');
    err.on('data', (s: string) => {
      this.stderr += s;
    });
    createInterface({ input: out }).on('line', (line) => {
      this.lines.push(line);
      for (const w of [...this.#watchers]) w();
    });
    this.closed = new Promise((resolve) => {
      this.proc.on('close', (code, signal) => {
        this.#exit = { code, signal };
        for (const w of [...this.#watchers]) w();
        resolve({ code, signal });
      });
    });
    live.add(this);
    void this.closed.then(() => live.delete(this));
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  /** The first stdout line (seen so far or later) that matches, or reject if the child exits first. */
  waitForLine(match: (line: string) => boolean, what: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const line = this.lines.find(match);
        if (line !== undefined) done(() => resolve(line));
        else if (this.#exit !== undefined)
          done(() =>
            reject(
              new Error(
                `child ${this.pid} exited (${JSON.stringify(this.#exit)}) before ${what}; stdout: ${this.lines.slice(-5).join(' | ')}; stderr: ${this.stderr}`,
              ),
            ),
          );
      };
      const timer = setTimeout(
        () =>
          done(() =>
            reject(new Error(`no ${what} from child ${this.pid} in ${CHILD_TIMEOUT_MS} ms`)),
          ),
        CHILD_TIMEOUT_MS,
      );
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.#watchers = this.#watchers.filter((w) => w !== check);
        settle();
      };
      this.#watchers.push(check);
      check();
    });
  }

  /** SIGKILL (if still running) and wait until it is gone. */
  async kill(): Promise<Exit> {
    if (this.#exit === undefined) this.proc.kill('SIGKILL');
    return this.closed;
  }
}

const live = new Set<Child>();
const threads = new Set<Worker>();
const roots: string[] = [];

async function freshRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'persistency-mp-'));
  roots.push(root);
  return root;
}

afterEach(async () => {
  await Promise.all([...live].map((c) => c.kill()));
  await Promise.all([...threads].map((t) => t.terminate()));
  threads.clear();
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
// Worker threads with their own module instance

/** Start `thread-owner.ts` in a worker thread, tsx registered in it first. */
function startThreadOwner(
  root: string,
  jobId: string,
): {
  worker: Worker;
  next: () => Promise<ThreadOwnerMessage>;
  exited: Promise<number>;
} {
  if (!existsSync(TSX_ESM_API)) throw new Error(`tsx ESM api not found at ${TSX_ESM_API}`);
  const code = `import(${JSON.stringify(TSX_ESM_API.href)}).then((m) => { m.register(); return import(${JSON.stringify(THREAD_OWNER.href)}); })`;
  const worker = new Worker(code, { eval: true, workerData: { root, jobId } });
  threads.add(worker);
  const inbox: ThreadOwnerMessage[] = [];
  const waiting: Array<(m: ThreadOwnerMessage) => void> = [];
  let failure: Error | undefined;
  const failed: Array<(e: Error) => void> = [];
  worker.on('message', (m: ThreadOwnerMessage) => {
    const w = waiting.shift();
    if (w !== undefined) w(m);
    else inbox.push(m);
  });
  const fail = (e: Error) => {
    failure ??= e;
    for (const f of failed.splice(0)) f(failure);
  };
  worker.on('error', (e) => fail(e instanceof Error ? e : new Error(String(e))));
  const exited = new Promise<number>((resolve) => {
    worker.on('exit', (c) => {
      threads.delete(worker);
      fail(new Error(`thread-owner exited with code ${c}`));
      resolve(c);
    });
  });
  const next = () =>
    new Promise<ThreadOwnerMessage>((resolve, reject) => {
      const m = inbox.shift();
      if (m !== undefined) return resolve(m);
      if (failure !== undefined) return reject(failure);
      const timer = setTimeout(
        () => reject(new Error(`no message from thread-owner in ${CHILD_TIMEOUT_MS} ms`)),
        CHILD_TIMEOUT_MS,
      );
      waiting.push((msg) => {
        clearTimeout(timer);
        resolve(msg);
      });
      failed.push((e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  return { worker, next, exited };
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
