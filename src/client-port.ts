/*
 * A job client's end of the thread it is attached to (src/threads.ts): posting to the
 * port (or keeping messages, in order, until the job is attached again), counting the
 * frames the thread has not answered yet, keeping the process alive only while something
 * waits on the thread, and letting the port go when the job detaches or the thread dies.
 */
import { receiveMessageOnPort } from 'node:worker_threads';
import type { FromWorker, ToWorker } from './protocol/messages.js';
import type { Attachment } from './threads.js';

/** Fire-and-forget writes (batches) and their ops, counted from the job's first on. */
export interface WriteCount {
  readonly writes: number;
  readonly ops: number;
}

const NONE: WriteCount = { writes: 0, ops: 0 };

export class ClientPort {
  #attachment: Attachment | undefined;
  #referenced = false;
  /** Messages waiting for the job to be attached (again), in order. */
  #waiting: [ToWorker, ArrayBuffer[], WriteCount | undefined][] = [];
  /** Per frame posted whose group has not replied yet: the writes issued up to its end. */
  readonly #inFlight: WriteCount[] = [];
  /**
   * The writes issued up to the end of the last frame posted, and those the thread has
   * confirmed: a group replies after its commit, and a reply to a request says that every
   * write issued before it was committed (or reported failed).
   */
  #posted = NONE;
  #confirmed = NONE;
  /** The fire-and-forget writes issued so far, and their ops; the last mark taken of them. */
  #writes = 0;
  #ops = 0;
  #mark = NONE;

  /** A fire-and-forget write of `ops` ops went into the turn's frame. */
  wrote(ops: number): void {
    this.#writes++;
    this.#ops += ops;
  }

  /** The writes issued so far: a mark that the thread's replies confirm (reads share one). */
  issued(): WriteCount {
    if (this.#mark.writes !== this.#writes) this.#mark = { writes: this.#writes, ops: this.#ops };
    return this.#mark;
  }

  get framesInFlight(): number {
    return this.#inFlight.length;
  }

  /**
   * A reply message finished the oldest `frames` frames and answered requests issued
   * after the writes `answeredAfter`: the writes up to either are confirmed.
   */
  settled(frames: number, answeredAfter: WriteCount | undefined): void {
    for (const upTo of [frames > 0 ? this.#inFlight[frames - 1] : undefined, answeredAfter])
      if (upTo !== undefined && upTo.writes > this.#confirmed.writes) this.#confirmed = upTo;
    this.#inFlight.splice(0, frames);
  }

  /** The writes posted that the thread never confirmed (it died); taken once. */
  takeUnconfirmed(): WriteCount {
    const [posted, confirmed] = [this.#posted, this.#confirmed];
    this.#confirmed = posted;
    this.#inFlight.length = 0;
    return { writes: posted.writes - confirmed.writes, ops: posted.ops - confirmed.ops };
  }

  get attached(): boolean {
    return this.#attachment !== undefined;
  }

  /** Take the attachment's port; its messages go to `onMessage` from now on. */
  connect(a: Attachment, onMessage: (m: FromWorker) => void): void {
    this.#attachment = a;
    this.#referenced = true; // the handshake's listener left the port referenced
    a.keepAlive(true);
    a.listen(onMessage);
  }

  /** Messages waiting for an attach. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Post to the thread if `now` (the job is attached and takes work), else keep the message
   * for the next attach; true if it was posted.
   */
  post(
    msg: ToWorker,
    transfer: ArrayBuffer[] = [],
    now = true,
    // A frame holds the writes issued up to its end, which is now.
    upTo = msg instanceof Uint8Array ? this.issued() : undefined,
  ): boolean {
    const a = this.#attachment;
    if (!now || a === undefined) {
      this.#waiting.push([msg, transfer, upTo]);
      return false;
    }
    if (msg instanceof Uint8Array) {
      this.#posted = upTo ?? this.#posted;
      this.#inFlight.push(this.#posted);
    }
    a.port.postMessage(msg, transfer);
    return true;
  }

  /** Post what waited for the attach. */
  postWaiting(): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const [msg, transfer, upTo] of waiting) this.post(msg, transfer, true, upTo);
  }

  /**
   * What waited for an attach that will not come (it failed, or the thread died), for the
   * caller to report with the turn's frame: every write issued and not posted. With no
   * frame in flight (a refused reattach), nothing issued so far is left to confirm.
   */
  takeWaiting(): ToWorker[] {
    const waiting = this.#waiting.map(([msg]) => msg);
    this.#waiting = [];
    if (this.#inFlight.length === 0) this.#posted = this.#confirmed = this.issued();
    return waiting;
  }

  /** Let the port keep the process alive while `busy`, and not otherwise. */
  keepProcess(busy: boolean): void {
    const a = this.#attachment;
    if (a === undefined || busy === this.#referenced) return;
    this.#referenced = busy;
    if (busy) a.port.ref();
    else a.port.unref();
    a.keepAlive(busy); // the port alone would not: it closes when the thread dies
  }

  /** The thread said `closed` or `released`: resolves once a job's own thread exited. */
  detach(): Promise<void> {
    const a = this.#attachment as Attachment;
    this.#forget();
    this.takeUnconfirmed(); // none: the thread answered every frame before it let go
    return a.detach();
  }

  /**
   * The thread died: hand `onMessage` what it sent before dying. False when one of those
   * messages detached the job (it closed or was released before the thread died);
   * otherwise the port is closed and true (what it left unconfirmed: takeUnconfirmed).
   */
  drain(onMessage: (m: FromWorker) => void): boolean {
    const port = this.#attachment?.port;
    if (port !== undefined) {
      for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
        onMessage(m.message as FromWorker);
        if (!this.attached) return false;
      }
      port.close();
    }
    this.#forget();
    return true;
  }

  #forget(): void {
    if (this.#referenced) this.#attachment?.keepAlive(false);
    this.#attachment = undefined;
    this.#referenced = false;
  }
}
