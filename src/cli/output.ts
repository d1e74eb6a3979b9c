import { PersistencyError } from '../errors.js';
import type { PartType } from '../keys.js';
import { decodePayload } from '../payload.js';
import { EXIT } from './help.js';
import { partsView } from './prefix-syntax.js';

/**
 * Bytes read as codec parts and printed as a JSON array in the prefix syntax; bytes that
 * do not fit the types print in hex and are counted.
 */
export class PartsView {
  misses = 0;

  constructor(
    readonly types: readonly PartType[],
    readonly decode: (bytes: Uint8Array, types: PartType[]) => unknown,
  ) {}

  show(bytes: Buffer): string {
    let parts: unknown[];
    try {
      parts = this.decode(bytes, [...this.types]) as unknown[];
    } catch (e) {
      if (!(e instanceof PersistencyError)) throw e;
      this.misses++;
      return bytes.toString('hex');
    }
    return `[${parts.map((p, i) => showPart(p, this.types[i] as PartType)).join(',')}]`;
  }
}

export function showPart(v: unknown, type: PartType): string {
  switch (type) {
    case 'string':
      return JSON.stringify(v);
    case 'text':
      return `{"text":${JSON.stringify(v)}}`;
    case 'f64': {
      // JSON has no -0, Infinity or -Infinity: those are written as strings.
      const x = v as number;
      return `{"f64":${Number.isFinite(x) && !Object.is(x, -0) ? String(x) : `"${Object.is(x, -0) ? '-0' : String(x)}"`}}`;
    }
    case 'bool':
    case 'number':
    case 'i32':
    case 'i16':
    case 'i8':
      return String(v); // every signed width encodes like a plain integer
    case 'bytes':
      return `{"bytes":"${Buffer.from(v as Uint8Array).toString('hex')}"}`;
    case 'i64':
      return Number.isSafeInteger(Number(v)) ? String(v) : `{"i64":"${String(v)}"}`;
    default: {
      const n = v as number | bigint;
      return `{"${type}":${Number.isSafeInteger(Number(n)) ? String(n) : `"${String(n)}"`}}`;
    }
  }
}

export const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
export const lenientUtf8 = new TextDecoder('utf-8', { ignoreBOM: true });
// Control characters other than tab, LF and CR mark binary data.
export const BINARY = /(?![\t\n\r])\p{Cc}/u;

export function payloadFormat(value: string | boolean | undefined): { show(b: Buffer): string } {
  switch (value) {
    case undefined:
    case 'auto':
      return {
        show(b) {
          let text: string;
          try {
            text = strictUtf8.decode(b);
          } catch {
            return b.toString('hex');
          }
          return BINARY.test(text) ? b.toString('hex') : JSON.stringify(text);
        },
      };
    case 'utf8':
      return { show: (b) => JSON.stringify(lenientUtf8.decode(b)) };
    case 'hex':
      return { show: (b) => b.toString('hex') };
    default:
      // Anything else names part types: a payload written with payload() or persistEncoded.
      return partsView(value, '--payload', decodePayload) as PartsView;
  }
}

export const PLAIN =
  /^(?!")[\p{L}\p{M}\p{N}\p{P}\p{S}](?:[\p{L}\p{M}\p{N}\p{P}\p{S} ]*[\p{L}\p{M}\p{N}\p{P}\p{S}])?$/u;

/** A name as it is when it is plainly printable, else as a JSON string. */
export function showText(s: string): string {
  return PLAIN.test(s) ? s : JSON.stringify(s);
}

export function label(id: string): string {
  return `job ${JSON.stringify(id)}`;
}

export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  const message = (e as { message?: unknown } | null)?.message; // an ErrorInfo
  return typeof message === 'string' ? message : String(e);
}

export function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ');
}

/** One line to stderr, as every message of the inspector: `persistency: …`. */
export function warn(message: string): void {
  process.stderr.write(`persistency: ${oneLine(message)}\n`);
}

/** Buffered stdout: rows go out in large writes. */
export class Output {
  #chunk = '';

  line(s: string): void {
    this.#chunk += `${s}\n`;
    if (this.#chunk.length >= 65536) this.flush();
  }

  /** Write `s` (and anything buffered) and return exit code 0. */
  text(s: string): 0 {
    this.#chunk += s;
    this.flush();
    return EXIT.ok;
  }

  flush(): void {
    if (this.#chunk === '') return;
    process.stdout.write(this.#chunk);
    this.#chunk = '';
  }
}

export const out = new Output();
