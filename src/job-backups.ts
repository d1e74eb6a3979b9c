/*
 * `job.backup(dest)` on the main thread: the copy is made by the job's worker
 * (src/worker/backups.ts), which answers each backup by its id. A backup keeps the job
 * resident and the process alive until it is answered; closing the job or losing its
 * worker ends it with that error.
 */
import { resolve } from 'node:path';
import { err, ok, type Result, ResultAsync } from 'neverthrow';
import { refusal } from './checks.js';
import type { PersistencyError } from './errors.js';
import type { JobClient } from './job-client.js';
import { describe } from './keys.js';
import { fromErrorInfo } from './protocol/messages.js';

type Settle = (r: Result<void, PersistencyError>) => void;

/** Backup ids, unique within the process. */
let lastId = 0;

export class JobBackups {
  readonly #client: JobClient;
  readonly #waiting = new Map<number, Settle>();

  constructor(client: JobClient) {
    this.#client = client;
    client.holds.backups = {
      running: () => this.#waiting.size,
      done: (id, error) =>
        this.#settle(id, error === undefined ? ok(undefined) : err(fromErrorInfo(error))),
      failed: (id, error) => this.#settle(id, err(error)),
      ended: (error) => {
        for (const id of [...this.#waiting.keys()]) this.#settle(id, err(error));
      },
    };
  }

  backup(dest: unknown): ResultAsync<void, PersistencyError> {
    return new ResultAsync(this.#backup(dest));
  }

  /** Sent at once: the copy's place in the job's order is the call's. */
  #backup(destArg: unknown): Promise<Result<void, PersistencyError>> {
    const client = this.#client;
    if (typeof destArg !== 'string' || destArg.length === 0 || destArg.includes('\0'))
      return Promise.resolve(
        err(refusal(new Error(`dest must be a file path, got ${describe(destArg)}`), 'backup')),
      );
    if (!client.running) return Promise.resolve(err(client.notOpenError()));
    const dest = resolve(destArg);
    lastId = (lastId + 1) >>> 0;
    const id = lastId;
    client.send(); // the writes issued before this call go first: the copy holds them
    const answer = new Promise<Result<void, PersistencyError>>((settle) => {
      this.#waiting.set(id, settle);
    });
    client.holds.count += 1; // not released while the worker copies
    client.post({ t: 'backup', id, dest });
    return answer;
  }

  #settle(id: number, r: Result<void, PersistencyError>): void {
    const settle = this.#waiting.get(id);
    if (settle === undefined) return;
    this.#waiting.delete(id);
    this.#client.holds.count -= 1;
    settle(r);
  }
}
