// Fixtures in other processes and other threads, for the ownership tests: readiness,
// answers and errors come over their stdout or messages, never from sleeps. Everything
// started here is stopped by `stopChildren()` (call it in afterEach).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import type { ThreadOwnerMessage } from '../fixtures/thread-owner.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const FIXTURES = join(REPO, 'test', 'fixtures');
const TSX_ESM_API = new URL('../../node_modules/tsx/dist/esm/api/index.mjs', import.meta.url);
const THREAD_OWNER = new URL('../fixtures/thread-owner.ts', import.meta.url);
/** A guard against a hung child, not a synchronisation device. */
export const CHILD_TIMEOUT_MS = 20_000;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const live = new Set<Child>();
const threads = new Set<Worker>();

/** SIGKILL every child still running and terminate every thread; resolves once all are gone. */
export async function stopChildren(): Promise<void> {
  await Promise.all([...live].map((c) => c.kill()));
  await Promise.all([...threads].map((t) => t.terminate()));
  threads.clear();
}

/**
 * A fixture of test/fixtures running in its own process, with its stdout as lines: a `.ts`
 * one under `node --import tsx`, a `.mjs` one under plain `node`.
 */
export class Child {
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  /** Resolves once the process has exited and its stdio is drained. */
  readonly closed: Promise<Exit>;
  #exit: Exit | undefined;
  #watchers: Array<() => void> = [];

  constructor(fixture: string, args: string[]) {
    const loader = fixture.endsWith('.ts') ? ['--import', 'tsx'] : [];
    this.proc = spawn(process.execPath, [...loader, join(FIXTURES, fixture), ...args], {
      cwd: REPO,
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
  waitForLine(match: (line: string, index: number) => boolean, what: string): Promise<string> {
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

  /** Write one JSON command line to stdin and wait for the next stdout line, parsed. */
  async ask<T>(command: object): Promise<T> {
    const index = this.lines.length;
    this.proc.stdin?.write(`${JSON.stringify(command)}\n`);
    const line = await this.waitForLine(
      (_, i) => i === index,
      `an answer to ${JSON.stringify(command)}`,
    );
    return JSON.parse(line) as T;
  }

  /** SIGKILL (if still running) and wait until it is gone. */
  async kill(): Promise<Exit> {
    if (this.#exit === undefined) this.proc.kill('SIGKILL');
    return this.closed;
  }
}

/** `thread-owner.ts` running in a worker thread of this process (its own Persistency). */
export interface ThreadOwner {
  worker: Worker;
  next: () => Promise<ThreadOwnerMessage>;
  exited: Promise<number>;
}

/** Start `thread-owner.ts` in a worker thread, tsx registered in it first. */
export function startThreadOwner(root: string, jobId: string): ThreadOwner {
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

/**
 * Run test/fixtures/`name` in a child `node` under `ulimit -n limit`, with `args`; the last
 * line it prints, parsed as JSON.
 */
export async function underFdLimit(
  limit: number,
  name: string,
  ...args: string[]
): Promise<unknown> {
  const fixture = join(FIXTURES, name);
  const { stdout } = await promisify(execFile)(
    'bash',
    [
      '-c',
      `ulimit -n ${limit} && exec "${process.execPath}" --import tsx "${fixture}" "$@"`,
      'bash',
      ...args,
    ],
    { cwd: REPO, timeout: 60_000 },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1) as string);
}
