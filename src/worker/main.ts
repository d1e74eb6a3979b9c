/*
 * A worker thread's entry: it hosts jobs. The main thread attaches a job by sending the
 * job's own MessagePort with its open request; the thread opens the file and from then on
 * serves that job's frames on that port (see JobWorker). A thread started for one job
 * (`dedicated`) exits once that job is detached; a pool thread serves many jobs until it is
 * told to quit.
 */
import { accessSync, constants as fsConstants } from 'node:fs';
import { isMainThread, type MessagePort, parentPort } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { outOfFileDescriptors } from '../fd-limit.js';
import { fileMoved } from '../file-identity.js';
import { unsafeJobFile } from '../paths.js';
import {
  type ErrorInfo,
  type FromThread,
  type FromWorker,
  type OpenRequest,
  type ToThread,
  toErrorInfo,
} from '../protocol/messages.js';
import { KvBackend } from './backend.js';
import { JobClock } from './expiry.js';
import { JobWorker } from './job-worker.js';

/** Turn SQLite's terse open errors into ones that say what to do. */
function explainOpenFailure(dbPath: string, e: unknown): ErrorInfo {
  const info = toErrorInfo(e, dbPath);
  if (info.kind === 'Busy') {
    return {
      ...info,
      message: `${dbPath} is open in another process or Persistency instance (${info.message})`,
    };
  }
  const code = info.code ?? '';
  if (code === 'SQLITE_READONLY_DBMOVED') {
    // SQLite saw the file at the path change under it while it opened it.
    return { ...info, message: `${dbPath} was moved or replaced while the job was being opened` };
  }
  // Asked here, before this thread lets go of anything: from the main thread, descriptors
  // freed meanwhile (this thread's own, when it exits) would hide the cause.
  if (code.startsWith('SQLITE_CANTOPEN') && outOfFileDescriptors()) {
    return { ...info, code: 'EMFILE', message: `${info.message} (no file descriptor left)` };
  }
  if (dbPath !== ':memory:' && /^SQLITE_(READONLY|CANTOPEN|PERM|IOERR_LOCK|AUTH)/.test(code)) {
    try {
      accessSync(dbPath, fsConstants.W_OK);
    } catch {
      return { ...info, message: `${dbPath} is not writable by this process (${info.message})` };
    }
  }
  return info;
}

/**
 * Open a job's file, and say which file it is (see openJobDatabase); a released job's
 * reattach opens the file it had, or fails. Exported for a test.
 */
export function openJobFile(
  req: OpenRequest,
  clock: JobClock,
): { backend: KvBackend; fileId: string | undefined } {
  const { dbPath } = req;
  const unsafe = dbPath === ':memory:' ? undefined : unsafeJobFile(dbPath);
  if (unsafe !== undefined) throw Object.assign(new Error(unsafe.message), { code: unsafe.code });
  if (req.fileId !== undefined) {
    const moved = fileMoved(dbPath, req.fileId, 'while the job was released');
    if (moved !== undefined) throw Object.assign(new Error(moved.message), { code: moved.code });
  }
  const open = req.fileId === undefined ? req : { ...req, mustExist: true };
  const backend = KvBackend.open(dbPath, open, req.image, clock);
  return { backend, fileId: backend.fileId };
}

/** Between tries of an open that met a lock, on a shared thread. */
const OPEN_RETRY_MS = 5;

if (!isMainThread && parentPort) {
  const thread = parentPort;
  let hosted = 0;
  let quitting = false;
  let dedicated = false;
  /** Opens waiting to try again (see attach). */
  let retrying = 0;
  const exitIfIdle = (): void => {
    if (hosted === 0 && retrying === 0 && (quitting || dedicated)) thread.close();
  };

  const attach = (req: OpenRequest, port: MessagePort, since = performance.now()): void => {
    let backend: KvBackend;
    const clock = new JobClock();
    clock.injected = req.now;
    try {
      backend = openJobFile(req, clock).backend;
    } catch (e) {
      // On a shared thread a lock met at open (a reader's moment, such as a checkpointing
      // Litestream's) is waited out in pauses, not in SQLite's busy handler, which would
      // hold the thread's other jobs (the open itself waits statementBusyMs at most).
      const busy = toErrorInfo(e).kind === 'Busy';
      if (
        busy &&
        req.statementBusyMs !== undefined &&
        performance.now() - since < req.busyTimeoutMs
      ) {
        retrying++;
        setTimeout(() => {
          retrying--;
          attach(req, port, since);
        }, OPEN_RETRY_MS);
        return;
      }
      port.postMessage({
        t: 'openFailed',
        error: explainOpenFailure(req.dbPath, e),
      } satisfies FromWorker);
      port.close();
      exitIfIdle();
      return;
    }
    hosted++;
    const memory = req.dbPath === ':memory:';
    const job = new JobWorker(port, backend, req, clock, () => {
      hosted--;
      exitIfIdle();
    });
    port.on('message', (m) => job.onMessage(m));
    port.postMessage({
      t: 'ready',
      file: memory ? undefined : req.dbPath,
      fileId: backend.fileId,
    } satisfies FromWorker);
  };

  thread.on('message', (m: ToThread) => {
    if (m.t === 'quit') {
      quitting = true;
      exitIfIdle();
      return;
    }
    if (m.dedicated) dedicated = true;
    attach(m.req, m.port);
  });
  // better-sqlite3 loads SQLite's addon at its first open: load it now, so that a spare
  // thread's first open is quicker and needs no descriptor but the job's own.
  new Database(':memory:').close();
  thread.postMessage('booted' satisfies FromThread);
}
