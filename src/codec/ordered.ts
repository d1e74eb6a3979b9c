/*
 * Parts whose bytes sort in their natural order (CONTRACT.md section 8), beyond the Nim
 * reference's parts (which it cannot read):
 *
 * | part    | bytes                                                                      |
 * |---------|----------------------------------------------------------------------------|
 * | f64(x)  | x's IEEE-754 double, 8 bytes BE, with every bit flipped when its sign is   |
 * |         | set, else the sign bit alone: numeric order, -Infinity < -0 < 0 < Infinity |
 * | text(s) | s's UTF-8 with each 00 written 00 FF, then 00 00: code-point order, and    |
 * |         | self-delimiting, so more parts can follow                                  |
 *
 *   f64(0)  = 80 00 00 00 00 00 00 00      text('')   = 00 00
 *   f64(-0) = 7f ff ff ff ff ff ff ff      text('a')  = 61 00 00
 *   f64(1)  = bf f0 00 00 00 00 00 00      text('a\0') = 61 00 ff 00 00
 */
import { describe } from '../describe.js';
import { invalidArgument } from '../errors.js';
import { PartError } from './encode.js';
import { adoptKey, type Key } from './key.js';

const utf8 = new TextEncoder();
const utf8Fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * A double as a key or payload part whose bytes sort in numeric order. NaN, and anything
 * that is not a number, is refused (`InvalidArgument`).
 * @example [f64(-1.5), f64(0), f64(2.25)] // byte order: -1.5 < 0 < 2.25
 */
export function f64(x: number): Key {
  if (typeof x !== 'number' || Number.isNaN(x))
    throw invalidArgument(`f64(${describe(x)}): expected a number that is not NaN`);
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, x);
  if (((b[0] as number) & 0x80) !== 0) for (let i = 0; i < 8; i++) b[i] = ~(b[i] as number);
  else b[0] = (b[0] as number) ^ 0x80;
  return adoptKey(b);
}

/**
 * A string as a key or payload part whose bytes sort in code-point order ('b' > 'aa',
 * unlike a plain string part, which sorts by length first) and end by themselves, so more
 * parts can follow. A lone surrogate, or anything that is not a string, is refused.
 * @example key(text('ada'), 7) // sorts with every 'ada…' key, before 'adb'
 */
export function text(s: string): Key {
  if (typeof s !== 'string') throw invalidArgument(`text(${describe(s)}): expected a string`);
  if (!s.isWellFormed()) throw invalidArgument('text(): the string has a lone surrogate');
  const u = utf8.encode(s);
  let zeros = 0;
  for (const byte of u) if (byte === 0) zeros++;
  const out = new Uint8Array(u.length + zeros + 2);
  let p = 0;
  for (const byte of u) {
    out[p++] = byte;
    if (byte === 0) out[p++] = 0xff;
  }
  return adoptKey(out); // the last two bytes stay 00 00
}

/** Read an `f64` part at `at`: its value and where it ends. */
export function readF64(buf: Uint8Array, at: number): [number, number] {
  if (at + 8 > buf.length)
    throw new PartError('', `f64 needs 8 bytes at offset ${at}, ${buf.length - at} left`);
  const b = new Uint8Array(8); // a copy of its own (a Buffer's slice would be a view)
  b.set(buf.subarray(at, at + 8));
  if (((b[0] as number) & 0x80) !== 0) b[0] = (b[0] as number) ^ 0x80;
  else for (let i = 0; i < 8; i++) b[i] = ~(b[i] as number);
  const x = new DataView(b.buffer).getFloat64(0);
  if (Number.isNaN(x)) throw new PartError('', 'f64 bytes hold a NaN, which f64() never writes');
  return [x, at + 8];
}

/** Read a `text` part at `at`: its string and where it ends. */
export function readText(buf: Uint8Array, at: number): [string, number] {
  const bytes: number[] = [];
  for (let p = at; p + 1 < buf.length; p++) {
    const byte = buf[p] as number;
    if (byte !== 0) {
      bytes.push(byte);
      continue;
    }
    const next = buf[p + 1] as number;
    if (next === 0) {
      try {
        return [utf8Fatal.decode(new Uint8Array(bytes)), p + 2];
      } catch {
        throw new PartError('', 'text bytes are not valid UTF-8');
      }
    }
    if (next !== 0xff) throw new PartError('', `text has 00 ${next.toString(16)} at offset ${p}`);
    bytes.push(0);
    p++;
  }
  throw new PartError('', `text at offset ${at} has no end (00 00)`);
}
