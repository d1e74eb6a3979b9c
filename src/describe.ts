/*
 * Describing a caller's values in error messages, safely: never throws, whatever the value.
 */

/** What user code threw, as text; never throws (`String` can, e.g. on a null-prototype object). */
export function describeThrown(e: unknown): string {
  try {
    return String(e);
  } catch {
    return describe(e);
  }
}

/** A short, safe description of any value for error messages (never throws). */
export function describe(v: unknown): string {
  try {
    switch (typeof v) {
      case 'string':
        return v.length > 40 ? `string(${v.length})` : JSON.stringify(v);
      case 'number':
      case 'boolean':
      case 'undefined':
        return String(v);
      case 'bigint':
        return `${v}n`;
      case 'symbol':
        return 'symbol';
      case 'function':
        return 'function';
      default: {
        if (v === null) return 'null';
        if (Array.isArray(v)) return `array(${v.length})`;
        const name = (v as { constructor?: { name?: unknown } }).constructor?.name;
        return typeof name === 'string' && name !== '' ? name : 'object';
      }
    }
  } catch {
    return 'value';
  }
}
