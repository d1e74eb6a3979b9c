/*
 * Payload helpers: the key codec's byte format, used for values. A payload built here is
 * a plain Uint8Array; nothing about its ordering matters, only that it reads back.
 */
import { realBytes } from './bytes.js';
import { invalidArgument } from './errors.js';
import {
  type DecodedParts,
  decodeNamed,
  describe,
  encodeParts,
  type KeyPart,
  type PartType,
  type PartTypeMap,
} from './keys.js';

/**
 * Encode parts with the key codec into a fresh `Uint8Array`.
 * @example job.persistPut('meta', key('c1'), payload('general', 42, true));
 */
export function payload(...parts: KeyPart[]): Uint8Array {
  return encodeParts(parts, 'payload');
}

/**
 * Encode one value (a tuple, plain object or single part). Same as `payload(value)`.
 * @example toPayload({ name: 'general', topic: 'chat', members: 42 })
 */
export function toPayload(value: KeyPart): Uint8Array {
  return encodeParts([value], 'payload');
}

/**
 * Read a payload back given its part types; trailing or missing bytes are
 * `InvalidArgument`. A single type name returns the value itself.
 * @example decodePayload(payload('general', 42, true), ['string', 'number', 'bool']); // ['general', 42, true]
 */
export function decodePayload<const S extends readonly PartType[]>(
  bytes: Uint8Array,
  spec: S,
): DecodedParts<S>;
/**
 * Read a payload of a single part back: the spec is that part's type name, the result its
 * value. Missing or trailing bytes are `InvalidArgument`.
 * @example decodePayload(payload('Ada Lovelace'), 'string') // 'Ada Lovelace'
 */
export function decodePayload<T extends PartType>(bytes: Uint8Array, spec: T): PartTypeMap[T];
export function decodePayload(bytes: Uint8Array, spec: PartType | readonly PartType[]): unknown {
  const real = realBytes(bytes);
  if (real === undefined) {
    throw invalidArgument(`decodePayload: expected a Uint8Array, got ${describe(bytes)}`);
  }
  return decodeNamed(real, spec, 'decodePayload');
}
