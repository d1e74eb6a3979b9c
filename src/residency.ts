/*
 * Which open jobs hold a connection now, and letting them go: after `idleCloseMs` of no
 * work (the idle timer), and beyond `maxResidentJobs` (least recently used first). A job
 * with work in flight is never released; the client decides that (releaseIfIdle).
 */
import type { JobClient } from './job-client.js';

export class Residency {
  readonly #idleCloseMs: number;
  readonly #maxResident: number;
  /** Jobs holding a connection now. */
  readonly #resident = new Set<JobClient>();
  /** Jobs asked to release that have not finished yet. */
  readonly #releasing = new Set<JobClient>();
  #idleTimer: ReturnType<typeof setInterval> | undefined;

  constructor(idleCloseMs: number, maxResidentJobs: number) {
    this.#idleCloseMs = idleCloseMs;
    this.#maxResident = maxResidentJobs;
  }

  get size(): number {
    return this.#resident.size;
  }

  /** A job took up a connection (beyond the cap, others let go of theirs) or let go of it. */
  set(client: JobClient, resident: boolean): void {
    if (!resident) {
      this.#resident.delete(client);
      return;
    }
    this.#resident.add(client);
    this.#cap();
  }

  /** Start the idle timer (once): a job is released 1 to 1.25 x idleCloseMs after its work. */
  startIdleTimer(): void {
    const idleMs = this.#idleCloseMs;
    if (idleMs <= 0 || this.#idleTimer !== undefined) return;
    this.#idleTimer = setInterval(() => void this.releaseIdle(idleMs), Math.max(5, idleMs / 4));
    this.#idleTimer.unref();
  }

  stopIdleTimer(): void {
    clearInterval(this.#idleTimer);
  }

  /** Release every resident job idle for `idleForMs`; resolves once they have. */
  releaseIdle(idleForMs: number): Promise<number> {
    const before = performance.now() - idleForMs;
    const released: Promise<void>[] = [];
    for (const client of this.#resident) {
      const done = this.#release(client, before);
      if (done !== undefined) released.push(done);
    }
    return Promise.all(released).then(() => released.length);
  }

  /** Beyond the cap, release the jobs used least recently that can be (not the new one). */
  #cap(): void {
    const cap = this.#maxResident;
    if (cap <= 0 || this.#resident.size <= cap) return;
    const staying = [...this.#resident].filter((c) => !this.#releasing.has(c));
    let excess = staying.length - cap;
    if (excess <= 0) return;
    const now = performance.now();
    staying.sort((a, b) => a.lastActive - b.lastActive);
    for (const client of staying) {
      if (excess === 0) return;
      if (this.#release(client, now) !== undefined) excess--;
    }
  }

  /** Ask `client` to release if it has had no work since `before`; undefined if it cannot. */
  #release(client: JobClient, before: number): Promise<void> | undefined {
    const done = client.releaseIfIdle(before);
    if (done === undefined) return undefined;
    this.#releasing.add(client);
    return done.then(() => {
      this.#releasing.delete(client);
    });
  }
}
