/*
 * Test-only fault injection (LevelDB-style, see `InjectedFault`): faults wait in order and
 * fire at the next write, commit or multi-key read they name.
 */

import type { InjectedFault } from '../protocol/messages.js';
import type { KvBackend } from './backend.js';

export class Faults {
  readonly #due: { fault: InjectedFault; skip: number }[] = [];

  get any(): boolean {
    return this.#due.length > 0;
  }

  add(fault: InjectedFault, skipWrites: number): void {
    this.#due.push({ fault, skip: skipWrites });
  }

  /** Throw the due fault if it is one of `kinds`, rolling back as SQLite would. */
  fire(kinds: readonly InjectedFault[], backend: KvBackend): void {
    const next = this.#due[0];
    if (next === undefined || !kinds.includes(next.fault)) return;
    if (next.skip > 0) {
      next.skip--;
      return;
    }
    if (next.fault === 'rollback-twice') next.fault = 'rollback';
    else this.#due.shift();
    backend.rollback();
    const code = next.fault === 'commit' ? 'SQLITE_IOERR' : 'SQLITE_FULL';
    throw Object.assign(new Error(`injected fault: ${next.fault}`), { code });
  }

  /** Throw if a `getMany` fault is due (after the statements it is to pass over). */
  fireGetMany(): void {
    const next = this.#due[0];
    if (next?.fault !== 'getMany') return;
    if (next.skip > 0) {
      next.skip--;
      return;
    }
    this.#due.shift();
    throw new Error('injected fault: getMany');
  }

  /** Throw if a `serialize` fault is due. */
  fireSerialize(): void {
    if (this.#due[0]?.fault !== 'serialize') return;
    this.#due.shift();
    throw new Error('injected fault: serialize');
  }
}
