/*
 * The worker threads of one Persistency. Under `'per-job'` every job gets a thread of its
 * own (taken from a spare started ahead, since booting a thread is most of an open's cost),
 * which exits when the job is closed or released. Under `workerThreads: N` a pool of N
 * threads, started as jobs need them, serves every job; a job stays pinned to its pool
 * thread while it is open. Either way a job talks to its thread over a MessagePort of its
 * own, and a thread that dies tells only the jobs it was serving.
 */
import {
  MessageChannel,
  type MessagePort,
  receiveMessageOnPort,
  type Worker,
} from 'node:worker_threads';
import { err, ok, type Result } from 'neverthrow';
import { codeOf, PersistencyError } from './errors.js';
import { explainFdExhaustion } from './fd-limit.js';
import {
  type FromWorker,
  fromErrorInfo,
  type OpenRequest,
  type ToThread,
} from './protocol/messages.js';
import { spawnWorker } from './worker/spawn.js';

/** How a job learns that its thread died. */
export type OnThreadDeath = (error: PersistencyError) => void;

interface Thread {
  readonly worker: Worker;
  /** The jobs attached now (and attaches in progress): told if the thread dies. */
  readonly jobs: Set<OnThreadDeath>;
  readonly exited: Promise<void>;
  /** Settles once the thread has loaded its modules (or exited without). */
  readonly booted: Promise<void>;
  alive: boolean;
  /** Jobs waiting on the thread: while any does, the thread keeps the process alive. */
  waiting: number;
  /** Someone waits for the thread's exit: it keeps the process alive from then on. */
  exitAwaited: boolean;
}

/** A job attached to a thread: its port and how to let go of the thread. */
export interface Attachment {
  readonly port: MessagePort;
  readonly file: string | undefined;
  /** The file's identity, for a reattach to check (see OpenRequest.fileId). */
  readonly fileId: string | undefined;
  /** Route the port's messages (until now the handshake read them). */
  listen(handler: (m: FromWorker) => void): void;
  /**
   * The job waits on the thread (`true`) or no longer does: the thread then keeps the
   * process alive too, so that its death is heard even when nothing else holds the loop.
   */
  keepAlive(waiting: boolean): void;
  /** The port is closed (`closed`/`released` came): resolves once a job's own thread exited. */
  detach(): Promise<void>;
}

export class WorkerThreads {
  readonly #pool: (Thread | undefined)[] | undefined;
  /** Open jobs pinned to each pool thread, attached or released. */
  readonly #pins: number[] | undefined;
  readonly #prestart: boolean;
  readonly #openTimeoutMs: number;
  #spare: Thread | undefined;
  #running = 0;
  #closing = false;
  /** Every thread not known to have exited: close() waits for them. */
  readonly #all = new Set<Thread>();

  constructor(mode: number | 'per-job', prestart: boolean, openTimeoutMs: number) {
    this.#pool = mode === 'per-job' ? undefined : new Array<Thread | undefined>(mode);
    this.#pins = mode === 'per-job' ? undefined : new Array<number>(mode).fill(0);
    this.#prestart = prestart && mode === 'per-job';
    this.#openTimeoutMs = openTimeoutMs;
  }

  /** Threads running now. */
  get running(): number {
    return this.#running;
  }

  /**
   * The pool thread a new job is pinned to (the one with the fewest jobs), or undefined
   * under `'per-job'`. Pair with `unpin` when the job is no longer open.
   */
  pin(): number | undefined {
    const pins = this.#pins;
    if (pins === undefined) return undefined;
    let best = 0;
    for (let i = 1; i < pins.length; i++)
      if ((pins[i] as number) < (pins[best] as number)) best = i;
    pins[best] = (pins[best] as number) + 1;
    return best;
  }

  unpin(index: number | undefined): void {
    const pins = this.#pins;
    if (index === undefined || pins === undefined) return;
    pins[index] = Math.max(0, (pins[index] as number) - 1);
  }

