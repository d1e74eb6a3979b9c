/*
 * The answers of one job's current group: reply records in request order, the errors they
 * point to and the batches that failed, sent to the job's port as one message.
 */
import type { MessagePort } from 'node:worker_threads';
import { ByteWriter, takeBytes } from '../protocol/bytes.js';
import {
  type BatchFailure,
  type ErrorInfo,
  type FromWorker,
  toErrorInfo,
} from '../protocol/messages.js';
import { REPLY_HEADER, writeError, writeFramesDone } from '../protocol/replies.js';
import type { TakenChanges } from './watches.js';

/**
 * Replies that depend on no uncommitted write are sent before the group ends once this
 * many have gathered (or this many bytes), so the main thread works on them while the
 * worker goes on: reads pipeline instead of waiting for the whole group (README,
 * Performance, for how the figures were chosen).
 */
const EARLY_REPLIES = 64;
const EARLY_REPLY_BYTES = 64 * 1024;

export class GroupReplies {
  /** The records gathered so far, after the header. */
  w = GroupReplies.#writer();
  count = 0;
  /** The current group answered a request (read, flush, deleteAcked): someone awaits it. */
  answered = false;
  #errors: ErrorInfo[] = [];
  #failures: BatchFailure[] = [];
  #attached: Uint8Array[] = [];
  readonly #port: MessagePort;
  /** The committed changes for the job's watchers, sent with the replies. */
  readonly #changes: () => TakenChanges | undefined;

  constructor(port: MessagePort, changes: () => TakenChanges | undefined) {
    this.#port = port;
    this.#changes = changes;
  }

  static #writer(): ByteWriter {
    const w = new ByteWriter(REPLY_HEADER + 256);
    w.pos = REPLY_HEADER;
    return w;
  }

  /** `n` reads answered with the records just written. */
  ok(n = 1): void {
    this.count += n;
    this.answered = true;
  }

  error(error: ErrorInfo): void {
    writeError(this.w, this.#errors.length);
    this.#errors.push(error);
    this.count++;
    this.answered = true;
  }

  /** A read failed: drop what it wrote from `pos` on and answer it with the error. */
  failedAt(pos: number, e: unknown): void {
    this.w.pos = pos;
    this.error(toErrorInfo(e));
  }

  /**
   * Send `bytes` with the replies, handed over rather than copied (the caller keeps no
   * reference); returns the index an ATTACHED_ROWS record names it by.
   */
  attach(bytes: Uint8Array): number {
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
    this.#attached.push(whole ? bytes : bytes.slice());
    return this.#attached.length - 1;
  }

  batchFailed(failure: BatchFailure): void {
    this.#failures.push(failure);
  }

  /** Enough gathered to send before the group ends. */
  get full(): boolean {
    return this.count >= EARLY_REPLIES || this.w.pos >= EARLY_REPLY_BYTES;
  }

  /**
   * Send the replies gathered so far, headed by how many frames are finished (0 for replies
   * sent before their group ends), with the errors they refer to and the batch failures
   * found so far: a flush answered early with Err must not arrive before the writeFailed
   * events it counts.
   */
  send(framesDone: number): void {
    const w = this.w;
    const taken = this.#changes();
    const changes = taken?.chunks;
    if (framesDone === 0 && this.count === 0 && w.pos === REPLY_HEADER && changes === undefined)
      return;
    writeFramesDone(w, framesDone);
    const [bytes, transfer, handedOver] = takeBytes(w);
    const failures = this.#failures;
    const attached = this.#attached;
    const simple =
      this.#errors.length === 0 &&
      failures.length === 0 &&
      attached.length === 0 &&
      changes === undefined;
    const msg: FromWorker = simple
      ? bytes
      : {
          t: 'replies',
          bytes,
          errors: this.#errors,
          failures,
          attached,
          changes,
          changeFrames: taken?.frames,
        };
    for (const a of attached) transfer.push(a.buffer as ArrayBuffer);
    if (changes !== undefined) for (const c of changes) transfer.push(c.buffer as ArrayBuffer);
    this.#port.postMessage(msg, transfer);
    if (handedOver) this.w = GroupReplies.#writer();
    this.w.pos = REPLY_HEADER;
    this.count = 0;
    if (this.#errors.length > 0) this.#errors = [];
    if (failures.length > 0) this.#failures = [];
    if (attached.length > 0) this.#attached = [];
  }
}
