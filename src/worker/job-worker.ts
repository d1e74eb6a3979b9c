/*
 * One job inside a worker thread: the only code that touches the job's SQLite connection.
 *
 * Group commit: when a frame arrives, the worker also drains every frame already queued
 * behind it, applies all their writes in one transaction (each batch under its own
 * savepoint, so a failing batch rolls back alone), runs their reads in order inside that
 * transaction (so reads see earlier writes), commits once, and answers. A read or flush
 * is never answered with data that a failed commit later takes back: replies that depend
 * on a write of the group wait for its commit; those before the group's first write see
 * only committed data and leave early, as they gather.
 *
 * On a thread shared by several jobs the work of a group pauses at turn ends (see
 * SliceClock) and resumes from the event loop; the job's later messages wait meanwhile.
 */
import { type MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import { OpenedFiles } from '../file-identity.js';
import {
  type ErrorInfo,
  type FromWorker,
  type OpenRequest,
  type ToWorker,
  toErrorInfo,
} from '../protocol/messages.js';
import { RequestReader } from '../protocol/request-reader.js';
import { Tag } from '../protocol/requests.js';
import type { KvBackend } from './backend.js';
import { Backups } from './backups.js';
import type { JobClock } from './expiry.js';
import { ExpirySweep } from './expiry-sweep.js';
import { Faults } from './faults.js';
import { GroupCommit } from './group-commit.js';
import { GroupReplies } from './group-replies.js';
import { Poller } from './poll.js';
import { JobReads } from './reads.js';
import { type Pause, SliceClock } from './slice.js';
import { Snapshots } from './snapshots.js';
import { Watches } from './watches.js';

/** On a shared thread, how long to wait before asking again for a write lock held elsewhere. */
const LOCK_RETRY_MS = 5;
/** Stop draining the queue into one group past this many bytes of frames. */
const MAX_GROUP_BYTES = 64 * 1024 * 1024;
/** Jobs of this thread whose work is paused for the others' turns (see ReadStats). */
let pausedJobs = 0;

export class JobWorker {
  readonly #port: MessagePort;
  readonly #backend: KvBackend;
  readonly #memory: boolean;
  /** The file and WAL opened (device and inode); undefined for `:memory:`. */
  readonly #files: OpenedFiles | undefined;
  readonly #commit: GroupCommit;
  readonly #replies: GroupReplies;
  readonly #reads: JobReads;
  readonly #snapshots: Snapshots;
  readonly #backups: Backups;
  readonly #watches = new Watches();
  readonly #clock: JobClock;
  readonly #sweep: ExpirySweep;
  readonly #faults = new Faults();
  readonly #slice: SliceClock;
  readonly #poller: Poller | undefined;
  /** Called once the job's connection and port are closed. */
  readonly #detached: () => void;

  /** Messages that arrived while a group was paused, in order. */
  #inbox: ToWorker[] = [];
  /** The work in progress, when it paused (see SliceClock). */
  #task: Generator<Pause, void, void> | undefined;
  #slices = 0;
  #paused = false;
  #besidePaused = 0;
  #frames = 0;

  /** The reader of the last frame: its remembered category carries over to the next. */
  #reader: RequestReader | undefined;

  constructor(
    port: MessagePort,
    backend: KvBackend,
    req: OpenRequest,
    clock: JobClock,
    detached: () => void,
  ) {
    this.#port = port;
    this.#clock = clock;
    this.#backend = backend;
    this.#memory = req.dbPath === ':memory:';
    const fileId = backend.fileId;
    this.#files = fileId === undefined ? undefined : new OpenedFiles(req.dbPath, fileId);
    this.#detached = detached;
    this.#replies = new GroupReplies(port, () => this.#watches.take());
    const snapshotBusyMs = Math.min(req.statementBusyMs ?? req.busyTimeoutMs, req.busyTimeoutMs);
    this.#slice = new SliceClock(req.sliceMs);
    this.#reads = new JobReads(backend, this.#replies, this.#faults, this.#slice);
    this.#commit = new GroupCommit(
      backend,
      this.#replies,
      this.#faults,
      this.#slice,
      req.busyTimeoutMs,
      this.#watches,
    );
    this.#snapshots = new Snapshots(
      backend,
      this.#replies,
      req.dbPath,
      snapshotBusyMs,
      this.#slice,
      () => this.#fileGone(),
      clock,
    );
    this.#backups = new Backups(port, backend, req.dbPath, snapshotBusyMs, () => this.#fileGone());
    this.#sweep = new ExpirySweep(backend, clock, this.#watches, this.#replies);
    this.#poller = req.poll === undefined ? undefined : new Poller(port, req.poll);
  }

  /** The port's listener: start on the message, or queue it behind paused work. */
  onMessage(m: ToWorker): void {
    if (this.#task !== undefined) {
      this.#inbox.push(m);
      return;
    }
    this.#sweep.cancel();
    if (pausedJobs > 0) this.#besidePaused++;
    this.#task = this.#serve(m);
    this.#resume();
  }

  /** The next expiry came while the job was idle: sweep. */
  readonly #wake = (): void => {
    if (this.#task !== undefined || this.#detachedNow) return;
    this.#task = this.#sweepWhenIdle();
    this.#resume();
  };

  *#sweepWhenIdle(): Generator<Pause, void, void> {
    yield* this.#sweep.run(this.#waiting);
    const next = this.#inbox.shift();
    if (next !== undefined) yield* this.#serve(next);
  }

  /** Whether requests of the job wait behind the work in progress. */
  readonly #waiting = (): boolean => this.#inbox.length > 0;

  #detachedNow = false;

  readonly #resume = (): void => {
    if (this.#paused) pausedJobs--;
    this.#paused = false;
    const task = this.#task as Generator<Pause, void, void>;
    this.#slice.start();
    const step = task.next();
    if (step.done === true) {
      this.#task = undefined;
      if (!this.#detachedNow) this.#sweep.schedule(this.#wake);
      return;
    }
    this.#slices++;
    this.#paused = true;
    pausedJobs++;
    if (step.value === 'wait') setTimeout(this.#resume, LOCK_RETRY_MS);
    else setImmediate(this.#resume);
  };

  /**
   * Handle one message and everything queued behind it, group by group, then commit and
   * answer; while the next message arrives within the poll window, go on with it.
   */
  *#serve(first: ToWorker): Generator<Pause, void, void> {
    let msg: ToWorker | undefined = first;
    while (msg !== undefined) {
      this.#replies.answered = false;
      if (yield* this.#group(msg)) return;
      if (this.#sweep.due()) yield* this.#sweep.run(this.#waiting);
      yield* this.#reads.ahead.readAhead(); // a pager's next page (see PageAhead)
      // Later messages come from the port's listener (other jobs of the thread go first),
      // or, right after an answer, from the poll.
      msg = this.#inbox.shift() ?? (this.#replies.answered ? this.#poller?.next() : undefined);
    }
  }

  #next(): ToWorker | undefined {
    if (this.#inbox.length > 0) return this.#inbox.shift();
    return receiveMessageOnPort(this.#port)?.message as ToWorker | undefined;
  }

  /** One group: `first` and everything queued behind it. True when the job is detached. */
  *#group(first: ToWorker): Generator<Pause, boolean, void> {
    let msg: ToWorker | undefined = first;
    let bytes = 0;
    while (msg !== undefined) {
      if (msg instanceof Uint8Array) {
        yield* this.#frame(msg);
        bytes += msg.length;
      } else {
        switch (msg.t) {
          case 'close':
          case 'release':
            this.#endGroup();
            if (this.#detach(msg.t)) return true;
            break;
          case 'backup':
            this.#commit.commit(); // the copy holds every write sent before it
            this.#backups.start(msg.id, msg.dest);
            break;
          case 'crash':
            if (msg.how === 'exit') process.exit(70);
            throw new Error('persistency worker: crash requested by a test');
          case 'inject':
            if (msg.fault === 'kill-in-migration')
              this.#commit.migrationHook = () => process.kill(process.pid, 'SIGKILL');
            else this.#faults.add(msg.fault, msg.skipWrites);
            break;
        }
      }
      if (bytes >= MAX_GROUP_BYTES) break;
      msg = this.#next();
    }
    this.#endGroup();
    return false;
  }

  *#frame(buf: Uint8Array): Generator<Pause, void, void> {
    this.#frames++;
    const commit = this.#commit;
    commit.frame(buf);
    const r = new RequestReader(buf).follow(this.#reader);
    this.#reader = r;
    const reads = this.#reads;
    while (!r.done) {
      if (this.#slice.due()) yield commit.pause();
      const tag = r.tag();
      switch (tag) {
        case Tag.Batch: {
          const at = r.at;
          if (this.#slice.shared) yield* commit.awaitWriteLock(buf, at);
          if (!this.#faults.any && commit.run(r, at)) break; // r is past the run
          r.reopen(at);
          if (this.#slice.shared) yield* commit.batchInSlices(r);
          else commit.batch(r);
          r.pos = r.end;
          break;
        }
        case Tag.Atomic: {
          if (this.#slice.shared) yield* commit.awaitWriteLock(buf, r.at);
          r.batch();
          // Acknowledged only if durable in the job's file: not once that file is gone.
          const gone = this.#fileGone();
          if (gone === undefined) yield* commit.atomic(r);
          else commit.refuse(buf, r.at, gone);
          r.pos = r.end;
          break;
        }
        case Tag.WatchOpen:
          r.watchOpen();
          this.#watches.open(r.iterator, r.cat, r.key, r.stop);
          break;
        case Tag.WatchClose:
          this.#watches.close(r.iteratorId());
          break;
        case Tag.Now:
          this.#clock.injected = r.f64();
          break;
        case Tag.Get:
          r.keyRequest();
          if (!reads.getRun(r)) reads.get(r.cat, r.key);
          break;
        case Tag.Exists:
          r.keyRequest();
          reads.exists(r.cat, r.key);
          break;
        case Tag.Scan:
          r.scan();
          yield* reads.scan(r.cat, r.key, r.stop, r.reverse, r.limit, commit.clean);
          break;
        case Tag.Count:
          r.count();
          yield* reads.count(r.cat, r.key, r.stop);
          break;
        case Tag.DeleteAcked: {
          if (this.#slice.shared) yield* commit.awaitWriteLock(buf, r.at);
          r.keyRequest();
          const gone = this.#fileGone();
          if (gone === undefined) commit.deleteAcked(buf, r.at, r.cat, r.key);
          else commit.refuse(buf, r.at, gone);
          break;
        }
        case Tag.GetMany: {
          const keys = r.getMany(); // sets r.cat
          yield* reads.getMany(r.cat, keys, commit.clean);
          break;
        }
        case Tag.IterOpen:
          r.iterOpen();
          commit.commit(); // the snapshot holds every write issued before it
          yield* this.#snapshots.open(
            r.iterator,
            { category: r.cat, start: r.key, stop: r.stop, reverse: r.reverse },
            r.limit,
            r.pageSize,
          );
          break;
        case Tag.IterNext: {
          // A page of a snapshot taken before the group's writes: a lost group keeps it.
          const at = this.#replies.w.pos;
          yield* this.#snapshots.next(r.iteratorId());
          commit.dirty.keep(at);
          break;
        }
        case Tag.IterClose:
          this.#snapshots.close(r.iteratorId());
          break;
        case Tag.Flush:
          commit.flush(buf, r.at, this.#fileGone());
          break;
        default:
          throw new Error(`persistency worker: unknown frame tag ${tag} at ${r.at}`);
      }
      if (commit.clean && this.#replies.full) this.#replies.send(0);
    }
  }

  // -------------------------------------------------------------------------------------
  // Writes

  /** Why the job's path (or its WAL) no longer holds the file it opened, if it does not. */
  #fileGone(): ErrorInfo | undefined {
    return this.#files?.moved('while the job was open');
  }

  /** Commit the group's transaction, then send every reply of the group. */
  #endGroup(): void {
    this.#commit.commit();
    this.#sweep.written();
    this.#reads.endGroup();
    this.#replies.send(this.#frames);
    this.#frames = 0;
  }

  /**
   * Checkpoint and close the connection, say so on the port, and close it. A `:memory:`
   * job whose image cannot be taken is not released (its data is nowhere else): it says
   * so and stays. Returns whether the job is detached.
   */
  #detach(how: 'close' | 'release'): boolean {
    this.#snapshots.closeAll(); // before the checkpoint, which a snapshot would hold back
    this.#backups.endAll({
      kind: 'Closed',
      message: `the job was ${how === 'close' ? 'closed' : 'released'} before the backup was finished`,
    });
    this.#sweep.cancel();
    let image: Uint8Array | undefined;
    let error = how === 'close' ? this.#fileGone() : undefined;
    try {
      if (this.#memory) {
        this.#faults.fireSerialize();
        image = this.#backend.serialize();
      } else this.#backend.checkpoint();
    } catch (e) {
      error ??= toErrorInfo(e, how === 'close' ? 'checkpoint on close' : 'release');
      if (how === 'release' && this.#memory) {
        this.#port.postMessage({ t: 'releaseDeclined', error } satisfies FromWorker);
        return false;
      }
    }
    this.#detachedNow = true; // no sweep from now on (a declined release goes on as before)
    try {
      this.#backend.close();
    } catch (e) {
      error ??= toErrorInfo(e, 'close');
    }
    const msg: FromWorker = {
      t: how === 'close' ? 'closed' : 'released',
      image,
      error,
      unflushed: this.#commit.takeUnflushed(),
      polls: { ...(this.#poller?.stats ?? Poller.none) },
      reads: {
        batched: this.#reads.batched,
        parts: this.#reads.parts,
        readAhead: this.#reads.ahead.served,
        slices: this.#slices,
        besidePaused: this.#besidePaused,
      },
    };
    this.#port.postMessage(msg, image === undefined ? [] : [image.buffer as ArrayBuffer]);
    this.#port.close();
    this.#inbox = [];
    this.#detached();
    return true;
  }
}