  /**
   * Open a job on a thread: its own (`pin` undefined) or pool thread `pin`. Resolves once
   * the thread has opened the file, or with why it could not. An attach that times out
   * tells `abandoned` when the thread, which may still open the file, has let go of it.
   */
  attach(
    req: OpenRequest,
    pin: number | undefined,
    died: OnThreadDeath,
    abandoned?: (lettingGo: Promise<void>) => void,
  ): Promise<Result<Attachment, PersistencyError>> {
    if (this.#closing) {
      return Promise.resolve(err(new PersistencyError('Closed', 'the Persistency is closing')));
    }
    let thread: Thread;
    const { port1, port2 } = new MessageChannel();
    try {
      thread = pin === undefined ? this.#ownThread() : this.#poolThread(pin);
      const msg: ToThread = { t: 'attach', req, port: port2, dedicated: pin === undefined };
      thread.worker.postMessage(msg, [port2]);
    } catch (e) {
      port1.close();
      const code = (e as { code?: string }).code;
      const error = new PersistencyError(
        'Backend',
        `cannot start a worker thread: ${(e as Error).message}`,
        { code: code ?? 'ERR_WORKER_INIT_FAILED', cause: e },
      );
      return Promise.resolve(err(explainFdExhaustion(error)));
    }
    return new Promise((settle) => {
      let handler: ((m: FromWorker) => void) | undefined;
      let settled = false;
      /** The thread said why it could not open (its exit is not a death then). */
      let openFailed = false;
      /** Set when the attach timed out: called once the thread has let go of the file. */
      let letGo: (() => void) | undefined;
      const finish = (r: Result<Attachment, PersistencyError>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (r.isErr() && letGo === undefined) thread.jobs.delete(onDeath);
        // Whatever failed (SQLite could not open, a thread could not load its modules),
        // running out of descriptors is reported as such.
        settle(r.mapErr(explainFdExhaustion));
      };
      const attachment: Attachment = {
        port: port1,
        file: undefined,
        fileId: undefined,
        listen: (h) => {
          handler = h;
        },
        keepAlive: (waiting) => keepAlive(thread, waiting),
        detach: () => {
          thread.jobs.delete(onDeath);
          port1.close();
          if (pin !== undefined) return Promise.resolve();
          awaitExit(thread); // whoever waits for the exit keeps the process alive
          return thread.exited;
        },
      };
      /** The thread's first word on the job's port: ready, or why it could not open. */
      const handshake = (m: FromWorker) => {
        if (m instanceof Uint8Array) return;
        if (m.t === 'openFailed') {
          openFailed = true;
          port1.close();
          // Explained now, before the thread exits and gives its descriptors back.
          const failed = err(explainFdExhaustion(fromErrorInfo(m.error)));
          if (pin !== undefined) {
            finish(failed);
            return;
          }
          // A job's own thread exits after a failed open: no thread outlives the call. Its
          // exit is the end of this attach, not the death of an open job.
          thread.jobs.delete(onDeath);
          awaitExit(thread);
          handler = () => {};
          void thread.exited.then(() => finish(failed));
        } else if (m.t === 'ready') {
          handler = () => {}; // until the job listens
          finish(ok({ ...attachment, file: m.file, fileId: m.fileId }));
        }
      };
      const lettingGo = () => {
        thread.jobs.delete(onDeath);
        port1.close();
        letGo?.();
      };
      const onDeath: OnThreadDeath = (error) => {
        if (letGo !== undefined) {
          lettingGo();
          return;
        }
        if (handler !== undefined) {
          died(error);
          return;
        }
        // A thread that exits after saying why it could not open: read that first. Its exit
        // then ends the attach with that reason (the handshake saw to it), not as a death.
        for (let m = receiveMessageOnPort(port1); m !== undefined && !settled && !openFailed; ) {
          handshake(m.message as FromWorker);
          if (!settled && !openFailed) m = receiveMessageOnPort(port1);
        }
        if (openFailed) return;
        if (handler !== undefined) {
          died(error);
          return;
        }
        const message = `job worker died before it was ready: ${error.message}`;
        finish(err(new PersistencyError('Backend', message, { cause: error, code: error.code })));
      };
      thread.jobs.add(onDeath);
      const timer = setTimeout(() => {
        if (openFailed) return; // the thread's exit ends the attach with its reason
        // The thread may still open the file: have it close it again at once, and say when
        // it has (closed, could not open, or died), so the file is not given up before.
        port1.postMessage({ t: 'close' }); // the port keeps the process up until it has
        abandoned?.(
          new Promise((resolve) => {
            letGo = resolve;
          }),
        );
        handler = (m) => {
          if (!(m instanceof Uint8Array) && (m.t === 'closed' || m.t === 'openFailed')) lettingGo();
        };
        const message = `job worker for ${req.dbPath} was not ready within ${this.#openTimeoutMs} ms`;
        finish(err(new PersistencyError('Timeout', message)));
      }, this.#openTimeoutMs);
      port1.on('message', (m: FromWorker) => {
        if (handler !== undefined) handler(m);
        else handshake(m);
      });
    });
  }

  /** Settles once the prestarted spare, if any, has booted or died (a test waits on it). */
  spareBooted(): Promise<void> {
    return this.#spare?.booted ?? Promise.resolve();
  }

  /** Tell every thread to quit once it serves no job; resolves when all have exited. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#spare = undefined;
    for (const thread of this.#all) {
      awaitExit(thread); // close() waits for it
      thread.worker.postMessage({ t: 'quit' } satisfies ToThread);
    }
    await Promise.all([...this.#all].map((t) => t.exited));
  }

  #start(): Thread {
    const worker = spawnWorker();
    worker.unref(); // a job's port keeps the process alive while it waits on the thread
    let failure: unknown;
    let exited!: () => void;
    let booted!: () => void;
    const thread: Thread = {
      worker,
      jobs: new Set(),
      alive: true,
      waiting: 0,
      exitAwaited: false,
      exited: new Promise((resolve) => {
        exited = resolve;
      }),
      booted: new Promise((resolve) => {
        booted = resolve;
      }),
    };
    worker.once('message', () => booted());
    this.#running++;
    this.#all.add(thread);
    worker.on('error', (e) => {
      failure ??= e;
    });
    worker.on('exit', (code) => {
      thread.alive = false;
      this.#running--;
      this.#all.delete(thread);
      if (this.#spare === thread) this.#spare = undefined;
      // A thread's death has a code: the failure's own, or WORKER_DIED.
      const error =
        failure === undefined
          ? new PersistencyError('Backend', `worker exited unexpectedly with code ${code}`, {
              code: 'WORKER_DIED',
            })
          : new PersistencyError(
              'Backend',
              `worker failed: ${failure instanceof Error ? `${failure.name}: ${failure.message}` : String(failure)}`,
              { cause: failure, code: codeOf(failure) ?? 'WORKER_DIED' },
            );
      for (const died of [...thread.jobs]) died(error);
      thread.jobs.clear();
      booted();
      exited();
    });
    return thread;
  }

  /** A thread of a job's own: the spare if there is one, then a new spare for the next. */
  #ownThread(): Thread {
    const spare = this.#spare;
    this.#spare = undefined;
    const thread = spare?.alive === true ? spare : this.#start();
    if (this.#prestart && !this.#closing) {
      try {
        this.#spare = this.#start();
      } catch {
        // No spare: the next open starts its own thread.
      }
    }
    return thread;
  }

  #poolThread(index: number): Thread {
    const pool = this.#pool as (Thread | undefined)[];
    const current = pool[index];
    if (current?.alive === true) return current;
    const thread = this.#start();
    pool[index] = thread;
    return thread;
  }
}

/** A job waits on `thread`, or stops waiting: ref the thread while any job waits. */
function keepAlive(thread: Thread, waiting: boolean): void {
  thread.waiting += waiting ? 1 : -1;
  if (thread.exitAwaited) return;
  if (waiting && thread.waiting === 1) thread.worker.ref();
  else if (!waiting && thread.waiting === 0) thread.worker.unref();
}

/** Someone waits for `thread` to exit: it keeps the process alive until it has. */
function awaitExit(thread: Thread): void {
  thread.exitAwaited = true;
  thread.worker.ref();
}
