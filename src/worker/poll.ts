/*
 * Polling for the next request (see `PollSettings`): after a group that answered someone,
 * the worker asks its port again for a short while before its thread sleeps.
 */
import { type MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import type { PollSettings, PollStats, ToWorker } from '../protocol/messages.js';

/** A poll that found nothing makes the worker skip up to this many of its next polls. */
const MAX_POLL_BACKOFF = 64;

export class Poller {
  readonly stats = { tried: 0, caught: 0, busy: 0 };
  readonly #port: MessagePort;
  readonly #settings: PollSettings;
  readonly #slots: Int32Array;
  #skip = 0;
  #backoff = 0;

  constructor(port: MessagePort, settings: PollSettings) {
    this.#port = port;
    this.#settings = settings;
    this.#slots = new Int32Array(settings.slots, 0, 1);
  }

  /** The next message if it arrives within the poll window; undefined to go to sleep. */
  next(): ToWorker | undefined {
    if (this.#skip > 0) {
      this.#skip--;
      return undefined;
    }
    const slots = this.#slots;
    if (Atomics.add(slots, 0, 1) >= this.#settings.max) {
      Atomics.sub(slots, 0, 1);
      this.stats.busy++;
      return undefined;
    }
    this.stats.tried++;
    const until = performance.now() + this.#settings.micros / 1000;
    let got = receiveMessageOnPort(this.#port);
    while (got === undefined && performance.now() < until) got = receiveMessageOnPort(this.#port);
    Atomics.sub(slots, 0, 1);
    if (got === undefined) {
      this.#backoff = Math.min(this.#backoff * 2 || 1, MAX_POLL_BACKOFF);
      this.#skip = this.#backoff;
      return undefined;
    }
    this.stats.caught++;
    this.#backoff = 0;
    return got.message as ToWorker;
  }

  static readonly none: PollStats = { tried: 0, caught: 0, busy: 0 };
}
