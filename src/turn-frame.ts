/*
 * The frame of one job's current turn: the requests a turn issues travel to the worker
 * as one message, sent at the end of the turn (a microtask) or early once it is large.
 */
import { Refused } from './checks.js';
import { clockTime } from './clock.js';
import {
  ByteWriter,
  COPY_LIMIT,
  MAX_MESSAGE_BYTES,
  MessageTooLarge,
  takeBytes,
} from './protocol/bytes.js';
import { writeNow } from './protocol/requests.js';

/**
 * Send a turn's frame early once it holds this much: a huge turn then streams to the
 * worker, which starts applying it while the rest is still being encoded.
 */
export const FRAME_SEND_BYTES = 1024 * 1024;
const MIN_FRAME_BYTES = 256;
/**
 * Send a turn's frame early once it holds this many reads, so the worker starts on them
 * while the rest of the turn is still being issued.
 */
const FRAME_SEND_READS = 32;
/**
 * Frames are shared (see `#shared`) only after a frame whose calls wrote at most this many
 * bytes each on average: many small puts, where copying each into a change costs most.
 * Shared memory is freed only once both threads have collected it, so frames of large
 * payloads stay ordinary, transferred ones.
 */
const SHARED_RECORD_BYTES = 1024;

export class TurnFrame {
  #writer: ByteWriter | undefined;
  #sizeHint = MIN_FRAME_BYTES;
  #reads = 0;
  /** A writer whose bytes were copied out, ready for the next turn. */
  #idle: ByteWriter | undefined;
  readonly #send: () => void;
  /** An injected clock: each frame starts with its time (a NOW record). */
  readonly #clock: (() => number) | undefined;
  /** The clock is being read: a write it makes must not read it again. */
  #readingClock = false;
  /**
   * Whether frames go in shared memory: while the job is watched, the worker's change
   * records then point into the frame for a put's key and payload instead of copying them
   * (src/protocol/changes.ts).
   */
  readonly #shared: () => boolean;
  /** Where the frame's own records start (after its NOW record). */
  #start = 0;
  /** Calls that wrote into the current frame, and whether the last frame's were small. */
  #calls = 0;
  #smallCalls = true;

  /** The most bytes a frame holds (tests set less). */
  readonly #limit: number;

  /** `send` takes the frame (see `take`) and posts it. */
  constructor(
    send: () => void,
    shared: () => boolean,
    clock?: () => number,
    limit = MAX_MESSAGE_BYTES,
  ) {
    this.#send = send;
    this.#shared = shared;
    this.#clock = clock;
    this.#limit = limit;
  }

  /**
   * The current turn's writer, started on first use; sent at the end of the turn, or before
   * a record is added to it once it is large (a record written straight into the frame, as
   * a put is, then never takes it past what a message carries).
   */
  writer(): ByteWriter {
    this.#calls++;
    if (this.#writer !== undefined && this.#writer.pos >= FRAME_SEND_BYTES) this.#send();
    if (this.#writer !== undefined) return this.#writer;
    // The time first: a clock that writes to this job comes back here and starts the frame
    // (without a time), which this call then gives the time and writes into.
    const now = this.#readClock();
    if (this.#writer !== undefined) {
      // Started by a write the clock made, without a time: the turn's reads go by this one.
      if (now !== undefined) writeNow(this.#writer, now);
      return this.#writer;
    }
    // Reuse the last frame's writer when its bytes were copied out, not handed over.
    const shared = this.#smallCalls && this.#shared();
    const idle = this.#idle;
    const w =
      idle !== undefined && idle.shared === shared
        ? idle
        : new ByteWriter(this.#sizeHint, shared, this.#limit);
    this.#idle = undefined;
    w.pos = 0;
    if (now !== undefined) writeNow(w, now);
    this.#start = w.pos;
    this.#writer = w;
    this.#reads = 0;
    this.#calls = 1;
    queueMicrotask(() => {
      if (this.#writer === w) this.#send();
    });
    return w;
  }

  /** The injected clock's time for a new frame; undefined without one, or inside its call. */
  #readClock(): number | undefined {
    const clock = this.#clock;
    if (clock === undefined || this.#readingClock) return undefined;
    this.#readingClock = true;
    try {
      return clockTime(clock);
    } finally {
      this.#readingClock = false;
    }
  }

  /**
   * Write one record with `write` into the turn's frame. One that would take the frame past
   * what a message carries goes in a frame of its own, after this one is sent; one too large
   * even for that is Refused. Nothing of a record that failed stays in a frame.
   */
  write(write: (w: ByteWriter) => void): ByteWriter {
    for (let alone = false; ; alone = true) {
      const w = this.writer();
      const start = w.pos;
      try {
        write(w);
        return w;
      } catch (e) {
        w.pos = start;
        if (!(e instanceof MessageTooLarge)) throw e;
        if (alone || start === this.#start) throw new Refused(`a request too large: ${e.message}`);
      }
      this.#send();
    }
  }

  get open(): boolean {
    return this.#writer !== undefined;
  }

  /** A read was written: send now if the turn holds many. */
  readAdded(): void {
    if (++this.#reads >= FRAME_SEND_READS) this.#send();
  }

  /** Send now if the frame has grown large. */
  sendIfLarge(w: ByteWriter): void {
    if (w.pos >= FRAME_SEND_BYTES) this.#send();
  }

  /** End the turn's frame: its bytes and what to transfer, or undefined when empty. */
  take(): [Uint8Array, ArrayBuffer[]] | undefined {
    const w = this.#writer;
    if (w === undefined) return undefined;
    this.#writer = undefined;
    if (w.pos === this.#start) {
      this.#idle = w;
      return undefined;
    }
    // Size a new frame like this one: small for a get, large for a bulk load.
    this.#sizeHint = Math.min(Math.max(w.pos, MIN_FRAME_BYTES), FRAME_SEND_BYTES * 2);
    this.#smallCalls = w.pos - this.#start <= this.#calls * SHARED_RECORD_BYTES;
    const [bytes, transfer, handedOver] = takeBytes(w);
    if (!handedOver && w.buf.length <= COPY_LIMIT * 2) this.#idle = w;
    return [bytes, transfer];
  }

  /** Keep no spare buffer (a released job holds as little as it can). */
  dropIdle(): void {
    this.#idle = undefined;
  }
}
