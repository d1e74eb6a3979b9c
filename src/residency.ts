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
  /** Jobs asked to release that have not finished yet, each with its request. */
  readonly #releasing = new Map<JobClient, Promise<boolean>>();
  /** Jobs that declined to release since the last take-up: the cap asks others instead. */
  readonly #declined = new Set<JobClient>();
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
    // Whatever release was under way is over (a job taken up again may be asked anew).
    this.#releasing.delete(client);
    if (!resident) {
      this.#resident.delete(client);
      this.#declined.delete(client);
      return;
    }
    this.#resident.add(client);
    this.#declined.clear();
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

  /** Release every resident job idle for `idleForMs`; resolves once they have (or declined). */
  releaseIdle(idleForMs: number): Promise<number> {
    const before = performance.now() - idleForMs;
    const released: Promise<boolean>[] = [];
    for (const client of this.#resident) {
      const done = this.#release(client, before);
      if (done !== undefined) released.push(done);
    }
    return Promise.all(released).then(() => released.length);
  }

  /**
   * Beyond the cap, release the jobs used least recently that can be: not the one just
   * taken up (it has its work still to do), nor one that declined since.
   */
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
      if (!this.#declined.has(client) && this.#release(client, now) !== undefined) excess--;
    }
  }

  /** Ask `client` to release if it has had no work since `before`; undefined if it cannot. */
  #release(client: JobClient, before: number): Promise<boolean> | undefined {
    const done = client.releaseIfIdle(before);
    if (done === undefined) return undefined;
    this.#releasing.set(client, done);
    void done.then((released) => {
      if (this.#releasing.get(client) === done) this.#releasing.delete(client);
      if (released || !this.#resident.has(client)) return;
      this.#declined.add(client); // it stays: the cap asks the next one
      this.#cap();
    });
    return done;
  }
}
