import { PersistencyError } from '../errors.js';
import {
  f64,
  i8,
  i16,
  i32,
  i64,
  type Key,
  type KeyPart,
  key,
  PART_TYPE_NAMES,
  type PartType,
  prefixRange,
  rawKey,
  type SizedInt,
  text,
  u8,
  u16,
  u32,
  u64,
} from '../keys.js';
import { CliError, usage } from './help.js';
import { PartsView } from './output.js';

/** Parsed option values of a command line. */
export type Values = Record<string, string | boolean | undefined>;

export const SIZED: Record<string, (x: number | bigint) => SizedInt> = {
  i64,
  i32,
  i16,
  i8,
  u64,
  u32,
  u16,
  u8,
};

/** A view of bytes as the parts `spec` names (comma-separated), or undefined without one. */
export function partsView(
  spec: string | boolean | undefined,
  option: string,
  decode: (bytes: Uint8Array, types: PartType[]) => unknown,
): PartsView | undefined {
  if (typeof spec !== 'string') return undefined;
  const types = spec.split(',').map((t) => t.trim());
  for (const t of types) {
    if (!(PART_TYPE_NAMES as readonly string[]).includes(t))
      throw usage(
        `${option}: ${JSON.stringify(t)} is not ${option === '--payload' ? 'auto, utf8, hex or a part type' : 'a part type'} (part types: ${PART_TYPE_NAMES.join(', ')})`,
      );
  }
  return new PartsView(types as PartType[], decode);
}

export function parseLimit(value: string | boolean | undefined): number {
  if (typeof value !== 'string') return -1; // SQLite: a negative LIMIT means none
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)))
    throw usage(`--limit: ${JSON.stringify(value)} is not a non-negative integer`);
  return Number(value);
}

export function parsePrefix(value: string | boolean | undefined): Key | undefined {
  if (typeof value !== 'string') return undefined;
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch {
    throw usage(
      `--prefix: ${JSON.stringify(value)} is not JSON (e.g. '["channel-1", 42]'; see --help)`,
    );
  }
  const parts = Array.isArray(json) ? json : [json];
  try {
    return key(...parts.map((p, i) => toPart(p, `part ${i}`)));
  } catch (e) {
    if (e instanceof CliError) throw e;
    if (e instanceof PersistencyError) throw usage(`--prefix: ${e.message}`);
    throw e;
  }
}

/** One JSON value of the prefix syntax as a key part. */
export function toPart(v: unknown, where: string): KeyPart {
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw usage(`--prefix: ${where}: ${v} is not an integer`);
    if (!Number.isSafeInteger(v))
      throw usage(`--prefix: ${where}: ${v} is beyond 2^53; write it as {"i64": "<digits>"}`);
    return v;
  }
  if (Array.isArray(v)) return v.map((p, i) => toPart(p, `${where}.${i}`));
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v);
    const [tag, arg] = entries[0] ?? [];
    if (entries.length === 1 && tag !== undefined) {
      const sized = Object.hasOwn(SIZED, tag) ? SIZED[tag] : undefined;
      if (sized !== undefined) {
        if (typeof arg === 'number' && Number.isSafeInteger(arg)) return sized(arg);
        if (typeof arg === 'string' && /^-?\d+$/.test(arg)) return sized(BigInt(arg));
        throw usage(`--prefix: ${where}: {"${tag}": …} takes an integer or a decimal string`);
      }
      if (tag === 'text') {
        if (typeof arg !== 'string') throw usage(`--prefix: ${where}: {"text": …} takes a string`);
        return text(arg);
      }
      if (tag === 'f64') {
        // A number, or "Infinity", "-Infinity", "-0" (which JSON cannot write).
        const x = typeof arg === 'string' && arg.trim() !== '' ? Number(arg) : arg;
        if (typeof x !== 'number' || Number.isNaN(x))
          throw usage(`--prefix: ${where}: {"f64": …} takes a number (or "Infinity", "-0")`);
        return f64(x);
      }
      if (tag === 'bytes' || tag === 'raw') {
        if (typeof arg !== 'string' || !/^(?:[0-9a-fA-F]{2})*$/.test(arg))
          throw usage(`--prefix: ${where}: {"${tag}": …} takes an even-length hex string`);
        const bytes = new Uint8Array(Buffer.from(arg, 'hex'));
        return tag === 'raw' ? rawKey(bytes) : bytes;
      }
    }
  }
  throw usage(
    `--prefix: ${where}: ${JSON.stringify(v)} is not a key part (a string, integer, boolean, or {"<i64|…|u8|f64|text|bytes|raw>": …})`,
  );
}

export function rangeOf(prefix: Key | undefined): { start: Buffer; stop: Buffer | undefined } {
  if (prefix === undefined) return { start: Buffer.alloc(0), stop: undefined };
  const range = prefixRange(prefix);
  const stop = range.stop?.bytes;
  return {
    start: Buffer.from(range.start.bytes),
    stop: stop === undefined || stop.length === 0 ? undefined : Buffer.from(stop),
  };
}
