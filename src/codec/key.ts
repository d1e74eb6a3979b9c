/*
 * The Key value: immutable bytes only this module can mint (a private-field brand, not
 * `instanceof`), and the internal helpers that read or adopt its bytes without copies.
 */
import { realBytes } from '../bytes.js';
import { describe } from '../describe.js';
import { invalidArgument } from '../errors.js';

let wrapKey: (bytes: Uint8Array, from?: number, to?: number) => Key;
let liveKey: (k: Key) => Uint8Array | undefined;
let isKey: (v: unknown) => v is Key;

/** Why a Key whose buffer was detached is refused wherever it is given. */
export const DETACHED =
  "whose memory was detached (its ArrayBuffer was transferred; a reply's rows share one buffer, so transferring one row's payload.buffer detaches them all): copy what you transfer";

/** Only this module can mint a Key: `private` binds TypeScript callers, not JavaScript. */
const MINT: unique symbol = Symbol('Key.mint');

/** Node's `util.inspect.custom`, without importing `node:util` into the public types. */
const inspectCustom: unique symbol = Symbol.for('nodejs.util.inspect.custom');

/**
 * An encoded key: immutable bytes whose byte order is the tuple order of the parts that
 * built it. Make one with {@link key}, {@link toKey} or {@link rawKey}.
 *
 * @example
 * ```ts
 * const k = key('channel-42', 7);
 * k.bytes;                       // Uint8Array(20) [0, 10, 99, …, 128, 0, 0, 0, 0, 0, 0, 7]
 * k.equals(key('channel-42', 7)); // true
 * ```
 */
export class Key {
  /**
   * The bytes are `#from` to `#to` of `#bytes`. A key read from a reply or a change keeps
   * them where they arrived until they are asked for: a view per key is a second object to
   * allocate and, for the many keys of a large result, for the garbage collector to copy.
   */
  #bytes: Uint8Array;
  #from: number;
  #to: number;

  private constructor(mint: typeof MINT, bytes: Uint8Array, from: number, to: number) {
    if (mint !== MINT) {
      throw invalidArgument('Key has no public constructor; use key(), toKey() or rawKey()');
    }
    this.#bytes = bytes;
    this.#from = from;
    this.#to = to;
    Object.freeze(this); // private fields stay writable: #liveView() may still make the view
  }

  static {
    wrapKey = (bytes, from = 0, to = bytes.length) => new Key(MINT, bytes, from, to);
    liveKey = (k) => k.#liveView();
    isKey = (v): v is Key => typeof v === 'object' && v !== null && #bytes in v;
  }

  /**
   * The key's bytes as a view of their own, made once; undefined once their buffer was
   * detached (transferred away: the keys and payloads of a reply's rows share one buffer).
   */
  #liveView(): Uint8Array | undefined {
    const bytes = this.#bytes;
    if (bytes.length === 0) return this.#to > this.#from ? undefined : bytes;
    if (this.#from === 0 && this.#to === bytes.length) return bytes;
    const view = bytes.subarray(this.#from, this.#to);
    this.#bytes = view;
    this.#from = 0;
    this.#to = view.length;
    return view;
  }

  /**
   * A copy of the encoded bytes (the key itself never changes).
   * @example key('ab').bytes // Uint8Array(4) [0, 2, 97, 98]
   */
  get bytes(): Uint8Array {
    return keyBytes(this).slice();
  }

  /**
   * Number of encoded bytes, without copying them.
   * @example key('ab', 1).byteLength // 12: 2 + 2 for the string, 8 for the integer
   */
  get byteLength(): number {
    return this.#bytes.length === 0 ? 0 : this.#to - this.#from; // 0 once detached, as a view
  }

  /**
   * True when `other` (a Key or plain bytes) holds exactly the same bytes.
   * @example key('c1', 3).equals(toKey(['c1', 3])) // true
   */
  equals(other: Key | Uint8Array): boolean {
    const a = this.#liveView();
    const b = isKey(other) ? other.#liveView() : realBytes(other);
    return a !== undefined && b !== undefined && compareBytes(a, b) === 0;
  }

  /**
   * Lower-case hex of the bytes.
   * @example String(key('ab', 0)) // '000261628000000000000000'
   */
  toString(): string {
    const bytes = this.#liveView();
    if (bytes === undefined) return '(detached)';
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex');
  }

  /**
   * How `console.log` and `util.inspect` show a key: its hex in `Key<…>`.
   * @example console.log(key('ab')) // Key<00026162>
   */
  [inspectCustom](): string {
    return `Key<${this.toString()}>`;
  }
}

/**
 * Internal: the key's own bytes, without the defensive copy of `Key#bytes`; InvalidArgument
 * (thrown) when its buffer was detached.
 */
export function keyBytes(k: Key): Uint8Array {
  const bytes = liveKey(k);
  if (bytes === undefined) throw invalidArgument(`a Key ${DETACHED}`);
  return bytes;
}

/** Internal: the key's own bytes, or undefined when its buffer was detached (the fast paths). */
export function liveKeyBytes(k: Key): Uint8Array | undefined {
  return liveKey(k);
}

/** Internal: whether `v` is a genuine Key (a brand check, unlike `instanceof`). */
export function isKeyValue(v: unknown): v is Key {
  return isKey(v);
}

/** Internal: wrap bytes the caller promises never to mutate again. */
export function adoptKey(bytes: Uint8Array): Key {
  return wrapKey(bytes);
}

/** Internal: a key of bytes `from` to `to` of `bytes`, which no one mutates again. */
export function adoptKeyAt(bytes: Uint8Array, from: number, to: number): Key {
  return wrapKey(bytes, from, to);
}

/** Byte-wise order, a shorter prefix first. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/**
 * The range `[start, stop)` (empty `stop`: no bound) narrowed to what comes strictly after
 * `after` in scan order; undefined when nothing can. A scan's cursor is applied this way,
 * and the worker guesses a pager's next page with it. Appending a 0 byte gives the least
 * key above `after`; with `reverse`, `after` itself is the (exclusive) stop.
 */
export function rangeAfter(
  [start, stop]: [Uint8Array, Uint8Array],
  after: Uint8Array,
  reverse: boolean,
): [Uint8Array, Uint8Array] | undefined {
  if (reverse) {
    if (after.length === 0) return undefined; // nothing is below the empty key
    return stop.length === 0 || compareBytes(after, stop) < 0 ? [start, after] : [start, stop];
  }
  const next = new Uint8Array(after.length + 1);
  next.set(after);
  return compareBytes(next, start) > 0 ? [next, stop] : [start, stop];
}

/** The bytes of a Key, or of a genuine Uint8Array; InvalidArgument otherwise. */
export function bytesOf(k: Key | Uint8Array, what: string): Uint8Array {
  if (isKeyValue(k)) return keyBytes(k);
  const bytes = realBytes(k);
  if (bytes !== undefined) return bytes;
  throw invalidArgument(`${what}: expected a Key or Uint8Array, got ${describe(k)}`);
}
