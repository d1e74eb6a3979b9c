/*
 * Reading a caller's Uint8Array safely. `length`, `byteOffset` and `buffer` are ordinary
 * getters that a subclass, or an own property, can override; trusting them lets a payload
 * lie about its size and corrupt the frame it is copied into. Here they are read from the
 * intrinsic %TypedArray% getters, which report the array's real memory.
 */
import { types } from 'node:util';

const TypedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;
const intrinsic = (name: string) =>
  Object.getOwnPropertyDescriptor(TypedArrayPrototype, name)?.get as (this: unknown) => unknown;
const lengthOf = intrinsic('length') as (this: Uint8Array) => number;
const byteOffsetOf = intrinsic('byteOffset') as (this: Uint8Array) => number;
const bufferOf = intrinsic('buffer') as (this: Uint8Array) => ArrayBufferLike;

const EMPTY = new Uint8Array(0);

/**
 * A plain Uint8Array over exactly the memory of `v`, or undefined when `v` is not a genuine
 * Uint8Array (including a Buffer). A detached array has no bytes. The result aliases `v`.
 */
export function realBytes(v: unknown): Uint8Array | undefined {
  if (!types.isUint8Array(v)) return undefined;
  const n = lengthOf.call(v); // 0 when detached, whatever `v.length` says
  if (n === 0) return EMPTY;
  const proto: unknown = Object.getPrototypeOf(v);
  // The common case: a plain array or Buffer with nothing overridden is used as it is.
  if (
    (proto === Uint8Array.prototype || proto === Buffer.prototype) &&
    !Object.hasOwn(v, 'length')
  ) {
    return v;
  }
  return new Uint8Array(bufferOf.call(v), byteOffsetOf.call(v), n);
}

/** The current length of a genuine Uint8Array, from the intrinsic getter (0 when detached). */
export function lengthNow(v: Uint8Array): number {
  return lengthOf.call(v);
}
